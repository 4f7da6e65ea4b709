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
use crate::sentry::delivery::Admitted;
use crate::sentry::dsn::Dsn;
use crate::sentry::floodcap::{Grant, GrantAsk, GrantBook, GrantError, GRANT_HEADER};
use crate::sentry::ratelimit::CATEGORY_ERROR;
use std::cell::{OnceCell, RefCell};
use std::fmt;
use std::panic::AssertUnwindSafe;
use worker::{
    console_warn, durable_object, Context, DurableObject, Env, Headers, ObjectNamespace, Request,
    Response, State,
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

/// An event admitted `AfterAsking`: the question its `wait_until` work asks after the page.
pub(super) struct Question {
    /// The request's context (another handle on the runtime's object), for a refusal's client
    /// report.
    ctx: Context,
    flood_key: String,
    ask: bool,
}

impl Question {
    pub(super) fn new(ctx: &Context, flood_key: String, ask: bool) -> Self {
        let js: &wasm_bindgen::JsValue = ctx.as_ref().as_ref();
        Question {
            ctx: Context::new(wasm_bindgen::JsCast::unchecked_into(js.clone())),
            flood_key,
            ask,
        }
    }

    /// Whether the event is sent (see [`decide_after_page`]).
    pub(super) async fn settle(self, dsn: &Dsn) -> bool {
        decide_after_page(&self.ctx, dsn, CATEGORY_ERROR, &self.flood_key, self.ask).await
    }
}

/// An event admitted `AfterAsking`, decided after its page: asks the object (or waits for the
/// question another event of the isolate is asking), then takes a grant. Returns whether the
/// event is sent; a refusal is counted and its client report scheduled on `ctx` (the request's
/// context, still open: this runs in its `wait_until`).
async fn decide_after_page(
    ctx: &Context,
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
            answered(flood_key, ask_object(&question).await);
        } else if waits < MAX_WAITS {
            waits += 1;
            runtime::sleep(WAIT_STEP_MS).await;
        } else {
            // Unreachable in practice (an ask ends within ASK_TIMEOUT_MS): never wait forever.
            answered(flood_key, Err(AskError::Timeout));
        }
        let decided = with_reporter(|r| r.decide_again(now(), category, flood_key));
        match decided {
            Some(Ok(Admitted::Now)) | None => return true,
            Some(Ok(Admitted::AfterAsking { ask: again })) => ask = again,
            Some(Err(reason)) => {
                transport::schedule_flush(ctx, dsn, reason);
                return false;
            }
        }
    }
}

/// Why the object gave no grant: the isolate's own cap applies.
enum AskError {
    /// No stub for the group (the binding is not usable).
    Stub,
    /// No answer within [`ASK_TIMEOUT_MS`].
    Timeout,
    /// The fetch failed (the object threw, or could not be reached): the runtime's message.
    Fetch(String),
    /// An answer without a well-formed grant: its status and what is wrong.
    Answer(u16, GrantError),
}

impl fmt::Display for AskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AskError::Stub => f.write_str("no stub for the group"),
            AskError::Timeout => write!(f, "no answer within {ASK_TIMEOUT_MS} ms"),
            AskError::Fetch(message) => f.write_str(message),
            AskError::Answer(status, error) => write!(f, "HTTP {status}: {error}"),
        }
    }
}

/// Hands the object's answer to the reporter; the fallback to the local cap is logged once
/// per window.
fn answered(flood_key: &str, answer: Result<Grant, AskError>) {
    let (grant, failure) = match answer {
        Ok(grant) => (Some(grant), None),
        Err(why) => (None, Some(why)),
    };
    let log = with_reporter(|r| r.answered(flood_key, grant, now()));
    if let (Some(true), Some(why)) = (log, failure) {
        console_warn!(
            "edgeguard: the shared flood cap ({BINDING}) did not answer ({why}); \
             this isolate's own cap applies for the rest of the minute"
        );
    }
}

/// One question to the group's object, within [`ASK_TIMEOUT_MS`].
async fn ask_object(question: &GrantAsk) -> Result<Grant, AskError> {
    let stub = NAMESPACE
        .with(|cell| cell.get().cloned().flatten())
        .and_then(|namespace| {
            namespace
                .id_from_name(&question.group)
                .ok()?
                .get_stub()
                .ok()
        })
        .ok_or(AskError::Stub)?;
    let response = within(ASK_TIMEOUT_MS, stub.fetch_with_str(&question.url()))
        .await
        .ok_or(AskError::Timeout)?
        .map_err(|e| AskError::Fetch(runtime::error_message(&e)))?;
    let header = response.headers().get(GRANT_HEADER).ok().flatten();
    Grant::parse(header.as_deref()).map_err(|e| AskError::Answer(response.status_code(), e))
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
    /// a malformed question gets a bare 400.
    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        let headers = Headers::new();
        let status = match GrantAsk::from_url(&req.inner().url()) {
            Ok(ask) => match self.book.try_borrow_mut() {
                Ok(mut book) => {
                    let grant = book.grant(&ask, now());
                    headers.set(GRANT_HEADER, &grant.header_value())?;
                    200
                }
                Err(_) => 503,
            },
            // The isolate logs it as an answer without a grant.
            Err(_) => 400,
        };
        Ok(Response::empty()?.with_status(status).with_headers(headers))
    }
}
