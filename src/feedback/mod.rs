//! Visitor feedback: the optional form on the error page, posted to [`PATH`] on the worker itself
//! and forwarded to Sentry as user feedback linked to the page's event.
//!
//! - **Token.** Isolates are not sticky (the POST may land on another isolate than the page), so
//!   "an event id this isolate issued" cannot be checked with memory alone. The page carries
//!   `<issued_at>.<hmac>`: HMAC-SHA256 over the event id and the issue time, under
//!   `FEEDBACK_SECRET` (shared by every isolate) or, when that is unset, a random key made per
//!   isolate (then only this isolate's ids verify). Tokens expire after [`TOKEN_MAX_AGE_SECS`].
//! - **Fields.** Every field is size-limited and checked; control characters are dropped.
//! - **Rate.** A token bucket per isolate ([`RateLimit`]) bounds what one isolate forwards.
//! - **Wire format.** The `feedback` envelope item Sentry documents for user feedback (see
//!   [`feedback_envelope`]); the older `user_report` item is deprecated.

pub mod form;

use crate::sentry::envelope;
use crate::sentry::event::put;
use crate::sentry::id::EventId;
use crate::sentry::time::rfc3339_millis;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use std::fmt;

/// The reserved path the form posts to; never proxied to the origin.
pub const PATH: &str = "/.edgeguard/feedback";
/// The largest form body accepted, in bytes: the longest fields in a non-Latin script, percent-
/// encoded (4000 Korean characters are 36 000 bytes on the wire), plus headroom.
pub const MAX_BODY_BYTES: usize = 48 * 1024;
/// How long a page's token stays valid.
pub const TOKEN_MAX_AGE_SECS: u64 = 3600;
/// Clock skew tolerated between isolates for a token "from the future".
const TOKEN_SKEW_SECS: u64 = 60;
/// Field limits, in characters.
pub const MAX_NAME: usize = 128;
pub const MAX_EMAIL: usize = 254;
pub const MAX_COMMENTS: usize = 4000;
/// The shortest `FEEDBACK_SECRET` accepted: anything shorter is guessable.
pub const MIN_SECRET_BYTES: usize = 32;
/// The token carries the MAC's first 16 bytes (128 bits): ample against forgery, shorter in
/// the page.
const TAG_BYTES: usize = 16;

/// The key feedback tokens are signed with.
#[derive(Clone)]
pub struct TokenKey(Vec<u8>);

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey([redacted])")
    }
}

/// Why `FEEDBACK_SECRET` was not used (the value itself is never printed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretError {
    TooShort { len: usize },
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::TooShort { len } => write!(
                f,
                "FEEDBACK_SECRET is {len} bytes, at least {MIN_SECRET_BYTES} are needed; \
                 using a per-isolate key instead"
            ),
        }
    }
}

impl TokenKey {
    /// The operator's secret, shared by every isolate.
    pub fn from_secret(secret: &str) -> Result<Self, SecretError> {
        let len = secret.len();
        if len < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort { len });
        }
        Ok(TokenKey(secret.as_bytes().to_vec()))
    }

    /// A key for this isolate alone, from random bytes the edge supplies.
    pub fn from_random(bytes: [u8; 32]) -> Self {
        TokenKey(bytes.to_vec())
    }

    /// HMAC-SHA256 over the event id and the issue time, ready to finalise or verify. HMAC
    /// takes a key of any length, so `new_from_slice` (its `Result` serves the fixed-key
    /// ciphers that share the trait) never fails here; were it to, no token would verify:
    /// closed, and no panic on the request path.
    fn mac(&self, event_id: &str, issued_secs: u64) -> Option<Hmac<Sha256>> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).ok()?;
        mac.update(format!("edgeguard-feedback-v1\n{event_id}\n{issued_secs}").as_bytes());
        Some(mac)
    }

    /// The token a page carries for `event_id`, issued at `now_ms`: `<issued secs>.<tag hex>`.
    pub fn issue(&self, event_id: &str, now_ms: f64) -> String {
        let secs = epoch_secs(now_ms);
        let tag = self
            .mac(event_id, secs)
            .map(|mac| mac.finalize().into_bytes());
        let tag = tag.as_deref().and_then(|tag| tag.get(..TAG_BYTES));
        format!("{secs}.{}", crate::hex::encode(tag.unwrap_or_default()))
    }

    /// Whether `token` was issued for `event_id` under this key within the allowed age. The tag
    /// is compared in constant time; `decode` fixes its length first, since
    /// `verify_truncated_left` alone accepts any leading part of the MAC, one byte included.
    pub fn verify(&self, event_id: &str, token: &str, now_ms: f64) -> Result<(), Rejection> {
        let (secs, tag) = token.split_once('.').ok_or(Rejection::BadToken)?;
        let issued: u64 = secs.parse().map_err(|_| Rejection::BadToken)?;
        let tag: [u8; TAG_BYTES] = crate::hex::decode(tag).ok_or(Rejection::BadToken)?;
        self.mac(event_id, issued)
            .ok_or(Rejection::BadToken)?
            .verify_truncated_left(&tag)
            .map_err(|_| Rejection::BadToken)?;
        let now = epoch_secs(now_ms);
        if issued > now.saturating_add(TOKEN_SKEW_SECS)
            || now.saturating_sub(issued) > TOKEN_MAX_AGE_SECS
        {
            return Err(Rejection::Expired);
        }
        Ok(())
    }
}

