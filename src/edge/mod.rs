//! The edge: the only module that talks to the Workers runtime (fetch, env, `wait_until`, clock,
//! randomness, console). It reads what the core needs from the runtime, asks the core what to do,
//! and carries it out. Everything it decides is decided by a core function tested on the host.
//!
//! Invariants kept here:
//! - the fetch handler never returns `Err` (the runtime would turn it into a bare 500), and a
//!   panic anywhere on the request path becomes the 500 page and an event (`catch_panic`);
//! - the visitor never waits for Sentry: reporting runs in `ctx.wait_until`;
//! - bodies are never buffered: the origin's response object is returned as-is, stream and all
//!   (or, when hop-by-hop headers must go, a new response around the same stream);
//! - nothing from the origin's failing body, the DSN or `ORIGIN_URL` reaches the visitor or a log;
//! - the reporter never reports itself: its own failures are logged and counted only.

mod js;
mod runtime;
mod task;
mod transport;

use crate::config::{BuildInfo, Config, ConfigError, Origin};
use crate::feedback::form;
use crate::feedback::{self, FeedbackContext, RateLimit, Rejection, Submission, TokenKey};
use crate::page::lang;
use crate::page::{self, prefers_json, PageInput};
use crate::proxy::forward;
use crate::proxy::outcome::{
    is_origin_failure, reason_phrase, BodyMeter, ErrorLink, Failure, SourceLocation,
    FAILING_BODY_PEEK_MS,
};
use crate::proxy::url::UrlParts;
use crate::sentry::dsn::Dsn;
use crate::sentry::envelope;
use crate::sentry::event::{self, EventInput, OriginCall, RequestInfo, ResponseInfo};
use crate::sentry::id::EventId;
use crate::sentry::ratelimit::{CATEGORY_ERROR, CATEGORY_FEEDBACK};
use crate::sentry::route;
use crate::sentry::time::elapsed_ms;
use crate::slab::Slab;
use js::{header_pairs, some_header_pairs};
use runtime::{console_error, console_warn, now, Context, Env, Promise, Request, Response};
use std::any::Any;
use std::cell::{Cell, OnceCell, RefCell};
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use task::Settled;
use transport::Delivery;
use wasm_bindgen::prelude::{wasm_bindgen, Closure};
use wasm_bindgen::{JsCast, JsValue};

/// How long the event waits before it is built, so that the page has been written first. Not 0:
/// workerd ran a 0 ms timer before writing the page handed back in the same turn, so the
/// visitor waited for the event's build. Measured one request at a time (`scripts/bench.sh`,
/// `/500 − /1k`): 0 ms +0.22 ms, 1 ms +0.10 ms, 5 ms +0.13 ms, no reporting at all +0.00 ms.
/// The event's timestamp is taken before the wait.
const AFTER_PAGE_MS: u32 = 1;

/// The page's Content-Security-Policy: a static page with inline CSS and nothing else.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                        base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The headers every page carries, besides its content type, `X-Sentry-ID` and `Retry-After`.
const PAGE_HEADER_PAIRS: [(&str, &str); 5] = [
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    ("content-security-policy", PAGE_CSP),
    ("referrer-policy", "no-referrer"),
    ("vary", "Accept, Accept-Language"),
];

thread_local! {
    /// Settings are validated once per isolate, so each bad value is logged once, not per request.
    static CONFIG: OnceCell<Rc<Config>> = const { OnceCell::new() };
    /// Bad settings not yet reported to Sentry: taken by the first request, reported once.
    static UNREPORTED_CONFIG_ERRORS: RefCell<Vec<ConfigError>> = const { RefCell::new(Vec::new()) };
    /// Set by our panic hook, taken by the `catch_unwind` that stops the panic: the payload alone
    /// has no location.
    static LAST_PANIC: RefCell<Option<(String, Option<SourceLocation>)>> = const { RefCell::new(None) };
    static PANIC_HOOK_INSTALLED: Cell<bool> = const { Cell::new(false) };
    /// Events that could not be built or sent in this isolate: logged and counted, never turned
    /// into further events (a failing reporter must not feed itself).
    static REPORTER_FAILURES: Cell<u64> = const { Cell::new(0) };
    /// The feedback token key: `FEEDBACK_SECRET`, else random for this isolate (`None` when no
    /// randomness was available: feedback is then off).
    static FEEDBACK_KEY: OnceCell<Option<TokenKey>> = const { OnceCell::new() };
    /// The header names the request and response edits read, as JS arrays made once.
    static REQUEST_EDIT_READS: JsValue = js::names_array(forward::request_edit_reads());
    static RESPONSE_EDIT_READS: JsValue = js::names_array(forward::response_edit_reads());
    /// The request headers a failure page needs (the event reads all of them, later).
    static PAGE_READS: JsValue = js::names_array(["accept", "accept-language", "cf-ray"].into_iter());
    /// The response headers a failure answer needs (the event reads all of them, later).
    static FAILING_READS: JsValue = js::names_array(["content-length", "retry-after"].into_iter());
    /// Requests whose origin fetch is in flight, by the key `on_settled` is called with.
    static IN_FLIGHT: RefCell<Slab<InFlight>> = const { RefCell::new(Slab::new()) };
    /// `on_settled` as a JS function, made once per instance (not a closure per request).
    static ON_SETTLED: Closure<dyn Fn(u32, JsValue, bool) -> JsValue> = Closure::new(on_settled);
    /// The headers every page carries, made once per instance and copied into each page.
    static PAGE_HEADERS: Result<runtime::Headers, JsValue> = js::headers(&PAGE_HEADER_PAIRS);
    /// At most 10 feedback submissions at once, 30 a minute, per isolate.
    static FEEDBACK_RATE: RefCell<RateLimit> = RefCell::new(RateLimit::new(10, 30));
}

