//! Runtime calls made in one JS step instead of many small crossings. Every call from wasm into
//! JS (and every string decoded on the way back) costs CPU on every request: iterating `Headers`
//! from Rust took four crossings per header, and building a `RequestInit` plus an
//! `AbortController`, a Rust timer closure and a race took a dozen more. These helpers do the
//! same work inside JS and hand back one value. They decide nothing: what to send, where, and
//! for how long is still decided in Rust.

use super::runtime::{Headers, Promise, ReadableStream, Request, Response};
use crate::proxy::forward::HeaderEdit;
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

// A promise and the function that resolves it, for a Rust future the runtime awaits.
export class Deferred {
  constructor() {
    this.promise = new Promise((resolve) => (this.resolve = resolve));
  }
}

export function bare(status) {
  return new Response(null, { status });
}

// The same response (status, text, body stream) with other headers.
export function rewrap(response, headers, keepBody) {
  const { status, statusText } = response;
  return new Response(keepBody ? response.body : null, { status, statusText, headers });
}

export function stringProperty(object, key) {
  const value = object?.[key];
  return typeof value === "string" ? value : undefined;
}

export function cfString(request, key) {
  const value = request.cf?.[key];
  return typeof value === "string" && value ? value : undefined;
}

export function errorMessage(error) {
  if (error instanceof Error) return error.message;
  return typeof error === "string" ? error : "unknown error";
}

export function randomFill(bytes) {
  crypto.getRandomValues(bytes);
}

export function lines(text) {
  return text.split("\n");
}

// Never rejects: a cancel is a courtesy to the runtime, its outcome changes nothing.
export function cancel(streamOrReader) {
  streamOrReader.cancel().catch(() => {});
}

export function readerOf(stream) {
  return stream.getReader();
}

// The next chunk's length in bytes, or -1 at the end of the stream.
export function readLength(reader) {
  return reader.read().then(({ done, value }) => (done ? -1 : value?.byteLength ?? 0));
}

export function bodyBytes(request) {
  return request.arrayBuffer();
}

export function bytesOf(buffer) {
  return new Uint8Array(buffer);
}

export function copyBytes(bytes) {
  return bytes.slice();
}

export function byteLength(bytes) {
  return bytes.byteLength;
}

