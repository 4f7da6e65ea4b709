//! Security: only the configured origin is ever fetched, the page is locked
//! down and escapes what it reflects, and nothing secret (the DSN, its secret
//! key, the origin's address) reaches a visitor or a log line.

use std::time::Duration;

use crate::support::origin::{RETRY_AFTER, SECRET_ORIGIN_DETAIL};
use crate::support::sink::PUBLIC_KEY;
use crate::support::{
    closed_port, raw_exchange, split_response, Origin, Request, Response, Sink, SinkMode, Worker,
};

/// The usual SSRF tricks, as raw requests: `(label, request, the target the
/// origin must see when the runtime lets the request through)`. `{W}` is the
/// worker's port, `{E}` the decoy's.
fn ssrf_inputs() -> Vec<(&'static str, String, Option<&'static str>)> {
    let get = |target: &str, extra: &str| {
        format!(
            "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{{W}}\r\n{extra}Connection: close\r\n\r\n"
        )
    };
    vec![
        ("absolute-form to the decoy", get("http://127.0.0.1:{E}/steal", ""), Some("/steal")),
        ("absolute-form https", get("https://127.0.0.1:{E}/steal", ""), Some("/steal")),
        ("absolute-form to a name", get("http://evil.example/steal", ""), Some("/steal")),
        (
            "absolute-form with userinfo",
            get("http://127.0.0.1:{W}@127.0.0.1:{E}/steal", ""),
            Some("/steal"),
        ),
        ("protocol-relative path", get("//127.0.0.1:{E}/x", ""), Some("//127.0.0.1:{E}/x")),
        ("protocol-relative name", get("//evil.com/x", ""), Some("//evil.com/x")),
        ("userinfo-like path", get("/@127.0.0.1:{E}", ""), Some("/@127.0.0.1:{E}")),
        ("userinfo-like name", get("/@evil.com", ""), Some("/@evil.com")),
        ("encoded slashes", get("/%2F%2F127.0.0.1:{E}", ""), Some("/%2F%2F127.0.0.1:{E}")),
        ("encoded slashes name", get("/%2F%2Fevil.com", ""), Some("/%2F%2Fevil.com")),
        ("encoded backslashes", get("/%5C%5Cevil.com", ""), Some("/%5C%5Cevil.com")),
        ("raw backslashes", get("/\\\\127.0.0.1:{E}/x", ""), None),
        ("encoded at", get("/%40127.0.0.1:{E}", ""), Some("/%40127.0.0.1:{E}")),
        ("dot segments", get("/..%2F..%2F@127.0.0.1:{E}", ""), None),
        ("url in query", get("/?url=http://127.0.0.1:{E}/", ""), Some("/?url=http://127.0.0.1:{E}/")),
        ("encoded CRLF", get("/%0d%0aHost:%20127.0.0.1:{E}", ""), None),
        ("authority-form target", get("127.0.0.1:{E}", ""), None),
        ("at-authority target", get("@127.0.0.1:{E}/x", ""), None),
        (
            "CONNECT",
            "CONNECT 127.0.0.1:{E} HTTP/1.1\r\nHost: 127.0.0.1:{E}\r\nConnection: close\r\n\r\n"
                .to_string(),
            None,
        ),
        (
            "Host header to the decoy",
            "GET /host HTTP/1.1\r\nHost: 127.0.0.1:{E}\r\nConnection: close\r\n\r\n".to_string(),
            Some("/host"),
        ),
        (
            "Host header to a name",
            "GET /host HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n".to_string(),
            Some("/host"),
        ),
        (
            "forwarding headers",
            get(
                "/fwd",
                "X-Forwarded-Host: 127.0.0.1:{E}\r\nX-Forwarded-Proto: https\r\n\
                 Forwarded: host=127.0.0.1:{E};proto=http\r\nX-Original-URL: http://127.0.0.1:{E}/\r\n\
                 X-Rewrite-URL: http://127.0.0.1:{E}/\r\nX-Host: 127.0.0.1:{E}\r\n\
                 X-Forwarded-Server: 127.0.0.1:{E}\r\n",
            ),
            Some("/fwd"),
        ),
    ]
}

#[test]
fn no_path_query_or_header_steers_the_fetch_to_another_host() {
    let origin = Origin::start();
    let decoy = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);
    let (w, e) = (worker.port().to_string(), decoy.port().to_string());

    let mut table = Vec::new();
    for (label, request, want) in ssrf_inputs() {
        let request = request.replace("{W}", &w).replace("{E}", &e);
        let before = origin.requests().len();
        let raw = raw_exchange(worker.port(), request.as_bytes(), Duration::from_secs(15));
        let status = if raw.is_empty() {
            0
        } else {
            split_response(&raw).0
        };
        let reqs = origin.requests();
        let reached = reqs.get(before).map(|r| r.target.clone());
        if let (Some(want), Some(got)) = (want, &reached) {
            assert_eq!(got, &want.replace("{E}", &e), "{label}");
        }
        if let Some(r) = reqs.get(before) {
            assert_eq!(
                r.header("host"),
                Some(format!("127.0.0.1:{}", origin.port()).as_str()),
                "{label}: {r:?}"
            );
        }
        table.push(format!("{label:30} -> {status:3}, origin saw {reached:?}"));
    }
    eprintln!("SSRF inputs tried:\n{}", table.join("\n"));
    assert_eq!(
        decoy.connections(),
        0,
        "something reached the decoy: {:?}\n{}",
        decoy.requests(),
        table.join("\n")
    );
    let forwarded = ssrf_inputs().iter().filter(|(_, _, w)| w.is_some()).count();
    assert!(
        origin.requests().len() >= forwarded,
        "every well-formed request reached the real origin:\n{}",
        table.join("\n")
    );
}

