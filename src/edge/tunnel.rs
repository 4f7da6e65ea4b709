//! The browser SDK's tunnel (`SENTRY_TUNNEL_PATH`, decided in `crate::sentry::tunnel`): answered
//! by the worker itself, never proxied. The envelope's body is streamed to Sentry unchanged
//! (a gzip body too); only its first lines are read, from one branch of a `tee`, to find the
//! project. Sentry's status, body and rate-limit headers go back to the browser, so its SDK
//! backs off as it would talking to Sentry directly.

use super::runtime::{
    self, find_header, header_pairs, now, pipe_through, read_chunks, reader_of, within,
};
use super::{bare_response, page_response, transport};
use crate::config::Config;
use crate::feedback::RateLimit;
use crate::sentry::delivery::Reason;
use crate::sentry::envelope;
use crate::sentry::tunnel::{self, Refusal, Tunnel};
use std::cell::RefCell;
use wasm_bindgen::{JsCast, JsValue};
use worker::{console_warn, web_sys, Context, Fetch, Headers, Request};

thread_local! {
    /// The isolate's rate cap, the feedback form's token bucket.
    static RATE: RefCell<RateLimit> =
        RefCell::new(RateLimit::new(tunnel::BURST, tunnel::PER_MINUTE));
}

/// The first lines must arrive within this; a body slower than that is refused (400).
const HEAD_TIMEOUT_MS: u32 = 10_000;

/// The headers of Sentry's answer the browser gets (its SDK reads the last two).
const ANSWER_HEADERS: [&str; 3] = ["content-type", "x-sentry-rate-limits", "retry-after"];

/// The tunnel's answer: Sentry's, or a refusal with its status and short reason (one log line;
/// never anything from the envelope).
pub(super) async fn endpoint(
    req: &Request,
    ctx: &Context,
    config: &Config,
    tunnel: &Tunnel,
) -> web_sys::Response {
    match forward(req, ctx, config, tunnel).await {
        Ok(response) => response,
        Err(refusal) => {
            let (status, reason) = (refusal.status(), refusal.reason());
            console_warn!("edgeguard: tunnel: {status} {reason}");
            let mut extra = vec![("content-type", "text/plain; charset=utf-8")];
            if refusal == Refusal::NotPost {
                extra.push(("allow", "POST"));
            }
            page_response(status, &extra, Some(reason.to_owned()))
        }
    }
}

/// Checks the request, reads the envelope's header, forwards it and relays Sentry's answer;
/// `Err` is the refusal to answer with instead.
async fn forward(
    req: &Request,
    ctx: &Context,
    config: &Config,
    tunnel: &Tunnel,
) -> Result<web_sys::Response, Refusal> {
    // All of them (`header_pairs`, shared with the feedback form): a list of the few needed
    // would instantiate `some_header_pairs` once more.
    let headers = header_pairs(req.headers());
    let header = |name: &str| find_header(&headers, name);
    let inner = req.inner();
    let body = tunnel::check_request(
        &inner.method(),
        header("content-length"),
        header("content-encoding"),
    )?;
    if !RATE.with(|r| r.try_borrow_mut().is_ok_and(|mut r| r.allow(now()))) {
        return Err(Refusal::Busy);
    }
    let branches = inner.body().ok_or(Refusal::BadHeader)?.tee();
    let head = read_head(&branches.get(0).unchecked_into(), body.gzip)
        .await
        .ok_or(Refusal::BadHeader)?;
    let target = tunnel.target(&head)?;

    // The bytes as they came, the other branch streamed (chunked: a `FixedLengthStream` to keep
    // the Content-Length measured +99 B gzip, left out).
    let out = Headers::new();
    let mut set = out.0.set("content-type", envelope::CONTENT_TYPE).is_ok();
    if body.gzip {
        set &= out.0.set("content-encoding", "gzip").is_ok();
    }
    if let Some(ip) = header("cf-connecting-ip").filter(|_| config.privacy.send_default_pii) {
        set &= out.0.set("x-forwarded-for", ip).is_ok();
    }
    let url = target.dsn.envelope_url();
    let follow = web_sys::RequestRedirect::Follow;
    let request = set
        .then(|| runtime::request(&url, "POST", &out, Some(&branches.get(1)), follow).ok())
        .flatten()
        .ok_or(Refusal::Unreachable)?;
    let answer = match within(tunnel::TIMEOUT_MS, Fetch::Request(request).send()).await {
        Some(Ok(answer)) => answer,
        failed => {
            // An event of the edge's own project that Sentry never saw is counted in its client
            // reports (Sentry counts what it refused itself).
            let own = config
                .dsn
                .as_ref()
                .filter(|own| own.same_project(target.dsn));
            if let (Some(own), Some(category)) = (own, target.category) {
                transport::count_dropped(ctx, own, Reason::NetworkError, category);
            }
            return Err(match failed {
                None => Refusal::Timeout,
                Some(_) => Refusal::Unreachable,
            });
        }
    };
    let status = answer.status_code();
    let relayed = Headers::new();
    for (name, value) in header_pairs(answer.headers()) {
        if ANSWER_HEADERS.contains(&name.as_str()) {
            let _ = relayed.0.set(&name, &value);
        }
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(status);
    init.set_headers(&relayed.0);
    let body = match answer.body() {
        worker::ResponseBody::Stream(stream) => Some(stream),
        _ => None,
    };
    Ok(
        web_sys::Response::new_with_opt_readable_stream_and_init(body, &init)
            .unwrap_or_else(|_| bare_response(status)),
    )
}

/// The envelope's first bytes, up to its first item header (inflated for a gzip body), at
/// most `MAX_HEAD_BYTES` and `HEAD_TIMEOUT_MS`; the branch is cancelled after.
async fn read_head(peek: &web_sys::ReadableStream, gzip: bool) -> Option<Vec<u8>> {
    let stream = if gzip {
        pipe_through(peek, "DecompressionStream", &JsValue::from_str("gzip")).ok()?
    } else {
        peek.clone()
    };
    let reader = reader_of(&stream).ok()?;
    let mut head = Vec::new();
    let mut take = |chunk: &js_sys::Uint8Array| {
        let room = tunnel::MAX_HEAD_BYTES.saturating_sub(head.len());
        let n = room.min(chunk.length() as usize);
        head.extend(chunk.subarray(0, n as u32).to_vec());
        head.iter().filter(|&&b| b == b'\n').count() < 2 && head.len() < tunnel::MAX_HEAD_BYTES
    };
    let read = within(HEAD_TIMEOUT_MS, read_chunks(&reader, &mut take)).await;
    // Only this branch: the other one still carries the whole body to Sentry.
    let _ = reader.cancel();
    matches!(read, Some(Ok(_))).then_some(head)
}
