//! The tunnel for the site's own browser SDK (`Sentry.init({ dsn, tunnel: "/path" })`): the
//! browser posts its envelopes to a path on the site, and the worker forwards them to Sentry,
//! where ad blockers cannot drop them.
//!
//! Every decision is here, on plain values: which requests are the tunnel's
//! ([`Tunnel::claims`]), what is checked before the body is read ([`check_request`]), and which
//! project an envelope may go to, read from its header line ([`Tunnel::target`]). Only projects
//! of ours: the envelope's `dsn` must name one of the allowed DSNs (host, port, public key,
//! project), and the envelope URL is that allowed DSN's, never built from the request (no SSRF).
//! The edge (`edge::tunnel`) streams the body on unchanged.

use crate::fnv::Fnv32;
use crate::sentry::dsn::Dsn;
use crate::sentry::ratelimit::{CATEGORY_ERROR, CATEGORY_TRANSACTION};

/// The largest envelope forwarded (declared `Content-Length`): Sentry's limit for one
/// session-replay recording is 10 MiB uncompressed, and the SDK sends them compressed; 20 MiB
/// leaves room for attachments. The body is streamed, never held whole.
pub const MAX_BODY_BYTES: u64 = 20 * 1024 * 1024;
/// At most this much of the body (inflated, for a gzip body) is read to find the envelope
/// header and the first item header: both are a line of JSON, far shorter than this.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Sentry's answer must come within this, else the browser gets a 504 (the issue's bound is
/// 30 s; the browser SDK's own fetch has no timeout of its own to rely on).
pub const TIMEOUT_MS: u32 = 15_000;
/// Per isolate, the feedback form's kind of cap: a token bucket of `BURST` envelopes at once,
/// refilled at `PER_MINUTE`. A busy site's browsers send an envelope per error, session update
/// and replay segment; the body is streamed, so one in flight holds no buffer.
pub const BURST: u32 = 60;
pub const PER_MINUTE: u32 = 600;

/// The tunnel's settings: its path and the projects it forwards to.
pub struct Tunnel {
    /// `SENTRY_TUNNEL_PATH`: every method there is answered by the worker.
    pub path: String,
    /// The paths Sentry's JavaScript SDK derives with `tunnel: true`, one per allowed DSN
    /// ([`derived_path`]); a POST there is the tunnel's.
    derived: Vec<String>,
    /// `SENTRY_DSN` first, then `SENTRY_TUNNEL_ALLOWED_DSNS`.
    allowed: Vec<Dsn>,
}

/// Why the tunnel did not forward an envelope, or could not get Sentry's answer: each maps to
/// the status the browser gets and a short reason (the body, and the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotPost,
    /// No `Content-Length`: the size must be known before anything is read.
    LengthRequired,
    TooLarge,
    /// An encoding other than gzip.
    UnsupportedMediaType,
    /// The first line is not a JSON object (no line, garbage, cut off).
    BadHeader,
    /// The envelope header has no `dsn` string, or one that is not a DSN.
    NoDsn,
    /// The `dsn` names a project this tunnel does not serve.
    Foreign,
    /// The isolate's concurrency or rate cap.
    Busy,
    /// Sentry could not be reached.
    Unreachable,
    /// Sentry did not answer within [`TIMEOUT_MS`].
    Timeout,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::NotPost => 405,
            Refusal::LengthRequired => 411,
            Refusal::TooLarge => 413,
            Refusal::UnsupportedMediaType => 415,
            Refusal::BadHeader | Refusal::NoDsn => 400,
            Refusal::Foreign => 403,
            Refusal::Busy => 429,
            Refusal::Unreachable => 502,
            Refusal::Timeout => 504,
        }
    }

    /// Safe to show and log: never anything from the envelope.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NotPost => "POST only",
            Refusal::LengthRequired => "no Content-Length",
            Refusal::TooLarge => "over 20 MiB",
            Refusal::UnsupportedMediaType => "encoding not gzip",
            Refusal::BadHeader => "no envelope header",
            Refusal::NoDsn => "no dsn in the header",
            Refusal::Foreign => "foreign project",
            Refusal::Busy => "too many envelopes",
            Refusal::Unreachable => "Sentry unreachable",
            Refusal::Timeout => "Sentry timed out",
        }
    }
}

/// Where an accepted envelope goes.
pub struct Target<'a> {
    pub dsn: &'a Dsn,
    /// The data category of its first item, to count it in a client report if it does not
    /// arrive; `None`: not counted.
    pub category: Option<&'static str>,
}

