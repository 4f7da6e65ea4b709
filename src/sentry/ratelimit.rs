//! Sentry's rate limits, remembered for the whole isolate.
//!
//! Sentry tells a client to back off in two ways (develop.sentry.dev, "Rate Limiting"):
//! `X-Sentry-Rate-Limits: <seconds>:<categories>:<scope>[:<reason>[:<namespaces>]], …` on any
//! response, 200 included, and `Retry-After: <seconds>` (with a 429, or alone). A bare 429
//! blocks every category for 60 s. The JS SDKs build a new transport per request in a Worker and
//! so forget these between requests; an isolate serves many requests, so edgeguard keeps them in
//! one [`RateLimits`] per isolate and drops events (without a request) while they apply.
//!
//! Time is passed in (epoch milliseconds), so every rule is tested on the host.

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
    let seconds: f64 = raw.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| seconds.ceil())
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
    /// deadline per category wins (a shorter limit never lifts a longer one). Returns whether
    /// the response set any limit.
    pub fn update(
        &mut self,
        now_ms: f64,
        status: u16,
        rate_limits: Option<&str>,
        retry_after: Option<&str>,
    ) -> bool {
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
                return true;
            }
        }
        let retry_after_ms = match (retry_after.and_then(parse_seconds), status) {
            (Some(seconds), _) => seconds * 1000.0,
            (None, 429) => DEFAULT_RETRY_AFTER_MS,
            (None, _) => return false,
        };
        let until = now_ms + retry_after_ms.min(MAX_RETRY_AFTER_MS);
        self.all_until_ms = self.all_until_ms.max(until);
        true
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
        assert!(limits.update(
            NOW,
            200,
            Some("60:transaction:key, 2700:default;error;security:organization"),
            None
        ));
        assert!(limits.is_limited("error", NOW + 2_699_000.0));
        assert!(!limits.is_limited("error", NOW + 2_700_000.0));
        assert!(limits.is_limited("transaction", NOW + 59_000.0));
        assert!(!limits.is_limited("transaction", NOW + 60_000.0));
        assert!(!limits.is_limited("feedback", NOW));
    }

    #[test]
    fn empty_categories_block_everything() {
        let mut limits = RateLimits::new();
        limits.update(NOW, 429, Some("30::organization"), Some("999"));
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
        assert!(limits.update(NOW, 429, None, None));
        assert!(limits.is_limited("error", NOW + 59_999.0));
        assert!(!limits.is_limited("error", NOW + 60_000.0));
        let mut limits = RateLimits::new();
        limits.update(NOW, 429, Some("  "), Some("not a number"));
        assert_eq!(limits.until_ms("feedback"), NOW + 60_000.0);
    }

    #[test]
    fn retry_after_applies_to_all_categories() {
        let mut limits = RateLimits::new();
        assert!(limits.update(NOW, 429, None, Some("2")));
        assert_eq!(limits.until_ms("error"), NOW + 2000.0);
        let mut limits = RateLimits::new();
        assert!(limits.update(NOW, 503, None, Some("7")));
        assert_eq!(limits.until_ms("error"), NOW + 7000.0);
    }

    #[test]
    fn a_plain_answer_sets_nothing() {
        let mut limits = RateLimits::new();
        assert!(!limits.update(NOW, 200, None, None));
        assert!(!limits.update(NOW, 500, Some(""), Some("soon")));
        assert!(!limits.is_limited("error", NOW));
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
