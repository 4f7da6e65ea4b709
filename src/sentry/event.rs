//! The Sentry event for a failed request, built as plain data.
//!
//! Everything the event says comes in through [`EventInput`]: the id and the time are chosen by
//! the edge, so the same input always gives the same bytes (golden tests below).

use crate::config::Config;
use crate::privacy::{filter_cookies, filter_headers, filter_query, DEFAULT_RESPONSE_HEADERS};
use crate::proxy::outcome::Failure;
use crate::sentry::id::EventId;
use crate::sentry::time::rfc3339_millis;
use crate::sentry::trace::Trace;
use crate::sentry::{envelope, limits, route};
use crate::SDK_NAME;
use serde_json::{json, Map, Value};
use url::{Position, Url};

/// The visitor's request as the event reports it. Headers are raw here and filtered on the way
/// into the event, so no caller can forget to.
pub struct RequestInfo<'a> {
    pub method: &'a str,
    /// The request's URL as the runtime gave it; only what Sentry may see of it is reported.
    pub url: &'a Url,
    pub headers: &'a [(String, String)],
}

/// The origin's failing response, for the `response` context.
pub struct ResponseInfo<'a> {
    pub status: u16,
    pub headers: &'a [(String, String)],
    /// From `Content-Length`, or counted when the whole (small) body was read; else unknown.
    pub body_size: Option<u64>,
}

/// edgeguard's one fetch to the origin for this request, as timed by the edge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OriginCall {
    /// When the fetch started (epoch ms).
    pub started_ms: f64,
    /// Until the response headers arrived, or the fetch failed or was abandoned.
    pub duration_ms: u32,
    /// The origin's status; `None` when it never answered (unreachable, timeout).
    pub status: Option<u16>,
}

/// What the runtime is, for `contexts.runtime`: the Workers runtime (open-sourced as workerd).
const RUNTIME_NAME: &str = "Cloudflare Workers";
const RUNTIME_DESCRIPTION: &str = "workerd";

pub struct EventInput<'a> {
    pub id: EventId,
    pub timestamp_ms: f64,
    pub failure: &'a Failure,
    /// The visitor's request; `None` for events about edgeguard itself (a bad setting).
    pub request: Option<&'a RequestInfo<'a>>,
    pub response: Option<&'a ResponseInfo<'a>>,
    /// Cloudflare's `cf-ray` for the request, when present.
    pub ray_id: Option<&'a str>,
    /// The Cloudflare colo when known, else the host the worker served.
    pub server_name: &'a str,
    /// `request.cf.colo` (the Cloudflare data centre), when present.
    pub colo: Option<&'a str>,
    /// The origin fetch, when one was made: the breadcrumb and `contexts.origin`.
    pub origin_call: Option<&'a OriginCall>,
    /// The request's trace (`contexts.trace`), so Sentry shows this event in one trace with the
    /// browser's and the origin app's.
    pub trace: Option<&'a Trace>,
    pub config: &'a Config,
}

