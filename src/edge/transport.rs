//! The envelope transport: admission (sampling, rate limits, flood control), the POST to Sentry
//! (gzip when it pays, one retry on a network error, abandoned after a timeout), reading the
//! rate limits off every answer, and the client reports of what was dropped. Every decision is
//! `delivery::Reporter`'s; this file only carries them out against the runtime.

use super::count_reporter_failure;
use super::runtime::{self, cancel, js_error_message, now, within};
use crate::sentry::delivery::{
    self, Admitted, Discards, Reason, Reporter, CLIENT_REPORT_FLUSH_MS, MIN_GZIP_BYTES,
};
use crate::sentry::dsn::Dsn;
use crate::sentry::envelope;
use crate::sentry::id::EventId;
use crate::sentry::ratelimit::CATEGORY_INTERNAL;
use crate::{SDK_NAME, SDK_VERSION};
use js_sys::Uint8Array;
use std::cell::{Cell, RefCell};
use wasm_bindgen::JsValue;
use worker::{console_log, console_warn, web_sys, Context, Fetch, Headers, ResponseBody};

/// One attempt at sending that has not finished by then is abandoned. With the one retry a
/// network error earns, a send ends within 16 s, well inside the 30 s `wait_until` grants.
const SENTRY_SEND_TIMEOUT_MS: u32 = 8_000;

/// The shared flood cap's grants (the `flood-cap` feature), or nothing to share.
#[cfg(feature = "flood-cap")]
type Shared = crate::sentry::floodcap::GrantCache;
#[cfg(not(feature = "flood-cap"))]
type Shared = crate::sentry::floodcap::LocalOnly;

thread_local! {
    /// The isolate's rate limits, flood windows and drop counts (replaced with the configured
    /// cap when the config is read).
    static REPORTER: RefCell<Reporter<Shared>> = const { RefCell::new(Reporter::new(0)) };
    /// `SENTRY_DEBUG`: log every envelope Sentry accepted, not only the ones it did not.
    static LOG_ACCEPTED: Cell<bool> = const { Cell::new(false) };
}

/// Starts the isolate's reporting state with the configured flood cap and logging.
pub(super) fn init(max_events_per_minute: u32, log_accepted: bool) {
    REPORTER.with(|r| r.replace(Reporter::new(max_events_per_minute)));
    LOG_ACCEPTED.with(|l| l.set(log_accepted));
}

/// Flood control through the shared cap from now on (the `EDGEGUARD_FLOOD` binding is there).
#[cfg(feature = "flood-cap")]
pub(super) fn share_the_cap() {
    with_reporter(|r| r.share_the_cap(Shared::new()));
}

pub(super) fn with_reporter<T>(f: impl FnOnce(&mut Reporter<Shared>) -> T) -> Option<T> {
    REPORTER.with(|r| r.try_borrow_mut().ok().map(|mut r| f(&mut r)))
}

/// Whether an event of `category` may be built and sent: the sampling draw, Sentry's rate
/// limits and (for `flood_key`) flood control; `None` when refused. A refusal is counted, and a
/// flush of the counts is scheduled.
pub(super) fn admit(
    ctx: &Context,
    dsn: &Dsn,
    sample_rate: f64,
    category: &'static str,
    flood_key: Option<&str>,
) -> Option<Admitted> {
    let draw = delivery::needs_draw(sample_rate)
        .then(|| {
            let mut random = [0u8; 4];
            runtime::random(&mut random).ok()?;
            Some(u32::from_le_bytes(random))
        })
        .flatten();
    let sampled = delivery::sampled(sample_rate, draw);
    let now_ms = now();
    let admitted = with_reporter(|r| r.admit(now_ms, category, sampled, flood_key))
        .unwrap_or(Ok(Admitted::Now));
    match admitted {
        Ok(admitted) => Some(admitted),
        Err(reason) => {
            schedule_flush(ctx, dsn, reason);
            None
        }
    }
}

