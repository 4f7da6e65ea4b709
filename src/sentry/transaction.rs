//! The edge hop as a Sentry transaction (opt-in, `SENTRY_TRACES_SAMPLE_RATE`): the visitor's
//! request as the `http.server` root span, and edgeguard's fetch to the origin as its
//! `http.client` child with its real timing and status. The origin's own transaction (its SDK
//! continued the trace from the `sentry-trace` edgeguard sent) hangs under the root span, so
//! Sentry's trace view shows browser → edge → origin.
//!
//! Built after the response, from what the edge measured; ids and times come in.

use crate::config::Config;
use crate::sentry::event::{put, OriginCall};
use crate::sentry::id::EventId;
use crate::sentry::trace::Trace;
use crate::sentry::{envelope, route};
use serde_json::{Map, Value};

/// The spans one edge-hop transaction holds at most (the request, the origin fetch): what a
/// dropped transaction counts in the `span` category of a client report, as Sentry's SDKs count
/// `spans + 1`. A transaction for a request that failed before reaching the origin has one;
/// it is counted as two (an overcount of one span, never an undercount).
pub const SPANS_PER_TRANSACTION: u64 = 2;

/// What the edge measured of one request.
pub struct EdgeHop<'a> {
    pub id: EventId,
    pub trace: &'a Trace,
    /// The origin fetch's span id (16 hex digits), drawn by the edge.
    pub origin_span_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    /// When the request arrived and when its answer went back (epoch ms).
    pub started_ms: f64,
    pub ended_ms: f64,
    /// The status the visitor received.
    pub status: u16,
    /// The origin fetch, when one was made.
    pub origin: Option<&'a OriginCall>,
    pub config: &'a Config,
}

/// The transaction event.
pub fn build(hop: &EdgeHop<'_>) -> Value {
    let (trace, mut root) = (hop.trace, hop.trace.context());
    put(&mut root, "op", "http.server".into());
    put(&mut root, "status", span_status(Some(hop.status)).into());
    let mut data = Map::new();
    put(&mut data, "http.response.status_code", hop.status.into());
    put(&mut root, "data", data.into());
    let spans: Vec<Value> = hop
        .origin
        .map(|call| {
            let status = match call.status {
                // No answer within the origin timeout, or none at all (refused, reset, DNS).
                None if call.duration_ms >= hop.config.origin_timeout_ms => "deadline_exceeded",
                status => span_status(status),
            };
            let mut data = Map::new();
            put(&mut data, "http.request.method", hop.method.into());
            if let Some(code) = call.status {
                put(&mut data, "http.response.status_code", code.into());
            }
            let mut span = Map::new();
            put(&mut span, "trace_id", trace.trace_id.as_str().into());
            put(&mut span, "span_id", hop.origin_span_id.into());
            put(&mut span, "parent_span_id", trace.span_id.as_str().into());
            put(&mut span, "op", "http.client".into());
            // The visitor's method and path, never the origin's address.
            let description = format!("{} {}", hop.method, hop.path);
            put(&mut span, "description", description.into());
            put(&mut span, "origin", "auto.http.edgeguard".into());
            put(
                &mut span,
                "start_timestamp",
                seconds(call.started_ms).into(),
            );
            let ended_ms = call.started_ms + f64::from(call.duration_ms);
            put(&mut span, "timestamp", seconds(ended_ms).into());
            put(&mut span, "status", status.into());
            put(&mut span, "data", data.into());
            span.into()
        })
        .into_iter()
        .collect();
    let mut contexts = Map::new();
    put(&mut contexts, "trace", root.into());
    let mut info = Map::new();
    put(&mut info, "source", "route".into());
    let mut tx = Map::new();
    put(&mut tx, "type", "transaction".into());
    put(&mut tx, "event_id", hop.id.to_hex().into());
    put(&mut tx, "platform", "other".into());
    let name = route::transaction(hop.method, hop.path);
    put(&mut tx, "transaction", name.into());
    put(&mut tx, "transaction_info", info.into());
    put(&mut tx, "start_timestamp", seconds(hop.started_ms).into());
    let ended_ms = hop.ended_ms.max(hop.started_ms);
    put(&mut tx, "timestamp", seconds(ended_ms).into());
    put(&mut tx, "release", hop.config.release.as_str().into());
    put(
        &mut tx,
        "environment",
        hop.config.environment.as_str().into(),
    );
    put(&mut tx, "sdk", envelope::sdk());
    put(&mut tx, "contexts", contexts.into());
    put(&mut tx, "spans", spans.into());
    tx.into()
}