/// The runtime's `fetch` handler, called by `src/entry.js` with the runtime's own request, `env`
/// and `ctx`. The promise always resolves to a response, never rejects: the runtime would turn a
/// rejection into a bare 500.
///
/// Panics are caught here. The worker is built with panic=unwind (`scripts/build.sh`), so a
/// panic unwinds only the request that raised it: that request gets the 500 page and an event,
/// and every other request in flight in the isolate carries on. A `panic=abort` build would
/// fail them all and reset the instance.
#[wasm_bindgen]
pub fn fetch(req: Request, env: Env, ctx: Context) -> Promise {
    install_panic_hook();
    let config = config(&env);
    let attempt = Attempt::default();
    let next = match caught(|| begin(&req, &config, &ctx, &attempt)) {
        // The common case: the request is on its way to the origin. Its answer is taken up by
        // `on_settled`, called straight from the fetch's promise: no Rust future, task queue
        // or waker on the path of a passing request (they were ~15% of its CPU in a profile).
        Ok(sent) => {
            let key = IN_FLIGHT.with(|slab| {
                slab.borrow_mut().insert(InFlight {
                    req,
                    ctx,
                    config,
                    attempt,
                })
            });
            return ON_SETTLED.with(|callback| js::when_settled(&sent, key, callback));
        }
        Err(next) => next,
    };
    runtime::respond(guarded(req, config, ctx, attempt, next))
}

/// `step` with a panic caught: a panic becomes `Next::Failed`, answered like any own failure.
fn caught<T>(step: impl FnOnce() -> Result<T, Next>) -> Result<T, Next> {
    catch_unwind(AssertUnwindSafe(step))
        .unwrap_or_else(|payload| Err(Next::Failed(Failure::from_panic(payload.as_ref()).into())))
}

/// A request whose origin fetch is in flight, waiting for `on_settled`.
struct InFlight {
    req: Request,
    ctx: Context,
    config: Rc<Config>,
    attempt: Attempt,
}

/// What is left to do for a request that is not simply passing through.
enum Next {
    /// The feedback form's POST: answered here, never proxied.
    Feedback,
    /// Something failed: report it and answer with the page (or replay, for our own failures).
    Failed(Failed),
    /// The origin answered with a failing status: count its body, then as `Failed`.
    OriginFailing(Response),
}

/// Everything up to the origin fetch, done at once: the request is sent (not awaited), or
/// there is something else to do.
fn begin(
    req: &Request,
    config: &Config,
    ctx: &Context,
    attempt: &Attempt,
) -> Result<Promise, Next> {
    // The URL crosses from JS and is split once per request; everything below borrows it.
    let url = req.url();
    let Some(parts) = UrlParts::split(&url) else {
        return Err(Next::Failed(internal("request URL has no scheme or host")));
    };
    if parts.path == feedback::PATH {
        return Err(Next::Feedback);
    }
    if config.pass_through_on_exception {
        // Should the wasm instance itself trap (beyond what catch_unwind can stop), the runtime
        // then sends the request to the origin instead of its error page.
        ctx.pass_through_on_exception();
    }
    report_config_errors(req, config, ctx);
    debug_triggers(parts.path, config).map_err(Next::Failed)?;
    let target = target_url(&url, &parts, config).map_err(Next::Failed)?;
    send_to_origin(req, &parts, config, &target, attempt).map_err(Next::Failed)
}

/// The origin's answer for a request in flight (`fulfilled`: the fetch's promise resolved, to
/// a response or to `null` for a timeout; else it rejected with `value`). Called by the
/// runtime through `js::when_settled`; returns the response, or a promise of one.
fn on_settled(key: u32, value: JsValue, fulfilled: bool) -> JsValue {
    let Some(InFlight {
        req,
        ctx,
        config,
        attempt,
    }) = IN_FLIGHT.with(|slab| slab.borrow_mut().remove(key))
    else {
        count_reporter_failure("an origin answer for no request in flight; bare 500 sent");
        return bare_response(500).into();
    };
    let answer = if fulfilled { Ok(value) } else { Err(value) };
    let next = match caught(|| settle(&req, &config, &ctx, &attempt, answer)) {
        Ok(response) => return response.into(),
        Err(next) => next,
    };
    runtime::respond(guarded(req, config, ctx, attempt, next)).into()
}

