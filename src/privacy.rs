//! What request and response data may leave for Sentry.
//!
//! Privacy by default, as Sentry's own SDKs do with `sendDefaultPii` off: headers by allowlist,
//! and any header whose name looks sensitive is replaced by `[Filtered]` even when allowlisted. No
//! cookies, no client IP, no body, no query string. The query string (`SENTRY_SEND_QUERY`) and
//! cookies (`SENTRY_SEND_DEFAULT_PII`) are opt-in, and even then a sensitive key's value is
//! `[Filtered]`. The body is never sent: it is streamed to the origin, never buffered.

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

/// What of the visitor's request an event may carry (`SENTRY_REQUEST_HEADERS`,
/// `SENTRY_SEND_QUERY`, `SENTRY_SEND_DEFAULT_PII`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privacy {
    /// Lowercase header names reported; sensitive ones are still `[Filtered]`.
    pub request_headers: Vec<String>,
    /// Report the query string (sensitive keys filtered).
    pub send_query: bool,
    /// Report cookies (sensitive names filtered) and the client IP. Never the body.
    pub send_default_pii: bool,
}

impl Default for Privacy {
    fn default() -> Self {
        Privacy {
            request_headers: DEFAULT_REQUEST_HEADERS
                .iter()
                .map(|name| (*name).to_owned())
                .collect(),
            send_query: false,
            send_default_pii: false,
        }
    }
}

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
    // Every header of every event goes through here: a plain scan, case-insensitive in place,
    // with no lowercased copy and no substring searcher set up per part.
    let name = name.as_bytes();
    (0..name.len()).any(|start| {
        let rest = name.get(start..).unwrap_or_default();
        SENSITIVE_HEADER_PARTS.iter().any(|part| {
            rest.get(..part.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(part.as_bytes()))
        })
    })
}

/// True when a query or cookie key's value must not be reported: Sentry's query/body key list
/// (password, secret, passwd, api_key, apikey, auth, credentials, mysql_pwd, privatekey,
/// private_key, token) is contained in the header list, which also catches session and CSRF
/// cookies (`sessionid`, `csrftoken`).
pub fn is_sensitive_key(name: &str) -> bool {
    is_sensitive_header(name)
}

/// The query string as `[key, value]` pairs (decoded), sensitive keys' values filtered.
pub fn filter_query(query: &str) -> Vec<(String, String)> {
    crate::feedback::form::parse(query.as_bytes())
        .into_iter()
        .map(|(key, value)| filter_pair(key, value))
        .collect()
}

/// A `Cookie` header as `[name, value]` pairs, sensitive names' values filtered.
pub fn filter_cookies(header: &str) -> Vec<(String, String)> {
    header
        .split(';')
        .filter_map(|piece| {
            let piece = piece.trim();
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            (!name.is_empty()).then(|| filter_pair(name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

fn filter_pair(key: String, value: String) -> (String, String) {
    if is_sensitive_key(&key) {
        (key, FILTERED.to_owned())
    } else {
        (key, value)
    }
}

/// Keeps the allowlisted headers, filtering sensitive values, in input order. A `Referer` loses
/// its query string, which is where tokens in links live.
pub fn filter_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    allowlist: &[impl AsRef<str>],
) -> Vec<(String, String)> {
    headers
        .into_iter()
        .filter(|(name, _)| {
            allowlist
                .iter()
                .any(|a| a.as_ref().eq_ignore_ascii_case(name))
        })
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
    fn the_scan_agrees_with_lowercasing_and_searching() {
        let reference = |name: &str| {
            let name = name.to_ascii_lowercase();
            SENSITIVE_HEADER_PARTS
                .iter()
                .any(|part| name.contains(part))
        };
        for name in [
            "",
            "k",
            "ke",
            "KEY",
            "x-key",
            "monkey-business",
            "x-requested-with",
            "Authorization",
            "x-tok",
            "x-tokens",
            "pw",
            "xsrfx",
            "ÄuthKey",
            "sso",
            "Ss",
            "accept-language",
            "x-cookie-consent",
            "credential",
            "cf-connecting-ip",
        ] {
            assert_eq!(is_sensitive_header(name), reference(name), "{name}");
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
    fn query_keeps_plain_values_and_filters_sensitive_keys() {
        assert_eq!(
            filter_query("page=2&token=abc&q=red+shoes&Password=hunter2&api_key=k&sort=&x"),
            [
                ("page", "2"),
                ("token", FILTERED),
                ("q", "red shoes"),
                ("Password", FILTERED),
                ("api_key", FILTERED),
                ("sort", ""),
                ("x", ""),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        // Encoded keys are decoded before they are judged.
        assert_eq!(
            filter_query("access%5Ftoken=abc&mysql_pwd=p&privatekey=k&credentials=c&auth=a"),
            [
                "access_token",
                "mysql_pwd",
                "privatekey",
                "credentials",
                "auth"
            ]
            .map(|k| (k.to_owned(), FILTERED.to_owned()))
        );
    }

    #[test]
    fn cookies_keep_plain_values_and_filter_sensitive_names() {
        assert_eq!(
            filter_cookies("theme=dark; sessionid=SECRET;csrftoken=SECRET ; lang=ko; flag"),
            [
                ("theme", "dark"),
                ("sessionid", FILTERED),
                ("csrftoken", FILTERED),
                ("lang", "ko"),
                ("flag", ""),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert!(filter_cookies("").is_empty());
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