/// Epoch milliseconds as the seconds Sentry's timestamps take (a float, millisecond precision).
fn seconds(ms: f64) -> f64 {
    ms / 1000.0
}

/// Sentry's span status for an HTTP status, as its SDKs map it (sentry-javascript's
/// `getSpanStatusFromHttpCode`); `None` (never answered) is `unavailable`.
pub fn span_status(status: Option<u16>) -> &'static str {
    match status {
        None => "unavailable",
        Some(s) if s < 400 => "ok",
        Some(400) => "invalid_argument",
        Some(401) => "unauthenticated",
        Some(403) => "permission_denied",
        Some(404) => "not_found",
        Some(409) => "already_exists",
        Some(413) => "failed_precondition",
        Some(429) => "resource_exhausted",
        Some(499) => "cancelled",
        Some(s) if s < 500 => "invalid_argument",
        Some(501) => "unimplemented",
        Some(503) => "unavailable",
        Some(504) => "deadline_exceeded",
        Some(s) if s < 600 => "internal_error",
        Some(_) => "unknown_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentry::trace::{Head, Randomness};

    fn config() -> Config {
        crate::sentry::event::tests::config()
    }

    #[test]
    fn golden_bytes() {
        let config = config();
        let trace = Trace::start(
            Some("771a43a4192642f0b136d5159a501700-a1b2c3d4e5f60718-1"),
            None,
            &Head {
                public_key: "key",
                release: "abc123",
                environment: "staging",
                traces_sample_rate: Some(0.0),
            },
            &Randomness {
                trace_id: [0x11; 16],
                span_id: [0x22; 8],
                sample_rand: 0,
            },
        );
        let call = OriginCall {
            started_ms: 1_795_521_600_010.0,
            duration_ms: 42,
            status: Some(500),
        };
        let hop = EdgeHop {
            id: EventId::from_random([0x33; 16]),
            trace: &trace,
            origin_span_id: "4444444444444444",
            method: "GET",
            path: "/orders/17",
            started_ms: 1_795_521_600_000.0,
            ended_ms: 1_795_521_600_055.0,
            status: 500,
            origin: Some(&call),
            config: &config,
        };
        let expected = concat!(
            r#"{"contexts":{"trace":{"data":{"http.response.status_code":500},"op":"http.server","#,
            r#""parent_span_id":"a1b2c3d4e5f60718","span_id":"2222222222222222","status":"internal_error","#,
            r#""trace_id":"771a43a4192642f0b136d5159a501700","type":"trace"}},"environment":"staging","#,
            r#""event_id":"3333333333334333b333333333333333","platform":"other","release":"abc123","#,
            r#""sdk":{"name":"edgeguard","version":"0.1.0"},"spans":[{"data":{"http.request.method":"GET","#,
            r#""http.response.status_code":500},"description":"GET /orders/17","op":"http.client","#,
            r#""origin":"auto.http.edgeguard","parent_span_id":"2222222222222222","span_id":"4444444444444444","#,
            r#""start_timestamp":1795521600.01,"status":"internal_error","timestamp":1795521600.052,"#,
            r#""trace_id":"771a43a4192642f0b136d5159a501700"}],"start_timestamp":1795521600.0,"#,
            r#""timestamp":1795521600.055,"transaction":"GET /orders/{id}","#,
            r#""transaction_info":{"source":"route"},"type":"transaction"}"#
        );
        assert_eq!(build(&hop).to_string(), expected);

        let timed_out = OriginCall {
            status: None,
            duration_ms: config.origin_timeout_ms,
            ..call
        };
        let hop = EdgeHop {
            origin: Some(&timed_out),
            status: 504,
            ..hop
        };
        let built = build(&hop);
        assert_eq!(built["spans"][0]["status"], "deadline_exceeded");
        assert_eq!(built["contexts"]["trace"]["status"], "deadline_exceeded");
        let no_origin = EdgeHop {
            origin: None,
            ..hop
        };
        assert_eq!(build(&no_origin)["spans"], serde_json::json!([]));
    }

    #[test]
    fn span_statuses() {
        let cases = [
            (Some(200), "ok"),
            (Some(302), "ok"),
            (Some(404), "not_found"),
            (Some(418), "invalid_argument"),
            (Some(429), "resource_exhausted"),
            (Some(500), "internal_error"),
            (Some(503), "unavailable"),
            (Some(504), "deadline_exceeded"),
            (None, "unavailable"),
        ];
        for (status, expected) in cases {
            assert_eq!(span_status(status), expected, "{status:?}");
        }
    }
}
