//! The end-to-end harness: a real `workerd` running the built worker, a real
//! origin, a strict fake Sentry, and a small HTTP client. Everything listens
//! on 127.0.0.1 only, on ports picked by the OS, and stops on drop.

#![allow(dead_code)] // a harness API: not every helper is used by every test

pub mod browser;
pub mod http;
pub mod origin;
pub mod server;
pub mod sink;
pub mod workerd;

use std::net::TcpListener;
use std::time::{Duration, Instant};

pub use http::{Request, Response};
pub use origin::Origin;
pub use sink::{Sink, SinkMode};
pub use workerd::Worker;

/// A 127.0.0.1 port where nothing listens: bound by the OS, then released.
/// (Another process could grab it in between; on a test box that is rare
/// enough, and the port is only ever dialled, never bound, by the tests.)
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// 32 lowercase hex digits: a Sentry event id.
pub fn is_event_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `needle` occurs in `haystack`.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Locks `m`, ignoring poisoning: a failed assertion made while a lock was
/// held must not turn the drop-time diagnostics into a double panic.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `Condvar::wait_timeout`, ignoring poisoning (see [`lock`]).
pub fn wait_timeout<'a, T>(
    cv: &std::sync::Condvar,
    guard: std::sync::MutexGuard<'a, T>,
    dur: Duration,
) -> std::sync::MutexGuard<'a, T> {
    match cv.wait_timeout(guard, dur) {
        Ok((g, _)) => g,
        Err(e) => e.into_inner().0,
    }
}

/// Whether to print workerd logs and sink traffic even for passing tests
/// (`EDGEGUARD_E2E_VERBOSE=1 cargo test --test e2e -- --nocapture`).
pub fn verbose() -> bool {
    std::env::var_os("EDGEGUARD_E2E_VERBOSE").is_some_and(|v| v != "0")
}
