//! The Workers runtime as the edge sees it: the handler's `env` and `ctx`, a timer, the console,
//! and the promise the runtime awaits. Bound directly with wasm-bindgen rather than through the
//! `worker` crate, whose `#[wasm_bindgen]` exports (stream adapters, container and R2 classes)
//! can never be dead-stripped and cost ~25 KB of wasm and JS glue we never used.
//!
//! `src/entry.js` is the module the runtime loads: it calls [`super::fetch`] with the runtime's
//! own `request`, `env` and `ctx` objects. Nothing here decides anything.
//!
//! No `js-sys` or `web-sys` either: the few runtime types edgeguard touches are declared here,
//! with only the members it reads. Linking `js-sys` kept ~13 KB of wasm alive (closure shims for
//! every JS API it binds, used or not, in the panic=unwind build), and its futures ~21 KB more
//! (`super::task` replaces them).

use super::task::{self, Settled};
use std::future::Future;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(inline_js = r#"
// Requests whose ctx.passThroughOnException() was called: src/entry.js reads this set when the
// wasm instance fails underneath a request, to let the runtime pass it to the origin.
const passing = (globalThis.__edgeguardPassing ??= new WeakSet());

export function passThrough(ctx) {
  ctx.passThroughOnException();
  passing.add(ctx);
}
"#)]
extern "C" {
    /// The handler's `env`: vars and secrets, as the runtime binds them.
    pub type Env;

    /// The handler's `ctx` (an `ExecutionContext`).
    pub type Context;

    #[wasm_bindgen(method, catch, js_name = waitUntil)]
    fn wait_until_promise(this: &Context, promise: &Promise) -> Result<(), JsValue>;

    #[wasm_bindgen(js_name = passThrough, catch)]
    fn pass_through(ctx: &Context) -> Result<(), JsValue>;
}

#[wasm_bindgen]
extern "C" {
    /// The runtime's `Request`: the visitor's request.
    #[derive(Clone)]
    pub type Request;
    #[wasm_bindgen(method, getter)]
    pub fn url(this: &Request) -> String;
    #[wasm_bindgen(method, getter)]
    pub fn method(this: &Request) -> String;
    #[wasm_bindgen(method, getter)]
    pub fn headers(this: &Request) -> Headers;
    #[wasm_bindgen(method, getter)]
    pub fn body(this: &Request) -> Option<ReadableStream>;
    #[wasm_bindgen(method, getter, js_name = bodyUsed)]
    pub fn body_used(this: &Request) -> bool;

    /// The runtime's `Response`: the origin's, or one of ours.
    #[derive(Clone)]
    pub type Response;
    #[wasm_bindgen(method, getter)]
    pub fn status(this: &Response) -> u16;
    #[wasm_bindgen(method, getter)]
    pub fn headers(this: &Response) -> Headers;
    #[wasm_bindgen(method, getter)]
    pub fn body(this: &Response) -> Option<ReadableStream>;

    /// The runtime's `Headers`.
    pub type Headers;
    #[wasm_bindgen(method, catch)]
    pub fn get(this: &Headers, name: &str) -> Result<Option<String>, JsValue>;
    #[wasm_bindgen(method, catch)]
    pub fn set(this: &Headers, name: &str, value: &str) -> Result<(), JsValue>;

    /// A body stream (never read here, only handed on, counted or cancelled).
    pub type ReadableStream;

    /// A JS promise: awaited through [`Settled`], or handed to the runtime.
    pub type Promise;

    /// `Date.now()`: epoch milliseconds (on Workers, the time of the last I/O).
    #[wasm_bindgen(js_namespace = Date)]
    pub fn now() -> f64;

    #[wasm_bindgen(js_namespace = console, js_name = log)]
    pub(crate) fn console_log_str(message: &str);
    #[wasm_bindgen(js_namespace = console, js_name = warn)]
    pub(crate) fn console_warn_str(message: &str);
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    pub(crate) fn console_error_str(message: &str);
}

impl Env {
    /// A text var or secret: `None` when unset or bound to anything but a string.
    pub fn var(&self, name: &str) -> Option<String> {
        super::js::string_property(self, name)
    }

    /// A secret (`wrangler secret put`): to the worker, a text binding like any var.
    pub fn secret(&self, name: &str) -> Option<String> {
        self.var(name)
    }
}

impl Context {
    /// Keeps the isolate working on `future` after the response is sent (up to the runtime's
    /// limit). A panic inside it ends that future only.
    pub fn wait_until<F: Future<Output = ()> + 'static>(&self, future: F) {
        let promise = task::to_promise(
            async move {
                future.await;
                JsValue::UNDEFINED
            },
            || JsValue::UNDEFINED,
        );
        // Refused only outside a request; the work is then simply not kept alive.
        let _ = self.wait_until_promise(&promise);
    }

    /// Should the handler itself fail (here: the wasm instance trapping), the runtime sends
    /// the request to the origin instead of answering with an error.
    pub fn pass_through_on_exception(&self) {
        let _ = pass_through(self);
    }
}

