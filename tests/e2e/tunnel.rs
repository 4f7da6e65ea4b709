//! The browser SDK's tunnel (`SENTRY_TUNNEL_PATH`): a real `@sentry/browser` (pinned in
//! tools/package.json, bundled with the esbuild in tools/ at test time) in headless Chromium
//! reports through the edge to the strict sink and nowhere else; hand-built envelopes for
//! another project, host or port, without a header, garbage, over the cap or sent with GET are
//! refused with the right status and reach neither the sink nor the origin; Sentry's 429 and
//! rate-limit headers reach the browser; a Sentry that hangs or is down gets the browser a 5xx
//! within the tunnel's bound while proxied requests carry on.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::browser::Browser;
use crate::support::sink::{Envelope, PROJECT_ID, PUBLIC_KEY};
use crate::support::workerd::repo_root;
use crate::support::{closed_port, Origin, Request, Sink, SinkMode, Worker};

const TUNNEL: &str = "/.edgeguard/tunnel";
const EVENT_ID: &str = "0123456789abcdef0123456789abcdef";
/// The tunnel's bound on Sentry's answer (`sentry::tunnel::TIMEOUT_MS`).
const TUNNEL_TIMEOUT: Duration = Duration::from_secs(15);

/// `@sentry/browser` from tools/node_modules as one script setting `window.Sentry`, built by
/// the esbuild in tools/ (the entry comes on stdin, resolved from tools/).
fn sentry_bundle() -> Vec<u8> {
    let root = repo_root();
    let out = root.join("target/e2e/sentry-browser.js");
    let esbuild = root.join("tools/node_modules/@esbuild/linux-x64/bin/esbuild");
    let mut child = Command::new(&esbuild)
        .current_dir(root.join("tools"))
        .args([
            "--bundle",
            "--format=iife",
            "--minify",
            "--log-level=warning",
        ])
        .arg(format!("--outfile={}", out.display()))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", esbuild.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"import * as Sentry from '@sentry/browser'; window.Sentry = Sentry;")
        .unwrap();
    assert!(child.wait().unwrap().success(), "esbuild failed");
    std::fs::read(&out).unwrap()
}

/// A page that loads the bundle, initialises the SDK with `tunnel` (a JS expression) and
/// throws `message` from a timer: an uncaught error, as an app's bug would raise it.
fn app_page(dsn: &str, tunnel: &str, message: &str) -> Vec<u8> {
    format!(
        "<!doctype html><html><head><title>app</title><script src=\"/sentry.js\"></script>\
         <script>Sentry.init({{ dsn: \"{dsn}\", tunnel: {tunnel} }});\
         setTimeout(() => {{ throw new Error(\"{message}\"); }}, 50);</script></head>\
         <body>app</body></html>"
    )
    .into_bytes()
}

/// A browser envelope as the JavaScript SDK frames it (no `length` in the item header),
/// naming `dsn` in its header.
fn envelope(dsn: &str) -> Vec<u8> {
    format!(
        "{{\"event_id\":\"{EVENT_ID}\",\"sent_at\":\"2026-12-08T00:00:00.000Z\",\"dsn\":\"{dsn}\",\
         \"sdk\":{{\"name\":\"sentry.javascript.browser\",\"version\":\"11.19.0\"}}}}\n\
         {{\"type\":\"event\"}}\n\
         {{\"event_id\":\"{EVENT_ID}\",\"platform\":\"javascript\",\"message\":\"hand-built\"}}"
    )
    .into_bytes()
}

fn post(
    worker: &Worker,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> crate::support::Response {
    Request::post(path)
        .header("Content-Type", content_type)
        .body(body)
        .timeout(Duration::from_secs(40))
        .send(worker.port())
}

/// Sends a POST head declaring `length` body bytes and the first bytes of an envelope only, and
/// returns the status the worker answers with meanwhile.
fn status_before_the_body(port: u16, length: usize) -> u16 {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "POST {TUNNEL} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n\
         Content-Length: {length}\r\n\r\n{{\"dsn\":"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).expect("an answer before the body");
        assert!(
            n > 0,
            "closed without an answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{text}"))
}