/// A passing response goes back now (opt-in warnings scheduled); anything else is `Next`.
fn settle(
    req: &Request,
    config: &Config,
    ctx: &Context,
    attempt: &Attempt,
    answer: Result<JsValue, JsValue>,
) -> Result<Response, Next> {
    let response = origin_answered(answer, config, attempt).map_err(Next::Failed)?;
    if is_origin_failure(response.status()) {
        return Err(Next::OriginFailing(response));
    }
    let response = without_hop_by_hop(response);
    if config.handled.is_on() {
        report_handled(req, config, ctx, attempt, &response);
    }
    Ok(response)
}

/// `finish` with panics caught: a panic gets our own-failure answer, and a panic while
/// answering that gets a bare 500, never a loop.
async fn guarded(
    req: Request,
    config: Rc<Config>,
    ctx: Context,
    attempt: Attempt,
    next: Next,
) -> Response {
    let failed = match catch_panic(finish(&req, &config, &ctx, &attempt, next)).await {
        Ok(response) => return response,
        Err(panic) => Failed::from(panic),
    };
    let answer = catch_panic(answer_own_failure(&req, &config, &ctx, &attempt, failed)).await;
    answer.unwrap_or_else(|_| {
        count_reporter_failure("panicked while answering a panic; bare 500 sent");
        bare_response(500)
    })
}

/// The rest of a request that did not simply pass through.
async fn finish(
    req: &Request,
    config: &Config,
    ctx: &Context,
    attempt: &Attempt,
    next: Next,
) -> Response {
    let mut failed = match next {
        Next::Feedback => return feedback_endpoint(req, ctx, config).await,
        Next::Failed(failed) => failed,
        Next::OriginFailing(response) => origin_failing(response).await,
    };
    if failed.failure.is_own() {
        return answer_own_failure(req, config, ctx, attempt, failed).await;
    }
    failed.call = attempt.call.get();
    answer_failure(req, config, ctx, failed)
}

/// The opt-in warnings (`SENTRY_REPORT_4XX`, `SENTRY_SLOW_ORIGIN_MS`) for a response that
/// passes through unchanged: the decision is `HandledEvents::notice`; the event goes out in
/// `wait_until` like any other, and the visitor's headers are read only when one is due.
fn report_handled(
    req: &Request,
    config: &Config,
    ctx: &Context,
    attempt: &Attempt,
    response: &Response,
) {
    let Some(call) = attempt.call.get() else {
        return;
    };
    let notice = call
        .status
        .and_then(|status| config.handled.notice(status, call.duration_ms));
    let Some(failure) = notice.filter(|_| config.dsn.is_some()) else {
        return;
    };
    let (body_size, _) = failing_reads(response);
    let failed = Failed {
        failure,
        origin: Some(OriginFailure {
            response: response.clone(),
            body_size,
            retry_after: None,
        }),
        call: Some(call),
    };
    report_event(config, ctx, &failed, &Visitor::read(req), true);
}

/// edgeguard's own failure (an internal error or a panic): reported, then the page or, with
/// `PASS_THROUGH_ON_EXCEPTION`, the origin's answer as if edgeguard were not there.
async fn answer_own_failure(
    req: &Request,
    config: &Config,
    ctx: &Context,
    attempt: &Attempt,
    mut failed: Failed,
) -> Response {
    failed.call = failed.call.or(attempt.call.get());
    // Replaying is safe only when the body (if any) is unread, and the origin has not seen the
    // request yet or the method is safe.
    let replayable = !req.body_used()
        && (!attempt.sent.get() || matches!(req.method().as_str(), "GET" | "HEAD" | "OPTIONS"));
    if !(config.pass_through_on_exception && replayable) {
        return answer_failure(req, config, ctx, failed);
    }
    let visitor = Visitor::read(req);
    let event_id = report_event(config, ctx, &failed, &visitor, true);
    let url = req.url();
    let Some(parts) = UrlParts::split(&url) else {
        return failure_page(&visitor, &failed, event_id);
    };
    let target = match target_url(&url, &parts, config) {
        Ok(target) => target,
        Err(_) => return failure_page(&visitor, &failed, event_id),
    };
    match fetch_origin(req, &parts, config, &target, attempt).await {
        Ok(response) => response,
        Err(_) => failure_page(&visitor, &failed, event_id),
    }
}

/// Whether a request was already handed to the origin (so a replay could repeat its effects),
/// and how that fetch went (for the breadcrumb, `contexts.origin` and the slow-origin warning).
#[derive(Default)]
struct Attempt {
    sent: Cell<bool>,
    /// When the origin fetch was sent (epoch ms).
    started_ms: Cell<f64>,
    call: Cell<Option<OriginCall>>,
}

fn config(env: &Env) -> Rc<Config> {
    CONFIG.with(|cell| {
        Rc::clone(cell.get_or_init(|| {
            let lookup = |name: &str| env.var(name);
            let (config, errors) = Config::parse(lookup, BuildInfo::CURRENT);
            for error in &errors {
                console_error!("edgeguard: config: {error}");
            }
            UNREPORTED_CONFIG_ERRORS.with(|pending| pending.replace(errors));
            init_token_key(env);
            transport::init(config.max_events_per_minute, config.debug);
            Rc::new(config)
        }))
    })
}

