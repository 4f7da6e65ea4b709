//! Just enough JSON to write what edgeguard sends: events, envelope headers, client reports,
//! the JSON error body.
//!
//! edgeguard only ever *writes* JSON, and only integers (timestamps go out as RFC 3339 strings).
//! `serde_json` cost ~9 KB gzip of wasm for that (its `Value` and B-tree map, its float
//! formatter, its parser's error strings, `std::io` error kinds from its writer), shipped to
//! every edge. This module is the part edgeguard uses, with the same bytes out:
//! - objects keep their keys sorted (byte order, as `serde_json`'s default `BTreeMap` does), so
//!   the output is stable and the golden tests keep their bytes. Keys are kept sorted on
//!   insert, which needs a binary search rather than a sort;
//! - strings are escaped as `serde_json` (and RFC 8259) does: `"` and `\` and the control
//!   characters U+0000..U+001F, as `\b \t \n \f \r` where JSON has a short form and `\u00xx`
//!   (lower-case hex) otherwise. Everything else, non-ASCII included, is written as is: a Rust
//!   `str` is valid UTF-8, so a lone surrogate cannot occur.
//!
//! One non-generic writer over a `String` (generic code is copied per type into the wasm), and a
//! counting twin, [`Value::json_len`], that measures without allocating (size limits use it).

/// A JSON value, as edgeguard builds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Bool(bool),
    /// A non-negative integer (counts, sizes, statuses, seconds).
    UInt(u64),
    /// A signed integer.
    Int(i64),
    String(String),
    Array(Vec<Value>),
    Object(Object),
}

/// A JSON object: members sorted by key, each key once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Object {
    members: Vec<(String, Value)>,
}

impl Object {
    pub const fn new() -> Self {
        Object {
            members: Vec::new(),
        }
    }

    /// Sets `key` to `value`, replacing what it held (as a map does).
    #[inline]
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.insert_value(key.into(), value.into());
    }

    /// [`Object::insert`] by value, for building in one expression.
    #[inline]
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.insert_value(key.into(), value.into());
        self
    }

    fn insert_value(&mut self, key: String, value: Value) {
        match self.find(&key) {
            Ok(at) => {
                if let Some(member) = self.members.get_mut(at) {
                    member.1 = value;
                }
            }
            Err(at) => self.members.insert(at, (key, value)),
        }
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.members.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        let at = self.find(key).ok()?;
        self.members.get(at).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        let at = self.find(key).ok()?;
        self.members.get_mut(at).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|(k, _)| k.as_str())
    }

    /// Members in key order; the keys stay read-only so the order holds.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut Value)> {
        self.members.iter_mut().map(|(k, v)| (k.as_str(), v))
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Value> {
        self.members.iter_mut().map(|(_, v)| v)
    }
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    pub fn as_object_mut(&mut self) -> Option<&mut Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// An object's member; `None` for a missing key or a value that is not an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object()?.get(key)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.as_object_mut()?.get_mut(key)
    }

    /// The compact JSON text.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(self.json_len());
        self.write(&mut out);
        out
    }

    /// Appends the compact JSON text to `out`.
    pub fn write(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(true) => out.push_str("true"),
            Value::Bool(false) => out.push_str("false"),
            Value::UInt(n) => push_u64(out, *n),
            Value::Int(n) => {
                if *n < 0 {
                    out.push('-');
                }
                push_u64(out, n.unsigned_abs());
            }
            Value::String(s) => push_string(out, s),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Value::Object(object) => {
                out.push('{');
                for (i, (key, value)) in object.members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_string(out, key);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }

    /// The length in bytes of [`Value::to_json`], counted without writing it.
    pub fn json_len(&self) -> usize {
        match self {
            Value::Null | Value::Bool(true) => 4,
            Value::Bool(false) => 5,
            Value::UInt(n) => digits(*n),
            Value::Int(n) => usize::from(*n < 0) + digits(n.unsigned_abs()),
            Value::String(s) => string_len(s),
            Value::Array(items) => {
                2 + items.len().saturating_sub(1) + items.iter().map(Value::json_len).sum::<usize>()
            }
            Value::Object(object) => {
                let members = &object.members;
                2 + members.len().saturating_sub(1)
                    + members
                        .iter()
                        .map(|(k, v)| string_len(k) + 1 + v.json_len())
                        .sum::<usize>()
            }
        }
    }
}

