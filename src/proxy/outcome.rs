//! What happened to a request, and what that means for the visitor and for Sentry.
//!
//! One enum decides the visitor's status, the page, and the exception the event carries, so the
//! three can never disagree.

/// A request that edgeguard could not serve from the origin as-is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The origin answered with a 5xx status.
    OriginStatus { status: u16 },
    /// The origin could not be reached (connection refused, DNS, TLS). `detail` is the runtime's
    /// message: it goes to Sentry only, never to the visitor or the log.
    OriginUnreachable { detail: String },
    /// The origin sent no response headers within the configured time.
    OriginTimeout { after_ms: u32 },
    /// edgeguard itself returned an error; `chain` is outermost first.
    Internal { chain: Vec<ErrorLink> },
    /// edgeguard itself panicked (caught by the unwind build).
    Panic {
        message: String,
        location: Option<SourceLocation>,
    },
    /// `ORIGIN_URL` is set but unusable, so there is nowhere safe to send the request.
    Misconfigured { detail: String },
    /// The request already carries this deployment's loop marker: it has come back around and
    /// fetching it again would loop until a runtime limit cut it off. Not reported: the hop
    /// that sent it here sees this 508 as an origin failure and reports that, so a real loop
    /// makes exactly one event, and a visitor forging the marker makes none.
    Loop,
    /// Handled (opt-in, `SENTRY_REPORT_4XX`): the origin answered a 4xx the operator wants to
    /// hear about. The visitor gets the origin's response unchanged; a warning is reported.
    OriginClientError { status: u16 },
    /// Handled (opt-in, `SENTRY_SLOW_ORIGIN_MS`): the origin's response headers took at least
    /// `threshold_ms`. Passed through unchanged; a warning is reported.
    OriginSlow {
        status: u16,
        duration_ms: u32,
        threshold_ms: u32,
    },
}

/// One error of a chain: its kind (the Rust type or variant) and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLink {
    pub kind: String,
    pub message: String,
}

/// Where in edgeguard's source a panic happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLocation {
    pub file: String,
    pub line: u32,
    pub column: u32,
}

/// One entry of the event's `exception.values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    pub ty: String,
    pub value: String,
    /// The single frame we know (a panic's location), if any.
    pub frame: Option<SourceLocation>,
}

/// The statuses edgeguard intercepts: every 5xx. Everything else passes through untouched.
pub fn is_origin_failure(status: u16) -> bool {
    (500..=599).contains(&status)
}

impl Failure {
    /// The status the visitor gets.
    pub fn status(&self) -> u16 {
        match self {
            Failure::OriginStatus { status } => *status,
            Failure::OriginUnreachable { .. } => 502,
            Failure::OriginTimeout { .. } => 504,
            Failure::Internal { .. } | Failure::Panic { .. } | Failure::Misconfigured { .. } => 500,
            Failure::Loop => 508,
            Failure::OriginClientError { status } | Failure::OriginSlow { status, .. } => *status,
        }
    }

    /// Whether this failure becomes a Sentry event (see [`Failure::Loop`] for the one that
    /// does not).
    pub fn is_reported(&self) -> bool {
        !matches!(self, Failure::Loop)
    }