/// Reports each bad setting once per isolate, as its own event, if the DSN itself is usable.
fn report_config_errors(req: &Request, config: &Config, ctx: &Context) {
    let errors = UNREPORTED_CONFIG_ERRORS.with(|pending| pending.take());
    if errors.is_empty() || config.dsn.is_none() {
        return;
    }
    let visitor = Visitor::read(req);
    for error in errors {
        let failed = Failed::from(Failure::Misconfigured {
            detail: error.to_string(),
        });
        report_event(config, ctx, &failed, &visitor, false);
    }
}

/// A request edgeguard could not serve, with what the origin said if it said anything.
#[derive(Clone)]
struct Failed {
    failure: Failure,
    origin: Option<OriginFailure>,
    /// The origin fetch, when one was made.
    call: Option<OriginCall>,
}

/// What the event and the page need of a failing origin response. The response itself is kept
/// for its headers, read for the event after the page has gone out (its body is never read).
#[derive(Clone)]
struct OriginFailure {
    response: Response,
    body_size: Option<u64>,
    retry_after: Option<String>,
}

impl Failure {
    /// edgeguard's own failures, as opposed to the origin's.
    fn is_own(&self) -> bool {
        matches!(self, Failure::Internal { .. } | Failure::Panic { .. })
    }
}

impl From<Failure> for Failed {
    fn from(failure: Failure) -> Self {
        Failed {
            failure,
            origin: None,
            call: None,
        }
    }
}

/// An internal error with its chain, outermost first: `(kind, message)` per link.
fn internal_chain(links: &[(&str, String)]) -> Failed {
    Failure::Internal {
        chain: links
            .iter()
            .map(|(kind, message)| ErrorLink {
                kind: (*kind).to_owned(),
                message: message.clone(),
            })
            .collect(),
    }
    .into()
}

fn internal(detail: impl Into<String>) -> Failed {
    internal_chain(&[("EdgeError", detail.into())])
}

/// A failing origin response, for the event and the page. The failing body (a Django debug
/// page, a stack trace) is never shown: at most a small prefix is counted, then the rest is
/// cancelled.
async fn origin_failing(response: Response) -> Failed {
    let status = response.status();
    let (content_length, retry_after) = failing_reads(&response);
    let origin = OriginFailure {
        body_size: failing_body_size(&response, content_length).await,
        retry_after,
        response,
    };
    Failed {
        failure: Failure::OriginStatus { status },
        origin: Some(origin),
        call: None,
    }
}

/// A response's `Content-Length` (as a number) and `Retry-After`, read in one crossing.
fn failing_reads(response: &Response) -> (Option<u64>, Option<String>) {
    let read = FAILING_READS.with(|names| some_header_pairs(&response.headers(), names));
    let content_length = find_header(&read, "content-length").and_then(|v| v.trim().parse().ok());
    let retry_after = find_header(&read, "retry-after").map(str::to_owned);
    (content_length, retry_after)
}

/// `DEBUG_PANIC_PATH` / `DEBUG_ERROR_PATH` / `DEBUG_TRAP_PATH`: fire inside the handler, on the
/// request path, as a bug of ours would. All unset (the default) costs three `None` comparisons.
fn debug_triggers(path: &str, config: &Config) -> Result<(), Failed> {
    if config.debug_panic_path.as_deref() == Some(path) {
        debug_panic();
    }
    if config.debug_trap_path.as_deref() == Some(path) {
        runtime::trap();
    }
    if config.debug_error_path.as_deref() == Some(path) {
        return Err(debug_error());
    }
    Ok(())
}

/// Where this request goes: `ORIGIN_URL` applied to the request URL, or the URL itself in route
/// mode.
fn target_url(url: &str, parts: &UrlParts<'_>, config: &Config) -> Result<String, Failed> {
    match &config.origin {
        Origin::Route => Ok(url.to_owned()),
        Origin::Url(origin) => Ok(origin.target(parts)),
        Origin::Invalid(error) => Err(Failure::Misconfigured {
            detail: ConfigError::OriginUrl(error.clone()).to_string(),
        }
        .into()),
    }
}

/// `DEBUG_PANIC_PATH`: a real panic, raised exactly as a bug in edgeguard would raise one.
#[allow(clippy::panic)]
fn debug_panic() {
    panic!("DEBUG_PANIC_PATH requested: edgeguard panics on purpose");
}

/// `DEBUG_ERROR_PATH`: an internal error with a two-link chain, as a failing runtime call
/// wrapped in our own context would produce.
fn debug_error() -> Failed {
    internal_chain(&[
        (
            "EdgeError",
            "DEBUG_ERROR_PATH requested: could not prepare the origin request".to_owned(),
        ),
        ("JsError", "TypeError: simulated runtime failure".to_owned()),
    ])
}

