//! Checks of the harness itself (no workerd): the sink really is strict, the
//! origin's routes do what the tests assume, the config is what workerd needs.

use std::time::Duration;

use crate::support::origin::{ok_body, pattern_bytes, SECRET_ORIGIN_DETAIL};
use crate::support::sink::{parse_envelope, PROJECT_ID, PUBLIC_KEY};
use crate::support::workerd::{render_config, wasm_imports};
use crate::support::{Origin, Request, Sink, SinkMode};

const ID: &str = "0123456789abcdef0123456789abcdef";

fn envelope(event: &str) -> Vec<u8> {
    format!(
        "{{\"event_id\":\"{ID}\",\"sent_at\":\"2026-11-24T12:00:00.000Z\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{event}\n",
        event.len()
    )
    .into_bytes()
}

fn auth() -> String {
    format!("Sentry sentry_version=7, sentry_client=edgeguard/0.1.0, sentry_key={PUBLIC_KEY}")
}

fn post(sink: &Sink, path: &str, ct: &str, auth: &str, body: Vec<u8>) -> u16 {
    Request::post(path)
        .header("Content-Type", ct)
        .header("X-Sentry-Auth", auth)
        .body(body)
        .timeout(Duration::from_secs(10))
        .send(sink.port())
        .status
}

#[test]
fn sink_accepts_a_well_formed_envelope() {
    let sink = Sink::start(SinkMode::Accept);
    let path = format!("/api/{PROJECT_ID}/envelope/");
    let event = format!("{{\"event_id\":\"{ID}\",\"level\":\"error\"}}");
    let resp = Request::post(&path)
        .header("Content-Type", "application/x-sentry-envelope")
        .header("X-Sentry-Auth", &auth())
        .body(envelope(&event))
        .send(sink.port());
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.json()["id"], ID);
    let events = sink.wait_for_events(1, Duration::from_secs(5));
    assert_eq!(events[0]["level"], "error");
    sink.assert_no_violations();
    assert_eq!(
        sink.dsn(),
        format!("http://{PUBLIC_KEY}@127.0.0.1:{}/{PROJECT_ID}", sink.port())
    );
}

#[test]
fn sink_flags_every_kind_of_bad_request() {
    let sink = Sink::start(SinkMode::Accept);
    let path = format!("/api/{PROJECT_ID}/envelope/");
    let ct = "application/x-sentry-envelope";
    let event = format!("{{\"event_id\":\"{ID}\"}}");
    let good = envelope(&event);
    let cases: Vec<(&str, String, &str, String, Vec<u8>)> = vec![
        (
            "wrong path",
            "/api/42/store/".into(),
            ct,
            auth(),
            good.clone(),
        ),
        (
            "wrong project",
            "/api/43/envelope/".into(),
            ct,
            auth(),
            good.clone(),
        ),
        (
            "wrong content type",
            path.clone(),
            "application/json",
            auth(),
            good.clone(),
        ),
        (
            "wrong key",
            path.clone(),
            ct,
            auth().replace(PUBLIC_KEY, "otherkey"),
            good.clone(),
        ),
        (
            "wrong version",
            path.clone(),
            ct,
            auth().replace("version=7", "version=6"),
            good.clone(),
        ),
        (
            // Any `<name>/<version>` client is accepted since the tracing tests' Python app
            // reports to the sink too; one without a version is not.
            "client without a version",
            path.clone(),
            ct,
            auth().replace("edgeguard/0.1.0", "edgeguard"),
            good.clone(),
        ),
        (
            "not sentry auth",
            path.clone(),
            ct,
            "Bearer x".into(),
            good.clone(),
        ),
        (
            "length too long",
            path.clone(),
            ct,
            auth(),
            String::from_utf8(good.clone())
                .unwrap()
                .replace("\"length\":", "\"length\":1")
                .into_bytes(),
        ),
        (
            "no length",
            path.clone(),
            ct,
            auth(),
            format!("{{\"event_id\":\"{ID}\"}}\n{{\"type\":\"event\"}}\n{event}\n").into_bytes(),
        ),
        (
            "id mismatch",
            path.clone(),
            ct,
            auth(),
            envelope(&event.replace("0123", "ffff")),
        ),
        (
            "uppercase id",
            path.clone(),
            ct,
            auth(),
            String::from_utf8(good.clone())
                .unwrap()
                .replace("abcdef", "ABCDEF")
                .into_bytes(),
        ),
        (
            "header not JSON",
            path.clone(),
            ct,
            auth(),
            b"hello\n".to_vec(),
        ),
        (
            "no items",
            path.clone(),
            ct,
            auth(),
            format!("{{\"event_id\":\"{ID}\"}}\n").into_bytes(),
        ),
    ];
    for (i, (what, path, ct, auth, body)) in cases.into_iter().enumerate() {
        assert_eq!(post(&sink, &path, ct, &auth, body), 400, "{what}");
        assert_eq!(
            sink.violations().len(),
            i + 1,
            "{what} should be one violation"
        );
    }
    let get = Request::get(&path).send(sink.port());
    assert_eq!(get.status, 400);
    assert!(sink.events().is_empty());
}

