//! Bodies stream in both directions and are never collected: large transfers
//! arrive byte-exact while workerd's memory stays flat, a trickling origin
//! reaches the visitor before it has finished (and keeps streaming past the
//! origin timeout, which bounds only the wait for the head), and a failing
//! body is only counted (a bounded prefix) for the event, never shown.
//!
//! The memory figures are printed (`cargo test --test e2e streaming --
//! --nocapture`); the assertions only catch buffering, which would grow the
//! process by at least the body's size.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::support::http::{read_head, DeadlineReader};
use crate::support::origin::{pattern_bytes, SECRET_ORIGIN_DETAIL, TRICKLE_FIRST, TRICKLE_REST};
use crate::support::{
    checksum, contains_bytes, memory_kib, wait_until, Origin, Request, Sink, SinkMode, Worker,
};

const MIB: usize = 1024 * 1024;
/// Growth of workerd's peak RSS that a streamed transfer stays under; a
/// buffered 64 MiB body (or 32 MiB, held twice) would not.
const MAX_GROWTH_KIB: u64 = 24 * 1024;

/// Runs `transfer` and returns workerd's (VmRSS before, VmRSS after, VmHWM
/// before, VmHWM after) in KiB, after a warm-up request has loaded the wasm.
fn measure(worker: &Worker, transfer: impl FnOnce()) -> [u64; 4] {
    worker.get("/ok");
    let (rss_before, hwm_before) = memory_kib(worker.pid());
    transfer();
    let (rss_after, hwm_after) = memory_kib(worker.pid());
    [rss_before, rss_after, hwm_before, hwm_after]
}

/// Downloads 64 MiB from `/bytes/N{suffix}` and checks bytes and memory.
fn download_64_mib(suffix: &str, what: &str) {
    const N: usize = 64 * MIB;
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);
    let expected = checksum(&pattern_bytes(N));

    let mut got = None;
    let [rss0, rss1, hwm0, hwm1] = measure(&worker, || {
        got = Some(
            Request::get(&format!("/bytes/{N}{suffix}"))
                .timeout(Duration::from_secs(120))
                .send(worker.port()),
        );
    });
    let resp = got.unwrap();

    eprintln!(
        "memory, 64 MiB download ({what}): workerd VmRSS {rss0} -> {rss1} KiB, \
         VmHWM {hwm0} -> {hwm1} KiB (peak growth {} KiB)",
        hwm1.saturating_sub(hwm0)
    );
    assert_eq!(resp.status, 200, "{:?}", resp.headers);
    assert!(!resp.headers.contains("x-hop-secret"), "{:?}", resp.headers);
    assert_eq!(resp.body.len(), N, "length");
    assert_eq!(checksum(&resp.body), expected, "checksum");
    assert!(
        hwm1.saturating_sub(hwm0) < MAX_GROWTH_KIB,
        "workerd's peak RSS grew {} KiB for a 64 MiB body: buffered?",
        hwm1 - hwm0
    );
}

#[test]
fn a_64_mib_download_arrives_byte_exact_with_flat_memory() {
    download_64_mib("", "origin response returned as-is");
}

#[test]
fn a_64_mib_download_with_hop_headers_is_rewrapped_not_buffered() {
    download_64_mib("?hop", "response rebuilt around the origin's stream");
}

#[test]
fn a_32_mib_upload_reaches_the_origin_byte_exact_with_flat_memory() {
    const N: usize = 32 * MIB;
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);
    let body = pattern_bytes(N);
    let expected = format!("len={N} fnv={:016x}", checksum(&body));

    let mut got = None;
    let [rss0, rss1, hwm0, hwm1] = measure(&worker, || {
        got = Some(
            Request::post("/hash")
                .header("Content-Type", "application/octet-stream")
                .body(body)
                .timeout(Duration::from_secs(120))
                .send(worker.port()),
        );
    });
    let resp = got.unwrap();

    eprintln!(
        "memory, 32 MiB upload: workerd VmRSS {rss0} -> {rss1} KiB, VmHWM {hwm0} -> {hwm1} KiB \
         (peak growth {} KiB)",
        hwm1.saturating_sub(hwm0)
    );
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.text(), expected, "what the origin received");
    let reqs = origin.requests();
    let upload = reqs.iter().find(|r| r.path() == "/hash").unwrap();
    assert_eq!(upload.method, "POST");
    assert!(
        hwm1.saturating_sub(hwm0) < MAX_GROWTH_KIB,
        "workerd's peak RSS grew {} KiB for a 32 MiB upload: buffered?",
        hwm1 - hwm0
    );
}

