//! What happens to an event between "this failure should be reported" and the bytes leaving:
//! sampling, Sentry's rate limits, flood control, and the counts of what was dropped and why
//! (sent to Sentry as `client_report` items).
//!
//! One [`Reporter`] lives per isolate (a `thread_local` in the edge). Every decision is made
//! here with the time and the random draw passed in, so each rule is tested on the host.
//!
//! - **Sampling** (`SENTRY_SAMPLE_RATE`) is decided first, before anything is built.
//! - **Rate limits** ([`RateLimits`]) from every Sentry answer drop events without a request.
//! - **Flood control**: at most `max_per_window` events per key (the failure's grouping
//!   fingerprint) per [`FLOOD_WINDOW_MS`]; an outage of thousands of 5xx a minute sends a
//!   handful of events and one count of the rest.
//! - **The shared cap** (the `flood-cap` feature with the `EDGEGUARD_FLOOD` binding): flood
//!   control asks a Durable Object for grants instead ([`crate::sentry::floodcap`]); a grant
//!   cached in the isolate admits an event at once ([`Admitted::Now`]), otherwise the question
//!   is asked after the page ([`Admitted::AfterAsking`], the page then shows no id). A refused
//!   event is counted as `backpressure`, as with the local cap, which still decides when the
//!   object cannot answer.
//! - **Client reports**: every drop is counted by (reason, category). The counts ride along
//!   with the next envelope sent, or go alone after [`CLIENT_REPORT_FLUSH_MS`]; an envelope
//!   that fails to arrive gives its counts back, so they are sent later instead of lost.

use crate::fnv::fnv1a_64;
use crate::sentry::floodcap::{self, CacheDecision, Grant, GrantAsk, SharedCap};
use crate::sentry::ratelimit::{RateLimits, CATEGORY_ERROR, CATEGORY_SPAN, CATEGORY_TRANSACTION};
use crate::sentry::transaction::SPANS_PER_TRANSACTION;
use serde_json::{json, Value};

/// The flood-control window: the cap counts events per key per minute.
pub const FLOOD_WINDOW_MS: f64 = 60_000.0;
/// The default cap per key per window (`SENTRY_MAX_EVENTS_PER_MINUTE`).
pub const DEFAULT_MAX_EVENTS_PER_WINDOW: u32 = 10;
/// How long counts wait for an envelope to ride along with before they are sent alone. Well
/// inside the 30 s `wait_until` grants, so the wait never outlives the request that scheduled it.
pub const CLIENT_REPORT_FLUSH_MS: u32 = 5_000;
/// Keys tracked at once by flood control; beyond this the oldest window is forgotten.
const MAX_FLOOD_KEYS: usize = 256;
/// Below this an envelope is sent as-is. A typical event envelope is about 1 KB: plain or
/// gzipped (~500 B), the POST fits in the same one or two packets and one round trip, so
/// compressing it saves no time and costs the worker CPU on every failure (the runtime's
/// `CompressionStream` was ~10% of the CPU of an origin-500 request in a profile). Larger
/// envelopes (opted-in headers, long error chains, carried client reports) are compressed.
pub const MIN_GZIP_BYTES: usize = 2_048;

/// Why an event was not sent: the `reason` of a client report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `SENTRY_SAMPLE_RATE` left it out.
    SampleRate,
    /// Sentry asked us to back off (a rate limit in force, or a 429 for this envelope).
    RatelimitBackoff,
    /// Flood control: the key had reached its cap for the window.
    Backpressure,
    /// Sentry could not be reached (refused, reset, or no answer in time).
    NetworkError,
    /// Sentry answered with an error other than 429.
    SendError,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SampleRate => "sample_rate",
            Reason::RatelimitBackoff => "ratelimit_backoff",
            Reason::Backpressure => "backpressure",
            Reason::NetworkError => "network_error",
            Reason::SendError => "send_error",
        }
    }

    /// The reason for an envelope Sentry answered with `status`; `None` when it was accepted.
    pub fn for_status(status: u16) -> Option<Reason> {
        match status {
            200..=299 => None,
            429 => Some(Reason::RatelimitBackoff),
            _ => Some(Reason::SendError),
        }
    }
}

