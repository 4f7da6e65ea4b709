//! The Sentry event for a failed request, built as plain data.
//!
//! Everything the event says comes in through [`EventInput`]: the id and the time are chosen by
//! the edge, so the same input always gives the same bytes (golden tests below).

use crate::config::Config;
use crate::id::EventId;
use crate::outcome::Failure;
use crate::scrub::{filter_headers, DEFAULT_REQUEST_HEADERS, DEFAULT_RESPONSE_HEADERS};
use crate::time::rfc3339_millis;
use crate::url::UrlParts;
use crate::{SDK_NAME, SDK_VERSION};
use serde_json::{json, Map, Value};

/// The visitor's request as the event reports it. Headers are raw here and filtered on the way
/// into the event, so no caller can forget to.
pub struct RequestInfo<'a> {
    pub method: &'a str,
    pub url: UrlParts<'a>,
    pub headers: &'a [(String, String)],
}

/// The origin's failing response, for the `response` context.
pub struct ResponseInfo<'a> {
    pub status: u16,
    pub headers: &'a [(String, String)],
    /// From `Content-Length`, when the origin sent one.
    pub body_size: Option<u64>,
}

pub struct EventInput<'a> {
    pub id: EventId,
    pub timestamp_ms: f64,
    pub failure: &'a Failure,
    pub request: &'a RequestInfo<'a>,
    pub response: Option<&'a ResponseInfo<'a>>,
    /// Cloudflare's `cf-ray` for the request, when present.
    pub ray_id: Option<&'a str>,
    /// The Cloudflare colo when known, else the host the worker served.
    pub server_name: &'a str,
    pub config: &'a Config,
}

/// Builds the event JSON. Keys serialise in sorted order (serde_json's default map), which makes
/// the bytes stable.
pub fn build(input: &EventInput<'_>) -> Value {
    let failure = input.failure;
    let status = failure.status().to_string();

    let mut tags = Map::new();
    tags.insert("status".into(), json!(status));
    tags.insert("method".into(), json!(input.request.method));
    tags.insert("outcome".into(), json!(failure.mechanism()));
    if let Some(ray) = input.ray_id {
        tags.insert("ray_id".into(), json!(ray));
    }

    let mut contexts = Map::new();
    if let Some(response) = input.response {
        let mut ctx = Map::new();
        ctx.insert("type".into(), json!("response"));
        ctx.insert("status_code".into(), json!(response.status));
        let headers = filter_headers(pairs(response.headers), DEFAULT_RESPONSE_HEADERS);
        if !headers.is_empty() {
            ctx.insert("headers".into(), header_object(headers));
        }
        if let Some(size) = response.body_size {
            ctx.insert("body_size".into(), json!(size));
        }
        contexts.insert("response".into(), Value::Object(ctx));
    }

    let request_headers = filter_headers(pairs(input.request.headers), DEFAULT_REQUEST_HEADERS);
    let mut event = json!({
        "event_id": input.id.to_hex(),
        "timestamp": rfc3339_millis(input.timestamp_ms),
        "platform": "other",
        "level": "error",
        "logger": SDK_NAME,
        "server_name": input.server_name,
        "release": input.config.release,
        "environment": input.config.environment,
        "exception": {
            "values": [{
                "type": failure.exception_type(),
                "value": failure.exception_value(),
                // Not `synthetic`: that flag tells Sentry (and Bugsink) the type and value are
                // meaningless and to title the issue after a stack frame instead; ours have no
                // frames, so every outcome would become one issue titled "<unknown>".
                "mechanism": {
                    "type": failure.mechanism(),
                    "handled": false,
                },
            }],
        },
        "request": {
            "method": input.request.method,
            "url": input.request.url.without_query(),
            "headers": header_object(request_headers),
        },
        "tags": tags,
        "sdk": { "name": SDK_NAME, "version": SDK_VERSION },
    });
    if !contexts.is_empty() {
        if let Some(object) = event.as_object_mut() {
            object.insert("contexts".into(), Value::Object(contexts));
        }
    }
    event
}

