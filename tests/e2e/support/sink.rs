//! A strict fake Sentry, after relay's `mini_sentry`: it accepts only
//! `POST /api/<project>/envelope/` with the right content type and auth, parses
//! the envelope exactly as Relay would (header line, then items framed by
//! `length`), and records anything else as a violation answered with 400.
//! `event` and `feedback` items (Sentry's user feedback: an event of `type: "feedback"` with
//! `contexts.feedback`) are checked field by field.
//! `client_report` items (dropped-event counts) are checked against Sentry's documented reasons
//! and categories. A body with `Content-Encoding: gzip` is inflated first (any other encoding
//! is a violation). The answer is set by [`SinkMode`], changeable while running.
//! Tests end with `sink.assert_no_violations()`.

use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http::{write_response, ServerRequest};
use super::server::{BadRequest, Handler, Server, Stopping};
use super::{lock, wait_timeout};

pub const PUBLIC_KEY: &str = "e2epublickey0123456789abcdef0123";
pub const PROJECT_ID: &str = "42";

/// How the sink answers a well-formed envelope.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SinkMode {
    /// 200 `{"id":"<event_id>"}`.
    Accept,
    /// 200 as `Accept`, with this `X-Sentry-Rate-Limits` header.
    AcceptWithLimits(&'static str),
    /// 429 with these `X-Sentry-Rate-Limits` and `Retry-After` headers (either may be absent).
    TooManyRequests {
        rate_limits: Option<&'static str>,
        retry_after: Option<&'static str>,
    },
    /// 500 after recording the envelope.
    Fail500,
    /// Records the envelope and never answers (until the sink is dropped).
    Hang,
    /// Records the envelope and closes the connection without a byte of answer.
    Close,
}

#[derive(Clone, Debug)]
pub struct Item {
    pub header: Value,
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct Envelope {
    pub header: Value,
    pub items: Vec<Item>,
    /// The whole HTTP request as received (head + decoded body), for
    /// "this secret appears nowhere" checks.
    pub raw: Vec<u8>,
    /// Body bytes on the wire (compressed, if it was).
    pub wire_len: usize,
    /// Body bytes once inflated.
    pub plain_len: usize,
    pub gzip: bool,
    /// `sentry_client` of the X-Sentry-Auth header: `edgeguard/<v>`, or another SDK's (the
    /// tracing tests' origin app reports to the same sink with Sentry's Python SDK).
    pub client: String,
}

impl Envelope {
    /// The parsed payload of the `event` item, if any.
    pub fn event(&self) -> Option<Value> {
        self.items
            .iter()
            .find(|i| i.header["type"] == "event")
            .map(|i| serde_json::from_slice(&i.payload).expect("checked on receipt"))
    }

    /// The parsed payload of the `transaction` item, if any.
    pub fn transaction(&self) -> Option<Value> {
        self.items
            .iter()
            .find(|i| i.header["type"] == "transaction")
            .map(|i| serde_json::from_slice(&i.payload).expect("checked on receipt"))
    }

    /// Whether edgeguard sent it (rather than another SDK reporting to the same sink).
    pub fn is_edgeguard(&self) -> bool {
        self.client.starts_with("edgeguard/")
    }

    /// The parsed payloads of the `client_report` items.
    pub fn client_reports(&self) -> Vec<Value> {
        self.items
            .iter()
            .filter(|i| i.header["type"] == "client_report")
            .map(|i| serde_json::from_slice(&i.payload).expect("checked on receipt"))
            .collect()
    }