/// Builds the event JSON. Object keys are written in sorted order (serde_json's default map is
/// a `BTreeMap`), which makes the bytes stable.
pub fn build(input: &EventInput<'_>) -> Value {
    let failure = input.failure;

    let mut tags = Map::new();
    put(&mut tags, "status", failure.status().to_string().into());
    if let Some(request) = input.request {
        put(&mut tags, "method", request.method.into());
    }
    put(&mut tags, "outcome", failure.mechanism().into());
    if let Some(ray) = input.ray_id {
        put(&mut tags, "ray_id", ray.into());
    }

    let mut contexts = Map::new();
    put(
        &mut contexts,
        "runtime",
        json!({ "type": "runtime", "name": RUNTIME_NAME, "raw_description": RUNTIME_DESCRIPTION }),
    );
    if let Some(colo) = input.colo {
        // Sentry's cloud resource context (OpenTelemetry's names): the colo is where it ran.
        put(
            &mut contexts,
            "cloud_resource",
            json!({ "type": "cloud_resource", "cloud.provider": "cloudflare", "cloud.region": colo }),
        );
    }
    if let Some(call) = input.origin_call {
        // Never the origin's address: only how long it took and what it said.
        let mut origin = Map::new();
        put(&mut origin, "duration_ms", call.duration_ms.into());
        if let Some(status) = call.status {
            put(&mut origin, "status_code", status.into());
        }
        put(&mut contexts, "origin", origin.into());
    }
    if let Some(trace) = input.trace {
        put(&mut contexts, "trace", trace.context().into());
    }
    if let Some(response) = input.response {
        let mut ctx = Map::new();
        put(&mut ctx, "type", "response".into());
        put(&mut ctx, "status_code", response.status.into());
        let headers = filter_headers(pairs(response.headers), DEFAULT_RESPONSE_HEADERS);
        if !headers.is_empty() {
            put(&mut ctx, "headers", header_object(headers));
        }
        if let Some(size) = response.body_size {
            put(&mut ctx, "body_size", size.into());
        }
        put(&mut contexts, "response", ctx.into());
    }

    let mut event = Map::new();
    put(&mut event, "event_id", input.id.to_hex().into());
    put(
        &mut event,
        "timestamp",
        rfc3339_millis(input.timestamp_ms).into(),
    );
    put(&mut event, "platform", "other".into());
    put(&mut event, "level", failure.level().into());
    put(&mut event, "logger", SDK_NAME.into());
    put(&mut event, "server_name", input.server_name.into());
    put(&mut event, "release", input.config.release.as_str().into());
    put(
        &mut event,
        "environment",
        input.config.environment.as_str().into(),
    );
    put(
        &mut event,
        "exception",
        json!({ "values": exception_values(failure) }),
    );
    put(&mut event, "tags", tags.into());
    put(&mut event, "sdk", envelope::sdk());
    if let Some(request) = input.request {
        put(
            &mut event,
            "transaction",
            route::transaction(request.method, request.url.path()).into(),
        );
        if failure.is_origins() {
            let fingerprint = route::fingerprint(failure, request.method, request.url.path());
            put(&mut event, "fingerprint", fingerprint.into());
        }
        let privacy = &input.config.privacy;
        let client_ip = privacy
            .send_default_pii
            .then(|| header(request.headers, "cf-connecting-ip"))
            .flatten();
        if let Some(ip) = client_ip {
            put(&mut event, "user", json!({ "ip_address": ip }));
        }
        put(
            &mut event,
            "request",
            request_object(request, input.config, client_ip),
        );
        if let Some(call) = input.origin_call {
            put(
                &mut event,
                "breadcrumbs",
                json!({ "values": [breadcrumb(call, request)] }),
            );
        }
    }
    put(&mut event, "contexts", contexts.into());
    let mut event = Value::Object(event);
    limits::apply(&mut event);
    event
}

/// Sentry's `request`: method, URL without userinfo or query, allowlisted headers; the query
/// string, cookies and client IP only when opted in, filtered; never the body.
fn request_object(request: &RequestInfo<'_>, config: &Config, client_ip: Option<&str>) -> Value {
    let privacy = &config.privacy;
    let mut object = Map::new();
    put(&mut object, "method", request.method.into());
    put(&mut object, "url", without_query(request.url).into());
    let headers = filter_headers(pairs(request.headers), &privacy.request_headers);
    put(&mut object, "headers", header_object(headers));
    if privacy.send_query {
        let query = request.url.query().map(filter_query).unwrap_or_default();
        if !query.is_empty() {
            put(&mut object, "query_string", pair_array(query));
        }
    }
    if privacy.send_default_pii {
        let cookies: Vec<(String, String)> = request
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("cookie"))
            .flat_map(|(_, value)| filter_cookies(value))
            .collect();
        if !cookies.is_empty() {
            put(&mut object, "cookies", pair_array(cookies));
        }
        if let Some(ip) = client_ip {
            put(&mut object, "env", json!({ "REMOTE_ADDR": ip }));
        }
    }
    object.into()
}