/// The escape for a byte that JSON requires escaped: its short form's letter, or `u` for
/// `\u00xx`. `None`: the byte is written as is.
fn escape(byte: u8) -> Option<u8> {
    match byte {
        b'"' => Some(b'"'),
        b'\\' => Some(b'\\'),
        0x08 => Some(b'b'),
        b'\t' => Some(b't'),
        b'\n' => Some(b'n'),
        0x0c => Some(b'f'),
        b'\r' => Some(b'r'),
        0x00..=0x1f => Some(b'u'),
        _ => None,
    }
}

fn push_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (at, byte) in s.bytes().enumerate() {
        let Some(letter) = escape(byte) else {
            continue;
        };
        // Escaped bytes are ASCII, so `start..at` lies on character boundaries.
        out.push_str(s.get(start..at).unwrap_or_default());
        out.push('\\');
        out.push(char::from(letter));
        if letter == b'u' {
            out.push_str("00");
            for nibble in [byte >> 4, byte & 0xf] {
                out.push(HEX.get(usize::from(nibble)).map_or('0', |&h| char::from(h)));
            }
        }
        start = at + 1;
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

fn string_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|byte| match escape(byte) {
            None => 1,
            Some(b'u') => 6,
            Some(_) => 2,
        })
        .sum::<usize>()
}

/// The largest power of ten not above `n` (1 for 0).
fn top_power(n: u64) -> u64 {
    let mut power = 1;
    while n / power >= 10 {
        power *= 10;
    }
    power
}

fn digits(n: u64) -> usize {
    let mut count = 1;
    let mut power = top_power(n);
    while power > 1 {
        power /= 10;
        count += 1;
    }
    count
}

/// Decimal digits by hand: `core::fmt`'s integer path is not needed for this.
fn push_u64(out: &mut String, n: u64) {
    let mut power = top_power(n);
    loop {
        out.push(char::from(b'0' + (n / power % 10) as u8));
        if power == 1 {
            break;
        }
        power /= 10;
    }
}

macro_rules! from_uint {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Self {
                Value::UInt(u64::from(n))
            }
        }
    )*};
}
from_uint!(u8, u16, u32, u64);

impl From<usize> for Value {
    fn from(n: usize) -> Self {
        Value::UInt(n as u64)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Self {
        Value::Array(items)
    }
}

impl From<Object> for Value {
    fn from(object: Object) -> Self {
        Value::Object(object)
    }
}

/// Converting to and from `serde_json` (a dev-dependency) so tests can build inputs and inspect
/// output with it; going out through [`Value::to_json`] also checks the text parses.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Object, Value};

