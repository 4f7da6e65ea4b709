//! Delivery: Sentry's rate limits held across requests, flood control, sampling, client reports
//! of what was dropped, one retry on a network error, and gzip, in real workerd against the
//! strict sink.

use std::time::{Duration, Instant};

use crate::support::{Origin, Request, Sink, SinkMode, Worker};

const WAIT: Duration = Duration::from_secs(20);

/// Requests a failing page; returns its X-Sentry-ID (none when the event was dropped).
fn fail(worker: &Worker, path: &str) -> Option<String> {
    let resp = worker.get(path);
    assert!(resp.status >= 500, "{path}: {resp:?}");
    resp.header("x-sentry-id").map(str::to_string)
}

#[test]
fn after_a_429_nothing_is_sent_until_the_window_passes_then_one_event_is() {
    rate_limited_by(SinkMode::TooManyRequests {
        rate_limits: Some("2:error:key"),
        retry_after: None,
    });
}

#[test]
fn a_429_with_retry_after_blocks_for_that_long() {
    rate_limited_by(SinkMode::TooManyRequests {
        rate_limits: None,
        retry_after: Some("2"),
    });
}

/// The sink answers the first envelope with `first` (a 2 s limit), then accepts.
fn rate_limited_by(first: SinkMode) {
    let origin = Origin::start();
    let sink = Sink::start(first);
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url()), ("SENTRY_DSN", &sink.dsn())]);

    assert!(fail(&worker, "/status/500").is_some());
    sink.wait_for_requests(1, WAIT);
    let limited_at = Instant::now();
    sink.set_mode(SinkMode::Accept);
    // Let the worker read the 429 before the next failures.
    std::thread::sleep(Duration::from_millis(300));

    for path in ["/status/502", "/status/503", "/status/500"] {
        assert_eq!(
            fail(&worker, path),
            None,
            "{path}: a dropped event has no id to quote"
        );
    }
    let window_end = limited_at + Duration::from_millis(1900);
    sink.assert_requests_stay(1, window_end.saturating_duration_since(Instant::now()));

    std::thread::sleep(
        (limited_at + Duration::from_millis(2600)).saturating_duration_since(Instant::now()),
    );
    let id = fail(&worker, "/status/500").expect("the window passed: an event id");
    let events = sink.wait_for_events(2, WAIT);
    assert_eq!(events[1]["event_id"], id.as_str());
    // The 429'd event and the three dropped while limited, carried by the next envelope.
    let envelope = &sink.envelopes()[1];
    let reports = envelope.client_reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(sink.discarded("ratelimit_backoff"), 4, "{reports:?}");
    // Nothing else follows: the scheduled flush found the counts already sent.
    sink.assert_requests_stay(2, Duration::from_secs(6));
    sink.assert_no_violations();
}

#[test]
fn rate_limits_on_a_200_are_honoured_and_the_drops_reported_alone() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::AcceptWithLimits(
        "60:error:key, 60:transaction:organization",
    ));
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url()), ("SENTRY_DSN", &sink.dsn())]);

    assert!(fail(&worker, "/status/500").is_some());
    sink.wait_for_events(1, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fail(&worker, "/status/500"), None);
    assert_eq!(fail(&worker, "/status/503"), None);

    // Errors are limited, client reports are not: the counts arrive alone.
    assert_eq!(sink.wait_for_discarded("ratelimit_backoff", 2, WAIT), 2);
    sink.assert_requests_stay(2, Duration::from_secs(1));
    let alone = &sink.envelopes()[1];
    assert!(alone.event().is_none(), "{:?}", alone.header);
    assert!(alone.header.get("event_id").is_none(), "{:?}", alone.header);
    sink.assert_no_violations();
}

#[test]
fn a_flood_of_5xx_on_two_routes_is_capped_and_every_drop_counted() {
    const CAP: usize = 5;
    const ERRORS: usize = 200;
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &sink.dsn()),
        ("SENTRY_MAX_EVENTS_PER_MINUTE", &CAP.to_string()),
    ]);

    let started = Instant::now();
    let mut quoted = 0;
    for i in 0..ERRORS {
        let path = if i % 2 == 0 {
            format!("/status/500?order={i}")
        } else {
            format!("/status/503?user={i}")
        };
        quoted += usize::from(fail(&worker, &path).is_some());
    }
    let took = started.elapsed();

    let dropped = sink.wait_for_discarded("backpressure", (ERRORS - 2 * CAP) as u64, WAIT);
    let events = sink.events();
    eprintln!(
        "flood: {ERRORS} errors in {took:?} on two routes, cap {CAP}/min: {} events sent, \
         {dropped} counted as dropped, {} envelopes in all",
        events.len(),
        sink.envelopes().len()
    );
    assert!(took < Duration::from_secs(60), "all inside one window");
    assert_eq!(events.len(), 2 * CAP, "the cap per route");
    assert_eq!(
        quoted,
        events.len(),
        "only sent events are quoted on the page"
    );
    assert_eq!(
        events.len() as u64 + dropped,
        ERRORS as u64,
        "sent + dropped = seen"
    );
    sink.assert_no_violations();
}

