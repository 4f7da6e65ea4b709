//! Settings from wrangler vars and secrets, validated once per isolate.
//!
//! Parsing takes a lookup function instead of the runtime's `Env`, so every rule here is tested
//! on the host. A bad value never stops the proxy: it is reported as a [`ConfigError`] (naming the
//! variable and what is wrong, never the value) and the setting falls back to a safe default.

use crate::privacy::Privacy;
use crate::proxy::origin::{OriginUrl, OriginUrlError};
use crate::proxy::outcome::HandledEvents;
use crate::sentry::delivery::DEFAULT_MAX_EVENTS_PER_WINDOW;
use crate::sentry::dsn::{Dsn, DsnError};
use crate::sentry::tunnel::Tunnel;
use std::fmt;

pub const ORIGIN_URL: &str = "ORIGIN_URL";
pub const SENTRY_DSN: &str = "SENTRY_DSN";
pub const SENTRY_ENVIRONMENT: &str = "SENTRY_ENVIRONMENT";
pub const SENTRY_RELEASE: &str = "SENTRY_RELEASE";
pub const ORIGIN_TIMEOUT_MS: &str = "ORIGIN_TIMEOUT_MS";
pub const PASS_THROUGH_ON_EXCEPTION: &str = "PASS_THROUGH_ON_EXCEPTION";
pub const DEBUG_PANIC_PATH: &str = "DEBUG_PANIC_PATH";
pub const DEBUG_ERROR_PATH: &str = "DEBUG_ERROR_PATH";
pub const DEBUG_TRAP_PATH: &str = "DEBUG_TRAP_PATH";
pub const SENTRY_SAMPLE_RATE: &str = "SENTRY_SAMPLE_RATE";
pub const SENTRY_MAX_EVENTS_PER_MINUTE: &str = "SENTRY_MAX_EVENTS_PER_MINUTE";
pub const SENTRY_REQUEST_HEADERS: &str = "SENTRY_REQUEST_HEADERS";
pub const SENTRY_SEND_QUERY: &str = "SENTRY_SEND_QUERY";
pub const SENTRY_SEND_DEFAULT_PII: &str = "SENTRY_SEND_DEFAULT_PII";
pub const SENTRY_REPORT_4XX: &str = "SENTRY_REPORT_4XX";
pub const SENTRY_SLOW_ORIGIN_MS: &str = "SENTRY_SLOW_ORIGIN_MS";
pub const SENTRY_DEBUG: &str = "SENTRY_DEBUG";
pub const SENTRY_TRACE_PROPAGATION: &str = "SENTRY_TRACE_PROPAGATION";
pub const SENTRY_TRACES_SAMPLE_RATE: &str = "SENTRY_TRACES_SAMPLE_RATE";
pub const SENTRY_TUNNEL_PATH: &str = "SENTRY_TUNNEL_PATH";
pub const SENTRY_TUNNEL_ALLOWED_DSNS: &str = "SENTRY_TUNNEL_ALLOWED_DSNS";

pub const DEFAULT_ENVIRONMENT: &str = "production";
pub const DEFAULT_ORIGIN_TIMEOUT_MS: u32 = 30_000;
/// Sentry rejects longer environment names.
const MAX_ENVIRONMENT_CHARS: usize = 64;
/// Sentry's limit for a release name.
const MAX_RELEASE_CHARS: usize = 200;
/// Beyond this the runtime would cut the request off anyway.
const MAX_ORIGIN_TIMEOUT_MS: u32 = 600_000;
/// A cap above this is no cap at all for one isolate; refusing it catches typos.
const MAX_EVENTS_PER_MINUTE: u32 = 10_000;

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `ORIGIN_URL` unset: fetch the request URL as-is (the worker runs on a route in front of the
    /// origin).
    Route,
    Url(OriginUrl),
    /// `ORIGIN_URL` set but unusable: there is no safe place to send requests, so every request
    /// gets the "misconfigured" page (falling back to route mode could loop or leak).
    Invalid(OriginUrlError),
}

