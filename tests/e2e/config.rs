//! Bad configuration degrades, it does not break proxying, and the log says
//! which setting is wrong without echoing its value.

use std::time::Duration;

use crate::support::{Origin, Worker};

const LOG_WAIT: Duration = Duration::from_secs(5);

#[test]
fn invalid_origin_timeout_is_logged_and_proxying_continues() {
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url()), ("ORIGIN_TIMEOUT_MS", "abc")]);

    for _ in 0..2 {
        let resp = worker.get("/ok");
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    assert!(
        worker.wait_for_log("ORIGIN_TIMEOUT_MS", LOG_WAIT),
        "workerd's log should name ORIGIN_TIMEOUT_MS:\n{}",
        worker.logs()
    );
}

fn invalid_dsn_is_logged_without_its_value(bad_dsn: &str, must_not_log: &str) {
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url()), ("SENTRY_DSN", bad_dsn)]);

    let ok = worker.get("/ok");
    assert_eq!(ok.status, 200, "{ok:?}");
    let resp = worker.get("/status/500");
    assert_eq!(resp.status, 500, "{resp:?}");
    assert_eq!(
        resp.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{resp:?}"
    );
    assert!(!resp.text().contains("SECRET_ORIGIN_DETAIL"), "{resp:?}");
    assert!(
        !resp.headers.contains("x-sentry-id"),
        "no usable DSN, no event id: {resp:?}"
    );
    assert!(!resp.text().contains(must_not_log), "{resp:?}");

    assert!(
        worker.wait_for_log("SENTRY_DSN", LOG_WAIT),
        "workerd's log should name SENTRY_DSN:\n{}",
        worker.logs()
    );
    let logs = worker.logs();
    assert!(
        !logs.contains(must_not_log),
        "the log must not echo the DSN ({must_not_log:?}):\n{logs}"
    );
}

#[test]
fn unparseable_dsn_is_logged_without_its_value_and_pages_are_still_served() {
    invalid_dsn_is_logged_without_its_value("not a dsn", "not a dsn");
}

#[test]
fn dsn_without_project_is_logged_without_its_key() {
    invalid_dsn_is_logged_without_its_value(
        "https://e2eDsnKeyLeak55@sentry.invalid",
        "e2eDsnKeyLeak55",
    );
}

#[test]
fn bad_event_content_options_are_logged_by_position_and_proxying_continues() {
    const LEAK: &str = "e2eHeaderValueLeak31";
    let origin = Origin::start();
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_REQUEST_HEADERS", &format!("accept, x-a: {LEAK}")),
        ("SENTRY_REPORT_4XX", "404, 503"),
        ("SENTRY_SLOW_ORIGIN_MS", "soon"),
        ("SENTRY_SEND_QUERY", "perhaps"),
    ]);

    let resp = worker.get("/ok");
    assert_eq!(resp.status, 200, "{resp:?}");
    for line in [
        "SENTRY_REQUEST_HEADERS: entry 2 is not a header name; that entry is skipped",
        "SENTRY_REPORT_4XX: entry 2 is not a status from 400 to 499; that entry is skipped",
        "SENTRY_SLOW_ORIGIN_MS: not a whole number of milliseconds; slow-origin warnings are off",
        "SENTRY_SEND_QUERY: not one of true, false, 1, 0, yes, no, on, off; treated as false",
    ] {
        assert!(
            worker.wait_for_log(line, LOG_WAIT),
            "missing {line:?}:\n{}",
            worker.logs()
        );
    }
    assert!(!worker.logs().contains(LEAK), "{}", worker.logs());
}
