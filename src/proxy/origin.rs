//! `ORIGIN_URL`: where requests are proxied to, and how an incoming URL maps onto it.
//!
//! `scheme://host[:port][/prefix]` replaces the scheme, host and port of the incoming URL and
//! prefixes its path. The target is built by concatenation after the fixed authority, so nothing
//! in the visitor's path or query (`//evil.com`, `@`, encoded slashes) can change the host; and
//! from the incoming URL's own path and query text, so the origin gets them byte for byte.

use std::fmt;
use url::{ParseError, Position, Url};

/// A validated origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginUrl {
    /// Parsed (WHATWG): scheme and host lowercase, a default port left out. No userinfo, query
    /// or fragment; the path is the prefix, without a trailing slash (`/` when there is none).
    url: Url,
}

/// What is wrong with `ORIGIN_URL`. Messages never echo the value: an internal origin address is
/// not for visitors' eyes, and logs can reach more people than the config does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginUrlError {
    MissingScheme,
    UnsupportedScheme,
    MissingHost,
    InvalidHost,
    HasUserinfo,
    InvalidPort,
    HasQueryOrFragment,
}

impl fmt::Display for OriginUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OriginUrlError::MissingScheme => {
                "no scheme: expected scheme://host[:port][/prefix], e.g. https://origin.example.com"
            }
            OriginUrlError::UnsupportedScheme => "the scheme must be http or https",
            OriginUrlError::MissingHost => "no host after the scheme",
            OriginUrlError::InvalidHost => {
                "the host is not a valid ASCII domain name (write an international one in \
                 punycode, xn--...) or IP address"
            }
            OriginUrlError::HasUserinfo => "credentials (user:password@) are not allowed",
            OriginUrlError::InvalidPort => "the port is not a number from 1 to 65535",
            OriginUrlError::HasQueryOrFragment => "a query (?) or fragment (#) is not allowed",
        })
    }
}

impl std::error::Error for OriginUrlError {}

impl From<ParseError> for OriginUrlError {
    fn from(error: ParseError) -> Self {
        match error {
            ParseError::EmptyHost => OriginUrlError::MissingHost,
            ParseError::InvalidPort => OriginUrlError::InvalidPort,
            ParseError::RelativeUrlWithoutBase
            | ParseError::RelativeUrlWithCannotBeABaseBase
            | ParseError::SetHostOnCannotBeABaseUrl => OriginUrlError::MissingScheme,
            _ => OriginUrlError::InvalidHost,
        }
    }
}

