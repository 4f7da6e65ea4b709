//! Trace propagation: one trace from the visitor's browser through the edge to the origin.
//!
//! Sentry links events that share a trace id, and its SDKs carry the trace across services in two
//! headers (develop.sentry.dev, "Trace Propagation" and "Dynamic Sampling Context"):
//! - `sentry-trace: <trace_id>-<span_id>[-<sampled>]` (32 and 16 lowercase hex digits, `1`/`0`);
//! - `baggage` (W3C), whose `sentry-` members are the dynamic sampling context (DSC): who started
//!   the trace (`public_key`, `release`, `environment`) and how it was sampled (`sample_rate`,
//!   `sampled`, `sample_rand`). Whoever starts a trace writes the DSC once; everyone after it
//!   passes it on unchanged (it is "frozen").
//!
//! [`Trace::start`] makes edgeguard's part of the trace for one request: it continues a valid
//! incoming `sentry-trace` (same trace id, the incoming span as parent, the incoming baggage
//! frozen and forwarded as it came) or starts a new trace with edgeguard's own DSC. A malformed
//! or oversized header is not an error: a new trace starts and nothing of it is reflected.
//!
//! Randomness and time come in from the edge, so the same input gives the same bytes here.

use crate::hex;
use crate::sentry::event::put;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Map, Value};

/// The trace header Sentry's SDKs read and write.
pub const SENTRY_TRACE: &str = "sentry-trace";
/// The W3C baggage header; its `sentry-` members are the dynamic sampling context.
pub const BAGGAGE: &str = "baggage";
/// The prefix of the baggage members that are Sentry's.
const SENTRY_PREFIX: &str = "sentry-";
/// W3C baggage limits (also sentry-javascript's `MAX_BAGGAGE_STRING_LENGTH`): members past
/// them are not sent on.
const MAX_BAGGAGE_MEMBERS: usize = 64;
const MAX_BAGGAGE_BYTES: usize = 8192;
/// `encodeURIComponent`'s set, which Sentry's SDKs use for baggage values: everything but
/// ASCII alphanumerics and `-_.!~*'()` is percent-encoded.
const BAGGAGE_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');
/// `sample_rand` has six decimals, as Python's sentry-sdk writes it; drawn as an integer in
/// `0..SAMPLE_RAND_STEPS` so the decision against a rate is exact.
const SAMPLE_RAND_STEPS: u64 = 1_000_000;

/// A valid incoming `sentry-trace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming<'a> {
    pub trace_id: &'a str,
    pub span_id: &'a str,
    pub sampled: Option<bool>,
}

/// Reads `sentry-trace` as sentry-javascript's `TRACEPARENT_REGEXP` does (optional spaces or
/// tabs around, lowercase hex), but requires both ids: a header without a trace id or span id
/// cannot be continued. Anything else (wrong lengths, uppercase, CR/LF, a 10 KB value) is `None`.
pub fn parse_sentry_trace(header: &str) -> Option<Incoming<'_>> {
    let value = header.trim_matches([' ', '\t']);
    let mut parts = value.split('-');
    let trace_id = parts.next().filter(|t| is_hex(t, 32))?;
    let span_id = parts.next().filter(|s| is_hex(s, 16))?;
    let sampled = match parts.next() {
        None => None,
        Some("1") => Some(true),
        Some("0") => Some(false),
        Some(_) => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(Incoming {
        trace_id,
        span_id,
        sampled,
    })
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What edgeguard itself puts in a trace it starts: the DSN's public key and the release and
/// environment of its events.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    pub public_key: &'a str,
    pub release: &'a str,
    pub environment: &'a str,
    /// `SENTRY_TRACES_SAMPLE_RATE`; `None`: edgeguard makes no sampling decision (and sends no
    /// transactions), leaving it to whoever comes next, as an SDK without tracing does.
    pub traces_sample_rate: Option<f64>,
}

/// The random bytes one request's trace needs, drawn by the edge in one call.
#[derive(Debug, Clone, Copy)]
pub struct Randomness {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sample_rand: u32,
}

/// edgeguard's part of one request's trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// edgeguard's span for the request (16 hex digits): the span id of its events, of its
    /// transaction's root, and of the `sentry-trace` the origin receives (so the origin's spans
    /// and events have it as their parent).
    pub span_id: String,
    /// The span that sent the request to edgeguard, when the trace was continued.
    pub parent_span_id: Option<String>,
    /// The sampling decision: the incoming one, else edgeguard's own when it has a rate, else
    /// none (deferred to the origin).
    pub sampled: Option<bool>,
    /// Whether edgeguard sends a transaction for this request: tracing is on and the request
    /// is sampled.
    pub sends_transaction: bool,
    /// The dynamic sampling context (keys without `sentry-`, values decoded), in the order
    /// they go out.
    dsc: Vec<(String, String)>,
    /// The `baggage` the origin receives; `None`: leave the visitor's as it came.
    outgoing_baggage: Option<String>,
}

