//! The edge side of `crate::executor`: JS promises as futures, and futures as the promises the
//! runtime awaits. A promise is continued by one JS callback made per instance (`ON_PROMISE`),
//! never a closure per `await`.

use super::js;
use super::runtime::Promise;
use crate::executor::{self, Outcomes};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use wasm_bindgen::prelude::Closure;
use wasm_bindgen::JsValue;

use executor::spawn;

thread_local! {
    /// Promises awaited, by the key their callback is called with.
    static PROMISES: RefCell<Outcomes<Result<JsValue, JsValue>>> =
        const { RefCell::new(Outcomes::new()) };
    /// `on_promise` as a JS function, made once per instance.
    static ON_PROMISE: Closure<dyn Fn(u32, JsValue, bool) -> JsValue> = Closure::new(on_promise);
}

/// `future`'s output as a promise, for the runtime (which awaits a promise, not a future).
/// Should the task end without an output (a panic the future did not catch: the executor then
/// drops it), the promise resolves to `fallback()` instead of never settling.
pub fn to_promise<T: Into<JsValue>>(
    future: impl Future<Output = T> + 'static,
    fallback: fn() -> JsValue,
) -> Promise {
    let deferred = js::Deferred::new();
    let promise = deferred.promise();
    let mut answer = Answer {
        deferred: Some(deferred),
        fallback,
    };
    spawn(async move {
        let value = future.await.into();
        answer.give(&value);
    });
    promise
}

/// The resolving end of a promise handed to the runtime: resolved once, by the output or, when
/// dropped unresolved, by the fallback.
struct Answer {
    deferred: Option<js::Deferred>,
    fallback: fn() -> JsValue,
}

impl Answer {
    fn give(&mut self, value: &JsValue) {
        if let Some(deferred) = self.deferred.take() {
            deferred.resolve(value);
        }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if let Some(deferred) = self.deferred.take() {
            deferred.resolve(&(self.fallback)());
        }
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
            let key = PROMISES.with(|p| p.borrow_mut().wait(cx.waker()));
            self.key = Some(key);
            ON_PROMISE.with(|callback| js::when_settled(&promise, key, callback));
            return Poll::Pending;
        }
        let Some(key) = self.key else {
            return Poll::Ready(Err(JsValue::UNDEFINED)); // polled after completion
        };
        let polled = PROMISES.with(|p| p.borrow_mut().poll(key, cx.waker()));
        polled.map(|outcome| {
            self.key = None;
            outcome.unwrap_or(Err(JsValue::UNDEFINED))
        })
    }
}

impl Drop for Settled {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            PROMISES.with(|p| p.borrow_mut().abandon(key));
        }
    }
}

/// A settled promise's callback: stores the outcome and polls the task awaiting it.
fn on_promise(key: u32, value: JsValue, fulfilled: bool) -> JsValue {
    let outcome = if fulfilled { Ok(value) } else { Err(value) };
    let waker = PROMISES.with(|p| p.borrow_mut().settle(key, outcome));
    if let Some(waker) = waker {
        waker.wake();
    }
    JsValue::UNDEFINED
}