// bytes through the runtime's CompressionStream("gzip"): a promise of the compressed bytes.
export function gzip(bytes) {
  const stream = new Response(bytes.slice()).body.pipeThrough(new CompressionStream("gzip"));
  return new Response(stream).arrayBuffer().then((buffer) => new Uint8Array(buffer));
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
    fn header_text(headers: &Headers) -> Result<String, JsValue>;

    /// `name\nvalue\n` for each of `names` (a JS array of lowercase names) that is present:
    /// the headers a decision needs, without carrying the rest (cookies, ...) into wasm.
    #[wasm_bindgen(js_name = headerValues, catch)]
    fn header_values(headers: &Headers, names: &JsValue) -> Result<String, JsValue>;

    /// A copy of `headers` without the names in `remove` and with `set` applied (both
    /// line-separated: `name\nname`, `name\nvalue\nname\nvalue`; header names and values
    /// cannot contain a line break).
    #[wasm_bindgen(js_name = editedHeaders, catch)]
    fn edited_headers(headers: &Headers, remove: &str, set: &str) -> Result<Headers, JsValue>;

    /// `new Headers()` with `name\nvalue\n...` text set.
    #[wasm_bindgen(js_name = headersOf, catch)]
    fn headers_of(text: &str) -> Result<Headers, JsValue>;

    /// `new Response(body, {status, headers: base})` with `extra` (`name\nvalue\n...` text)
    /// set on top.
    #[wasm_bindgen(catch)]
    fn respond(
        status: u16,
        base: &Headers,
        extra: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, JsValue>;

    /// `promise.then(v => callback(key, v, true), e => callback(key, e, false))`: a promise
    /// continued by a callback made once per instance, not a closure per promise.
    #[wasm_bindgen(js_name = whenSettled)]
    pub(super) fn when_settled(
        promise: &Promise,
        key: u32,
        callback: &Closure<dyn Fn(u32, JsValue, bool) -> JsValue>,
    ) -> Promise;

    /// Resolves after `ms` on the runtime's timer.
    pub(super) fn sleep(ms: u32) -> Promise;

    /// A promise with its `resolve`, for a Rust future the runtime awaits.
    pub(super) type Deferred;
    #[wasm_bindgen(constructor)]
    pub(super) fn new() -> Deferred;
    #[wasm_bindgen(method, getter)]
    pub(super) fn promise(this: &Deferred) -> Promise;
    #[wasm_bindgen(method)]
    pub(super) fn resolve(this: &Deferred, value: &JsValue);

    /// `new Response(null, {status})`: the last resort, when even a page cannot be built.
    pub(super) fn bare(status: u16) -> Response;

    /// `response` with `headers` instead of its own: same status, status text and (when
    /// `keep_body`) body stream.
    #[wasm_bindgen(catch)]
    pub(super) fn rewrap(
        response: &Response,
        headers: &Headers,
        keep_body: bool,
    ) -> Result<Response, JsValue>;

    /// `object[key]` when it is a string.
    #[wasm_bindgen(js_name = stringProperty)]
    pub(super) fn string_property(object: &JsValue, key: &str) -> Option<String>;

    /// A non-empty string property of `request.cf` (absent on requests not from Cloudflare's
    /// edge).
    #[wasm_bindgen(js_name = cfString)]
    pub(super) fn cf_string(request: &Request, key: &str) -> Option<String>;

    /// A JS exception's message (or the thrown string).
    #[wasm_bindgen(js_name = errorMessage)]
    pub(super) fn error_message(error: &JsValue) -> String;

    /// `crypto.getRandomValues` into `bytes`.
    #[wasm_bindgen(js_name = randomFill, catch)]
    pub(super) fn random_fill(bytes: &mut [u8]) -> Result<(), JsValue>;

    /// `text.split("\n")`, as a JS array to keep and pass on many calls.
    pub(super) fn lines(text: &str) -> JsValue;

    /// `stream.cancel()` or `reader.cancel()`, its outcome ignored.
    pub(super) fn cancel(stream_or_reader: &JsValue);

    /// `stream.getReader()`.
    #[wasm_bindgen(js_name = readerOf, catch)]
    pub(super) fn reader_of(stream: &ReadableStream) -> Result<JsValue, JsValue>;

    /// The next chunk's length (a promise of a number; -1 at the end of the stream).
    #[wasm_bindgen(js_name = readLength, catch)]
    pub(super) fn read_length(reader: &JsValue) -> Result<Promise, JsValue>;

    /// `request.arrayBuffer()`.
    #[wasm_bindgen(js_name = bodyBytes, catch)]
    pub(super) fn body_bytes(request: &Request) -> Result<Promise, JsValue>;

    /// An `ArrayBuffer` (or a view) copied into wasm.
    #[wasm_bindgen(js_name = bytesOf)]
    pub(super) fn bytes_of(buffer: &JsValue) -> Vec<u8>;

    /// `bytes` copied out of wasm memory into a `Uint8Array` of their own.
    #[wasm_bindgen(js_name = copyBytes)]
    pub(super) fn copy_bytes(bytes: &[u8]) -> JsValue;

    /// A `Uint8Array`'s length.
    #[wasm_bindgen(js_name = byteLength)]
    pub(super) fn byte_length(bytes: &JsValue) -> u32;

    /// `bytes` through the runtime's `CompressionStream("gzip")`: a promise of a `Uint8Array`
    /// (nothing of a compressor is in the wasm).
    #[wasm_bindgen(catch)]
    pub(super) fn gzip(bytes: &[u8]) -> Result<Promise, JsValue>;

    /// `fetch(url, {method, headers, body, redirect})` that resolves to the `Response`, or to
    /// `null` when no response arrived within `ms` (the fetch is then left to the runtime,
    /// which cancels it when the request ends); rejects when the fetch fails. The timer covers
    /// the response head only, never the body stream.
    #[wasm_bindgen(js_name = fetchWithin, catch)]
    pub(super) fn fetch_within(
        url: &str,
        method: &str,
        headers: &Headers,
        body: &JsValue,
        redirect: &str,
        ms: u32,
    ) -> Result<Promise, JsValue>;
}

/// All headers as lowercase `(name, value)` pairs, read in one crossing.
pub(super) fn header_pairs(headers: &Headers) -> Vec<(String, String)> {
    pairs(header_text(headers))
}

/// The headers named in `names` that are present, as `(name, value)` pairs, in one crossing.
/// `names` is built once per isolate (`names_array`), so no name is copied per request.
pub(super) fn some_header_pairs(headers: &Headers, names: &JsValue) -> Vec<(String, String)> {
    pairs(header_values(headers, names))
}

/// `names` as a JS array, to keep in a `thread_local` and pass on every request.
pub(super) fn names_array<'a>(names: impl Iterator<Item = &'a str>) -> JsValue {
    lines(&names.collect::<Vec<_>>().join("\n"))
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
pub(super) fn headers(pairs: &[(&str, &str)]) -> Result<Headers, JsValue> {
    headers_of(&header_text_of(pairs.iter().copied()))
}

/// A new response with `status`, the headers of `base` plus `extra`, and `body`, made in one
/// crossing.
pub(super) fn response(
    status: u16,
    base: &Headers,
    extra: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response, JsValue> {
    respond(status, base, &header_text_of(extra.iter().copied()), body)
}

/// A copy of `headers` with `edit` applied, in one crossing.
pub(super) fn edited(headers: &Headers, edit: &HeaderEdit) -> Result<Headers, JsValue> {
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
