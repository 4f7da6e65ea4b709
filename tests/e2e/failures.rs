//! edgeguard's own failures: a panic, an internal error, a trap of the wasm instance, bad
//! settings. Each still gives the visitor an answer (our page and the team an event, where the
//! instance survives), and none takes the isolate down with it.

use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::support::origin::ok_body;
use crate::support::{is_event_id, Origin, Request, Sink, SinkMode, Worker};

const EVENT_WAIT: Duration = Duration::from_secs(15);
const QUIET: Duration = Duration::from_millis(1500);

fn exception_values(event: &Value) -> Vec<Value> {
    event["exception"]["values"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Asserts the 500 page with an event id and returns the id.
fn page_500_with_id(resp: &crate::support::Response) -> String {
    assert_eq!(resp.status, 500, "{resp:?}");
    assert_eq!(
        resp.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{resp:?}"
    );
    let id = resp.header("x-sentry-id").unwrap_or_default().to_owned();
    assert!(is_event_id(&id), "X-Sentry-ID: {resp:?}");
    assert!(
        resp.text().contains(&id),
        "the page quotes the event id: {resp:?}"
    );
    id
}

#[test]
fn a_panic_gets_our_page_and_an_event_whose_frame_points_into_our_source() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &sink.dsn()),
        ("DEBUG_PANIC_PATH", "/__panic"),
    ]);

    let resp = worker.get("/__panic");
    let id = page_500_with_id(&resp);
    assert!(
        !resp.text().contains("1101"),
        "not Cloudflare's error page: {resp:?}"
    );

    let events = sink.wait_for_events(1, EVENT_WAIT);
    sink.assert_no_violations();
    let event = &events[0];
    assert_eq!(event["event_id"], id.as_str());
    let values = exception_values(event);
    assert_eq!(values.len(), 1, "{event:#}");
    let panic = &values[0];
    assert_eq!(panic["type"], "panic", "{event:#}");
    assert!(
        panic["value"]
            .as_str()
            .unwrap_or_default()
            .contains("DEBUG_PANIC_PATH"),
        "the panic message: {event:#}"
    );
    assert_eq!(panic["mechanism"]["type"], "panic", "{event:#}");
    assert_eq!(panic["mechanism"]["handled"], false, "{event:#}");
    let frame = &panic["stacktrace"]["frames"][0];
    assert_eq!(frame["filename"], "src/edge/mod.rs", "{event:#}");
    assert!(frame["lineno"].as_u64().unwrap_or(0) > 0, "{event:#}");
    assert_eq!(frame["in_app"], true, "{event:#}");
    assert_eq!(event["tags"]["status"], "500");

    // The origin never saw the panicking request; the next request is served normally.
    assert!(origin.requests().is_empty(), "{:?}", origin.requests());
    let next = worker.get("/ok");
    assert_eq!(next.status, 200, "{next:?}");
    assert_eq!(next.body, ok_body());
    sink.assert_requests_stay(1, QUIET);
}

#[test]
fn requests_in_flight_during_a_panic_complete_normally() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &sink.dsn()),
        ("DEBUG_PANIC_PATH", "/__panic"),
    ]);
    let port = worker.port();
    // Warm the isolate so all requests below share one instance.
    assert_eq!(worker.get("/ok").status, 200);

    let slow: Vec<_> = (0..10)
        .map(|_| {
            thread::spawn(move || {
                Request::get("/delay/2000")
                    .timeout(Duration::from_secs(20))
                    .send(port)
            })
        })
        .collect();
    // All ten are inside the worker, awaiting the origin's headers, before the panic.
    let seen = origin.wait_for_requests(11, Duration::from_secs(10));
    assert_eq!(
        seen.len(),
        11,
        "the slow requests reached the origin: {seen:?}"
    );

    let panicked = worker.get("/__panic");
    page_500_with_id(&panicked);

    for handle in slow {
        let resp = handle.join().expect("request thread");
        assert_eq!(
            resp.status,
            200,
            "in-flight request failed: {resp:?}\n{}",
            worker.logs()
        );
        assert_eq!(resp.body, ok_body(), "in-flight body");
    }
    let after = worker.get("/ok");
    assert_eq!(after.status, 200, "{after:?}");
    assert_eq!(sink.wait_for_events(1, EVENT_WAIT).len(), 1);
    sink.assert_requests_stay(1, QUIET);
    sink.assert_no_violations();
}