fn epoch_secs(ms: f64) -> u64 {
    if ms.is_finite() && ms > 0.0 {
        (ms / 1000.0) as u64
    } else {
        0
    }
}

/// Why a submission was refused; each maps to a status and a reason that is safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    MethodNotAllowed,
    UnsupportedMediaType,
    TooLarge,
    /// No `Content-Length`: the body's size must be known before it is read.
    LengthRequired,
    Missing(&'static str),
    Invalid(&'static str),
    TooLong(&'static str),
    Duplicate(&'static str),
    BadToken,
    Expired,
    RateLimited,
    /// No DSN: there is nowhere to send feedback.
    Disabled,
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::MethodNotAllowed => 405,
            Rejection::UnsupportedMediaType => 415,
            Rejection::TooLarge => 413,
            Rejection::LengthRequired => 411,
            Rejection::BadToken | Rejection::Expired => 403,
            Rejection::RateLimited => 429,
            Rejection::Disabled => 404,
            Rejection::Missing(_)
            | Rejection::Invalid(_)
            | Rejection::TooLong(_)
            | Rejection::Duplicate(_) => 400,
        }
    }
}

impl Rejection {
    /// The status's reason phrase, for the apology page.
    pub fn reason(&self) -> &'static str {
        match self.status() {
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            411 => "Length Required",
            413 => "Content Too Large",
            415 => "Unsupported Media Type",
            429 => "Too Many Requests",
            _ => "Bad Request",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::MethodNotAllowed => f.write_str("method not allowed (POST only)"),
            Rejection::UnsupportedMediaType => {
                f.write_str("body is not application/x-www-form-urlencoded")
            }
            Rejection::TooLarge => write!(f, "body over {MAX_BODY_BYTES} bytes"),
            Rejection::LengthRequired => f.write_str("no Content-Length"),
            Rejection::Missing(field) => write!(f, "missing field {field}"),
            Rejection::Invalid(field) => write!(f, "invalid field {field}"),
            Rejection::TooLong(field) => write!(f, "field {field} too long"),
            Rejection::Duplicate(field) => write!(f, "field {field} given twice"),
            Rejection::BadToken => f.write_str("token does not verify"),
            Rejection::Expired => f.write_str("token expired"),
            Rejection::RateLimited => f.write_str("rate limited"),
            Rejection::Disabled => f.write_str("feedback is off (no SENTRY_DSN)"),
        }
    }
}

/// Checks what can be checked before the body is read: method, content type and declared size.
pub fn check_request(
    method: &str,
    content_type: Option<&str>,
    content_length: Option<&str>,
) -> Result<usize, Rejection> {
    if !method.eq_ignore_ascii_case("POST") {
        return Err(Rejection::MethodNotAllowed);
    }
    if !is_form_content_type(content_type) {
        return Err(Rejection::UnsupportedMediaType);
    }
    let length: usize = content_length
        .ok_or(Rejection::LengthRequired)?
        .trim()
        .parse()
        .map_err(|_| Rejection::LengthRequired)?;
    if length > MAX_BODY_BYTES {
        return Err(Rejection::TooLarge);
    }
    Ok(length)
}

