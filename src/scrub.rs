//! What request and response data may leave for Sentry.
//!
//! Privacy by default, as Sentry's own SDKs do with `sendDefaultPii` off: headers by allowlist,
//! and any header whose name looks sensitive is replaced by `[Filtered]` even when allowlisted. No
//! cookies, no client IP, no body, no query string.

/// The value Sentry's scrubbers use, so the UI shows it as filtered rather than as data.
pub const FILTERED: &str = "[Filtered]";

/// Request headers reported by default. Lowercase, as the runtime presents names.
pub const DEFAULT_REQUEST_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "cf-ipcountry",
    "cf-ray",
    "content-length",
    "content-type",
    "host",
    "referer",
    "user-agent",
    "x-forwarded-proto",
    "x-request-id",
];

/// Origin response headers reported in the response context.
pub const DEFAULT_RESPONSE_HEADERS: &[&str] = &[
    "cache-control",
    "cf-cache-status",
    "content-length",
    "content-type",
    "retry-after",
    "server",
    "x-request-id",
];

/// Substrings that make a header name sensitive (Sentry's default denylist).
const SENSITIVE_HEADER_PARTS: &[&str] = &[
    "auth",
    "token",
    "secret",
    "session",
    "password",
    "passwd",
    "pwd",
    "key",
    "jwt",
    "bearer",
    "sso",
    "saml",
    "csrf",
    "xsrf",
    "credentials",
    "cookie",
];

/// True when a header's value must never be reported, whatever the allowlist says.
pub fn is_sensitive_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SENSITIVE_HEADER_PARTS
        .iter()
        .any(|part| name.contains(part))
}

/// Keeps the allowlisted headers, filtering sensitive values, in input order. A `Referer` loses
/// its query string, which is where tokens in links live.
pub fn filter_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    allowlist: &[&str],
) -> Vec<(String, String)> {
    headers
        .into_iter()
        .filter(|(name, _)| allowlist.iter().any(|a| a.eq_ignore_ascii_case(name)))
        .map(|(name, value)| {
            let value = if is_sensitive_header(name) {
                FILTERED
            } else if name.eq_ignore_ascii_case("referer") {
                value.split(['?', '#']).next().unwrap_or_default()
            } else {
                value
            };
            (name.to_ascii_lowercase(), value.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_names_match_sentrys_list() {
        for name in [
            "Authorization",
            "Proxy-Authorization",
            "Cookie",
            "Set-Cookie",
            "X-Api-Key",
            "X-CSRFToken",
            "X-XSRF-TOKEN",
            "X-Session-Id",
            "X-Auth-Token",
            "Password",
            "X-Amz-Security-Token",
            "JWT",
            "X-SSO",
            "SAML-Assertion",
            "X-Bearer",
        ] {
            assert!(is_sensitive_header(name), "{name}");
        }
        for name in [
            "Accept",
            "User-Agent",
            "Content-Type",
            "Host",
            "CF-Ray",
            "Referer",
        ] {
            assert!(!is_sensitive_header(name), "{name}");
        }
    }

    #[test]
    fn keeps_only_allowlisted_and_filters_sensitive_even_if_allowed() {
        let input = [
            ("user-agent", "curl/8"),
            ("authorization", "Bearer abc"),
            ("cookie", "sessionid=xyz"),
            ("x-custom", "1"),
            ("x-api-key", "k"),
            ("referer", "https://a.example/p?token=abc#f"),
        ];
        let allow = ["user-agent", "authorization", "x-api-key", "referer"];
        assert_eq!(
            filter_headers(input, &allow),
            vec![
                ("user-agent".to_owned(), "curl/8".to_owned()),
                ("authorization".to_owned(), FILTERED.to_owned()),
                ("x-api-key".to_owned(), FILTERED.to_owned()),
                ("referer".to_owned(), "https://a.example/p".to_owned()),
            ]
        );
    }

    #[test]
    fn defaults_report_no_credentials() {
        for name in DEFAULT_REQUEST_HEADERS
            .iter()
            .chain(DEFAULT_RESPONSE_HEADERS)
        {
            assert!(
                !is_sensitive_header(name),
                "{name} is allowlisted but sensitive"
            );
            assert!(!matches!(*name, "cookie" | "authorization" | "set-cookie"));
        }
    }
}