/// A trap (here `unreachable`; in life a stack overflow or out of memory) is what no
/// `catch_unwind` stops: the wasm instance is dead, and every request on it with it. Each of
/// those requests still gets an answer (a plain 500, not the runtime's hang), and the next
/// request is served by a fresh instance, panic handling and all, as often as it happens.
#[test]
fn a_trap_costs_the_requests_on_that_instance_not_the_isolate() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &sink.dsn()),
        ("DEBUG_TRAP_PATH", "/__trap"),
        ("DEBUG_PANIC_PATH", "/__panic"),
    ]);
    let port = worker.port();
    assert_eq!(worker.get("/ok").status, 200);

    // One request in flight on the instance, awaiting the origin's headers, when it traps.
    let slow = thread::spawn(move || {
        Request::get("/delay/3000")
            .timeout(Duration::from_secs(20))
            .send(port)
    });
    let seen = origin.wait_for_requests(2, Duration::from_secs(10));
    assert_eq!(
        seen.len(),
        2,
        "the slow request reached the origin: {seen:?}"
    );

    for round in 0..2 {
        let trapped = worker.get("/__trap");
        assert_eq!(trapped.status, 500, "round {round}: {trapped:?}");
        assert!(trapped.body.is_empty(), "a plain 500: {trapped:?}");
        assert_eq!(trapped.header("x-sentry-id"), None, "{trapped:?}");

        // The fresh instance serves, and still catches panics with the page and an event.
        let next = worker.get("/ok");
        assert_eq!(
            next.status,
            200,
            "round {round}: {next:?}\n{}",
            worker.logs()
        );
        assert_eq!(next.body, ok_body());
        page_500_with_id(&worker.get("/__panic"));
        // The panic's event goes out after its page, in `waitUntil` on this instance: a trap
        // now would end it unsent (what a trap costs), so the next round waits for it.
        assert_eq!(
            sink.wait_for_events(round + 1, EVENT_WAIT).len(),
            round + 1,
            "the panic of round {round} reported"
        );
    }
    let in_flight = slow.join().expect("request thread");
    assert_eq!(in_flight.status, 500, "answered, not hung: {in_flight:?}");
    let logs = worker.logs();
    assert_eq!(
        logs.matches("edgeguard: the wasm instance failed").count(),
        3,
        "the two traps and the request in flight: {logs}"
    );
    assert_eq!(
        sink.wait_for_events(2, EVENT_WAIT).len(),
        2,
        "the two panics"
    );
    sink.assert_requests_stay(2, QUIET);
    sink.assert_no_violations();
}

#[test]
fn an_internal_error_gets_our_page_and_an_event_with_its_chain() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &sink.dsn()),
        ("DEBUG_ERROR_PATH", "/__error"),
    ]);

    let resp = worker.get("/__error");
    let id = page_500_with_id(&resp);
    let events = sink.wait_for_events(1, EVENT_WAIT);
    sink.assert_no_violations();
    let event = &events[0];
    assert_eq!(event["event_id"], id.as_str());
    let values = exception_values(event);
    let chain: Vec<(&str, &str)> = values
        .iter()
        .map(|v| {
            (
                v["type"].as_str().unwrap_or_default(),
                v["value"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    // Innermost cause first, as Sentry expects; the mechanism sits on the outermost.
    assert_eq!(
        chain,
        [
            ("JsError", "TypeError: simulated runtime failure"),
            (
                "EdgeError",
                "DEBUG_ERROR_PATH requested: could not prepare the origin request"
            ),
        ],
        "{event:#}"
    );
    assert_eq!(values[1]["mechanism"]["type"], "internal", "{event:#}");
    assert!(values[0].get("mechanism").is_none(), "{event:#}");
    assert!(origin.requests().is_empty());
    assert_eq!(worker.get("/ok").status, 200);
}

#[test]
fn pass_through_on_exception_answers_from_the_origin_and_still_reports() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &sink.dsn()),
        ("PASS_THROUGH_ON_EXCEPTION", "true"),
        ("DEBUG_PANIC_PATH", "/ok"),
        ("DEBUG_ERROR_PATH", "/echo"),
    ]);

    let resp = worker.get("/ok");
    assert_eq!(
        resp.status, 200,
        "fail-open gives the origin's answer: {resp:?}"
    );
    assert_eq!(resp.body, ok_body());
    let resp = Request::get("/echo").send(worker.port());
    assert_eq!(resp.status, 200, "{resp:?}");

    let events = sink.wait_for_events(2, EVENT_WAIT);
    let mut mechanisms: Vec<String> = events
        .iter()
        .filter_map(|e| {
            exception_values(e)
                .last()
                .map(|v| v["mechanism"]["type"].to_string())
        })
        .collect();
    mechanisms.sort();
    assert_eq!(mechanisms, ["\"internal\"", "\"panic\""], "{events:#?}");
    // Each request reached the origin exactly once.
    assert_eq!(origin.requests().len(), 2, "{:?}", origin.requests());
    sink.assert_no_violations();
}

