//! The edge: the only module that talks to the Workers runtime (fetch, env, `wait_until`, clock,
//! randomness, console). It reads what the core needs from the runtime, asks the core what to do,
//! and carries it out. Everything it decides is decided by a core function tested on the host.
//!
//! Invariants kept here:
//! - the fetch handler never returns `Err` (the runtime would turn it into a bare 500);
//! - the visitor never waits for Sentry: reporting runs in `ctx.wait_until`;
//! - bodies are never buffered: the origin's response object is returned as-is, stream and all;
//! - nothing from the origin's failing body, the DSN or `ORIGIN_URL` reaches the visitor or a log.

use crate::config::{BuildInfo, Config, ConfigError, Origin};
use crate::dsn::Dsn;
use crate::envelope;
use crate::event::{self, EventInput, RequestInfo, ResponseInfo};
use crate::feedback::{self, FeedbackContext, RateLimit, Rejection, Submission, TokenKey};
use crate::id::EventId;
use crate::outcome::{is_origin_failure, reason_phrase, Failure};
use crate::page::{self, prefers_json, PageInput};
use crate::url::UrlParts;
use crate::{form, lang};
use crate::{SDK_NAME, SDK_VERSION};
use js_sys::futures::JsFuture;
use std::cell::{OnceCell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;
use wasm_bindgen::{JsCast, JsValue};
use worker::web_sys;
use worker::{console_error, console_log, console_warn, event, Context, Delay, Env};

/// A send to Sentry that has not finished by then is abandoned, well inside the 30 s that
/// `wait_until` grants after the response.
const SENTRY_SEND_TIMEOUT_MS: u32 = 10_000;

/// The page's Content-Security-Policy: a static page with inline CSS and nothing else.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                        base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

thread_local! {
    /// Settings are validated once per isolate, so each bad value is logged once, not per request.
    static CONFIG: OnceCell<Rc<Config>> = const { OnceCell::new() };
    /// The feedback token key: `FEEDBACK_SECRET`, else random for this isolate (`None` when no
    /// randomness was available: feedback is then off).
    static FEEDBACK_KEY: OnceCell<Option<TokenKey>> = const { OnceCell::new() };
    /// At most 10 feedback submissions at once, 30 a minute, per isolate.
    static FEEDBACK_RATE: RefCell<RateLimit> = RefCell::new(RateLimit::new(10, 30));
}

/// Takes and returns the raw `web_sys` types: `worker::Request`'s conversion would read the
/// method, URL, headers and `cf` across the JS boundary on every request, used or not.
#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> worker::Result<web_sys::Response> {
    Ok(serve(&req, &env, &ctx).await)
}

/// Proxies one request; on any failure, reports it and answers with the page.
async fn serve(req: &web_sys::Request, env: &Env, ctx: &Context) -> web_sys::Response {
    let config = config(env);
    let url = req.url();
    if UrlParts::split(&url).is_some_and(|parts| parts.path == feedback::PATH) {
        return feedback_endpoint(req, env, ctx, &config).await;
    }
    match proxy(req, &config).await {
        Ok(response) => response,
        Err(failed) => answer_failure(req, env, &config, ctx, failed),
    }
}

fn config(env: &Env) -> Rc<Config> {
    CONFIG.with(|cell| {
        Rc::clone(cell.get_or_init(|| {
            let lookup = |name: &str| env.var(name).ok().map(|v| v.to_string());
            let (config, errors) = Config::parse(lookup, BuildInfo::CURRENT);
            for error in &errors {
                console_error!("edgeguard: config: {error}");
            }
            Rc::new(config)
        }))
    })
}

/// A request edgeguard could not serve, with what the origin said if it said anything.
struct Failed {
    failure: Failure,
    origin: Option<OriginFailure>,
}

/// The parts of a failing origin response that outlive it: for the event and the page.
struct OriginFailure {
    headers: Vec<(String, String)>,
    body_size: Option<u64>,
    retry_after: Option<String>,
}

impl From<Failure> for Failed {
    fn from(failure: Failure) -> Self {
        Failed {
            failure,
            origin: None,
        }
    }
}

fn internal(detail: impl Into<String>) -> Failed {
    Failure::Internal {
        detail: detail.into(),
    }
    .into()
}

