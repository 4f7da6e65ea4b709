//! Sentry's size limits, applied to an event before it is sent.
//!
//! Relay (Sentry's ingestion) trims or rejects what is too long; a 413 or a trimmed field shows
//! up as an error on the event. So edgeguard trims first, by characters on character boundaries,
//! and never drops the whole event for one long field. The limits are Sentry's own (see
//! `PROTOCOL.md`); where Sentry has none (header values, URLs) a generous one keeps a hostile
//! request from filling the 1 MiB event.

use serde_json::{Map, Value};
use std::io;

/// `transaction`.
pub const TRANSACTION_CHARS: usize = 200;
/// Tag keys and values.
pub const TAG_CHARS: usize = 200;
/// `environment`.
pub const ENVIRONMENT_CHARS: usize = 64;
/// `message` and each exception `value`.
pub const MESSAGE_CHARS: usize = 8192;
/// A request header, query or cookie value; also a breadcrumb's data value.
pub const VALUE_CHARS: usize = 1024;
/// `request.url` (and a breadcrumb's `url`).
pub const URL_CHARS: usize = 2048;
/// One context object, serialised.
pub const CONTEXT_BYTES: usize = 8 * 1024;
/// Within a context that is still too large, each string is cut to this first.
const CONTEXT_STRING_CHARS: usize = 256;
/// Stack frames per exception: the oldest and newest halves are kept.
pub const FRAMES: usize = 50;
/// Breadcrumbs per event (the newest are kept).
pub const BREADCRUMBS: usize = 100;

/// What marks a cut: the kept text ends with it, and the result is still within `max_chars`.
pub const ELLIPSIS: char = '…';

/// `value` cut to at most `max_chars` characters, the last one being `…` when it was cut.
pub fn truncate(value: &str, max_chars: usize) -> String {
    match value.char_indices().nth(max_chars) {
        None => value.to_owned(),
        Some(_) if max_chars == 0 => String::new(),
        Some(_) => {
            let keep = value
                .char_indices()
                .nth(max_chars - 1)
                .map_or(value.len(), |(at, _)| at);
            let mut cut = value.get(..keep).unwrap_or_default().to_owned();
            cut.push(ELLIPSIS);
            cut
        }
    }
}

/// Applies every limit to a built event, in place.
pub fn apply(event: &mut Value) {
    let Some(event) = event.as_object_mut() else {
        return;
    };
    cut_field(event, "transaction", TRANSACTION_CHARS);
    cut_field(event, "environment", ENVIRONMENT_CHARS);
    cut_field(event, "message", MESSAGE_CHARS);
    // Tag keys are edgeguard's own short names (`status`, `method`, ...); only values vary.
    if let Some(Value::Object(tags)) = event.get_mut("tags") {
        tags.values_mut().for_each(|v| cut_string(v, TAG_CHARS));
    }
    if let Some(Value::Array(fingerprint)) = event.get_mut("fingerprint") {
        fingerprint
            .iter_mut()
            .for_each(|part| cut_string(part, TRANSACTION_CHARS));
    }
    if let Some(Value::Array(values)) = event.get_mut("exception").and_then(|e| e.get_mut("values"))
    {
        for exception in values.iter_mut().filter_map(Value::as_object_mut) {
            cut_field(exception, "value", MESSAGE_CHARS);
            if let Some(Value::Array(frames)) = exception
                .get_mut("stacktrace")
                .and_then(|s| s.get_mut("frames"))
            {
                keep_ends(frames, FRAMES);
            }
        }
    }
    if let Some(Value::Object(request)) = event.get_mut("request") {
        cut_field(request, "url", URL_CHARS);
        for bag in ["headers", "cookies", "query_string", "env"] {
            if let Some(value) = request.get_mut(bag) {
                cut_strings(value, VALUE_CHARS);
            }
        }
    }
    if let Some(Value::Array(crumbs)) = event
        .get_mut("breadcrumbs")
        .and_then(|b| b.get_mut("values"))
    {
        let excess = crumbs.len().saturating_sub(BREADCRUMBS);
        crumbs.drain(..excess);
        for crumb in crumbs.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(Value::Object(data)) = crumb.get_mut("data") {
                for (key, value) in data.iter_mut() {
                    let max = if key == "url" { URL_CHARS } else { VALUE_CHARS };
                    cut_strings(value, max);
                }
            }
        }
    }
    if let Some(Value::Object(contexts)) = event.get_mut("contexts") {
        contexts.values_mut().for_each(fit_context);
    }
}

/// A context over [`CONTEXT_BYTES`] has its strings cut, then its largest members emptied
/// (`null`, which Sentry reads as absent) until it fits. `type` is kept: it says what the context
/// is. Sizes are counted ([`json_len`]), not written out.
fn fit_context(context: &mut Value) {
    if json_len(context) <= CONTEXT_BYTES {
        return;
    }
    cut_strings(context, CONTEXT_STRING_CHARS);
    while json_len(context) > CONTEXT_BYTES {
        let Some(members) = context.as_object_mut() else {
            return;
        };
        let largest = members
            .iter_mut()
            .filter(|(key, value)| key.as_str() != "type" && !value.is_null())
            .max_by_key(|(_, value)| json_len(value));
        match largest {
            Some((_, value)) => *value = Value::Null,
            None => break,
        }
    }
}