impl OriginUrl {
    pub fn parse(input: &str) -> Result<Self, OriginUrlError> {
        let input = input.trim();
        // WHATWG parsing forgives what is most likely a typo here (`https:/host` and
        // `https:///host` both become `https://host/`), so `scheme://host` must be spelt out.
        let (_, rest) = input
            .split_once("://")
            .ok_or(OriginUrlError::MissingScheme)?;
        if rest.is_empty() || rest.starts_with(['/', '?', '#', ':']) {
            return Err(OriginUrlError::MissingHost);
        }
        let mut url = Url::parse(input)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OriginUrlError::UnsupportedScheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(OriginUrlError::HasUserinfo);
        }
        if url.port() == Some(0) {
            return Err(OriginUrlError::InvalidPort);
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(OriginUrlError::HasQueryOrFragment);
        }
        let prefix = url.path().trim_end_matches('/').to_owned();
        url.set_path(&prefix);
        Ok(OriginUrl { url })
    }

    /// The URL to fetch for an incoming request: origin scheme and host, prefix + incoming path,
    /// incoming query. The incoming path and query are copied as the runtime's URL holds them
    /// (already WHATWG-normalised), never decoded or re-encoded; its userinfo and fragment are
    /// left behind.
    pub fn target(&self, incoming: &Url) -> String {
        let mut url = self.base();
        url.push_str(incoming.path());
        if let Some(query) = incoming.query() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// `scheme://host[:port][/prefix]`, normalised: what identifies this origin.
    pub fn base(&self) -> String {
        let prefix = self.url.path().trim_end_matches('/');
        format!("{}{prefix}", &self.url[..Position::BeforePath])
    }

    /// `host[:port]` of the origin.
    pub fn host(&self) -> &str {
        &self.url[Position::BeforeHost..Position::AfterPort]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(origin: &str, incoming: &str) -> String {
        OriginUrl::parse(origin)
            .unwrap()
            .target(&Url::parse(incoming).unwrap())
    }

    #[test]
    fn rewrites_scheme_host_port_and_prefixes_the_path() {
        let table = [
            (
                "http://127.0.0.1:8001",
                "https://site.example/a/b?x=1",
                "http://127.0.0.1:8001/a/b?x=1",
            ),
            (
                "https://origin.example/",
                "https://site.example/",
                "https://origin.example/",
            ),
            (
                "https://origin.example/app/",
                "https://site.example/a?",
                "https://origin.example/app/a?",
            ),
            (
                "HTTPS://Origin.Example",
                "https://site.example",
                "https://origin.example/",
            ),
            (
                "http://o:1/p",
                "https://site.example/q/?z",
                "http://o:1/p/q/?z",
            ),
            (
                "http://[::1]:8080/p",
                "https://site.example/x?y",
                "http://[::1]:8080/p/x?y",
            ),
            ("http://[0:0::1]", "https://site.example/", "http://[::1]/"),
            // An international host, written in punycode.
            (
                "https://xn--bcher-kva.example",
                "https://site.example/x",
                "https://xn--bcher-kva.example/x",
            ),
            (
                "https://origin.example",
                "http://[2001:db8::1]:8787/x",
                "https://origin.example/x",
            ),
            // A default port is the same origin; the visitor's port never carries over.
            (
                "https://origin.example:443",
                "https://site.example/x",
                "https://origin.example/x",
            ),
            (
                "http://origin.example:80/",
                "https://site.example/",
                "http://origin.example/",
            ),
            (
                "https://origin.example:8443",
                "https://site.example:9443/x",
                "https://origin.example:8443/x",
            ),
            (
                "http://10.0.0.2:8000",
                "https://user@site.example/",
                "http://10.0.0.2:8000/",
            ),
        ];
        for (origin, incoming, want) in table {
            assert_eq!(target(origin, incoming), want, "{origin} {incoming}");
        }
    }

    #[test]
    fn visitor_input_cannot_change_the_host() {
        let table = [
            ("https://site.example//evil.com/x", "http://o:1//evil.com/x"),
            ("https://site.example/@evil.com", "http://o:1/@evil.com"),
            (
                "https://site.example/%2F%2Fevil.com",
                "http://o:1/%2F%2Fevil.com",
            ),
            (
                "https://site.example/?u=http://evil.com",
                "http://o:1/?u=http://evil.com",
            ),
            ("https://user:pw@site.example/", "http://o:1/"),
        ];
        for (incoming, want) in table {
            assert_eq!(target("http://o:1", incoming), want, "{incoming}");
        }
    }

    #[test]
    fn the_path_and_query_arrive_byte_for_byte() {
        let table = [
            // Percent-encoding is kept as it came, case included: never decoded, never redone.
            (
                "https://site.example/caf%C3%A9/a%20b/%25/%7e?q=%26x%3d1&r=%2F",
                "http://o:1/p/caf%C3%A9/a%20b/%25/%7e?q=%26x%3d1&r=%2F",
            ),
            // An encoded slash is not a separator: still one segment.
            ("https://site.example/a%2Fb/%2f", "http://o:1/p/a%2Fb/%2f"),
            // Encoded segments that are not dot segments stay as they are.
            (
                "https://site.example/%2e%2e%2fetc/..x/.%2e%2e/%2e.git",
                "http://o:1/p/%2e%2e%2fetc/..x/.%2e%2e/%2e.git",
            ),
            (
                "https://site.example/a;b=c/,/!$&'()*+",
                "http://o:1/p/a;b=c/,/!$&'()*+",
            ),
            ("https://site.example/x?", "http://o:1/p/x?"),
            ("https://site.example/x#fragment", "http://o:1/p/x"),
        ];
        for (incoming, want) in table {
            assert_eq!(target("http://o:1/p", incoming), want, "{incoming}");
            // What the runtime hands over is already WHATWG-normalised: parsed again, the
            // same text.
            assert_eq!(Url::parse(incoming).unwrap().as_str(), incoming);
        }
    }

    #[test]
    fn dot_segments_cannot_climb_out_of_the_prefix() {
        // WHATWG parsing (the runtime's, and `url`'s) resolves `..` and `%2e%2e` before the
        // target is built, and never above the root: the prefix stays in front.
        for incoming in [
            "https://site.example/a/../../secret",
            "https://site.example/a/%2e%2e/%2E%2E/secret",
            "https://site.example/.%2e/secret",
        ] {
            assert_eq!(target("http://o:1/app", incoming), "http://o:1/app/secret");
        }
    }

    #[test]
    fn host_and_base_are_normalised() {
        let host = |origin: &str| OriginUrl::parse(origin).unwrap().host().to_owned();
        assert_eq!(host("http://[::1]:8080/p"), "[::1]:8080");
        assert_eq!(host("HTTPS://Origin.Example:443/"), "origin.example");
        assert_eq!(host("https://origin.example:8443"), "origin.example:8443");
        assert_eq!(
            OriginUrl::parse("HTTPS://Origin.Example/app//").unwrap(),
            OriginUrl::parse("https://origin.example/app").unwrap()
        );
        assert_eq!(
            OriginUrl::parse("https://origin.example/app/")
                .unwrap()
                .base(),
            "https://origin.example/app"
        );
    }

    #[test]
    fn names_the_broken_part() {
        let table = [
            ("origin.example", OriginUrlError::MissingScheme),
            ("ftp://origin.example", OriginUrlError::UnsupportedScheme),
            ("https://", OriginUrlError::MissingHost),
            ("https:///path", OriginUrlError::MissingHost),
            ("https://u:p@origin.example", OriginUrlError::HasUserinfo),
            ("https://origin.example:99999", OriginUrlError::InvalidPort),
            ("https://origin.example:0", OriginUrlError::InvalidPort),
            ("https://origin.example:8o", OriginUrlError::InvalidPort),
            ("https://exa mple.com", OriginUrlError::InvalidHost),
            ("http://[::1", OriginUrlError::InvalidHost),
            ("http://999.1.1.1", OriginUrlError::InvalidHost),
            // ASCII hosts only (idna_adapter 1.0, see Cargo.toml): punycode is accepted below.
            ("https://bücher.example", OriginUrlError::InvalidHost),
            ("https:origin.example", OriginUrlError::MissingScheme),
            ("https://?a=1", OriginUrlError::MissingHost),
            ("https://:8080", OriginUrlError::MissingHost),
            (
                "https://origin.example/?a=1",
                OriginUrlError::HasQueryOrFragment,
            ),
        ];
        for (input, want) in table {
            assert_eq!(OriginUrl::parse(input).err(), Some(want), "{input}");
        }
    }
}