    pub(crate) fn from_serde(value: serde_json::Value) -> Value {
        match value {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Value::UInt(u),
                (None, Some(i)) => Value::Int(i),
                _ => panic!("no floats in edgeguard's JSON: {n}"),
            },
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(items) => {
                Value::Array(items.into_iter().map(from_serde).collect())
            }
            serde_json::Value::Object(map) => {
                let mut object = Object::new();
                for (k, v) in map {
                    object.insert(k, from_serde(v));
                }
                Value::Object(object)
            }
        }
    }

    /// Parses what [`Value::to_json`] wrote (and checks the counted length on the way).
    pub(crate) fn to_serde(value: &Value) -> serde_json::Value {
        let text = value.to_json();
        assert_eq!(value.json_len(), text.len(), "json_len of {text}");
        serde_json::from_str(&text).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{from_serde, to_serde};
    use super::*;
    use serde_json::json;

    /// Our bytes, checked against the expected text, `json_len`, and serde_json's own bytes.
    fn check(value: &Value, expected: &str) {
        assert_eq!(value.to_json(), expected);
        assert_eq!(value.json_len(), expected.len(), "{expected}");
        assert_eq!(serde_json::to_string(&to_serde(value)).unwrap(), expected);
    }

    #[test]
    fn every_control_character_is_escaped_as_serde_json_does() {
        for byte in 0u8..0x20 {
            let text = char::from(byte).to_string();
            let ours = Value::from(text.as_str());
            let theirs = serde_json::to_string(&text).unwrap();
            assert_eq!(ours.to_json(), theirs, "byte {byte:#04x}");
            assert_eq!(ours.json_len(), theirs.len());
        }
        check(&Value::from("\u{8}\t\n\u{c}\r"), r#""\b\t\n\f\r""#);
        check(
            &Value::from("\u{0}\u{1}\u{1f}\u{b}"),
            r#""\u0000\u0001\u001f\u000b""#,
        );
    }

    #[test]
    fn quotes_and_backslashes_are_escaped_and_the_rest_passes_through() {
        check(&Value::from(r#"say "hi" \o/"#), r#""say \"hi\" \\o/""#);
        check(&Value::from("/ ' < > & \u{7f}"), "\"/ ' < > & \u{7f}\"");
        check(
            &Value::from("héllo 한국어 🦀 \u{2028}"),
            "\"héllo 한국어 🦀 \u{2028}\"",
        );
        check(&Value::from("a\"é\n🦀\\"), "\"a\\\"é\\n🦀\\\\\"");
        check(&Value::from(""), r#""""#);
    }

    #[test]
    fn scalars() {
        check(&Value::Null, "null");
        check(&Value::Bool(true), "true");
        check(&Value::Bool(false), "false");
        check(&Value::UInt(0), "0");
        check(&Value::UInt(9), "9");
        check(&Value::UInt(10), "10");
        check(&Value::UInt(1_795_521_600), "1795521600");
        check(&Value::UInt(u64::MAX), "18446744073709551615");
        check(&Value::from(u16::MAX), "65535");
        check(&Value::from(u32::MAX), "4294967295");
        check(&Value::from(usize::MAX), &usize::MAX.to_string());
        check(&Value::Int(0), "0");
        check(&Value::Int(-1), "-1");
        check(&Value::Int(i64::MIN), "-9223372036854775808");
        check(&Value::Int(i64::MAX), "9223372036854775807");
        for n in (0..20).map(|p| 10u64.pow(p)) {
            check(&Value::UInt(n - 1), &(n - 1).to_string());
            check(&Value::UInt(n), &n.to_string());
        }
    }

    #[test]
    fn containers_nest_and_empty_ones_are_compact() {
        check(&Value::Array(vec![]), "[]");
        check(&Value::Object(Object::new()), "{}");
        check(&Value::Array(vec![Value::Array(vec![])]), "[[]]");
        let nested = Object::new()
            .with(
                "a",
                vec![Value::from(1u32), Value::Null, Value::Object(Object::new())],
            )
            .with("b", Object::new().with("c", Object::new().with("d", "e")));
        check(
            &Value::Object(nested),
            r#"{"a":[1,null,{}],"b":{"c":{"d":"e"}}}"#,
        );
    }

    #[test]
    fn keys_are_sorted_by_bytes_and_set_once() {
        let mut object = Object::new();
        for key in [
            "type",
            "b",
            "B",
            "é",
            "a b",
            "",
            "cloud.region",
            "_",
            "10",
            "9",
            "aa",
            "a",
        ] {
            object.insert(key, key);
        }
        object.insert("b", 2u32);
        let expected = serde_json::to_string(&to_serde(&Value::Object(object.clone()))).unwrap();
        check(&Value::Object(object.clone()), &expected);
        assert_eq!(
            object.keys().collect::<Vec<_>>(),
            [
                "",
                "10",
                "9",
                "B",
                "_",
                "a",
                "a b",
                "aa",
                "b",
                "cloud.region",
                "type",
                "é"
            ]
        );
        assert_eq!(object.get("b"), Some(&Value::UInt(2)));
        assert_eq!(object.len(), 12);
        assert!(object.get("c").is_none());
        assert_eq!(
            Value::Object(Object::new().with("k", "\"")).to_json(),
            r#"{"k":"\""}"#
        );
        check(
            &Value::Object(Object::new().with("a\nb", 1u8)),
            r#"{"a\nb":1}"#,
        );
    }

    #[test]
    fn same_bytes_as_serde_json_for_a_mixed_document() {
        let doc = json!({
            "z": [1, 2, {"y": null, "x": true, "w": false}],
            "event_id": "abababababab4bababababababababab",
            "tags": {"status": "503", "method": "GET", "ray_id": "8f00-AMS\u{1}"},
            "n": -42,
            "": "",
        });
        let ours = from_serde(doc.clone());
        check(&ours, &serde_json::to_string(&doc).unwrap());
        assert_eq!(to_serde(&ours), doc);
    }
}
