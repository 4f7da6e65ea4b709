//! HTTP correctness on the way through (RFC 9110): hop-by-hop headers stay
//! behind in both directions, the origin learns who asked, methods and
//! bodyless statuses behave, and a request that loops back is stopped.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::support::origin::OK_COOKIES;
use crate::support::{
    raw_exchange, split_response, Origin, Request, Response, Sink, SinkMode, Worker,
};

const HOP_HEADERS: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn hop_by_hop_request_headers_do_not_reach_the_origin() {
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);
    let body = b"payload that must arrive once";

    let resp = Request::post("/echo")
        .header("Connection", "X-Drop-Me, Keep-Alive")
        .header("X-Drop-Me", "named in Connection")
        .header("Proxy-Connection", "X-Drop-Too")
        .header("X-Drop-Too", "named in Proxy-Connection")
        .header("Keep-Alive", "timeout=5")
        .header("TE", "trailers")
        .header("Trailer", "X-Checksum")
        .header("Proxy-Authorization", "Basic cHJveHk6c2VjcmV0")
        .header("X-Kept", "end to end")
        .body(body.to_vec())
        .send(worker.port());

    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body, body);
    let reqs = origin.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let r = &reqs[0];
    for name in ["x-drop-me", "x-drop-too"]
        .into_iter()
        .chain(HOP_HEADERS.into_iter().filter(|h| *h != "connection"))
    {
        assert!(r.header(name).is_none(), "{name} reached the origin: {r:?}");
    }
    // The runtime frames its own connection to the origin; whatever Connection it
    // writes must not carry the visitor's list.
    let connection = r.header("connection").unwrap_or("").to_ascii_lowercase();
    assert!(!connection.contains("x-drop"), "{r:?}");
    assert_eq!(r.header("x-kept"), Some("end to end"), "{r:?}");
    assert_eq!(r.body, body, "the body arrives once, intact");
}

#[test]
fn a_non_websocket_upgrade_is_not_forwarded() {
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);

    let raw = raw_exchange(
        worker.port(),
        format!(
            "GET /ok HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: h2c\r\n\
             HTTP2-Settings: AAMAAABkAAQAAP__\r\nConnection: close, Upgrade, HTTP2-Settings\r\n\r\n",
            worker.port()
        )
        .as_bytes(),
        Duration::from_secs(15),
    );
    let (status, _, _) = split_response(&raw);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&raw));
    let r = &origin.requests()[0];
    assert!(r.header("upgrade").is_none(), "{r:?}");
    assert!(r.header("http2-settings").is_none(), "{r:?}");
}

#[test]
fn the_origin_learns_who_asked() {
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);

    Request::get("/ok")
        .header("CF-Connecting-IP", "203.0.113.7")
        .header("X-Forwarded-For", "198.51.100.1")
        .header("X-Forwarded-Host", "spoofed.example")
        .header("X-Forwarded-Proto", "gopher")
        .send(worker.port());
    Request::get("/ok").send(worker.port());

    let reqs = origin.wait_for_requests(2, Duration::from_secs(5));
    let (first, second) = (&reqs[0], &reqs[1]);
    assert_eq!(
        first.header("x-forwarded-for"),
        Some("198.51.100.1, 203.0.113.7"),
        "the connecting IP is appended: {first:?}"
    );
    let visitor_host = format!("127.0.0.1:{}", worker.port());
    for r in [first, second] {
        assert_eq!(r.header("x-forwarded-proto"), Some("http"), "{r:?}");
        assert_eq!(
            r.header("x-forwarded-host"),
            Some(visitor_host.as_str()),
            "{r:?}"
        );
        assert_eq!(
            r.header("host"),
            Some(format!("127.0.0.1:{}", origin.port()).as_str()),
            "Host is ORIGIN_URL's: {r:?}"
        );
        let via = r.header("edgeguard-via").unwrap_or("");
        assert!(
            via.len() == 8 && via.bytes().all(|b| b.is_ascii_hexdigit()),
            "loop marker: {r:?}"
        );
    }
    assert!(
        second.header("x-forwarded-for").is_none(),
        "no address known, none invented: {second:?}"
    );
}

#[test]
fn hop_by_hop_response_headers_do_not_reach_the_visitor() {
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);

    let resp = worker.get("/hop");

    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.text(), "hop");
    for name in [
        "x-hop-secret",
        "keep-alive",
        "proxy-authenticate",
        "trailer",
        "upgrade",
    ] {
        assert!(!resp.headers.contains(name), "{name} passed: {resp:?}");
    }
    assert_eq!(
        resp.headers.get_all("set-cookie"),
        OK_COOKIES.to_vec(),
        "each Set-Cookie intact and separate: {resp:?}"
    );
    assert_eq!(resp.header("x-origin-header"), Some("kept"), "{resp:?}");
    assert_eq!(resp.header("content-type"), Some("text/plain"), "{resp:?}");
}

#[test]
fn a_failing_head_gets_status_and_headers_only() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url()), ("SENTRY_DSN", &sink.dsn())]);

    let raw = raw_exchange(
        worker.port(),
        format!(
            "HEAD /status/500 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            worker.port()
        )
        .as_bytes(),
        Duration::from_secs(15),
    );

    let (status, headers, body) = split_response(&raw);
    assert_eq!(status, 500, "{}", String::from_utf8_lossy(&raw));
    assert!(body.is_empty(), "HEAD got a body: {body:?}");
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        header(&headers, "x-sentry-id").is_some(),
        "a HEAD failure is still reported: {headers:?}"
    );
    assert_eq!(origin.requests()[0].method, "HEAD");
    sink.wait_for_events(1, Duration::from_secs(15));
}

