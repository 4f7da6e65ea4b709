//! Failures: the visitor gets our page (never the origin's error body), and
//! exactly one well-formed event reaches Sentry after the response.

use std::time::Duration;

use serde_json::Value;

use crate::support::origin::SECRET_ORIGIN_DETAIL;
use crate::support::sink::dsn_for_port;
use crate::support::{
    closed_port, contains_bytes, is_event_id, Origin, Request, Response, Sink, SinkMode, Worker,
};

const EVENT_WAIT: Duration = Duration::from_secs(15);
/// After the expected event, how long nothing else may arrive.
const QUIET: Duration = Duration::from_millis(1000);

/// Checks the HTML failure page; returns its X-Sentry-ID (if any).
fn assert_html_page(resp: &Response, status: u16) -> Option<String> {
    assert_eq!(resp.status, status, "{resp:?}");
    assert_eq!(
        resp.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{resp:?}"
    );
    assert_eq!(resp.header("cache-control"), Some("no-store"), "{resp:?}");
    let body = resp.text();
    assert!(
        !body.contains(SECRET_ORIGIN_DETAIL),
        "origin detail leaked to the visitor: {resp:?}"
    );
    assert!(
        !body.contains("Traceback"),
        "origin trace leaked to the visitor: {resp:?}"
    );
    assert!(
        body.to_ascii_lowercase().contains("<html")
            || body.to_ascii_lowercase().contains("<!doctype"),
        "not an HTML page: {resp:?}"
    );
    let id = resp.header("x-sentry-id").map(str::to_string);
    if let Some(id) = &id {
        assert!(
            is_event_id(id),
            "X-Sentry-ID must be 32 lowercase hex: {id:?}"
        );
        assert!(
            body.contains(id.as_str()),
            "the page must show the event id {id}: {body}"
        );
    }
    id
}

/// What an event must say about a failure.
struct Expect<'a> {
    id: &'a str,
    exception_type: &'a str,
    mechanism: &'a str,
    status: Option<u16>,
    path: &'a str,
    environment: &'a str,
    release: Option<&'a str>,
}

fn assert_event(event: &Value, e: &Expect) {
    let ctx = || serde_json::to_string_pretty(event).unwrap();
    assert_eq!(
        event["event_id"],
        e.id,
        "event_id must equal X-Sentry-ID: {}",
        ctx()
    );
    assert_eq!(event["level"], "error", "{}", ctx());
    assert_eq!(event["platform"], "other", "{}", ctx());
    assert!(
        event["timestamp"].is_number() || event["timestamp"].is_string(),
        "timestamp: {}",
        ctx()
    );
    assert_eq!(event["environment"], e.environment, "{}", ctx());
    if let Some(release) = e.release {
        assert_eq!(event["release"], release, "{}", ctx());
    }
    assert_eq!(event["sdk"]["name"], "edgeguard", "{}", ctx());
    let exc = &event["exception"]["values"][0];
    assert_eq!(exc["type"], e.exception_type, "{}", ctx());
    assert_eq!(exc["mechanism"]["type"], e.mechanism, "{}", ctx());
    assert_eq!(event["request"]["method"], "GET", "{}", ctx());
    let url = event["request"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("request.url: {}", ctx()));
    assert!(
        !url.contains('?'),
        "request.url must not carry the query: {url}"
    );
    assert!(
        url.ends_with(e.path),
        "request.url {url:?} should end with {:?}",
        e.path
    );
    if let Some(status) = e.status {
        assert_eq!(event["tags"]["status"], status.to_string(), "{}", ctx());
        assert_eq!(
            event["contexts"]["response"]["status_code"],
            status,
            "{}",
            ctx()
        );
    }
}