impl Trace {
    /// Continues the visitor's trace when `sentry_trace` is valid, else starts one.
    /// `baggage` is the visitor's `baggage` header (all of them, comma-joined).
    pub fn start(
        sentry_trace: Option<&str>,
        baggage: Option<&str>,
        head: &Head<'_>,
        random: &Randomness,
    ) -> Trace {
        let members: Vec<&str> = baggage
            .into_iter()
            .flat_map(|b| b.split(','))
            .map(|m| m.trim_matches([' ', '\t']))
            .filter(|m| !m.is_empty())
            .collect();
        let span_id = hex::encode(&random.span_id);
        let own_rand = random_sample_rand(random.sample_rand);
        let decide = |incoming: Option<bool>, rand: f64| {
            incoming.or_else(|| head.traces_sample_rate.map(|rate| rand < rate))
        };
        let tracing = head.traces_sample_rate.is_some();
        if let Some(incoming) = sentry_trace.and_then(parse_sentry_trace) {
            // Continued: the incoming DSC is frozen (possibly empty), the baggage goes on as
            // the visitor sent it.
            let dsc: Vec<(String, String)> =
                members.iter().filter_map(|m| sentry_member(m)).collect();
            let rand = dsc
                .iter()
                .find(|(k, _)| k == "sample_rand")
                .and_then(|(_, v)| crate::decimal::parse(v))
                .filter(|r| (0.0..1.0).contains(r))
                .unwrap_or(own_rand.1);
            let sampled = decide(incoming.sampled, rand);
            return Trace {
                trace_id: incoming.trace_id.to_owned(),
                span_id,
                parent_span_id: Some(incoming.span_id.to_owned()),
                sampled,
                sends_transaction: tracing && sampled == Some(true),
                dsc,
                outgoing_baggage: None,
            };
        }
        let trace_id = hex::encode(&random.trace_id);
        let sampled = decide(None, own_rand.1);
        let mut dsc = vec![
            ("trace_id".to_owned(), trace_id.clone()),
            ("public_key".to_owned(), head.public_key.to_owned()),
            ("release".to_owned(), head.release.to_owned()),
            ("environment".to_owned(), head.environment.to_owned()),
            ("sample_rand".to_owned(), own_rand.0),
        ];
        if let (Some(rate), Some(sampled)) = (head.traces_sample_rate, sampled) {
            // serde_json writes the number (ryu): no float formatting of core linked for it.
            dsc.push(("sample_rate".to_owned(), Value::from(rate).to_string()));
            dsc.push(("sampled".to_owned(), sampled.to_string()));
        }
        // The visitor's own members go on (they are not Sentry's to drop), within the W3C
        // limits; Sentry members of a trace not continued belong to no trace edgeguard is in.
        let own = dsc.iter().map(|(key, value)| {
            let value = utf8_percent_encode(value, BAGGAGE_VALUE);
            format!("{SENTRY_PREFIX}{key}={value}")
        });
        let theirs = members
            .iter()
            .filter(|m| !m.starts_with(SENTRY_PREFIX))
            .map(|m| (*m).to_owned());
        let mut outgoing = String::new();
        let mut count = 0;
        for member in own.chain(theirs) {
            // As sentry-javascript's `objectToBaggageHeader`: a member that would pass the size
            // limit is skipped, the ones after it may still fit.
            let added = usize::from(count > 0) + member.len();
            if count == MAX_BAGGAGE_MEMBERS || outgoing.len() + added > MAX_BAGGAGE_BYTES {
                continue;
            }
            if count > 0 {
                outgoing.push(',');
            }
            outgoing.push_str(&member);
            count += 1;
        }
        Trace {
            trace_id,
            span_id,
            parent_span_id: None,
            sampled,
            sends_transaction: tracing && sampled == Some(true),
            dsc,
            outgoing_baggage: Some(outgoing),
        }
    }

    /// The `sentry-trace` value the origin receives: edgeguard's span as the parent, and the
    /// decision when there is one.
    pub fn sentry_trace(&self) -> String {
        let flag = match self.sampled {
            Some(true) => "-1",
            Some(false) => "-0",
            None => "",
        };
        format!("{}-{}{flag}", self.trace_id, self.span_id)
    }

