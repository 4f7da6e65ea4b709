//! The edge: the only module that talks to the Workers runtime, through `worker` (workers-rs).
//! It reads what the core needs from the runtime (request, env, clock, randomness), asks the
//! core what to do, and carries it out. Everything it decides is decided by a core function
//! tested on the host.
//!
//! - `mod.rs` (this file): the `#[event(fetch)]` handler, panic catching, failure answers,
//!   event reporting;
//! - `proxy.rs`: the origin fetch, its timeout, hop-by-hop headers, the failing body's size;
//! - `feedback.rs`: the feedback form's endpoint;
//! - `transport.rs`: envelopes to Sentry (admission, gzip, POST, rate limits, client reports);
//! - `tracing.rs`: the request's trace (read, propagated, its transaction after the response);
//! - `floodcap.rs` (the `flood-cap` feature): the `FloodCap` Durable Object and the isolate's
//!   questions to it (the flood cap shared by every isolate);
//! - `tunnel.rs`: the Sentry tunnel for the site's browser SDK (`SENTRY_TUNNEL_PATH`);
//! - `runtime.rs`: clock, randomness, timers, header pairs, transform streams (gzip, inflate).
//!
//! Invariants kept here:
//! - the fetch handler never returns `Err` (the runtime would turn it into a bare 500), and a
//!   panic anywhere on the request path becomes the 500 page and an event (`catch_panic`);
//! - the visitor never waits for Sentry: reporting runs in `ctx.wait_until`;
//! - bodies are never buffered: the origin's body stream is handed on, never read;
//! - nothing from the origin's failing body, the DSN or `ORIGIN_URL` reaches the visitor or a log;
//! - the reporter never reports itself: its own failures are logged and counted only.

mod feedback;
#[cfg(feature = "flood-cap")]
mod floodcap;
#[cfg(feature = "flood-cap")]
use floodcap::Question;
mod proxy;
mod runtime;
mod tracing;
mod transport;
mod tunnel;

use crate::config::{BuildInfo, Config, ConfigError, Origin};
use crate::feedback::TokenKey;
use crate::page::{self, lang, prefers_json, PageInput};
use crate::proxy::outcome::{reason_phrase, ErrorLink, Failure, SourceLocation};
use crate::sentry::delivery::Admitted;
use crate::sentry::dsn::Dsn;
use crate::sentry::envelope;
use crate::sentry::event::{self, EventInput, OriginCall, RequestInfo, ResponseInfo};
use crate::sentry::id::EventId;
use crate::sentry::ratelimit::CATEGORY_ERROR;
use crate::sentry::route;
use crate::sentry::trace::Trace;
use proxy::{Attempt, OriginFailure};
use runtime::{find_header, header_pairs, now, some_header_pairs};
use std::any::Any;
use std::cell::{Cell, OnceCell, RefCell};
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use transport::Delivery;
use worker::{console_error, event, web_sys, Context, Env, Headers, Request, Response, Url};

/// How long the event waits before it is built, so that the page has been written first. Not 0:
/// workerd ran a 0 ms timer before writing the page handed back in the same turn, so the
/// visitor waited for the event's build. Measured one request at a time (`scripts/bench.sh`,
/// `/500 − /1k`): 0 ms +0.22 ms, 1 ms +0.10 ms, 5 ms +0.13 ms, no reporting at all +0.00 ms.
/// The event's timestamp is taken before the wait.
pub(super) const AFTER_PAGE_MS: u32 = 1;

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

/// The request headers a failure page needs (the event reads all of them, later).
const PAGE_READS: [&str; 3] = ["accept", "accept-language", "cf-ray"];

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
}

/// The runtime's `fetch` handler. It always answers `Ok`: the runtime would turn an `Err` into
/// a bare 500. The answer is the runtime's own `Response` object, so a passing response goes
/// back as the origin's (its WebSocket included), never copied.
///
/// Panics are caught here. The worker is built with `worker-build --panic-unwind`, so a panic
/// unwinds only the request that raised it: that request gets the 500 page and an event, and
/// every other request in flight in the isolate carries on. A panic that escaped this handler
/// would get workers-rs's bare 500, so none does.
#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<web_sys::Response> {
    install_panic_hook();
    let config = config(&env);
    Ok(guarded(&req, &config, &ctx).await)
}