    /// The mechanism type in the event: which outcome it was, machine-readable.
    pub fn mechanism(&self) -> &'static str {
        match self {
            Failure::OriginStatus { .. } => "origin_status",
            Failure::OriginUnreachable { .. } => "origin_unreachable",
            Failure::OriginTimeout { .. } => "origin_timeout",
            Failure::Internal { .. } => "internal",
            Failure::Panic { .. } => "panic",
            Failure::Misconfigured { .. } => "config",
            Failure::Loop => "loop",
            Failure::OriginClientError { .. } => "origin_client_error",
            Failure::OriginSlow { .. } => "origin_slow",
        }
    }

    /// The exception type in the event: the headline of the Sentry issue.
    pub fn exception_type(&self) -> &'static str {
        match self {
            Failure::OriginStatus { .. } => "OriginStatus",
            Failure::OriginUnreachable { .. } => "OriginUnreachable",
            Failure::OriginTimeout { .. } => "OriginTimeout",
            Failure::Internal { .. } => "InternalError",
            Failure::Panic { .. } => "panic",
            Failure::Misconfigured { .. } => "ConfigError",
            Failure::Loop => "LoopDetected",
            Failure::OriginClientError { .. } => "OriginClientError",
            Failure::OriginSlow { .. } => "OriginSlow",
        }
    }

    /// The exception value: one sentence for the team reading the issue.
    pub fn exception_value(&self) -> String {
        match self {
            Failure::OriginStatus { status } => {
                format!("Origin answered {status} {}", reason_phrase(*status))
            }
            Failure::OriginUnreachable { detail } => {
                format!("Origin could not be reached: {detail}")
            }
            Failure::OriginTimeout { after_ms } => {
                format!("Origin sent no response within {after_ms} ms")
            }
            Failure::Internal { chain } => {
                let messages: Vec<&str> = chain.iter().map(|l| l.message.as_str()).collect();
                format!("edgeguard failed: {}", messages.join(": "))
            }
            Failure::Panic { message, .. } => message.clone(),
            Failure::Misconfigured { detail } => format!("edgeguard is misconfigured: {detail}"),
            Failure::Loop => {
                "Request came back to this edgeguard (does ORIGIN_URL point at the worker?)"
                    .to_owned()
            }
            Failure::OriginClientError { status } => {
                format!("Origin answered {status} {}", reason_phrase(*status))
            }
            Failure::OriginSlow {
                status,
                duration_ms,
                threshold_ms,
            } => format!(
                "Origin took {duration_ms} ms to answer {status} (threshold {threshold_ms} ms)"
            ),
        }
    }

    /// Reported but served as the origin answered (the opt-in warnings): `handled: true` and
    /// level `warning` in the event, and no page.
    pub fn is_handled(&self) -> bool {
        matches!(
            self,
            Failure::OriginClientError { .. } | Failure::OriginSlow { .. }
        )
    }

    /// The event's `level`.
    pub fn level(&self) -> &'static str {
        if self.is_handled() {
            "warning"
        } else {
            "error"
        }
    }

    /// Whether the origin caused it, so it groups by route (see `route::fingerprint`);
    /// edgeguard's own failures group by Sentry's default (exception and frame) instead.
    pub fn is_origins(&self) -> bool {
        matches!(
            self,
            Failure::OriginStatus { .. }
                | Failure::OriginUnreachable { .. }
                | Failure::OriginTimeout { .. }
                | Failure::OriginClientError { .. }
                | Failure::OriginSlow { .. }
        )
    }

    /// The event's `exception.values`, innermost cause first as Sentry expects: an error chain
    /// becomes one value per link; a panic carries its source location as a frame.
    pub fn exceptions(&self) -> Vec<Exception> {
        match self {
            Failure::Internal { chain } if !chain.is_empty() => chain
                .iter()
                .rev()
                .map(|link| Exception {
                    ty: link.kind.clone(),
                    value: link.message.clone(),
                    frame: None,
                })
                .collect(),
            Failure::Panic { message, location } => vec![Exception {
                ty: self.exception_type().to_owned(),
                value: message.clone(),
                frame: location.clone(),
            }],
            _ => vec![Exception {
                ty: self.exception_type().to_owned(),
                value: self.exception_value(),
                frame: None,
            }],
        }
    }
}

/// The opt-in warnings for responses that pass through: which 4xx statuses to report
/// (`SENTRY_REPORT_4XX`) and the slow-origin threshold (`SENTRY_SLOW_ORIGIN_MS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandledEvents {
    pub client_errors: Vec<u16>,
    pub slow_origin_ms: Option<u32>,
}

