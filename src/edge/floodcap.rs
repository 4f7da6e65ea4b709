//! The flood cap shared by every isolate (built with the `flood-cap` feature): the
//! `FloodCap` Durable Object class, and the isolate's side that asks it. What to grant, what to
//! cache and when to fall back are `sentry::floodcap`'s and `delivery::Reporter`'s; this file
//! carries them between the runtime and the object.
//!
//! - The object: one per failure group (`id_from_name(group)`, the group a hash of the grouping
//!   fingerprint), so a noisy group never queues behind another. Its `GrantBook` is kept in
//!   memory: an object evicted mid-minute (idle, or moved) starts the minute again, which at
//!   worst lets one more cap's worth through; not worth a storage write per grant.
//! - The isolate: asks only after the page has gone out (in `wait_until`), bounded by
//!   [`ASK_TIMEOUT_MS`]; an object that is slow, unreachable or throwing leaves the group to the
//!   isolate's own cap for the rest of a window, logged once per window.

use super::runtime::{self, now, within};
use super::transport::{self, with_reporter};
use crate::sentry::delivery::{Admitted, Reason};
use crate::sentry::dsn::Dsn;
use crate::sentry::floodcap::{Grant, GrantAsk, GrantBook, GRANT_HEADER};
use std::cell::{OnceCell, RefCell};
use std::panic::AssertUnwindSafe;
use worker::{
    console_warn, durable_object, DurableObject, Env, Headers, ObjectNamespace, Request, Response,
    State,
};

/// The binding that turns the shared cap on.
pub(super) const BINDING: &str = "EDGEGUARD_FLOOD";
/// How long an isolate waits for the object before its own cap decides. Never the visitor's
/// wait: the question is asked after the page.
const ASK_TIMEOUT_MS: u32 = 1_000;
/// An event whose group is being asked about by another event of the isolate checks back this
/// often, at most [`MAX_WAITS`] times (longer than an ask can take).
const WAIT_STEP_MS: u32 = 25;
const MAX_WAITS: u32 = 60;

thread_local! {
    /// The `EDGEGUARD_FLOOD` namespace, read once per isolate with the config.
    static NAMESPACE: OnceCell<Option<ObjectNamespace>> = const { OnceCell::new() };
}

/// Reads the binding once per isolate: present, the shared cap is on. A binding of the wrong
/// kind is logged by name and ignored (the local cap applies).
pub(super) fn init(env: &Env) {
    NAMESPACE.with(|cell| {
        cell.get_or_init(|| {
            let bound = js_sys::Reflect::get(env, &BINDING.into())
                .is_ok_and(|binding| !binding.is_undefined());
            if !bound {
                return None;
            }
            match env.durable_object(BINDING) {
                Ok(namespace) => {
                    transport::share_the_cap();
                    Some(namespace)
                }
                Err(error) => {
                    console_warn!(
                        "edgeguard: config: {BINDING} is not a Durable Object namespace ({error}); \
                         the flood cap stays per isolate"
                    );
                    None
                }
            }
        });
    });
}

/// An event admitted `AfterAsking`, decided after its page: asks the object (or waits for the
/// question another event of the isolate is asking), then takes a grant. Returns whether the
/// event is sent; a refusal is counted and its client report awaited here (inside the event's
/// own `wait_until`).
pub(super) async fn decide_after_page(
    dsn: &Dsn,
    category: &'static str,
    flood_key: &str,
    mut ask: bool,
) -> bool {
    let mut waits = 0;
    loop {
        if ask {
            let Some(question) = with_reporter(|r| r.grant_ask(flood_key)) else {
                return false;
            };
            let answer = ask_object(&question).await;
            let failure = answer.as_ref().err().cloned();
            let log = with_reporter(|r| r.answered(flood_key, answer.ok(), now()));
            if let (Some(true), Some(why)) = (log, failure) {
                console_warn!(
                    "edgeguard: the shared flood cap ({BINDING}) did not answer ({why}); \
                     this isolate's own cap applies for the rest of the minute"
                );
            }
        } else if waits < MAX_WAITS {
            waits += 1;
            runtime::sleep(WAIT_STEP_MS).await;
        } else {
            // Unreachable in practice (an ask ends within ASK_TIMEOUT_MS): never wait forever.
            with_reporter(|r| r.answered(flood_key, None, now()));
        }
        let decided = with_reporter(|r| r.decide_again(now(), category, flood_key));
        match decided {
            Some(Ok(Admitted::Now)) | None => return true,
            Some(Ok(Admitted::AfterAsking { ask: again })) => ask = again,
            Some(Err(reason)) => {
                refused(dsn, reason).await;
                return false;
            }
        }
    }
}

async fn refused(dsn: &Dsn, reason: Reason) {
    if let Some(flush) = transport::flush_later(dsn, reason) {
        flush.await;
    }
}

/// One question to the group's object, within [`ASK_TIMEOUT_MS`].
async fn ask_object(question: &GrantAsk) -> Result<Grant, String> {
    let namespace = NAMESPACE
        .with(|cell| cell.get().cloned().flatten())
        .ok_or("no binding")?;
    let stub = namespace
        .id_from_name(&question.group)
        .and_then(|id| id.get_stub())
        .map_err(|e| e.to_string())?;
    let response = within(ASK_TIMEOUT_MS, stub.fetch_with_str(&question.url()))
        .await
        .ok_or_else(|| format!("no answer within {ASK_TIMEOUT_MS} ms"))?
        .map_err(|e| runtime::error_message(&e))?;
    let header = response.headers().get(GRANT_HEADER).ok().flatten();
    Grant::parse(header.as_deref()).map_err(|e| format!("HTTP {}: {e}", response.status_code()))
}

/// The shared flood cap: one object per failure group holds the minute's grants for every
/// isolate. Only `fetch` is exported (`#[durable_object(fetch)]`: no alarm or WebSocket glue).
#[durable_object(fetch)]
pub struct FloodCap {
    /// `AssertUnwindSafe`: the panic=unwind build asks exported classes to be `RefUnwindSafe`;
    /// a panic cannot leave the book half-written (`grant` does not panic, and the borrow is
    /// released as it unwinds).
    book: AssertUnwindSafe<RefCell<GrantBook>>,
}

impl DurableObject for FloodCap {
    fn new(_state: State, _env: Env) -> Self {
        FloodCap {
            book: AssertUnwindSafe(RefCell::new(GrantBook::new())),
        }
    }

    /// `GET /v1/grant?group=..&want=..&cap=..` → `Edgeguard-Grant: v1 <granted> <left> <ttl_ms>`;
    /// a malformed question gets a 400 naming what is wrong.
    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        let ask = match GrantAsk::from_url(&req.inner().url()) {
            Ok(ask) => ask,
            Err(error) => return Response::error(error.to_string(), 400),
        };
        let Ok(mut book) = self.book.try_borrow_mut() else {
            return Response::error("busy", 503);
        };
        let grant = book.grant(&ask, now());
        let headers = Headers::new();
        headers.set(GRANT_HEADER, &grant.header_value())?;
        Ok(Response::empty()?.with_headers(headers))
    }
}