/// Counts one item of `category` as dropped for `reason` (an envelope of the edge's own project
/// the tunnel could not deliver), and schedules a flush of the counts.
pub(super) fn count_dropped(ctx: &Context, dsn: &Dsn, reason: Reason, category: &'static str) {
    with_reporter(|r| r.record(reason, category, 1));
    schedule_flush(ctx, dsn, reason);
}

/// Sends the pending drop counts alone after `CLIENT_REPORT_FLUSH_MS`, unless an envelope
/// carries them first. One flush at a time per isolate.
pub(super) fn schedule_flush(ctx: &Context, dsn: &Dsn, reason: Reason) {
    if with_reporter(Reporter::wants_flush) != Some(true) {
        return;
    }
    console_log!(
        "edgeguard: dropping events ({}); the counts go to Sentry in a client report",
        reason.as_str()
    );
    let (url, auth) = endpoint(dsn);
    runtime::defer(ctx, async move {
        runtime::sleep(CLIENT_REPORT_FLUSH_MS).await;
        let Some(discards) = with_reporter(Reporter::flush_due).flatten() else {
            return;
        };
        let now_ms = now();
        let body = envelope::client_report_envelope(now_ms, &discards.client_report(now_ms));
        Delivery {
            url,
            auth,
            body,
            id: None,
            what: "client report",
            category: None,
            carried: Some(discards),
        }
        .send()
        .await;
    });
}

fn endpoint(dsn: &Dsn) -> (String, String) {
    (
        dsn.envelope_url(),
        dsn.auth_header(&format!("{SDK_NAME}/{SDK_VERSION}")),
    )
}

/// One envelope on its way to Sentry.
pub(super) struct Delivery {
    url: String,
    auth: String,
    body: Vec<u8>,
    id: Option<EventId>,
    what: &'static str,
    /// The category of the envelope's own item; `None` for a client report alone.
    category: Option<&'static str>,
    /// Drop counts this envelope carries: given back if it does not arrive.
    carried: Option<Discards>,
}

/// What went wrong with one POST.
enum SendFailure {
    /// The fetch was rejected (refused, reset, DNS): worth the one retry.
    Network(String),
    /// No answer within `SENTRY_SEND_TIMEOUT_MS`: abandoned, never retried.
    Timeout,
    /// The request could not even be built.
    Local(String),
}

/// Sentry's answer, as far as the transport cares.
struct Answer {
    status: u16,
    rate_limits: Option<String>,
    retry_after: Option<String>,
}

impl Delivery {
    /// An event (or feedback) envelope; pending drop counts are attached when it is sent.
    pub(super) fn new(
        dsn: &Dsn,
        body: Vec<u8>,
        id: EventId,
        what: &'static str,
        category: &'static str,
    ) -> Self {
        let (url, auth) = endpoint(dsn);
        Delivery {
            url,
            auth,
            body,
            id: Some(id),
            what,
            category: Some(category),
            carried: None,
        }
    }