/// The origin fetch as an `http` breadcrumb, as Sentry's SDKs record outgoing requests. The URL
/// is the visitor's (without query), never the origin's internal address.
fn breadcrumb(call: &OriginCall, request: &RequestInfo<'_>) -> Value {
    let mut data = Map::new();
    put(&mut data, "method", request.method.into());
    put(&mut data, "url", without_query(request.url).into());
    if let Some(status) = call.status {
        put(&mut data, "status_code", status.into());
    }
    put(&mut data, "duration_ms", call.duration_ms.into());
    let level = match call.status {
        Some(status) if status < 400 => "info",
        Some(status) if status < 500 => "warning",
        _ => "error",
    };
    json!({
        "type": "http",
        "category": "http",
        "level": level,
        "timestamp": rfc3339_millis(call.started_ms + f64::from(call.duration_ms)),
        "data": data,
    })
}

/// `scheme://host[:port]/path`: the URL as Sentry's `request.url` wants it. No userinfo (it
/// holds credentials), no query (reported apart, filtered, and only when opted in), no fragment.
fn without_query(url: &Url) -> String {
    format!(
        "{}{}",
        &url[..Position::BeforeUsername],
        &url[Position::BeforeHost..Position::AfterPath]
    )
}

/// `[[key, value], ...]`, Sentry's pair-list form (keeps order and repeated keys).
fn pair_array(pairs: Vec<(String, String)>) -> Value {
    pairs
        .into_iter()
        .map(|(key, value)| json!([key, value]))
        .collect()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Whether a panic location is in Rust's standard library (the build maps its sources to
/// `/rustc/<commit>/`, as a prebuilt std has them) rather than in edgeguard.
fn is_std_source(file: &str) -> bool {
    file.starts_with("/rustc/")
}

/// `exception.values`, innermost first; the mechanism (how edgeguard caught it) goes on the
/// outermost value, and a known source location becomes an in-app frame.
fn exception_values(failure: &Failure) -> Vec<Value> {
    let exceptions = failure.exceptions();
    let last = exceptions.len().saturating_sub(1);
    exceptions
        .into_iter()
        .enumerate()
        .map(|(i, exception)| {
            let mut value = Map::new();
            put(&mut value, "type", exception.ty.into());
            put(&mut value, "value", exception.value.into());
            if let Some(frame) = exception.frame {
                let in_app = !is_std_source(&frame.file);
                put(
                    &mut value,
                    "stacktrace",
                    json!({ "frames": [{
                        "filename": frame.file,
                        "lineno": frame.line,
                        "colno": frame.column,
                        "in_app": in_app,
                    }]}),
                );
            }
            if i == last {
                // Not `synthetic`: that flag tells Sentry (and Bugsink) the type and value are
                // meaningless and to title the issue after a stack frame instead; origin failures
                // have no frames, so every outcome would become one issue titled "<unknown>".
                put(
                    &mut value,
                    "mechanism",
                    json!({ "type": failure.mechanism(), "handled": failure.is_handled() }),
                );
            }
            value.into()
        })
        .collect()
}

fn pairs(headers: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

fn header_object(headers: Vec<(String, String)>) -> Value {
    headers
        .into_iter()
        .map(|(name, value)| (name, Value::String(value)))
        .collect::<Map<_, _>>()
        .into()
}

/// `map[key] = value`, out of line: every field of an event, transaction, envelope header or
/// feedback is one call here instead of a key allocation and a map insert inlined at each place
/// that sets one: -1.7 KB gzip of upload (190,998 -> 189,345 B, measured 2026-12-08). (A
/// const-generic `object([(key, value); N])` in place of `json!` went the other way: +0.6 KB.)
#[inline(never)]
pub(crate) fn put(map: &mut Map<String, Value>, key: &str, value: Value) {
    map.insert(key.to_owned(), value);
}

#[cfg(test)]
pub(crate) mod tests {
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
        let url = Url::parse("https://u:pw@shop.example/orders/42?token=SECRET").unwrap();
        let request = RequestInfo {
            method: "GET",
            url: &url,
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
            request: Some(&request),
            response: Some(&response),
            ray_id: Some("8f00aa11bb22cc33-AMS"),
            server_name: "AMS",
            colo: Some("AMS"),
            origin_call: Some(&OriginCall {
                started_ms: 1_795_521_600_000.0,
                duration_ms: 250,
                status: Some(503),
            }),
            trace: None,
            config: &config,
        });
        let bytes = event.to_string();
        assert_eq!(
            bytes,
            concat!(
                r#"{"breadcrumbs":{"values":[{"category":"http","data":{"duration_ms":250,"method":"GET","status_code":503,"url":"https://shop.example/orders/42"},"#,
                r#""level":"error","timestamp":"2026-11-24T12:00:00.250Z","type":"http"}]},"#,
                r#""contexts":{"cloud_resource":{"cloud.provider":"cloudflare","cloud.region":"AMS","type":"cloud_resource"},"#,
                r#""origin":{"duration_ms":250,"status_code":503},"#,
                r#""response":{"body_size":1234,"headers":{"content-type":"text/html"},"status_code":503,"type":"response"},"#,
                r#""runtime":{"name":"Cloudflare Workers","raw_description":"workerd","type":"runtime"}},"#,
                r#""environment":"staging","event_id":"abababababab4bababababababababab","#,
                r#""exception":{"values":[{"mechanism":{"handled":false,"type":"origin_status"},"type":"OriginStatus","value":"Origin answered 503 Service Unavailable"}]},"#,
                r#""fingerprint":["503","GET","/orders/{id}"],"#,
                r#""level":"error","logger":"edgeguard","platform":"other","release":"abc123","#,
                r#""request":{"headers":{"cf-ray":"8f00aa11bb22cc33-AMS","user-agent":"Mozilla/5.0"},"method":"GET","url":"https://shop.example/orders/42"},"#,
                r#""sdk":{"name":"edgeguard","version":"0.1.0"},"server_name":"AMS","#,
                r#""tags":{"method":"GET","outcome":"origin_status","ray_id":"8f00aa11bb22cc33-AMS","status":"503"},"#,
                r#""timestamp":"2026-11-24T12:00:00.250Z","transaction":"GET /orders/{id}"}"#
            )
        );
        assert!(!bytes.contains("SECRET"));
    }

    #[test]
    fn the_reported_url_has_no_userinfo_query_or_fragment() {
        for (url, want) in [
            (
                "http://user:pw@[::1]:8787/caf%C3%A9/a%2Fb?token=SECRET#top",
                "http://[::1]:8787/caf%C3%A9/a%2Fb",
            ),
            (
                "https://user@shop.example:8443/?",
                "https://shop.example:8443/",
            ),
            ("https://shop.example", "https://shop.example/"),
        ] {
            assert_eq!(without_query(&Url::parse(url).unwrap()), want, "{url}");
        }
    }

    #[test]
    fn panic_event_points_into_our_source() {
        use crate::proxy::outcome::SourceLocation;
        let config = config();
        let url = Url::parse("https://shop.example/boom").unwrap();
        let request = RequestInfo {
            method: "GET",
            url: &url,
            headers: &[],
        };
        let failure = Failure::Panic {
            message: "attempt to divide by zero".into(),
            location: Some(SourceLocation {
                file: "src/edge.rs".into(),
                line: 12,
                column: 9,
            }),
        };
        let event = build(&EventInput {
            id: EventId::from_random([2; 16]),
            timestamp_ms: 0.0,
            failure: &failure,
            request: Some(&request),
            response: None,
            ray_id: None,
            server_name: "shop.example",
            colo: None,
            origin_call: None,
            trace: None,
            config: &config,
        });
        assert_eq!(
            event.get("exception").unwrap().to_string(),
            concat!(
                r#"{"values":[{"mechanism":{"handled":false,"type":"panic"},"#,
                r#""stacktrace":{"frames":[{"colno":9,"filename":"src/edge.rs","in_app":true,"lineno":12}]},"#,
                r#""type":"panic","value":"attempt to divide by zero"}]}"#
            )
        );
    }

    #[test]
    fn a_panic_inside_std_is_not_an_in_app_frame() {
        let failure = Failure::Panic {
            message: "index out of bounds".into(),
            location: Some(crate::proxy::outcome::SourceLocation {
                file: "/rustc/e50aa6fba4e63ab34c72bf9acfd2c307c1155d1a/library/core/src/str/mod.rs"
                    .into(),
                line: 7,
                column: 5,
            }),
        };
        let values = exception_values(&failure);
        let frame = values[0].to_string();
        assert!(frame.contains(r#""in_app":false"#), "{frame}");
        assert!(is_std_source("/rustc/abc/library/alloc/src/vec/mod.rs"));
        assert!(!is_std_source("src/edge.rs"));
    }

    #[test]
    fn unreachable_event_has_no_response_context() {
        let config = config();
        let url = Url::parse("https://shop.example/").unwrap();
        let request = RequestInfo {
            method: "POST",
            url: &url,
            headers: &[],
        };
        let failure = Failure::OriginUnreachable {
            detail: "Network connection lost.".into(),
        };
        let event = build(&EventInput {
            id: EventId::from_random([1; 16]),
            timestamp_ms: 0.0,
            failure: &failure,
            request: Some(&request),
            response: None,
            ray_id: None,
            server_name: "shop.example",
            colo: None,
            origin_call: None,
            trace: None,
            config: &config,
        });
        let contexts = event["contexts"].as_object().unwrap();
        assert_eq!(contexts.keys().collect::<Vec<_>>(), ["runtime"]);
        assert!(event.get("breadcrumbs").is_none());
        assert_eq!(
            event["fingerprint"],
            json!(["origin_unreachable", "POST", "/"])
        );
        assert_eq!(event["tags"]["status"], "502");
        assert!(event["tags"].get("ray_id").is_none());
        assert_eq!(event["exception"]["values"][0]["type"], "OriginUnreachable");
        assert_eq!(
            event["exception"]["values"][0]["mechanism"]["type"],
            "origin_unreachable"
        );
        assert_eq!(event["request"]["headers"], json!({}));
    }

    fn config_with(vars: &[(&str, &str)]) -> Config {
        Config::parse(
            |name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
                    .or_else(|| (name == "SENTRY_DSN").then(|| DSN.to_owned()))
            },
            BuildInfo {
                git_sha: Some("abc123"),
                version: "0.1.0",
            },
        )
        .0
    }

    const DSN: &str = "https://dsnpublickey0123@sentry.example/5";

    fn secret_headers() -> Vec<(String, String)> {
        [
            ("user-agent", "Mozilla/5.0"),
            ("authorization", "Bearer SECRET"),
            ("cookie", "theme=dark; sessionid=SECRET; csrftoken=SECRET"),
            ("cf-connecting-ip", "203.0.113.7"),
            ("x-tenant", "acme"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn build_for(config: &Config, headers: &[(String, String)], failure: &Failure) -> Value {
        let url = Url::parse(
            "https://user:SECRET@shop.example/orders/42?page=2&token=SECRET&password=SECRET",
        )
        .unwrap();
        let request = RequestInfo {
            method: "GET",
            url: &url,
            headers,
        };
        build(&EventInput {
            id: EventId::from_random([3; 16]),
            timestamp_ms: 0.0,
            failure,
            request: Some(&request),
            response: None,
            ray_id: None,
            server_name: "shop.example",
            colo: None,
            origin_call: None,
            trace: None,
            config,
        })
    }

    #[test]
    fn carries_the_trace_context() {
        use crate::sentry::trace::{Head, Randomness};
        let config = config();
        let trace = Trace::start(
            Some("771a43a4192642f0b136d5159a501700-a1b2c3d4e5f60718"),
            None,
            &Head {
                public_key: "key",
                release: "abc123",
                environment: "staging",
                traces_sample_rate: None,
            },
            &Randomness {
                trace_id: [0; 16],
                span_id: [0x22; 8],
                sample_rand: 0,
            },
        );
        let failure = Failure::OriginStatus { status: 500 };
        let event = build(&EventInput {
            id: EventId::from_random([3; 16]),
            timestamp_ms: 0.0,
            failure: &failure,
            request: None,
            response: None,
            ray_id: None,
            server_name: "shop.example",
            colo: None,
            origin_call: None,
            trace: Some(&trace),
            config: &config,
        });
        assert_eq!(
            event["contexts"]["trace"].to_string(),
            r#"{"parent_span_id":"a1b2c3d4e5f60718","span_id":"2222222222222222","trace_id":"771a43a4192642f0b136d5159a501700","type":"trace"}"#
        );
    }

    #[test]
    fn private_by_default_and_the_dsn_never_appears() {
        let config = config_with(&[]);
        let headers = secret_headers();
        let event = build_for(&config, &headers, &Failure::OriginStatus { status: 500 });
        let bytes = event.to_string();
        for secret in [
            "SECRET",
            "203.0.113.7",
            "dsnpublickey0123",
            "sentry.example",
            "acme",
            "page",
        ] {
            assert!(!bytes.contains(secret), "{secret} in {bytes}");
        }
        let request = event["request"].as_object().unwrap();
        assert_eq!(
            request.keys().collect::<Vec<_>>(),
            ["headers", "method", "url"]
        );
        assert!(event.get("user").is_none());
    }

    #[test]
    fn opted_in_query_cookies_ip_and_headers_are_filtered() {
        let config = config_with(&[
            ("SENTRY_SEND_QUERY", "true"),
            ("SENTRY_SEND_DEFAULT_PII", "true"),
            ("SENTRY_REQUEST_HEADERS", "x-tenant,authorization,cookie"),
        ]);
        let headers = secret_headers();
        let event = build_for(&config, &headers, &Failure::OriginStatus { status: 500 });
        assert_eq!(
            event.get("request").unwrap().to_string(),
            concat!(
                r#"{"cookies":[["theme","dark"],["sessionid","[Filtered]"],["csrftoken","[Filtered]"]],"#,
                r#""env":{"REMOTE_ADDR":"203.0.113.7"},"#,
                r#""headers":{"authorization":"[Filtered]","cookie":"[Filtered]","x-tenant":"acme"},"#,
                r#""method":"GET","#,
                r#""query_string":[["page","2"],["token","[Filtered]"],["password","[Filtered]"]],"#,
                r#""url":"https://shop.example/orders/42"}"#
            )
        );
        let bytes = event.to_string();
        assert_eq!(event["user"], json!({ "ip_address": "203.0.113.7" }));
        assert!(!bytes.contains("SECRET") && !bytes.contains("dsnpublickey0123"));
    }

    #[test]
    fn handled_events_are_warnings() {
        let config = config_with(&[]);
        let failure = Failure::OriginSlow {
            status: 200,
            duration_ms: 3100,
            threshold_ms: 3000,
        };
        let event = build_for(&config, &[], &failure);
        assert_eq!(event["level"], "warning");
        assert_eq!(
            event["exception"]["values"][0],
            json!({
                "mechanism": { "handled": true, "type": "origin_slow" },
                "type": "OriginSlow",
                "value": "Origin took 3100 ms to answer 200 (threshold 3000 ms)",
            })
        );
        assert_eq!(
            event["fingerprint"],
            json!(["origin_slow", "GET", "/orders/{id}"])
        );
        assert_eq!(event["transaction"], "GET /orders/{id}");
    }

    #[test]
    fn own_failures_keep_sentrys_default_grouping() {
        let config = config_with(&[]);
        let failure = Failure::Panic {
            message: "boom".into(),
            location: None,
        };
        let event = build_for(&config, &[], &failure);
        assert!(event.get("fingerprint").is_none());
        assert_eq!(event["transaction"], "GET /orders/{id}");
    }

    #[test]
    fn long_values_are_truncated_not_rejected() {
        let config = config_with(&[]);
        let long_ua = "a".repeat(5000);
        let headers = vec![("user-agent".to_owned(), long_ua)];
        let failure = Failure::OriginUnreachable {
            detail: "é".repeat(10_000),
        };
        let event = build_for(&config, &headers, &failure);
        let value = event["exception"]["values"][0]["value"].as_str().unwrap();
        assert_eq!(value.chars().count(), limits::MESSAGE_CHARS);
        assert!(value.ends_with('…'));
        let ua = event["request"]["headers"]["user-agent"].as_str().unwrap();
        assert_eq!(ua.chars().count(), limits::VALUE_CHARS);
    }
}