#[test]
fn no_content_and_not_modified_have_no_body() {
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);

    for code in [204u16, 304] {
        let raw = raw_exchange(
            worker.port(),
            format!(
                "GET /empty/{code} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                worker.port()
            )
            .as_bytes(),
            Duration::from_secs(15),
        );
        let (status, headers, body) = split_response(&raw);
        assert_eq!(status, code, "{}", String::from_utf8_lossy(&raw));
        assert!(body.is_empty(), "{code} has a body: {body:?}");
        assert_eq!(header(&headers, "etag"), Some("\"v1\""), "{headers:?}");
        assert!(
            header(&headers, "x-hop-secret").is_none(),
            "named in Connection: {headers:?}"
        );
        assert!(
            header(&headers, "transfer-encoding").is_none(),
            "{code} must not be chunked: {headers:?}"
        );
    }
}

#[test]
fn head_and_options_pass_through() {
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);

    let head = Request::new("HEAD", "/ok").send(worker.port());
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.header("content-length"), Some("1024"), "{head:?}");
    let options = Request::new("OPTIONS", "/echo").send(worker.port());
    assert_eq!(options.status, 200, "{options:?}");

    let methods: Vec<String> = origin.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["HEAD", "OPTIONS"]);
}

#[test]
fn a_request_body_is_sent_once_even_when_the_origin_fails() {
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);
    let body = b"order #1: charge the card once".to_vec();

    let resp = Request::post("/status/502")
        .body(body.clone())
        .send(worker.port());

    assert_eq!(resp.status, 502, "{resp:?}");
    thread::sleep(Duration::from_millis(500));
    let reqs = origin.requests();
    assert_eq!(reqs.len(), 1, "never retried: {reqs:?}");
    assert_eq!(reqs[0].body, body);
}

/// A TCP relay whose target port is set after it starts: lets `ORIGIN_URL`
/// point at a worker whose port is only known once it runs.
struct Relay {
    port: u16,
    target: Arc<AtomicU16>,
    accepted: Arc<AtomicUsize>,
    running: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Relay {
    fn start() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let target = Arc::new(AtomicU16::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicBool::new(true));
        let accept = {
            let (target, accepted, running) = (target.clone(), accepted.clone(), running.clone());
            thread::spawn(move || {
                while running.load(Ordering::SeqCst) {
                    let Ok((inbound, _)) = listener.accept() else {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    inbound.set_nonblocking(false).unwrap();
                    let port = target.load(Ordering::SeqCst);
                    let Ok(outbound) = TcpStream::connect(("127.0.0.1", port)) else {
                        continue;
                    };
                    for (from, to) in [
                        (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                        (outbound, inbound),
                    ] {
                        thread::spawn(move || pipe(from, to));
                    }
                }
            })
        };
        Relay {
            port,
            target,
            accepted,
            running,
            accept: Some(accept),
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    from.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_request_that_comes_back_is_answered_508_and_reported_once() {
    let relay = Relay::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[
        ("ORIGIN_URL", &format!("http://127.0.0.1:{}", relay.port)),
        ("SENTRY_DSN", &sink.dsn()),
    ]);
    relay.target.store(worker.port(), Ordering::SeqCst);

    let resp: Response = Request::get("/loop").send(worker.port());

    assert_eq!(resp.status, 508, "{resp:?}");
    assert!(resp.text().contains("508"), "the page: {resp:?}");
    let id = resp.header("x-sentry-id").expect("the outer hop reports");
    let events = sink.wait_for_events(1, Duration::from_secs(15));
    sink.assert_requests_stay(1, Duration::from_millis(1000));
    assert_eq!(events[0]["event_id"], id);
    assert_eq!(
        events[0]["contexts"]["response"]["status_code"], 508,
        "{}",
        events[0]
    );
    assert_eq!(
        relay.accepted.load(Ordering::SeqCst),
        1,
        "the second pass must not fetch again"
    );
}

#[test]
fn another_edgeguards_marker_is_kept_and_extended() {
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);

    let resp = Request::get("/ok")
        .header("Edgeguard-Via", "aaaa1111")
        .send(worker.port());

    assert_eq!(resp.status, 200, "{resp:?}");
    let r = &origin.requests()[0];
    let via = r.header("edgeguard-via").unwrap_or("");
    assert!(via.starts_with("aaaa1111, ") && via.len() == 18, "{r:?}");
}

/// This deployment's loop token, as src/forward.rs derives it: FNV-1a 32 of
/// `url:` + the normalised `ORIGIN_URL`.
fn loop_token(origin_url: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in format!("url:{origin_url}").bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

#[test]
fn a_request_carrying_our_own_marker_gets_508_without_a_fetch_or_an_event() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url()), ("SENTRY_DSN", &sink.dsn())]);

    let resp = Request::get("/ok")
        .header(
            "Edgeguard-Via",
            &format!("aaaa1111, {}", loop_token(&origin.url())),
        )
        .send(worker.port());

    assert_eq!(resp.status, 508, "{resp:?}");
    assert_eq!(
        resp.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{resp:?}"
    );
    assert!(resp.text().contains("508"), "{resp:?}");
    assert!(
        !resp.headers.contains("x-sentry-id"),
        "not reported: {resp:?}"
    );
    sink.assert_requests_stay(0, Duration::from_millis(1000));
    assert_eq!(origin.connections(), 0, "never fetched");
}