/// Whether a `Content-Type` is a urlencoded form (parameters such as `charset` allowed).
pub fn is_form_content_type(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|media| {
            media
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// A validated submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub event_id: String,
    pub token: String,
    pub name: String,
    pub email: String,
    pub comments: String,
}

impl Submission {
    /// Validates parsed form pairs (see [`crate::feedback::form::parse`]). Unknown fields are ignored (a
    /// customised page may add its own); known ones may appear once.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Self, Rejection> {
        let field = |name: &'static str| -> Result<Option<&str>, Rejection> {
            let mut values = pairs.iter().filter(|(k, _)| k == name);
            let first = values.next().map(|(_, v)| v.as_str());
            if values.next().is_some() {
                return Err(Rejection::Duplicate(name));
            }
            Ok(first)
        };
        let event_id = field("event_id")?.ok_or(Rejection::Missing("event_id"))?;
        if event_id.len() != 32
            || !event_id
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(Rejection::Invalid("event_id"));
        }
        let token = field("token")?.ok_or(Rejection::Missing("token"))?;
        if token.len() > 64
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.')
        {
            return Err(Rejection::BadToken);
        }
        let name = clean("name", field("name")?.unwrap_or_default(), MAX_NAME, false)?;
        let email = clean(
            "email",
            field("email")?.unwrap_or_default(),
            MAX_EMAIL,
            false,
        )?;
        if !email.is_empty() && !looks_like_email(&email) {
            return Err(Rejection::Invalid("email"));
        }
        let comments = clean(
            "comments",
            field("comments")?.unwrap_or_default(),
            MAX_COMMENTS,
            true,
        )?;
        if comments.is_empty() {
            return Err(Rejection::Missing("comments"));
        }
        Ok(Submission {
            event_id: event_id.to_owned(),
            token: token.to_owned(),
            name,
            email,
            comments,
        })
    }
}

/// Trims, drops control characters (keeping newlines and tabs when `multiline`), and enforces
/// the length limit in characters.
fn clean(
    field: &'static str,
    raw: &str,
    max_chars: usize,
    multiline: bool,
) -> Result<String, Rejection> {
    let text: String = raw
        .replace("\r\n", "\n")
        .chars()
        .filter(|&c| !c.is_control() || (multiline && (c == '\n' || c == '\t')))
        .collect();
    let text = text.trim();
    if text.chars().count() > max_chars {
        return Err(Rejection::TooLong(field));
    }
    Ok(text.to_owned())
}

/// A plain shape check (`local@domain.tld`, no spaces): enough to catch typos, not a validator.
fn looks_like_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(char::is_whitespace)
}

/// What the feedback event says besides the visitor's words.
#[derive(Debug, Clone, Copy)]
pub struct FeedbackContext<'a> {
    /// The new feedback event's own id (not the associated one).
    pub id: EventId,
    pub now_ms: f64,
    /// The page the visitor was on (`Referer` without query), if known.
    pub url: Option<&'a str>,
    pub environment: &'a str,
    pub release: Option<&'a str>,
}

/// The envelope for one feedback, as Sentry documents it (develop.sentry.dev, envelope items,
/// "User Feedback"): item type `feedback` whose payload is an event with `type: "feedback"` and
/// `contexts.feedback {message, contact_email, name, associated_event_id, url, source}`. The
/// envelope header's `event_id` is the feedback's own id.
pub fn feedback_envelope(submission: &Submission, ctx: &FeedbackContext<'_>) -> Vec<u8> {
    let mut feedback = Map::new();
    put(
        &mut feedback,
        "message",
        submission.comments.as_str().into(),
    );
    put(
        &mut feedback,
        "associated_event_id",
        submission.event_id.as_str().into(),
    );
    put(&mut feedback, "source", "edgeguard-error-page".into());
    for (key, value) in [
        ("name", submission.name.as_str()),
        ("contact_email", submission.email.as_str()),
        ("url", ctx.url.unwrap_or_default()),
    ] {
        if !value.is_empty() {
            put(&mut feedback, key, value.into());
        }
    }
    let mut event = Map::new();
    put(&mut event, "event_id", ctx.id.to_hex().into());
    put(&mut event, "type", "feedback".into());
    put(&mut event, "timestamp", rfc3339_millis(ctx.now_ms).into());
    put(&mut event, "platform", "other".into());
    put(&mut event, "level", "info".into());
    put(&mut event, "environment", ctx.environment.into());
    put(&mut event, "contexts", json!({ "feedback": feedback }));
    put(&mut event, "sdk", envelope::sdk());
    if let Some(release) = ctx.release {
        put(&mut event, "release", release.into());
    }
    let payload = Value::Object(event).to_string();
    envelope::single_item_envelope(Some(ctx.id), ctx.now_ms, "feedback", &payload)
}

