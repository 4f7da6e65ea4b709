//! The flood cap shared by every isolate (the `flood-cap` feature, a Durable Object bound as
//! `EDGEGUARD_FLOOD`): the object's bookkeeping, the isolate's cache of what it was granted, and
//! the wire between them. Plain data and decisions; the edge (`edge::floodcap`) carries them.
//!
//! Flood control per isolate caps events per failure group per minute *per isolate*; a site in
//! hundreds of locations with many isolates each sends hundreds of times the cap in an outage.
//! With the shared cap one object per failure group ([`group_name`], `id_from_name`) holds the
//! minute's count for every isolate ([`GrantBook`]), and isolates take grants from it in batches
//! ([`batch`]: a fifth of the cap, at least 1) so that no isolate hoards the whole cap, and an
//! isolate asks at most once per batch per group per window ([`GrantCache`]).
//!
//! The wire: `GET /v1/grant?group=<group>&want=<n>&cap=<cap>` on the object's stub
//! ([`GrantAsk`]), answered with the header `Edgeguard-Grant: v1 <granted> <left> <ttl_ms>`
//! ([`Grant`]): how many were granted, how many are left for the window, and when the window
//! ends. A grant cached in the isolate lets an event be admitted before the page (the page shows
//! its id); without one the event is decided after the page, once the object answered, and its
//! page shows no id: an id on a page is always one that is sent.

use crate::fnv::fnv1a_64;
use crate::sentry::delivery::FLOOD_WINDOW_MS;
use std::fmt;

/// The response header that carries the object's answer.
pub const GRANT_HEADER: &str = "edgeguard-grant";
/// The path the object answers.
pub const GRANT_PATH: &str = "/v1/grant";
/// Groups tracked at once by one object (one group per object in practice) and by one isolate's
/// cache; beyond this the oldest window is forgotten (its cap starts again: never unbounded).
const MAX_GROUPS: usize = 256;
/// The longest group name accepted on the wire.
const MAX_GROUP_LEN: usize = 64;

/// What is wrong with a question or an answer on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    /// Not `GET /v1/grant`.
    Path,
    /// `group` missing, empty, too long or not `[0-9a-z_-]`.
    Group,
    /// `want` or `cap` missing, not a number, or 0.
    Count,
    /// The answer had no `Edgeguard-Grant` header.
    Missing,
    /// The header was not `v1 <granted> <left> <ttl_ms>`.
    Malformed,
}

impl fmt::Display for GrantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GrantError::Path => "not GET /v1/grant",
            GrantError::Group => "group must be 1 to 64 of [0-9a-z_-]",
            GrantError::Count => "want and cap must be whole numbers from 1",
            GrantError::Missing => "no Edgeguard-Grant header in the answer",
            GrantError::Malformed => "Edgeguard-Grant is not `v1 <granted> <left> <ttl_ms>`",
        })
    }
}

/// The object's name for a flood key (the grouping fingerprint): its 64-bit FNV-1a as 16 hex
/// digits. Fixed length, and no path or message leaves the isolate in an object name.
pub fn group_name(key: &str) -> String {
    format!("{:016x}", fnv1a_64(key.as_bytes()))
}

/// How many grants an isolate asks for at once: a fifth of the cap, at least 1. Five isolates
/// can hold the whole cap between them; the sixth is told what is left.
pub fn batch(cap: u32) -> u32 {
    (cap / 5).max(1)
}

/// An isolate's question: up to `want` of `cap` for `group` in the current window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantAsk {
    pub group: String,
    pub want: u32,
    pub cap: u32,
}

impl GrantAsk {
    /// The URL fetched on the object's stub (the host is not looked at).
    pub fn url(&self) -> String {
        format!(
            "https://floodcap{GRANT_PATH}?group={}&want={}&cap={}",
            self.group, self.want, self.cap
        )
    }