    /// The headers to set on the origin request: `sentry-trace`, and `baggage` when edgeguard
    /// started the trace (a continued trace's baggage is the visitor's, forwarded unchanged).
    pub fn propagation_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![(SENTRY_TRACE, self.sentry_trace())];
        if let Some(baggage) = &self.outgoing_baggage {
            headers.push((BAGGAGE, baggage.clone()));
        }
        headers
    }

    /// `contexts.trace` of edgeguard's events (and transactions, which add `op` and `status`).
    pub fn context(&self) -> Map<String, Value> {
        let mut context = Map::new();
        put(&mut context, "type", "trace".into());
        put(&mut context, "trace_id", self.trace_id.as_str().into());
        put(&mut context, "span_id", self.span_id.as_str().into());
        if let Some(parent) = &self.parent_span_id {
            put(&mut context, "parent_span_id", parent.as_str().into());
        }
        context
    }

    /// The envelope header's `trace`: the DSC, when it names a trace and a public key (Relay
    /// needs both; a frozen incoming DSC may lack them, and is then left out).
    pub fn envelope_header(&self) -> Option<Value> {
        let has = |key: &str| self.dsc.iter().any(|(k, _)| k == key);
        if !(has("trace_id") && has("public_key")) {
            return None;
        }
        let dsc: Map<String, Value> = self
            .dsc
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        Some(dsc.into())
    }
}

/// One `sentry-<key>=<value>[;props]` baggage member as `(key, decoded value)`.
fn sentry_member(member: &str) -> Option<(String, String)> {
    let (key, value) = member.strip_prefix(SENTRY_PREFIX)?.split_once('=')?;
    let value = value.split(';').next().unwrap_or_default().trim();
    let value = percent_decode_str(value).decode_utf8().ok()?;
    Some((key.trim().to_owned(), value.into_owned()))
}

