//! One trace from the visitor through the edge to the origin: a real Python app running Sentry's
//! official SDK (sentry-sdk 2.75.0, `support/traced_origin.py`) behind the built worker in
//! workerd, both reporting to the strict sink. Sentry's own normaliser (`sentry-relay`) checks
//! edgeguard's events and transactions.

use std::time::Duration;

use serde_json::Value;

use crate::support::pyorigin::{normalizer_errors, PyOrigin};
use crate::support::sink::Envelope;
use crate::support::{Request, Sink, SinkMode, Worker};

const WAIT: Duration = Duration::from_secs(15);
const T: &str = "771a43a4192642f0b136d5159a501700";
const S: &str = "a1b2c3d4e5f60718";

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn from_python(e: &Envelope) -> bool {
    e.client.starts_with("sentry.python/") && e.event().is_some()
}

fn from_edgeguard(e: &Envelope) -> bool {
    e.is_edgeguard() && e.event().is_some()
}

/// The `sentry-trace` the origin received, split into trace id, span id and flag.
fn received_trace(seen: &Value) -> (String, String, Option<String>) {
    let value = seen["sentry_trace"]
        .as_str()
        .unwrap_or_else(|| panic!("the origin got no sentry-trace: {seen}"));
    let mut parts = value.split('-');
    let trace = parts.next().unwrap_or_default().to_owned();
    let span = parts.next().unwrap_or_default().to_owned();
    let flag = parts.next().map(str::to_owned);
    assert!(
        is_hex(&trace, 32) && is_hex(&span, 16),
        "bad sentry-trace: {value}"
    );
    (trace, span, flag)
}

/// The sink (in `mode`), the Python app reporting to it, and the worker in front of the app
/// with the sink's DSN and `vars`.
fn start(mode: SinkMode, vars: &[(&str, &str)]) -> (Sink, PyOrigin, Worker) {
    let sink = Sink::start(mode);
    let app = PyOrigin::start(&sink.dsn());
    let (url, dsn) = (app.url(), sink.dsn());
    let mut all = vec![("ORIGIN_URL", url.as_str()), ("SENTRY_DSN", dsn.as_str())];
    all.extend_from_slice(vars);
    let worker = Worker::start(&all);
    (sink, app, worker)
}

fn assert_normalised_without_errors(events: &[Value]) {
    for (event, errors) in events.iter().zip(normalizer_errors(events)) {
        assert_eq!(
            errors,
            Value::Array(vec![]),
            "normaliser errors for {event}"
        );
    }
}

#[test]
fn the_apps_exception_and_edgeguards_event_share_one_trace() {
    let (sink, app, worker) = start(SinkMode::Accept, &[]);

    let resp = worker.get("/raise");
    assert_eq!(resp.status, 500, "{resp:?}");
    let id = resp
        .header("x-sentry-id")
        .expect("the page quotes an id")
        .to_owned();
    assert!(resp.text().contains(&id));

    let seen = app.wait_for_requests(1);
    let (trace_id, span_id, flag) = received_trace(&seen[0]);
    // No SENTRY_TRACES_SAMPLE_RATE: no decision is made for the app.
    assert_eq!(flag, None);
    let baggage = seen[0]["baggage"].as_str().expect("baggage sent");
    assert!(
        baggage.starts_with(&format!("sentry-trace_id={trace_id},sentry-public_key=")),
        "{baggage}"
    );
    assert!(
        baggage.contains("sentry-environment=production"),
        "{baggage}"
    );

    let ours = sink.wait_for_envelopes(1, WAIT, from_edgeguard);
    let event = ours[0].event().unwrap();
    assert_eq!(event["event_id"], id.as_str());
    let context = &event["contexts"]["trace"];
    assert_eq!(context["trace_id"], trace_id.as_str());
    assert_eq!(context["span_id"], span_id.as_str());
    assert!(context.get("parent_span_id").is_none(), "{context}");
    assert_eq!(ours[0].header["trace"]["trace_id"], trace_id.as_str());
    assert_eq!(
        ours[0].header["trace"]["public_key"],
        crate::support::sink::PUBLIC_KEY
    );

    let theirs = sink.wait_for_envelopes(1, WAIT, from_python);
    let app_event = theirs[0].event().unwrap();
    assert_eq!(app_event["exception"]["values"][0]["type"], "AppError");
    let app_trace = &app_event["contexts"]["trace"];
    assert_eq!(app_trace["trace_id"], trace_id.as_str(), "{app_trace}");
    assert_eq!(app_trace["parent_span_id"], span_id.as_str(), "{app_trace}");
    assert_normalised_without_errors(&[event]);
    sink.assert_no_violations();
}