#[test]
fn sample_rate_zero_sends_no_event_and_counts_them() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &sink.dsn()),
        ("SENTRY_SAMPLE_RATE", "0"),
    ]);

    for path in ["/status/500", "/status/502", "/status/500"] {
        assert_eq!(fail(&worker, path), None);
    }
    assert_eq!(sink.wait_for_discarded("sample_rate", 3, WAIT), 3);
    sink.assert_requests_stay(1, Duration::from_secs(1));
    assert!(sink.events().is_empty());
    sink.assert_no_violations();
}

#[test]
fn a_bad_sample_rate_is_named_and_every_event_is_sent() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &sink.dsn()),
        ("SENTRY_SAMPLE_RATE", "150%"),
    ]);

    assert!(fail(&worker, "/status/500").is_some());
    assert!(worker.wait_for_log(
        "SENTRY_SAMPLE_RATE: not a number from 0.0 to 1.0; every event is sent (1.0)",
        WAIT
    ));
    assert!(!worker.logs().contains("150%"), "the value is never logged");
    // The event plus the config error's own event.
    sink.wait_for_events(2, WAIT);
    sink.assert_no_violations();
}

#[test]
fn sentry_refusing_with_500_is_counted_as_a_send_error() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Fail500);
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url()), ("SENTRY_DSN", &sink.dsn())]);

    assert!(fail(&worker, "/status/500").is_some());
    sink.wait_for_requests(1, WAIT);
    // No retry on an HTTP error.
    sink.assert_requests_stay(1, Duration::from_millis(1500));
    sink.set_mode(SinkMode::Accept);
    assert!(fail(&worker, "/status/502").is_some());
    sink.wait_for_events(2, WAIT);
    assert_eq!(sink.discarded("send_error"), 1);
    sink.assert_no_violations();
}

#[test]
fn a_hanging_send_is_abandoned_not_retried_and_counted() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Hang);
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url()), ("SENTRY_DSN", &sink.dsn())]);

    assert!(fail(&worker, "/status/500").is_some());
    sink.wait_for_requests(1, WAIT);
    let hung_at = Instant::now();
    sink.set_mode(SinkMode::Accept);
    // The send is abandoned after 8 s; only then is its drop counted. No second attempt.
    assert!(
        worker.wait_for_log("no answer within 8000 ms", WAIT),
        "{}",
        worker.logs()
    );
    let abandoned_after = hung_at.elapsed();
    assert!(
        abandoned_after < Duration::from_secs(12),
        "abandoned after {abandoned_after:?}"
    );
    sink.assert_requests_stay(1, Duration::from_millis(500));
    assert!(fail(&worker, "/status/502").is_some());
    sink.wait_for_events(2, WAIT);
    assert_eq!(sink.discarded("network_error"), 1);
    sink.assert_no_violations();
}

#[test]
fn a_network_error_is_retried_exactly_once() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Close);
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url()), ("SENTRY_DSN", &sink.dsn())]);

    assert!(fail(&worker, "/status/500").is_some());
    sink.wait_for_requests(2, WAIT);
    sink.assert_requests_stay(2, Duration::from_millis(1500));
    let envelopes = sink.envelopes();
    assert_eq!(
        envelopes[0].header["event_id"], envelopes[1].header["event_id"],
        "the same envelope twice"
    );
    sink.set_mode(SinkMode::Accept);
    assert!(fail(&worker, "/status/502").is_some());
    sink.wait_for_events(3, WAIT);
    assert_eq!(sink.discarded("network_error"), 1);
    sink.assert_no_violations();
}

#[test]
fn large_envelopes_are_gzipped_and_small_ones_sent_plain() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &sink.dsn()),
        (
            "SENTRY_REQUEST_HEADERS",
            "user-agent, referer, x-request-id",
        ),
    ]);

    // A plain origin 500: an envelope of about 1 KB, below the 2 KiB threshold.
    assert!(fail(&worker, "/status/500").is_some());
    sink.wait_for_events(1, WAIT);
    // The same failure with long opted-in headers: well above it.
    let long = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) ".repeat(12);
    let resp = Request::get("/status/502?x=1")
        .header("User-Agent", &long)
        .header(
            "Referer",
            &format!("https://shop.example/{}", "catalogue/".repeat(60)),
        )
        .header("X-Request-Id", &"0123456789abcdef".repeat(8))
        .send(worker.port());
    assert_eq!(resp.status, 502, "{resp:?}");
    sink.wait_for_events(2, WAIT);

    let envelopes = sink.envelopes();
    for envelope in &envelopes {
        eprintln!(
            "envelope: {} bytes plain, {} on the wire (gzip: {})",
            envelope.plain_len, envelope.wire_len, envelope.gzip
        );
    }
    let (small, large): (Vec<_>, Vec<_>) = envelopes.iter().partition(|e| e.plain_len < 2_048);
    assert_eq!((small.len(), large.len()), (1, 1), "one of each size");
    assert!(!small[0].gzip, "a small envelope is sent as-is");
    assert_eq!(small[0].wire_len, small[0].plain_len);
    assert!(large[0].gzip, "a large envelope is compressed");
    assert!(large[0].wire_len * 2 < large[0].plain_len, "and gzip pays");
    sink.assert_no_violations();
}