impl Tunnel {
    /// The tunnel at `path` for `allowed` (at least one DSN, the edge's own first).
    pub fn new(path: String, allowed: Vec<Dsn>) -> Tunnel {
        let derived = allowed.iter().map(derived_path).collect();
        Tunnel {
            path,
            derived,
            allowed,
        }
    }

    /// Whether this request is the tunnel's: any method at `SENTRY_TUNNEL_PATH` (a GET gets
    /// 405), and a POST at a derived path (with the SDK's optional trailing slash); a GET there
    /// is the origin's, as the SDK's own server side leaves it.
    /// `method` is read only for a derived path.
    pub fn claims(&self, path: &str, method: impl FnOnce() -> String) -> bool {
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        path == self.path || (self.derived.iter().any(|d| trimmed == d) && method() == "POST")
    }

    /// The project for an envelope whose first bytes (at least its header line) are `head`.
    pub fn target(&self, head: &[u8]) -> Result<Target<'_>, Refusal> {
        let mut lines = head.split(|&b| b == b'\n');
        let header = lines.next().filter(|_| head.contains(&b'\n'));
        let dsn = header
            .and_then(|line| string_field(line, "dsn"))
            .ok_or(Refusal::BadHeader)?
            .ok_or(Refusal::NoDsn)?;
        let dsn = Dsn::parse(&dsn).map_err(|_| Refusal::NoDsn)?;
        let allowed = self
            .allowed
            .iter()
            .find(|a| a.same_project(&dsn))
            .ok_or(Refusal::Foreign)?;
        let item_type = lines
            .next()
            .and_then(|line| string_field(line, "type"))
            .flatten();
        Ok(Target {
            dsn: allowed,
            category: item_type.as_deref().and_then(category),
        })
    }
}

/// What a body that passed [`check_request`] is.
#[derive(Debug, PartialEq, Eq)]
pub struct Body {
    pub length: u64,
    pub gzip: bool,
}

/// Checks what can be checked before the body is read: method, declared size and encoding
/// (none or gzip). The content type is not checked: the SDK sends `text/plain` (or
/// `application/x-sentry-envelope` to a same-origin tunnel), a type any page may post
/// cross-site, so a check would stop nothing the header's `dsn` test does not (it measured
/// 79 B gzip); the envelope goes on as `application/x-sentry-envelope`.
pub fn check_request(
    method: &str,
    content_length: Option<&str>,
    content_encoding: Option<&str>,
) -> Result<Body, Refusal> {
    if method != "POST" {
        return Err(Refusal::NotPost);
    }
    let gzip = match content_encoding.map(str::trim) {
        None | Some("") => false,
        Some(e) if e.eq_ignore_ascii_case("identity") => false,
        Some(e) if e.eq_ignore_ascii_case("gzip") => true,
        Some(_) => return Err(Refusal::UnsupportedMediaType),
    };
    let length: u64 = content_length
        .ok_or(Refusal::LengthRequired)?
        .trim()
        .parse()
        .map_err(|_| Refusal::LengthRequired)?;
    if length > MAX_BODY_BYTES {
        return Err(Refusal::TooLarge);
    }
    Ok(Body { length, gzip })
}