/// The exception value of the event in `envelope`, if it carries one.
fn exception_value(envelope: &Envelope) -> Option<String> {
    let event = envelope.event()?;
    event["exception"]["values"][0]["value"]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn a_browser_sdk_reports_through_the_edge_and_nowhere_else() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let dsn = sink.dsn();
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &dsn),
        ("SENTRY_TUNNEL_PATH", TUNNEL),
    ]);
    origin.serve("/sentry.js", "text/javascript", sentry_bundle());
    let tunnel = format!("\"{TUNNEL}\"");
    origin.serve(
        "/app",
        "text/html",
        app_page(&dsn, &tunnel, "e2e tunnel: path"),
    );
    // `tunnel: true`: the SDK derives the path from the DSN, and the edge answers it too.
    origin.serve(
        "/derived",
        "text/html",
        app_page(&dsn, "true", "e2e tunnel: derived"),
    );

    let browser = Browser::start();
    let mut page = browser.new_page();
    for domain in ["Page.enable", "Runtime.enable", "Network.enable"] {
        page.call(domain, json!({}));
    }
    for (path, message) in [
        ("/app", "e2e tunnel: path"),
        ("/derived", "e2e tunnel: derived"),
    ] {
        page.call(
            "Page.navigate",
            json!({ "url": format!("{}{path}", worker.url()) }),
        );
        let got = sink.wait_for_envelopes(1, Duration::from_secs(20), |e| {
            exception_value(e).as_deref() == Some(message)
        });
        let envelope = &got[0];
        // The browser's own envelope, byte for byte as its SDK framed it: its key is in the
        // header's `dsn`, no X-Sentry-Auth was added on the way.
        assert_eq!(envelope.client, "sentry.javascript.browser/11.19.0");
        assert_eq!(envelope.header["dsn"], dsn.as_str());
        let raw = String::from_utf8_lossy(&envelope.raw).to_ascii_lowercase();
        assert!(!raw.contains("x-sentry-auth"), "{raw}");
        assert!(
            raw.starts_with(&format!("post /api/{PROJECT_ID}/envelope/ ")),
            "{raw}"
        );
    }
    // Every request the page made went to the site itself.
    page.eval("new Promise(r => setTimeout(r, 300))");
    let mut urls = Vec::new();
    for e in page.take_events() {
        if e["method"] == "Network.requestWillBeSent" {
            urls.push(
                e["params"]["request"]["url"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }
    let site = format!("{}/", worker.url());
    assert!(urls.iter().any(|u| u.ends_with(TUNNEL)), "{urls:?}");
    assert!(
        urls.iter().all(|u| u.starts_with(&site)),
        "left the site: {urls:?}"
    );
    // The tunnel paths never reach the origin: it served the pages and the script only.
    let seen: Vec<String> = origin
        .requests()
        .iter()
        .map(|r| r.path().to_owned())
        .collect();
    assert!(
        seen.iter()
            .all(|p| ["/app", "/derived", "/sentry.js", "/favicon.ico"].contains(&p.as_str())),
        "{seen:?}"
    );
    sink.assert_no_violations();
}

#[test]
fn hand_built_envelopes_for_other_projects_or_malformed_are_refused() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &sink.dsn()),
        ("SENTRY_TUNNEL_PATH", TUNNEL),
    ]);
    let port = sink.port();
    let other_port = closed_port();
    let envelope_type = "application/x-sentry-envelope";
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "foreign host",
            envelope(&format!(
                "https://{PUBLIC_KEY}@o1.ingest.sentry.io/{PROJECT_ID}"
            )),
            403,
        ),
        (
            "foreign project",
            envelope(&format!("http://{PUBLIC_KEY}@127.0.0.1:{port}/43")),
            403,
        ),
        (
            "foreign key",
            envelope(&format!("http://otherkey@127.0.0.1:{port}/{PROJECT_ID}")),
            403,
        ),
        (
            "another port",
            envelope(&format!(
                "http://{PUBLIC_KEY}@127.0.0.1:{other_port}/{PROJECT_ID}"
            )),
            403,
        ),
        (
            "no dsn",
            b"{\"event_id\":\"0123\"}\n{\"type\":\"event\"}\n{}".to_vec(),
            400,
        ),
        ("no header", b"\n{\"type\":\"event\"}\n{}".to_vec(), 400),
        (
            "garbage",
            b"\x00\xffGET / HTTP/1.1\r\n\r\nnot an envelope".to_vec(),
            400,
        ),
    ];
    for (what, body, status) in cases {
        let response = post(&worker, TUNNEL, envelope_type, body);
        assert_eq!(response.status, status, "{what}: {}", response.text());
        assert_eq!(
            response.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
    }
    // Over the cap: refused by its Content-Length, before the body is read (only its first
    // bytes are ever sent here).
    assert_eq!(
        status_before_the_body(worker.port(), 20 * 1024 * 1024 + 1),
        413
    );
    let brotli = Request::post(TUNNEL)
        .header("Content-Type", envelope_type)
        .header("Content-Encoding", "br")
        .body(envelope(&sink.dsn()))
        .send(worker.port());
    assert_eq!(brotli.status, 415);
    let get = Request::get(TUNNEL).send(worker.port());
    assert_eq!((get.status, get.header("allow")), (405, Some("POST")));

    // Nothing was sent anywhere: not to the sink, not to the origin.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.requests_count(), 0);
    assert!(
        origin.requests().is_empty(),
        "{:?}",
        origin.requests().len()
    );
    let logs = worker.logs();
    assert!(
        logs.contains("edgeguard: tunnel: 403 foreign project"),
        "{logs}"
    );
    assert!(
        !logs.contains("hand-built"),
        "envelope contents logged: {logs}"
    );

    // The same envelope for our project goes through, as sent (text/plain, as the SDK sends it
    // to a tunnel on another origin), and Sentry's answer comes back.
    let body = envelope(&sink.dsn());
    let response = post(&worker, TUNNEL, "text/plain;charset=UTF-8", body.clone());
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json(), json!({ "id": EVENT_ID }));
    let got = sink.envelopes();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].items[0].payload,
        body[body.len() - got[0].items[0].payload.len()..]
    );
    assert_eq!(got[0].wire_len, body.len());
    sink.assert_no_violations();
}

