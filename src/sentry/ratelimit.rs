//! Sentry's rate limits, remembered for the whole isolate.
//!
//! Sentry tells a client to back off in two ways (develop.sentry.dev, "Rate Limiting"):
//! `X-Sentry-Rate-Limits: <seconds>:<categories>:<scope>[:<reason>[:<namespaces>]], …` on any
//! response, 200 included, and `Retry-After: <seconds>` (with a 429, or alone). A bare 429
//! blocks every category for 60 s. The JS SDKs build a new transport per request in a Worker and
//! so forget these between requests; an isolate serves many requests, so edgeguard keeps them in
//! one [`RateLimits`] per isolate and drops events (without a request) while they apply.
//!
//! [`RateLimits::update`] also says which limits an answer *started or extended* for the
//! categories edgeguard sends ([`SENT_CATEGORIES`]), so the edge logs a limit once, naming its
//! categories, and stays quiet about limits on what it never sends: Bugsink answers every
//! envelope with `X-Sentry-Rate-Limits: 86400:transaction;span:organization` (it takes no
//! performance data), which must not read as "events are dropped".
//!
//! Time is passed in (epoch milliseconds), so every rule is tested on the host.

use std::fmt;

/// A 429 without either header blocks everything for this long.
pub const DEFAULT_RETRY_AFTER_MS: f64 = 60_000.0;
/// Categories remembered at once: Sentry names a handful; a hostile or broken header cannot
/// grow the isolate's memory beyond this.
const MAX_CATEGORIES: usize = 32;
/// A longer backoff than a day is treated as a day: a typo upstream must not silence an
/// isolate for ever (isolates rarely live that long anyway).
const MAX_RETRY_AFTER_MS: f64 = 86_400_000.0;

/// The data category of an error event.
pub const CATEGORY_ERROR: &str = "error";
/// The data category of a user feedback item.
pub const CATEGORY_FEEDBACK: &str = "feedback";
/// The data category of a client report sent alone (Sentry counts `client_report` items as
/// `internal`).
pub const CATEGORY_INTERNAL: &str = "internal";
/// The data category of a transaction (`SENTRY_TRACES_SAMPLE_RATE`), and of the spans in it.
/// A limit on them is obeyed (transactions are dropped and counted) but not logged: Bugsink,
/// for one, answers every envelope with a day-long `transaction;span` limit, since it takes no
/// performance data, and events must not read as dropped.
pub const CATEGORY_TRANSACTION: &str = "transaction";
pub const CATEGORY_SPAN: &str = "span";
/// Every category whose limits edgeguard logs, in the order a log line names them. A limit on
/// another category (`session`, ...) changes nothing edgeguard does.
pub const SENT_CATEGORIES: [&str; 3] = [CATEGORY_ERROR, CATEGORY_FEEDBACK, CATEGORY_INTERNAL];
/// Deadlines within this much of the one already in force are the same limit announced again:
/// the header counts whole seconds, rounded up, so a re-announcement can land up to 1 s later.
const SAME_LIMIT_SLACK_MS: f64 = 1000.0;

/// One group of `X-Sentry-Rate-Limits`: how long, and for which categories (empty: all).
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub retry_after_ms: f64,
    pub categories: Vec<String>,
}

/// Parses `X-Sentry-Rate-Limits`. Groups that cannot be read are skipped (the others still
/// apply); scope, reason code and namespaces do not change what edgeguard sends and are ignored.
pub fn parse_rate_limits(header: &str) -> Vec<Limit> {
    header
        .split(',')
        .filter_map(|group| {
            let mut fields = group.trim().split(':');
            let seconds = parse_seconds(fields.next()?)?;
            let categories = fields
                .next()
                .unwrap_or("")
                .split(';')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_ascii_lowercase)
                .collect();
            Some(Limit {
                retry_after_ms: seconds * 1000.0,
                categories,
            })
        })
        .collect()
}

