//! Routes: a request path with its ids collapsed, so failures group by what failed, not by
//! which record was asked for. An outage of `/orders/123` and `/orders/456` is one issue.
//!
//! Each `/`-separated segment (its part before a file extension, if any) is replaced when it is
//! - all digits: `{id}`;
//! - a UUID (8-4-4-4-12 hex digits): `{uuid}`;
//! - 8 or more hex digits with at least one digit (hashes, object ids; requiring a digit keeps
//!   words spelt with a–f only, like `deadbeefcafe`, as they are): `{hex}`;
//! - 20 or more characters of base64/base64url with upper case, lower case and digits (opaque
//!   tokens; a lower-case slug is kept): `{token}`.

use crate::proxy::outcome::Failure;

/// The path with its ids collapsed. The query never takes part (it is not in `path`).
pub fn collapse(path: &str) -> String {
    path.split('/')
        .map(collapse_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// The event's `transaction`: the method and the route, as Sentry's own SDKs name server
/// transactions (`GET /orders/{id}`).
pub fn transaction(method: &str, path: &str) -> String {
    format!("{} {}", method.to_ascii_uppercase(), collapse(path))
}

/// How failures group in Sentry (the event's `fingerprint`), and the key flood control counts
/// by: the outcome (the status for a status, else the failure kind), the method, and the route.
/// The method is part of it because `GET` and `POST` on one route are usually different code
/// on the origin.
pub fn fingerprint(failure: &Failure, method: &str, path: &str) -> Vec<String> {
    vec![
        outcome_key(failure),
        method.to_ascii_uppercase(),
        collapse(path),
    ]
}

/// The outcome part of the fingerprint: the status where the origin answered with one that is
/// the problem, the mechanism otherwise (`origin_timeout`, `origin_slow`, `panic`, ...).
fn outcome_key(failure: &Failure) -> String {
    match failure {
        Failure::OriginStatus { status } | Failure::OriginClientError { status } => {
            status.to_string()
        }
        other => other.mechanism().to_owned(),
    }
}

fn collapse_segment(segment: &str) -> String {
    // `123.json` → `{id}.json`: the extension is part of the route, the stem may be an id.
    let (stem, extension) = match segment.rsplit_once('.') {
        Some((stem, ext))
            if !stem.is_empty()
                && !ext.is_empty()
                && ext.len() <= 5
                && ext.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            (stem, Some(ext))
        }
        _ => (segment, None),
    };
    let Some(placeholder) = placeholder(stem) else {
        return segment.to_owned();
    };
    match extension {
        Some(ext) => format!("{placeholder}.{ext}"),
        None => placeholder.to_owned(),
    }
}

fn placeholder(segment: &str) -> Option<&'static str> {
    let bytes = segment.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    if bytes.iter().all(u8::is_ascii_digit) {
        return Some("{id}");
    }
    if is_uuid(bytes) {
        return Some("{uuid}");
    }
    if bytes.len() >= 8
        && bytes.iter().all(u8::is_ascii_hexdigit)
        && bytes.iter().any(u8::is_ascii_digit)
    {
        return Some("{hex}");
    }
    if bytes.len() >= 20
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'='))
        && bytes.iter().any(u8::is_ascii_digit)
        && bytes.iter().any(u8::is_ascii_uppercase)
        && bytes.iter().any(u8::is_ascii_lowercase)
    {
        return Some("{token}");
    }
    None
}

fn is_uuid(bytes: &[u8]) -> bool {
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapse_table() {
        for (path, route) in [
            ("/", "/"),
            ("/orders", "/orders"),
            ("/orders/123", "/orders/{id}"),
            ("/orders/456/", "/orders/{id}/"),
            ("/orders/123/items/7", "/orders/{id}/items/{id}"),
            ("/invoices/123.pdf", "/invoices/{id}.pdf"),
            (
                "/u/3F2504E0-4F89-11D3-9A0C-0305E82C3301/avatar",
                "/u/{uuid}/avatar",
            ),
            ("/u/3f2504e0-4f89-11d3-9a0c-0305e82c3301", "/u/{uuid}"),
            (
                "/commit/9fceb02d0ae598e95dc970b74767f19372d61af8",
                "/commit/{hex}",
            ),
            ("/obj/507f1f77bcf86cd799439011", "/obj/{hex}"),
            ("/short/abc123", "/short/abc123"),
            ("/words/accepted", "/words/accepted"),
            ("/words/deadbeefcafe", "/words/deadbeefcafe"),
            ("/reset/eyJhbGciOiJIUzI1NiJ9abcDEF", "/reset/{token}"),
            (
                "/blog/my-first-post-about-rust-2024",
                "/blog/my-first-post-about-rust-2024",
            ),
            ("/v2/api", "/v2/api"),
            ("/files/report.final", "/files/report.final"),
            ("/a//b", "/a//b"),
            ("/static/app.3f2a9c1d.js", "/static/app.3f2a9c1d.js"),
            ("/static/3f2a9c1d7e.js", "/static/{hex}.js"),
        ] {
            assert_eq!(collapse(path), route, "{path}");
        }
    }

    #[test]
    fn same_route_same_fingerprint() {
        let failure = Failure::OriginStatus { status: 503 };
        let a = fingerprint(&failure, "GET", "/orders/123");
        let b = fingerprint(&failure, "get", "/orders/456");
        assert_eq!(a, b);
        assert_eq!(a, ["503", "GET", "/orders/{id}"]);
        assert_ne!(a, fingerprint(&failure, "POST", "/orders/123"));
        assert_ne!(
            a,
            fingerprint(&Failure::OriginStatus { status: 502 }, "GET", "/orders/1")
        );
        assert_eq!(
            fingerprint(&Failure::OriginTimeout { after_ms: 100 }, "GET", "/cart"),
            ["origin_timeout", "GET", "/cart"]
        );
        assert_eq!(
            fingerprint(&Failure::OriginClientError { status: 404 }, "GET", "/p/9"),
            ["404", "GET", "/p/{id}"]
        );
    }

    #[test]
    fn transaction_names_the_route() {
        assert_eq!(transaction("get", "/orders/42"), "GET /orders/{id}");
    }
}
