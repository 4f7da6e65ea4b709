//! The proxy path against the runtime: the origin fetch (edited headers, the body stream handed
//! on, redirects left to the visitor, the origin timeout), the answer without hop-by-hop
//! headers, and what a failing answer is measured by. What to edit and what counts as a failure
//! is decided in `crate::proxy`.

use super::runtime::{self, cancel, now, some_header_pairs, within};
use super::{internal, Failed};
use crate::config::Config;
use crate::proxy::forward::{self, HeaderEdit};
use crate::proxy::outcome::{BodyMeter, Failure, FAILING_BODY_PEEK_MS};
use crate::sentry::event::OriginCall;
use crate::sentry::time::elapsed_ms;
use crate::sentry::trace::Trace;
use std::cell::Cell;
use std::rc::Rc;
use wasm_bindgen::JsValue;
use worker::{console_warn, web_sys, Fetch, Headers, Request, Response, Url};

/// Whether a request was already handed to the origin (so a replay could repeat its effects),
/// and how that fetch went (for the breadcrumb, `contexts.origin` and the slow-origin warning);
/// the request's trace, which the origin request carries on.
#[derive(Default)]
pub(super) struct Attempt {
    pub(super) sent: Cell<bool>,
    pub(super) call: Cell<Option<OriginCall>>,
    pub(super) trace: Option<Rc<Trace>>,
    /// When the request arrived (epoch ms), read only for a request sent as a transaction.
    pub(super) started_ms: f64,
}

/// What the event and the page need of a failing (or warned-about) origin response: its
/// headers object, read for the event after the page has gone out; its body is never read.
#[derive(Clone)]
pub(super) struct OriginFailure {
    pub(super) headers: Headers,
    pub(super) body_size: Option<u64>,
    pub(super) retry_after: Option<String>,
}

impl OriginFailure {
    /// `response`'s headers (the same JS object, not a copy) and, for a failure, its body size.
    pub(super) fn of(response: &Response, body_size: Option<u64>) -> Self {
        let headers = response.headers();
        OriginFailure {
            retry_after: headers.get("retry-after").ok().flatten(),
            headers: Headers(headers.0.clone()),
            body_size,
        }
    }
}

/// One fetch to the origin with the request's method, edited headers (hop-by-hop dropped,
/// `X-Forwarded-*` and the loop marker set) and body stream, redirects left to the visitor,
/// within the origin timeout (which bounds the wait for the response head only, never the body
/// stream). Records the call (time, status) in `attempt`.
pub(super) async fn fetch_origin(
    req: &Request,
    url: &Url,
    config: &Config,
    target: &str,
    attempt: &Attempt,
) -> Result<Response, Failed> {
    let trace = attempt
        .trace
        .as_deref()
        .filter(|_| config.trace_propagation);
    let outgoing = origin_request(req, url, config, target, trace)?;
    attempt.sent.set(true);
    let started_ms = now();
    let answer = within(config.origin_timeout_ms, Fetch::Request(outgoing).send()).await;
    attempt.call.set(Some(OriginCall {
        started_ms,
        duration_ms: elapsed_ms(started_ms, now()),
        status: match &answer {
            Some(Ok(response)) => Some(response.status_code()),
            _ => None,
        },
    }));
    match answer {
        // No answer within the origin timeout: the fetch is dropped, and the runtime cancels it.
        None => Err(Failure::OriginTimeout {
            after_ms: config.origin_timeout_ms,
        }
        .into()),
        Some(Ok(response)) => Ok(response),
        // Refused, reset, DNS.
        Some(Err(error)) => Err(Failure::OriginUnreachable {
            detail: format!("fetch: {}", runtime::error_message(&error)),
        }
        .into()),
    }
}