/// The path Sentry's JavaScript SDK derives for `tunnel: true` (`getTunnelPath` in
/// `@sentry/core`, read in 11.12.0 and 11.19.0): `/` and the 32-bit FNV-1a hash, in base 36,
/// of the DSN as the SDK writes it without its secret key.
pub fn derived_path(dsn: &Dsn) -> String {
    let mut fnv = Fnv32::new();
    for piece in dsn.public_form() {
        fnv.write(piece.as_bytes());
    }
    let hash = fnv.finish();
    let mut digits = Vec::new();
    let mut n = hash;
    loop {
        let d = (n % 36) as u8;
        digits.push(if d < 10 { b'0' + d } else { b'a' + d - 10 });
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.push(b'/');
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// The data category to count an undelivered envelope in, by its first item's type: events
/// and transactions, what the issue asks to count ("events that did not reach Sentry"); not
/// sessions, replays or the SDK's own client reports. (A table of every Sentry category
/// measured +199 B gzip.)
fn category(item_type: &str) -> Option<&'static str> {
    match item_type {
        "event" => Some(CATEGORY_ERROR),
        "transaction" => Some(CATEGORY_TRANSACTION),
        _ => None,
    }
}

/// The string value of field `key` in the JSON object that is `line`: `None` if `line` is not
/// a JSON object (`{` ... `}`), `Some(None)` if no `"key": "..."` is in it.
///
/// A scanner, not a parser: an unescaped `"key"` cannot occur inside a JSON string, and the
/// value is read up to the next `"` (the SDKs write a DSN without escapes; one with escapes
/// does not parse as a DSN and is refused). A nested `"dsn"` would be read too; no SDK writes
/// one, and whatever is read can only select one of the allowed DSNs. Hand-written rather than
/// `serde_json`'s deserializer, which edgeguard does not otherwise link (+6.6 KB gzip); a full
/// hand-written JSON reader measured +874 B gzip more than this scanner.
pub fn string_field(line: &[u8], key: &str) -> Option<Option<String>> {
    let object = std::str::from_utf8(line).ok()?.trim();
    let mut rest = object.strip_prefix('{')?.strip_suffix('}')?;
    let needle = format!("\"{key}\"");
    while let Some(at) = rest.find(&needle) {
        rest = rest.get(at + needle.len()..)?.trim();
        let value = rest.strip_prefix(':').map(str::trim);
        if let Some(value) = value.and_then(|v| v.strip_prefix('"')) {
            return Some(value.split('"').next().map(str::to_owned));
        }
    }
    Some(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "https://ownkey@o1.ingest.example/42";
    const BROWSER: &str = "http://browserkey@127.0.0.1:9000/7";

    fn tunnel() -> Tunnel {
        let allowed = [OWN, BROWSER].map(|d| Dsn::parse(d).unwrap()).to_vec();
        Tunnel::new("/.edgeguard/tunnel".to_owned(), allowed)
    }

    fn envelope(header: &str) -> Vec<u8> {
        format!("{header}\n{{\"type\":\"event\"}}\n{{}}").into_bytes()
    }

    #[test]
    fn derived_path_matches_the_sdk() {
        // Computed with @sentry/core 11.19.0 in node: `"/" + fnv1a32(dsnToString(makeDsn(dsn)))`,
        // what its `getTunnelPath` returns.
        let cases = [
            ("https://abc123@o1.ingest.sentry.io/42", "/1e3sr80"),
            ("http://pub:sec@127.0.0.1:9000/sentry/prefix/7", "/n2fsvb"),
        ];
        for (dsn, want) in cases {
            assert_eq!(derived_path(&Dsn::parse(dsn).unwrap()), want, "{dsn}");
        }
    }

    #[test]
    fn claims_its_path_and_a_post_to_a_derived_path() {
        let t = tunnel();
        let derived = derived_path(&Dsn::parse(BROWSER).unwrap());
        let claims = |method: &str, path: &str| t.claims(path, || method.to_owned());
        assert!(claims("GET", "/.edgeguard/tunnel"));
        assert!(claims("POST", "/.edgeguard/tunnel"));
        assert!(claims("POST", &derived));
        assert!(claims("POST", &format!("{derived}/")));
        assert!(!claims("GET", &derived));
        assert!(!claims("POST", "/.edgeguard/tunnel/x"));
        assert!(!claims("POST", "/"));
    }

    #[test]
    fn request_checks_before_the_body() {
        let check = check_request;
        let plain = Body {
            length: 10,
            gzip: false,
        };
        assert_eq!(check("POST", Some("10"), None), Ok(plain));
        assert_eq!(
            check("POST", Some(" 5 "), Some("GZIP")),
            Ok(Body {
                length: 5,
                gzip: true
            })
        );
        assert!(check("POST", Some("5"), Some("identity")).is_ok_and(|b| !b.gzip));
        assert_eq!(check("GET", Some("1"), None), Err(Refusal::NotPost));
        assert_eq!(check("post", Some("1"), None), Err(Refusal::NotPost));
        assert_eq!(
            check("POST", Some("1"), Some("br")),
            Err(Refusal::UnsupportedMediaType)
        );
        assert_eq!(check("POST", None, None), Err(Refusal::LengthRequired));
        assert_eq!(
            check("POST", Some("-1"), None),
            Err(Refusal::LengthRequired)
        );
        let cap = MAX_BODY_BYTES.to_string();
        assert!(check("POST", Some(&cap), None).is_ok());
        let over = (MAX_BODY_BYTES + 1).to_string();
        assert_eq!(check("POST", Some(&over), None), Err(Refusal::TooLarge));
    }

    #[test]
    fn targets_the_allowed_dsn_never_the_request() {
        let t = tunnel();
        // The browser's DSN, with another scheme and path prefix: the allowed DSN's URL is used.
        let head = envelope(
            r#"{"event_id":"ab","dsn":"https://browserkey@127.0.0.1:9000/x/7","sdk":{"name":"sentry.javascript.browser","version":"11.19.0"},"sent_at":"2026-12-08T00:00:00.000Z"}"#,
        );
        let target = t.target(&head).unwrap();
        assert_eq!(
            target.dsn.envelope_url(),
            "http://127.0.0.1:9000/api/7/envelope/"
        );
        assert_eq!(target.category, Some("error"));
        let head = format!("{{\"dsn\":\"{OWN}\"}}\n{{\"type\":\"session\"}}\n{{}}");
        let target = t.target(head.as_bytes()).unwrap();
        assert_eq!(
            target.dsn.envelope_url(),
            "https://o1.ingest.example/api/42/envelope/"
        );
        assert_eq!(target.category, None);
        // Only the header line is needed.
        let target = t
            .target(b"{\"dsn\":\"https://ownkey@o1.ingest.example/42\"}\n")
            .unwrap();
        assert_eq!(target.category, None);
    }

    #[test]
    fn refuses_foreign_missing_and_garbage_headers() {
        let t = tunnel();
        let cases: [(&[u8], Refusal); 13] = [
            (
                b"{\"dsn\":\"https://ownkey@evil.example/42\"}\n",
                Refusal::Foreign,
            ),
            (
                b"{\"dsn\":\"https://ownkey@o1.ingest.example/43\"}\n",
                Refusal::Foreign,
            ),
            (
                b"{\"dsn\":\"https://otherkey@o1.ingest.example/42\"}\n",
                Refusal::Foreign,
            ),
            (
                b"{\"dsn\":\"http://browserkey@127.0.0.1:9001/7\"}\n",
                Refusal::Foreign,
            ),
            (b"{\"event_id\":\"ab\"}\n{}", Refusal::NoDsn),
            (b"{\"dsn\":42}\n", Refusal::NoDsn),
            (b"{\"dsn\":\"not a dsn\"}\n", Refusal::NoDsn),
            (b"{}\n", Refusal::NoDsn),
            (b"", Refusal::BadHeader),
            (
                b"{\"dsn\":\"https://ownkey@o1.ingest.example/42\"}",
                Refusal::BadHeader,
            ),
            (b"\x1f\x8b\x08garbage\n", Refusal::BadHeader),
            (
                b"{\"dsn\":\"https:\\/\\/ownkey@o1.ingest.example\\/42\"}\n",
                Refusal::NoDsn,
            ),
            (
                b"{\"dsn\":\"https://ownkey@o1.ingest.example/42\"} x\n",
                Refusal::BadHeader,
            ),
        ];
        for (head, want) in cases {
            assert_eq!(
                t.target(head).err(),
                Some(want),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn reads_one_string_field_of_a_json_object() {
        let f = |line: &str| string_field(line.as_bytes(), "dsn");
        assert_eq!(
            f(r#" { "a" : [1, {"x":"y"}] , "dsn" : "https://k@h/1" } "#),
            Some(Some("https://k@h/1".to_owned()))
        );
        // Only the unescaped key counts; a string that mentions it does not.
        assert_eq!(
            f(r#"{"a":"say \"dsn\": \"x\"","dsn":"y"}"#),
            Some(Some("y".to_owned()))
        );
        assert_eq!(f(r#"{"dsn":42}"#), Some(None));
        assert_eq!(f(r#"{"sdn":"x"}"#), Some(None));
        assert_eq!(f("{}"), Some(None));
        for bad in ["", "[]", "{", r#"{"dsn":"x""#, "dsn", r#"{"dsn":"x"} x"#] {
            assert_eq!(f(bad), None, "{bad}");
        }
    }

    #[test]
    fn statuses_and_reasons() {
        let all = [
            (Refusal::NotPost, 405),
            (Refusal::LengthRequired, 411),
            (Refusal::TooLarge, 413),
            (Refusal::UnsupportedMediaType, 415),
            (Refusal::BadHeader, 400),
            (Refusal::NoDsn, 400),
            (Refusal::Foreign, 403),
            (Refusal::Busy, 429),
            (Refusal::Unreachable, 502),
            (Refusal::Timeout, 504),
        ];
        for (refusal, status) in all {
            assert_eq!(refusal.status(), status);
            assert!(!refusal.reason().is_empty());
        }
    }
}
