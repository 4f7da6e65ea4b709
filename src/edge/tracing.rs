//! The request's trace against the runtime: reads the visitor's `sentry-trace` and `baggage`,
//! draws the ids, and after the response sends the edge hop's transaction when it is sampled.
//! What a trace is, and what goes on the wire, is `crate::sentry::trace` and
//! `crate::sentry::transaction`.

use super::proxy::Attempt;
use super::runtime::{self, now};
use super::transport::{self, Delivery};
use super::{count_reporter_failure, shared_config, AFTER_PAGE_MS};
use crate::config::Config;
use crate::sentry::envelope;
use crate::sentry::id::EventId;
use crate::sentry::ratelimit::CATEGORY_TRANSACTION;
use crate::sentry::route;
use crate::sentry::trace::{Head, Randomness, Trace, BAGGAGE, SENTRY_TRACE};
use crate::sentry::transaction::{self, EdgeHop};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use worker::{Context, Request};

/// This request's trace, when a DSN is set (without one there is nothing to link). `None` also
/// when no randomness was available: the request goes on untraced.
pub(super) fn start(req: &Request, config: &Config) -> Option<Rc<Trace>> {
    let dsn = config.dsn.as_ref()?;
    let headers = req.headers();
    let header = |name: &str| headers.get(name).ok().flatten();
    // One call for every id: trace 16 bytes, span 8, sample_rand 4.
    let mut bytes = [0u8; 28];
    runtime::random(&mut bytes).ok()?;
    let (trace_id, rest) = bytes.split_first_chunk::<16>()?;
    let (span_id, rest) = rest.split_first_chunk::<8>()?;
    let sample_rand = u32::from_le_bytes(*rest.first_chunk::<4>()?);
    let head = Head {
        public_key: dsn.public_key(),
        release: &config.release,
        environment: &config.environment,
        traces_sample_rate: config.traces_sample_rate,
    };
    let random = Randomness {
        trace_id: *trace_id,
        span_id: *span_id,
        sample_rand,
    };
    Some(Rc::new(Trace::start(
        header(SENTRY_TRACE).as_deref(),
        header(BAGGAGE).as_deref(),
        &head,
        &random,
    )))
}

/// After the response: the edge hop's transaction, when the request is sampled, admitted like an
/// event (rate limits for `transaction`, flood control per route, client reports), built and
/// sent once the page has gone out. `status` is what the visitor received.
pub(super) fn send_transaction(
    req: &Request,
    config: &Config,
    ctx: &Context,
    attempt: &Attempt,
    status: u16,
) {
    let (Some(trace), Some(dsn)) = (attempt.trace.clone(), config.dsn.clone()) else {
        return;
    };
    let Some(config) = shared_config().filter(|_| trace.sends_transaction) else {
        return;
    };
    let ended_ms = now();
    let method = req.inner().method();
    let path = req.path();
    let name = route::transaction(&method, &path);
    // Transactions are never held for the shared flood cap (it caps failure groups), so an
    // admitted one is admitted now.
    if transport::admit(ctx, &dsn, 1.0, CATEGORY_TRANSACTION, Some(&name)).is_none() {
        return;
    }
    // The transaction's id (16 bytes) and the origin fetch's span id (8).
    let mut bytes = [0u8; 24];
    if let Err(error) = runtime::random(&mut bytes) {
        count_reporter_failure(&format!(
            "no randomness for a transaction ({error}); not sent"
        ));
        return;
    }
    let Some((id_bytes, span_bytes)) = bytes.split_first_chunk::<16>() else {
        return;
    };
    let id = EventId::from_random(*id_bytes);
    let origin_span_id = crate::hex::encode(span_bytes);
    let call = attempt.call.get();
    let started_ms = attempt.started_ms;
    runtime::defer(ctx, async move {
        runtime::sleep(AFTER_PAGE_MS).await;
        let built = catch_unwind(AssertUnwindSafe(|| {
            let event = transaction::build(&EdgeHop {
                id,
                trace: &trace,
                origin_span_id: &origin_span_id,
                method: &method,
                path: &path,
                started_ms,
                ended_ms,
                status,
                origin: call.as_ref(),
                config: &config,
            });
            envelope::transaction_envelope(id, now(), &event, trace.envelope_header())
        }));
        match built {
            Ok(body) => {
                let what = "transaction";
                Delivery::new(&dsn, body, id, what, CATEGORY_TRANSACTION)
                    .send()
                    .await;
            }
            Err(_) => count_reporter_failure("panicked while building a transaction; not sent"),
        }
    });
}