    /// The parsed payload of the `feedback` item, if any.
    pub fn feedback(&self) -> Option<Value> {
        self.items
            .iter()
            .find(|i| i.header["type"] == "feedback")
            .map(|i| serde_json::from_slice(&i.payload).expect("checked on receipt"))
    }
}

#[derive(Default)]
struct State {
    requests: usize,
    envelopes: Vec<Envelope>,
    /// Raw bytes of every request, well-formed or not.
    raw: Vec<Vec<u8>>,
    violations: Vec<String>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

struct SinkHandler {
    mode: Arc<Mutex<SinkMode>>,
    shared: Arc<Shared>,
}

impl Handler for SinkHandler {
    fn handle(&self, req: ServerRequest, stream: &mut TcpStream, stopping: &Stopping) {
        let checked = check_request(&req);
        let body = match &checked {
            Ok((_, _, Body { plain, .. }, _)) => plain.clone(),
            Err(_) => req.body.clone(),
        };
        let mut raw = req.raw_head.clone().into_bytes();
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&body);
        let mode = *lock(&self.mode);
        let event_id = {
            let mut st = lock(&self.shared.state);
            st.requests += 1;
            st.raw.push(raw.clone());
            let event_id = match checked {
                Ok((header, items, body, client)) => {
                    let id = header["event_id"].as_str().unwrap_or("").to_string();
                    st.envelopes.push(Envelope {
                        header,
                        items,
                        raw,
                        wire_len: req.body.len(),
                        plain_len: body.plain.len(),
                        gzip: body.gzip,
                        client,
                    });
                    Ok(id)
                }
                Err(v) => {
                    let v = format!("{} {}: {v}", req.method, req.target);
                    st.violations.push(v.clone());
                    Err(v)
                }
            };
            self.shared.cv.notify_all();
            event_id
        };
        let _ = match (event_id, mode) {
            (Err(v), _) => {
                write_response(stream, 400, &[("Content-Type", "text/plain")], v.as_bytes())
            }
            (Ok(id), SinkMode::Accept) => write_response(
                stream,
                200,
                &[("Content-Type", "application/json")],
                serde_json::json!({ "id": id }).to_string().as_bytes(),
            ),
            (Ok(id), SinkMode::AcceptWithLimits(limits)) => write_response(
                stream,
                200,
                &[
                    ("Content-Type", "application/json"),
                    ("X-Sentry-Rate-Limits", limits),
                ],
                serde_json::json!({ "id": id }).to_string().as_bytes(),
            ),
            (
                Ok(_),
                SinkMode::TooManyRequests {
                    rate_limits,
                    retry_after,
                },
            ) => {
                let mut headers = vec![("Content-Type", "application/json")];
                if let Some(limits) = rate_limits {
                    headers.push(("X-Sentry-Rate-Limits", limits));
                }
                if let Some(seconds) = retry_after {
                    headers.push(("Retry-After", seconds));
                }
                write_response(
                    stream,
                    429,
                    &headers,
                    br#"{"detail":"rate limited (e2e sink)"}"#,
                )
            }
            (Ok(_), SinkMode::Fail500) => write_response(
                stream,
                500,
                &[("Content-Type", "application/json")],
                br#"{"detail":"internal server error (e2e sink)"}"#,
            ),
            (Ok(_), SinkMode::Close) => Ok(()),
            (Ok(_), SinkMode::Hang) => {
                stopping.wait(Duration::from_secs(60));
                Ok(())
            }
        };
    }