/// `sample_rand` from a uniform `u32`: its six-decimal text and its value.
fn random_sample_rand(draw: u32) -> (String, f64) {
    let steps = (u64::from(draw) * SAMPLE_RAND_STEPS) >> 32;
    (
        format!("0.{steps:06}"),
        steps as f64 / SAMPLE_RAND_STEPS as f64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "771a43a4192642f0b136d5159a501700";
    const S: &str = "a1b2c3d4e5f60718";

    fn head(rate: Option<f64>) -> Head<'static> {
        Head {
            public_key: "key",
            release: "abc 1.0",
            environment: "staging",
            traces_sample_rate: rate,
        }
    }

    fn random(sample_rand: u32) -> Randomness {
        Randomness {
            trace_id: [0x11; 16],
            span_id: [0x22; 8],
            sample_rand,
        }
    }

    #[test]
    fn parses_sentry_trace_as_the_sdks_write_it() {
        let full = format!("{T}-{S}-1");
        assert_eq!(
            parse_sentry_trace(&full),
            Some(Incoming {
                trace_id: T,
                span_id: S,
                sampled: Some(true)
            })
        );
        assert_eq!(
            parse_sentry_trace(&format!(" \t{T}-{S}-0 ")).map(|i| i.sampled),
            Some(Some(false))
        );
        assert_eq!(
            parse_sentry_trace(&format!("{T}-{S}")).map(|i| i.sampled),
            Some(None)
        );
    }

    #[test]
    fn refuses_malformed_sentry_trace() {
        let long = "a".repeat(10 * 1024);
        for bad in [
            "",
            "-",
            T,
            &format!("{T}-"),
            &format!("{T}-{S}-2"),
            &format!("{T}-{S}-1-1"),
            &format!("{T}0-{S}"),
            &format!("{}-{S}", &T[1..]),
            &format!("{T}-{}", &S[1..]),
            &format!("{}-{S}", T.to_uppercase()),
            &format!("{}-{S}", T.replace('7', "g")),
            &format!("{T}-{S}\r\nx-evil: 1"),
            &format!("{T}\n-{S}"),
            long.as_str(),
        ] {
            assert_eq!(parse_sentry_trace(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn starts_a_new_trace_with_edgeguards_dsc() {
        let trace = Trace::start(None, Some("vendor=a, other=b;p=1"), &head(None), &random(0));
        let t = "11111111111111111111111111111111";
        let s = "2222222222222222";
        assert_eq!(trace.trace_id, t);
        assert_eq!(trace.parent_span_id, None);
        assert_eq!(trace.sampled, None);
        assert!(!trace.sends_transaction);
        assert_eq!(
            trace.propagation_headers(),
            vec![
                (SENTRY_TRACE, format!("{t}-{s}")),
                (
                    BAGGAGE,
                    format!(
                        "sentry-trace_id={t},sentry-public_key=key,sentry-release=abc%201.0,\
                         sentry-environment=staging,sentry-sample_rand=0.000000,vendor=a,other=b;p=1"
                    )
                ),
            ]
        );
        assert_eq!(
            trace.envelope_header().unwrap().to_string(),
            format!(
                r#"{{"environment":"staging","public_key":"key","release":"abc 1.0","sample_rand":"0.000000","trace_id":"{t}"}}"#
            )
        );
        assert_eq!(
            Value::from(trace.context()).to_string(),
            format!(r#"{{"span_id":"{s}","trace_id":"{t}","type":"trace"}}"#)
        );
    }

    #[test]
    fn a_rate_makes_the_decision_and_writes_it() {
        // 0x8000_0000 is sample_rand 0.5: sampled below a rate of 0.6, not below 0.5.
        let yes = Trace::start(None, None, &head(Some(0.6)), &random(0x8000_0000));
        assert_eq!(yes.sampled, Some(true));
        assert!(yes.sends_transaction);
        assert!(yes.sentry_trace().ends_with("-1"));
        let baggage = &yes.propagation_headers()[1].1;
        assert!(
            baggage.ends_with(
                "sentry-sample_rand=0.500000,sentry-sample_rate=0.6,sentry-sampled=true"
            ),
            "{baggage}"
        );
        let no = Trace::start(None, None, &head(Some(0.5)), &random(0x8000_0000));
        assert_eq!(no.sampled, Some(false));
        assert!(!no.sends_transaction);
        assert!(no.sentry_trace().ends_with("-0"));
        let zero = Trace::start(None, None, &head(Some(0.0)), &random(0));
        assert_eq!(zero.sampled, Some(false));
    }

    #[test]
    fn continues_a_valid_trace_with_frozen_baggage() {
        let incoming = format!("{T}-{S}-1");
        let baggage = "sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-public_key=browser,\
                       sentry-release=web%402,sentry-sample_rand=0.9,other=1";
        let trace = Trace::start(Some(&incoming), Some(baggage), &head(Some(0.0)), &random(0));
        assert_eq!(trace.trace_id, T);
        assert_eq!(trace.parent_span_id.as_deref(), Some(S));
        assert_eq!(trace.span_id, "2222222222222222");
        // The incoming decision wins over a rate of 0.
        assert_eq!(trace.sampled, Some(true));
        assert!(trace.sends_transaction);
        // Only sentry-trace is set: the baggage goes on as the visitor sent it.
        assert_eq!(
            trace.propagation_headers(),
            vec![(SENTRY_TRACE, format!("{T}-2222222222222222-1"))]
        );
        assert_eq!(
            trace.envelope_header().unwrap().to_string(),
            format!(
                r#"{{"public_key":"browser","release":"web@2","sample_rand":"0.9","trace_id":"{T}"}}"#
            )
        );
        assert_eq!(
            Value::from(trace.context()).to_string(),
            format!(
                r#"{{"parent_span_id":"{S}","span_id":"2222222222222222","trace_id":"{T}","type":"trace"}}"#
            )
        );
    }

    #[test]
    fn continued_without_a_decision_uses_the_incoming_sample_rand() {
        let incoming = format!("{T}-{S}");
        let baggage = "sentry-trace_id=x,sentry-public_key=k,sentry-sample_rand=0.25";
        let trace = Trace::start(
            Some(&incoming),
            Some(baggage),
            &head(Some(0.3)),
            &random(u32::MAX),
        );
        assert_eq!(trace.sampled, Some(true));
        let none = Trace::start(Some(&incoming), Some(baggage), &head(None), &random(0));
        assert_eq!(none.sampled, None);
        assert!(!none.sends_transaction);
        assert!(none.sentry_trace().ends_with(&none.span_id));
        // No Sentry baggage at all: the frozen DSC is empty and the envelope has no `trace`.
        let bare = Trace::start(Some(&incoming), None, &head(None), &random(0));
        assert_eq!(bare.envelope_header(), None);
    }

    #[test]
    fn a_malformed_trace_starts_anew_and_drops_foreign_sentry_members() {
        let trace = Trace::start(
            Some("not-a-trace"),
            Some("sentry-trace_id=evil,sentry-public_key=evil,keep=me"),
            &head(None),
            &random(0),
        );
        assert_eq!(trace.parent_span_id, None);
        let baggage = &trace.propagation_headers()[1].1;
        assert!(!baggage.contains("evil"), "{baggage}");
        assert!(baggage.ends_with(",keep=me"), "{baggage}");
    }

    #[test]
    fn baggage_stays_within_the_w3c_limits() {
        let many: Vec<String> = (0..100).map(|i| format!("m{i}=v")).collect();
        let trace = Trace::start(None, Some(&many.join(",")), &head(None), &random(0));
        let baggage = &trace.propagation_headers()[1].1;
        assert_eq!(baggage.split(',').count(), MAX_BAGGAGE_MEMBERS);
        let big = format!("big={}", "x".repeat(9000));
        let trace = Trace::start(
            None,
            Some(&format!("{big},small=1")),
            &head(None),
            &random(0),
        );
        let baggage = &trace.propagation_headers()[1].1;
        assert!(baggage.len() <= MAX_BAGGAGE_BYTES);
        assert!(!baggage.contains("big="));
        assert!(baggage.ends_with(",small=1"));
        assert!(baggage.starts_with("sentry-trace_id="));
    }
}
