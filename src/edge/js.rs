//! Runtime calls made in one JS step instead of many small crossings. Every call from wasm into
//! JS (and every string decoded on the way back) costs CPU on every request: iterating `Headers`
//! from Rust took four crossings per header, and building a `RequestInit` plus an
//! `AbortController`, a Rust timer closure and a race took a dozen more. These helpers do the
//! same work inside JS and hand back one value. They decide nothing: what to send, where, and
//! for how long is still decided in Rust.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(inline_js = r#"
export function headerText(headers) {
  let text = "";
  for (const [name, value] of headers) text += name + "\n" + value + "\n";
  return text;
}

export function fetchWithin(url, method, headers, body, redirect, ms) {
  const controller = new AbortController();
  const init = { method, headers, redirect, signal: controller.signal };
  if (body != null) init.body = body;
  let answered = false;
  const sent = fetch(url, init).then(
    (response) => {
      answered = true;
      return response;
    },
    (error) => {
      answered = true;
      throw error;
    },
  );
  // scheduler.wait is the runtime's own timer: about a quarter of setTimeout's cost per request
  // (measured on workerd), and nothing to clear. Once the response head is in, it aborts
  // nothing: the body may stream for as long as it takes.
  const wait = globalThis.scheduler?.wait
    ? scheduler.wait(ms)
    : new Promise((resolve) => setTimeout(resolve, ms));
  const late = wait.then(() => {
    if (!answered) controller.abort();
    return null;
  });
  return Promise.race([sent, late]);
}
"#)]
extern "C" {
    /// Every header as `name\nvalue\n` (names lowercase, repeated `Set-Cookie` kept apart). A
    /// header value cannot contain a line break, so the text splits back unambiguously.
    #[wasm_bindgen(js_name = headerText, catch)]
    fn header_text(headers: &web_sys::Headers) -> Result<String, JsValue>;

    /// `fetch(url, {method, headers, body, redirect})` that resolves to the `Response`, or to
    /// `null` when no response arrived within `ms` (the fetch is then aborted); rejects when
    /// the fetch fails. The timer covers the response head only, never the body stream.
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
    let Ok(text) = header_text(headers) else {
        return Vec::new();
    };
    let mut lines = text.split('\n');
    let mut pairs = Vec::new();
    while let (Some(name), Some(value)) = (lines.next(), lines.next()) {
        pairs.push((name.to_owned(), value.to_owned()));
    }
    pairs
}