    fn bad_request(&self, err: BadRequest) {
        let BadRequest::Malformed(e) = err;
        let mut st = lock(&self.shared.state);
        st.requests += 1;
        st.violations.push(format!("unparseable HTTP request: {e}"));
        self.shared.cv.notify_all();
    }
}

/// A request body as received and as read.
struct Body {
    plain: Vec<u8>,
    gzip: bool,
}

/// Checks everything about one request; returns the parsed envelope and the client that sent it.
fn check_request(req: &ServerRequest) -> Result<(Value, Vec<Item>, Body, String), String> {
    let expected_path = format!("/api/{PROJECT_ID}/envelope/");
    if req.method != "POST" {
        return Err(format!("method must be POST, got {}", req.method));
    }
    if req.target != expected_path {
        // Auth in the query string is allowed by the protocol but this
        // worker sends it as a header; anything else is a wrong endpoint.
        return Err(format!(
            "unexpected path {:?}, want {expected_path:?}",
            req.target
        ));
    }
    match req.header("content-type") {
        Some(ct) if ct.split(';').next().unwrap().trim() == "application/x-sentry-envelope" => {}
        other => {
            return Err(format!(
                "Content-Type must be application/x-sentry-envelope, got {other:?}"
            ))
        }
    }
    let body = match req.header("content-encoding") {
        None => Body {
            plain: req.body.clone(),
            gzip: false,
        },
        Some(enc) if enc.eq_ignore_ascii_case("identity") => Body {
            plain: req.body.clone(),
            gzip: false,
        },
        Some(enc) if enc.eq_ignore_ascii_case("gzip") => Body {
            plain: gunzip(&req.body)?,
            gzip: true,
        },
        Some(enc) => {
            return Err(format!(
                "unexpected Content-Encoding {enc:?} (sink reads plain and gzip envelopes)"
            ))
        }
    };
    // A browser SDK behind a tunnel sends no auth of its own: the envelope header's `dsn`
    // carries the key (what Relay reads when there is no X-Sentry-Auth), and its items may
    // leave out `length`. Only such an envelope is held to those rules; every other one needs
    // X-Sentry-Auth and `length` on every item.
    if req.header("x-sentry-auth").is_none() {
        let (header, items) = parse_envelope_framed(&body.plain, Framing::Browser)?;
        let client = check_header_dsn(&header)?;
        return Ok((header, items, body, client));
    }
    let client = check_auth(req.header("x-sentry-auth"))?;
    let edgeguard = client.starts_with("edgeguard/");
    let (header, items) = parse_envelope_from(&body.plain, edgeguard)?;
    Ok((header, items, body, client))
}

/// A tunnelled browser envelope's header: `dsn` names this sink's key and project (as the
/// JavaScript SDK writes it: `http://<key>@<host>:<port>/<project>`, no secret), and `sdk`
/// names the SDK; returns `<sdk name>/<version>` as the client.
fn check_header_dsn(header: &Value) -> Result<String, String> {
    let dsn = header["dsn"]
        .as_str()
        .ok_or_else(|| format!("no X-Sentry-Auth and no `dsn` in the envelope header: {header}"))?;
    let rest = dsn
        .strip_prefix(&format!("http://{PUBLIC_KEY}@127.0.0.1:"))
        .ok_or_else(|| format!("envelope header dsn {dsn:?} is not this sink's key and host"))?;
    let (port, project) = rest
        .split_once('/')
        .ok_or_else(|| format!("envelope header dsn {dsn:?} has no project"))?;
    if port.parse::<u16>().is_err() || project != PROJECT_ID {
        return Err(format!(
            "envelope header dsn {dsn:?} is not this sink's project"
        ));
    }
    let (name, version) = (
        header["sdk"]["name"].as_str(),
        header["sdk"]["version"].as_str(),
    );
    match (name, version) {
        (Some(n), Some(v)) if !n.is_empty() && !v.is_empty() => Ok(format!("{n}/{v}")),
        _ => Err(format!(
            "envelope header without sdk name and version: {header}"
        )),
    }
}

/// Inflates a gzip body strictly: one member, checksum and length verified, nothing after it.
fn gunzip(body: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut decoder = flate2::bufread::GzDecoder::new(body);
    let mut out = Vec::new();
    decoder
        .read_to_end(&mut out)
        .map_err(|e| format!("Content-Encoding: gzip but the body does not inflate: {e}"))?;
    let rest = decoder.into_inner();
    if !rest.is_empty() {
        return Err(format!("{} bytes after the gzip member", rest.len()));
    }
    Ok(out)
}

/// `Sentry sentry_version=7, sentry_client=<name>/<v>, sentry_key=<key>`; returns the client.
/// Any `<name>/<version>` client is accepted (the tracing tests' Python app reports here too);
/// what edgeguard sends is held to the strict checks by the caller.
pub fn check_auth(header: Option<&str>) -> Result<String, String> {
    let header = header.ok_or("missing X-Sentry-Auth")?;
    let rest = header
        .strip_prefix("Sentry ")
        .ok_or_else(|| format!("X-Sentry-Auth must start with \"Sentry \": {header:?}"))?;
    let (mut version, mut client, mut key) = (None, None, None);
    for pair in rest.split(',') {
        let (k, v) = pair
            .trim()
            .split_once('=')
            .ok_or_else(|| format!("X-Sentry-Auth pair without '=': {pair:?}"))?;
        let slot = match k.trim() {
            "sentry_version" => &mut version,
            "sentry_client" => &mut client,
            "sentry_key" => &mut key,
            "sentry_secret" | "sentry_timestamp" => continue,
            other => return Err(format!("unknown X-Sentry-Auth key {other:?}")),
        };
        if slot.replace(v.trim().to_string()).is_some() {
            return Err(format!("X-Sentry-Auth repeats {k:?}"));
        }
    }
    if version.as_deref() != Some("7") {
        return Err(format!("sentry_version must be 7, got {version:?}"));
    }
    if key.as_deref() != Some(PUBLIC_KEY) {
        return Err(format!("sentry_key must be {PUBLIC_KEY:?}, got {key:?}"));
    }
    match client {
        Some(c)
            if c.split_once('/')
                .is_some_and(|(n, v)| !n.is_empty() && !v.is_empty()) =>
        {
            Ok(c)
        }
        _ => Err(format!(
            "sentry_client must be <name>/<version>, got {client:?}"
        )),
    }
}

fn is_event_id(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fn json_object_line(bytes: &[u8], what: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "{what} is not JSON ({e}): {:?}",
            String::from_utf8_lossy(bytes)
        )
    })?;
    if !v.is_object() {
        return Err(format!("{what} is not a JSON object: {v}"));
    }
    Ok(v)
}