/// Forwards the request to the origin and returns its response, or why it could not.
async fn proxy(req: &web_sys::Request, config: &Config) -> Result<web_sys::Response, Failed> {
    let url = req.url();
    let parts =
        UrlParts::split(&url).ok_or_else(|| internal("request URL has no scheme or host"))?;
    let target = match &config.origin {
        Origin::Route => url.clone(),
        Origin::Url(origin) => origin.target(&parts),
        Origin::Invalid(error) => {
            return Err(Failure::Misconfigured {
                detail: ConfigError::OriginUrl(error.clone()).to_string(),
            }
            .into())
        }
    };

    let controller =
        web_sys::AbortController::new().map_err(|e| internal(js_message("AbortController", &e)))?;
    let init = web_sys::RequestInit::new();
    init.set_method(&req.method());
    init.set_headers(&req.headers());
    if let Some(body) = req.body() {
        init.set_body(&body);
    }
    // A proxy hands redirects to the visitor; following them would change what the page is.
    init.set_redirect(web_sys::RequestRedirect::Manual);
    init.set_signal(Some(&controller.signal()));

    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let fetch = JsFuture::from(global.fetch_with_str_and_init(&target, &init));
    let response = match within(config.origin_timeout_ms, fetch).await {
        None => {
            controller.abort();
            return Err(Failure::OriginTimeout {
                after_ms: config.origin_timeout_ms,
            }
            .into());
        }
        Some(Err(error)) => {
            return Err(Failure::OriginUnreachable {
                detail: js_message("fetch", &error),
            }
            .into())
        }
        Some(Ok(value)) => value
            .dyn_into::<web_sys::Response>()
            .map_err(|_| internal("fetch resolved to something other than a Response"))?,
    };

    let status = response.status();
    if !is_origin_failure(status) {
        return Ok(response);
    }
    let headers = header_pairs(&response.headers());
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let origin = OriginFailure {
        body_size: header("content-length").and_then(|v| v.trim().parse().ok()),
        retry_after: header("retry-after"),
        headers,
    };
    // The failing body (a Django debug page, a stack trace) is never shown: release it now.
    if let Some(body) = response.body() {
        let _ = body.cancel();
    }
    Err(Failed {
        failure: Failure::OriginStatus { status },
        origin: Some(origin),
    })
}

/// Reports the failure (when a DSN is configured) and builds the visitor's page.
fn answer_failure(
    req: &web_sys::Request,
    env: &Env,
    config: &Config,
    ctx: &Context,
    failed: Failed,
) -> web_sys::Response {
    let request_headers = header_pairs(&req.headers());
    let header = |name: &str| {
        request_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let ray_id = header("cf-ray");
    let status = failed.failure.status();

    let event_id = config.dsn.as_ref().and_then(|dsn| {
        report(
            dsn,
            ctx,
            &Report {
                req,
                config,
                failed: &failed,
                request_headers: &request_headers,
                ray_id,
            },
        )
    });
    let event_hex = event_id.map(|id| id.to_hex());
    let token = event_hex.as_deref().and_then(|id| {
        let key = token_key(env)?;
        Some(key.issue(id, js_sys::Date::now()))
    });

    let page = PageInput {
        status,
        reason: reason_phrase(status),
        event_id: event_hex.as_deref(),
        ray_id,
        lang: page_language(header("accept-language")),
        feedback_token: token.as_deref(),
    };
    let (body, content_type) = if prefers_json(header("accept")) {
        (page.json(), "application/json")
    } else {
        (page.html(), "text/html; charset=utf-8")
    };
    let retry_after = failed
        .origin
        .as_ref()
        .and_then(|o| o.retry_after.as_deref())
        .filter(|_| status == 503);
    let head = req.method().eq_ignore_ascii_case("HEAD");
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

/// The page's language for the visitor's `Accept-Language` (English when nothing fits).
fn page_language(accept_language: Option<&str>) -> &'static str {
    let available: Vec<&'static str> = page::languages().collect();
    lang::negotiate(accept_language, &available)
}

/// The isolate's feedback token key, made on first use (a bad `FEEDBACK_SECRET` is logged once).
fn token_key(env: &Env) -> Option<TokenKey> {
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
            match getrandom::fill(&mut random) {
                Ok(()) => Some(TokenKey::from_random(random)),
                Err(error) => {
                    console_error!(
                        "edgeguard: no randomness for a feedback key ({error}); feedback is off"
                    );
                    None
                }
            }
        })
        .clone()
    })
}

