//! The visitor's page over plain HTTP: the language follows `Accept-Language`, and the feedback
//! form's reserved path forwards a signed, validated submission to Sentry as a `feedback` item
//! (and is never proxied to the origin).

use std::time::Duration;

use crate::support::{is_event_id, Origin, Request, Response, Sink, SinkMode, Worker};

const WAIT: Duration = Duration::from_secs(15);
const FEEDBACK_PATH: &str = "/.edgeguard/feedback";
const SECRET: &str = "e2e-feedback-secret-0123456789abcdef";

fn page(worker: &Worker, path: &str, accept_language: Option<&str>) -> Response {
    let mut req = Request::get(path).header("Accept", "text/html");
    if let Some(al) = accept_language {
        req = req.header("Accept-Language", al);
    }
    req.send(worker.port())
}

/// The value of the hidden input named `name` in the page.
pub fn hidden_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_string())
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn post_form(worker: &Worker, body: &str, accept_language: &str) -> Response {
    Request::post(FEEDBACK_PATH)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept-Language", accept_language)
        .body(body.as_bytes().to_vec())
        .timeout(Duration::from_secs(10))
        .send(worker.port())
}

/// A failing page's event id and feedback token.
fn failure_page(worker: &Worker) -> (String, String) {
    let resp = page(worker, "/status/502", None);
    assert_eq!(resp.status, 502, "{resp:?}");
    let id = resp.header("x-sentry-id").expect("X-Sentry-ID").to_string();
    assert!(is_event_id(&id));
    let html = resp.text();
    assert_eq!(
        hidden_value(&html, "event_id").as_deref(),
        Some(id.as_str())
    );
    let token = hidden_value(&html, "token").unwrap_or_else(|| panic!("no token: {html}"));
    (id, token)
}

#[test]
fn the_page_follows_accept_language() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url()), ("SENTRY_DSN", &sink.dsn())]);
    let cases = [
        (
            Some("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7"),
            "ko",
            "사이트에 연결할 수 없습니다",
        ),
        (Some("ko"), "ko", "다시 시도"),
        (
            Some("en-US,en;q=0.9,ko;q=0.5"),
            "en",
            "We could not reach the site",
        ),
        (Some("fr-FR,fr;q=0.9"), "en", "Try again"),
        (Some("fr;q=0.9, ko;q=0.3"), "ko", "다시 시도"),
        (None, "en", "Try again"),
    ];
    for (al, lang, text) in cases {
        let resp = page(&worker, "/status/502", al);
        assert_eq!(resp.status, 502);
        assert_eq!(resp.header("vary"), Some("Accept, Accept-Language"));
        let html = resp.text();
        assert!(
            html.contains(&format!("<html lang=\"{lang}\">")),
            "{al:?}: {html}"
        );
        assert!(html.contains(text), "{al:?} should show {text:?}");
        assert!(html.len() < 10 * 1024, "{al:?}: {} bytes", html.len());
    }
    sink.wait_for_events(cases.len(), WAIT);
    sink.assert_no_violations();
}

#[test]
fn feedback_reaches_sentry_linked_to_the_event() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &sink.dsn()),
        ("SENTRY_ENVIRONMENT", "e2e-feedback"),
        ("SENTRY_RELEASE", "shop@9.9.9"),
    ]);
    let (id, token) = failure_page(&worker);
    let comments = "결제 버튼을 눌렀더니 오류가 났어요.\r\nThen I reloaded & it failed again.";
    let body = form(&[
        ("event_id", &id),
        ("token", &token),
        ("name", "김민지"),
        ("email", "minji@example.com"),
        ("comments", comments),
    ]);
    let resp = post_form(&worker, &body, "ko-KR,ko;q=0.9");
    assert_eq!(resp.status, 200, "{resp:?}");
    let html = resp.text();
    assert!(html.contains("<html lang=\"ko\">"), "{html}");
    assert!(html.contains("감사합니다"), "{html}");
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    assert!(resp
        .header("content-security-policy")
        .is_some_and(|csp| csp.contains("form-action 'self'")));

    let feedback = sink.wait_for_feedback(1, WAIT);
    let fb = &feedback[0];
    assert_eq!(fb["type"], "feedback");
    assert_ne!(fb["event_id"], id.as_str(), "the feedback has its own id");
    assert_eq!(fb["environment"], "e2e-feedback");
    assert_eq!(fb["release"], "shop@9.9.9");
    let ctx = &fb["contexts"]["feedback"];
    assert_eq!(ctx["associated_event_id"], id.as_str());
    assert_eq!(ctx["name"], "김민지");
    assert_eq!(ctx["contact_email"], "minji@example.com");
    assert_eq!(ctx["message"], comments.replace("\r\n", "\n"));
    // The longest comment the form allows, in Korean (36 000 bytes encoded), gets through whole.
    let longest = "가".repeat(4000);
    let body = form(&[("event_id", &id), ("token", &token), ("comments", &longest)]);
    assert_eq!(post_form(&worker, &body, "ko").status, 200);
    let feedback = sink.wait_for_feedback(2, WAIT);
    assert_eq!(
        feedback[1]["contexts"]["feedback"]["message"],
        longest.as_str()
    );

    // One event (the failure) and two feedback envelopes; the origin never saw the form.
    sink.assert_requests_stay(3, Duration::from_millis(500));
    sink.assert_no_violations();
    assert!(origin
        .requests()
        .iter()
        .all(|r| !r.target.starts_with("/.edgeguard")));
}