/// The length in bytes of `value`'s compact JSON, counted as serde_json writes it (the bytes
/// themselves are not kept).
fn json_len(value: &Value) -> usize {
    let mut counter = ByteCounter(0);
    // Neither side can fail: the counter takes every byte and a `Value` always serialises.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// An `io::Write` that only counts.
struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn cut_field(object: &mut Map<String, Value>, key: &str, max_chars: usize) {
    if let Some(value) = object.get_mut(key) {
        cut_string(value, max_chars);
    }
}

fn cut_string(value: &mut Value, max_chars: usize) {
    if let Value::String(text) = value {
        if text.chars().count() > max_chars {
            *text = truncate(text, max_chars);
        }
    }
}

/// Cuts every string inside `value` (object values, array items, nested).
fn cut_strings(value: &mut Value, max_chars: usize) {
    match value {
        Value::String(_) => cut_string(value, max_chars),
        Value::Array(items) => items.iter_mut().for_each(|v| cut_strings(v, max_chars)),
        Value::Object(members) => members.values_mut().for_each(|v| cut_strings(v, max_chars)),
        _ => {}
    }
}

/// Keeps the first and last `max / 2` items, as Sentry does with frames: where it started and
/// where it failed matter most.
fn keep_ends(items: &mut Vec<Value>, max: usize) {
    if items.len() <= max {
        return;
    }
    let head = max / 2;
    let tail = max - head;
    let start = head;
    let end = items.len() - tail;
    items.drain(start..end);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn truncates_by_characters_on_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("exactly10!", 10), "exactly10!");
        assert_eq!(truncate("abcdefghijk", 10), "abcdefghi…");
        // Multi-byte characters are counted as one and never split.
        assert_eq!(truncate("한국어한국어", 4), "한국어…");
        assert_eq!(truncate("é".repeat(300).as_str(), 200).chars().count(), 200);
        assert_eq!(truncate("abc", 0), "");
        assert_eq!(truncate("", 3), "");
    }

    #[test]
    fn event_fields_are_cut_to_sentrys_limits() {
        let long = "x".repeat(10_000);
        let mut event = json!({
            "transaction": long,
            "environment": long,
            "message": long,
            "tags": { "status": long },
            "fingerprint": ["503", long],
            "exception": { "values": [{
                "type": "T",
                "value": long,
                "stacktrace": { "frames": (0..60).map(|i| json!({ "lineno": i })).collect::<Vec<_>>() },
            }]},
            "request": {
                "url": long,
                "headers": { "user-agent": long },
                "query_string": [["q", long]],
                "cookies": [["theme", long]],
            },
            "breadcrumbs": { "values": (0..105).map(|i| json!({ "data": { "url": long, "n": i } })).collect::<Vec<_>>() },
        });
        apply(&mut event);
        let chars = |v: &serde_json::Value| v.as_str().unwrap().chars().count();
        assert_eq!(chars(&event["transaction"]), 200);
        assert_eq!(chars(&event["environment"]), 64);
        assert_eq!(chars(&event["message"]), 8192);
        assert_eq!(chars(&event["tags"]["status"]), 200);
        assert!(event["tags"]["status"].as_str().unwrap().ends_with('…'));
        assert_eq!(chars(&event["fingerprint"][1]), 200);
        assert_eq!(event["fingerprint"][0], "503");
        let exception = &event["exception"]["values"][0];
        assert_eq!(chars(&exception["value"]), 8192);
        let frames = exception["stacktrace"]["frames"].as_array().unwrap();
        assert_eq!(frames.len(), 50);
        assert_eq!(frames[24]["lineno"], 24);
        assert_eq!(frames[25]["lineno"], 35);
        assert_eq!(frames[49]["lineno"], 59);
        assert_eq!(chars(&event["request"]["url"]), 2048);
        assert_eq!(chars(&event["request"]["headers"]["user-agent"]), 1024);
        assert_eq!(chars(&event["request"]["query_string"][0][1]), 1024);
        assert_eq!(chars(&event["request"]["cookies"][0][1]), 1024);
        let crumbs = event["breadcrumbs"]["values"].as_array().unwrap();
        assert_eq!(crumbs.len(), 100);
        assert_eq!(crumbs[0]["data"]["n"], 5, "the newest are kept");
        assert_eq!(chars(&crumbs[0]["data"]["url"]), 2048);
    }

    #[test]
    fn a_context_is_fitted_into_8_kb_keeping_its_type() {
        let headers: serde_json::Map<String, serde_json::Value> = (0..100)
            .map(|i| (format!("x-header-{i:03}"), json!("v".repeat(500))))
            .collect();
        let mut event = json!({ "contexts": {
            "response": { "type": "response", "status_code": 503, "headers": headers },
            "runtime": { "type": "runtime", "name": "workerd" },
        }});
        let runtime_before = event["contexts"]["runtime"].clone();
        apply(&mut event);
        let contexts = &event["contexts"];
        assert!(json_len(&contexts["response"]) <= CONTEXT_BYTES);
        assert_eq!(contexts["runtime"], runtime_before);
        let response = &contexts["response"];
        assert_eq!(response["type"], "response");
        assert_eq!(response["status_code"], 503);
        assert_eq!(
            response["headers"],
            serde_json::Value::Null,
            "the largest member is emptied"
        );
    }

    #[test]
    fn small_events_are_unchanged() {
        let event = json!({
            "transaction": "GET /orders/{id}",
            "tags": { "status": "503" },
            "request": { "url": "https://shop.example/orders/1", "headers": { "accept": "*/*" } },
        });
        let mut cut = event.clone();
        apply(&mut cut);
        assert_eq!(cut, event);
    }

    #[test]
    fn json_len_counts_the_bytes_serde_json_writes() {
        let value = json!({ "a\"b": ["é\n\u{1}", 503, -1, null, true], "한": {} });
        assert_eq!(json_len(&value), value.to_string().len());
        assert_eq!(json_len(&json!({})), 2);
    }
}
