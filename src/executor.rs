//! A single-threaded executor for the few futures edgeguard runs (a failure's answer, a report,
//! a client-report flush), woken by callbacks from outside: at the edge, the callback of the JS
//! promise a future awaits. Plain Rust, so it is tested on the host; the edge supplies only the
//! promises (`edge::task`).
//!
//! Why not wasm-bindgen-futures (`js_sys::futures`): ~21 KB of wasm, a task queue on
//! `queueMicrotask`, and two JS closures made and dropped per `await`. Here a task is polled at
//! once when spawned, and again straight from the callback that wakes it: no queue, no closure
//! per `await`.
//!
//! A waker carries only its task's key (`Wake` on an `Arc`: safe Rust, no raw waker). A stale
//! wake (the task done, its key reused) only polls a task once more than needed, which futures
//! allow.

use crate::slab::Slab;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

type Task = Pin<Box<dyn Future<Output = ()>>>;

thread_local! {
    /// The tasks not finished, by key. A task being polled is taken out (`None`) meanwhile.
    static TASKS: RefCell<Slab<Option<Task>>> = const { RefCell::new(Slab::new()) };
    /// Woken tasks waiting for the loop in `wake`.
    static READY: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// Whether the loop in `wake` is on the stack: a wake then only queues its task.
    static RUNNING: Cell<bool> = const { Cell::new(false) };
    /// Called when a task panics (it is then dropped): the edge logs and counts it.
    static ON_PANIC: Cell<Option<fn()>> = const { Cell::new(None) };
}

/// Runs `future` to completion, starting now (up to its first pending `await`).
pub fn spawn(future: impl Future<Output = ()> + 'static) {
    let key = TASKS.with(|tasks| tasks.borrow_mut().insert(Some(Box::pin(future))));
    wake(key);
}