/// Parses an envelope strictly: a header line, then items each with a JSON
/// header carrying `type` and `length`, exactly `length` payload bytes, then
/// `\n` or the end of the body.
pub fn parse_envelope(body: &[u8]) -> Result<(Value, Vec<Item>), String> {
    parse_envelope_from(body, true)
}

/// [`parse_envelope`]; `edgeguard`: the envelope is edgeguard's, and its events, transactions
/// and `trace` header are held to what edgeguard promises. Another SDK's get the framing checks.
pub fn parse_envelope_from(body: &[u8], edgeguard: bool) -> Result<(Value, Vec<Item>), String> {
    let framing = if edgeguard {
        Framing::Edgeguard
    } else {
        Framing::OtherSdk
    };
    parse_envelope_framed(body, framing)
}

/// Whose envelope is parsed, and so what is asked of it.
#[derive(Clone, Copy, PartialEq)]
enum Framing {
    /// edgeguard's: every item has `length`; events, transactions and `trace` checked in full.
    Edgeguard,
    /// Another server SDK's with X-Sentry-Auth: every item has `length`.
    OtherSdk,
    /// A browser SDK's through the tunnel: an item without `length` runs to the next `\n` or
    /// the end, as Relay reads it.
    Browser,
}

fn parse_envelope_framed(body: &[u8], framing: Framing) -> Result<(Value, Vec<Item>), String> {
    let edgeguard = framing == Framing::Edgeguard;
    if body.is_empty() {
        return Err("empty envelope".into());
    }
    let nl = body
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("envelope header line is not terminated by \\n")?;
    let header = json_object_line(&body[..nl], "envelope header")?;
    if edgeguard {
        if let Some(trace) = header.get("trace") {
            check_trace_header(trace)?;
        }
    }
    let mut rest = &body[nl + 1..];
    let mut items = Vec::new();
    while !rest.is_empty() {
        let nl = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| format!("item header {} is not terminated by \\n", items.len()))?;
        let ih = json_object_line(&rest[..nl], "item header")?;
        let ty = ih["type"]
            .as_str()
            .ok_or_else(|| format!("item header without string `type`: {ih}"))?
            .to_string();
        rest = &rest[nl + 1..];
        let len = match ih.get("length") {
            None if framing == Framing::Browser => {
                rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len())
            }
            length => length
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("item header without integer `length`: {ih}"))?
                as usize,
        };
        if rest.len() < len {
            return Err(format!(
                "item {ty:?} declares length {len} but only {} bytes remain",
                rest.len()
            ));
        }
        let payload = rest[..len].to_vec();
        rest = &rest[len..];
        match rest.first() {
            None => {}
            Some(b'\n') => rest = &rest[1..],
            Some(_) => {
                return Err(format!(
                    "item {ty:?} payload of length {len} is not followed by \\n or the end: {:?}",
                    String::from_utf8_lossy(&rest[..rest.len().min(40)])
                ))
            }
        }
        if ty == "event" {
            let event = json_object_line(&payload, "event payload")?;
            if !is_event_id(&event["event_id"]) {
                return Err(format!(
                    "event_id is not 32 lowercase hex: {}",
                    event["event_id"]
                ));
            }
            if header["event_id"] != event["event_id"] {
                return Err(format!(
                    "envelope header event_id {} != event's {}",
                    header["event_id"], event["event_id"]
                ));
            }
            if items.iter().any(|i: &Item| i.header["type"] == "event") {
                return Err("more than one event item".into());
            }
            if edgeguard {
                check_event(&event)?;
            }
        }
        if ty == "transaction" && edgeguard {
            check_transaction(&header, &payload)?;
        }
        if ty == "feedback" {
            check_feedback(&header, &payload)?;
        }
        if ty == "client_report" {
            check_client_report(&payload)?;
        }
        items.push(Item {
            header: ih,
            payload,
        });
    }
    if items.is_empty() {
        return Err("envelope has no items".into());
    }
    Ok((header, items))
}

/// The envelope header's `trace` (the dynamic sampling context): an object of strings naming at
/// least the trace and the public key.
fn check_trace_header(trace: &Value) -> Result<(), String> {
    let map = trace
        .as_object()
        .ok_or_else(|| format!("envelope `trace` is not an object: {trace}"))?;
    if !is_hex(&trace["trace_id"], 32) || !map.get("public_key").is_some_and(Value::is_string) {
        return Err(format!(
            "envelope `trace` needs trace_id and public_key: {trace}"
        ));
    }
    if let Some((k, v)) = map.iter().find(|(_, v)| !v.is_string()) {
        return Err(format!("envelope `trace` value {k:?} is not a string: {v}"));
    }
    Ok(())
}

