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
    /// edgeguard itself failed; `detail` is the error chain.
    Internal { detail: String },
    /// `ORIGIN_URL` is set but unusable, so there is nowhere safe to send the request.
    Misconfigured { detail: String },
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
            Failure::Internal { .. } | Failure::Misconfigured { .. } => 500,
        }
    }

    /// The mechanism type in the event: which outcome it was, machine-readable.
    pub fn mechanism(&self) -> &'static str {
        match self {
            Failure::OriginStatus { .. } => "origin_status",
            Failure::OriginUnreachable { .. } => "origin_unreachable",
            Failure::OriginTimeout { .. } => "origin_timeout",
            Failure::Internal { .. } => "internal",
            Failure::Misconfigured { .. } => "config",
        }
    }

    /// The exception type in the event: the headline of the Sentry issue.
    pub fn exception_type(&self) -> &'static str {
        match self {
            Failure::OriginStatus { .. } => "OriginStatus",
            Failure::OriginUnreachable { .. } => "OriginUnreachable",
            Failure::OriginTimeout { .. } => "OriginTimeout",
            Failure::Internal { .. } => "InternalError",
            Failure::Misconfigured { .. } => "ConfigError",
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
            Failure::Internal { detail } => format!("edgeguard failed: {detail}"),
            Failure::Misconfigured { detail } => format!("edgeguard is misconfigured: {detail}"),
        }
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
        _ => "Server Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                    detail: "boom".into(),
                },
                500,
                "internal",
                "InternalError",
                "edgeguard failed: boom",
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
        ];
        for (failure, status, mechanism, ty, value) in table {
            assert_eq!(failure.status(), status);
            assert_eq!(failure.mechanism(), mechanism);
            assert_eq!(failure.exception_type(), ty);
            assert_eq!(failure.exception_value(), value);
        }
    }
}