/// The request to send to the origin: the visitor's method, edited headers and body stream,
/// and the trace headers (`trace`: when propagation is on).
fn origin_request(
    req: &Request,
    url: &Url,
    config: &Config,
    target: &str,
    trace: Option<&Trace>,
) -> Result<Request, Failed> {
    let method = req.inner().method();
    let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
    let visitor = forward::Visitor {
        method: &method,
        scheme: url.scheme(),
        host: authority,
    };
    let incoming = req.headers();
    let token = forward::loop_token(&config.origin, authority);
    let read = some_header_pairs(incoming, forward::request_edit_reads());
    let mut edit =
        forward::request_edit(&read, &visitor, &token).map_err(|_| Failed::from(Failure::Loop))?;
    if let Some(trace) = trace {
        edit.set.extend(trace.propagation_headers());
    }
    let headers = edited(incoming, &edit).map_err(|e| internal(format!("Headers: {e:?}")))?;

    let body = req.inner().body().map(JsValue::from);
    // Redirects go to the visitor: following them would change what the page is.
    let manual = web_sys::RequestRedirect::Manual;
    runtime::request(target, &method, &headers, body.as_ref(), manual).map_err(|error| {
        Failure::OriginUnreachable {
            detail: format!("fetch: {}", runtime::js_error_message(&error)),
        }
        .into()
    })
}

/// A copy of `headers` with `edit` applied: the runtime's header list edited, never rebuilt, so
/// repeated headers (`Set-Cookie`) stay exactly as they came.
fn edited(headers: &Headers, edit: &HeaderEdit) -> Result<Headers, JsValue> {
    let copy = Headers(web_sys::Headers::new_with_headers(&headers.0)?);
    for name in &edit.remove {
        copy.0.delete(name)?;
    }
    for (name, value) in &edit.set {
        copy.0.set(name, value)?;
    }
    Ok(copy)
}

/// The origin's response as the runtime's own object, without hop-by-hop headers: the same
/// status, headers object and body stream (never read here), or, when a hop-by-hop header must
/// go, a copy of the headers with it removed. A `101 Switching Protocols` keeps its WebSocket.
pub(super) fn without_hop_by_hop(response: Response) -> web_sys::Response {
    let status = response.status_code();
    let edit = if status == 101 {
        HeaderEdit::default()
    } else {
        forward::response_edit(&some_header_pairs(
            response.headers(),
            forward::response_edit_reads(),
        ))
    };
    if !edit.changes_response() {
        return super::into_runtime(response, 502);
    }
    match edited(response.headers(), &edit) {
        Ok(headers) => {
            // These statuses must not have a body, and the runtime refuses one.
            let response = if matches!(status, 204 | 205 | 304) {
                Response::empty().map(|empty| empty.with_status(status))
            } else {
                Ok(response)
            };
            match response {
                Ok(response) => super::into_runtime(response.with_headers(headers), 502),
                Err(error) => {
                    console_warn!("edgeguard: could not rebuild a response: {error}");
                    super::bare_response(502)
                }
            }
        }
        Err(error) => {
            console_warn!(
                "edgeguard: hop-by-hop headers left in a response: {}",
                runtime::js_error_message(&error)
            );
            super::into_runtime(response, 502)
        }
    }
}

/// A failing origin response, for the event and the page. The failing body (a Django debug
/// page, a stack trace) is never shown: at most a small prefix is counted, then the rest is
/// cancelled.
pub(super) async fn origin_failing(response: Response) -> Failed {
    let status = response.status_code();
    let content_length = response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse().ok());
    let body_size = failing_body_size(&response, content_length).await;
    Failed {
        failure: Failure::OriginStatus { status },
        origin: Some(OriginFailure::of(&response, body_size)),
        call: None,
        trace: None,
    }
}

/// The failing body's size for the event, then the body is cancelled. With a Content-Length
/// nothing is read; otherwise at most `FAILING_BODY_PEEK_BYTES` are counted (not kept) for at
/// most `FAILING_BODY_PEEK_MS`. A body cut short has no known size.
async fn failing_body_size(response: &Response, content_length: Option<u64>) -> Option<u64> {
    let worker::ResponseBody::Stream(body) = response.body() else {
        return None;
    };
    if content_length.is_some() {
        cancel(body);
        return content_length;
    }
    let Ok(reader) = runtime::reader_of(body) else {
        cancel(body);
        return None;
    };
    let mut meter = BodyMeter::default();
    let counted = within(
        FAILING_BODY_PEEK_MS,
        runtime::read_chunks(&reader, &mut |chunk| meter.add(u64::from(chunk.length()))),
    )
    .await;
    // Never rejects into anything that matters: the rest of the body is simply not wanted.
    let _ = reader.cancel();
    meter.size(matches!(counted, Some(Ok(true))))
}