/// One fetch to the origin with the request's method, edited headers (hop-by-hop dropped,
/// `X-Forwarded-*` and the loop marker set) and body stream, redirects left to the visitor,
/// within the origin timeout: sent, and its promise returned (see `origin_answered`).
fn send_to_origin(
    req: &Request,
    parts: &UrlParts<'_>,
    config: &Config,
    target: &str,
    attempt: &Attempt,
) -> Result<Promise, Failed> {
    let method = req.method();
    let visitor = forward::Visitor {
        method: &method,
        scheme: parts.scheme,
        host: parts.host,
    };
    let incoming = req.headers();
    let token = forward::loop_token(&config.origin, parts.host);
    let read = REQUEST_EDIT_READS.with(|names| some_header_pairs(&incoming, names));
    let edit =
        forward::request_edit(&read, &visitor, &token).map_err(|_| Failed::from(Failure::Loop))?;
    let headers = js::edited(&incoming, &edit).map_err(|e| internal(js_message("Headers", &e)))?;

    // Redirects go to the visitor: following them would change what the page is.
    let body: JsValue = req.body().map_or(JsValue::NULL, JsValue::from);
    attempt.sent.set(true);
    attempt.started_ms.set(now());
    js::fetch_within(
        target,
        &method,
        &headers,
        &body,
        "manual",
        config.origin_timeout_ms,
    )
    .map_err(|error| origin_unreachable(&error))
}

/// The origin fetch failed (refused, reset, DNS): thrown at once or rejected later.
fn origin_unreachable(error: &JsValue) -> Failed {
    Failure::OriginUnreachable {
        detail: js_message("fetch", error),
    }
    .into()
}

/// What the origin fetch came to: its response, or why there is none. Records the call (time,
/// status) in `attempt` for the breadcrumb, `contexts.origin` and the slow-origin warning.
fn origin_answered(
    answer: Result<JsValue, JsValue>,
    config: &Config,
    attempt: &Attempt,
) -> Result<Response, Failed> {
    let started_ms = attempt.started_ms.get();
    attempt.call.set(Some(OriginCall {
        started_ms,
        duration_ms: elapsed_ms(started_ms, now()),
        status: answer
            .as_ref()
            .ok()
            .and_then(|value| value.dyn_ref::<Response>())
            .map(Response::status),
    }));
    match answer {
        // `null`: no answer within the origin timeout (the fetch is left to the runtime to cancel).
        Ok(value) if value.is_null() => Err(Failure::OriginTimeout {
            after_ms: config.origin_timeout_ms,
        }
        .into()),
        Ok(value) => value
            .dyn_into::<Response>()
            .map_err(|_| internal("fetch resolved to something other than a Response")),
        Err(error) => Err(origin_unreachable(&error)),
    }
}

/// The origin fetch, awaited (the fail-open replay; a passing request takes `on_settled`).
async fn fetch_origin(
    req: &Request,
    parts: &UrlParts<'_>,
    config: &Config,
    target: &str,
    attempt: &Attempt,
) -> Result<Response, Failed> {
    let sent = send_to_origin(req, parts, config, target, attempt)?;
    origin_answered(Settled::from(sent).await, config, attempt)
}

/// The visitor's request as read for a failure page: the few headers the page needs, in one
/// crossing. The event reads all of them after the page has gone out (`EventJob::build`).
struct Visitor<'a> {
    req: &'a Request,
    headers: Vec<(String, String)>,
}