/// Drop counts by (reason, category), in the order first seen.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Discards {
    counts: Vec<(Reason, &'static str, u64)>,
}

impl Discards {
    pub const fn new() -> Self {
        Discards { counts: Vec::new() }
    }

    pub fn add(&mut self, reason: Reason, category: &'static str, quantity: u64) {
        if quantity == 0 {
            return;
        }
        match self
            .counts
            .iter_mut()
            .find(|(r, c, _)| *r == reason && *c == category)
        {
            Some((_, _, n)) => *n = n.saturating_add(quantity),
            None => self.counts.push((reason, category, quantity)),
        }
    }

    pub fn merge(&mut self, other: Discards) {
        for (reason, category, quantity) in other.counts {
            self.add(reason, category, quantity);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The total dropped for `reason` (any category).
    pub fn total(&self, reason: Reason) -> u64 {
        self.counts
            .iter()
            .filter(|(r, _, _)| *r == reason)
            .map(|(_, _, n)| n)
            .sum()
    }

    /// The `client_report` payload (develop.sentry.dev, "Client Reports"): `timestamp` in whole
    /// seconds since the epoch and one `discarded_events` entry per (reason, category).
    pub fn client_report(&self, now_ms: f64) -> Value {
        let seconds = if now_ms.is_finite() && now_ms > 0.0 {
            (now_ms / 1000.0) as u64
        } else {
            0
        };
        let discarded: Vec<Value> = self
            .counts
            .iter()
            .map(|(reason, category, quantity)| {
                json!({ "reason": reason.as_str(), "category": category, "quantity": quantity })
            })
            .collect();
        json!({ "timestamp": seconds, "discarded_events": discarded })
    }
}

/// Caps events per key per fixed window.
#[derive(Debug, Clone)]
pub struct FloodGate {
    max_per_window: u32,
    /// (key hash, window start, events allowed in it).
    windows: Vec<(u64, f64, u32)>,
}

impl FloodGate {
    /// `max_per_window` 0: no cap.
    pub const fn new(max_per_window: u32) -> Self {
        FloodGate {
            max_per_window,
            windows: Vec::new(),
        }
    }

    /// Whether one more event for `key` may be sent at `now_ms` (and counts it if so).
    pub fn allow(&mut self, key: &str, now_ms: f64) -> bool {
        if self.max_per_window == 0 {
            return true;
        }
        let hash = fnv1a_64(key.as_bytes());
        if let Some(window) = self.windows.iter_mut().find(|(h, _, _)| *h == hash) {
            if now_ms - window.1 >= FLOOD_WINDOW_MS || now_ms < window.1 {
                *window = (hash, now_ms, 1);
                return true;
            }
            if window.2 >= self.max_per_window {
                return false;
            }
            window.2 += 1;
            return true;
        }
        if self.windows.len() >= MAX_FLOOD_KEYS {
            self.windows
                .retain(|(_, start, _)| now_ms - start < FLOOD_WINDOW_MS);
        }
        if self.windows.len() >= MAX_FLOOD_KEYS {
            if let Some(oldest) = self
                .windows
                .iter()
                .enumerate()
                .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
                .map(|(i, _)| i)
            {
                self.windows.swap_remove(oldest);
            }
        }
        self.windows.push((hash, now_ms, 1));
        true
    }
}

/// Whether the sampling decision needs a random draw at all (0 and 1 do not).
pub fn needs_draw(sample_rate: f64) -> bool {
    sample_rate > 0.0 && sample_rate < 1.0
}

/// Keeps an event with probability `sample_rate`, given a uniform 32-bit `draw`. With no draw
/// available (no randomness) the event is kept: reporting fails open.
pub fn sampled(sample_rate: f64, draw: Option<u32>) -> bool {
    if sample_rate >= 1.0 {
        return true;
    }
    if sample_rate <= 0.0 || sample_rate.is_nan() {
        return false;
    }
    draw.is_none_or(|d| f64::from(d) / 4_294_967_296.0 < sample_rate)
}

/// Whether a gzip of `original` bytes that came out at `compressed` bytes should be sent.
pub fn gzip_pays(original: usize, compressed: usize) -> bool {
    compressed < original
}

/// How an event was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// Decided now (no cap, the local cap, or a shared grant cached in the isolate): the event
    /// is sent, and its page shows its id.
    Now,
    /// The shared cap has no grant cached for the group: the page shows no id, and the event
    /// is decided after the page, once the object has answered ([`Reporter::decide_again`]).
    /// `ask`: this event asks the object; otherwise another event of the isolate is asking.
    AfterAsking { ask: bool },
}

/// The isolate's reporting state. `S`: the shared cap's cache (`floodcap::GrantCache`), or
/// `floodcap::LocalOnly` in a build without it.
#[derive(Debug, Clone)]
pub struct Reporter<S> {
    pub limits: RateLimits,
    flood: FloodGate,
    /// The cap shared through the Durable Object; `None`: the local cap alone.
    shared: Option<S>,
    max_per_window: u32,
    pending: Discards,
    flush_scheduled: bool,
}

impl<S: SharedCap> Reporter<S> {
    pub const fn new(max_per_window: u32) -> Self {
        Reporter {
            limits: RateLimits::new(),
            flood: FloodGate::new(max_per_window),
            shared: None,
            max_per_window,
            pending: Discards::new(),
            flush_scheduled: false,
        }
    }