#[test]
fn a_bad_origin_url_explains_itself_and_is_reported_once() {
    let sink = Sink::start(SinkMode::Accept);
    let secret_origin = "origin-internal.corp:8443";
    let worker = Worker::start(&[("ORIGIN_URL", secret_origin), ("SENTRY_DSN", &sink.dsn())]);

    for path in ["/a", "/b", "/c"] {
        let resp = worker.get(path);
        assert_eq!(resp.status, 500, "{resp:?}");
        let body = resp.text();
        assert!(body.contains("misconfigured"), "the page says so: {body}");
        assert!(
            !body.contains(secret_origin),
            "the value never shows: {body}"
        );
    }
    let events = sink.wait_for_events(1, EVENT_WAIT);
    sink.assert_requests_stay(1, QUIET);
    let values = exception_values(&events[0]);
    assert_eq!(values[0]["type"], "ConfigError", "{:#}", events[0]);
    let value = values[0]["value"].as_str().unwrap_or_default();
    assert!(value.contains("ORIGIN_URL"), "{value}");
    assert!(!value.contains("origin-internal"), "{value}");
    let logs = worker.logs();
    assert_eq!(
        logs.matches("edgeguard: config: ORIGIN_URL").count(),
        1,
        "{logs}"
    );
    assert!(!logs.contains("origin-internal"), "{logs}");
}

#[test]
fn each_bad_setting_is_logged_once_and_reported_once_while_proxying_goes_on() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let long_env = "e".repeat(80);
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &sink.dsn()),
        ("ORIGIN_TIMEOUT_MS", "soon"),
        ("SENTRY_ENVIRONMENT", &long_env),
        ("PASS_THROUGH_ON_EXCEPTION", "maybe"),
        ("DEBUG_PANIC_PATH", "no-slash"),
    ]);

    for _ in 0..3 {
        let resp = worker.get("/ok");
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    let events = sink.wait_for_events(4, EVENT_WAIT);
    sink.assert_requests_stay(4, QUIET);
    sink.assert_no_violations();
    let logs = worker.logs();
    for name in [
        "ORIGIN_TIMEOUT_MS",
        "SENTRY_ENVIRONMENT",
        "PASS_THROUGH_ON_EXCEPTION",
        "DEBUG_PANIC_PATH",
    ] {
        let line = format!("edgeguard: config: {name}:");
        assert_eq!(
            logs.matches(&line).count(),
            1,
            "{name} logged once:\n{logs}"
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| exception_values(e)[0]["value"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(&format!("{name}:")))
                .count(),
            1,
            "{name} reported once: {events:#?}"
        );
    }
    for event in &events {
        assert_eq!(
            exception_values(event)[0]["type"],
            "ConfigError",
            "{event:#}"
        );
        assert!(
            event.get("request").is_none(),
            "not about a request: {event:#}"
        );
        // The truncated environment is what events carry.
        assert_eq!(
            event["environment"].as_str().map(str::len),
            Some(64),
            "{event:#}"
        );
    }
}

#[test]
fn failures_of_the_reporter_are_logged_and_counted_not_reported() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Fail500);
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url()), ("SENTRY_DSN", &sink.dsn())]);

    for _ in 0..2 {
        assert_eq!(worker.get("/status/502").status, 502);
    }
    assert!(
        worker.wait_for_log("reporter failure #2 in this isolate", EVENT_WAIT),
        "{}",
        worker.logs()
    );
    // Two failures, two sends: the refusal did not become a further event.
    sink.assert_requests_stay(2, QUIET);
}
