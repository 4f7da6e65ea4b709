//! The few runtime services the edge needs beyond what `worker` wraps, each a line or two over
//! `worker`, `js-sys` or `getrandom`: the clock, randomness, timers, header lists as pairs, a
//! body's chunks read, the runtime's transform streams (gzip, gunzip). They
//! decide nothing.

use js_sys::{futures::JsFuture, Reflect, Uint8Array};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;
use wasm_bindgen::{JsCast, JsValue};
use worker::{web_sys, Delay, Headers};

/// `Date.now()`: epoch milliseconds. On Workers the clock only advances across I/O, which is
/// what a timestamp of "when the failure was answered" needs. (`std::time` panics on wasm32.)
pub fn now() -> f64 {
    js_sys::Date::now()
}

/// Fills `bytes` from the runtime's CSPRNG (`crypto.getRandomValues`, through getrandom's
/// `wasm_js` backend).
pub fn random(bytes: &mut [u8]) -> Result<(), String> {
    getrandom::fill(bytes).map_err(|error| error.to_string())
}

/// `ctx.waitUntil(work)`: work that goes on after the response. Every caller's future goes in as
/// one boxed type, so `worker::Context::wait_until` (generic over the future) and the
/// `future_to_promise` under it are compiled once, not once per caller: -2.3 KB gzip with four
/// callers (upload 193,322 -> 190,999 B, measured 2026-12-08).
pub fn defer(ctx: &worker::Context, work: impl Future<Output = ()> + 'static) {
    let work: std::pin::Pin<Box<dyn Future<Output = ()>>> = Box::pin(work);
    ctx.wait_until(work);
}

/// Resolves after `ms` on the runtime's timer. Not "after the response" for `ms = 0`: workerd
/// can run a 0 ms timer before it has written a response handed back in this turn (see
/// `edge::AFTER_PAGE_MS`).
pub async fn sleep(ms: u32) {
    Delay::from(Duration::from_millis(u64::from(ms))).await;
}

/// Runs `future` for at most `timeout_ms`; `None` when the time ran out first (the future is
/// then dropped: a fetch it held is left to the runtime, which cancels it when the request ends).
pub async fn within<F: Future>(timeout_ms: u32, future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut timer = pin!(sleep(timeout_ms));
    poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Every header as a lowercase `(name, value)` pair; repeated `Set-Cookie` headers stay apart.
pub fn header_pairs(headers: &Headers) -> Vec<(String, String)> {
    headers.entries().collect()
}

/// The headers named in `names` that are present, as `(name, value)` pairs: what a decision
/// needs, without carrying the rest (cookies, ...) into wasm.
pub fn some_header_pairs<'a>(
    headers: &Headers,
    names: impl IntoIterator<Item = &'a str>,
) -> Vec<(String, String)> {
    names
        .into_iter()
        .filter_map(|name| {
            let value = headers.get(name).ok().flatten()?;
            Some((name.to_owned(), value))
        })
        .collect()
}

/// A request for `Fetch`: `method` as given, `headers`, `body` (a stream or bytes) and the
/// redirect mode. Built from web-sys's `RequestInit` rather than `worker::RequestInit`, which
/// takes a `worker::Method` enum (every method it does not list, `PROPFIND`, `PURGE`, ...,
/// becomes `GET`: a proxy forwards the method as it came) and converts its `cf` options through
/// serde-wasm-bindgen on every request.
pub fn request(
    url: &str,
    method: &str,
    headers: &Headers,
    body: Option<&JsValue>,
    redirect: web_sys::RequestRedirect,
) -> Result<worker::Request, JsValue> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    init.set_headers(&headers.0);
    init.set_redirect(redirect);
    if let Some(body) = body {
        init.set_body(body);
    }
    web_sys::Request::new_with_str_and_init(url, &init).map(worker::Request::from)
}