/// A token bucket: up to `burst` submissions at once, refilled at `per_minute`. One per isolate;
/// the edge passes the clock in.
#[derive(Debug, Clone)]
pub struct RateLimit {
    burst: f64,
    per_ms: f64,
    tokens: f64,
    last_ms: f64,
}

impl RateLimit {
    pub fn new(burst: u32, per_minute: u32) -> Self {
        RateLimit {
            burst: f64::from(burst),
            per_ms: f64::from(per_minute) / 60_000.0,
            tokens: f64::from(burst),
            last_ms: f64::NAN,
        }
    }

    /// Takes one token if there is one at `now_ms`.
    pub fn allow(&mut self, now_ms: f64) -> bool {
        if self.last_ms.is_finite() && now_ms > self.last_ms {
            self.tokens = (self.tokens + (now_ms - self.last_ms) * self.per_ms).min(self.burst);
        }
        if !self.last_ms.is_finite() || now_ms > self.last_ms {
            self.last_ms = now_ms;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feedback::form;

    const ID: &str = "0123456789abcdef0123456789abcdef";
    const NOW: f64 = 1_795_521_600_000.0;

    fn key() -> TokenKey {
        TokenKey::from_random([7; 32])
    }

    #[test]
    fn tokens_verify_for_their_event_and_key_only() {
        let token = key().issue(ID, NOW);
        assert!(token.starts_with("1795521600."), "{token}");
        assert_eq!(token.len(), "1795521600.".len() + 32);
        // The bytes every earlier build issued (HMAC-SHA256, checked with Python's hmac), so
        // a page served before a deploy still takes feedback after it.
        assert_eq!(token, "1795521600.2700c715ef6a6cc1168e13738558721e");
        assert_eq!(key().verify(ID, &token, NOW + 5_000.0), Ok(()));
        let other_id = "f123456789abcdef0123456789abcdef";
        assert_eq!(
            key().verify(other_id, &token, NOW),
            Err(Rejection::BadToken)
        );
        let other_key = TokenKey::from_random([8; 32]);
        assert_eq!(other_key.verify(ID, &token, NOW), Err(Rejection::BadToken));
        // A changed issue time breaks the MAC (no extending a token's life).
        let forged = token.replacen("1795521600", "1795525200", 1);
        assert_eq!(key().verify(ID, &forged, NOW), Err(Rejection::BadToken));
        // A tag cut short would pass `verify_truncated_left` alone; uppercase is not ours.
        let cut_short = &token[..token.len() - 2];
        let uppercase = token.to_uppercase();
        assert_eq!(key().verify(ID, cut_short, NOW), Err(Rejection::BadToken));
        assert_eq!(key().verify(ID, &uppercase, NOW), Err(Rejection::BadToken));
        for junk in ["", ".", "abc", "1795521600", "1795521600.", "x.y"] {
            assert_eq!(
                key().verify(ID, junk, NOW),
                Err(Rejection::BadToken),
                "{junk}"
            );
        }
    }

    #[test]
    fn tokens_expire() {
        let token = key().issue(ID, NOW);
        let hour = 3_600_000.0;
        assert_eq!(key().verify(ID, &token, NOW + hour), Ok(()));
        assert_eq!(
            key().verify(ID, &token, NOW + hour + 1_000.0),
            Err(Rejection::Expired)
        );
        // Issued "in the future" beyond the skew allowance (another isolate's clock).
        assert_eq!(key().verify(ID, &token, NOW - 30_000.0), Ok(()));
        assert_eq!(
            key().verify(ID, &token, NOW - 120_000.0),
            Err(Rejection::Expired)
        );
    }

    #[test]
    fn secret_must_be_long_enough_and_is_never_printed() {
        let err = TokenKey::from_secret("short-secret").unwrap_err();
        assert_eq!(err, SecretError::TooShort { len: 12 });
        assert!(!err.to_string().contains("short-secret"));
        let secret = "0123456789abcdef0123456789abcdef";
        let a = TokenKey::from_secret(secret).unwrap();
        assert!(!format!("{a:?}").contains("0123"));
        // Two isolates with the same secret accept each other's tokens.
        let b = TokenKey::from_secret(secret).unwrap();
        assert_eq!(b.verify(ID, &a.issue(ID, NOW), NOW), Ok(()));
    }

    fn body(extra: &str) -> String {
        format!(
            "event_id={ID}&token={}&name=Ada+L&email=ada%40example.com&comments=I+clicked+pay{extra}",
            key().issue(ID, NOW)
        )
    }

    fn submit(body: &str) -> Result<Submission, Rejection> {
        Submission::from_pairs(&form::parse(body.as_bytes()))
    }

    #[test]
    fn accepts_a_complete_form() {
        let s = submit(&body("&unknown=ignored")).unwrap();
        assert_eq!(s.event_id, ID);
        assert_eq!(s.name, "Ada L");
        assert_eq!(s.email, "ada@example.com");
        assert_eq!(s.comments, "I clicked pay");
    }

    #[test]
    fn name_and_email_are_optional() {
        let token = key().issue(ID, NOW);
        let s = submit(&format!("event_id={ID}&token={token}&comments=hi")).unwrap();
        assert_eq!((s.name.as_str(), s.email.as_str()), ("", ""));
    }

    #[test]
    fn rejects_bad_fields() {
        let token = key().issue(ID, NOW);
        let long = "x".repeat(MAX_COMMENTS + 1);
        let cases = [
            (
                format!("token={token}&comments=hi"),
                Rejection::Missing("event_id"),
            ),
            (
                format!("event_id=abc&token={token}&comments=hi"),
                Rejection::Invalid("event_id"),
            ),
            (
                format!("event_id={}&token={token}&comments=hi", ID.to_uppercase()),
                Rejection::Invalid("event_id"),
            ),
            (
                format!("event_id={ID}&comments=hi"),
                Rejection::Missing("token"),
            ),
            (
                format!("event_id={ID}&token=%3Cx%3E&comments=hi"),
                Rejection::BadToken,
            ),
            (
                format!("event_id={ID}&token={token}"),
                Rejection::Missing("comments"),
            ),
            (
                format!("event_id={ID}&token={token}&comments=+%0A+"),
                Rejection::Missing("comments"),
            ),
            (
                format!("event_id={ID}&token={token}&comments={long}"),
                Rejection::TooLong("comments"),
            ),
            (
                format!(
                    "event_id={ID}&token={token}&comments=hi&name={}",
                    "n".repeat(MAX_NAME + 1)
                ),
                Rejection::TooLong("name"),
            ),
            (
                format!("event_id={ID}&token={token}&comments=hi&email=not-an-email"),
                Rejection::Invalid("email"),
            ),
            (
                format!("event_id={ID}&token={token}&comments=hi&email=a%40b.c&email=d%40e.f"),
                Rejection::Duplicate("email"),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(submit(&body), Err(want.clone()), "{body}");
            assert!(want.status() >= 400);
        }
    }

    #[test]
    fn limits_count_characters_and_control_characters_go() {
        let token = key().issue(ID, NOW);
        let korean = "가".repeat(MAX_COMMENTS);
        let s = submit(&format!(
            "event_id={ID}&token={token}&comments={}",
            korean.replace('가', "%EA%B0%80")
        ))
        .unwrap();
        assert_eq!(s.comments.chars().count(), MAX_COMMENTS);
        // The longest Korean form, as a browser encodes it, fits the body limit.
        let longest = format!(
            "event_id={ID}&token={token}&comments={}&name={}&email={}",
            korean.replace('가', "%EA%B0%80"),
            "%EA%B0%80".repeat(MAX_NAME),
            "a".repeat(MAX_EMAIL)
        );
        assert!(longest.len() < MAX_BODY_BYTES, "{}", longest.len());
        let s = submit(&format!(
            "event_id={ID}&token={token}&comments=a%0D%0Ab%00%1Bc%09d&name=x%0Ay"
        ))
        .unwrap();
        assert_eq!(s.comments, "a\nbc\td");
        assert_eq!(s.name, "xy");
    }

    #[test]
    fn form_content_type() {
        assert!(is_form_content_type(Some(
            "application/x-www-form-urlencoded"
        )));
        assert!(is_form_content_type(Some(
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8"
        )));
        assert!(!is_form_content_type(Some(
            "multipart/form-data; boundary=x"
        )));
        assert!(!is_form_content_type(Some("application/json")));
        assert!(!is_form_content_type(None));
    }

    #[test]
    fn request_checks_before_the_body() {
        let form = Some("application/x-www-form-urlencoded");
        assert_eq!(check_request("POST", form, Some("120")), Ok(120));
        assert_eq!(check_request("post", form, Some("49152")), Ok(49152));
        let cases = [
            ("GET", form, Some("1"), Rejection::MethodNotAllowed),
            ("HEAD", form, None, Rejection::MethodNotAllowed),
            (
                "POST",
                Some("text/plain"),
                Some("1"),
                Rejection::UnsupportedMediaType,
            ),
            ("POST", None, Some("1"), Rejection::UnsupportedMediaType),
            ("POST", form, None, Rejection::LengthRequired),
            ("POST", form, Some("-1"), Rejection::LengthRequired),
            ("POST", form, Some("49153"), Rejection::TooLarge),
        ];
        for (method, ct, len, want) in cases {
            assert_eq!(
                check_request(method, ct, len),
                Err(want.clone()),
                "{method} {ct:?} {len:?}"
            );
            assert!(!want.reason().is_empty());
        }
        assert_eq!(Rejection::RateLimited.reason(), "Too Many Requests");
        assert_eq!(Rejection::Expired.status(), 403);
    }

    #[test]
    fn envelope_golden_bytes() {
        let s = submit(&body("")).unwrap();
        let bytes = feedback_envelope(
            &s,
            &FeedbackContext {
                id: EventId::from_random([0x22; 16]),
                now_ms: NOW,
                url: Some("https://shop.example/cart"),
                environment: "production",
                release: Some("abc123"),
            },
        );
        let payload = concat!(
            r#"{"contexts":{"feedback":{"associated_event_id":"0123456789abcdef0123456789abcdef","#,
            r#""contact_email":"ada@example.com","message":"I clicked pay","name":"Ada L","#,
            r#""source":"edgeguard-error-page","url":"https://shop.example/cart"}},"#,
            r#""environment":"production","event_id":"2222222222224222a222222222222222","#,
            r#""level":"info","platform":"other","release":"abc123","#,
            r#""sdk":{"name":"edgeguard","version":"0.1.0"},"timestamp":"2026-11-24T12:00:00.000Z","type":"feedback"}"#
        );
        let expected = format!(
            "{}\n{{\"length\":{},\"type\":\"feedback\"}}\n{payload}\n",
            r#"{"event_id":"2222222222224222a222222222222222","sdk":{"name":"edgeguard","version":"0.1.0"},"sent_at":"2026-11-24T12:00:00.000Z"}"#,
            payload.len()
        );
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);
    }

    #[test]
    fn envelope_leaves_out_empty_optional_fields() {
        let token = key().issue(ID, NOW);
        let s = submit(&format!("event_id={ID}&token={token}&comments=hi")).unwrap();
        let bytes = feedback_envelope(
            &s,
            &FeedbackContext {
                id: EventId::from_random([1; 16]),
                now_ms: NOW,
                url: None,
                environment: "staging",
                release: None,
            },
        );
        let text = String::from_utf8(bytes).unwrap();
        let payload: serde_json::Value =
            serde_json::from_str(text.lines().nth(2).unwrap()).unwrap();
        let fb = &payload["contexts"]["feedback"];
        assert_eq!(fb["message"], "hi");
        assert!(fb.get("name").is_none() && fb.get("contact_email").is_none());
        assert!(fb.get("url").is_none() && payload.get("release").is_none());
    }

    #[test]
    fn rate_limit_bursts_then_refills() {
        let mut limit = RateLimit::new(3, 6); // one token per 10 s
        assert!(limit.allow(NOW));
        assert!(limit.allow(NOW));
        assert!(limit.allow(NOW));
        assert!(!limit.allow(NOW));
        assert!(!limit.allow(NOW + 9_000.0));
        assert!(limit.allow(NOW + 10_000.0));
        assert!(!limit.allow(NOW + 10_000.0));
        // A clock going backwards refills nothing.
        assert!(!limit.allow(NOW));
        // Long idle refills only up to the burst.
        let later = NOW + 3_600_000.0;
        assert!(limit.allow(later) && limit.allow(later) && limit.allow(later));
        assert!(!limit.allow(later));
    }
}