/// A transaction as edgeguard sends it: its id is the envelope's, its trace context and every
/// span name one trace with hex ids, and no span ends before it starts.
fn check_transaction(header: &Value, payload: &[u8]) -> Result<(), String> {
    let tx = json_object_line(payload, "transaction payload")?;
    if tx["type"] != "transaction" || !is_event_id(&tx["event_id"]) {
        return Err(format!("transaction without type or event_id: {tx}"));
    }
    if header["event_id"] != tx["event_id"] {
        return Err(format!("envelope event_id != transaction's: {tx}"));
    }
    let trace = &tx["contexts"]["trace"];
    if !is_hex(&trace["trace_id"], 32) || !is_hex(&trace["span_id"], 16) {
        return Err(format!("transaction trace context without ids: {trace}"));
    }
    let ordered = |v: &Value| matches!((v["start_timestamp"].as_f64(), v["timestamp"].as_f64()), (Some(s), Some(e)) if s <= e);
    if !ordered(&tx) {
        return Err(format!("transaction timestamps out of order: {tx}"));
    }
    for span in tx["spans"]
        .as_array()
        .ok_or("transaction without spans array")?
    {
        if span["trace_id"] != trace["trace_id"] || !is_hex(&span["span_id"], 16) || !ordered(span)
        {
            return Err(format!("bad span: {span}"));
        }
    }
    Ok(())
}

fn is_hex(v: &Value, len: usize) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// An event as Sentry's normaliser (Relay's event schema) accepts it without `errors`: known
/// attributes only, well-typed, and within Sentry's limits (PROTOCOL.md).
fn check_event(event: &Value) -> Result<(), String> {
    let object = event.as_object().ok_or("event is not an object")?;
    for key in object.keys() {
        if !matches!(
            key.as_str(),
            "event_id"
                | "timestamp"
                | "platform"
                | "level"
                | "logger"
                | "transaction"
                | "server_name"
                | "release"
                | "dist"
                | "environment"
                | "tags"
                | "extra"
                | "fingerprint"
                | "contexts"
                | "breadcrumbs"
                | "sdk"
                | "request"
                | "exception"
                | "user"
                | "message"
        ) {
            return Err(format!("unknown event attribute {key:?}"));
        }
    }
    let chars = |v: &Value| v.as_str().map(|s| s.chars().count());
    let within = |key: &str, max: usize| match object.get(key) {
        None => Ok(()),
        Some(v) if chars(v).is_some_and(|n| n <= max) => Ok(()),
        Some(v) => Err(format!(
            "{key} must be a string of at most {max} chars: {v}"
        )),
    };
    within("transaction", 200)?;
    within("environment", 64)?;
    within("release", 200)?;
    if object.contains_key("level")
        && !matches!(
            event["level"].as_str(),
            Some("fatal" | "error" | "warning" | "info" | "debug")
        )
    {
        return Err(format!("bad level {}", event["level"]));
    }
    if let Some(tags) = object.get("tags") {
        for (k, v) in tags.as_object().ok_or("tags must be an object")? {
            if k.chars().count() > 200 || chars(v).is_none_or(|n| n > 200) {
                return Err(format!("tag {k:?}: {v} breaks the 200-char string rule"));
            }
        }
    }
    if let Some(fp) = object.get("fingerprint") {
        let parts = fp.as_array().ok_or("fingerprint must be an array")?;
        if parts.is_empty() || parts.iter().any(|p| !p.is_string()) {
            return Err(format!("fingerprint must be non-empty strings: {fp}"));
        }
    }
    for exception in event["exception"]["values"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if chars(&exception["value"]).is_none_or(|n| n > 8192) {
            return Err(format!(
                "exception value missing or over 8192 chars: {exception}"
            ));
        }
        if let Some(mechanism) = exception.get("mechanism") {
            if !mechanism["type"].is_string() || !mechanism["handled"].is_boolean() {
                return Err(format!("mechanism needs type and handled: {mechanism}"));
            }
        }
        let frames = exception["stacktrace"]["frames"]
            .as_array()
            .map_or(0, Vec::len);
        if frames > 50 {
            return Err(format!("{frames} frames (at most 50)"));
        }
    }
    if let Some(request) = object.get("request") {
        let request = request.as_object().ok_or("request must be an object")?;
        for key in request.keys() {
            if !matches!(
                key.as_str(),
                "method" | "url" | "query_string" | "headers" | "cookies" | "data" | "env"
            ) {
                return Err(format!("unknown request attribute {key:?}"));
            }
        }
        let url = request
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let authority = url
            .split("://")
            .nth(1)
            .unwrap_or_default()
            .split('/')
            .next();
        if url.contains('?') || authority.is_some_and(|a| a.contains('@')) {
            return Err(format!("request.url carries a query or userinfo: {url}"));
        }
        if let Some(headers) = request.get("headers") {
            let headers = headers
                .as_object()
                .ok_or("request.headers must be an object")?;
            if headers.values().any(|v| !v.is_string()) {
                return Err("request.headers values must be strings".into());
            }
        }
        for bag in ["query_string", "cookies"] {
            if let Some(pairs) = request.get(bag) {
                let ok = pairs.as_array().is_some_and(|pairs| {
                    pairs.iter().all(|p| {
                        p.as_array()
                            .is_some_and(|kv| kv.len() == 2 && kv.iter().all(Value::is_string))
                    })
                });
                if !ok {
                    return Err(format!("request.{bag} must be [key, value] string pairs"));
                }
            }
        }
    }
    if let Some(contexts) = object.get("contexts") {
        for (name, context) in contexts.as_object().ok_or("contexts must be an object")? {
            if !context.is_object() {
                return Err(format!("context {name} is not an object"));
            }
            let size = serde_json::to_vec(context).map_or(usize::MAX, |b| b.len());
            if size > 8 * 1024 {
                return Err(format!("context {name} is {size} bytes (at most 8 kB)"));
            }
        }
    }
    if let Some(breadcrumbs) = object.get("breadcrumbs") {
        let values = breadcrumbs["values"]
            .as_array()
            .ok_or("breadcrumbs must be {\"values\": [...]}")?;
        if values.len() > 100 {
            return Err("more than 100 breadcrumbs".into());
        }
        for crumb in values {
            if !crumb["timestamp"].is_string() || !crumb["type"].is_string() {
                return Err(format!("breadcrumb without timestamp or type: {crumb}"));
            }
        }
    }
    Ok(())
}

