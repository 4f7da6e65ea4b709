//! The feedback form's endpoint (`crate::feedback::PATH`): answered by the worker itself, never
//! proxied. Checks the submission (`crate::feedback`), then sends it to Sentry after the
//! thank-you page.

use super::runtime::{self, find_header, header_pairs, now};
use super::transport::{self, Delivery};
use super::{page_language, page_response, token_key};
use crate::config::Config;
use crate::feedback::{self, form, FeedbackContext, RateLimit, Rejection, Submission};
use crate::page;
use crate::sentry::id::EventId;
use crate::sentry::ratelimit::CATEGORY_FEEDBACK;
use std::cell::RefCell;
use worker::{console_warn, web_sys, Context, Request};

thread_local! {
    /// At most 10 feedback submissions at once, 30 a minute, per isolate.
    static FEEDBACK_RATE: RefCell<RateLimit> = RefCell::new(RateLimit::new(10, 30));
}

/// The feedback form's target: answers with the thank-you (or apology) page.
pub(super) async fn endpoint(req: &Request, ctx: &Context, config: &Config) -> web_sys::Response {
    let headers = header_pairs(req.headers());
    let header = |name: &str| find_header(&headers, name);
    let (status, reason, sent) = match accept(req, ctx, config, &headers).await {
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
    let head = req.inner().method().eq_ignore_ascii_case("HEAD");
    let mut extra = vec![("content-type", "text/html; charset=utf-8")];
    if status == 405 {
        extra.push(("allow", "POST"));
    }
    page_response(status, &extra, (!head).then_some(body))
}

/// Checks one submission and schedules its delivery to Sentry.
async fn accept(
    req: &Request,
    ctx: &Context,
    config: &Config,
    headers: &[(String, String)],
) -> Result<(), Rejection> {
    let header = |name: &str| find_header(headers, name);
    let length = feedback::check_request(
        &req.inner().method(),
        header("content-type"),
        header("content-length"),
    )?;
    let dsn = config.dsn.as_ref().ok_or(Rejection::Disabled)?;
    let key = token_key().ok_or(Rejection::Disabled)?;
    // The body is small and bounded by `check_request` (Content-Length at most
    // `MAX_BODY_BYTES`), so it is read whole.
    let mut body_req = Request::from(Clone::clone(req.inner()));
    let body = body_req
        .bytes()
        .await
        .map_err(|_| Rejection::Invalid("body"))?;
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
    if transport::admit(ctx, dsn, 1.0, CATEGORY_FEEDBACK, None).is_none() {
        return Err(Rejection::RateLimited);
    }
    let delivery = Delivery::new(dsn, body, id, "feedback", CATEGORY_FEEDBACK);
    runtime::defer(ctx, delivery.send());
    Ok(())
}