    /// Reads a question from the URL the object was fetched with. By hand rather than through
    /// `url` (its parser and `form_urlencoded`'s percent-decoding): the isolate writes these
    /// URLs itself, with nothing to decode (a `%` is refused as a bad group). Measured on the
    /// flood-cap build: `url::Url::parse` + `query_pairs` here cost 760 B gzip (2,294 B raw) of
    /// wasm more than this.
    pub fn from_url(url: &str) -> Result<GrantAsk, GrantError> {
        let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
        let path_and_query = after_scheme
            .find('/')
            .and_then(|at| after_scheme.get(at..))
            .unwrap_or_default();
        let path_and_query = path_and_query.split('#').next().unwrap_or_default();
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        if path != GRANT_PATH {
            return Err(GrantError::Path);
        }
        let (mut group, mut want, mut cap) = (None, None, None);
        for (name, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
            match name {
                "group" => group = Some(value),
                "want" => want = value.parse::<u32>().ok(),
                "cap" => cap = value.parse::<u32>().ok(),
                _ => {}
            }
        }
        let group = group
            .filter(|g| {
                !g.is_empty()
                    && g.len() <= MAX_GROUP_LEN
                    && g.bytes().all(|b| {
                        b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'_' || b == b'-'
                    })
            })
            .ok_or(GrantError::Group)?;
        match (want, cap) {
            (Some(want), Some(cap)) if want > 0 && cap > 0 => Ok(GrantAsk {
                group: group.to_owned(),
                want,
                cap,
            }),
            _ => Err(GrantError::Count),
        }
    }
}

/// The object's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Events the isolate may send in this window (0 to `want`).
    pub granted: u32,
    /// What is left of the cap for the window after this grant.
    pub left: u32,
    /// Milliseconds until the window ends: the grant is good until then.
    pub ttl_ms: u32,
}

impl Grant {
    /// The `Edgeguard-Grant` header value.
    pub fn header_value(&self) -> String {
        format!("v1 {} {} {}", self.granted, self.left, self.ttl_ms)
    }

    /// Reads the `Edgeguard-Grant` header value (`None`: the header was absent).
    pub fn parse(value: Option<&str>) -> Result<Grant, GrantError> {
        let value = value.ok_or(GrantError::Missing)?;
        let mut parts = value.split(' ');
        let version = parts.next();
        let numbers: Option<Vec<u32>> = parts.map(|p| p.parse().ok()).collect();
        match (version, numbers.as_deref()) {
            (Some("v1"), Some(&[granted, left, ttl_ms])) => Ok(Grant {
                granted,
                left,
                ttl_ms,
            }),
            _ => Err(GrantError::Malformed),
        }
    }
}

/// One group's count in the object: the window it is for, what was granted in it, and what was
/// asked for and refused.
#[derive(Debug, Clone, PartialEq)]
struct GroupWindow {
    group: String,
    start: f64,
    granted: u32,
    refused: u64,
}

/// The Durable Object's state: per group, the current window's grants. A window is the minute
/// from a group's first question (as the isolate's own cap counts it); every isolate's grant
/// for it ends when it does.
#[derive(Debug, Clone, Default)]
pub struct GrantBook {
    groups: Vec<GroupWindow>,
}

impl GrantBook {
    pub const fn new() -> Self {
        GrantBook { groups: Vec::new() }
    }

    /// Grants up to `ask.want` of `ask.cap` for `ask.group` in the window of `now_ms`.
    pub fn grant(&mut self, ask: &GrantAsk, now_ms: f64) -> Grant {
        let now_ms = if now_ms.is_finite() && now_ms > 0.0 {
            now_ms
        } else {
            0.0
        };
        let at = match self.groups.iter().position(|g| g.group == ask.group) {
            Some(at) => at,
            None => {
                if self.groups.len() >= MAX_GROUPS {
                    self.groups
                        .retain(|g| now_ms - g.start < FLOOD_WINDOW_MS && now_ms >= g.start);
                }
                if self.groups.len() >= MAX_GROUPS {
                    self.groups.remove(0);
                }
                self.groups.push(GroupWindow {
                    group: ask.group.clone(),
                    start: now_ms,
                    granted: 0,
                    refused: 0,
                });
                self.groups.len() - 1
            }
        };
        let Some(window) = self.groups.get_mut(at) else {
            return Grant {
                granted: 0,
                left: 0,
                ttl_ms: 1,
            };
        };
        if now_ms - window.start >= FLOOD_WINDOW_MS || now_ms < window.start {
            *window = GroupWindow {
                group: ask.group.clone(),
                start: now_ms,
                granted: 0,
                refused: 0,
            };
        }
        // Every isolate's grant ends with the window: the ttl is what is left of it.
        let ttl_ms = (window.start + FLOOD_WINDOW_MS - now_ms).clamp(1.0, FLOOD_WINDOW_MS) as u32;
        let granted = ask.want.min(ask.cap.saturating_sub(window.granted));
        window.granted += granted;
        window.refused += u64::from(ask.want - granted);
        Grant {
            granted,
            left: ask.cap.saturating_sub(window.granted),
            ttl_ms,
        }
    }