#[test]
fn a_trickling_origin_reaches_the_visitor_before_it_finishes() {
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);
    trickle_through(&worker, &origin, Duration::ZERO);
}

/// `ORIGIN_TIMEOUT_MS` bounds the wait for the origin's response head, never the body: a body
/// that is still streaming when the timeout passes arrives whole, with no 504 and no event.
#[test]
fn a_body_still_streaming_past_the_origin_timeout_arrives_whole() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &sink.dsn()),
        ("ORIGIN_TIMEOUT_MS", "500"),
    ]);
    trickle_through(&worker, &origin, Duration::from_millis(1500));
    sink.assert_requests_stay(0, Duration::from_secs(1));
}

/// GETs `/trickle` through `worker`: the first part must arrive while the origin still holds
/// the rest; `hold` later the origin sends the rest, which must arrive too.
fn trickle_through(worker: &Worker, origin: &Origin, hold: Duration) {
    let stream = std::net::TcpStream::connect(("127.0.0.1", worker.port())).unwrap();
    {
        use std::io::Write;
        let mut w = stream.try_clone().unwrap();
        w.write_all(
            format!(
                "GET /trickle HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                worker.port()
            )
            .as_bytes(),
        )
        .unwrap();
    }
    let mut reader = DeadlineReader::new(stream, Instant::now() + Duration::from_secs(30));
    let (status_line, _) = read_head(&mut reader).unwrap();
    assert!(status_line.contains(" 200 "), "{status_line}");

    // The origin holds the rest of its body until the gate opens, and only
    // the test opens it, after seeing the first part through the worker: a
    // worker that collected the body would never deliver it.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !contains_bytes(&seen, TRICKLE_FIRST) {
        let n = reader
            .read(&mut buf)
            .expect("the first part must arrive while the origin is still sending");
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        !origin.trickle_done(),
        "the origin was still holding the rest"
    );
    std::thread::sleep(hold);
    origin.open_gate();
    reader.read_to_end(&mut seen).unwrap();
    assert!(contains_bytes(&seen, TRICKLE_REST), "{seen:?}");
    assert!(wait_until(Duration::from_secs(5), || origin.trickle_done()));
}

/// The failing body's size as the event states it, and the page shown.
fn failing_body(path: &str) -> (Option<u64>, Duration) {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url()), ("SENTRY_DSN", &sink.dsn())]);

    let resp = Request::get(path)
        .timeout(Duration::from_secs(10))
        .send(worker.port());

    assert_eq!(resp.status, 500, "{resp:?}");
    assert!(
        !contains_bytes(&resp.body, SECRET_ORIGIN_DETAIL.as_bytes()),
        "origin body leaked: {resp:?}"
    );
    let events = sink.wait_for_events(1, Duration::from_secs(15));
    sink.assert_no_violations();
    let size = events[0]["contexts"]["response"].get("body_size");
    eprintln!("page for {path} took {:?}", resp.elapsed);
    (size.and_then(|s| s.as_u64()), resp.elapsed)
}

#[test]
fn a_failing_body_is_measured_from_its_length_or_a_small_complete_read() {
    // Content-Length: stated, nothing read.
    let (with_length, _) = failing_body("/status/500");
    let expected = format!(
        "Traceback (most recent call last): {SECRET_ORIGIN_DETAIL}\n  \
         File \"/srv/app/db.py\", line 42, in connect\n    \
         password=hunter2 host=10.0.0.7\nRuntimeError: status 500\n"
    )
    .len() as u64;
    assert_eq!(with_length, Some(expected));
    // Chunked and small: read to its end, so the size is exact.
    let (small, _) = failing_body("/chunked/500/3000");
    assert_eq!(small, Some(3000));
    // Chunked and large: only a prefix is read, so no size is claimed.
    let (large, _) = failing_body(&format!("/chunked/500/{}", 8 * MIB));
    assert_eq!(large, None);
    // A body that stalls: the page does not wait for it (the origin holds the
    // connection open until the test ends), and no size is claimed.
    let (stalled, _) = failing_body("/stall/500");
    assert_eq!(stalled, None);
}