    /// Flood control through the shared cap, `cache` holding its grants (the `EDGEGUARD_FLOOD`
    /// binding is present). With no cap (`max_per_window` 0) there is nothing to share.
    pub fn share_the_cap(&mut self, cache: S) {
        if self.max_per_window > 0 {
            self.shared = Some(cache);
        }
    }

    /// The question for the shared cap about `flood_key`: a batch of the cap.
    pub fn grant_ask(&self, flood_key: &str) -> GrantAsk {
        GrantAsk {
            group: floodcap::group_name(flood_key),
            want: floodcap::batch(self.max_per_window),
            cap: self.max_per_window,
        }
    }

    /// The object's answer about `flood_key` (`None`: it did not give one in time). Returns
    /// whether the fallback to the local cap should be logged (once per window).
    pub fn answered(&mut self, flood_key: &str, answer: Option<Grant>, now_ms: f64) -> bool {
        let hash = fnv1a_64(flood_key.as_bytes());
        match (self.shared.as_mut(), answer) {
            (Some(cache), Some(grant)) => {
                cache.answered(hash, grant, now_ms);
                false
            }
            (Some(cache), None) => cache.failed(hash, now_ms),
            (None, _) => false,
        }
    }

    /// Flood control for one event of `flood_key`; a refusal is counted.
    fn flood(
        &mut self,
        now_ms: f64,
        category: &'static str,
        flood_key: &str,
    ) -> Result<Admitted, Reason> {
        // The shared cap is for failure groups (errors); a transaction's route is capped here.
        let decision = match self.shared.as_mut().filter(|_| category == CATEGORY_ERROR) {
            Some(cache) => cache.decide(fnv1a_64(flood_key.as_bytes()), now_ms),
            None => CacheDecision::Local,
        };
        let allowed = match decision {
            CacheDecision::Granted => true,
            CacheDecision::Refused => false,
            CacheDecision::Ask => return Ok(Admitted::AfterAsking { ask: true }),
            CacheDecision::Wait => return Ok(Admitted::AfterAsking { ask: false }),
            CacheDecision::Local => self.flood.allow(flood_key, now_ms),
        };
        if allowed {
            Ok(Admitted::Now)
        } else {
            self.record(Reason::Backpressure, category, 1);
            Err(Reason::Backpressure)
        }
    }

    /// An event admitted [`Admitted::AfterAsking`], decided again once the question was
    /// answered (or waited for): `Now` sends it; `AfterAsking` asks or waits once more.
    pub fn decide_again(
        &mut self,
        now_ms: f64,
        category: &'static str,
        flood_key: &str,
    ) -> Result<Admitted, Reason> {
        self.flood(now_ms, category, flood_key)
    }