/// What to call when a task panics. A panicking task is dropped; the others carry on.
pub fn on_panic(hook: fn()) {
    ON_PANIC.with(|cell| cell.set(Some(hook)));
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

/// Queues the task under `key` and, unless the loop is already running further up the stack,
/// polls every woken task until none is left (a poll may wake or spawn others). Nothing here
/// can panic out of the loop: a poll runs under `catch_unwind`, and no `RefCell` is borrowed
/// across a poll.
fn wake(key: u32) {
    READY.with(|ready| ready.borrow_mut().push(key));
    if RUNNING.with(|running| running.replace(true)) {
        return;
    }
    while let Some(key) = READY.with(|ready| ready.borrow_mut().pop()) {
        poll(key);
    }
    RUNNING.with(|running| running.set(false));
}

/// One poll of the task under `key`, taken out of `TASKS` meanwhile (so it may spawn).
fn poll(key: u32) {
    let taken = TASKS.with(|tasks| tasks.borrow_mut().get_mut(key).and_then(Option::take));
    let Some(mut task) = taken else {
        return; // finished already: a stale wake
    };
    let waker = Waker::from(Arc::new(TaskWaker(key)));
    let polled = catch_unwind(AssertUnwindSafe(|| {
        task.as_mut().poll(&mut Context::from_waker(&waker))
    }));
    if let Ok(Poll::Pending) = polled {
        TASKS.with(|tasks| {
            if let Some(slot) = tasks.borrow_mut().get_mut(key) {
                *slot = Some(task);
            }
        });
        return;
    }
    TASKS.with(|tasks| tasks.borrow_mut().remove(key));
    drop(task);
    if polled.is_err() {
        if let Some(hook) = ON_PANIC.with(Cell::get) {
            hook();
        }
    }
}

/// Outcomes awaited from outside (JS promises at the edge), by the key their callback carries.
pub struct Outcomes<T> {
    slots: Slab<Slot<T>>,
}

enum Slot<T> {
    /// Not settled yet: the waker of the task awaiting it.
    Waiting(Waker),
    Settled(T),
    /// Its future was dropped first (a timeout won a race): freed when it settles, so the key
    /// is never reused while a callback may still name it.
    Abandoned,
}

impl<T> Default for Outcomes<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Outcomes<T> {
    pub const fn new() -> Self {
        Outcomes { slots: Slab::new() }
    }

    /// A new outcome to wait for, with the waker to call when it settles; its key.
    pub fn wait(&mut self, waker: &Waker) -> u32 {
        self.slots.insert(Slot::Waiting(waker.clone()))
    }

    /// The outcome under `key` once settled (the slot is then freed); pending before, with
    /// `waker` as the one to call. `Ready(None)` for a key not waited for.
    pub fn poll(&mut self, key: u32, waker: &Waker) -> Poll<Option<T>> {
        match self.slots.get_mut(key) {
            Some(Slot::Waiting(waiting)) => {
                waiting.clone_from(waker);
                Poll::Pending
            }
            Some(Slot::Settled(_)) => match self.slots.remove(key) {
                Some(Slot::Settled(outcome)) => Poll::Ready(Some(outcome)),
                _ => Poll::Ready(None),
            },
            Some(Slot::Abandoned) | None => Poll::Ready(None),
        }
    }

    /// `outcome` arrived for `key`: the waker to call (after releasing any borrow of `self`,
    /// since the wake polls the task at once), or `None` when nobody waits for it any more.
    pub fn settle(&mut self, key: u32, outcome: T) -> Option<Waker> {
        let slot = self.slots.get_mut(key)?;
        match std::mem::replace(slot, Slot::Settled(outcome)) {
            Slot::Waiting(waker) => Some(waker),
            Slot::Abandoned | Slot::Settled(_) => {
                self.slots.remove(key);
                None
            }
        }
    }

    /// The future awaiting `key` was dropped: an outcome already there is freed now, one still
    /// to come when it arrives.
    pub fn abandon(&mut self, key: u32) {
        if let Some(slot) = self.slots.get_mut(key) {
            if matches!(slot, Slot::Settled(_)) {
                self.slots.remove(key);
            } else {
                *slot = Slot::Abandoned;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    thread_local! {
        static OUTCOMES: RefCell<Outcomes<u32>> = const { RefCell::new(Outcomes::new()) };
        static PANICS: Cell<u32> = const { Cell::new(0) };
    }

    /// A test stand-in for a JS promise: settled by `resolve`, as the edge's callback would.
    struct Pending {
        key: Option<u32>,
    }

    impl Future for Pending {
        type Output = Option<u32>;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u32>> {
            let key = match self.key {
                Some(key) => key,
                None => {
                    let key = OUTCOMES.with(|o| o.borrow_mut().wait(cx.waker()));
                    self.key = Some(key);
                    LAST_KEY.with(|k| k.set(key));
                    return Poll::Pending;
                }
            };
            let polled = OUTCOMES.with(|o| o.borrow_mut().poll(key, cx.waker()));
            if polled.is_ready() {
                self.key = None;
            }
            polled
        }
    }

    impl Drop for Pending {
        fn drop(&mut self) {
            if let Some(key) = self.key {
                OUTCOMES.with(|o| o.borrow_mut().abandon(key));
            }
        }
    }

    thread_local! {
        static LAST_KEY: Cell<u32> = const { Cell::new(u32::MAX) };
    }

    fn resolve(key: u32, value: u32) {
        let waker = OUTCOMES.with(|o| o.borrow_mut().settle(key, value));
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn log() -> Rc<RefCell<Vec<String>>> {
        Rc::new(RefCell::new(Vec::new()))
    }

    #[test]
    fn a_task_runs_at_once_up_to_its_first_pending_await() {
        let seen = log();
        let s = Rc::clone(&seen);
        spawn(async move {
            s.borrow_mut().push("started".into());
            let value = Pending { key: None }.await;
            s.borrow_mut().push(format!("got {value:?}"));
        });
        assert_eq!(*seen.borrow(), ["started"], "ran to the await, no further");
        resolve(LAST_KEY.with(Cell::get), 7);
        assert_eq!(
            *seen.borrow(),
            ["started", "got Some(7)"],
            "the callback polled it"
        );
    }

    #[test]
    fn tasks_spawned_or_woken_inside_a_poll_run_after_it_not_inside_it() {
        let seen = log();
        let (s, t) = (Rc::clone(&seen), Rc::clone(&seen));
        spawn(async move {
            s.borrow_mut().push("outer start".into());
            spawn(async move { t.borrow_mut().push("inner".into()) });
            s.borrow_mut().push("outer end".into());
        });
        assert_eq!(*seen.borrow(), ["outer start", "outer end", "inner"]);
    }

    #[test]
    fn a_panicking_task_is_dropped_and_reported_and_the_others_carry_on() {
        on_panic(|| PANICS.with(|p| p.set(p.get() + 1)));
        spawn(async { panic!("a task fails") });
        assert_eq!(PANICS.with(Cell::get), 1);
        let seen = log();
        let s = Rc::clone(&seen);
        spawn(async move { s.borrow_mut().push("next".into()) });
        assert_eq!(
            *seen.borrow(),
            ["next"],
            "the loop is not stuck after a panic"
        );
    }

    #[test]
    fn a_panicking_task_drops_what_it_holds() {
        // What `edge::task::to_promise` relies on to answer a request whose task panicked.
        struct Guard(Rc<Cell<bool>>);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.set(true);
            }
        }
        let dropped = Rc::new(Cell::new(false));
        let guard = Guard(Rc::clone(&dropped));
        spawn(async move {
            let _held = guard;
            Pending { key: None }.await;
            panic!("after an await");
        });
        assert!(!dropped.get(), "still waiting");
        resolve(LAST_KEY.with(Cell::get), 1);
        assert!(
            dropped.get(),
            "the panicked task was dropped, and its guard with it"
        );
    }

    #[test]
    fn an_outcome_nobody_waits_for_is_freed_and_its_key_not_reused_before() {
        let mut outcomes = Outcomes::new();
        let waker = Waker::from(Arc::new(TaskWaker(u32::MAX)));
        let key = outcomes.wait(&waker);
        outcomes.abandon(key);
        let other = outcomes.wait(&waker);
        assert_ne!(other, key, "a key stays taken until its outcome arrives");
        assert!(outcomes.settle(key, 1).is_none(), "nobody to wake");
        assert_eq!(outcomes.wait(&waker), key, "freed once settled");
        // Settled, then abandoned: freed at once.
        assert!(outcomes.settle(other, 2).is_some());
        outcomes.abandon(other);
        assert_eq!(outcomes.wait(&waker), other);
    }

    #[test]
    fn an_outcome_is_taken_once() {
        let mut outcomes = Outcomes::new();
        let waker = Waker::from(Arc::new(TaskWaker(u32::MAX)));
        let key = outcomes.wait(&waker);
        assert_eq!(outcomes.poll(key, &waker), Poll::Pending);
        assert!(outcomes.settle(key, 5).is_some());
        assert_eq!(outcomes.poll(key, &waker), Poll::Ready(Some(5)));
        assert_eq!(outcomes.poll(key, &waker), Poll::Ready(None));
    }

    #[test]
    fn a_stale_wake_of_a_finished_task_does_nothing() {
        let seen = log();
        let s = Rc::clone(&seen);
        spawn(async move { s.borrow_mut().push("once".into()) });
        // The task is done and its key free: waking it again polls nothing.
        Waker::from(Arc::new(TaskWaker(0))).wake();
        Waker::from(Arc::new(TaskWaker(99))).wake();
        assert_eq!(*seen.borrow(), ["once"]);
    }
}
