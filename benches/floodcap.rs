//! The shared flood cap at internet scale: a simulation (not a test, not a timing benchmark).
//! N isolates each see M failing requests per second for a minute (the origin is down for
//! everyone), all of one failure group. Each isolate runs the real `delivery::Reporter`; with the
//! shared cap they ask one real `floodcap::GrantBook` (the Durable Object's state), each answer
//! arriving `OBJECT_RTT_MS` after the question. Prints the events sent without the shared cap
//! (the cap per isolate) and with it, and the Durable Object requests made.
//!
//! `cargo bench --bench floodcap` (defaults: 300 isolates x 20 req/s x 60 s, cap 10), or
//! `cargo bench --bench floodcap -- ISOLATES RPS SECONDS CAP`.

use edgeguard::sentry::delivery::{Admitted, Reporter};
use edgeguard::sentry::floodcap::{GrantBook, GrantCache};
use edgeguard::sentry::ratelimit::CATEGORY_ERROR;

/// The round trip of a question to the object (a request to another location, worst case).
const OBJECT_RTT_MS: f64 = 50.0;
const START: f64 = 1_795_521_600_000.0;
const KEY: &str = "500\nGET\n/orders/:id";

#[derive(Default, Debug)]
struct Outcome {
    sent: u64,
    dropped: u64,
    object_requests: u64,
}

/// A question on its way: (when its answer arrives, isolate, when the object saw it).
struct InFlight {
    arrives: f64,
    isolate: usize,
    asked_at_object: f64,
}

fn simulate(isolates: usize, rps: u32, seconds: u32, cap: u32, shared: bool) -> Outcome {
    let mut reporters: Vec<Reporter<GrantCache>> = (0..isolates)
        .map(|_| {
            let mut r = Reporter::new(cap);
            if shared {
                r.share_the_cap(GrantCache::new());
            }
            r
        })
        .collect();
    let mut book = GrantBook::new();
    let mut waiting = vec![0u64; isolates];
    let mut in_flight: Vec<InFlight> = Vec::new();
    let mut out = Outcome::default();
    let step = 1000.0 / f64::from(rps);
    let total = u64::from(rps) * u64::from(seconds);

    let settle = |r: &mut Reporter<GrantCache>, now: f64, out: &mut Outcome| -> Option<bool> {
        match r.decide_again(now, CATEGORY_ERROR, KEY) {
            Ok(Admitted::Now) => out.sent += 1,
            Err(_) => out.dropped += 1,
            Ok(Admitted::AfterAsking { ask }) => return Some(ask),
        }
        None
    };

    for k in 0..total {
        for i in 0..isolates {
            // Isolates' requests spread across each step.
            let now = START + k as f64 * step + step * i as f64 / isolates as f64;
            // Answers that arrived by now, in order.
            in_flight.sort_by(|a, b| a.arrives.total_cmp(&b.arrives));
            while in_flight.first().is_some_and(|q| q.arrives <= now) {
                let q = in_flight.remove(0);
                let r = &mut reporters[q.isolate];
                let grant = book.grant(&r.grant_ask(KEY), q.asked_at_object);
                r.answered(KEY, Some(grant), q.arrives);
                let pending = std::mem::take(&mut waiting[q.isolate]);
                for _ in 0..pending {
                    match settle(r, q.arrives, &mut out) {
                        Some(true) => {
                            out.object_requests += 1;
                            waiting[q.isolate] += 1;
                            in_flight.push(InFlight {
                                arrives: q.arrives + OBJECT_RTT_MS,
                                isolate: q.isolate,
                                asked_at_object: q.arrives + OBJECT_RTT_MS / 2.0,
                            });
                        }
                        Some(false) => waiting[q.isolate] += 1,
                        None => {}
                    }
                }
            }
            match reporters[i].admit(now, CATEGORY_ERROR, true, Some(KEY)) {
                Ok(Admitted::Now) => out.sent += 1,
                Err(_) => out.dropped += 1,
                Ok(Admitted::AfterAsking { ask }) => {
                    waiting[i] += 1;
                    if ask {
                        out.object_requests += 1;
                        in_flight.push(InFlight {
                            arrives: now + OBJECT_RTT_MS,
                            isolate: i,
                            asked_at_object: now + OBJECT_RTT_MS / 2.0,
                        });
                    }
                }
            }
        }
    }
    // Questions still on their way when the minute ends are answered.
    in_flight.sort_by(|a, b| a.arrives.total_cmp(&b.arrives));
    for q in in_flight {
        let r = &mut reporters[q.isolate];
        let grant = book.grant(&r.grant_ask(KEY), q.asked_at_object);
        r.answered(KEY, Some(grant), q.arrives);
        for _ in 0..std::mem::take(&mut waiting[q.isolate]) {
            match r.decide_again(q.arrives, CATEGORY_ERROR, KEY) {
                Ok(Admitted::Now) => out.sent += 1,
                _ => out.dropped += 1,
            }
        }
    }
    out
}

fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let arg = |i: usize, default: u32| args.get(i).copied().unwrap_or(default);
    let (isolates, rps, seconds, cap) = (arg(0, 300), arg(1, 20), arg(2, 60), arg(3, 10));
    let failures = u64::from(rps) * u64::from(seconds) * isolates as u64;
    println!(
        "{isolates} isolates x {rps} failures/s x {seconds} s = {failures} failures of one group, \
         cap {cap}/min, object round trip {OBJECT_RTT_MS} ms"
    );
    for shared in [false, true] {
        let o = simulate(isolates as usize, rps, seconds, cap, shared);
        assert_eq!(
            o.sent + o.dropped,
            failures,
            "every failure sent or counted"
        );
        println!(
            "{:<22} {:>6} events sent, {:>7} counted as backpressure, {:>5} Durable Object requests",
            if shared { "shared cap:" } else { "cap per isolate:" },
            o.sent,
            o.dropped,
            o.object_requests
        );
    }
}
