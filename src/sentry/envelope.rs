//! The envelope: the bytes POSTed to Sentry's `/api/<project>/envelope/` endpoint.
//!
//! ```text
//! {"event_id":"…","sdk":{…},"sent_at":"…"}\n
//! {"length":<payload bytes>,"type":"event"}\n
//! <event JSON>\n
//! ```
//! The item header carries the payload's byte length, so the payload is serialised first.

use crate::sentry::event::put;
use crate::sentry::id::EventId;
use crate::sentry::time::rfc3339_millis;
use crate::{SDK_NAME, SDK_VERSION};
use serde_json::{json, Map, Value};

/// The content type Sentry requires on envelope uploads.
pub const CONTENT_TYPE: &str = "application/x-sentry-envelope";

/// Serialises one event into an envelope. The DSN is deliberately not put in the header: it is
/// optional there and would copy a credential into every upload.
///
/// `trace` is the trace's dynamic sampling context (`trace::Trace::envelope_header`), which
/// Sentry reads for sampling without opening the item.
pub fn event_envelope(
    id: EventId,
    sent_at_ms: f64,
    event: &Value,
    trace: Option<Value>,
) -> Vec<u8> {
    envelope(Some(id), sent_at_ms, trace, "event", &event.to_string())
}

/// Serialises one transaction (`transaction::build`) into an envelope, with its trace's DSC.
pub fn transaction_envelope(
    id: EventId,
    sent_at_ms: f64,
    transaction: &Value,
    trace: Option<Value>,
) -> Vec<u8> {
    envelope(
        Some(id),
        sent_at_ms,
        trace,
        "transaction",
        &transaction.to_string(),
    )
}

/// `{"name":"edgeguard","version":…}`: the `sdk` block of envelope headers and events.
pub fn sdk() -> Value {
    json!({ "name": SDK_NAME, "version": SDK_VERSION })
}

/// An envelope with one item: the header (`event_id` when the item is an event or a feedback,
/// `sent_at`, `sdk`), then the item.
pub fn single_item_envelope(
    event_id: Option<EventId>,
    sent_at_ms: f64,
    item_type: &str,
    payload: &str,
) -> Vec<u8> {
    envelope(event_id, sent_at_ms, None, item_type, payload)
}

fn envelope(
    event_id: Option<EventId>,
    sent_at_ms: f64,
    trace: Option<Value>,
    item_type: &str,
    payload: &str,
) -> Vec<u8> {
    let mut header = Map::new();
    if let Some(trace) = trace {
        put(&mut header, "trace", trace);
    }
    put(&mut header, "sent_at", rfc3339_millis(sent_at_ms).into());
    put(&mut header, "sdk", sdk());
    if let Some(id) = event_id {
        put(&mut header, "event_id", id.to_hex().into());
    }
    let mut out = Value::Object(header).to_string().into_bytes();
    out.push(b'\n');
    out.extend_from_slice(&item(item_type, payload));
    out
}

/// One item: its header (type and payload length in bytes), the payload, a newline. Appended
/// to an envelope's bytes, e.g. a `client_report` riding along with an event.
pub fn item(item_type: &str, payload: &str) -> Vec<u8> {
    let item_header = json!({ "type": item_type, "length": payload.len() });
    let mut out = item_header.to_string().into_bytes();
    out.push(b'\n');
    out.extend_from_slice(payload.as_bytes());
    out.push(b'\n');
    out
}

/// The `client_report` item for drop counts (see `delivery::Discards::client_report`).
pub fn client_report_item(report: &Value) -> Vec<u8> {
    item("client_report", &report.to_string())
}

/// An envelope holding only a `client_report`: no event, so no `event_id` in the header.
pub fn client_report_envelope(sent_at_ms: f64, report: &Value) -> Vec<u8> {
    single_item_envelope(None, sent_at_ms, "client_report", &report.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes() {
        let id = EventId::from_random([0x11; 16]);
        let event = json!({"event_id": id.to_hex(), "message": "héllo"});
        let bytes = event_envelope(id, 1_795_521_600_000.0, &event, None);
        let expected = concat!(
            r#"{"event_id":"11111111111141119111111111111111","sdk":{"name":"edgeguard","version":"0.1.0"},"sent_at":"2026-11-24T12:00:00.000Z"}"#,
            "\n",
            r#"{"length":66,"type":"event"}"#,
            "\n",
            r#"{"event_id":"11111111111141119111111111111111","message":"héllo"}"#,
            "\n"
        );
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);
    }

    #[test]
    fn trace_header_and_transaction_item() {
        let id = EventId::from_random([0x11; 16]);
        let trace = json!({"public_key": "key", "trace_id": "t"});
        let bytes = transaction_envelope(id, 1_795_521_600_000.0, &json!({"a": 1}), Some(trace));
        let expected = concat!(
            r#"{"event_id":"11111111111141119111111111111111","sdk":{"name":"edgeguard","version":"0.1.0"},"sent_at":"2026-11-24T12:00:00.000Z","trace":{"public_key":"key","trace_id":"t"}}"#,
            "\n",
            r#"{"length":7,"type":"transaction"}"#,
            "\n",
            r#"{"a":1}"#,
            "\n"
        );
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);
    }

    #[test]
    fn client_report_bytes() {
        let report = json!({"timestamp": 1_795_521_600u64, "discarded_events": [
            {"reason": "sample_rate", "category": "error", "quantity": 2}
        ]});
        let payload = r#"{"discarded_events":[{"category":"error","quantity":2,"reason":"sample_rate"}],"timestamp":1795521600}"#;
        let item_bytes = format!("{{\"length\":102,\"type\":\"client_report\"}}\n{payload}\n");
        assert_eq!(
            String::from_utf8(client_report_item(&report)).unwrap(),
            item_bytes
        );
        let alone = client_report_envelope(1_795_521_600_000.0, &report);
        assert_eq!(
            String::from_utf8(alone).unwrap(),
            format!(
                "{}\n{item_bytes}",
                r#"{"sdk":{"name":"edgeguard","version":"0.1.0"},"sent_at":"2026-11-24T12:00:00.000Z"}"#
            )
        );
        assert_eq!(payload.len(), 102);
    }

    #[test]
    fn length_counts_bytes_not_chars() {
        let id = EventId::from_random([0; 16]);
        let event = json!({"m": "ééé"});
        let bytes = event_envelope(id, 0.0, &event, None);
        let text = String::from_utf8(bytes).unwrap();
        let mut lines = text.split('\n');
        let _header = lines.next().unwrap();
        let item: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        let payload = lines.next().unwrap();
        assert_eq!(item["length"], payload.len());
        assert_eq!(payload.len(), 14);
    }

    /// Every golden test here and in `event` relies on serde_json's default map, a `BTreeMap`:
    /// keys written in byte order whatever order they were inserted in. A crate in the build
    /// turning on serde_json's `preserve_order` feature would change every envelope's bytes.
    #[test]
    fn object_keys_are_written_in_byte_order() {
        let mut object = Map::new();
        for key in ["type", "b", "B", "é", "a b", "", "_", "10", "9"] {
            object.insert(key.into(), Value::Null);
        }
        object.insert("b".into(), 2.into());
        assert_eq!(
            Value::Object(object).to_string(),
            r#"{"":null,"10":null,"9":null,"B":null,"_":null,"a b":null,"b":2,"type":null,"é":null}"#
        );
    }
}
