//! Event content in the real runtime: grouping by route, privacy options, contexts and the
//! origin breadcrumb, Sentry's limits, and the opt-in warnings for responses that pass through.
//! The sink checks every event against Sentry's schema rules (`support::sink::check_event`).

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::origin::{ok_body, FAIL_SET_COOKIE};
use crate::support::{
    contains_bytes, raw_exchange, split_response, Origin, Request, Sink, SinkMode, Worker,
};

const EVENT_WAIT: Duration = Duration::from_secs(15);
const QUIET: Duration = Duration::from_millis(1000);

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

#[test]
fn one_route_one_fingerprint_with_contexts_and_breadcrumb() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let dsn = sink.dsn();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url()), ("SENTRY_DSN", &dsn)]);

    let first = worker.get("/fail/503/orders/123?token=e2eTokenSecret1");
    let second = worker.get("/fail/503/orders/456");
    let other = worker.get("/fail/503/cart");
    for resp in [&first, &second, &other] {
        assert_eq!(resp.status, 503, "{resp:?}");
        assert!(!resp.text().contains(&dsn), "the DSN is on the page");
    }
    let events = sink.wait_for_events(3, EVENT_WAIT);
    sink.assert_requests_stay(3, QUIET);
    sink.assert_no_violations();
    let by_id = |resp: &crate::support::Response| {
        let id = resp.header("x-sentry-id").expect("X-Sentry-ID");
        events
            .iter()
            .find(|e| e["event_id"] == id)
            .unwrap_or_else(|| panic!("no event {id}"))
            .clone()
    };
    let (a, b, c) = (by_id(&first), by_id(&second), by_id(&other));
    assert_eq!(
        a["fingerprint"],
        json!(["503", "GET", "/fail/{id}/orders/{id}"]),
        "{}",
        pretty(&a)
    );
    assert_eq!(a["fingerprint"], b["fingerprint"]);
    assert_eq!(c["fingerprint"], json!(["503", "GET", "/fail/{id}/cart"]));
    assert_eq!(a["transaction"], "GET /fail/{id}/orders/{id}");

    assert_eq!(
        a["contexts"]["runtime"],
        json!({ "type": "runtime", "name": "Cloudflare Workers", "raw_description": "workerd" })
    );
    let origin_ctx = &a["contexts"]["origin"];
    assert_eq!(origin_ctx["status_code"], 503, "{}", pretty(&a));
    assert!(origin_ctx["duration_ms"].is_u64(), "{}", pretty(&a));
    let crumbs = a["breadcrumbs"]["values"].as_array().expect("breadcrumbs");
    assert_eq!(crumbs.len(), 1, "{}", pretty(&a));
    let crumb = &crumbs[0];
    assert_eq!(
        (&crumb["type"], &crumb["category"]),
        (&json!("http"), &json!("http"))
    );
    assert_eq!(crumb["data"]["method"], "GET");
    assert_eq!(crumb["data"]["status_code"], 503);
    assert_eq!(
        crumb["data"]["url"],
        format!("{}/fail/503/orders/123", worker.url()),
        "the visitor's URL without query, never the origin's"
    );
    assert!(crumb["data"]["duration_ms"].is_u64());

    // Neither the DSN, the origin's address nor the query token is in any byte sent to Sentry
    // (the key is in the auth header, as it must be, and nowhere else) or in the log.
    let origin_url = origin.url();
    for envelope in sink.envelopes() {
        let body_start = envelope
            .raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap();
        let body = &envelope.raw[body_start..];
        for secret in [dsn.as_str(), origin_url.as_str(), "e2eTokenSecret1"] {
            assert!(
                !contains_bytes(body, secret.as_bytes()),
                "{secret} in an envelope: {}",
                String::from_utf8_lossy(body)
            );
        }
    }
    assert!(!worker.logs().contains(&dsn), "the DSN is in the log");
}

