//! The few Rust futures edgeguard runs (a failure's answer, a report, a client-report flush),
//! driven by JS promises without an executor crate.
//!
//! `js_sys::futures` (wasm-bindgen-futures) cost ~21 KB of wasm (a task queue on
//! `queueMicrotask`, two JS closures made and dropped per `await`), and linking `js-sys` at all
//! kept ~13 KB of closure shims for APIs edgeguard never calls. Here a task is polled at once
//! when spawned, and again from the promise callback that wakes it: no microtask queue, and one
//! JS function per instance (`ON_PROMISE`) continues every awaited promise.
//!
//! A waker carries only its task's key (`Wake` on an `Arc<u32>`-like value: safe Rust, no raw
//! waker). A stale wake (a task already done, its key reused) only polls a task once more than
//! needed, which futures allow.

use super::js;
use super::runtime::Promise;
use super::slab::Slab;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use wasm_bindgen::prelude::Closure;
use wasm_bindgen::JsValue;

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// An awaited promise: waiting (with the waker to call), settled, or its future dropped first.
enum Slot {
    Waiting(Option<Waker>),
    Settled(Result<JsValue, JsValue>),
    Abandoned,
}

thread_local! {
    /// The tasks not finished, by key. A task being polled is taken out (`None`) meanwhile.
    static TASKS: RefCell<Slab<Option<Task>>> = const { RefCell::new(Slab::new()) };
    /// Woken tasks waiting for the loop in `run`.
    static READY: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// Whether `run` is on the stack: a wake then only queues the task.
    static RUNNING: Cell<bool> = const { Cell::new(false) };
    /// Promises awaited, by the key their callback is called with.
    static PROMISES: RefCell<Slab<Slot>> = const { RefCell::new(Slab::new()) };
    /// `on_promise` as a JS function, made once per instance.
    static ON_PROMISE: Closure<dyn Fn(u32, JsValue, bool) -> JsValue> = Closure::new(on_promise);
}

/// Runs `future` to completion, starting now (up to its first `await`).
pub fn spawn(future: impl Future<Output = ()> + 'static) {
    let key = TASKS.with(|tasks| tasks.borrow_mut().insert(Some(Box::pin(future))));
    wake(key);
}

/// `future`'s output as a promise, for the runtime (which awaits a promise, not a future).
pub fn to_promise<T: Into<JsValue>>(future: impl Future<Output = T> + 'static) -> Promise {
    let deferred = js::Deferred::new();
    let promise = deferred.promise();
    spawn(async move {
        let value = future.await.into();
        deferred.resolve(&value);
    });
    promise
}

struct TaskWaker(u32);

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        wake(self.0);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        wake(self.0);
    }
}

fn wake(key: u32) {
    READY.with(|ready| ready.borrow_mut().push(key));
    if !RUNNING.with(|running| running.replace(true)) {
        run();
        RUNNING.with(|running| running.set(false));
    }
}

/// Polls every woken task until none is left (a poll may wake or spawn others).
fn run() {
    while let Some(key) = READY.with(|ready| ready.borrow_mut().pop()) {
        let taken = TASKS.with(|tasks| tasks.borrow_mut().get_mut(key).and_then(Option::take));
        let Some(mut task) = taken else {
            continue; // finished already: a stale wake
        };
        let waker = Waker::from(Arc::new(TaskWaker(key)));
        let polled = catch_unwind(AssertUnwindSafe(|| {
            task.as_mut().poll(&mut Context::from_waker(&waker))
        }));
        TASKS.with(|tasks| {
            let mut tasks = tasks.borrow_mut();
            match polled {
                Ok(Poll::Pending) => {
                    if let Some(slot) = tasks.get_mut(key) {
                        *slot = Some(task);
                    }
                }
                // Done, or panicked (the request futures catch their own panics; a report's
                // panic ends that report only).
                done => {
                    tasks.remove(key);
                    if done.is_err() {
                        drop(tasks);
                        super::count_reporter_failure("a background task panicked; it was dropped");
                    }
                }
            }
        });
    }
}

/// A JS promise as a future: its value, or its rejection as `Err`.
pub struct Settled {
    promise: Option<Promise>,
    key: Option<u32>,
}

impl From<Promise> for Settled {
    fn from(promise: Promise) -> Self {
        Settled {
            promise: Some(promise),
            key: None,
        }
    }
}

impl Future for Settled {
    type Output = Result<JsValue, JsValue>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(promise) = self.promise.take() {
            let key = PROMISES.with(|p| {
                p.borrow_mut()
                    .insert(Slot::Waiting(Some(cx.waker().clone())))
            });
            self.key = Some(key);
            ON_PROMISE.with(|callback| js::when_settled(&promise, key, callback));
            return Poll::Pending;
        }
        let Some(key) = self.key else {
            return Poll::Ready(Err(JsValue::UNDEFINED)); // polled after completion
        };
        PROMISES.with(|p| {
            let mut promises = p.borrow_mut();
            match promises.get_mut(key) {
                Some(Slot::Waiting(waker)) => {
                    *waker = Some(cx.waker().clone());
                    Poll::Pending
                }
                Some(Slot::Settled(_)) => {
                    self.key = None;
                    match promises.remove(key) {
                        Some(Slot::Settled(result)) => Poll::Ready(result),
                        _ => Poll::Ready(Err(JsValue::UNDEFINED)),
                    }
                }
                _ => Poll::Ready(Err(JsValue::UNDEFINED)),
            }
        })
    }
}

impl Drop for Settled {
    /// Dropped before its promise settled (a timeout won the race): the slot is freed when the
    /// promise settles, so its key is never reused while a callback may still name it.
    fn drop(&mut self) {
        let Some(key) = self.key else {
            return;
        };
        PROMISES.with(|p| {
            let mut promises = p.borrow_mut();
            if let Some(slot) = promises.get_mut(key) {
                if matches!(slot, Slot::Settled(_)) {
                    promises.remove(key);
                } else {
                    *slot = Slot::Abandoned;
                }
            }
        });
    }
}

/// A settled promise's callback: stores the outcome and wakes the task awaiting it.
fn on_promise(key: u32, value: JsValue, fulfilled: bool) -> JsValue {
    let waker = PROMISES.with(|p| {
        let mut promises = p.borrow_mut();
        let slot = promises.get_mut(key)?;
        let outcome = if fulfilled { Ok(value) } else { Err(value) };
        match std::mem::replace(slot, Slot::Settled(outcome)) {
            Slot::Waiting(waker) => waker,
            _ => {
                promises.remove(key);
                None
            }
        }
    });
    if let Some(waker) = waker {
        waker.wake();
    }
    JsValue::UNDEFINED
}