fn pairs(headers: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

fn header_object(headers: Vec<(String, String)>) -> Value {
    Value::Object(
        headers
            .into_iter()
            .map(|(name, value)| (name, Value::String(value)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BuildInfo, Config};

    pub(crate) fn config() -> Config {
        let build = BuildInfo {
            git_sha: Some("abc123"),
            version: "0.1.0",
        };
        Config::parse(
            |name| match name {
                "SENTRY_DSN" => Some("https://key@sentry.example/5".into()),
                "SENTRY_ENVIRONMENT" => Some("staging".into()),
                _ => None,
            },
            build,
        )
        .0
    }

    fn headers() -> Vec<(String, String)> {
        [
            ("user-agent", "Mozilla/5.0"),
            ("authorization", "Bearer SECRET"),
            ("cookie", "sessionid=SECRET"),
            ("cf-ray", "8f00aa11bb22cc33-AMS"),
            ("x-internal", "SECRET"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn origin_status_event_golden_bytes() {
        let config = config();
        let headers = headers();
        let request = RequestInfo {
            method: "GET",
            url: UrlParts::split("https://u:pw@shop.example/orders/42?token=SECRET").unwrap(),
            headers: &headers,
        };
        let response_headers = vec![
            ("content-type".to_owned(), "text/html".to_owned()),
            ("set-cookie".to_owned(), "csrftoken=SECRET".to_owned()),
        ];
        let response = ResponseInfo {
            status: 503,
            headers: &response_headers,
            body_size: Some(1234),
        };
        let failure = Failure::OriginStatus { status: 503 };
        let event = build(&EventInput {
            id: EventId::from_random([0xab; 16]),
            timestamp_ms: 1_795_521_600_250.0,
            failure: &failure,
            request: &request,
            response: Some(&response),
            ray_id: Some("8f00aa11bb22cc33-AMS"),
            server_name: "AMS",
            config: &config,
        });
        let bytes = serde_json::to_string(&event).unwrap();
        assert_eq!(
            bytes,
            concat!(
                r#"{"contexts":{"response":{"body_size":1234,"headers":{"content-type":"text/html"},"status_code":503,"type":"response"}},"#,
                r#""environment":"staging","event_id":"abababababab4bababababababababab","#,
                r#""exception":{"values":[{"mechanism":{"handled":false,"type":"origin_status"},"type":"OriginStatus","value":"Origin answered 503 Service Unavailable"}]},"#,
                r#""level":"error","logger":"edgeguard","platform":"other","release":"abc123","#,
                r#""request":{"headers":{"cf-ray":"8f00aa11bb22cc33-AMS","user-agent":"Mozilla/5.0"},"method":"GET","url":"https://shop.example/orders/42"},"#,
                r#""sdk":{"name":"edgeguard","version":"0.1.0"},"server_name":"AMS","#,
                r#""tags":{"method":"GET","outcome":"origin_status","ray_id":"8f00aa11bb22cc33-AMS","status":"503"},"#,
                r#""timestamp":"2026-11-24T12:00:00.250Z"}"#
            )
        );
        assert!(!bytes.contains("SECRET"));
    }

    #[test]
    fn unreachable_event_has_no_response_context() {
        let config = config();
        let request = RequestInfo {
            method: "POST",
            url: UrlParts::split("https://shop.example/").unwrap(),
            headers: &[],
        };
        let failure = Failure::OriginUnreachable {
            detail: "Network connection lost.".into(),
        };
        let event = build(&EventInput {
            id: EventId::from_random([1; 16]),
            timestamp_ms: 0.0,
            failure: &failure,
            request: &request,
            response: None,
            ray_id: None,
            server_name: "shop.example",
            config: &config,
        });
        assert!(event.get("contexts").is_none());
        assert_eq!(event["tags"]["status"], "502");
        assert!(event["tags"].get("ray_id").is_none());
        assert_eq!(event["exception"]["values"][0]["type"], "OriginUnreachable");
        assert_eq!(
            event["exception"]["values"][0]["mechanism"]["type"],
            "origin_unreachable"
        );
        assert_eq!(event["request"]["headers"], json!({}));
    }
}