fn origin_status_is_reported(status: u16) {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &sink.dsn()),
        ("SENTRY_ENVIRONMENT", "e2e-staging"),
        ("SENTRY_RELEASE", "edgeguard-e2e@1.2.3"),
    ]);

    let resp = worker.get(&format!("/status/{status}?page=2"));

    let id = assert_html_page(&resp, status).unwrap_or_else(|| panic!("no X-Sentry-ID: {resp:?}"));
    let events = sink.wait_for_events(1, EVENT_WAIT);
    sink.assert_requests_stay(1, QUIET);
    sink.assert_no_violations();
    assert_event(
        &events[0],
        &Expect {
            id: &id,
            exception_type: "OriginStatus",
            mechanism: "origin_status",
            status: Some(status),
            path: &format!("/status/{status}"),
            environment: "e2e-staging",
            release: Some("edgeguard-e2e@1.2.3"),
        },
    );
    assert_eq!(sink.envelopes()[0].header["event_id"], id.as_str());
    // Without SENTRY_DEBUG an accepted delivery is not logged (one line per event would cost
    // CPU on every failure and flood the log in an outage).
    assert!(
        !worker.logs().contains("Sentry answered"),
        "{}",
        worker.logs()
    );
}

#[test]
fn origin_500_gets_the_error_page_and_one_event() {
    origin_status_is_reported(500);
}

#[test]
fn origin_503_gets_the_error_page_and_one_event() {
    origin_status_is_reported(503);
}

#[test]
fn environment_defaults_to_production() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url()), ("SENTRY_DSN", &sink.dsn())]);

    let resp = worker.get("/status/500");

    let id = assert_html_page(&resp, 500).expect("X-Sentry-ID");
    let events = sink.wait_for_events(1, EVENT_WAIT);
    sink.assert_no_violations();
    assert_eq!(events[0]["event_id"], id.as_str());
    assert_eq!(events[0]["environment"], "production", "{}", events[0]);
}

#[test]
fn json_clients_get_a_json_error_body() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url()), ("SENTRY_DSN", &sink.dsn())]);

    let resp = Request::get("/status/500")
        .header("Accept", "application/json")
        .send(worker.port());

    assert_eq!(resp.status, 500, "{resp:?}");
    let ct = resp.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "content-type {ct:?}: {resp:?}"
    );
    assert!(!resp.text().contains(SECRET_ORIGIN_DETAIL), "{resp:?}");
    let body = resp.json();
    let id = resp.header("x-sentry-id").expect("X-Sentry-ID").to_string();
    assert_eq!(body["status"], 500, "{body}");
    assert!(
        body["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    assert_eq!(body["event_id"], id.as_str(), "{body}");
    let events = sink.wait_for_events(1, EVENT_WAIT);
    assert_eq!(events[0]["event_id"], id.as_str());
    sink.assert_no_violations();
}

#[test]
fn client_secrets_never_reach_sentry() {
    // Distinctive values: a short one like "abc" could occur by chance in a
    // random hex event id.
    const AUTH: &str = "e2eAuthzSecretValue7731";
    const COOKIE: &str = "e2eCookieSecretValue4412";
    const TOKEN: &str = "e2eQueryTokenSecret9901";
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url()), ("SENTRY_DSN", &sink.dsn())]);

    let resp = Request::get(&format!("/status/500?token={TOKEN}&page=1"))
        .header("Authorization", &format!("Bearer {AUTH}"))
        .header("Cookie", &format!("session={COOKIE}; theme=dark"))
        .send(worker.port());

    assert_html_page(&resp, 500).expect("X-Sentry-ID");
    // The origin did get them: the proxy forwards what the client sends.
    let to_origin = &origin.requests()[0];
    assert!(
        to_origin.target.contains(TOKEN)
            && to_origin.raw_head.contains(AUTH)
            && to_origin.raw_head.contains(COOKIE),
        "{to_origin:?}"
    );
    sink.wait_for_events(1, EVENT_WAIT);
    sink.assert_requests_stay(1, QUIET);
    sink.assert_no_violations();
    for raw in sink.raw_requests() {
        for secret in [AUTH, COOKIE, TOKEN] {
            assert!(
                !contains_bytes(&raw, secret.as_bytes()),
                "secret {secret:?} reached Sentry:\n{}",
                String::from_utf8_lossy(&raw)
            );
        }
    }
}