fn assert_locked_down(resp: &Response, content_type: &str) {
    assert_eq!(resp.header("content-type"), Some(content_type), "{resp:?}");
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    let csp = resp.header("content-security-policy").unwrap_or("");
    for directive in [
        "default-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "CSP lacks {directive}: {csp:?}");
    }
    assert!(
        !csp.contains("script-src") && !csp.contains("unsafe-eval") && !csp.contains('*'),
        "CSP allows scripts: {csp:?}"
    );
}

#[test]
fn the_page_carries_security_headers() {
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);

    let html = worker.get("/status/500");
    assert_eq!(html.status, 500);
    assert_locked_down(&html, "text/html; charset=utf-8");
    let json = Request::get("/status/500")
        .header("Accept", "application/json")
        .send(worker.port());
    assert_eq!(json.status, 500);
    assert_locked_down(&json, "application/json");
}

#[test]
fn retry_after_passes_through_on_503_only() {
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);

    let unavailable = worker.get("/retry/503");
    assert_eq!(unavailable.status, 503, "{unavailable:?}");
    assert_eq!(unavailable.header("retry-after"), Some(RETRY_AFTER));
    assert!(!unavailable.text().contains(SECRET_ORIGIN_DETAIL));

    let internal = worker.get("/retry/500");
    assert_eq!(internal.status, 500, "{internal:?}");
    assert!(!internal.headers.contains("retry-after"), "{internal:?}");
}

#[test]
fn script_in_path_query_and_ray_id_is_escaped_on_the_page() {
    // An unreachable origin: every path gets the page.
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[
        ("ORIGIN_URL", &format!("http://127.0.0.1:{}", closed_port())),
        ("SENTRY_DSN", &sink.dsn()),
    ]);

    // (A raw `<` in the request line is refused by the runtime with 400 before the worker
    // runs, so the query carries it percent-encoded, as a browser sends it.)
    let resp =
        Request::get("/%3Cscript%3Ealert(1)%3C/script%3E?q=%3Cscript%3Ealert(2)%3C/script%3E")
            .header("CF-Ray", "<script>alert(3)</script>")
            .send(worker.port());

    let body = resp.text().to_ascii_lowercase();
    assert_eq!(resp.status, 502, "{resp:?}");
    assert!(!body.contains("<script"), "unescaped markup: {resp:?}");
    assert!(
        !body.contains("alert(1)") && !body.contains("alert(2)"),
        "{resp:?}"
    );
    let json = Request::get("/x?q=%3Cscript%3E")
        .header("Accept", "application/json")
        .header("CF-Ray", "\"},\"x\":\"<script>")
        .send(worker.port());
    assert_eq!(json.json()["ray_id"], "\"},\"x\":\"<script>", "{json:?}");
}

/// A DSN with a (deprecated) secret key part.
fn dsn_with_secret(sink: &Sink, secret: &str) -> String {
    sink.dsn()
        .replacen(PUBLIC_KEY, &format!("{PUBLIC_KEY}:{secret}"), 1)
}

#[test]
fn dsn_secret_and_origin_address_never_reach_a_page_a_header_or_a_log() {
    const SECRET: &str = "e2eDsnSecretPart5521";
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let dsn = dsn_with_secret(&sink, SECRET);
    let dead = closed_port();
    let cases = [
        (origin.url(), "/status/500"),
        (format!("http://127.0.0.1:{dead}"), "/anything"),
        (format!("http://u:p@127.0.0.1:{dead}"), "/misconfigured"),
    ];
    for (origin_url, path) in &cases {
        let worker = Worker::start(&[("ORIGIN_URL", origin_url), ("SENTRY_DSN", &dsn)]);
        let resp = worker.get(path);
        let json = Request::get(path)
            .header("Accept", "application/json")
            .send(worker.port());
        assert!(resp.status >= 500, "{resp:?}");
        let origin_host = origin_url
            .trim_start_matches("http://")
            .trim_start_matches("u:p@");
        let mut seen = format!("{resp:?}\n{json:?}\n{}", resp.text());
        // workerd's own diagnostics are not ours; every line edgeguard logs starts
        // with "edgeguard:".
        worker.wait_for_log("edgeguard:", Duration::from_secs(5));
        for line in worker.logs().lines().filter(|l| l.contains("edgeguard:")) {
            seen.push_str(line);
            seen.push('\n');
        }
        for secret in [dsn.as_str(), SECRET, origin_host, origin_url.as_str()] {
            assert!(
                !seen.contains(secret),
                "{secret:?} leaked for ORIGIN_URL case {path}:\n{seen}"
            );
        }
    }
}