impl HandledEvents {
    /// Whether any option is on. When not, a passing response costs nothing extra: no headers
    /// are read.
    pub fn is_on(&self) -> bool {
        !self.client_errors.is_empty() || self.slow_origin_ms.is_some()
    }

    /// The warning to report for a response that passes through, if any: a listed 4xx first
    /// (it says more than the time it took), else a slow answer. 5xx never get here: they are
    /// failures.
    pub fn notice(&self, status: u16, duration_ms: u32) -> Option<Failure> {
        if is_origin_failure(status) {
            return None;
        }
        if self.client_errors.contains(&status) {
            return Some(Failure::OriginClientError { status });
        }
        match self.slow_origin_ms {
            Some(threshold_ms) if duration_ms >= threshold_ms => Some(Failure::OriginSlow {
                status,
                duration_ms,
                threshold_ms,
            }),
            _ => None,
        }
    }
}

/// How much of a failing origin body edgeguard reads, only to count it for the event's
/// `body_size`. The bytes are never kept or shown; the rest is cancelled unread.
pub const FAILING_BODY_PEEK_BYTES: u64 = 64 * 1024;
/// How long edgeguard waits for that prefix: the visitor's page must not wait on a slow body.
pub const FAILING_BODY_PEEK_MS: u32 = 100;

/// Counts a failing body's bytes while it is read, and says when to stop.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BodyMeter {
    seen: u64,
}

impl BodyMeter {
    /// Counts a chunk; `false` once the prefix limit is reached (stop reading).
    pub fn add(&mut self, len: u64) -> bool {
        self.seen = self.seen.saturating_add(len);
        self.seen < FAILING_BODY_PEEK_BYTES
    }

    /// The body's exact size when it was read to its end, else `None`: a prefix is not a size.
    pub fn size(&self, reached_end: bool) -> Option<u64> {
        reached_end.then_some(self.seen)
    }
}

/// The standard reason phrase for a status (RFC 9110 and common extensions), or a generic one.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        520..=527 | 530 => "Origin Error",
        400..=499 => client_reason_phrase(status),
        _ => "Server Error",
    }
}