/// `Retry-After` as whole seconds, a fraction rounded up (never retry early). The HTTP-date form
/// is not read: Sentry sends seconds, and an unreadable value on a 429 falls back to the 60 s
/// default. Negative, infinite and NaN values are unreadable.
fn parse_seconds(raw: &str) -> Option<f64> {
    // Microseconds, so that a fraction of a millisecond still rounds up to a whole second.
    let micros = crate::decimal::parse_fixed(raw, 6)?;
    Some(micros.div_ceil(1_000_000) as f64)
}

/// A limit that one answer started, or moved later, for a category edgeguard sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NewLimit {
    /// One of [`SENT_CATEGORIES`].
    pub category: &'static str,
    /// Until when (epoch ms) items of `category` are dropped.
    pub until_ms: f64,
    /// How long that is from the answer, in whole seconds, rounded up.
    pub seconds: u64,
}

/// What one answer from Sentry changed for the categories edgeguard sends: each category newly
/// limited, or limited for more than a second longer than before. Nothing (`is_empty`) when
/// nothing changed that matters: no limit, a limit only on categories edgeguard never sends,
/// or the limit already in force announced again.
///
/// Its `Display` is the log line (without the `edgeguard: ` prefix), e.g. `Sentry rate-limits
/// error for 60 s (until 2026-11-24T12:01:00.000Z); those events are dropped until then`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewLimits {
    /// When the answer was read (epoch ms).
    now_ms: f64,
    /// Per category of [`SENT_CATEGORIES`], in that order: its new deadline (epoch ms), or 0
    /// when this answer did not start or extend one.
    until_ms: [f64; SENT_CATEGORIES.len()],
}

impl NewLimits {
    pub fn is_empty(&self) -> bool {
        self.until_ms.iter().all(|&until| until <= 0.0)
    }

    /// The new limits, in [`SENT_CATEGORIES`] order.
    pub fn iter(&self) -> impl Iterator<Item = NewLimit> + '_ {
        SENT_CATEGORIES
            .iter()
            .zip(self.until_ms.iter())
            .filter(|(_, until)| **until > 0.0)
            .map(|(&category, &until_ms)| NewLimit {
                category,
                until_ms,
                seconds: self.seconds_to(until_ms),
            })
    }

    fn seconds_to(&self, until_ms: f64) -> u64 {
        ((until_ms - self.now_ms) / 1000.0).ceil() as u64
    }

    fn write_deadline(&self, f: &mut fmt::Formatter<'_>, until_ms: f64) -> fmt::Result {
        write!(
            f,
            " for {} s (until {})",
            self.seconds_to(until_ms),
            crate::sentry::time::rfc3339_millis(until_ms)
        )
    }
}

impl fmt::Display for NewLimits {
    /// Neighbouring categories with the same deadline are named together. Call it only when
    /// not `is_empty`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sentry rate-limits ")?;
        let [error, feedback, internal] = self.until_ms;
        let [error_name, feedback_name, internal_name] = SENT_CATEGORIES;
        let mut previous = 0.0;
        for (category, until) in [
            (error_name, error),
            (feedback_name, feedback),
            (internal_name, internal),
        ] {
            if until <= 0.0 {
                continue;
            }
            if previous > 0.0 {
                if previous != until {
                    self.write_deadline(f, previous)?;
                }
                f.write_str(", ")?;
            }
            f.write_str(category)?;
            previous = until;
        }
        if previous > 0.0 {
            self.write_deadline(f, previous)?;
        }
        f.write_str("; those events are dropped until then")
    }
}

/// The deadlines in force: for all categories, and per category.
#[derive(Debug, Default, Clone)]
pub struct RateLimits {
    all_until_ms: f64,
    by_category: Vec<(String, f64)>,
}

impl RateLimits {
    pub const fn new() -> Self {
        RateLimits {
            all_until_ms: 0.0,
            by_category: Vec::new(),
        }
    }

