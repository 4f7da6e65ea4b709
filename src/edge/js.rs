//! Runtime calls made in one JS step instead of many small crossings. Every call from wasm into
//! JS (and every string decoded on the way back) costs CPU on every request: iterating `Headers`
//! from Rust took four crossings per header, and building a `RequestInit` plus an
//! `AbortController`, a Rust timer closure and a race took a dozen more. These helpers do the
//! same work inside JS and hand back one value. They decide nothing: what to send, where, and
//! for how long is still decided in Rust.

use crate::forward::HeaderEdit;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(inline_js = r#"
export function headerText(headers) {
  let text = "";
  for (const [name, value] of headers) text += name + "\n" + value + "\n";
  return text;
}

export function headerValues(headers, names) {
  let text = "";
  for (const name of names) {
    const value = headers.get(name);
    if (value !== null) text += name + "\n" + value + "\n";
  }
  return text;
}

function setAll(headers, text) {
  const parts = text ? text.split("\n") : [];
  for (let i = 0; i + 1 < parts.length; i += 2) headers.set(parts[i], parts[i + 1]);
  return headers;
}

export function editedHeaders(headers, remove, set) {
  const copy = new Headers(headers);
  if (remove) for (const name of remove.split("\n")) copy.delete(name);
  return setAll(copy, set);
}

export function headersOf(text) {
  return setAll(new Headers(), text);
}

// The body arrives as a view of wasm memory: copied here, before wasm can reuse the memory.
// Bytes, not a string: no UTF-8 decoding into a JS string only for the runtime to encode it
// back. `base` is copied by the constructor; `extra` is set on the response's own headers.
export function respond(status, base, extra, body) {
  const response = new Response(body ? body.slice() : null, { status, headers: base });
  setAll(response.headers, extra);
  return response;
}

export function whenSettled(promise, key, callback) {
  return promise.then(
    (value) => callback(key, value, true),
    (error) => callback(key, error, false),
  );
}

// scheduler.wait is the runtime's own timer: about a quarter of setTimeout's cost per request
// (measured on workerd), and nothing to clear.
export function sleep(ms) {
  return globalThis.scheduler?.wait
    ? scheduler.wait(ms)
    : new Promise((resolve) => setTimeout(resolve, ms));
}

const timedOut = () => null;

// No AbortController: when the timer wins, the fetch is left to the runtime, which cancels
// whatever a request still has in flight when it ends (the page and the report are sent by
// then). Once the response head is in, the timer decides nothing: the body may stream for as
// long as it takes. The controller, its signal and the callbacks that disarmed it cost CPU on
// every request (their removal, with two smaller changes: -4 to -15% per proxied or failing
// request, over four interleaved runs on workerd).
export function fetchWithin(url, method, headers, body, redirect, ms) {
  const init = { method, headers, redirect };
  if (body != null) init.body = body;
  return Promise.race([fetch(url, init), sleep(ms).then(timedOut)]);
}
"#)]
extern "C" {
    /// Every header as `name\nvalue\n` (names lowercase, repeated `Set-Cookie` kept apart). A
    /// header value cannot contain a line break, so the text splits back unambiguously.
    #[wasm_bindgen(js_name = headerText, catch)]
    fn header_text(headers: &web_sys::Headers) -> Result<String, JsValue>;

    /// `name\nvalue\n` for each of `names` (a JS array of lowercase names) that is present:
    /// the headers a decision needs, without carrying the rest (cookies, ...) into wasm.
    #[wasm_bindgen(js_name = headerValues, catch)]
    fn header_values(headers: &web_sys::Headers, names: &js_sys::Array) -> Result<String, JsValue>;

    /// A copy of `headers` without the names in `remove` and with `set` applied (both
    /// line-separated: `name\nname`, `name\nvalue\nname\nvalue`; header names and values
    /// cannot contain a line break).
    #[wasm_bindgen(js_name = editedHeaders, catch)]
    fn edited_headers(
        headers: &web_sys::Headers,
        remove: &str,
        set: &str,
    ) -> Result<web_sys::Headers, JsValue>;

    /// `new Headers()` with `name\nvalue\n...` text set.
    #[wasm_bindgen(js_name = headersOf, catch)]
    fn headers_of(text: &str) -> Result<web_sys::Headers, JsValue>;

    /// `new Response(body, {status, headers: base})` with `extra` (`name\nvalue\n...` text)
    /// set on top.
    #[wasm_bindgen(catch)]
    fn respond(
        status: u16,
        base: &web_sys::Headers,
        extra: &str,
        body: Option<&[u8]>,
    ) -> Result<web_sys::Response, JsValue>;

    /// `promise.then(v => callback(key, v, true), e => callback(key, e, false))`: the promise
    /// the runtime awaits for a request in flight, continued by a callback made once.
    #[wasm_bindgen(js_name = whenSettled)]
    fn when_settled_promise(
        promise: &js_sys::Promise,
        key: u32,
        callback: &js_sys::Function,
    ) -> js_sys::Promise;

    /// Resolves after `ms` on the runtime's timer (`sleep(0)`: on its next turn, after a
    /// response handed back in this turn has been written).
    pub(super) fn sleep(ms: u32) -> js_sys::Promise;

    /// `fetch(url, {method, headers, body, redirect})` that resolves to the `Response`, or to
    /// `null` when no response arrived within `ms` (the fetch is then left to the runtime,
    /// which cancels it when the request ends); rejects when the fetch fails. The timer covers
    /// the response head only, never the body stream.
    #[wasm_bindgen(js_name = fetchWithin, catch)]
    pub(super) fn fetch_within(
        url: &str,
        method: &str,
        headers: &web_sys::Headers,
        body: &JsValue,
        redirect: &str,
        ms: u32,
    ) -> Result<js_sys::Promise, JsValue>;
}

/// All headers as lowercase `(name, value)` pairs, read in one crossing.
pub(super) fn header_pairs(headers: &web_sys::Headers) -> Vec<(String, String)> {
    pairs(header_text(headers))
}

/// The headers named in `names` that are present, as `(name, value)` pairs, in one crossing.
/// `names` is built once per isolate (`names_array`), so no name is copied per request.
pub(super) fn some_header_pairs(
    headers: &web_sys::Headers,
    names: &js_sys::Array,
) -> Vec<(String, String)> {
    pairs(header_values(headers, names))
}

/// `names` as a JS array, to keep in a `thread_local` and pass on every request.
pub(super) fn names_array<'a>(names: impl Iterator<Item = &'a str>) -> js_sys::Array {
    names.map(JsValue::from_str).collect()
}