impl<'a> Visitor<'a> {
    fn read(req: &'a Request) -> Self {
        Visitor {
            req,
            headers: PAGE_READS.with(|names| some_header_pairs(&req.headers(), names)),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// The origin's response without hop-by-hop headers. Almost every response has none and is
/// returned as-is; otherwise a new response wraps the same body stream (never read here). A
/// `101 Switching Protocols` (a WebSocket) is always returned as-is: it carries the socket.
fn without_hop_by_hop(response: Response) -> Response {
    let status = response.status();
    if status == 101 {
        return response;
    }
    let read = RESPONSE_EDIT_READS.with(|names| some_header_pairs(&response.headers(), names));
    let edit = forward::response_edit(&read);
    if !edit.changes_response() {
        return response;
    }
    let rebuilt = js::edited(&response.headers(), &edit)
        .map_err(|e| js_message("Headers", &e))
        .and_then(|headers| {
            // These statuses must not have a body, and the runtime refuses one.
            let keep_body = !matches!(status, 204 | 205 | 304);
            js::rewrap(&response, &headers, keep_body).map_err(|e| js_message("Response", &e))
        });
    rebuilt.unwrap_or_else(|error| {
        console_warn!("edgeguard: hop-by-hop headers left in a response: {error}");
        response
    })
}

/// The failing body's size for the event, then the body is cancelled. With a Content-Length
/// nothing is read; otherwise at most `FAILING_BODY_PEEK_BYTES` are counted (not kept) for at
/// most `FAILING_BODY_PEEK_MS`. A body cut short has no known size.
async fn failing_body_size(response: &Response, content_length: Option<u64>) -> Option<u64> {
    let body = response.body()?;
    if content_length.is_some() {
        js::cancel(&body);
        return content_length;
    }
    let reader = js::reader_of(&body).ok()?;
    let mut meter = BodyMeter::default();
    let count = async {
        loop {
            let read = js::read_length(&reader).ok()?;
            // A chunk's length, or -1 at the end of the stream.
            let len = Settled::from(read).await.ok()?.as_f64()?;
            if len < 0.0 {
                return Some(true);
            }
            if !meter.add(len as u64) {
                return Some(false);
            }
        }
    };
    let reached_end = within(FAILING_BODY_PEEK_MS, count).await.flatten() == Some(true);
    js::cancel(&reader);
    meter.size(reached_end)
}

/// Reports the failure (when a DSN is configured) and builds the visitor's page.
fn answer_failure(req: &Request, config: &Config, ctx: &Context, failed: Failed) -> Response {
    let visitor = Visitor::read(req);
    // A bad ORIGIN_URL fails every request: it is reported once per isolate (as a config
    // error), not once per request. A loop is not reported here either: the hop that sent the
    // request sees our 508 as an origin failure and reports that.
    let event_id = match failed.failure {
        Failure::Misconfigured { .. } => None,
        _ if !failed.failure.is_reported() => None,
        _ => report_event(config, ctx, &failed, &visitor, true),
    };
    failure_page(&visitor, &failed, event_id)
}

/// The page (or JSON) for a failure, quoting the event id when one was sent.
fn failure_page(visitor: &Visitor<'_>, failed: &Failed, event_id: Option<EventId>) -> Response {
    let status = failed.failure.status();
    let event_hex = event_id.map(|id| id.to_hex());
    let token = event_hex.as_deref().and_then(|id| {
        let key = token_key()?;
        Some(key.issue(id, now()))
    });
    let page = PageInput {
        status,
        reason: reason_phrase(status),
        event_id: event_hex.as_deref(),
        ray_id: visitor.header("cf-ray"),
        misconfigured: matches!(failed.failure, Failure::Misconfigured { .. }),
        lang: page_language(visitor.header("accept-language")),
        feedback_token: token.as_deref(),
    };
    let (body, content_type) = if prefers_json(visitor.header("accept")) {
        (page.json(), "application/json")
    } else {
        (page.html(), "text/html; charset=utf-8")
    };
    let retry_after = failed
        .origin
        .as_ref()
        .and_then(|o| o.retry_after.as_deref())
        .filter(|_| status == 503);
    let head = visitor.req.method().eq_ignore_ascii_case("HEAD");
    page_response(
        status,
        content_type,
        (!head).then_some(body.as_str()),
        event_hex.as_deref(),
        retry_after,
    )
    .unwrap_or_else(|error| {
        console_error!("edgeguard: could not build the error page: {error}");
        bare_response(status)
    })
}

/// Builds the event and schedules its delivery after the response. Returns the event id, or
/// `None` when there is no DSN or no event could be built. Building is guarded: a panic in the
/// reporter is logged and counted, and never becomes an event of its own.
fn report_event(
    config: &Config,
    ctx: &Context,
    failed: &Failed,
    visitor: &Visitor<'_>,
    with_request: bool,
) -> Option<EventId> {
    let dsn = config.dsn.as_ref()?;
    // Sampling, rate limits and flood control decide before anything is built; a dropped
    // event gets no id (the page then quotes none: it would never be found in Sentry).
    // Flood control caps per grouping fingerprint, so an outage of /orders/1, /orders/2, ...
    // is capped as the one Sentry issue it is. A config report (no request) is keyed by its
    // text: one key per bad setting.
    let flood_key = if with_request {
        let url = visitor.req.url();
        let path = UrlParts::split(&url).map_or("", |parts| parts.path);
        route::fingerprint(&failed.failure, &visitor.req.method(), path).join("\n")
    } else {
        failed.failure.exception_value()
    };
    if !transport::admit(
        ctx,
        dsn,
        config.sample_rate,
        CATEGORY_ERROR,
        Some(&flood_key),
    ) {
        return None;
    }
    let mut random = [0u8; 16];
    if let Err(error) = runtime::random(&mut random) {
        count_reporter_failure(&format!(
            "no randomness for an event id ({error}); not sent"
        ));
        return None;
    }
    let job = EventJob {
        id: EventId::from_random(random),
        timestamp_ms: now(),
        dsn: dsn.clone(),
        config: CONFIG
            .with(|cell| cell.get().cloned())
            .unwrap_or_else(|| Rc::new(config.clone())),
        failed: failed.clone(),
        // The JS reference, not `Request.clone()` (which would tee the body).
        req: Clone::clone(visitor.req),
        with_request,
    };
    let id = job.id;
    // The event is built and sent once the page has gone out: building and starting the POST
    // before that made every failure answer later. Building is guarded: a panic in the reporter
    // is logged and counted, never an event of its own.
    ctx.wait_until(async move {
        runtime::sleep(AFTER_PAGE_MS).await;
        let built = catch_unwind(AssertUnwindSafe(|| job.build())).unwrap_or_else(|_| {
            count_reporter_failure("panicked while building an event; not sent");
            None
        });
        if let Some(delivery) = built {
            delivery.send().await;
        }
    });
    Some(id)
}

/// The page's language for the visitor's `Accept-Language` (English when nothing fits).
fn page_language(accept_language: Option<&str>) -> &'static str {
    let available: Vec<&'static str> = page::languages().collect();
    lang::negotiate(accept_language, &available)
}

/// The isolate's feedback token key, made with the config (a bad `FEEDBACK_SECRET` is logged
/// once). `None` when no randomness was available: feedback is then off.
fn token_key() -> Option<TokenKey> {
    FEEDBACK_KEY.with(|cell| cell.get().cloned().flatten())
}

/// `FEEDBACK_SECRET`, else a random key for this isolate.
fn init_token_key(env: &Env) {
    FEEDBACK_KEY.with(|cell| {
        cell.get_or_init(|| {
            let secret = env.secret("FEEDBACK_SECRET");
            if let Some(secret) = secret.filter(|s| !s.is_empty()) {
                match TokenKey::from_secret(&secret) {
                    Ok(key) => return Some(key),
                    Err(error) => console_error!("edgeguard: config: {error}"),
                }
            }
            let mut random = [0u8; 32];
            match runtime::random(&mut random) {
                Ok(()) => Some(TokenKey::from_random(random)),
                Err(error) => {
                    console_error!(
                        "edgeguard: no randomness for a feedback key ({error}); feedback is off"
                    );
                    None
                }
            }
        });
    });
}

/// The feedback form's target, never proxied: answers with the thank-you (or apology) page.
async fn feedback_endpoint(req: &Request, ctx: &Context, config: &Config) -> Response {
    let headers = header_pairs(&req.headers());
    let header = |name: &str| find_header(&headers, name);
    let (status, reason, sent) = match accept_feedback(req, ctx, config, &headers).await {
        Ok(()) => (200, "OK", true),
        Err(rejection) => {
            console_warn!("edgeguard: feedback refused: {rejection}");
            (rejection.status(), rejection.reason(), false)
        }
    };
    let body = page::feedback_html(
        page_language(header("accept-language")),
        status,
        reason,
        sent,
    );
    let head = req.method().eq_ignore_ascii_case("HEAD");
    page_response(
        status,
        "text/html; charset=utf-8",
        (!head).then_some(body.as_str()),
        None,
        None,
    )
    .inspect(|response| {
        if status == 405 {
            let _ = response.headers().set("allow", "POST");
        }
    })
    .unwrap_or_else(|error| {
        console_error!("edgeguard: could not build the feedback page: {error}");
        bare_response(status)
    })
}

/// Checks one submission and schedules its delivery to Sentry.
async fn accept_feedback(
    req: &Request,
    ctx: &Context,
    config: &Config,
    headers: &[(String, String)],
) -> Result<(), Rejection> {
    let header = |name: &str| find_header(headers, name);
    let length = feedback::check_request(
        &req.method(),
        header("content-type"),
        header("content-length"),
    )?;
    let dsn = config.dsn.as_ref().ok_or(Rejection::Disabled)?;
    let key = token_key().ok_or(Rejection::Disabled)?;
    let body = match js::body_bytes(req) {
        Ok(promise) => Settled::from(promise)
            .await
            .map(|buffer| js::bytes_of(&buffer))
            .map_err(|_| Rejection::Invalid("body"))?,
        Err(_) => return Err(Rejection::Invalid("body")),
    };
    // The runtime frames the body by Content-Length; this guards against it not doing so.
    if body.len() > length.min(feedback::MAX_BODY_BYTES) {
        return Err(Rejection::TooLarge);
    }
    let submission = Submission::from_pairs(&form::parse(&body))?;
    let now = now();
    key.verify(&submission.event_id, &submission.token, now)?;
    if !FEEDBACK_RATE.with(|rate| rate.borrow_mut().allow(now)) {
        return Err(Rejection::RateLimited);
    }
    let mut random = [0u8; 16];
    runtime::random(&mut random).map_err(|_| Rejection::Disabled)?;
    let id = EventId::from_random(random);
    let release = (!config.release.is_empty()).then_some(config.release.as_str());
    let body = feedback::feedback_envelope(
        &submission,
        &FeedbackContext {
            id,
            now_ms: now,
            url: None,
            environment: &config.environment,
            release,
        },
    );
    // Feedback is not sampled or flood-capped (FEEDBACK_RATE bounds it) but honours Sentry's
    // rate limits like any envelope.
    if !transport::admit(ctx, dsn, 1.0, CATEGORY_FEEDBACK, None) {
        return Err(Rejection::RateLimited);
    }
    let delivery = Delivery::new(dsn, body, id, "feedback", CATEGORY_FEEDBACK);
    ctx.wait_until(delivery.send());
    Ok(())
}

/// Everything an event is built from, owned, so the build can wait until after the response.
struct EventJob {
    id: EventId,
    /// When the failure was answered (the event's timestamp), not when it is built.
    timestamp_ms: f64,
    dsn: Dsn,
    config: Rc<Config>,
    failed: Failed,
    req: Request,
    with_request: bool,
}

impl EventJob {
    /// The envelope, ready to send; `None` if the request URL cannot be read back.
    fn build(&self) -> Option<Delivery> {
        let (id, failed) = (self.id, &self.failed);
        let url = self.req.url();
        let parts = UrlParts::split(&url)?;
        let colo = js::cf_string(&self.req, "colo");
        let method = self.req.method();
        // All headers, read now that the page has gone out; the event scrubs them.
        let headers = header_pairs(&self.req.headers());
        let request = RequestInfo {
            method: &method,
            url: parts,
            headers: &headers,
        };
        let origin_headers = failed
            .origin
            .as_ref()
            .map(|origin| header_pairs(&origin.response.headers()));
        let response = failed.origin.as_ref().map(|origin| ResponseInfo {
            status: failed.failure.status(),
            headers: origin_headers.as_deref().unwrap_or_default(),
            body_size: origin.body_size,
        });
        let event = event::build(&EventInput {
            id,
            timestamp_ms: self.timestamp_ms,
            failure: &failed.failure,
            request: self.with_request.then_some(&request),
            response: response.as_ref(),
            ray_id: find_header(&headers, "cf-ray"),
            server_name: colo.as_deref().unwrap_or_else(|| parts.hostname()),
            colo: colo.as_deref(),
            origin_call: failed.call.as_ref(),
            config: &self.config,
        });
        let body = envelope::event_envelope(id, now(), &event);
        let mechanism = failed.failure.mechanism();
        Some(Delivery::new(
            &self.dsn,
            body,
            id,
            mechanism,
            CATEGORY_ERROR,
        ))
    }
}

/// Logs a failure of the reporter itself with the running count for this isolate.
fn count_reporter_failure(what: &str) {
    let count = REPORTER_FAILURES.with(|n| {
        n.set(n.get().saturating_add(1));
        n.get()
    });
    console_error!("edgeguard: reporter failure #{count} in this isolate: {what}");
}

/// Runs `future` for at most `timeout_ms`; `None` when the time ran out first.
async fn within<F: Future>(timeout_ms: u32, future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut timer = pin!(runtime::sleep(timeout_ms));
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

/// Runs `future`, turning a panic inside any of its polls into `Failure::Panic` with the message
/// and location our hook recorded. The future is dropped after a panic, never polled again.
async fn catch_panic<F: Future>(future: F) -> Result<F::Output, Failure> {
    let mut future = pin!(future);
    poll_fn(
        |cx| match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(poll) => poll.map(Ok),
            Err(payload) => Poll::Ready(Err(Failure::from_panic(payload.as_ref()))),
        },
    )
    .await
}

impl Failure {
    /// The panic `payload` came from, with the message and location our hook recorded.
    fn from_panic(payload: &(dyn Any + Send)) -> Failure {
        let recorded =
            LAST_PANIC.with(|last| last.try_borrow_mut().ok().and_then(|mut l| l.take()));
        let (message, location) = recorded.unwrap_or_else(|| {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic with a non-string payload".to_owned());
            (message, None)
        });
        Failure::Panic { message, location }
    }
}

/// Records each panic's message and source location for `catch_panic`, then hands over to the
/// hook that was there before (`runtime`'s, which logs the panic to the console).
fn install_panic_hook() {
    if PANIC_HOOK_INSTALLED.with(|installed| installed.replace(true)) {
        return;
    }
    crate::executor::on_panic(|| {
        count_reporter_failure("a background task panicked; it was dropped");
    });
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload_as_str()
            .unwrap_or("panic with a non-string payload")
            .to_owned();
        let location = info.location().map(|l| SourceLocation {
            file: l.file().to_owned(),
            line: l.line(),
            column: l.column(),
        });
        LAST_PANIC.with(|last| {
            if let Ok(mut last) = last.try_borrow_mut() {
                *last = Some((message, location));
            }
        });
        previous(info);
    }));
}

/// A page (or its JSON) as a response: the shared page headers, its content type, the event
/// id to quote and the origin's `Retry-After` (a 503's).
fn page_response(
    status: u16,
    content_type: &str,
    body: Option<&str>,
    event_id: Option<&str>,
    retry_after: Option<&str>,
) -> Result<Response, String> {
    let mut extra = vec![("content-type", content_type)];
    if let Some(id) = event_id {
        extra.push(("x-sentry-id", id));
    }
    if let Some(seconds) = retry_after {
        extra.push(("retry-after", seconds));
    }
    PAGE_HEADERS.with(|base| match base {
        Ok(base) => js::response(status, base, &extra, body.map(str::as_bytes))
            .map_err(|e| js_message("Response", &e)),
        Err(e) => Err(js_message("Headers", e)),
    })
}

/// The last resort when even the page cannot be built: a bare status, still not an `Err`.
fn bare_response(status: u16) -> Response {
    js::bare(status)
}

/// The first value of header `name` (case-insensitive) in `headers`.
fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A JS exception as text for the event and the log: `what: message`.
fn js_message(what: &str, error: &JsValue) -> String {
    format!("{what}: {}", js::error_message(error))
}