#[test]
fn a_browser_trace_is_continued_and_its_baggage_reaches_the_origin_unchanged() {
    let (sink, app, worker) = start(SinkMode::Accept, &[]);

    // As @sentry/browser sends them with tracing on.
    let baggage = format!(
        "sentry-environment=production,sentry-release=web%401.2,sentry-public_key=browserkey,\
         sentry-trace_id={T},sentry-sample_rate=1,sentry-sampled=true,sentry-sample_rand=0.42,\
         vendor=kept"
    );
    let resp = Request::get("/raise")
        .header("sentry-trace", &format!("{T}-{S}-1"))
        .header("baggage", &baggage)
        .send(worker.port());
    assert_eq!(resp.status, 500, "{resp:?}");

    let seen = app.wait_for_requests(1);
    let (trace_id, span_id, flag) = received_trace(&seen[0]);
    assert_eq!(trace_id, T);
    assert_ne!(span_id, S, "edgeguard's own span is the origin's parent");
    assert_eq!(
        flag.as_deref(),
        Some("1"),
        "the incoming decision is passed on"
    );
    assert_eq!(
        seen[0]["baggage"],
        baggage.as_str(),
        "frozen baggage, unchanged"
    );

    let ours = sink.wait_for_envelopes(1, WAIT, from_edgeguard);
    let event = ours[0].event().unwrap();
    let context = &event["contexts"]["trace"];
    assert_eq!(context["trace_id"], T);
    assert_eq!(context["span_id"], span_id.as_str());
    assert_eq!(context["parent_span_id"], S);
    // The DSC is the browser's, as it came (decoded).
    let dsc = &ours[0].header["trace"];
    assert_eq!(dsc["public_key"], "browserkey");
    assert_eq!(dsc["release"], "web@1.2");
    assert_eq!(dsc["sampled"], "true");

    let theirs = sink.wait_for_envelopes(1, WAIT, from_python);
    let app_trace = &theirs[0].event().unwrap()["contexts"]["trace"];
    assert_eq!(app_trace["trace_id"], T, "{app_trace}");
    assert_eq!(app_trace["parent_span_id"], span_id.as_str(), "{app_trace}");
    assert_normalised_without_errors(&[event]);
    sink.assert_no_violations();
}

#[test]
fn without_propagation_or_without_a_dsn_the_origin_gets_no_trace_headers() {
    let (sink, app, off) = start(SinkMode::Accept, &[("SENTRY_TRACE_PROPAGATION", "false")]);
    assert_eq!(off.get("/headers").status, 200);
    let no_dsn = Worker::start(&[("ORIGIN_URL", &app.url())]);
    assert_eq!(no_dsn.get("/headers").status, 200);
    for seen in app.wait_for_requests(2) {
        assert_eq!(seen["sentry_trace"], Value::Null, "{seen}");
        assert_eq!(seen["baggage"], Value::Null, "{seen}");
    }

    // Propagation off still links edgeguard's own events to a trace.
    assert_eq!(off.get("/raise").status, 500);
    let ours = sink.wait_for_envelopes(1, WAIT, from_edgeguard);
    let context = &ours[0].event().unwrap()["contexts"]["trace"];
    assert!(
        context["trace_id"].as_str().is_some_and(|t| is_hex(t, 32)),
        "{context}"
    );
    sink.assert_no_violations();
}