    /// What was asked for and refused for `group` in its current window (for the object's log).
    pub fn refused(&self, group: &str) -> u64 {
        self.groups
            .iter()
            .find(|g| g.group == group)
            .map_or(0, |g| g.refused)
    }
}

/// What an isolate's cache says about one more event of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheDecision {
    /// A cached grant was taken: send it.
    Granted,
    /// The object said the cap is used up for this window: count it.
    Refused,
    /// No grant cached and nobody asking: this event asks the object (marked as asking).
    Ask,
    /// Another event of this isolate is asking: decide again once it has the answer.
    Wait,
    /// The object failed in this window: the isolate's own cap decides.
    Local,
}

#[derive(Debug, Clone, PartialEq)]
struct CacheEntry {
    hash: u64,
    /// When the cached grant (or the fallback) ends.
    until: f64,
    left: u32,
    none_left: bool,
    asking: bool,
    local: bool,
}

/// What an isolate's flood control asks besides its own cap: the shared cap's [`GrantCache`],
/// or [`LocalOnly`]. A type, not a flag, so a build without the shared cap (no `flood-cap`
/// feature) has none of its code: with `LocalOnly` every decision is `Local`, a constant the
/// compiler folds away (measured: the default build's wasm +~1.1 KB gzip with a runtime flag).
pub trait SharedCap {
    /// One more event of the group `hash` at `now_ms`.
    fn decide(&mut self, hash: u64, now_ms: f64) -> CacheDecision;
    /// The object answered the question asked for `hash`.
    fn answered(&mut self, hash: u64, grant: Grant, now_ms: f64);
    /// The object could not answer for `hash`; returns whether to log it.
    fn failed(&mut self, hash: u64, now_ms: f64) -> bool;
}

/// No shared cap: the isolate's own cap decides everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalOnly;

impl SharedCap for LocalOnly {
    fn decide(&mut self, _: u64, _: f64) -> CacheDecision {
        CacheDecision::Local
    }
    fn answered(&mut self, _: u64, _: Grant, _: f64) {}
    fn failed(&mut self, _: u64, _: f64) -> bool {
        false
    }
}

impl SharedCap for GrantCache {
    fn decide(&mut self, hash: u64, now_ms: f64) -> CacheDecision {
        GrantCache::decide(self, hash, now_ms)
    }
    fn answered(&mut self, hash: u64, grant: Grant, now_ms: f64) {
        GrantCache::answered(self, hash, grant, now_ms);
    }
    fn failed(&mut self, hash: u64, now_ms: f64) -> bool {
        GrantCache::failed(self, hash, now_ms)
    }
}

/// Grants cached in an isolate, per group, for the rest of the object's window.
#[derive(Debug, Clone, Default)]
pub struct GrantCache {
    entries: Vec<CacheEntry>,
    /// The fallback to the local cap is logged once per window for the isolate.
    logged_until: f64,
}

impl GrantCache {
    pub const fn new() -> Self {
        GrantCache {
            entries: Vec::new(),
            logged_until: 0.0,
        }
    }

    fn entry(&mut self, hash: u64, now_ms: f64) -> Option<&mut CacheEntry> {
        if !self.entries.iter().any(|e| e.hash == hash) {
            if self.entries.len() >= MAX_GROUPS {
                self.entries.retain(|e| e.asking || now_ms < e.until);
            }
            if self.entries.len() >= MAX_GROUPS {
                self.entries.remove(0);
            }
            self.entries.push(CacheEntry {
                hash,
                until: 0.0,
                left: 0,
                none_left: false,
                asking: false,
                local: false,
            });
        }
        let entry = self.entries.iter_mut().find(|e| e.hash == hash)?;
        if now_ms >= entry.until || now_ms < entry.until - FLOOD_WINDOW_MS {
            // The window is over: nothing cached (an answer on its way still lands).
            entry.left = 0;
            entry.none_left = false;
            entry.local = false;
        }
        Some(entry)
    }

    /// One more event of the group `hash` at `now_ms`.
    pub fn decide(&mut self, hash: u64, now_ms: f64) -> CacheDecision {
        let Some(entry) = self.entry(hash, now_ms) else {
            return CacheDecision::Local;
        };
        if entry.local {
            CacheDecision::Local
        } else if entry.left > 0 {
            entry.left -= 1;
            CacheDecision::Granted
        } else if entry.none_left {
            CacheDecision::Refused
        } else if entry.asking {
            CacheDecision::Wait
        } else {
            entry.asking = true;
            CacheDecision::Ask
        }
    }