/// A `feedback` item as Sentry documents it (develop.sentry.dev, envelope items, "User
/// Feedback"): an event whose own `event_id` is the envelope's, `type: "feedback"`, and
/// `contexts.feedback` with a non-empty `message` and an optional `associated_event_id`.
fn check_feedback(header: &Value, payload: &[u8]) -> Result<(), String> {
    let fb = json_object_line(payload, "feedback payload")?;
    if !is_event_id(&fb["event_id"]) || header["event_id"] != fb["event_id"] {
        return Err(format!(
            "feedback event_id {} must be 32 lowercase hex and equal the envelope's {}",
            fb["event_id"], header["event_id"]
        ));
    }
    if fb["type"] != "feedback" {
        return Err(format!("feedback payload type must be \"feedback\": {fb}"));
    }
    if !(fb["timestamp"].is_number() || fb["timestamp"].is_string()) {
        return Err(format!("feedback without timestamp: {fb}"));
    }
    let ctx = &fb["contexts"]["feedback"];
    let Some(map) = ctx.as_object() else {
        return Err(format!("feedback without contexts.feedback: {fb}"));
    };
    if ctx["message"].as_str().is_none_or(|m| m.trim().is_empty()) {
        return Err(format!(
            "contexts.feedback.message must be a non-empty string: {ctx}"
        ));
    }
    if let Some(assoc) = map.get("associated_event_id") {
        if !is_event_id(assoc) {
            return Err(format!(
                "associated_event_id is not 32 lowercase hex: {assoc}"
            ));
        }
        if assoc == &fb["event_id"] {
            return Err("associated_event_id must be the failure's id, not the feedback's".into());
        }
    }
    for key in map.keys() {
        if !matches!(
            key.as_str(),
            "message"
                | "contact_email"
                | "name"
                | "associated_event_id"
                | "url"
                | "source"
                | "replay_id"
        ) {
            return Err(format!("unknown contexts.feedback key {key:?}"));
        }
        if !map[key].is_string() {
            return Err(format!(
                "contexts.feedback.{key} must be a string: {}",
                map[key]
            ));
        }
    }
    Ok(())
}

