//! The end-to-end harness: a real `workerd` running the built worker, a real
//! origin, a strict fake Sentry, and a small HTTP client. Everything listens
//! on 127.0.0.1 only, on ports picked by the OS, and stops on drop.

#![allow(dead_code)] // a harness API: not every helper is used by every test

pub mod browser;
pub mod http;
pub mod origin;
pub mod pyorigin;
pub mod server;
pub mod sink;
pub mod workerd;
pub mod ws;

use std::net::TcpListener;
use std::time::{Duration, Instant};

pub use http::{Request, Response};
pub use origin::Origin;
pub use sink::{Sink, SinkMode};
pub use workerd::{FloodObject, Worker};

/// A 127.0.0.1 port where nothing listens, for "unreachable" cases (and for
/// Bugsink, which binds the port it is given).
///
/// Taken from below the kernel's ephemeral range (32768–60999 here), which
/// every server in these tests binds from (`:0`): a port released by `bind(:0)`
/// could be handed straight to another test's origin or sink running in
/// parallel, and the "unreachable" origin would answer. Each call gets a new
/// port (a per-process counter, offset by the pid so concurrent test binaries
/// differ), checked free by binding it once.
pub fn closed_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const BASE: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let offset = std::process::id().wrapping_mul(97) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (BASE + (offset + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {BASE}..{}", BASE + SPAN);
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

/// 64-bit FNV-1a of `bytes`: the body checksum the origin and the tests compare.
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Sends `request` as raw bytes to 127.0.0.1:`port` and reads until the peer
/// closes (bounded by `timeout`): for request lines and framing the
/// [`Request`] builder would not produce, and to see exactly what came back.
pub fn raw_exchange(port: u16, request: &[u8], timeout: Duration) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_write_timeout(Some(timeout)).unwrap();
    stream.write_all(request).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no end of response within {timeout:?}; got {:?}",
            String::from_utf8_lossy(&out)
        );
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading the response: {e}"),
        }
    }
}

/// Splits a raw response into (status, lowercase-named headers, body bytes).
pub fn split_response(raw: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, raw[end + 4..].to_vec())
}

/// VmRSS and VmHWM of process `pid`, in KiB.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}