#[test]
fn envelope_parser_allows_a_missing_final_newline_and_other_items() {
    let event = format!("{{\"event_id\":\"{ID}\"}}");
    let mut body = envelope(&event);
    body.pop();
    assert!(parse_envelope(&body).is_ok());
    let report = r#"{"timestamp":1795521600,"discarded_events":[{"reason":"sample_rate","category":"error","quantity":2}]}"#;
    let body = format!(
        "{{}}\n{{\"type\":\"client_report\",\"length\":{}}}\n{report}\n",
        report.len()
    );
    let (_, items) = parse_envelope(body.as_bytes()).unwrap();
    assert_eq!(items[0].header["type"], "client_report");
}

#[test]
fn envelope_parser_rejects_malformed_client_reports() {
    for report in [
        r#"{"discarded_events":[]}"#,
        r#"{"timestamp":1795521600,"discarded_events":[]}"#,
        r#"{"timestamp":1795521600,"discarded_events":[{"reason":"made_up","category":"error","quantity":1}]}"#,
        r#"{"timestamp":1795521600,"discarded_events":[{"reason":"sample_rate","category":"errors","quantity":1}]}"#,
        r#"{"timestamp":1795521600,"discarded_events":[{"reason":"sample_rate","category":"error","quantity":0}]}"#,
        r#"{"timestamp":1795521600,"discarded_events":[{"reason":"sample_rate","category":"error","quantity":1,"x":1}]}"#,
        r#"{"timestamp":1795521600,"discarded_events":[{"reason":"sample_rate","category":"error","quantity":1},{"reason":"sample_rate","category":"error","quantity":1}]}"#,
        r#"{"timestamp":1795521600,"discarded_events":[{"reason":"sample_rate","category":"error","quantity":1}],"extra":1}"#,
    ] {
        let body = format!(
            "{{}}\n{{\"type\":\"client_report\",\"length\":{}}}\n{report}\n",
            report.len()
        );
        assert!(parse_envelope(body.as_bytes()).is_err(), "{report}");
    }
}

#[test]
fn envelope_parser_holds_events_to_sentrys_schema_and_limits() {
    let ok = format!(
        "{{\"event_id\":\"{ID}\",\"level\":\"warning\",\"transaction\":\"GET /a/{{id}}\",\"fingerprint\":[\"503\"]}}"
    );
    assert!(parse_envelope(&envelope(&ok)).is_ok());
    let long = "x".repeat(201);
    let context = "y".repeat(9000);
    for (what, event) in [
        (
            "unknown attribute",
            format!("{{\"event_id\":\"{ID}\",\"route\":\"/a\"}}"),
        ),
        (
            "bad level",
            format!("{{\"event_id\":\"{ID}\",\"level\":\"warn\"}}"),
        ),
        (
            "long transaction",
            format!("{{\"event_id\":\"{ID}\",\"transaction\":\"{long}\"}}"),
        ),
        (
            "long tag",
            format!("{{\"event_id\":\"{ID}\",\"tags\":{{\"a\":\"{long}\"}}}}"),
        ),
        (
            "big context",
            format!("{{\"event_id\":\"{ID}\",\"contexts\":{{\"c\":{{\"v\":\"{context}\"}}}}}}"),
        ),
        (
            "query in url",
            format!("{{\"event_id\":\"{ID}\",\"request\":{{\"url\":\"http://h/p?token=1\"}}}}"),
        ),
        (
            "fingerprint",
            format!("{{\"event_id\":\"{ID}\",\"fingerprint\":[1]}}"),
        ),
    ] {
        assert!(
            parse_envelope(&envelope(&event)).is_err(),
            "{what} accepted"
        );
    }
}