    /// Sends once (twice on a network error) and logs the result. Never shown to the visitor;
    /// a failure is logged and counted (reporting the reporter's failure could recurse).
    pub(super) async fn send(mut self) {
        let now_ms = now();
        // A limit may have arrived since admission (another send's answer): drop without a
        // request. A client report alone is held back only by a limit on every category.
        let category = self.category.unwrap_or(CATEGORY_INTERNAL);
        if with_reporter(|r| r.limits.is_limited(category, now_ms)) == Some(true) {
            self.dropped(Reason::RatelimitBackoff, "rate limited");
            return;
        }
        if self.category.is_some() {
            if let Some(discards) = with_reporter(Reporter::take).flatten() {
                self.body.extend_from_slice(&envelope::client_report_item(
                    &discards.client_report(now_ms),
                ));
                self.carried = Some(discards);
            }
        }
        let plain = self.body.len();
        let gzipped = if plain >= MIN_GZIP_BYTES {
            runtime::gzip(&self.body)
                .await
                .map_err(|e| {
                    console_warn!(
                        "edgeguard: gzip failed, sending plain: {}",
                        js_error_message(&e)
                    )
                })
                .ok()
                .filter(|g| delivery::gzip_pays(plain, g.len()))
        } else {
            None
        };
        let wire = gzipped.as_ref().map_or(plain, Vec::len);
        let answer = match self.post(gzipped.as_deref()).await {
            Err(SendFailure::Network(error)) => {
                console_warn!("edgeguard: {} not sent ({error}); retrying once", self.what);
                self.post(gzipped.as_deref()).await
            }
            other => other,
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(SendFailure::Network(error) | SendFailure::Local(error)) => {
                return self.dropped(Reason::NetworkError, &error);
            }
            Err(SendFailure::Timeout) => {
                return self.dropped(
                    Reason::NetworkError,
                    &format!("no answer within {SENTRY_SEND_TIMEOUT_MS} ms"),
                );
            }
        };
        let new_limits = with_reporter(|r| {
            r.limits.update(
                now(),
                answer.status,
                answer.rate_limits.as_deref(),
                answer.retry_after.as_deref(),
            )
        });
        if let Some(new_limits) = new_limits.filter(|n| !n.is_empty()) {
            console_warn!("edgeguard: {new_limits}");
        }
        match Reason::for_status(answer.status) {
            None if !LOG_ACCEPTED.with(Cell::get) => {}
            None => match self.id {
                Some(id) => console_log!(
                    "edgeguard: sent event {id} ({}): Sentry answered {} ({plain} bytes, {wire} sent)",
                    self.what,
                    answer.status
                ),
                None => console_log!(
                    "edgeguard: sent a client report: Sentry answered {} ({plain} bytes, {wire} sent)",
                    answer.status
                ),
            },
            Some(reason) => {
                self.dropped(
                    reason,
                    &format!("Sentry refused it: HTTP {}", answer.status),
                );
            }
        }
    }

    /// Counts this envelope's own item as dropped for `reason` and gives back what it carried.
    fn dropped(self, reason: Reason, why: &str) {
        let (category, carried) = (self.category, self.carried);
        with_reporter(|r| {
            if let Some(carried) = carried {
                r.give_back(carried);
            }
            if let Some(category) = category {
                r.record(reason, category, 1);
            }
        });
        let id = self.id.map(|id| id.to_hex()).unwrap_or_default();
        count_reporter_failure(&format!(
            "{} {id} not sent ({}): {why}",
            self.what,
            reason.as_str()
        ));
    }

    /// One POST of the envelope (`gzipped`: the compressed body, to send instead).
    async fn post(&self, gzipped: Option<&[u8]>) -> Result<Answer, SendFailure> {
        let local = |what: &str, e: worker::Error| SendFailure::Local(format!("{what}: {e}"));
        let headers = Headers::new();
        let mut pairs = vec![
            ("content-type", envelope::CONTENT_TYPE),
            ("x-sentry-auth", self.auth.as_str()),
        ];
        if gzipped.is_some() {
            pairs.push(("content-encoding", "gzip"));
        }
        for (name, value) in pairs {
            headers.set(name, value).map_err(|e| local("Headers", e))?;
        }
        let body = JsValue::from(Uint8Array::from(gzipped.unwrap_or(&self.body)));
        let follow = web_sys::RequestRedirect::Follow;
        let request = runtime::request(&self.url, "POST", &headers, Some(&body), follow)
            .map_err(|e| SendFailure::Local(format!("Request: {}", js_error_message(&e))))?;
        match within(SENTRY_SEND_TIMEOUT_MS, Fetch::Request(request).send()).await {
            // No answer in time; the runtime cancels the request when the work ends.
            None => Err(SendFailure::Timeout),
            Some(Err(error)) => Err(SendFailure::Network(format!(
                "fetch: {}",
                runtime::error_message(&error)
            ))),
            Some(Ok(response)) => {
                if let ResponseBody::Stream(body) = response.body() {
                    cancel(body);
                }
                let header = |name: &str| response.headers().get(name).ok().flatten();
                Ok(Answer {
                    status: response.status_code(),
                    rate_limits: header("x-sentry-rate-limits"),
                    retry_after: header("retry-after"),
                })
            }
        }
    }
}