    /// Decides whether an event of `category` goes ahead: sampling first, then rate limits,
    /// then flood control for `flood_key` (`None`: not capped). A refusal is counted.
    pub fn admit(
        &mut self,
        now_ms: f64,
        category: &'static str,
        sampled: bool,
        flood_key: Option<&str>,
    ) -> Result<Admitted, Reason> {
        let refused = if !sampled {
            Reason::SampleRate
        } else if self.limits.is_limited(category, now_ms) {
            Reason::RatelimitBackoff
        } else {
            return match flood_key {
                Some(key) => self.flood(now_ms, category, key),
                None => Ok(Admitted::Now),
            };
        };
        self.record(refused, category, 1);
        Err(refused)
    }

    /// Counts `quantity` items of `category` as dropped; a transaction's spans are counted
    /// with it (category `span`), as Sentry's client-report spec asks.
    pub fn record(&mut self, reason: Reason, category: &'static str, quantity: u64) {
        self.pending.add(reason, category, quantity);
        if category == CATEGORY_TRANSACTION {
            let spans = quantity.saturating_mul(SPANS_PER_TRANSACTION);
            self.pending.add(reason, CATEGORY_SPAN, spans);
        }
    }

    /// Takes the pending counts to send with an envelope (`None` when there are none).
    pub fn take(&mut self) -> Option<Discards> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }

    /// Gives back counts whose envelope did not arrive.
    pub fn give_back(&mut self, discards: Discards) {
        self.pending.merge(discards);
    }

    /// Whether a standalone flush should be scheduled now: there are counts and none is
    /// scheduled yet. Marks one as scheduled.
    pub fn wants_flush(&mut self) -> bool {
        if self.pending.is_empty() || self.flush_scheduled {
            return false;
        }
        self.flush_scheduled = true;
        true
    }