    /// Reads one response from Sentry: its status and the two headers, if present. The longest
    /// deadline per category wins (a shorter limit never lifts a longer one). Returns the
    /// limits this answer started or extended for the categories edgeguard sends (see
    /// [`NewLimits`]): what the edge logs, once per limit.
    pub fn update(
        &mut self,
        now_ms: f64,
        status: u16,
        rate_limits: Option<&str>,
        retry_after: Option<&str>,
    ) -> NewLimits {
        let [error, feedback, internal] = self.sent_deadlines();
        self.apply(now_ms, status, rate_limits, retry_after);
        let [error_now, feedback_now, internal_now] = self.sent_deadlines();
        // A deadline is news if there was none in force, or it is more than the header's
        // rounding later than the one in force.
        let news = |before: f64, until: f64| {
            let was_limited = before > now_ms;
            if until > now_ms && (!was_limited || until > before + SAME_LIMIT_SLACK_MS) {
                until
            } else {
                0.0
            }
        };
        NewLimits {
            now_ms,
            until_ms: [
                news(error, error_now),
                news(feedback, feedback_now),
                news(internal, internal_now),
            ],
        }
    }

    /// The deadline of each of [`SENT_CATEGORIES`], in that order. (Spelled out: a loop over
    /// the array, zipped, cost some hundred bytes of wasm more.)
    fn sent_deadlines(&self) -> [f64; SENT_CATEGORIES.len()] {
        let [error, feedback, internal] = SENT_CATEGORIES;
        [
            self.until_ms(error),
            self.until_ms(feedback),
            self.until_ms(internal),
        ]
    }

    /// Records the deadlines of one answer.
    fn apply(
        &mut self,
        now_ms: f64,
        status: u16,
        rate_limits: Option<&str>,
        retry_after: Option<&str>,
    ) {
        if let Some(header) = rate_limits.filter(|h| !h.trim().is_empty()) {
            let limits = parse_rate_limits(header);
            for limit in &limits {
                let until = now_ms + limit.retry_after_ms.min(MAX_RETRY_AFTER_MS);
                if limit.categories.is_empty() {
                    self.all_until_ms = self.all_until_ms.max(until);
                }
                for category in &limit.categories {
                    self.extend(category, until);
                }
            }
            if !limits.is_empty() {
                return;
            }
        }
        let retry_after_ms = match (retry_after.and_then(parse_seconds), status) {
            (Some(seconds), _) => seconds * 1000.0,
            (None, 429) => DEFAULT_RETRY_AFTER_MS,
            (None, _) => return,
        };
        let until = now_ms + retry_after_ms.min(MAX_RETRY_AFTER_MS);
        self.all_until_ms = self.all_until_ms.max(until);
    }

    fn extend(&mut self, category: &str, until: f64) {
        if let Some((_, deadline)) = self.by_category.iter_mut().find(|(c, _)| c == category) {
            *deadline = deadline.max(until);
            return;
        }
        if self.by_category.len() >= MAX_CATEGORIES {
            // Make room by forgetting the soonest deadline; if that is later than this one,
            // keep it instead.
            let soonest = self
                .by_category
                .iter()
                .enumerate()
                .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
                .map(|(i, (_, d))| (i, *d));
            match soonest {
                Some((i, deadline)) if deadline < until => {
                    self.by_category.swap_remove(i);
                }
                _ => return,
            }
        }
        self.by_category.push((category.to_owned(), until));
    }

    /// Until when `category` is blocked (epoch ms; in the past when it is not).
    pub fn until_ms(&self, category: &str) -> f64 {
        let own = self
            .by_category
            .iter()
            .find(|(c, _)| c == category)
            .map_or(0.0, |(_, d)| *d);
        own.max(self.all_until_ms)
    }