#[test]
fn a_malformed_sentry_trace_starts_a_new_trace_and_is_never_reflected() {
    let (sink, app, worker) = start(SinkMode::Accept, &[]);
    let long = format!("{T}-{S}-1{}", "f".repeat(10 * 1024));
    let bad = [
        format!("{}-{S}", &T[..31]),
        format!("{T}-{}", &S[..15]),
        format!("{T}0-{S}"),
        format!("{}-{S}-1", T.replace('7', "x")),
        format!("{}-{S}", T.to_uppercase()),
        format!("{T}-{S}-2"),
        long,
        // A CR inside the value (a bare LF or CRLF cannot reach a worker: workerd ends the
        // header there).
        format!("{T}-{S}\r-1"),
    ];
    for (i, value) in bad.iter().enumerate() {
        let before = app.requests().len();
        let resp = Request::get("/headers")
            .header("sentry-trace", value)
            .try_send(worker.port());
        let Ok(resp) = resp else {
            continue; // refused by workerd's HTTP parser before the worker: nothing to continue
        };
        if resp.status == 400 && !resp.headers.contains("x-sentry-id") {
            // workerd itself refused a header it cannot parse; edgeguard never saw it.
            continue;
        }
        assert_eq!(resp.status, 200, "{value:?}: {resp:?}");
        let text = resp.text();
        assert!(
            !text.contains(&value[..value.len().min(40)]),
            "reflected: {text}"
        );
        let seen = app.wait_for_requests(before + 1);
        let last = seen
            .last()
            .unwrap_or_else(|| panic!("case {i}: origin saw nothing"));
        let (trace_id, _, _) = received_trace(last);
        assert_ne!(trace_id, T, "case {i}: {value:?} was continued");
        assert!(last["baggage"]
            .as_str()
            .unwrap()
            .starts_with("sentry-trace_id="));
    }
    assert!(
        app.requests().len() >= bad.len() - 2,
        "{:?}",
        app.requests()
    );
    assert!(sink.envelopes().is_empty(), "no failure, no event");
    sink.assert_no_violations();
}

#[test]
fn a_sampled_request_sends_the_edge_hop_as_a_transaction() {
    let (sink, app, worker) = start(SinkMode::Accept, &[("SENTRY_TRACES_SAMPLE_RATE", "1")]);
    assert_eq!(worker.get("/orders/17").status, 200);
    let seen = app.wait_for_requests(1);
    let (trace_id, span_id, flag) = received_trace(&seen[0]);
    assert_eq!(flag.as_deref(), Some("1"));
    assert!(seen[0]["baggage"]
        .as_str()
        .unwrap()
        .ends_with("sentry-sample_rate=1.0,sentry-sampled=true"));

    let found = sink.wait_for_envelopes(1, WAIT, |e| e.transaction().is_some());
    let tx = found[0].transaction().unwrap();
    assert_eq!(tx["transaction"], "GET /orders/{id}");
    let root = &tx["contexts"]["trace"];
    assert_eq!(root["trace_id"], trace_id.as_str());
    assert_eq!(root["span_id"], span_id.as_str());
    assert_eq!(root["op"], "http.server");
    assert_eq!(root["status"], "ok");
    let spans = tx["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 1, "{tx}");
    assert_eq!(spans[0]["op"], "http.client");
    assert_eq!(spans[0]["parent_span_id"], span_id.as_str());
    assert_eq!(spans[0]["data"]["http.response.status_code"], 200);
    let duration =
        spans[0]["timestamp"].as_f64().unwrap() - spans[0]["start_timestamp"].as_f64().unwrap();
    assert!((0.0..5.0).contains(&duration), "{duration}");
    assert_eq!(found[0].header["trace"]["sampled"], "true");
    assert_normalised_without_errors(&[tx]);

    // An incoming "not sampled" wins over the rate: no transaction, and the origin is told.
    let resp = Request::get("/headers")
        .header("sentry-trace", &format!("{T}-{S}-0"))
        .send(worker.port());
    assert_eq!(resp.status, 200);
    let seen = app.wait_for_requests(2);
    assert_eq!(received_trace(&seen[1]).2.as_deref(), Some("0"));
    sink.assert_requests_stay(1, Duration::from_millis(1500));
    sink.assert_no_violations();
}

#[test]
fn a_rate_limit_on_transactions_stops_transactions_not_events() {
    let limits = SinkMode::AcceptWithLimits("60:transaction;span:organization");
    let (sink, _app, worker) = start(limits, &[("SENTRY_TRACES_SAMPLE_RATE", "1")]);
    assert_eq!(worker.get("/first").status, 200);
    sink.wait_for_envelopes(1, WAIT, |e| e.transaction().is_some());
    // The answer carried the limit: the next transactions are dropped without a request...
    assert_eq!(worker.get("/second").status, 200);
    assert_eq!(worker.get("/third").status, 200);
    // ...while an event still goes out, carrying the count of what was dropped.
    assert_eq!(worker.get("/raise").status, 500);
    sink.wait_for_envelopes(1, WAIT, from_edgeguard);
    assert_eq!(sink.transactions().len(), 1);
    let dropped = sink.discarded_of("ratelimit_backoff", Some("transaction"));
    // /second and /third; /raise's own transaction is dropped after the page too, and may
    // be counted here or in a later report.
    assert!(dropped >= 2, "transactions dropped and counted: {dropped}");
    sink.assert_no_violations();
}