/// `handle` with panics caught: a panic gets our own-failure answer, and a panic while answering
/// that gets a bare 500, never a loop.
async fn guarded(req: &Request, config: &Config, ctx: &Context) -> web_sys::Response {
    let trace = catch_unwind(AssertUnwindSafe(|| tracing::start(req, config)))
        .ok()
        .flatten();
    let sends_transaction = trace.as_ref().is_some_and(|t| t.sends_transaction);
    let attempt = Attempt {
        trace,
        started_ms: if sends_transaction { now() } else { 0.0 },
        ..Attempt::default()
    };
    let response = match catch_panic(handle(req, config, ctx, &attempt)).await {
        Ok(response) => response,
        Err(panic) => {
            let failed = Failed::from(panic);
            let answer = catch_panic(answer_own_failure(req, config, ctx, &attempt, failed)).await;
            answer.unwrap_or_else(|_| {
                count_reporter_failure("panicked while answering a panic; bare 500 sent");
                bare_response(500)
            })
        }
    };
    if sends_transaction {
        let status = response.status();
        let sent = catch_unwind(AssertUnwindSafe(|| {
            tracing::send_transaction(req, config, ctx, &attempt, status);
        }));
        if sent.is_err() {
            count_reporter_failure("panicked while scheduling a transaction; not sent");
        }
    }
    response
}

/// What is left to do for a request that is not simply passing through.
enum Next {
    /// The feedback form's POST: answered here, never proxied.
    Feedback,
    /// The browser SDK's tunnel (`SENTRY_TUNNEL_PATH`): answered here, never proxied.
    Tunnel,
    /// Something failed: report it and answer with the page (or replay, for our own failures).
    Failed(Failed),
    /// The origin answered with a failing status: count its body, then as `Failed`.
    OriginFailing(Response),
}

/// One request, start to finish: proxied, or answered by the worker itself.
async fn handle(
    req: &Request,
    config: &Config,
    ctx: &Context,
    attempt: &Attempt,
) -> web_sys::Response {
    let next = match pass(req, config, ctx, attempt).await {
        Ok(response) => return response,
        Err(next) => next,
    };
    let mut failed = match next {
        Next::Feedback => return feedback::endpoint(req, ctx, config).await,
        Next::Tunnel => {
            if let Some(t) = &config.tunnel {
                return tunnel::endpoint(req, ctx, config, t).await;
            }
            return bare_response(404);
        }
        Next::Failed(failed) => failed,
        Next::OriginFailing(response) => proxy::origin_failing(response).await,
    };
    if failed.failure.is_own() {
        return answer_own_failure(req, config, ctx, attempt, failed).await;
    }
    failed.call = attempt.call.get();
    failed.trace.clone_from(&attempt.trace);
    answer_failure(req, config, ctx, failed)
}

/// The passing path: the request goes to the origin and a passing answer comes back as it is
/// (opt-in warnings scheduled); anything else is `Next`.
async fn pass(
    req: &Request,
    config: &Config,
    ctx: &Context,
    attempt: &Attempt,
) -> Result<web_sys::Response, Next> {
    let url = request_url(req).map_err(Next::Failed)?;
    if url.path() == crate::feedback::PATH {
        return Err(Next::Feedback);
    }
    if let Some(tunnel) = &config.tunnel {
        if tunnel.claims(url.path(), || req.inner().method()) {
            return Err(Next::Tunnel);
        }
    }
    if config.pass_through_on_exception {
        // Should the wasm instance itself trap (beyond what catch_unwind can stop), the runtime
        // then sends the request to the origin instead of its error page.
        ctx.pass_through_on_exception();
    }
    report_config_errors(req, config, ctx);
    debug_triggers(url.path(), config).map_err(Next::Failed)?;
    let target = target_url(&url, config).map_err(Next::Failed)?;
    let response = proxy::fetch_origin(req, &url, config, &target, attempt)
        .await
        .map_err(Next::Failed)?;
    if crate::proxy::outcome::is_origin_failure(response.status_code()) {
        return Err(Next::OriginFailing(response));
    }
    if config.handled.is_on() {
        report_handled(req, config, ctx, attempt, &response);
    }
    Ok(proxy::without_hop_by_hop(response))
}