#[test]
fn origin_routes_behave_as_the_tests_assume() {
    let origin = Origin::start();
    let ok = Request::get("/ok").send(origin.port());
    assert_eq!((ok.status, ok.body.len()), (200, 1024));
    assert_eq!(ok.body, ok_body());
    assert_eq!(ok.headers.get_all("set-cookie").len(), 2);
    let bytes = Request::get("/bytes/100000").send(origin.port());
    assert_eq!(bytes.body, pattern_bytes(100_000));
    let s = Request::get("/status/503").send(origin.port());
    assert_eq!(s.status, 503);
    assert!(s.text().contains(SECRET_ORIGIN_DETAIL));
    let r = Request::get("/redirect").send(origin.port());
    assert_eq!((r.status, r.header("location")), (302, Some("/ok")));
    let e = Request::post("/echo?a=b")
        .header("X-Y", "z")
        .body("hi")
        .send(origin.port());
    assert_eq!(e.body, b"hi");
    let hang = Request::get("/hang")
        .timeout(Duration::from_millis(300))
        .try_send(origin.port());
    assert!(hang.is_err(), "/hang must not answer");
    let reqs = origin.wait_for_requests(6, Duration::from_secs(5));
    assert_eq!(reqs[4].target, "/echo?a=b");
    assert_eq!(reqs[4].header("x-y"), Some("z"));
    assert_eq!(reqs[4].body, b"hi");
    let f = Request::get("/fail/502/orders/7").send(origin.port());
    assert_eq!(f.status, 502);
}

#[test]
fn workerd_config_names_modules_as_index_js_imports_them() {
    let js = r#"import * as wasm from "./index_bg.wasm"; import x from './snippets/a.js';"#;
    assert_eq!(wasm_imports(js), ["./index_bg.wasm"]);
    let config = render_config(
        &["index.js".into(), "index_bg.wasm".into()],
        &[("SENTRY_DSN", "say \"hi\"\\")],
        &["nodejs_compat".into()],
    );
    assert!(
        config.contains(r#"(name = "index.js", esModule = embed "index.js"),"#),
        "{config}"
    );
    assert!(
        config.contains(r#"(name = "index_bg.wasm", wasm = embed "index_bg.wasm"),"#),
        "{config}"
    );
    assert!(
        config.contains(r#"(name = "SENTRY_DSN", text = "say \"hi\"\\"),"#),
        "{config}"
    );
    assert!(
        config.contains(r#"compatibilityFlags = ["nodejs_compat"]"#),
        "{config}"
    );
}

#[test]
fn sink_checks_feedback_items_field_by_field() {
    let fid = "fedcba9876543210fedcba9876543210";
    let envelope = |payload: &str| {
        format!(
            "{{\"event_id\":\"{fid}\"}}\n{{\"type\":\"feedback\",\"length\":{}}}\n{payload}\n",
            payload.len()
        )
        .into_bytes()
    };
    let good = format!(
        r#"{{"event_id":"{fid}","type":"feedback","timestamp":1.0,"contexts":{{"feedback":{{"message":"hi","associated_event_id":"{ID}","name":"A"}}}}}}"#
    );
    let (_, items) = parse_envelope(&envelope(&good)).unwrap();
    assert_eq!(items[0].header["type"], "feedback");
    let bad = [
        (
            "id mismatch",
            good.replace(
                &format!("\"event_id\":\"{fid}\""),
                &format!("\"event_id\":\"{ID}\""),
            ),
        ),
        (
            "wrong type",
            good.replace("\"type\":\"feedback\"", "\"type\":\"event\""),
        ),
        (
            "empty message",
            good.replace("\"message\":\"hi\"", "\"message\":\" \""),
        ),
        ("bad association", good.replace(ID, "nothex")),
        ("self association", good.replace(ID, fid)),
        (
            "unknown key",
            good.replace("\"name\":\"A\"", "\"user\":\"A\""),
        ),
        ("non-string", good.replace("\"name\":\"A\"", "\"name\":1")),
        (
            "no context",
            format!(r#"{{"event_id":"{fid}","type":"feedback","timestamp":1.0}}"#),
        ),
    ];
    for (what, payload) in bad {
        assert!(
            parse_envelope(&envelope(&payload)).is_err(),
            "{what}: {payload}"
        );
    }
}

#[test]
fn origin_drip_holds_the_second_half_until_released() {
    let origin = Origin::start();
    let mut resp = Request::get("/drip/1000")
        .timeout(Duration::from_secs(10))
        .start(origin.port());
    assert_eq!(resp.read_exact_body(1000).unwrap(), pattern_bytes(1000));
    resp.set_deadline(std::time::Instant::now() + Duration::from_millis(300));
    assert!(
        resp.read_exact_body(1).is_err(),
        "second half must wait for release"
    );
    // A timed-out read leaves the reader in an unknown state: use a new request.
    let mut resp = Request::get("/drip/1000")
        .timeout(Duration::from_secs(10))
        .start(origin.port());
    origin.release_drip();
    let all = resp.read_rest().unwrap();
    assert_eq!(all, pattern_bytes(2000));
}
