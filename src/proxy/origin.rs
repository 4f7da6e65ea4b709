//! `ORIGIN_URL`: where requests are proxied to, and how an incoming URL maps onto it.
//!
//! `scheme://host[:port][/prefix]` replaces the scheme, host and port of the incoming URL and
//! prefixes its path. The target is built by concatenation after the fixed authority, so nothing
//! in the visitor's path or query (`//evil.com`, `@`, encoded slashes) can change the host.

use crate::proxy::url::UrlParts;
use std::fmt;

/// A validated origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginUrl {
    scheme: String,
    /// `host[:port]`
    host: String,
    /// Empty, or starts with `/` and has no trailing slash.
    prefix: String,
}

/// What is wrong with `ORIGIN_URL`. Messages never echo the value: an internal origin address is
/// not for visitors' eyes, and logs can reach more people than the config does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginUrlError {
    MissingScheme,
    UnsupportedScheme,
    MissingHost,
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
            OriginUrlError::HasUserinfo => "credentials (user:password@) are not allowed",
            OriginUrlError::InvalidPort => "the port is not a number from 1 to 65535",
            OriginUrlError::HasQueryOrFragment => "a query (?) or fragment (#) is not allowed",
        })
    }
}

impl std::error::Error for OriginUrlError {}

impl OriginUrl {
    pub fn parse(input: &str) -> Result<Self, OriginUrlError> {
        let input = input.trim();
        let (scheme, rest) = input
            .split_once("://")
            .ok_or(OriginUrlError::MissingScheme)?;
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "http" | "https") {
            return Err(OriginUrlError::UnsupportedScheme);
        }
        if rest.contains(['?', '#']) {
            return Err(OriginUrlError::HasQueryOrFragment);
        }
        let (host, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if host.contains('@') {
            return Err(OriginUrlError::HasUserinfo);
        }
        if host.is_empty() || host.starts_with(':') {
            return Err(OriginUrlError::MissingHost);
        }
        if let Some((_, port)) = host.rsplit_once(':').filter(|(_, p)| !p.contains(']')) {
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(OriginUrlError::InvalidPort);
            }
        }
        Ok(OriginUrl {
            scheme,
            host: host.to_ascii_lowercase(),
            prefix: prefix.trim_end_matches('/').to_owned(),
        })
    }

    /// The URL to fetch for an incoming request: origin scheme and host, prefix + incoming path,
    /// incoming query.
    pub fn target(&self, incoming: &UrlParts<'_>) -> String {
        let mut url = String::with_capacity(
            self.scheme.len() + 3 + self.host.len() + self.prefix.len() + incoming.path.len() + 1,
        );
        url.push_str(&self.scheme);
        url.push_str("://");
        url.push_str(&self.host);
        url.push_str(&self.prefix);
        url.push_str(incoming.path);
        if let Some(query) = incoming.query {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// `scheme://host[:port][/prefix]`, normalised: what identifies this origin.
    pub fn base(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.prefix)
    }

    /// `host[:port]` of the origin.
    pub fn host(&self) -> &str {
        &self.host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(origin: &str, incoming: &str) -> String {
        OriginUrl::parse(origin)
            .unwrap()
            .target(&UrlParts::split(incoming).unwrap())
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
    fn names_the_broken_part() {
        let table = [
            ("origin.example", OriginUrlError::MissingScheme),
            ("ftp://origin.example", OriginUrlError::UnsupportedScheme),
            ("https://", OriginUrlError::MissingHost),
            ("https:///path", OriginUrlError::MissingHost),
            ("https://u:p@origin.example", OriginUrlError::HasUserinfo),
            ("https://origin.example:99999", OriginUrlError::InvalidPort),
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