#[test]
fn a_gzip_envelope_is_read_inflated_and_forwarded_as_sent() {
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[("SENTRY_DSN", &sink.dsn()), ("SENTRY_TUNNEL_PATH", TUNNEL)]);
    let plain = envelope(&sink.dsn());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    let wire = gz.finish().unwrap();
    let response = Request::post(TUNNEL)
        .header("Content-Type", "application/x-sentry-envelope")
        .header("Content-Encoding", "gzip")
        .body(wire.clone())
        .send(worker.port());
    assert_eq!(response.status, 200, "{}", response.text());
    let got = sink.envelopes();
    assert_eq!(got.len(), 1);
    assert!(got[0].gzip);
    assert_eq!(got[0].wire_len, wire.len());
    assert_eq!(got[0].plain_len, plain.len());
    assert_eq!(got[0].header["event_id"], EVENT_ID);
    // A foreign project in a gzip body is refused too: the header is read inflated.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&envelope("https://k@o1.ingest.sentry.io/1"))
        .unwrap();
    let response = Request::post(TUNNEL)
        .header("Content-Type", "application/x-sentry-envelope")
        .header("Content-Encoding", "gzip")
        .body(gz.finish().unwrap())
        .send(worker.port());
    assert_eq!(response.status, 403);
    assert_eq!(sink.requests_count(), 1);
    sink.assert_no_violations();
}

#[test]
fn sentrys_429_and_rate_limits_reach_the_browser() {
    let sink = Sink::start(SinkMode::TooManyRequests {
        rate_limits: Some("60:error;transaction:organization:event_limit_exceeded"),
        retry_after: Some("60"),
    });
    let worker = Worker::start(&[("SENTRY_DSN", &sink.dsn()), ("SENTRY_TUNNEL_PATH", TUNNEL)]);
    let response = post(&worker, TUNNEL, "text/plain", envelope(&sink.dsn()));
    assert_eq!(response.status, 429);
    assert_eq!(
        response.header("x-sentry-rate-limits"),
        Some("60:error;transaction:organization:event_limit_exceeded")
    );
    assert_eq!(response.header("retry-after"), Some("60"));
    assert_eq!(response.text(), r#"{"detail":"rate limited (e2e sink)"}"#);
    assert_eq!(sink.requests_count(), 1);
    sink.assert_no_violations();
}

#[test]
fn a_hanging_or_down_sentry_gets_a_5xx_in_time_and_proxying_carries_on() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Hang);
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &sink.dsn()),
        ("SENTRY_TUNNEL_PATH", TUNNEL),
    ]);
    let port = worker.port();
    let body = envelope(&sink.dsn());
    let started = Instant::now();
    let hanging = std::thread::spawn(move || {
        let response = Request::post(TUNNEL)
            .header("Content-Type", "text/plain")
            .body(body)
            .timeout(Duration::from_secs(40))
            .send(port);
        (response.status, started.elapsed())
    });
    sink.wait_for_requests(1, Duration::from_secs(10));
    // Meanwhile the site is served as usual.
    for _ in 0..5 {
        let ok = worker.get("/ok");
        assert_eq!(ok.status, 200);
        assert!(ok.elapsed < Duration::from_secs(2), "{:?}", ok.elapsed);
    }
    let (status, took) = hanging.join().unwrap();
    assert_eq!(status, 504);
    assert!(
        took >= TUNNEL_TIMEOUT && took < TUNNEL_TIMEOUT + Duration::from_secs(5),
        "{took:?}"
    );
    // The envelope of our own project that Sentry never answered is counted in a client report
    // (sent once Sentry answers again).
    sink.set_mode(SinkMode::Accept);
    sink.wait_for_discarded("network_error", 1, Duration::from_secs(15));
    let reports: Vec<Value> = sink
        .envelopes()
        .iter()
        .flat_map(Envelope::client_reports)
        .collect();
    assert!(
        reports
            .iter()
            .any(
                |r| r["discarded_events"].as_array().is_some_and(|d| d.contains(
                    &json!({"reason": "network_error", "category": "error", "quantity": 1})
                ))
            ),
        "{reports:?}"
    );
    sink.assert_no_violations();

    // Sentry down (nothing listens): 502 at once.
    let down = format!(
        "http://{PUBLIC_KEY}@127.0.0.1:{}/{PROJECT_ID}",
        closed_port()
    );
    let worker = Worker::start(&[("SENTRY_DSN", &down), ("SENTRY_TUNNEL_PATH", TUNNEL)]);
    let started = Instant::now();
    let response = post(&worker, TUNNEL, "text/plain", envelope(&down));
    assert_eq!(response.status, 502, "{}", response.text());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(worker
        .logs()
        .contains("edgeguard: tunnel: 502 Sentry unreachable"));
}