/// A `client_report` item (develop.sentry.dev, "Client Reports"): `timestamp` and a non-empty
/// `discarded_events` list of `{reason, category, quantity}` with a documented reason, a known
/// data category, a positive whole quantity, and each (reason, category) pair once.
fn check_client_report(payload: &[u8]) -> Result<(), String> {
    const REASONS: &[&str] = &[
        "queue_overflow",
        "cache_overflow",
        "buffer_overflow",
        "ratelimit_backoff",
        "network_error",
        "sample_rate",
        "send_error",
        "internal_sdk_error",
        "insufficient_data",
        "backpressure",
        "before_send",
        "event_processor",
    ];
    const CATEGORIES: &[&str] = &[
        "default",
        "error",
        "transaction",
        "security",
        "attachment",
        "session",
        "profile",
        "replay",
        "feedback",
        "monitor",
        "span",
        "log_item",
    ];
    let report = json_object_line(payload, "client_report payload")?;
    let map = report.as_object().expect("checked: an object");
    for key in map.keys() {
        if !matches!(key.as_str(), "timestamp" | "discarded_events") {
            return Err(format!("unknown client_report key {key:?}: {report}"));
        }
    }
    let ts = &report["timestamp"];
    let plausible = ts.as_f64().is_some_and(|t| t > 1.6e9 && t < 4.0e9) || ts.is_string();
    if !plausible {
        return Err(format!("client_report timestamp {ts} is not epoch seconds"));
    }
    let discarded = report["discarded_events"]
        .as_array()
        .filter(|d| !d.is_empty())
        .ok_or_else(|| format!("client_report without discarded_events: {report}"))?;
    let mut seen = Vec::new();
    for entry in discarded {
        let map = entry
            .as_object()
            .ok_or_else(|| format!("discarded_events entry not an object: {entry}"))?;
        if map.len() != 3 {
            return Err(format!(
                "discarded_events entry must have exactly reason, category, quantity: {entry}"
            ));
        }
        let reason = entry["reason"].as_str().unwrap_or("");
        let category = entry["category"].as_str().unwrap_or("");
        if !REASONS.contains(&reason) {
            return Err(format!("unknown discard reason: {entry}"));
        }
        if !CATEGORIES.contains(&category) {
            return Err(format!("unknown data category: {entry}"));
        }
        if entry["quantity"].as_u64().is_none_or(|q| q == 0) {
            return Err(format!("quantity must be a positive integer: {entry}"));
        }
        if seen.contains(&(reason, category)) {
            return Err(format!("({reason}, {category}) listed twice: {report}"));
        }
        seen.push((reason, category));
    }
    Ok(())
}

pub struct Sink {
    server: Server,
    mode: Arc<Mutex<SinkMode>>,
    shared: Arc<Shared>,
}

impl Sink {
    pub fn start(mode: SinkMode) -> Sink {
        let shared = Arc::new(Shared::default());
        let mode = Arc::new(Mutex::new(mode));
        let server = Server::start(
            "sink",
            Arc::new(SinkHandler {
                mode: mode.clone(),
                shared: shared.clone(),
            }),
        );
        Sink {
            server,
            mode,
            shared,
        }
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Changes how the following envelopes are answered.
    pub fn set_mode(&self, mode: SinkMode) {
        *lock(&self.mode) = mode;
    }

    /// The total `quantity` of every `client_report` entry with `reason` received so far.
    pub fn discarded(&self, reason: &str) -> u64 {
        self.discarded_of(reason, None)
    }

    /// [`Sink::discarded`], of one data `category` when given.
    pub fn discarded_of(&self, reason: &str, category: Option<&str>) -> u64 {
        self.envelopes()
            .iter()
            .flat_map(Envelope::client_reports)
            .flat_map(|r| {
                r["discarded_events"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|e| e["reason"] == reason)
            .filter(|e| category.is_none_or(|c| e["category"] == c))
            .map(|e| e["quantity"].as_u64().unwrap_or(0))
            .sum()
    }

    /// Waits (bounded) until the client reports received count at least `n` drops for
    /// `reason`; returns the count.
    pub fn wait_for_discarded(&self, reason: &str, n: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let count = self.discarded(reason);
            if count >= n {
                return count;
            }
            assert!(
                Instant::now() < deadline,
                "client reports counted {count} {reason:?} drop(s) within {timeout:?}, expected {n}; violations: {:?}",
                self.violations()
            );
            let st = lock(&self.shared.state);
            drop(wait_timeout(
                &self.shared.cv,
                st,
                Duration::from_millis(200),
            ));
        }
    }

    /// `http://<key>@127.0.0.1:<port>/<project>`.
    pub fn dsn(&self) -> String {
        dsn_for_port(self.port())
    }

    /// Every request received, well-formed or not.
    pub fn requests_count(&self) -> usize {
        lock(&self.shared.state).requests
    }

    pub fn envelopes(&self) -> Vec<Envelope> {
        lock(&self.shared.state).envelopes.clone()
    }

    /// The bytes of every request received (head + body).
    pub fn raw_requests(&self) -> Vec<Vec<u8>> {
        lock(&self.shared.state).raw.clone()
    }

    /// edgeguard's transactions.
    pub fn transactions(&self) -> Vec<Value> {
        self.envelopes()
            .iter()
            .filter_map(Envelope::transaction)
            .collect()
    }

    /// Waits (bounded) for at least `n` envelopes matching `pick`; panics with what arrived.
    pub fn wait_for_envelopes(
        &self,
        n: usize,
        timeout: Duration,
        pick: impl Fn(&Envelope) -> bool,
    ) -> Vec<Envelope> {
        self.wait_for(n, timeout, "matching envelope", |e| {
            pick(e).then(|| e.clone())
        })
    }

    /// Waits (bounded) until `pick` finds at least `n` of `what` in the envelopes received;
    /// panics with what arrived (headers, requests, violations) on timeout.
    fn wait_for<T>(
        &self,
        n: usize,
        timeout: Duration,
        what: &str,
        pick: impl Fn(&Envelope) -> Option<T>,
    ) -> Vec<T> {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.shared.state);
        loop {
            let found: Vec<T> = st.envelopes.iter().filter_map(&pick).collect();
            if found.len() >= n {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "sink ({:?}) got {} {what}(s) within {timeout:?}, expected {n}; {} request(s), headers: {:?}; violations: {:?}",
                    *lock(&self.mode),
                    found.len(),
                    st.requests,
                    st.envelopes.iter().map(|e| (&e.client, &e.header)).collect::<Vec<_>>(),
                    st.violations
                );
            }
            st = wait_timeout(&self.shared.cv, st, left);
        }
    }