/// The feedback form's target, never proxied: answers with the thank-you (or apology) page.
async fn feedback_endpoint(
    req: &web_sys::Request,
    env: &Env,
    ctx: &Context,
    config: &Config,
) -> web_sys::Response {
    let headers = header_pairs(&req.headers());
    let header = |name: &str| find_header(&headers, name);
    let (status, reason, sent) = match accept_feedback(req, env, ctx, config, &headers).await {
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
    req: &web_sys::Request,
    env: &Env,
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
    let key = token_key(env).ok_or(Rejection::Disabled)?;
    let body = match req.array_buffer() {
        Ok(promise) => JsFuture::from(promise)
            .await
            .map(|buffer| js_sys::Uint8Array::new(&buffer).to_vec())
            .map_err(|_| Rejection::Invalid("body"))?,
        Err(_) => return Err(Rejection::Invalid("body")),
    };
    // The runtime frames the body by Content-Length; this guards against it not doing so.
    if body.len() > length.min(feedback::MAX_BODY_BYTES) {
        return Err(Rejection::TooLarge);
    }
    let submission = Submission::from_pairs(&form::parse(&body))?;
    let now = js_sys::Date::now();
    key.verify(&submission.event_id, &submission.token, now)?;
    if !FEEDBACK_RATE.with(|rate| rate.borrow_mut().allow(now)) {
        return Err(Rejection::RateLimited);
    }
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(|_| Rejection::Disabled)?;
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
    let delivery = Delivery {
        url: dsn.envelope_url(),
        auth: dsn.auth_header(&format!("{SDK_NAME}/{SDK_VERSION}")),
        body,
        id,
        what: "feedback",
    };
    ctx.wait_until(delivery.send());
    Ok(())
}

/// What a report is about.
struct Report<'a> {
    req: &'a web_sys::Request,
    config: &'a Config,
    failed: &'a Failed,
    request_headers: &'a [(String, String)],
    ray_id: Option<&'a str>,
}

/// Builds the event and schedules its delivery after the response. Returns the event id, or
/// `None` when no event could be built (logged; the page then shows no id).
fn report(dsn: &Dsn, ctx: &Context, report: &Report<'_>) -> Option<EventId> {
    let mut random = [0u8; 16];
    if let Err(error) = getrandom::fill(&mut random) {
        console_error!("edgeguard: no randomness for an event id ({error}); event not sent");
        return None;
    }
    let id = EventId::from_random(random);
    let now = js_sys::Date::now();
    let url = report.req.url();
    let parts = UrlParts::split(&url)?;
    let colo = cf_string(report.req, "colo");
    let response = report.failed.origin.as_ref().map(|origin| ResponseInfo {
        status: report.failed.failure.status(),
        headers: &origin.headers,
        body_size: origin.body_size,
    });
    let event = event::build(&EventInput {
        id,
        timestamp_ms: now,
        failure: &report.failed.failure,
        request: &RequestInfo {
            method: &report.req.method(),
            url: parts,
            headers: report.request_headers,
        },
        response: response.as_ref(),
        ray_id: report.ray_id,
        server_name: colo.as_deref().unwrap_or_else(|| parts.hostname()),
        config: report.config,
    });
    let body = envelope::event_envelope(id, now, &event);
    let delivery = Delivery {
        url: dsn.envelope_url(),
        auth: dsn.auth_header(&format!("{SDK_NAME}/{SDK_VERSION}")),
        body,
        id,
        what: report.failed.failure.mechanism(),
    };
    ctx.wait_until(delivery.send());
    Some(id)
}

/// One envelope on its way to Sentry.
struct Delivery {
    url: String,
    auth: String,
    body: Vec<u8>,
    id: EventId,
    what: &'static str,
}

impl Delivery {
    /// Sends once and logs the result. Never retried in a loop, never shown to the visitor, and
    /// a failure here is only logged (reporting the reporter's failure could recurse).
    async fn send(self) {
        let (id, what) = (self.id, self.what);
        match self.post().await {
            Ok(status) if (200..300).contains(&status) => {
                console_log!("edgeguard: sent event {id} ({what}): Sentry answered {status}");
            }
            Ok(status) => {
                console_warn!("edgeguard: Sentry refused event {id} ({what}): HTTP {status}");
            }
            Err(error) => console_warn!("edgeguard: event {id} ({what}) not sent: {error}"),
        }
    }