#[test]
fn feedback_is_refused_without_a_valid_token_or_with_bad_fields() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url()), ("SENTRY_DSN", &sink.dsn())]);
    let (id, token) = failure_page(&worker);
    sink.wait_for_events(1, WAIT);
    let other_id = "0123456789abcdef0123456789abcdef";
    let long = "x".repeat(4001);
    let cases: Vec<(String, u16)> = vec![
        (form(&[("event_id", &id), ("comments", "hi")]), 400),
        (
            form(&[("event_id", &id), ("token", "1.abc"), ("comments", "hi")]),
            403,
        ),
        (
            form(&[
                ("event_id", other_id),
                ("token", &token),
                ("comments", "hi"),
            ]),
            403,
        ),
        (form(&[("event_id", &id), ("token", &token)]), 400),
        (
            form(&[("event_id", &id), ("token", &token), ("comments", &long)]),
            400,
        ),
        (
            form(&[
                ("event_id", &id),
                ("token", &token),
                ("comments", "hi"),
                ("email", "not an email"),
            ]),
            400,
        ),
    ];
    for (body, status) in &cases {
        let resp = post_form(&worker, body, "en");
        assert_eq!(resp.status, *status, "{body}: {resp:?}");
        let html = resp.text();
        assert!(html.contains("could not be sent"), "{html}");
    }
    // Wrong method, wrong media type, too large.
    let get = Request::get(FEEDBACK_PATH).send(worker.port());
    assert_eq!(get.status, 405, "{get:?}");
    assert_eq!(get.header("allow"), Some("POST"));
    let json = Request::post(FEEDBACK_PATH)
        .header("Content-Type", "application/json")
        .body(r#"{"comments":"hi"}"#)
        .send(worker.port());
    assert_eq!(json.status, 415, "{json:?}");
    let big = form(&[
        ("event_id", &id),
        ("token", &token),
        ("comments", &"y".repeat(60_000)),
    ]);
    assert_eq!(post_form(&worker, &big, "en").status, 413);

    // Nothing but the failure's event reached Sentry; nothing reached the origin.
    sink.assert_requests_stay(1, Duration::from_millis(500));
    sink.assert_no_violations();
    assert!(origin
        .requests()
        .iter()
        .all(|r| !r.target.starts_with("/.edgeguard")));
}

/// Isolates are not sticky: with `FEEDBACK_SECRET` set, a page from one worker instance can be
/// answered on another; without it, only the issuing isolate accepts its tokens.
#[test]
fn tokens_cross_isolates_only_with_a_shared_secret() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let vars = |secret: Option<&str>| {
        let mut v = vec![
            ("ORIGIN_URL".to_string(), origin.url()),
            ("SENTRY_DSN".to_string(), sink.dsn()),
        ];
        if let Some(s) = secret {
            v.push(("FEEDBACK_SECRET".to_string(), s.to_string()));
        }
        v
    };
    let start = |v: &[(String, String)]| {
        let refs: Vec<(&str, &str)> = v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Worker::start(&refs)
    };
    let shared = vars(Some(SECRET));
    let (a, b) = (start(&shared), start(&shared));
    let (id, token) = failure_page(&a);
    let body = form(&[
        ("event_id", &id),
        ("token", &token),
        ("comments", "from A to B"),
    ]);
    assert_eq!(post_form(&b, &body, "en").status, 200);
    let fb = sink.wait_for_feedback(1, WAIT);
    assert_eq!(
        fb[0]["contexts"]["feedback"]["associated_event_id"],
        id.as_str()
    );

    let own = vars(None);
    let (c, d) = (start(&own), start(&own));
    let (id, token) = failure_page(&c);
    let body = form(&[
        ("event_id", &id),
        ("token", &token),
        ("comments", "from C to D"),
    ]);
    assert_eq!(post_form(&d, &body, "en").status, 403);
    assert_eq!(post_form(&c, &body, "en").status, 200);
    sink.wait_for_feedback(2, WAIT);
    sink.assert_no_violations();

    // A secret too short to trust is named in the log (never printed) and not used.
    let weak = start(&vars(Some("short")));
    let _ = failure_page(&weak);
    assert!(
        weak.wait_for_log("FEEDBACK_SECRET is 5 bytes", WAIT),
        "{}",
        weak.logs()
    );
    assert!(!weak.logs().contains("short\""));
}

#[test]
fn feedback_is_rate_limited_per_isolate() {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url()), ("SENTRY_DSN", &sink.dsn())]);
    let (id, token) = failure_page(&worker);
    let body = form(&[("event_id", &id), ("token", &token), ("comments", "again")]);
    let statuses: Vec<u16> = (0..12)
        .map(|_| post_form(&worker, &body, "en").status)
        .collect();
    assert_eq!(&statuses[..10], &[200; 10], "{statuses:?}");
    assert_eq!(&statuses[10..], &[429, 429], "{statuses:?}");
    sink.wait_for_feedback(10, WAIT);
    sink.assert_no_violations();
}

#[test]
fn without_a_dsn_there_is_no_form_and_the_path_is_closed() {
    let origin = Origin::start();
    let worker = Worker::start(&[("ORIGIN_URL", &origin.url())]);
    let resp = page(&worker, "/status/502", None);
    assert_eq!(resp.status, 502);
    assert!(!resp.text().contains("<form"), "{}", resp.text());
    let post = post_form(&worker, "event_id=x&token=y&comments=z", "en");
    assert_eq!(post.status, 404, "{post:?}");
}