/// Resolves after `ms`, on the runtime's timer. `sleep(0)` is not "after the response": workerd
/// can run a 0 ms timer before it has written a response handed back in this turn (see
/// `edge::AFTER_PAGE_MS`).
pub async fn sleep(ms: u32) {
    let _ = Settled::from(super::js::sleep(ms)).await;
}

/// The handler's answer as the promise the runtime awaits. The handler returns a response, never
/// an error, so the promise never rejects (only a trap of the whole instance can fail it: see
/// `src/entry.js`).
pub fn respond<F>(handler: F) -> Promise
where
    F: Future<Output = Response> + 'static,
{
    // A panic the handler did not catch (none should get past `guarded`) still answers: a
    // bare 500 rather than a request left hanging.
    task::to_promise(handler, || super::js::bare(500).into())
}

/// Runs once per instance. Arms [`on_abort`], and logs panics to the console (the default hook
/// writes to a stderr no one reads); `edge::install_panic_hook` chains to this hook.
#[wasm_bindgen(start)]
fn start() {
    wasm_bindgen::handler::set_on_abort(on_abort);
    std::panic::set_hook(Box::new(|info| {
        console_error_str(&format!("edgeguard: Rust panic: {info}"));
    }));
}

/// Called by wasm-bindgen's glue when the instance hard-aborts (a trap `catch_unwind` cannot
/// stop: stack overflow, out of memory, `unreachable`). The instance is poisoned: the next call
/// into it builds a fresh one from the same module instead of failing forever. Only
/// wasm-bindgen's own intrinsics work here: any other import call from the dead instance traps
/// again (so `src/entry.js` notices the trap itself, from the runtime's `error` event).
fn on_abort() {
    wasm_bindgen::handler::schedule_reinit();
}

/// `DEBUG_TRAP_PATH`: a trap of the wasm instance (`unreachable`), what no `catch_unwind` stops,
/// as a stack overflow or running out of memory would end it.
pub fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

/// `console.log` with `format!` arguments.
macro_rules! console_log {
    ($($arg:tt)*) => { $crate::edge::runtime::console_log_str(&format!($($arg)*)) };
}

/// `console.warn` with `format!` arguments.
macro_rules! console_warn {
    ($($arg:tt)*) => { $crate::edge::runtime::console_warn_str(&format!($($arg)*)) };
}

/// `console.error` with `format!` arguments.
macro_rules! console_error {
    ($($arg:tt)*) => { $crate::edge::runtime::console_error_str(&format!($($arg)*)) };
}

pub(crate) use {console_error, console_log, console_warn};

/// Fills `bytes` from the runtime's CSPRNG (`crypto.getRandomValues`).
pub fn random(bytes: &mut [u8]) -> Result<(), String> {
    super::js::random_fill(bytes).map_err(|e| super::js::error_message(&e))
}