/// 4xx reason phrases, for the opt-in client-error warnings.
fn client_reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        _ => "Client Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(kind: &str, message: &str) -> ErrorLink {
        ErrorLink {
            kind: kind.into(),
            message: message.into(),
        }
    }

    #[test]
    fn error_chains_become_one_exception_per_link_innermost_first() {
        let failure = Failure::Internal {
            chain: vec![
                link("ProxyError", "could not forward"),
                link("JsError", "TypeError: bad"),
            ],
        };
        let values = failure.exceptions();
        assert_eq!(
            values
                .iter()
                .map(|e| (e.ty.as_str(), e.value.as_str()))
                .collect::<Vec<_>>(),
            [
                ("JsError", "TypeError: bad"),
                ("ProxyError", "could not forward")
            ]
        );
        assert_eq!(
            failure.exception_value(),
            "edgeguard failed: could not forward: TypeError: bad"
        );
    }

    #[test]
    fn a_panic_carries_its_location_as_a_frame() {
        let location = SourceLocation {
            file: "src/edge.rs".into(),
            line: 7,
            column: 5,
        };
        let failure = Failure::Panic {
            message: "index out of bounds".into(),
            location: Some(location.clone()),
        };
        assert_eq!(
            failure.exceptions(),
            [Exception {
                ty: "panic".into(),
                value: "index out of bounds".into(),
                frame: Some(location)
            }]
        );
    }

    #[test]
    fn handled_events_are_opt_in_and_never_for_5xx() {
        let off = HandledEvents::default();
        assert!(!off.is_on());
        assert_eq!(off.notice(404, 60_000), None);
        let on = HandledEvents {
            client_errors: vec![404, 429],
            slow_origin_ms: Some(500),
        };
        assert!(on.is_on());
        assert_eq!(
            on.notice(404, 10),
            Some(Failure::OriginClientError { status: 404 })
        );
        assert_eq!(
            on.notice(404, 900),
            Some(Failure::OriginClientError { status: 404 })
        );
        assert_eq!(on.notice(403, 10), None);
        assert_eq!(on.notice(200, 499), None);
        let slow = on.notice(200, 500).unwrap();
        assert_eq!(
            slow,
            Failure::OriginSlow {
                status: 200,
                duration_ms: 500,
                threshold_ms: 500
            }
        );
        assert_eq!(
            slow.exception_value(),
            "Origin took 500 ms to answer 200 (threshold 500 ms)"
        );
        assert_eq!((slow.level(), slow.is_handled()), ("warning", true));
        assert_eq!(
            on.notice(503, 9_000),
            None,
            "a 5xx is a failure, not a notice"
        );
        let client = Failure::OriginClientError { status: 404 };
        assert_eq!(client.exception_value(), "Origin answered 404 Not Found");
        assert_eq!(client.status(), 404);
        assert_eq!(Failure::OriginStatus { status: 503 }.level(), "error");
    }

    #[test]
    fn intercepts_exactly_the_5xx_range() {
        for status in [100, 200, 204, 301, 304, 404, 499, 600, 999] {
            assert!(!is_origin_failure(status), "{status}");
        }
        for status in [500, 502, 503, 504, 520, 599] {
            assert!(is_origin_failure(status), "{status}");
        }
    }

    #[test]
    fn body_meter_gives_a_size_only_for_a_body_read_to_its_end() {
        let mut meter = BodyMeter::default();
        assert!(meter.add(1000));
        assert!(meter.add(24));
        assert_eq!(meter.size(true), Some(1024));
        assert_eq!(meter.size(false), None);

        let mut big = BodyMeter::default();
        assert!(big.add(FAILING_BODY_PEEK_BYTES - 1));
        assert!(!big.add(1), "stops at the limit");
        assert_eq!(big.size(false), None);
        assert!(!BodyMeter::default().add(u64::MAX), "no overflow");
    }

    #[test]
    fn each_failure_maps_to_status_mechanism_and_type() {
        let table = [
            (
                Failure::OriginStatus { status: 503 },
                503,
                "origin_status",
                "OriginStatus",
                "Origin answered 503 Service Unavailable",
            ),
            (
                Failure::OriginUnreachable {
                    detail: "Network connection lost.".into(),
                },
                502,
                "origin_unreachable",
                "OriginUnreachable",
                "Origin could not be reached: Network connection lost.",
            ),
            (
                Failure::OriginTimeout { after_ms: 1500 },
                504,
                "origin_timeout",
                "OriginTimeout",
                "Origin sent no response within 1500 ms",
            ),
            (
                Failure::Internal {
                    chain: vec![link("Edge", "boom")],
                },
                500,
                "internal",
                "InternalError",
                "edgeguard failed: boom",
            ),
            (
                Failure::Panic {
                    message: "oops".into(),
                    location: None,
                },
                500,
                "panic",
                "panic",
                "oops",
            ),
            (
                Failure::Misconfigured {
                    detail: "ORIGIN_URL: no scheme".into(),
                },
                500,
                "config",
                "ConfigError",
                "edgeguard is misconfigured: ORIGIN_URL: no scheme",
            ),
            (
                Failure::Loop,
                508,
                "loop",
                "LoopDetected",
                "Request came back to this edgeguard (does ORIGIN_URL point at the worker?)",
            ),
        ];
        for (failure, status, mechanism, ty, value) in table {
            assert_eq!(failure.is_reported(), failure != Failure::Loop);
            assert_eq!(failure.status(), status);
            assert_eq!(failure.mechanism(), mechanism);
            assert_eq!(failure.exception_type(), ty);
            assert_eq!(failure.exception_value(), value);
        }
    }
}