/// The validated settings. Not `Clone`: one per isolate, shared as an `Rc`.
pub struct Config {
    pub origin: Origin,
    /// `None`: no events are sent; pages are still shown.
    pub dsn: Option<Dsn>,
    pub environment: String,
    pub release: String,
    pub origin_timeout_ms: u32,
    /// When edgeguard's own code fails (an internal error or a panic), pass the request to the
    /// origin instead of showing the page. Off by default: the page and the event are the point.
    pub pass_through_on_exception: bool,
    /// `SENTRY_DEBUG` (the SDKs' `debug` option): log every envelope Sentry accepted. Off by
    /// default, because a log line per event costs CPU on every failure and fills the log
    /// during an outage; failures to send are always logged.
    pub debug: bool,
    /// Test triggers, unset in production: a request to exactly this path panics inside the
    /// handler (`DEBUG_PANIC_PATH`), returns an internal error from deep in it
    /// (`DEBUG_ERROR_PATH`) or traps the wasm instance (`DEBUG_TRAP_PATH`), so the failure
    /// paths can be proven end to end.
    pub debug_panic_path: Option<String>,
    pub debug_error_path: Option<String>,
    pub debug_trap_path: Option<String>,
    /// `SENTRY_SAMPLE_RATE`: the share of events sent, 0.0 to 1.0 (default 1.0), decided before
    /// anything is built.
    pub sample_rate: f64,
    /// `SENTRY_MAX_EVENTS_PER_MINUTE`: events sent per grouping key per minute per isolate
    /// (default 10; 0 = no cap). The rest are counted in client reports.
    pub max_events_per_minute: u32,
    /// What of the visitor's request an event may carry.
    pub privacy: Privacy,
    /// The opt-in warnings for responses that pass through.
    pub handled: HandledEvents,
    /// `SENTRY_TRACE_PROPAGATION` (default on, with a DSN): the origin request carries
    /// `sentry-trace` and `baggage`, so the app's Sentry SDK joins edgeguard's trace.
    pub trace_propagation: bool,
    /// `SENTRY_TRACES_SAMPLE_RATE`: the share of requests sent as a transaction (the edge hop).
    /// Unset (the default): tracing is off, no transactions, and edgeguard makes no sampling
    /// decision for the origin. Set, even to 0: an incoming decision wins, else this rate.
    pub traces_sample_rate: Option<f64>,
    /// `SENTRY_TUNNEL_PATH` with the DSNs it forwards to (`SENTRY_DSN` and
    /// `SENTRY_TUNNEL_ALLOWED_DSNS`): the browser SDK's tunnel. `None`: off (the default).
    pub tunnel: Option<Tunnel>,
}

