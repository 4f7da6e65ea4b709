//! The happy path: whatever the origin answers below 500 comes back as is,
//! and the request reaches the origin as the client sent it.

use std::time::{Duration, Instant};

use crate::support::origin::{ok_body, pattern_bytes, OK_COOKIES};
use crate::support::{Origin, Request, Sink, SinkMode, Worker};

#[test]
fn ok_response_comes_back_with_status_headers_and_body_unchanged() {
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);

    let resp = worker.get("/ok");

    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body, ok_body(), "body must be byte-exact");
    assert_eq!(resp.header("content-type"), Some("text/plain"), "{resp:?}");
    assert_eq!(resp.header("x-origin-header"), Some("kept"), "{resp:?}");
    assert_eq!(
        resp.headers.get_all("set-cookie"),
        OK_COOKIES.to_vec(),
        "each Set-Cookie must stay a separate header: {resp:?}"
    );
    assert!(!resp.headers.contains("x-sentry-id"), "{resp:?}");
    let reqs = origin.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].target.as_str()),
        ("GET", "/ok")
    );
}

#[test]
fn client_errors_pass_through_unchanged_and_are_not_reported() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url()), ("SENTRY_DSN", &sink.dsn())]);

    for code in [400u16, 404, 429] {
        let resp = worker.get(&format!("/status/{code}"));
        assert_eq!(resp.status, code, "{resp:?}");
        assert!(
            resp.text()
                .starts_with("Traceback (most recent call last): SECRET_ORIGIN_DETAIL"),
            "a 4xx is the origin's own answer and passes through: {resp:?}"
        );
        assert_eq!(resp.header("content-type"), Some("text/plain"), "{resp:?}");
        assert!(!resp.headers.contains("x-sentry-id"), "{resp:?}");
    }
    sink.assert_requests_stay(0, Duration::from_millis(1500));
    sink.assert_no_violations();
}

#[test]
fn redirects_are_returned_to_the_client_not_followed() {
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);

    let resp = worker.get("/redirect");

    assert_eq!(resp.status, 302, "{resp:?}");
    assert_eq!(resp.header("location"), Some("/ok"), "{resp:?}");
    assert_eq!(resp.text(), "redirecting to /ok");
    let paths: Vec<String> = origin.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(
        paths,
        ["/redirect"],
        "the worker must not follow the redirect itself"
    );
}

#[test]
fn method_headers_query_and_body_reach_the_origin_intact() {
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);
    let body = b"{\"hello\":\"origin\",\"n\":1}\n".to_vec();

    let resp = Request::post("/echo?x=1&y=two%20words&z")
        .header("Content-Type", "application/json")
        .header("X-Custom-Header", "custom value 123")
        .header("Authorization", "Bearer client-token")
        .header("Cookie", "a=1; b=2")
        .body(body.clone())
        .send(worker.port());

    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body, body, "echoed body");
    let reqs = origin.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, "/echo?x=1&y=two%20words&z");
    assert_eq!(r.body, body);
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    assert_eq!(
        r.header("x-custom-header"),
        Some("custom value 123"),
        "{r:?}"
    );
    assert_eq!(
        r.header("authorization"),
        Some("Bearer client-token"),
        "{r:?}"
    );
    assert_eq!(r.header("cookie"), Some("a=1; b=2"), "{r:?}");
}

#[test]
fn other_methods_reach_the_origin() {
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);

    for method in ["PUT", "DELETE", "PATCH"] {
        let resp = Request::new(method, "/echo")
            .body(method.as_bytes())
            .send(worker.port());
        assert_eq!(resp.status, 200, "{method}: {resp:?}");
        assert_eq!(resp.body, method.as_bytes(), "{method}");
    }
    let methods: Vec<String> = origin.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["PUT", "DELETE", "PATCH"]);
}

#[test]
fn origin_url_path_prefix_is_prepended_to_the_request_path() {
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &format!("{}/base", origin.url()))]);

    let resp = worker.get("/echo?q=1");

    assert_eq!(
        resp.status, 404,
        "the origin has no /base/echo route: {resp:?}"
    );
    let targets: Vec<String> = origin.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(targets, ["/base/echo?q=1"]);
}

#[test]
fn eight_mib_body_is_streamed_back_byte_exact() {
    const N: usize = 8 * 1024 * 1024;
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);

    let resp = Request::get(&format!("/bytes/{N}"))
        .timeout(Duration::from_secs(60))
        .send(worker.port());

    assert_eq!(resp.status, 200, "{:?}", resp.headers);
    assert_eq!(resp.body.len(), N, "length");
    let expected = pattern_bytes(N);
    if let Some(at) = resp.body.iter().zip(&expected).position(|(a, b)| a != b) {
        panic!("body differs from the origin's first at byte {at}");
    }
}

#[test]
fn one_mib_upload_reaches_the_origin_byte_exact() {
    const N: usize = 1024 * 1024;
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);
    let body = pattern_bytes(N);

    let resp = Request::post("/echo")
        .header("Content-Type", "application/octet-stream")
        .body(body.clone())
        .timeout(Duration::from_secs(60))
        .send(worker.port());

    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(resp.body == body, "echo differs (len {})", resp.body.len());
    let reqs = origin.requests();
    assert!(
        reqs[0].body == body,
        "origin received a different body (len {})",
        reqs[0].body.len()
    );
}

#[test]
fn response_bodies_are_streamed_not_buffered() {
    const HALF: usize = 256 * 1024;
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);

    // The origin holds back the second half until released: the head and the
    // first half can only arrive if the worker passes the body through as it
    // comes.
    let mut resp = Request::get(&format!("/drip/{HALF}"))
        .timeout(Duration::from_secs(10))
        .try_start(worker.port())
        .unwrap_or_else(|e| {
            panic!(
                "no response head while the origin held half the body ({e}): the body is buffered"
            )
        });
    assert_eq!(resp.status, 200, "{:?}", resp.headers);
    let first = resp.read_exact_body(HALF).unwrap_or_else(|e| {
        panic!("the first {HALF} bytes did not arrive while the origin held the rest ({e}): the body is buffered")
    });
    origin.release_drip();
    resp.set_deadline(Instant::now() + Duration::from_secs(30));
    let rest = resp.read_rest().expect("rest of the body");
    let mut body = first;
    body.extend_from_slice(&rest);
    assert_eq!(body.len(), 2 * HALF);
    assert!(
        body == pattern_bytes(2 * HALF),
        "body differs from the origin's"
    );
}
