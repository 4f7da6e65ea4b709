//! Just enough URL handling for a proxy: split an absolute URL into its parts.
//!
//! The runtime hands us `request.url` already normalised by its own URL parser, so a full parser
//! (the `url` crate and its IDNA tables cost ~180 KB of wasm) would only re-check that work.

/// The parts of an absolute URL, borrowed from it. The fragment is dropped.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct UrlParts<'a> {
    /// `http`, `https`, ... (as written, without `://`).
    pub scheme: &'a str,
    /// `host[:port]`, without userinfo.
    pub host: &'a str,
    /// Starts with `/` (an empty path becomes `/`).
    pub path: &'a str,
    /// The query without its `?`, if there was one.
    pub query: Option<&'a str>,
}

impl<'a> UrlParts<'a> {
    /// Splits `scheme://[userinfo@]host[:port][/path][?query][#fragment]`.
    /// Returns `None` when there is no `scheme://` or no host.
    pub fn split(url: &'a str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return None;
        }
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        // Userinfo never leaves this function: it holds credentials.
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        if host.is_empty() {
            return None;
        }
        let (path, query) = match tail.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (tail, None),
        };
        Some(UrlParts {
            scheme,
            host,
            path: if path.is_empty() { "/" } else { path },
            query,
        })
    }

    /// `scheme://host/path`: the URL as Sentry's `request.url` wants it (no userinfo, no query).
    pub fn without_query(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.path)
    }

    /// The host name without a port (IPv6 brackets kept).
    pub fn hostname(&self) -> &'a str {
        match self.host.rsplit_once(':') {
            Some((name, port)) if !port.contains(']') => name,
            _ => self.host,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(
        scheme: &'a str,
        host: &'a str,
        path: &'a str,
        query: Option<&'a str>,
    ) -> Option<UrlParts<'a>> {
        Some(UrlParts {
            scheme,
            host,
            path,
            query,
        })
    }

    #[test]
    fn splits_absolute_urls() {
        let table = [
            ("https://a.example/", parts("https", "a.example", "/", None)),
            ("https://a.example", parts("https", "a.example", "/", None)),
            (
                "http://a.example:8080/x/y?q=1&r=2#frag",
                parts("http", "a.example:8080", "/x/y", Some("q=1&r=2")),
            ),
            (
                "https://user:pw@a.example/p",
                parts("https", "a.example", "/p", None),
            ),
            (
                "https://a.example?x",
                parts("https", "a.example", "/", Some("x")),
            ),
            (
                "http://[::1]:8787/p",
                parts("http", "[::1]:8787", "/p", None),
            ),
            (
                "https://a.example//evil.com",
                parts("https", "a.example", "//evil.com", None),
            ),
            ("no-scheme.example/p", None),
            ("https:///p", None),
            ("ht tp://a/", None),
        ];
        for (input, want) in table {
            assert_eq!(UrlParts::split(input), want, "{input}");
        }
    }

    #[test]
    fn drops_query_and_userinfo_for_reporting() {
        let p = UrlParts::split("https://u:secret@a.example/p/q?token=1").unwrap();
        assert_eq!(p.without_query(), "https://a.example/p/q");
    }

    #[test]
    fn hostname_strips_port() {
        assert_eq!(UrlParts::split("http://a:1/").unwrap().hostname(), "a");
        assert_eq!(
            UrlParts::split("http://[::1]:2/").unwrap().hostname(),
            "[::1]"
        );
        assert_eq!(
            UrlParts::split("http://[::1]/").unwrap().hostname(),
            "[::1]"
        );
    }
}