/// A setting that could not be used as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    OriginUrl(OriginUrlError),
    Dsn(DsnError),
    OriginTimeout(TimeoutError),
    EnvironmentTooLong,
    ReleaseTooLong,
    /// The variable, and the default it falls back to.
    NotABoolean(&'static str, bool),
    NotAPath(&'static str),
    SampleRate,
    TracesSampleRate,
    MaxEventsPerMinute,
    /// `SENTRY_REQUEST_HEADERS`: the entry at this 1-based position is not a header name.
    NotAHeaderName(usize),
    /// `SENTRY_REPORT_4XX`: the entry at this 1-based position is not a status 400–499.
    NotA4xxStatus(usize),
    SlowOrigin(TimeoutError),
    /// `SENTRY_TUNNEL_ALLOWED_DSNS`: the entry at this 1-based position is not a DSN.
    NotADsn(usize),
    /// `SENTRY_TUNNEL_PATH` is set but there is no DSN to forward to.
    TunnelWithoutDsn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeoutError {
    NotANumber,
    Zero,
    TooLarge,
}

impl ConfigError {
    /// The variable at fault.
    pub fn variable(&self) -> &'static str {
        match self {
            ConfigError::OriginUrl(_) => ORIGIN_URL,
            ConfigError::Dsn(_) => SENTRY_DSN,
            ConfigError::OriginTimeout(_) => ORIGIN_TIMEOUT_MS,
            ConfigError::EnvironmentTooLong => SENTRY_ENVIRONMENT,
            ConfigError::ReleaseTooLong => SENTRY_RELEASE,
            ConfigError::NotABoolean(name, _) | ConfigError::NotAPath(name) => name,
            ConfigError::SampleRate => SENTRY_SAMPLE_RATE,
            ConfigError::TracesSampleRate => SENTRY_TRACES_SAMPLE_RATE,
            ConfigError::MaxEventsPerMinute => SENTRY_MAX_EVENTS_PER_MINUTE,
            ConfigError::NotAHeaderName(_) => SENTRY_REQUEST_HEADERS,
            ConfigError::NotA4xxStatus(_) => SENTRY_REPORT_4XX,
            ConfigError::SlowOrigin(_) => SENTRY_SLOW_ORIGIN_MS,
            ConfigError::NotADsn(_) => SENTRY_TUNNEL_ALLOWED_DSNS,
            ConfigError::TunnelWithoutDsn => SENTRY_TUNNEL_PATH,
        }
    }

    /// What edgeguard does instead, for the log line.
    fn fallback(&self) -> String {
        match self {
            ConfigError::OriginUrl(_) => {
                "every request gets the 500 page until it is fixed".to_owned()
            }
            ConfigError::Dsn(_) => "no events will be sent; pages are still shown".to_owned(),
            ConfigError::OriginTimeout(_) => {
                format!("using the default of {DEFAULT_ORIGIN_TIMEOUT_MS} ms")
            }
            ConfigError::EnvironmentTooLong | ConfigError::ReleaseTooLong => {
                "it is truncated".to_owned()
            }
            ConfigError::NotABoolean(_, true) => "treated as true (the default)".to_owned(),
            ConfigError::NotABoolean(_, false) => "treated as false".to_owned(),
            ConfigError::NotAPath(_) => "ignored".to_owned(),
            ConfigError::SampleRate => "every event is sent (1.0)".to_owned(),
            ConfigError::TracesSampleRate => "no transactions are sent".to_owned(),
            ConfigError::MaxEventsPerMinute => {
                format!("using the default of {DEFAULT_MAX_EVENTS_PER_WINDOW}")
            }
            ConfigError::NotAHeaderName(_)
            | ConfigError::NotA4xxStatus(_)
            | ConfigError::NotADsn(_) => "that entry is skipped".to_owned(),
            ConfigError::TunnelWithoutDsn => "the tunnel is off".to_owned(),
            ConfigError::SlowOrigin(_) => "slow-origin warnings are off".to_owned(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            ConfigError::OriginUrl(e) => e.to_string(),
            ConfigError::Dsn(e) => e.to_string(),
            ConfigError::OriginTimeout(TimeoutError::NotANumber) => {
                "not a whole number of milliseconds".to_owned()
            }
            ConfigError::OriginTimeout(TimeoutError::Zero) => "must be at least 1".to_owned(),
            ConfigError::OriginTimeout(TimeoutError::TooLarge) => {
                format!("must be at most {MAX_ORIGIN_TIMEOUT_MS}")
            }
            ConfigError::EnvironmentTooLong => {
                format!("longer than Sentry's {MAX_ENVIRONMENT_CHARS} characters")
            }
            ConfigError::ReleaseTooLong => {
                format!("longer than Sentry's {MAX_RELEASE_CHARS} characters")
            }
            ConfigError::NotABoolean(..) => {
                "not one of true, false, 1, 0, yes, no, on, off".to_owned()
            }
            ConfigError::NotAPath(_) => "not a path starting with '/'".to_owned(),
            ConfigError::SampleRate | ConfigError::TracesSampleRate => {
                "not a number from 0.0 to 1.0".to_owned()
            }
            ConfigError::MaxEventsPerMinute => {
                format!("not a whole number from 0 to {MAX_EVENTS_PER_MINUTE}")
            }
            ConfigError::NotAHeaderName(n) => format!("entry {n} is not a header name"),
            ConfigError::NotA4xxStatus(n) => format!("entry {n} is not a status from 400 to 499"),
            ConfigError::NotADsn(n) => format!("entry {n} is not a DSN"),
            ConfigError::TunnelWithoutDsn => {
                "no SENTRY_DSN or SENTRY_TUNNEL_ALLOWED_DSNS to forward to".to_owned()
            }
            ConfigError::SlowOrigin(TimeoutError::NotANumber) => {
                "not a whole number of milliseconds".to_owned()
            }
            ConfigError::SlowOrigin(TimeoutError::Zero) => "must be at least 1".to_owned(),
            ConfigError::SlowOrigin(TimeoutError::TooLarge) => {
                format!("must be at most {MAX_ORIGIN_TIMEOUT_MS}")
            }
        };
        write!(f, "{}: {what}; {}", self.variable(), self.fallback())
    }
}

impl std::error::Error for ConfigError {}

/// What the build knows, for defaults: edgeguard's git commit (if built from a checkout) and
/// crate version.
#[derive(Debug, Clone, Copy)]
pub struct BuildInfo {
    pub git_sha: Option<&'static str>,
    pub version: &'static str,
}

impl BuildInfo {
    /// The values baked in by `build.rs`.
    pub const CURRENT: BuildInfo = BuildInfo {
        git_sha: option_env!("EDGEGUARD_GIT_SHA"),
        version: env!("CARGO_PKG_VERSION"),
    };

    /// The release when `SENTRY_RELEASE` is unset: the commit SHA, like raven's
    /// `fetch_git_sha`, else `edgeguard@<version>`.
    pub fn default_release(&self) -> String {
        match self.git_sha {
            Some(sha) if !sha.is_empty() => sha.to_owned(),
            _ => format!("edgeguard@{}", self.version),
        }
    }
}

impl Config {
    /// Reads every setting through `lookup` (empty and whitespace-only values count as unset).
    /// Returns the config to use and every problem found, in a stable order.
    pub fn parse(
        lookup: impl Fn(&str) -> Option<String>,
        build: BuildInfo,
    ) -> (Config, Vec<ConfigError>) {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut errors = Vec::new();

        let origin = match get(ORIGIN_URL) {
            None => Origin::Route,
            Some(raw) => match OriginUrl::parse(&raw) {
                Ok(url) => Origin::Url(url),
                Err(e) => {
                    errors.push(ConfigError::OriginUrl(e.clone()));
                    Origin::Invalid(e)
                }
            },
        };

        let dsn = get(SENTRY_DSN).and_then(|raw| {
            Dsn::parse(&raw)
                .map_err(|e| errors.push(ConfigError::Dsn(e)))
                .ok()
        });

        let origin_timeout_ms = match get(ORIGIN_TIMEOUT_MS) {
            None => DEFAULT_ORIGIN_TIMEOUT_MS,
            Some(raw) => match parse_timeout(&raw) {
                Ok(ms) => ms,
                Err(e) => {
                    errors.push(ConfigError::OriginTimeout(e));
                    DEFAULT_ORIGIN_TIMEOUT_MS
                }
            },
        };

        let environment = get(SENTRY_ENVIRONMENT)
            .map(|raw| raw.trim().to_owned())
            .unwrap_or_else(|| DEFAULT_ENVIRONMENT.to_owned());
        let environment = truncate_checked(
            environment,
            MAX_ENVIRONMENT_CHARS,
            ConfigError::EnvironmentTooLong,
            &mut errors,
        );

        let release = get(SENTRY_RELEASE)
            .map(|raw| raw.trim().to_owned())
            .unwrap_or_else(|| build.default_release());
        let release = truncate_checked(
            release,
            MAX_RELEASE_CHARS,
            ConfigError::ReleaseTooLong,
            &mut errors,
        );

        let pass_through_on_exception = flag(
            get(PASS_THROUGH_ON_EXCEPTION),
            PASS_THROUGH_ON_EXCEPTION,
            false,
            &mut errors,
        );
        let debug = flag(get(SENTRY_DEBUG), SENTRY_DEBUG, false, &mut errors);
        let mut path = |name: &'static str| {
            let raw = get(name)?;
            let raw = raw.trim();
            if raw.starts_with('/') {
                Some(raw.to_owned())
            } else {
                errors.push(ConfigError::NotAPath(name));
                None
            }
        };
        let debug_panic_path = path(DEBUG_PANIC_PATH);
        let debug_error_path = path(DEBUG_ERROR_PATH);
        let debug_trap_path = path(DEBUG_TRAP_PATH);
        let tunnel_path = path(SENTRY_TUNNEL_PATH);

        let sample_rate = match get(SENTRY_SAMPLE_RATE) {
            None => 1.0,
            Some(raw) => parse_sample_rate(&raw).unwrap_or_else(|| {
                errors.push(ConfigError::SampleRate);
                1.0
            }),
        };
        let max_events_per_minute = match get(SENTRY_MAX_EVENTS_PER_MINUTE) {
            None => DEFAULT_MAX_EVENTS_PER_WINDOW,
            Some(raw) => raw
                .trim()
                .parse()
                .ok()
                .filter(|n| *n <= MAX_EVENTS_PER_MINUTE)
                .unwrap_or_else(|| {
                    errors.push(ConfigError::MaxEventsPerMinute);
                    DEFAULT_MAX_EVENTS_PER_WINDOW
                }),
        };
        let send_query = flag(
            get(SENTRY_SEND_QUERY),
            SENTRY_SEND_QUERY,
            false,
            &mut errors,
        );
        let send_default_pii = flag(
            get(SENTRY_SEND_DEFAULT_PII),
            SENTRY_SEND_DEFAULT_PII,
            false,
            &mut errors,
        );
        let request_headers = match get(SENTRY_REQUEST_HEADERS) {
            None => Privacy::default().request_headers,
            Some(raw) => parse_list(
                &raw,
                &mut errors,
                |entry| {
                    let valid = entry.bytes().all(is_token_byte);
                    valid.then(|| entry.to_ascii_lowercase())
                },
                ConfigError::NotAHeaderName,
            ),
        };
        let privacy = Privacy {
            request_headers,
            send_query,
            send_default_pii,
        };
        let client_errors = get(SENTRY_REPORT_4XX).map_or_else(Vec::new, |raw| {
            parse_list(
                &raw,
                &mut errors,
                |entry| {
                    entry
                        .parse::<u16>()
                        .ok()
                        .filter(|s| (400..=499).contains(s))
                },
                ConfigError::NotA4xxStatus,
            )
        });
        let slow_origin_ms = get(SENTRY_SLOW_ORIGIN_MS).and_then(|raw| {
            parse_timeout(&raw)
                .map_err(|e| errors.push(ConfigError::SlowOrigin(e)))
                .ok()
        });
        let handled = HandledEvents {
            client_errors,
            slow_origin_ms,
        };
        let trace_propagation = flag(
            get(SENTRY_TRACE_PROPAGATION),
            SENTRY_TRACE_PROPAGATION,
            true,
            &mut errors,
        );
        let traces_sample_rate = get(SENTRY_TRACES_SAMPLE_RATE).and_then(|raw| {
            let rate = parse_sample_rate(&raw);
            if rate.is_none() {
                errors.push(ConfigError::TracesSampleRate);
            }
            rate
        });
        // The edge's own DSN first: the one whose undelivered envelopes are counted.
        let tunnel = tunnel_path.and_then(|path| {
            let mut allowed: Vec<Dsn> = dsn.iter().cloned().collect();
            // Not `parse_list`: its instance for `Dsn` measured +471 B gzip more than this loop.
            let raw = get(SENTRY_TUNNEL_ALLOWED_DSNS).unwrap_or_default();
            let entries = raw.split(',').map(str::trim).filter(|e| !e.is_empty());
            for (i, entry) in entries.enumerate() {
                match Dsn::parse(entry) {
                    Ok(listed) => allowed.push(listed),
                    Err(_) => errors.push(ConfigError::NotADsn(i + 1)),
                }
            }
            if allowed.is_empty() {
                errors.push(ConfigError::TunnelWithoutDsn);
                return None;
            }
            Some(Tunnel::new(path, allowed))
        });

        let config = Config {
            origin,
            dsn,
            environment,
            release,
            origin_timeout_ms,
            pass_through_on_exception,
            debug,
            debug_panic_path,
            debug_error_path,
            debug_trap_path,
            sample_rate,
            max_events_per_minute,
            privacy,
            handled,
            trace_propagation,
            traces_sample_rate,
            tunnel,
        };
        (config, errors)
    }
}

/// The boolean setting `name` (its value `raw`): `default` when unset, and when unreadable (then
/// reported).
fn flag(
    raw: Option<String>,
    name: &'static str,
    default: bool,
    errors: &mut Vec<ConfigError>,
) -> bool {
    match raw {
        None => default,
        Some(raw) => parse_bool(&raw).unwrap_or_else(|| {
            errors.push(ConfigError::NotABoolean(name, default));
            default
        }),
    }
}

fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A number in 0.0..=1.0; `NaN` and the infinities are outside that range, so refused too.
fn parse_sample_rate(raw: &str) -> Option<f64> {
    let rate = crate::decimal::parse(raw)?;
    (0.0..=1.0).contains(&rate).then_some(rate)
}

/// A comma-separated list: empty entries are skipped, each other entry goes through `parse`,
/// and one that does not parse is reported by its 1-based position (never its text) and skipped.
fn parse_list<T>(
    raw: &str,
    errors: &mut Vec<ConfigError>,
    parse: impl Fn(&str) -> Option<T>,
    error: impl Fn(usize) -> ConfigError,
) -> Vec<T> {
    raw.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .enumerate()
        .filter_map(|(i, entry)| {
            let parsed = parse(entry);
            if parsed.is_none() {
                errors.push(error(i + 1));
            }
            parsed
        })
        .collect()
}

/// RFC 9110 `tchar`: what a header name is made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_timeout(raw: &str) -> Result<u32, TimeoutError> {
    let ms: u64 = raw.trim().parse().map_err(|_| TimeoutError::NotANumber)?;
    match ms {
        0 => Err(TimeoutError::Zero),
        ms if ms > u64::from(MAX_ORIGIN_TIMEOUT_MS) => Err(TimeoutError::TooLarge),
        ms => u32::try_from(ms).map_err(|_| TimeoutError::TooLarge),
    }
}