    /// The object answered the question asked for `hash`: the grant is cached until its window
    /// ends.
    pub fn answered(&mut self, hash: u64, grant: Grant, now_ms: f64) {
        if let Some(entry) = self.entry(hash, now_ms) {
            entry.asking = false;
            entry.until = now_ms + f64::from(grant.ttl_ms.min(FLOOD_WINDOW_MS as u32));
            entry.left = entry.left.saturating_add(grant.granted);
            // Nothing granted is as good as nothing left: asking again in this window would
            // only repeat the answer.
            entry.none_left = grant.left == 0 || grant.granted == 0;
        }
    }

    /// The object could not answer for `hash` (slow, unreachable, erroring): the isolate's own
    /// cap decides for the group for the rest of a window. Returns whether to log it (once per
    /// window for the isolate).
    pub fn failed(&mut self, hash: u64, now_ms: f64) -> bool {
        if let Some(entry) = self.entry(hash, now_ms) {
            entry.asking = false;
            entry.local = true;
            entry.until = now_ms + FLOOD_WINDOW_MS;
        }
        if now_ms >= self.logged_until || now_ms < self.logged_until - FLOOD_WINDOW_MS {
            self.logged_until = now_ms + FLOOD_WINDOW_MS;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_795_521_615_000.0;

    fn ask(group: &str, want: u32, cap: u32) -> GrantAsk {
        GrantAsk {
            group: group.to_owned(),
            want,
            cap,
        }
    }

    #[test]
    fn the_wire_both_ways() {
        let a = ask(&group_name("500\nGET\n/orders/:id"), 2, 10);
        assert_eq!(
            group_name("a"),
            "af63dc4c8601ec8c",
            "FNV-1a 64's published vector"
        );
        assert_eq!(a.group, "7a6fec919fb19304");
        assert_eq!(
            a.url(),
            "https://floodcap/v1/grant?group=7a6fec919fb19304&want=2&cap=10"
        );
        assert_eq!(GrantAsk::from_url(&a.url()), Ok(a));
        let g = Grant {
            granted: 2,
            left: 6,
            ttl_ms: 45_000,
        };
        assert_eq!(g.header_value(), "v1 2 6 45000");
        assert_eq!(Grant::parse(Some("v1 2 6 45000")), Ok(g));
    }

    #[test]
    fn bad_wire_is_refused() {
        let from = |q: &str| GrantAsk::from_url(&format!("https://floodcap{q}"));
        assert_eq!(
            from("/v2/grant?group=a&want=1&cap=1"),
            Err(GrantError::Path)
        );
        assert_eq!(from("/v1/grant?want=1&cap=1"), Err(GrantError::Group));
        assert_eq!(
            from("/v1/grant?group=A&want=1&cap=1"),
            Err(GrantError::Group)
        );
        assert_eq!(
            from("/v1/grant?group=a&want=0&cap=1"),
            Err(GrantError::Count)
        );
        assert_eq!(
            from("/v1/grant?group=a&want=x&cap=1"),
            Err(GrantError::Count)
        );
        assert_eq!(from("/v1/grant?group=a&want=1"), Err(GrantError::Count));
        let long = "a".repeat(65);
        assert_eq!(
            from(&format!("/v1/grant?group={long}&want=1&cap=1")),
            Err(GrantError::Group)
        );
        assert_eq!(Grant::parse(None), Err(GrantError::Missing));
        for bad in [
            "",
            "v1 1 2",
            "v1 1 2 3 4",
            "v2 1 2 3",
            "v1 1 -2 3",
            "v1  1 2 3",
        ] {
            assert_eq!(
                Grant::parse(Some(bad)),
                Err(GrantError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn batches_are_a_fifth_of_the_cap() {
        assert_eq!(batch(10), 2);
        assert_eq!(batch(4), 1);
        assert_eq!(batch(1), 1);
        assert_eq!(batch(100), 20);
    }

    #[test]
    fn the_book_grants_the_cap_once_per_window_across_askers() {
        let mut book = GrantBook::new();
        let answers: Vec<String> = (0..7)
            .map(|i| {
                book.grant(&ask("g", 2, 10), NOW + f64::from(i))
                    .header_value()
            })
            .collect();
        assert_eq!(
            answers,
            [
                "v1 2 8 60000",
                "v1 2 6 59999",
                "v1 2 4 59998",
                "v1 2 2 59997",
                "v1 2 0 59996",
                "v1 0 0 59995",
                "v1 0 0 59994"
            ]
        );
        assert_eq!(book.refused("g"), 4);
        assert_eq!(
            book.grant(&ask("h", 3, 10), NOW + 30_000.0).header_value(),
            "v1 3 7 60000",
            "another group has its own cap"
        );
        assert_eq!(
            book.grant(&ask("g", 3, 10), NOW + 59_999.0).header_value(),
            "v1 0 0 1",
            "the window's last millisecond"
        );
        assert_eq!(
            book.grant(&ask("g", 3, 10), NOW + 60_000.0).header_value(),
            "v1 3 7 60000",
            "a minute after the first question: a new window"
        );
        assert_eq!(book.refused("g"), 0);
        assert_eq!(
            book.grant(&ask("g", 5, 4), NOW + 60_001.0).header_value(),
            "v1 1 0 59999",
            "never more than the cap asked with"
        );
    }

    #[test]
    fn the_book_is_bounded() {
        let mut book = GrantBook::new();
        for i in 0..1000 {
            book.grant(&ask(&format!("g{i}"), 1, 1), NOW);
        }
        assert_eq!(book.groups.len(), MAX_GROUPS);
        assert_eq!(book.grant(&ask("g999", 1, 1), NOW).granted, 0);
    }

    #[test]
    fn the_cache_asks_once_per_batch_and_keeps_the_answer_for_the_window() {
        let mut cache = GrantCache::new();
        let (g, h) = (fnv1a_64(b"g"), fnv1a_64(b"h"));
        assert_eq!(cache.decide(g, NOW), CacheDecision::Ask);
        assert_eq!(
            cache.decide(g, NOW),
            CacheDecision::Wait,
            "one question at a time"
        );
        assert_eq!(cache.decide(h, NOW), CacheDecision::Ask, "groups ask apart");
        let two = Grant {
            granted: 2,
            left: 4,
            ttl_ms: 45_000,
        };
        cache.answered(g, two, NOW + 5.0);
        assert_eq!(cache.decide(g, NOW + 6.0), CacheDecision::Granted);
        assert_eq!(cache.decide(g, NOW + 7.0), CacheDecision::Granted);
        assert_eq!(
            cache.decide(g, NOW + 8.0),
            CacheDecision::Ask,
            "batch used: ask again"
        );
        let last = Grant {
            granted: 1,
            left: 0,
            ttl_ms: 44_000,
        };
        cache.answered(g, last, NOW + 1000.0);
        assert_eq!(cache.decide(g, NOW + 1001.0), CacheDecision::Granted);
        assert_eq!(cache.decide(g, NOW + 1002.0), CacheDecision::Refused);
        assert_eq!(cache.decide(g, NOW + 44_999.0), CacheDecision::Refused);
        assert_eq!(
            cache.decide(g, NOW + 45_000.0),
            CacheDecision::Ask,
            "the window is over"
        );
    }

    #[test]
    fn an_answer_granting_nothing_is_not_asked_again_in_its_window() {
        let mut cache = GrantCache::new();
        assert_eq!(cache.decide(7, NOW), CacheDecision::Ask);
        let nothing = Grant {
            granted: 0,
            left: 5,
            ttl_ms: 10_000,
        };
        cache.answered(7, nothing, NOW + 1.0);
        assert_eq!(cache.decide(7, NOW + 2.0), CacheDecision::Refused);
        assert_eq!(cache.decide(7, NOW + 10_001.0), CacheDecision::Ask);
    }

    #[test]
    fn a_failed_object_means_the_local_cap_for_a_window_logged_once() {
        let mut cache = GrantCache::new();
        let (g, h) = (fnv1a_64(b"g"), fnv1a_64(b"h"));
        assert_eq!(cache.decide(g, NOW), CacheDecision::Ask);
        assert!(cache.failed(g, NOW + 1000.0), "logged");
        assert_eq!(cache.decide(g, NOW + 1001.0), CacheDecision::Local);
        assert_eq!(cache.decide(h, NOW + 1002.0), CacheDecision::Ask);
        assert!(!cache.failed(h, NOW + 1003.0), "once per window");
        assert_eq!(cache.decide(g, NOW + 60_999.0), CacheDecision::Local);
        assert_eq!(cache.decide(g, NOW + 61_000.0), CacheDecision::Ask);
        assert!(cache.failed(g, NOW + 61_001.0), "a new window logs again");
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut cache = GrantCache::new();
        for i in 0..1000u64 {
            assert_eq!(cache.decide(i, NOW), CacheDecision::Ask);
        }
        assert_eq!(cache.entries.len(), MAX_GROUPS);
    }
}