/// `promise` continued by `callback(key, value, fulfilled)`, whose return value (a response
/// or a promise of one) the resulting promise resolves to.
pub(super) fn when_settled(
    promise: &js_sys::Promise,
    key: u32,
    callback: &Closure<dyn Fn(u32, JsValue, bool) -> JsValue>,
) -> js_sys::Promise {
    when_settled_promise(promise, key, callback.as_ref().unchecked_ref())
}

/// `(name, value)` pairs as the `name\nvalue\n...` text the helpers above take (names and values
/// cannot contain a line break).
fn header_text_of<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut text = String::new();
    for (name, value) in pairs {
        for part in [name, value] {
            text.push_str(part);
            text.push('\n');
        }
    }
    text
}

/// `pairs` as a new `Headers`, made in one crossing: a set of headers built once and given as
/// the `base` of many responses.
pub(super) fn headers(pairs: &[(&str, &str)]) -> Result<web_sys::Headers, JsValue> {
    headers_of(&header_text_of(pairs.iter().copied()))
}

/// A new response with `status`, the headers of `base` plus `extra`, and `body`, made in one
/// crossing.
pub(super) fn response(
    status: u16,
    base: &web_sys::Headers,
    extra: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<web_sys::Response, JsValue> {
    respond(status, base, &header_text_of(extra.iter().copied()), body)
}

/// A copy of `headers` with `edit` applied, in one crossing.
pub(super) fn edited(
    headers: &web_sys::Headers,
    edit: &HeaderEdit,
) -> Result<web_sys::Headers, JsValue> {
    let remove = edit.remove.join("\n");
    let set = header_text_of(edit.set.iter().map(|(name, value)| (*name, value.as_str())));
    edited_headers(headers, &remove, &set)
}

/// `name\nvalue\n...` text back into pairs (empty when the call failed).
fn pairs(text: Result<String, JsValue>) -> Vec<(String, String)> {
    let Ok(text) = text else {
        return Vec::new();
    };
    let mut lines = text.split('\n');
    let mut pairs = Vec::new();
    while let (Some(name), Some(value)) = (lines.next(), lines.next()) {
        pairs.push((name.to_owned(), value.to_owned()));
    }
    pairs
}