    /// Whether an item of `category` must be dropped at `now_ms`.
    pub fn is_limited(&self, category: &str, now_ms: f64) -> bool {
        self.until_ms(category) > now_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_795_521_600_000.0;

    /// The limits expected from an answer read at `NOW`: (category, seconds).
    fn new(limits: &[(&'static str, f64)]) -> Vec<NewLimit> {
        limits
            .iter()
            .map(|&(category, seconds)| NewLimit {
                category,
                until_ms: NOW + seconds * 1000.0,
                seconds: seconds as u64,
            })
            .collect()
    }

    fn got(new: NewLimits) -> Vec<NewLimit> {
        new.iter().collect()
    }

    /// The log line for limits set by an answer read at `NOW`: (category, seconds).
    fn line(limits: &[(&'static str, f64)]) -> String {
        let mut new = NewLimits {
            now_ms: NOW,
            until_ms: [0.0; SENT_CATEGORIES.len()],
        };
        for (slot, category) in new.until_ms.iter_mut().zip(SENT_CATEGORIES) {
            if let Some((_, seconds)) = limits.iter().find(|(c, _)| *c == category) {
                *slot = NOW + seconds * 1000.0;
            }
        }
        assert!(!new.is_empty());
        new.to_string()
    }

    fn limit(seconds: f64, categories: &[&str]) -> Limit {
        Limit {
            retry_after_ms: seconds * 1000.0,
            categories: categories.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    #[test]
    fn parses_the_documented_examples() {
        // The header examples Sentry's SDKs test against (sentry-java, sentry-dart, sentry-php,
        // sentry-dotnet, sentry-rust); "50::key" applies to every category.
        assert_eq!(
            parse_rate_limits("60:transaction:key, 2700:default;error;security:organization"),
            [
                limit(60.0, &["transaction"]),
                limit(2700.0, &["default", "error", "security"])
            ]
        );
        assert_eq!(
            parse_rate_limits("2700:metric_bucket:organization:quota_exceeded:custom"),
            [limit(2700.0, &["metric_bucket"])]
        );
        assert_eq!(
            parse_rate_limits("120:error:project:reason, 60:session:foo"),
            [limit(120.0, &["error"]), limit(60.0, &["session"])]
        );
        assert_eq!(
            parse_rate_limits("30::bar, 120:invalid:invalid"),
            [limit(30.0, &[]), limit(120.0, &["invalid"])]
        );
        assert_eq!(parse_rate_limits("50::key"), [limit(50.0, &[])]);
        assert_eq!(
            parse_rate_limits("4711:foo;bar;baz;security:project"),
            [limit(4711.0, &["foo", "bar", "baz", "security"])]
        );
    }

    #[test]
    fn unreadable_groups_are_skipped() {
        assert_eq!(
            parse_rate_limits("soon:error:key, 10:error:key, -5::org, :x"),
            [limit(10.0, &["error"])]
        );
        assert_eq!(parse_rate_limits(""), []);
        // Fractions round up: never retry early.
        assert_eq!(parse_rate_limits("1.2:Error"), [limit(2.0, &["error"])]);
    }

    #[test]
    fn category_limits_apply_to_their_category_only() {
        let mut limits = RateLimits::new();
        assert_eq!(
            got(limits.update(
                NOW,
                200,
                Some("60:transaction:key, 2700:default;error;security:organization"),
                None
            )),
            new(&[("error", 2700.0)])
        );
        assert!(limits.is_limited("error", NOW + 2_699_000.0));
        assert!(!limits.is_limited("error", NOW + 2_700_000.0));
        assert!(limits.is_limited("transaction", NOW + 59_000.0));
        assert!(!limits.is_limited("transaction", NOW + 60_000.0));
        assert!(!limits.is_limited("feedback", NOW));
    }

    #[test]
    fn empty_categories_block_everything() {
        let mut limits = RateLimits::new();
        assert_eq!(
            got(limits.update(NOW, 429, Some("30::organization"), Some("999"))),
            new(&[("error", 30.0), ("feedback", 30.0), ("internal", 30.0)])
        );
        assert!(limits.is_limited("error", NOW + 29_999.0));
        assert!(limits.is_limited("feedback", NOW + 29_999.0));
        // The rate-limit header wins over Retry-After when both are sent.
        assert!(!limits.is_limited("error", NOW + 30_000.0));
    }

    #[test]
    fn the_longest_deadline_wins() {
        let mut limits = RateLimits::new();
        limits.update(NOW, 429, Some("120:error:key"), None);
        limits.update(NOW + 1000.0, 200, Some("5:error:key"), None);
        assert!(limits.is_limited("error", NOW + 119_000.0));
        assert!(!limits.is_limited("error", NOW + 120_000.0));
    }

    #[test]
    fn a_bare_429_blocks_all_for_60_seconds() {
        let mut limits = RateLimits::new();
        assert_eq!(
            got(limits.update(NOW, 429, None, None)),
            new(&[("error", 60.0), ("feedback", 60.0), ("internal", 60.0)])
        );
        assert!(limits.is_limited("error", NOW + 59_999.0));
        assert!(!limits.is_limited("error", NOW + 60_000.0));
        let mut limits = RateLimits::new();
        limits.update(NOW, 429, Some("  "), Some("not a number"));
        assert_eq!(limits.until_ms("feedback"), NOW + 60_000.0);
    }

    #[test]
    fn retry_after_applies_to_all_categories() {
        let mut limits = RateLimits::new();
        assert_eq!(
            got(limits.update(NOW, 429, None, Some("2"))),
            new(&[("error", 2.0), ("feedback", 2.0), ("internal", 2.0)])
        );
        assert_eq!(limits.until_ms("error"), NOW + 2000.0);
        let mut limits = RateLimits::new();
        assert_eq!(got(limits.update(NOW, 503, None, Some("7"))).len(), 3);
        assert_eq!(limits.until_ms("error"), NOW + 7000.0);
    }

    #[test]
    fn a_plain_answer_sets_nothing() {
        let mut limits = RateLimits::new();
        assert_eq!(got(limits.update(NOW, 200, None, None)), []);
        assert_eq!(got(limits.update(NOW, 500, Some(""), Some("soon"))), []);
        assert!(!limits.is_limited("error", NOW));
    }

    #[test]
    fn bugsinks_transaction_and_span_limit_on_a_200_says_nothing() {
        // Bugsink 2.6 sends this on every envelope answer: it takes no performance data.
        // edgeguard sends neither category, so nothing is new and nothing is logged, however
        // often it comes.
        let header = Some("86400:transaction;span:organization");
        let mut limits = RateLimits::new();
        assert!(limits.update(NOW, 200, header, None).is_empty());
        assert_eq!(got(limits.update(NOW + 5_000.0, 200, header, None)), []);
        assert!(!limits.is_limited("error", NOW));
        assert!(!limits.is_limited("feedback", NOW));
        assert!(!limits.is_limited("internal", NOW));
        assert!(limits.is_limited("transaction", NOW + 86_399_000.0));
    }

    #[test]
    fn only_the_categories_edgeguard_sends_are_named() {
        let mut limits = RateLimits::new();
        assert_eq!(
            got(limits.update(
                NOW,
                429,
                Some("120:error;transaction;span:organization"),
                None
            )),
            new(&[("error", 120.0)])
        );
        let mut limits = RateLimits::new();
        assert_eq!(
            got(limits.update(NOW, 200, Some("10:feedback:key, 10:session:key"), None)),
            new(&[("feedback", 10.0)])
        );
        let mut limits = RateLimits::new();
        assert_eq!(
            got(limits.update(NOW, 200, Some("10:internal;default:key"), None)),
            new(&[("internal", 10.0)])
        );
        // Case does not matter in the header.
        let mut limits = RateLimits::new();
        assert_eq!(
            got(limits.update(NOW, 200, Some("10:Error:key"), None)),
            new(&[("error", 10.0)])
        );
    }

    #[test]
    fn a_limit_is_new_once_not_once_per_answer() {
        let mut limits = RateLimits::new();
        assert_eq!(
            got(limits.update(NOW, 429, Some("60:error:key"), None)),
            new(&[("error", 60.0)])
        );
        // The same limit announced again by a later answer (a client report's, say) ends at
        // the same moment, give or take the header's whole-second rounding: nothing new.
        assert_eq!(
            got(limits.update(NOW + 10_000.0, 200, Some("50:error:key"), None)),
            []
        );
        assert_eq!(
            got(limits.update(NOW + 10_500.0, 200, Some("50:error:key"), None)),
            []
        );
        // A shorter one changes nothing either.
        assert_eq!(
            got(limits.update(NOW + 10_000.0, 200, Some("5:error:key"), None)),
            []
        );
        // A longer deadline is news: reported with the new end.
        assert_eq!(
            got(limits.update(NOW + 30_000.0, 200, Some("90:error:key"), None)),
            [NewLimit {
                category: "error",
                until_ms: NOW + 120_000.0,
                seconds: 90,
            }]
        );
        // Once a limit has ended, the same header starts a new one.
        assert_eq!(
            got(limits.update(NOW + 120_000.0, 429, Some("60:error:key"), None)),
            [NewLimit {
                category: "error",
                until_ms: NOW + 180_000.0,
                seconds: 60,
            }]
        );
    }

    #[test]
    fn a_limit_on_everything_names_only_what_it_newly_covers() {
        let mut limits = RateLimits::new();
        limits.update(NOW, 429, Some("120:error:key"), None);
        // A bare 429 limits everything for 60 s: error is already limited for longer, so only
        // feedback and internal are new.
        assert_eq!(
            got(limits.update(NOW, 429, None, None)),
            new(&[("feedback", 60.0), ("internal", 60.0)])
        );
    }

    #[test]
    fn the_log_line_names_categories_and_deadlines() {
        assert_eq!(
            line(&[("error", 60.0)]),
            "Sentry rate-limits error for 60 s (until 2026-11-24T12:01:00.000Z); \
             those events are dropped until then"
        );
        assert_eq!(
            line(&[("error", 60.0), ("feedback", 60.0), ("internal", 60.0)]),
            "Sentry rate-limits error, feedback, internal for 60 s \
             (until 2026-11-24T12:01:00.000Z); those events are dropped until then"
        );
        assert_eq!(
            line(&[("error", 2700.0), ("feedback", 2700.0), ("internal", 60.0)]),
            "Sentry rate-limits error, feedback for 2700 s (until 2026-11-24T12:45:00.000Z), \
             internal for 60 s (until 2026-11-24T12:01:00.000Z); those events are dropped until then"
        );
        // Only neighbours share a deadline in the line.
        assert_eq!(
            line(&[("error", 2700.0), ("feedback", 60.0), ("internal", 2700.0)]),
            "Sentry rate-limits error for 2700 s (until 2026-11-24T12:45:00.000Z), \
             feedback for 60 s (until 2026-11-24T12:01:00.000Z), \
             internal for 2700 s (until 2026-11-24T12:45:00.000Z); those events are dropped until then"
        );
        // The header's fractions round up to whole seconds, counted from the answer.
        let mut limits = RateLimits::new();
        let line = limits
            .update(NOW + 400.0, 200, Some("1.2:error:key"), None)
            .to_string();
        assert_eq!(
            line,
            "Sentry rate-limits error for 2 s (until 2026-11-24T12:00:02.400Z); \
             those events are dropped until then"
        );
    }

    #[test]
    fn memory_is_bounded() {
        let mut limits = RateLimits::new();
        let header: Vec<String> = (0..100).map(|i| format!("{}:c{i}:key", 10 + i)).collect();
        limits.update(NOW, 200, Some(&header.join(",")), None);
        assert_eq!(limits.by_category.len(), MAX_CATEGORIES);
        // The longest deadlines were kept.
        assert!(limits.is_limited("c99", NOW + 108_000.0));
        assert!(!limits.is_limited("c0", NOW));
        // Absurd values are capped at a day.
        limits.update(NOW, 200, Some("99999999:error:key"), None);
        assert_eq!(limits.until_ms("error"), NOW + MAX_RETRY_AFTER_MS);
    }
}