/// The request URL, parsed once.
fn request_url(req: &Request) -> Result<Url, Failed> {
    req.url()
        .map_err(|error| internal(format!("request URL: {error}")))
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
    let failed = Failed {
        failure,
        origin: Some(OriginFailure::of(response, None)),
        call: Some(call),
        trace: attempt.trace.clone(),
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
) -> web_sys::Response {
    failed.call = failed.call.or(attempt.call.get());
    failed.trace = failed.trace.or_else(|| attempt.trace.clone());
    // Replaying is safe only when the body (if any) is unread, and the origin has not seen the
    // request yet or the method is safe.
    let safe_method = matches!(req.inner().method().as_str(), "GET" | "HEAD" | "OPTIONS");
    let replayable = !req.inner().body_used() && (!attempt.sent.get() || safe_method);
    if !(config.pass_through_on_exception && replayable) {
        return answer_failure(req, config, ctx, failed);
    }
    let visitor = Visitor::read(req);
    let event_id = report_event(config, ctx, &failed, &visitor, true);
    let replayed = async {
        let url = request_url(req).ok()?;
        let target = target_url(&url, config).ok()?;
        let response = proxy::fetch_origin(req, &url, config, &target, attempt)
            .await
            .ok()?;
        Some(proxy::without_hop_by_hop(response))
    };
    match replayed.await {
        Some(response) => response,
        None => failure_page(&visitor, &failed, event_id),
    }
}

fn config(env: &Env) -> Rc<Config> {
    CONFIG.with(|cell| {
        Rc::clone(cell.get_or_init(|| {
            let lookup = |name: &str| env.var(name).ok().map(|var| var.to_string());
            let (config, errors) = Config::parse(lookup, BuildInfo::CURRENT);
            for error in &errors {
                console_error!("edgeguard: config: {error}");
            }
            UNREPORTED_CONFIG_ERRORS.with(|pending| pending.replace(errors));
            init_token_key(env);
            transport::init(config.max_events_per_minute, config.debug);
            #[cfg(feature = "flood-cap")]
            floodcap::init(env);
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
    /// The request's trace: the event's `contexts.trace` and its envelope's `trace` header.
    trace: Option<Rc<Trace>>,
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
            trace: None,
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
fn target_url(url: &Url, config: &Config) -> Result<String, Failed> {
    match &config.origin {
        Origin::Route => Ok(url.as_str().to_owned()),
        Origin::Url(origin) => Ok(origin.target(url)),
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

/// The visitor's request as read for a failure page: the few headers the page needs. The event
/// reads all of them after the page has gone out (`EventJob::build`).
struct Visitor<'a> {
    req: &'a Request,
    headers: Vec<(String, String)>,
}

impl<'a> Visitor<'a> {
    fn read(req: &'a Request) -> Self {
        Visitor {
            req,
            headers: some_header_pairs(req.headers(), PAGE_READS),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// Reports the failure (when a DSN is configured) and builds the visitor's page.
fn answer_failure(
    req: &Request,
    config: &Config,
    ctx: &Context,
    failed: Failed,
) -> web_sys::Response {
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
fn failure_page(
    visitor: &Visitor<'_>,
    failed: &Failed,
    event_id: Option<EventId>,
) -> web_sys::Response {
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
    let mut extra = vec![("content-type", content_type)];
    if let Some(id) = &event_hex {
        extra.push(("x-sentry-id", id));
    }
    if let Some(seconds) = retry_after {
        extra.push(("retry-after", seconds));
    }
    let head = visitor.req.inner().method().eq_ignore_ascii_case("HEAD");
    page_response(status, &extra, (!head).then_some(body))
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
        let path = visitor.req.path();
        let method = visitor.req.inner().method();
        route::fingerprint(&failed.failure, &method, &path).join("\n")
    } else {
        failed.failure.exception_value()
    };
    let shared = shared_config()?;
    let admitted = transport::admit(
        ctx,
        dsn,
        config.sample_rate,
        CATEGORY_ERROR,
        Some(&flood_key),
    )?;
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
        config: shared,
        failed: failed.clone(),
        // The JS reference, not `Request.clone()` (which would tee the body); wrapped in a
        // `worker::Request` (which reads its method, URL, headers and `cf`) only in `build`,
        // after the page has gone out.
        req: Clone::clone(visitor.req.inner()),
        with_request,
    };
    let id = job.id;
    // The event is built and sent once the page has gone out: building and starting the POST
    // before that made every failure answer later. Building is guarded: a panic in the reporter
    // is logged and counted, never an event of its own.
    // With the shared flood cap and no grant cached, the object is asked after the page too;
    // that page shows no id, since the event may yet be refused.
    let question: Option<Question> = match admitted {
        Admitted::Now => None,
        #[cfg(feature = "flood-cap")]
        Admitted::AfterAsking { ask } => Some(Question::new(ctx, flood_key, ask)),
        // Not made: without the feature nothing is shared, so everything is admitted `Now`.
        #[cfg(not(feature = "flood-cap"))]
        Admitted::AfterAsking { .. } => None,
    };
    let shown = question.is_none().then_some(id);
    runtime::defer(ctx, async move {
        runtime::sleep(AFTER_PAGE_MS).await;
        if let Some(question) = question {
            if !question.settle(&job.dsn).await {
                return;
            }
        }
        let built = catch_unwind(AssertUnwindSafe(|| job.build())).unwrap_or_else(|_| {
            count_reporter_failure("panicked while building an event; not sent");
            None
        });
        if let Some(delivery) = built {
            delivery.send().await;
        }
    });
    shown
}

/// Without the `flood-cap` feature no event waits for the shared cap's answer: a type with no
/// values, so the build has none of that code.
#[cfg(not(feature = "flood-cap"))]
enum Question {}

#[cfg(not(feature = "flood-cap"))]
impl Question {
    async fn settle(self, _: &Dsn) -> bool {
        match self {}
    }
}

/// The isolate's config as a shared reference, for work that outlives the request (the event's
/// build, the transaction's). Always there once a request has read the config; no copy is ever
/// made (a `Config::clone` fallback here cost 0.4 KB gzip, 1.3 KB of wasm).
fn shared_config() -> Option<Rc<Config>> {
    CONFIG.with(|cell| cell.get().cloned())
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
            let secret = env.secret("FEEDBACK_SECRET").ok().map(|s| s.to_string());
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

/// Everything an event is built from, owned, so the build can wait until after the response.
struct EventJob {
    id: EventId,
    /// When the failure was answered (the event's timestamp), not when it is built.
    timestamp_ms: f64,
    dsn: Dsn,
    config: Rc<Config>,
    failed: Failed,
    req: web_sys::Request,
    with_request: bool,
}

impl EventJob {
    /// The envelope, ready to send; `None` if the request URL cannot be read back.
    fn build(&self) -> Option<Delivery> {
        let (id, failed) = (self.id, &self.failed);
        let req = Request::from(Clone::clone(&self.req));
        let url = req.url().ok()?;
        let colo = runtime::cf_string(&self.req, "colo");
        let method = self.req.method();
        // All headers, read now that the page has gone out; the event scrubs them.
        let headers = header_pairs(req.headers());
        let request = RequestInfo {
            method: &method,
            url: &url,
            headers: &headers,
        };
        let origin_headers = failed
            .origin
            .as_ref()
            .map(|origin| header_pairs(&origin.headers));
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
            server_name: colo
                .as_deref()
                .unwrap_or_else(|| url.host_str().unwrap_or_default()),
            colo: colo.as_deref(),
            origin_call: failed.call.as_ref(),
            trace: failed.trace.as_deref(),
            config: &self.config,
        });
        let trace = failed.trace.as_ref().and_then(|t| t.envelope_header());
        let body = envelope::event_envelope(id, now(), &event, trace);
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

/// Records each panic's message and source location for `catch_panic`, and logs it (the
/// default hook writes to a stderr no one reads).
fn install_panic_hook() {
    if PANIC_HOOK_INSTALLED.with(|installed| installed.replace(true)) {
        return;
    }
    std::panic::set_hook(Box::new(move |info| {
        console_error!("edgeguard: Rust panic: {info}");
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
    }));
}

/// A page (or its JSON, or the feedback page) as a response: the shared page headers, then
/// `extra` (content type, the event id to quote, a 503's `Retry-After`, ...).
fn page_response(status: u16, extra: &[(&str, &str)], body: Option<String>) -> web_sys::Response {
    let headers = Headers::new();
    let set = PAGE_HEADER_PAIRS
        .iter()
        .chain(extra)
        .try_for_each(|(name, value)| headers.set(name, value));
    let response = set.and_then(|()| {
        let response = match body {
            Some(body) => Response::from_bytes(body.into_bytes())?,
            None => Response::empty()?,
        };
        Ok(response.with_status(status).with_headers(headers))
    });
    match response {
        Ok(response) => into_runtime(response, status),
        Err(error) => {
            console_error!("edgeguard: could not build the error page: {error}");
            bare_response(status)
        }
    }
}

/// `response` as the runtime's own object. The conversion cannot fail for what edgeguard builds
/// (a valid status, bytes or a stream), but it is made under `catch_unwind` all the same, as
/// workers-rs unwraps inside it: a surprise is a bare `status`, never a panic past the handler.
fn into_runtime(response: Response, status: u16) -> web_sys::Response {
    catch_unwind(AssertUnwindSafe(|| web_sys::Response::from(response)))
        .unwrap_or_else(|_| bare_response(status))
}

/// The last resort when even the page cannot be built: a bare status, still not an `Err`.
fn bare_response(status: u16) -> web_sys::Response {
    let init = web_sys::ResponseInit::new();
    init.set_status(status);
    web_sys::Response::new_with_opt_str_and_init(None, &init)
        .or_else(|_| web_sys::Response::new())
        .unwrap_or_else(|_| {
            // `new Response()` cannot throw; this arm only satisfies the type.
            wasm_bindgen::JsValue::NULL.into()
        })
}