#[test]
fn unreachable_origin_gets_502_and_an_origin_unreachable_event() {
    let sink = Sink::start(SinkMode::Accept);
    let origin_url = format!("http://127.0.0.1:{}", closed_port());
    let worker = Worker::start(&[("ORIGIN_URL", &origin_url), ("SENTRY_DSN", &sink.dsn())]);

    let resp = Request::get("/some/page?x=1")
        .timeout(Duration::from_secs(20))
        .send(worker.port());

    let id = assert_html_page(&resp, 502).expect("X-Sentry-ID");
    let events = sink.wait_for_events(1, EVENT_WAIT);
    sink.assert_requests_stay(1, QUIET);
    sink.assert_no_violations();
    assert_event(
        &events[0],
        &Expect {
            id: &id,
            exception_type: "OriginUnreachable",
            mechanism: "origin_unreachable",
            status: None,
            path: "/some/page",
            environment: "production",
            release: None,
        },
    );
}

#[test]
fn hanging_origin_times_out_with_504_and_an_origin_timeout_event() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &sink.dsn()),
        ("ORIGIN_TIMEOUT_MS", "1000"),
    ]);

    let resp = Request::get("/hang")
        .timeout(Duration::from_secs(20))
        .send(worker.port());

    assert!(
        resp.elapsed >= Duration::from_millis(800) && resp.elapsed < Duration::from_secs(6),
        "a 1000 ms origin timeout answered after {:?}",
        resp.elapsed
    );
    let id = assert_html_page(&resp, 504).expect("X-Sentry-ID");
    assert_eq!(origin.requests().len(), 1, "the origin saw the request");
    let events = sink.wait_for_events(1, EVENT_WAIT);
    sink.assert_requests_stay(1, QUIET);
    sink.assert_no_violations();
    assert_event(
        &events[0],
        &Expect {
            id: &id,
            exception_type: "OriginTimeout",
            mechanism: "origin_timeout",
            status: None,
            path: "/hang",
            environment: "production",
            release: None,
        },
    );
}

#[test]
fn without_a_dsn_failures_get_the_page_and_nothing_is_sent() {
    let origin = Origin::start();
    // A sink that is not configured anywhere: it must stay silent.
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);

    let resp = worker.get("/status/500");

    assert_eq!(
        assert_html_page(&resp, 500),
        None,
        "no DSN, no X-Sentry-ID: {resp:?}"
    );
    let resp = worker.get("/ok");
    assert_eq!(resp.status, 200);
    sink.assert_requests_stay(0, Duration::from_secs(2));
    assert_eq!(
        origin.requests().len(),
        2,
        "only the two proxied requests left the worker"
    );
}

/// The Sentry send happens after the response, so a broken Sentry never
/// changes or delays what the visitor gets.
fn broken_sentry_does_not_affect_the_visitor(dsn: &str) -> Worker {
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url()), ("SENTRY_DSN", dsn)]);
    // Warm the isolate so the timing below measures the failure path only.
    assert_eq!(worker.get("/ok").status, 200);

    for _ in 0..2 {
        let resp = Request::get("/status/500")
            .timeout(Duration::from_secs(10))
            .send(worker.port());
        let id = assert_html_page(&resp, 500);
        assert!(
            id.is_some(),
            "the DSN is valid, so an event id is assigned: {resp:?}"
        );
        assert!(
            resp.elapsed < Duration::from_secs(2),
            "the response waited for Sentry: {:?}",
            resp.elapsed
        );
    }
    assert_eq!(worker.get("/ok").status, 200, "still serving afterwards");
    worker
}

#[test]
fn sentry_down_does_not_change_or_delay_the_response() {
    broken_sentry_does_not_affect_the_visitor(&dsn_for_port(closed_port()));
}

#[test]
fn sentry_answering_500_does_not_change_or_delay_the_response() {
    let sink = Sink::start(SinkMode::Fail500);
    let _worker = broken_sentry_does_not_affect_the_visitor(&sink.dsn());
    sink.wait_for_events(2, EVENT_WAIT);
    sink.assert_no_violations();
}

#[test]
fn sentry_hanging_does_not_change_or_delay_the_response() {
    let sink = Sink::start(SinkMode::Hang);
    let _worker = broken_sentry_does_not_affect_the_visitor(&sink.dsn());
    sink.wait_for_events(2, EVENT_WAIT);
    sink.assert_no_violations();
}
