//! The flood cap shared by every isolate (the `flood-cap` build, `build-flood/`): several
//! worker services of the build in one workerd, each its own isolate, all bound as
//! `EDGEGUARD_FLOOD` to one Durable Object namespace, in front of one failing origin and the
//! strict sink.

use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::workerd::flood_build_dir;
use crate::support::{FloodObject, Origin, Request, Sink, SinkMode, Worker};

const WAIT: Duration = Duration::from_secs(30);
const CAP: usize = 10;

/// What came back for one request: its status, its X-Sentry-ID, how long it took.
struct Answer {
    status: u16,
    id: Option<String>,
    took: Duration,
}

/// `per_isolate` requests to each isolate at once (one thread per isolate), paths taken in
/// turn from `paths`.
fn flood(worker: &Worker, per_isolate: usize, paths: &[&str]) -> Vec<Answer> {
    let threads: Vec<_> = worker
        .ports()
        .iter()
        .enumerate()
        .map(|(isolate, &port)| {
            let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
            thread::spawn(move || {
                (0..per_isolate)
                    .map(|i| {
                        let path = &paths[(i + isolate) % paths.len()];
                        let started = Instant::now();
                        let resp = Request::get(&format!("{path}?n={isolate}-{i}")).send(port);
                        Answer {
                            status: resp.status,
                            id: resp.header("x-sentry-id").map(str::to_string),
                            took: started.elapsed(),
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

/// A failing-capable origin, the sink, and `isolates` isolates of the flood-cap build in front of
/// them with a flood cap of `cap`, bound to `object`.
fn start(cap: usize, isolates: usize, object: FloodObject) -> (Origin, Sink, Worker) {
    let origin = Origin::start();
    let sink = Sink::start(SinkMode::Accept);
    let (o, d, c) = (origin.url(), sink.dsn(), cap.to_string());
    let vars = [
        ("ORIGIN_URL", o.as_str()),
        ("SENTRY_DSN", d.as_str()),
        ("SENTRY_MAX_EVENTS_PER_MINUTE", c.as_str()),
    ];
    let worker = Worker::start_isolates(&flood_build_dir(), &vars, isolates, object);
    (origin, sink, worker)
}

/// Events the sink received per status (the failure group of `/status/NNN`).
fn events_for(sink: &Sink, status: u16) -> usize {
    sink.events()
        .iter()
        .filter(|e| e["contexts"]["response"]["status_code"] == status)
        .count()
}

/// Every id quoted on a page is one the sink received: the rule holds with a shared cap.
fn assert_quoted_ids_were_sent(answers: &[Answer], sink: &Sink) {
    let sent: HashSet<String> = sink
        .events()
        .iter()
        .filter_map(|e| e["event_id"].as_str().map(str::to_string))
        .collect();
    for id in answers.iter().filter_map(|a| a.id.as_ref()) {
        assert!(sent.contains(id), "page quoted {id}, never sent");
    }
}

#[test]
fn four_isolates_share_one_cap_and_count_every_other_failure() {
    const ISOLATES: usize = 4;
    const FAILURES: usize = 500;
    let (_origin, sink, worker) = start(CAP, ISOLATES, FloodObject::Edgeguard);

    let started = Instant::now();
    let answers = flood(&worker, FAILURES / ISOLATES, &["/status/500"]);
    let took = started.elapsed();
    assert!(answers.iter().all(|a| a.status == 500));
    assert!(
        took < Duration::from_secs(50),
        "inside one window: {took:?}"
    );

    let dropped = sink.wait_for_discarded("backpressure", (FAILURES - CAP) as u64, WAIT);
    sink.assert_requests_stay(sink.requests_count(), Duration::from_secs(2));
    let events = sink.events().len();
    let quoted = answers.iter().filter(|a| a.id.is_some()).count();
    eprintln!(
        "shared cap: {FAILURES} failures over {ISOLATES} isolates in {took:?}, cap {CAP}/min: \
         {events} events sent ({quoted} ids on pages), {dropped} counted as backpressure"
    );
    assert!(
        events <= CAP,
        "at most the cap across isolates, not cap x isolates: {events}"
    );
    assert!(events > 0, "the cap lets some through");
    assert_eq!(
        events as u64 + dropped,
        FAILURES as u64,
        "events + counted drops = failures"
    );
    assert_eq!(sink.discarded("backpressure"), dropped);
    assert_quoted_ids_were_sent(&answers, &sink);
    assert!(
        !worker.logs().contains("did not answer"),
        "the object answered every question"
    );
    sink.assert_no_violations();
}

#[test]
fn two_groups_each_get_their_own_cap() {
    const ISOLATES: usize = 3;
    const PER_ISOLATE: usize = 80;
    let (_origin, sink, worker) = start(CAP, ISOLATES, FloodObject::Edgeguard);

    let answers = flood(&worker, PER_ISOLATE, &["/status/500", "/status/503"]);
    let failures = (ISOLATES * PER_ISOLATE) as u64;
    let sent = |sink: &Sink| sink.events().len() as u64;
    let dropped = sink.wait_for_discarded("backpressure", failures - 2 * CAP as u64, WAIT);
    sink.assert_requests_stay(sink.requests_count(), Duration::from_secs(2));
    let (a, b) = (events_for(&sink, 500), events_for(&sink, 503));
    eprintln!("two groups: {a} events for 500, {b} for 503, {dropped} counted as backpressure");
    assert!(
        (1..=CAP).contains(&a) && (1..=CAP).contains(&b),
        "{a} / {b}"
    );
    assert_eq!(
        sent(&sink) + dropped,
        failures,
        "events + counted drops = failures"
    );
    assert_quoted_ids_were_sent(&answers, &sink);
    sink.assert_no_violations();
}

/// Pages answer as fast with an object that throws or hangs as without the binding (the local
/// cap), and the local cap applies, its fallback logged once per isolate per window.
fn an_unavailable_object_leaves_the_local_cap(object: FloodObject) {
    const ISOLATES: usize = 2;
    const PER_ISOLATE: usize = 30;
    const LOCAL_CAP: usize = 3;
    let (_origin, sink, worker) = start(LOCAL_CAP, ISOLATES, object);

    // One at a time, so each page's time is its own.
    let mut answers = Vec::new();
    for _ in 0..PER_ISOLATE {
        for &port in worker.ports() {
            let started = Instant::now();
            let resp = Request::get("/status/500").send(port);
            answers.push(Answer {
                status: resp.status,
                id: resp.header("x-sentry-id").map(str::to_string),
                took: started.elapsed(),
            });
        }
    }
    let failures = (ISOLATES * PER_ISOLATE) as u64;
    assert!(answers.iter().all(|a| a.status == 500));
    let mut times: Vec<Duration> = answers.iter().map(|a| a.took).collect();
    times.sort();
    let (median, slowest) = (times[times.len() / 2], times[times.len() - 1]);
    eprintln!(
        "{object:?} object: /status/500 one at a time: median {median:?}, slowest {slowest:?}"
    );
    // A page that waited for the object would take its 1 s timeout (or 30 s, hanging).
    assert!(
        slowest < Duration::from_millis(600),
        "a page waited: {slowest:?}"
    );

    let local = (ISOLATES * LOCAL_CAP) as u64;
    let dropped = sink.wait_for_discarded("backpressure", failures - local, WAIT);
    sink.assert_requests_stay(sink.requests_count(), Duration::from_secs(2));
    let events = sink.events().len() as u64;
    eprintln!("{object:?} object: {events} events, {dropped} counted as backpressure");
    assert_eq!(events, local, "the local cap per isolate");
    assert_eq!(events + dropped, failures);
    assert_quoted_ids_were_sent(&answers, &sink);
    let fallbacks = worker.logs().matches("did not answer").count();
    assert_eq!(
        fallbacks,
        ISOLATES,
        "logged once per isolate: {}",
        worker.logs()
    );
    sink.assert_no_violations();
}

#[test]
fn a_throwing_object_leaves_the_local_cap_and_pages_fast() {
    an_unavailable_object_leaves_the_local_cap(FloodObject::Throwing);
}

#[test]
fn a_hanging_object_leaves_the_local_cap_and_pages_fast() {
    an_unavailable_object_leaves_the_local_cap(FloodObject::Hanging);
}

#[test]
fn without_the_binding_the_flood_cap_build_keeps_the_cap_per_isolate() {
    const ISOLATES: usize = 2;
    const PER_ISOLATE: usize = 20;
    const LOCAL_CAP: usize = 3;
    let (_origin, sink, worker) = start(LOCAL_CAP, ISOLATES, FloodObject::Unbound);

    let answers = flood(&worker, PER_ISOLATE, &["/status/500"]);
    let failures = (ISOLATES * PER_ISOLATE) as u64;
    let local = (ISOLATES * LOCAL_CAP) as u64;
    let dropped = sink.wait_for_discarded("backpressure", failures - local, WAIT);
    sink.assert_requests_stay(sink.requests_count(), Duration::from_secs(2));
    let events = sink.events().len() as u64;
    assert_eq!(
        events, local,
        "the cap per isolate, as in the default build"
    );
    assert_eq!(events + dropped, failures);
    let quoted = answers.iter().filter(|a| a.id.is_some()).count() as u64;
    assert_eq!(
        quoted, events,
        "decided before the page: every sent event's id is on its page"
    );
    assert_quoted_ids_were_sent(&answers, &sink);
    assert!(
        !worker.logs().contains("EDGEGUARD_FLOOD"),
        "{}",
        worker.logs()
    );
    sink.assert_no_violations();
}