    async fn post(&self) -> Result<u16, String> {
        let headers = web_sys::Headers::new().map_err(|e| js_message("Headers", &e))?;
        for (name, value) in [
            ("content-type", envelope::CONTENT_TYPE),
            ("x-sentry-auth", self.auth.as_str()),
        ] {
            headers
                .set(name, value)
                .map_err(|e| js_message("Headers.set", &e))?;
        }
        let controller =
            web_sys::AbortController::new().map_err(|e| js_message("AbortController", &e))?;
        let init = web_sys::RequestInit::new();
        init.set_method("POST");
        init.set_headers(&headers);
        init.set_body(&js_sys::Uint8Array::from(self.body.as_slice()));
        init.set_signal(Some(&controller.signal()));
        let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
        let fetch = JsFuture::from(global.fetch_with_str_and_init(&self.url, &init));
        match within(SENTRY_SEND_TIMEOUT_MS, fetch).await {
            None => {
                controller.abort();
                Err(format!("no answer within {SENTRY_SEND_TIMEOUT_MS} ms"))
            }
            Some(Err(error)) => Err(js_message("fetch", &error)),
            Some(Ok(value)) => {
                let response: web_sys::Response = value
                    .dyn_into()
                    .map_err(|_| "fetch resolved to a non-Response".to_owned())?;
                if let Some(body) = response.body() {
                    let _ = body.cancel();
                }
                Ok(response.status())
            }
        }
    }
}

/// Runs `future` for at most `timeout_ms`; `None` when the time ran out first.
async fn within<F: Future>(timeout_ms: u32, future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut timer = pin!(Delay::from(Duration::from_millis(u64::from(timeout_ms))));
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

fn page_response(
    status: u16,
    content_type: &str,
    body: Option<&str>,
    event_id: Option<&str>,
    retry_after: Option<&str>,
) -> Result<web_sys::Response, String> {
    let headers = web_sys::Headers::new().map_err(|e| js_message("Headers", &e))?;
    let set = |name: &str, value: &str| {
        headers
            .set(name, value)
            .map_err(|e| js_message("Headers.set", &e))
    };
    set("content-type", content_type)?;
    set("cache-control", "no-store")?;
    set("x-content-type-options", "nosniff")?;
    set("content-security-policy", PAGE_CSP)?;
    set("referrer-policy", "no-referrer")?;
    set("vary", "Accept, Accept-Language")?;
    if let Some(id) = event_id {
        set("x-sentry-id", id)?;
    }
    if let Some(seconds) = retry_after {
        set("retry-after", seconds)?;
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(status);
    init.set_headers(&headers);
    web_sys::Response::new_with_opt_str_and_init(body, &init)
        .map_err(|e| js_message("Response", &e))
}

/// The last resort when even the page cannot be built: a bare status, still not an `Err`.
fn bare_response(status: u16) -> web_sys::Response {
    let init = web_sys::ResponseInit::new();
    init.set_status(status);
    web_sys::Response::new_with_opt_str_and_init(None, &init)
        .or_else(|_| web_sys::Response::new())
        .unwrap_or_else(|_| JsValue::UNDEFINED.unchecked_into())
}

/// The first value of header `name` (case-insensitive) in `headers`.
fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// All headers as lowercase `(name, value)` pairs, in one pass over the JS iterator.
fn header_pairs(headers: &web_sys::Headers) -> Vec<(String, String)> {
    let Ok(Some(iter)) = js_sys::try_iter(headers) else {
        return Vec::new();
    };
    iter.filter_map(Result::ok)
        .filter_map(|entry| {
            let pair: js_sys::Array = entry.dyn_into().ok()?;
            Some((pair.get(0).as_string()?, pair.get(1).as_string()?))
        })
        .collect()
}

/// A string property of `request.cf` (absent on requests not from Cloudflare's edge).
fn cf_string(req: &web_sys::Request, key: &str) -> Option<String> {
    let cf = js_sys::Reflect::get(req, &JsValue::from_str("cf")).ok()?;
    if cf.is_undefined() || cf.is_null() {
        return None;
    }
    js_sys::Reflect::get(&cf, &JsValue::from_str(key))
        .ok()?
        .as_string()
        .filter(|s| !s.is_empty())
}

/// A JS exception as text for the event and the log: `what: message`.
fn js_message(what: &str, error: &JsValue) -> String {
    let message = error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| error.as_string())
        .unwrap_or_else(|| "unknown error".to_owned());
    format!("{what}: {message}")
}