fn truncate_checked(
    value: String,
    max_chars: usize,
    error: ConfigError,
    errors: &mut Vec<ConfigError>,
) -> String {
    if value.chars().count() <= max_chars {
        return value;
    }
    errors.push(error);
    value.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILD: BuildInfo = BuildInfo {
        git_sha: Some("0123456789abcdef0123456789abcdef01234567"),
        version: "0.1.0",
    };

    fn parse(vars: &[(&str, &str)]) -> (Config, Vec<ConfigError>) {
        Config::parse(
            |name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            },
            BUILD,
        )
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let (config, errors) = parse(&[]);
        assert!(errors.is_empty());
        assert_eq!(config.origin, Origin::Route);
        assert!(config.dsn.is_none());
        assert_eq!(config.environment, "production");
        assert_eq!(config.release, "0123456789abcdef0123456789abcdef01234567");
        assert_eq!(config.origin_timeout_ms, 30_000);
    }

    #[test]
    fn reads_every_setting() {
        let (config, errors) = parse(&[
            (ORIGIN_URL, "http://127.0.0.1:8001/app"),
            (SENTRY_DSN, "https://key@sentry.example/5"),
            (SENTRY_ENVIRONMENT, "staging"),
            (SENTRY_RELEASE, "shop@2.3.1"),
            (ORIGIN_TIMEOUT_MS, "1500"),
        ]);
        assert!(errors.is_empty());
        assert!(matches!(config.origin, Origin::Url(_)));
        assert_eq!(
            config.dsn.map(|d| d.project_id().to_owned()),
            Some("5".into())
        );
        assert_eq!(config.environment, "staging");
        assert_eq!(config.release, "shop@2.3.1");
        assert_eq!(config.origin_timeout_ms, 1500);
    }

    #[test]
    fn release_falls_back_to_crate_version_outside_git() {
        let build = BuildInfo {
            git_sha: None,
            version: "0.1.0",
        };
        assert_eq!(build.default_release(), "edgeguard@0.1.0");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let (config, errors) = parse(&[
            (ORIGIN_URL, ""),
            (SENTRY_DSN, "  "),
            (ORIGIN_TIMEOUT_MS, ""),
        ]);
        assert!(errors.is_empty());
        assert_eq!(config.origin, Origin::Route);
        assert!(config.dsn.is_none());
    }

    #[test]
    fn bad_values_are_named_and_fall_back() {
        let (config, errors) = parse(&[
            (ORIGIN_URL, "origin.internal:8080"),
            (SENTRY_DSN, "https://secretkey@sentry.example/not-a-number"),
            (ORIGIN_TIMEOUT_MS, "abc"),
            (SENTRY_ENVIRONMENT, &"e".repeat(70)),
        ]);
        assert_eq!(
            config.origin,
            Origin::Invalid(OriginUrlError::MissingScheme)
        );
        assert!(config.dsn.is_none());
        assert_eq!(config.origin_timeout_ms, DEFAULT_ORIGIN_TIMEOUT_MS);
        assert_eq!(config.environment.len(), 64);
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "ORIGIN_URL: no scheme: expected scheme://host[:port][/prefix], e.g. https://origin.example.com; every request gets the 500 page until it is fixed",
                "SENTRY_DSN: the project id (last path segment) is not a number; no events will be sent; pages are still shown",
                "ORIGIN_TIMEOUT_MS: not a whole number of milliseconds; using the default of 30000 ms",
                "SENTRY_ENVIRONMENT: longer than Sentry's 64 characters; it is truncated",
            ]
        );
        for line in &lines {
            assert!(
                !line.contains("secretkey") && !line.contains("origin.internal"),
                "{line}"
            );
        }
    }

    #[test]
    fn failure_options() {
        let (config, errors) = parse(&[]);
        assert!(errors.is_empty());
        assert!(!config.pass_through_on_exception);
        assert_eq!(
            (
                config.debug_panic_path,
                config.debug_error_path,
                config.debug_trap_path
            ),
            (None, None, None)
        );

        assert!(!config.debug);
        let (config, errors) = parse(&[
            (PASS_THROUGH_ON_EXCEPTION, "Yes"),
            (SENTRY_DEBUG, "on"),
            (DEBUG_PANIC_PATH, "/__panic"),
            (DEBUG_ERROR_PATH, " /__error "),
            (DEBUG_TRAP_PATH, "/__trap"),
        ]);
        assert!(errors.is_empty());
        assert!(config.pass_through_on_exception);
        assert!(config.debug);
        assert_eq!(config.debug_panic_path.as_deref(), Some("/__panic"));
        assert_eq!(config.debug_error_path.as_deref(), Some("/__error"));
        assert_eq!(config.debug_trap_path.as_deref(), Some("/__trap"));

        let (config, errors) = parse(&[
            (PASS_THROUGH_ON_EXCEPTION, "maybe"),
            (DEBUG_PANIC_PATH, "__panic"),
            (SENTRY_DEBUG, "verbose"),
        ]);
        assert!(!config.debug);
        assert!(!config.pass_through_on_exception);
        assert_eq!(config.debug_panic_path, None);
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "PASS_THROUGH_ON_EXCEPTION: not one of true, false, 1, 0, yes, no, on, off; treated as false",
                "SENTRY_DEBUG: not one of true, false, 1, 0, yes, no, on, off; treated as false",
                "DEBUG_PANIC_PATH: not a path starting with '/'; ignored",
            ]
        );
    }

    #[test]
    fn delivery_options() {
        let (config, errors) = parse(&[]);
        assert!(errors.is_empty());
        assert_eq!(config.sample_rate, 1.0);
        assert_eq!(config.max_events_per_minute, 10);

        let (config, errors) = parse(&[
            (SENTRY_SAMPLE_RATE, " 0.25 "),
            (SENTRY_MAX_EVENTS_PER_MINUTE, "0"),
        ]);
        assert!(errors.is_empty());
        assert_eq!(config.sample_rate, 0.25);
        assert_eq!(config.max_events_per_minute, 0);
        assert_eq!(parse(&[(SENTRY_SAMPLE_RATE, "0")]).0.sample_rate, 0.0);
        assert_eq!(parse(&[(SENTRY_SAMPLE_RATE, "1")]).0.sample_rate, 1.0);

        for bad in ["1.5", "-0.1", "NaN", "inf", "half", "50%"] {
            let (config, errors) = parse(&[
                (SENTRY_SAMPLE_RATE, bad),
                (SENTRY_MAX_EVENTS_PER_MINUTE, "10001"),
            ]);
            assert_eq!(config.sample_rate, 1.0, "{bad}");
            assert_eq!(config.max_events_per_minute, 10);
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            assert_eq!(
                lines,
                [
                    "SENTRY_SAMPLE_RATE: not a number from 0.0 to 1.0; every event is sent (1.0)",
                    "SENTRY_MAX_EVENTS_PER_MINUTE: not a whole number from 0 to 10000; using the default of 10",
                ]
            );
        }
    }

    #[test]
    fn tracing_options() {
        let (config, errors) = parse(&[]);
        assert!(errors.is_empty());
        assert!(config.trace_propagation);
        assert_eq!(config.traces_sample_rate, None);

        let (config, errors) = parse(&[
            (SENTRY_TRACE_PROPAGATION, "off"),
            (SENTRY_TRACES_SAMPLE_RATE, "0"),
        ]);
        assert!(errors.is_empty());
        assert!(!config.trace_propagation);
        assert_eq!(config.traces_sample_rate, Some(0.0));

        let (config, errors) = parse(&[
            (SENTRY_TRACE_PROPAGATION, "maybe"),
            (SENTRY_TRACES_SAMPLE_RATE, "2"),
        ]);
        assert!(config.trace_propagation);
        assert_eq!(config.traces_sample_rate, None);
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "SENTRY_TRACE_PROPAGATION: not one of true, false, 1, 0, yes, no, on, off; treated as true (the default)",
                "SENTRY_TRACES_SAMPLE_RATE: not a number from 0.0 to 1.0; no transactions are sent",
            ]
        );
    }

    #[test]
    fn tunnel_options() {
        let (config, errors) = parse(&[(SENTRY_DSN, "https://k@o1.example/1")]);
        assert!(errors.is_empty());
        assert!(config.tunnel.is_none());

        let header = |dsn: &str| format!("{{\"dsn\":\"{dsn}\"}}\n");
        let (config, errors) = parse(&[
            (SENTRY_DSN, "https://k@o1.example/1"),
            (SENTRY_TUNNEL_PATH, " /.edgeguard/tunnel "),
            (
                SENTRY_TUNNEL_ALLOWED_DSNS,
                "https://b@o2.example/2, secretkey@nohost, ,https://c@o3.example/x",
            ),
        ]);
        let tunnel = config.tunnel.unwrap();
        assert_eq!(tunnel.path, "/.edgeguard/tunnel");
        for allowed in ["https://k@o1.example/1", "https://b@o2.example/2"] {
            assert!(
                tunnel.target(header(allowed).as_bytes()).is_ok(),
                "{allowed}"
            );
        }
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "SENTRY_TUNNEL_ALLOWED_DSNS: entry 2 is not a DSN; that entry is skipped",
                "SENTRY_TUNNEL_ALLOWED_DSNS: entry 3 is not a DSN; that entry is skipped",
            ]
        );
        assert!(!lines.iter().any(|l| l.contains("secretkey")));

        // Without the edge's DSN, the listed ones alone.
        let (config, errors) = parse(&[
            (SENTRY_TUNNEL_PATH, "/t"),
            (SENTRY_TUNNEL_ALLOWED_DSNS, "https://b@o2.example/2"),
        ]);
        assert!(errors.is_empty());
        assert!(config.tunnel.is_some());

        let (config, errors) = parse(&[(SENTRY_TUNNEL_PATH, "/t")]);
        assert!(config.tunnel.is_none());
        assert_eq!(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["SENTRY_TUNNEL_PATH: no SENTRY_DSN or SENTRY_TUNNEL_ALLOWED_DSNS to forward to; the tunnel is off"]
        );
        let (config, errors) = parse(&[
            (SENTRY_DSN, "https://k@o1.example/1"),
            (SENTRY_TUNNEL_PATH, "tunnel"),
        ]);
        assert!(config.tunnel.is_none());
        assert_eq!(errors, [ConfigError::NotAPath(SENTRY_TUNNEL_PATH)]);
    }

    #[test]
    fn event_content_options() {
        let (config, errors) = parse(&[]);
        assert!(errors.is_empty());
        assert_eq!(config.privacy, Privacy::default());
        assert!(!config.privacy.send_query && !config.privacy.send_default_pii);
        assert!(!config.handled.is_on());

        let (config, errors) = parse(&[
            (
                SENTRY_REQUEST_HEADERS,
                " User-Agent, x-request-id,,Authorization ",
            ),
            (SENTRY_SEND_QUERY, "true"),
            (SENTRY_SEND_DEFAULT_PII, "on"),
            (SENTRY_REPORT_4XX, "404, 429"),
            (SENTRY_SLOW_ORIGIN_MS, "2500"),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            config.privacy.request_headers,
            ["user-agent", "x-request-id", "authorization"]
        );
        assert!(config.privacy.send_query && config.privacy.send_default_pii);
        assert_eq!(config.handled.client_errors, [404, 429]);
        assert_eq!(config.handled.slow_origin_ms, Some(2500));

        let (config, errors) = parse(&[
            (
                SENTRY_REQUEST_HEADERS,
                "accept, bad header:secretvalue, host",
            ),
            (SENTRY_SEND_QUERY, "sure"),
            (SENTRY_REPORT_4XX, "404,503,abc,4O4"),
            (SENTRY_SLOW_ORIGIN_MS, "0"),
        ]);
        assert_eq!(config.privacy.request_headers, ["accept", "host"]);
        assert!(!config.privacy.send_query);
        assert_eq!(config.handled.client_errors, [404]);
        assert_eq!(config.handled.slow_origin_ms, None);
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "SENTRY_SEND_QUERY: not one of true, false, 1, 0, yes, no, on, off; treated as false",
                "SENTRY_REQUEST_HEADERS: entry 2 is not a header name; that entry is skipped",
                "SENTRY_REPORT_4XX: entry 2 is not a status from 400 to 499; that entry is skipped",
                "SENTRY_REPORT_4XX: entry 3 is not a status from 400 to 499; that entry is skipped",
                "SENTRY_REPORT_4XX: entry 4 is not a status from 400 to 499; that entry is skipped",
                "SENTRY_SLOW_ORIGIN_MS: must be at least 1; slow-origin warnings are off",
            ]
        );
        assert!(lines.iter().all(|l| !l.contains("secretvalue")));
    }

    #[test]
    fn timeout_bounds() {
        assert_eq!(parse_timeout("1"), Ok(1));
        assert_eq!(parse_timeout(" 600000 "), Ok(600_000));
        assert_eq!(parse_timeout("0"), Err(TimeoutError::Zero));
        assert_eq!(parse_timeout("600001"), Err(TimeoutError::TooLarge));
        assert_eq!(
            parse_timeout("99999999999999999999"),
            Err(TimeoutError::NotANumber)
        );
        assert_eq!(parse_timeout("-5"), Err(TimeoutError::NotANumber));
        assert_eq!(parse_timeout("1.5"), Err(TimeoutError::NotANumber));
    }
}