/// A non-empty string property of `request.cf`, read directly: `worker::Cf`'s getters unwrap,
/// and a request not from Cloudflare's edge (workerd locally, `wrangler dev`) has a `cf` object
/// without `colo`.
pub fn cf_string(req: &web_sys::Request, key: &str) -> Option<String> {
    let cf = Reflect::get(req, &JsValue::from_str("cf")).ok()?;
    let value = Reflect::get(&cf, &JsValue::from_str(key))
        .ok()?
        .as_string()?;
    Some(value).filter(|value| !value.is_empty())
}

/// The first value of header `name` (case-insensitive) in `headers`.
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A JS exception as text: its `message`, or the thrown string.
pub fn js_error_message(error: &JsValue) -> String {
    if let Some(error) = error.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    error
        .as_string()
        .unwrap_or_else(|| "unknown error".to_owned())
}

/// A `worker::Error` as text: a JS exception's message alone (its `Display` prefixes the
/// exception's name, "Error: "), anything else as `Display` writes it.
pub fn error_message(error: &worker::Error) -> String {
    match error {
        worker::Error::UnknownJsError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// `stream.cancel()`, its outcome ignored: a courtesy to the runtime that changes nothing.
pub fn cancel(stream: &web_sys::ReadableStream) {
    let _ = stream.cancel();
}

/// A reader of `stream` (which locks it: cancel the reader, not the stream, when done).
pub fn reader_of(
    stream: &web_sys::ReadableStream,
) -> Result<web_sys::ReadableStreamDefaultReader, JsValue> {
    stream.get_reader().dyn_into().map_err(JsValue::from)
}

/// Reads chunk by chunk, handing each chunk to `take` until it returns `false`; `true` when the
/// stream ended. A trait object, so every caller shares one future type (each distinct one cost
/// 2-3 KB of wasm).
pub async fn read_chunks(
    reader: &web_sys::ReadableStreamDefaultReader,
    take: &mut dyn FnMut(&Uint8Array) -> bool,
) -> Result<bool, JsValue> {
    loop {
        let chunk = JsFuture::from(reader.read()).await?;
        if Reflect::get(&chunk, &JsValue::from_str("done"))?.is_truthy() {
            return Ok(true);
        }
        let value = Reflect::get(&chunk, &JsValue::from_str("value"))?;
        let bytes = value
            .dyn_into()
            .unwrap_or_else(|_| Uint8Array::new_with_length(0));
        if !take(&bytes) {
            return Ok(false);
        }
    }
}

/// `stream` through a new `class(arg)` of the runtime's transform streams
/// (`CompressionStream`, `DecompressionStream`): neither is among the web-sys
/// bindings `worker` enables, so they are reached through `js_sys::Reflect`, and no compressor
/// is linked into the wasm.
pub fn pipe_through(
    stream: &web_sys::ReadableStream,
    class: &str,
    arg: &JsValue,
) -> Result<web_sys::ReadableStream, JsValue> {
    let global = js_sys::global();
    let class: js_sys::Function = Reflect::get(&global, &JsValue::from_str(class))?.dyn_into()?;
    let transform = Reflect::construct(&class, &js_sys::Array::of1(arg))?;
    let pipe_through: js_sys::Function =
        Reflect::get(stream, &JsValue::from_str("pipeThrough"))?.dyn_into()?;
    pipe_through.call1(stream, &transform)?.dyn_into()
}

/// `bytes` through the runtime's `CompressionStream("gzip")`.
pub async fn gzip(bytes: &[u8]) -> Result<Vec<u8>, JsValue> {
    let plain = web_sys::Response::new_with_opt_buffer_source(Some(&Uint8Array::from(bytes)))?;
    let stream = plain
        .body()
        .ok_or_else(|| JsValue::from_str("no body to compress"))?;
    let compressed = pipe_through(&stream, "CompressionStream", &JsValue::from_str("gzip"))?;
    let response = web_sys::Response::new_with_opt_readable_stream(Some(&compressed))?;
    let buffer = JsFuture::from(response.array_buffer()?).await?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// `DEBUG_TRAP_PATH`: a trap of the wasm instance (`unreachable`), what no `catch_unwind` stops,
/// as a stack overflow or running out of memory would end it.
pub fn trap() -> ! {
    core::arch::wasm32::unreachable()
}