    pub fn events(&self) -> Vec<Value> {
        self.envelopes()
            .iter()
            .filter_map(Envelope::event)
            .collect()
    }

    pub fn violations(&self) -> Vec<String> {
        lock(&self.shared.state).violations.clone()
    }

    pub fn assert_no_violations(&self) {
        let v = self.violations();
        assert!(
            v.is_empty(),
            "the Sentry sink saw protocol violations:\n  {}",
            v.join("\n  ")
        );
    }

    /// Waits (bounded) for at least `n` events; panics with what arrived
    /// (including violations) on timeout.
    pub fn wait_for_events(&self, n: usize, timeout: Duration) -> Vec<Value> {
        self.wait_for(n, timeout, "event", Envelope::event)
    }

    /// Waits (bounded) for at least `n` feedback items; panics with what arrived on timeout.
    pub fn wait_for_feedback(&self, n: usize, timeout: Duration) -> Vec<Value> {
        self.wait_for(n, timeout, "feedback item", Envelope::feedback)
    }

    /// Waits (bounded) until at least `n` requests arrived, well-formed or not.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.shared.state);
        while st.requests < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "sink got {} request(s) within {timeout:?}, expected {n}",
                    st.requests
                );
            }
            st = wait_timeout(&self.shared.cv, st, left);
        }
    }

    /// Asserts that the request count stays at `n` for `quiet` (used after the
    /// expected traffic arrived, to prove nothing else follows).
    pub fn assert_requests_stay(&self, n: usize, quiet: Duration) {
        let deadline = Instant::now() + quiet;
        let mut st = lock(&self.shared.state);
        loop {
            assert!(
                st.requests <= n,
                "sink got {} request(s), expected exactly {n}; violations: {:?}; envelopes: {:?}",
                st.requests,
                st.violations,
                st.envelopes.iter().map(|e| &e.header).collect::<Vec<_>>()
            );
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                assert_eq!(st.requests, n, "sink request count");
                return;
            }
            st = wait_timeout(&self.shared.cv, st, left);
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if std::thread::panicking() || super::verbose() {
            let st = lock(&self.shared.state);
            eprintln!(
                "--- sink ({:?}, port {}): {} request(s), violations: {:#?}",
                *lock(&self.mode),
                self.port(),
                st.requests,
                st.violations
            );
            for raw in &st.raw {
                eprintln!("--- sink request:\n{}", String::from_utf8_lossy(raw));
            }
        }
    }
}

/// A DSN in this sink's format for any port (e.g. a closed one).
pub fn dsn_for_port(port: u16) -> String {
    format!("http://{PUBLIC_KEY}@127.0.0.1:{port}/{PROJECT_ID}")
}