    /// The scheduled flush ran: takes what is still pending (an envelope may have carried it).
    pub fn flush_due(&mut self) -> Option<Discards> {
        self.flush_scheduled = false;
        self.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentry::floodcap::{GrantCache, LocalOnly};
    use crate::sentry::ratelimit::{CATEGORY_ERROR, CATEGORY_FEEDBACK};

    const NOW: f64 = 1_795_521_600_000.0;

    #[test]
    fn client_report_bytes() {
        let mut d = Discards::new();
        d.add(Reason::Backpressure, CATEGORY_ERROR, 3);
        d.add(Reason::SampleRate, CATEGORY_ERROR, 1);
        d.add(Reason::Backpressure, CATEGORY_ERROR, 2);
        d.add(Reason::NetworkError, CATEGORY_FEEDBACK, 0);
        assert_eq!(
            d.client_report(NOW + 999.0).to_string(),
            r#"{"discarded_events":[{"category":"error","quantity":5,"reason":"backpressure"},{"category":"error","quantity":1,"reason":"sample_rate"}],"timestamp":1795521600}"#
        );
        assert_eq!(d.total(Reason::Backpressure), 5);
    }

    #[test]
    fn reasons_for_answers() {
        assert_eq!(Reason::for_status(200), None);
        assert_eq!(Reason::for_status(202), None);
        assert_eq!(Reason::for_status(429), Some(Reason::RatelimitBackoff));
        assert_eq!(Reason::for_status(413), Some(Reason::SendError));
        assert_eq!(Reason::for_status(500), Some(Reason::SendError));
    }

    #[test]
    fn flood_gate_caps_per_key_per_window() {
        let mut gate = FloodGate::new(3);
        let (a, b) = ("500\nGET\n/a", "502\nGET\n/a");
        let allowed: Vec<bool> = (0..5).map(|i| gate.allow(a, NOW + f64::from(i))).collect();
        assert_eq!(allowed, [true, true, true, false, false]);
        assert!(gate.allow(b, NOW), "another key has its own cap");
        assert!(!gate.allow(a, NOW + 59_999.0));
        assert!(gate.allow(a, NOW + 60_000.0), "a new window");
        assert!(FloodGate::new(0).allow(a, NOW), "0: no cap");
    }

    #[test]
    fn flood_gate_memory_is_bounded() {
        let mut gate = FloodGate::new(1);
        for i in 0..1000 {
            assert!(gate.allow(&format!("k{i}"), NOW + f64::from(i)));
        }
        assert_eq!(gate.windows.len(), MAX_FLOOD_KEYS);
        assert!(
            !gate.allow("k999", NOW + 1000.0),
            "recent keys are remembered"
        );
    }

    #[test]
    fn sampling() {
        assert!(sampled(1.0, None));
        assert!(!sampled(0.0, Some(0)));
        assert!(sampled(0.5, Some(0)));
        assert!(sampled(0.5, Some(u32::MAX / 2 - 1)));
        assert!(!sampled(0.5, Some(u32::MAX / 2 + 1)));
        assert!(!sampled(0.25, Some(u32::MAX)));
        assert!(sampled(0.25, None), "no randomness: fail open");
        assert!(!needs_draw(1.0) && !needs_draw(0.0) && needs_draw(0.1));
        let kept = (0..1000u32)
            .filter(|i| sampled(0.3, Some(i.wrapping_mul(4_294_967))))
            .count();
        assert!((290..=310).contains(&kept), "{kept}");
    }

    #[test]
    fn admit_orders_and_counts_its_refusals() {
        let mut r: Reporter<LocalOnly> = Reporter::new(2);
        assert_eq!(
            r.admit(NOW, CATEGORY_ERROR, false, Some("k")),
            Err(Reason::SampleRate)
        );
        assert_eq!(
            r.admit(NOW, CATEGORY_ERROR, true, Some("k")),
            Ok(Admitted::Now)
        );
        assert_eq!(
            r.admit(NOW, CATEGORY_ERROR, true, Some("k")),
            Ok(Admitted::Now)
        );
        assert_eq!(
            r.admit(NOW, CATEGORY_ERROR, true, Some("k")),
            Err(Reason::Backpressure)
        );
        r.limits.update(NOW, 429, Some("2:error:key"), None);
        assert_eq!(
            r.admit(NOW + 1000.0, CATEGORY_ERROR, true, Some("other")),
            Err(Reason::RatelimitBackoff)
        );
        assert_eq!(
            r.admit(NOW + 1000.0, CATEGORY_FEEDBACK, true, None),
            Ok(Admitted::Now),
            "the limit was for errors only"
        );
        assert_eq!(
            r.admit(NOW + 2000.0, CATEGORY_ERROR, true, Some("other")),
            Ok(Admitted::Now)
        );
        let taken = r.take().unwrap();
        assert_eq!(
            taken.client_report(NOW).to_string(),
            r#"{"discarded_events":[{"category":"error","quantity":1,"reason":"sample_rate"},{"category":"error","quantity":1,"reason":"backpressure"},{"category":"error","quantity":1,"reason":"ratelimit_backoff"}],"timestamp":1795521600}"#
        );
        assert_eq!(r.take(), None);
    }

    #[test]
    fn the_shared_cap_admits_from_cached_grants_and_asks_after_the_page() {
        let mut r: Reporter<GrantCache> = Reporter::new(10);
        r.share_the_cap(GrantCache::new());
        let key = "500\nGET\n/a";
        assert_eq!(
            r.grant_ask(key).url(),
            "https://floodcap/v1/grant?group=3cfa6a68d0a78024&want=2&cap=10"
        );
        // Nothing cached: the first asks, the next waits for its answer; neither page has an id.
        let admit = |r: &mut Reporter<GrantCache>, t: f64| {
            r.admit(NOW + t, CATEGORY_ERROR, true, Some(key))
        };
        assert_eq!(admit(&mut r, 0.0), Ok(Admitted::AfterAsking { ask: true }));
        assert_eq!(admit(&mut r, 1.0), Ok(Admitted::AfterAsking { ask: false }));
        let grant = |granted, left| Grant {
            granted,
            left,
            ttl_ms: 30_000,
        };
        assert!(!r.answered(key, Some(grant(2, 8)), NOW + 10.0));
        // The asker and the waiter take the batch after the page.
        assert_eq!(
            r.decide_again(NOW + 11.0, CATEGORY_ERROR, key),
            Ok(Admitted::Now)
        );
        assert_eq!(
            r.decide_again(NOW + 12.0, CATEGORY_ERROR, key),
            Ok(Admitted::Now)
        );
        // Batch used: the next asks again; the object has 1 left for the window.
        assert_eq!(admit(&mut r, 20.0), Ok(Admitted::AfterAsking { ask: true }));
        r.answered(key, Some(grant(1, 0)), NOW + 30.0);
        assert_eq!(
            r.decide_again(NOW + 31.0, CATEGORY_ERROR, key),
            Ok(Admitted::Now)
        );
        // Cap used up across isolates: refused at once, counted as backpressure.
        assert_eq!(admit(&mut r, 40.0), Err(Reason::Backpressure));
        assert_eq!(admit(&mut r, 50.0), Err(Reason::Backpressure));
        assert_eq!(r.take().unwrap().total(Reason::Backpressure), 2);
        // The window over, a new answer caches a grant that admits before the page (id shown).
        assert_eq!(
            admit(&mut r, 30_040.0),
            Ok(Admitted::AfterAsking { ask: true })
        );
        r.answered(key, Some(grant(2, 4)), NOW + 30_050.0);
        assert_eq!(
            r.decide_again(NOW + 30_051.0, CATEGORY_ERROR, key),
            Ok(Admitted::Now)
        );
        assert_eq!(admit(&mut r, 30_052.0), Ok(Admitted::Now));
    }

    #[test]
    fn without_an_answer_the_local_cap_decides_for_the_window() {
        let mut r: Reporter<GrantCache> = Reporter::new(2);
        r.share_the_cap(GrantCache::new());
        let key = "k";
        assert_eq!(
            r.admit(NOW, CATEGORY_ERROR, true, Some(key)),
            Ok(Admitted::AfterAsking { ask: true })
        );
        assert!(
            r.answered(key, None, NOW + 1000.0),
            "the fallback is logged"
        );
        let again =
            |r: &mut Reporter<GrantCache>, t: f64| r.decide_again(NOW + t, CATEGORY_ERROR, key);
        assert_eq!(again(&mut r, 1001.0), Ok(Admitted::Now));
        assert_eq!(
            r.admit(NOW + 1002.0, CATEGORY_ERROR, true, Some(key)),
            Ok(Admitted::Now),
            "decided at once by the local cap"
        );
        assert_eq!(again(&mut r, 1003.0), Err(Reason::Backpressure));
        assert_eq!(r.take().unwrap().total(Reason::Backpressure), 1);
        assert_eq!(
            r.admit(NOW + 61_000.0, CATEGORY_ERROR, true, Some(key)),
            Ok(Admitted::AfterAsking { ask: true }),
            "the next window asks the object again"
        );
    }

    #[test]
    fn no_cap_shares_nothing() {
        let mut r: Reporter<GrantCache> = Reporter::new(0);
        r.share_the_cap(GrantCache::new());
        for _ in 0..100 {
            assert_eq!(
                r.admit(NOW, CATEGORY_ERROR, true, Some("k")),
                Ok(Admitted::Now)
            );
        }
    }

    #[test]
    fn counts_are_flushed_once_and_given_back_on_failure() {
        let mut r: Reporter<LocalOnly> = Reporter::new(1);
        assert!(!r.wants_flush(), "nothing to flush");
        r.record(Reason::SampleRate, CATEGORY_ERROR, 2);
        assert!(r.wants_flush());
        assert!(!r.wants_flush(), "one flush at a time");
        let carried = r.take().unwrap();
        assert_eq!(r.flush_due(), None, "an envelope carried them");
        r.give_back(carried);
        r.record(Reason::SampleRate, CATEGORY_ERROR, 1);
        assert!(r.wants_flush());
        assert_eq!(r.flush_due().unwrap().total(Reason::SampleRate), 3);
    }

    #[test]
    fn gzip_only_when_smaller() {
        assert!(gzip_pays(1000, 400));
        assert!(!gzip_pays(100, 118));
    }
}