#[test]
fn opted_in_query_cookies_and_ip_arrive_filtered() {
    const COOKIE: &str = "e2eSessionCookie5521";
    const TOKEN: &str = "e2eQueryToken7710";
    const PASSWORD: &str = "e2eQueryPassword3391";
    const AUTH: &str = "e2eAuthHeader8812";
    const USERINFO: &str = "e2eUserinfoPass4471";
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &sink.dsn()),
        ("SENTRY_SEND_QUERY", "true"),
        ("SENTRY_SEND_DEFAULT_PII", "true"),
        (
            "SENTRY_REQUEST_HEADERS",
            "user-agent, authorization, x-tenant",
        ),
    ]);

    let resp = Request::get(&format!(
        "/fail/500/search?q=red+shoes&token={TOKEN}&password={PASSWORD}"
    ))
    .header("Cookie", &format!("theme=dark; sessionid={COOKIE}"))
    .header("Authorization", &format!("Bearer {AUTH}"))
    .header("CF-Connecting-IP", "203.0.113.9")
    .header("X-Tenant", "acme")
    .header("Accept-Language", "ko")
    .send(worker.port());
    assert_eq!(resp.status, 500, "{resp:?}");

    // Userinfo can only come in an absolute-form request line.
    let raw = raw_exchange(
        worker.port(),
        format!(
            "GET http://e2eUser:{USERINFO}@127.0.0.1:{0}/fail/500/userinfo HTTP/1.1\r\n\
             Host: 127.0.0.1:{0}\r\nConnection: close\r\n\r\n",
            worker.port()
        )
        .as_bytes(),
        Duration::from_secs(15),
    );
    assert_eq!(split_response(&raw).0, 500);

    let events = sink.wait_for_events(2, EVENT_WAIT);
    sink.assert_no_violations();
    for event in &events {
        let url = event["request"]["url"].as_str().unwrap();
        assert!(!url.contains('@') && !url.contains('?'), "{url}");
    }
    let id = resp.header("x-sentry-id").unwrap();
    let event = events.iter().find(|e| e["event_id"] == id).unwrap();
    let request = &event["request"];
    assert_eq!(
        request["query_string"],
        json!([
            ["q", "red shoes"],
            ["token", "[Filtered]"],
            ["password", "[Filtered]"]
        ]),
        "{}",
        pretty(event)
    );
    assert_eq!(
        request["cookies"],
        json!([["theme", "dark"], ["sessionid", "[Filtered]"]])
    );
    assert_eq!(request["env"], json!({ "REMOTE_ADDR": "203.0.113.9" }));
    assert_eq!(event["user"], json!({ "ip_address": "203.0.113.9" }));
    let headers = request["headers"].as_object().unwrap();
    assert_eq!(headers["authorization"], "[Filtered]");
    assert_eq!(headers["x-tenant"], "acme");
    assert!(
        !headers.contains_key("accept-language"),
        "SENTRY_REQUEST_HEADERS replaces the default list: {headers:?}"
    );
    assert!(request.get("data").is_none(), "the body is never sent");
    for raw in sink.raw_requests() {
        let set_cookie = FAIL_SET_COOKIE
            .split(['=', ';'])
            .nth(1)
            .unwrap_or(FAIL_SET_COOKIE);
        for secret in [COOKIE, TOKEN, PASSWORD, AUTH, set_cookie, USERINFO] {
            assert!(!contains_bytes(&raw, secret.as_bytes()), "{secret} sent");
        }
    }
}

#[test]
fn long_request_values_are_truncated_not_rejected() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url()), ("SENTRY_DSN", &sink.dsn())]);
    let long_segment = "segment".repeat(400);

    let resp = Request::get(&format!("/fail/502/{long_segment}"))
        .header("User-Agent", &"ua".repeat(3000))
        .send(worker.port());
    assert_eq!(resp.status, 502, "{resp:?}");

    let events = sink.wait_for_events(1, EVENT_WAIT);
    sink.assert_no_violations();
    let event = &events[0];
    let chars = |v: &Value| v.as_str().unwrap().chars().count();
    assert_eq!(chars(&event["transaction"]), 200);
    assert!(event["transaction"].as_str().unwrap().ends_with('…'));
    assert_eq!(chars(&event["request"]["headers"]["user-agent"]), 1024);
    assert_eq!(chars(&event["fingerprint"][2]), 200);
    assert!(chars(&event["request"]["url"]) <= 2048);
}

#[test]
fn listed_4xx_passes_through_byte_exact_and_a_warning_is_sent() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &sink.dsn()),
        ("SENTRY_REPORT_4XX", "404, 429"),
    ]);

    let resp = worker.get("/missing/42?x=1");
    assert_eq!(resp.status, 404, "{resp:?}");
    assert_eq!(resp.body, b"no such route", "the origin's body, unchanged");
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    assert_eq!(resp.header("x-sentry-id"), None);

    let events = sink.wait_for_events(1, EVENT_WAIT);
    // A 4xx not on the list makes no event.
    let unlisted = worker.get("/status/403");
    assert_eq!(unlisted.status, 403);
    sink.assert_requests_stay(1, QUIET);
    sink.assert_no_violations();
    let event = &events[0];
    assert_eq!(event["level"], "warning", "{}", pretty(event));
    assert_eq!(
        event["exception"]["values"][0]["mechanism"],
        json!({ "type": "origin_client_error", "handled": true })
    );
    assert_eq!(
        event["exception"]["values"][0]["value"],
        "Origin answered 404 Not Found"
    );
    assert_eq!(event["fingerprint"], json!(["404", "GET", "/missing/{id}"]));
    assert_eq!(event["contexts"]["response"]["status_code"], 404);
    assert_eq!(event["breadcrumbs"]["values"][0]["level"], "warning");
}

#[test]
fn slow_origin_passes_through_byte_exact_and_a_warning_is_sent() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &sink.dsn()),
        ("SENTRY_SLOW_ORIGIN_MS", "300"),
    ]);

    let fast = worker.get("/ok");
    assert_eq!(fast.status, 200);
    let slow = worker.get("/delay/700");
    assert_eq!(slow.status, 200, "{slow:?}");
    assert_eq!(slow.body, ok_body(), "the origin's body, unchanged");
    assert_eq!(slow.header("x-sentry-id"), None);

    let events = sink.wait_for_events(1, EVENT_WAIT);
    sink.assert_requests_stay(1, QUIET);
    sink.assert_no_violations();
    let event = &events[0];
    assert_eq!(event["level"], "warning", "{}", pretty(event));
    assert_eq!(
        event["exception"]["values"][0]["mechanism"],
        json!({ "type": "origin_slow", "handled": true })
    );
    assert_eq!(
        event["fingerprint"],
        json!(["origin_slow", "GET", "/delay/{id}"])
    );
    let duration = event["contexts"]["origin"]["duration_ms"].as_u64().unwrap();
    assert!(duration >= 300, "{}", pretty(event));
    assert_eq!(event["contexts"]["origin"]["status_code"], 200);
    assert_eq!(
        event["breadcrumbs"]["values"][0]["data"]["status_code"],
        200
    );
}
