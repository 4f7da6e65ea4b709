//! The Sentry DSN: where events go and the key that authorises them.
//!
//! `{scheme}://{public_key}[:{secret_key}]@{host}[:{port}]{path}/{project_id}`. The secret key is
//! deprecated by Sentry: accepted, never required. Error messages name the part that is wrong and
//! never echo the value, which is a credential.

use std::fmt;

/// A parsed DSN. Deliberately not `Debug`: it holds keys, and a stray `{:?}` must not log them.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    scheme: String,
    public_key: String,
    secret_key: Option<String>,
    /// `host[:port]`
    host: String,
    /// Path prefix before the project id, without a trailing slash (often empty).
    path: String,
    project_id: String,
}

/// What is wrong with a DSN. Messages never contain the DSN itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DsnError {
    MissingScheme,
    UnsupportedScheme,
    MissingPublicKey,
    MissingHost,
    InvalidPort,
    MissingProjectId,
    InvalidProjectId,
}

impl fmt::Display for DsnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DsnError::MissingScheme => "no scheme: expected https://<key>@<host>/<project id>",
            DsnError::UnsupportedScheme => "the scheme must be http or https",
            DsnError::MissingPublicKey => "no public key before the '@'",
            DsnError::MissingHost => "no host after the '@'",
            DsnError::InvalidPort => "the port is not a number from 1 to 65535",
            DsnError::MissingProjectId => "no project id at the end of the path",
            DsnError::InvalidProjectId => "the project id (last path segment) is not a number",
        })
    }
}

impl std::error::Error for DsnError {}

impl Dsn {
    /// Parses a DSN, trimming surrounding whitespace (a common paste accident).
    pub fn parse(input: &str) -> Result<Self, DsnError> {
        let input = input.trim();
        let (scheme, rest) = input.split_once("://").ok_or(DsnError::MissingScheme)?;
        if !matches!(scheme, "http" | "https") {
            return Err(DsnError::UnsupportedScheme);
        }
        let (userinfo, rest) = rest.rsplit_once('@').ok_or(DsnError::MissingPublicKey)?;
        let (public_key, secret_key) = match userinfo.split_once(':') {
            Some((public, secret)) => (public, Some(secret).filter(|s| !s.is_empty())),
            None => (userinfo, None),
        };
        if public_key.is_empty() {
            return Err(DsnError::MissingPublicKey);
        }
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if host.is_empty() || host.starts_with(':') {
            return Err(DsnError::MissingHost);
        }
        if let Some((_, port)) = host.rsplit_once(':').filter(|(_, p)| !p.contains(']')) {
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(DsnError::InvalidPort);
            }
        }
        let path = path.trim_end_matches('/');
        let (prefix, project_id) = path.rsplit_once('/').ok_or(DsnError::MissingProjectId)?;
        if project_id.is_empty() {
            return Err(DsnError::MissingProjectId);
        }
        if !project_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DsnError::InvalidProjectId);
        }
        Ok(Dsn {
            scheme: scheme.to_owned(),
            public_key: public_key.to_owned(),
            secret_key: secret_key.map(str::to_owned),
            host: host.to_owned(),
            path: prefix.to_owned(),
            project_id: project_id.to_owned(),
        })
    }

    /// `{scheme}://{host}{path}/api/{project_id}/envelope/`
    pub fn envelope_url(&self) -> String {
        format!(
            "{}://{}{}/api/{}/envelope/",
            self.scheme, self.host, self.path, self.project_id
        )
    }

    /// The `X-Sentry-Auth` header value for a client called `client` (`name/version`).
    pub fn auth_header(&self, client: &str) -> String {
        let mut header = format!(
            "Sentry sentry_version=7, sentry_client={client}, sentry_key={}",
            self.public_key
        );
        if let Some(secret) = &self.secret_key {
            header.push_str(", sentry_secret=");
            header.push_str(secret);
        }
        header
    }

    /// Whether `other` names the same project: host, port, public key and project id (scheme,
    /// path prefix and secret key aside). The tunnel's test of an envelope's `dsn`.
    pub fn same_project(&self, other: &Dsn) -> bool {
        self.host.eq_ignore_ascii_case(&other.host)
            && self.public_key == other.public_key
            && self.project_id == other.project_id
    }

    /// The DSN as Sentry's JavaScript SDK writes it back (`dsnToString`, no secret key), in
    /// pieces: `{scheme}://{public_key}@{host}{path}/{project_id}`, what its tunnel path is
    /// hashed from (hashed piece by piece: no string is built).
    pub fn public_form(&self) -> [&str; 8] {
        [
            &self.scheme,
            "://",
            &self.public_key,
            "@",
            &self.host,
            &self.path,
            "/",
            &self.project_id,
        ]
    }

    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    pub fn project_id(&self) -> &str {
        &self.project_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let dsn = Dsn::parse("https://abc123@o1.ingest.sentry.io/42").unwrap();
        assert_eq!(dsn.public_key(), "abc123");
        assert_eq!(dsn.project_id(), "42");
        assert_eq!(
            dsn.envelope_url(),
            "https://o1.ingest.sentry.io/api/42/envelope/"
        );
        assert_eq!(
            dsn.auth_header("edgeguard/0.1.0"),
            "Sentry sentry_version=7, sentry_client=edgeguard/0.1.0, sentry_key=abc123"
        );

        let dsn = Dsn::parse("http://pub:sec@127.0.0.1:9000/sentry/prefix/7/").unwrap();
        assert_eq!(
            dsn.envelope_url(),
            "http://127.0.0.1:9000/sentry/prefix/api/7/envelope/"
        );
        assert_eq!(
            dsn.auth_header("edgeguard/0.1.0"),
            "Sentry sentry_version=7, sentry_client=edgeguard/0.1.0, sentry_key=pub, sentry_secret=sec"
        );

        let dsn = Dsn::parse("  https://k@[::1]:9000/3\n").unwrap();
        assert_eq!(dsn.envelope_url(), "https://[::1]:9000/api/3/envelope/");
    }

    #[test]
    fn names_the_broken_part() {
        let table = [
            ("", DsnError::MissingScheme),
            ("abc@host/1", DsnError::MissingScheme),
            ("ftp://k@host/1", DsnError::UnsupportedScheme),
            ("https://host/1", DsnError::MissingPublicKey),
            ("https://:secret@host/1", DsnError::MissingPublicKey),
            ("https://k@/1", DsnError::MissingHost),
            ("https://k@:90/1", DsnError::MissingHost),
            ("https://k@host:http/1", DsnError::InvalidPort),
            ("https://k@host:0/1", DsnError::InvalidPort),
            ("https://k@host", DsnError::MissingProjectId),
            ("https://k@host/", DsnError::MissingProjectId),
            ("https://k@host/abc", DsnError::InvalidProjectId),
        ];
        for (input, want) in table {
            assert_eq!(Dsn::parse(input).err(), Some(want), "{input:?}");
        }
    }

    #[test]
    fn same_project_compares_host_port_key_and_project() {
        let dsn = Dsn::parse("https://key@o1.ingest.example:9000/prefix/42").unwrap();
        let same = [
            "http://key@O1.ingest.example:9000/42",
            "https://key:s@o1.ingest.example:9000/other/42",
        ];
        for other in same {
            assert!(dsn.same_project(&Dsn::parse(other).unwrap()), "{other}");
        }
        let foreign = [
            "https://key@o2.ingest.example:9000/42",
            "https://key@o1.ingest.example/42",
            "https://key@o1.ingest.example:9001/42",
            "https://other@o1.ingest.example:9000/42",
            "https://key@o1.ingest.example:9000/43",
        ];
        for other in foreign {
            assert!(!dsn.same_project(&Dsn::parse(other).unwrap()), "{other}");
        }
    }

    #[test]
    fn public_form_drops_the_secret_only() {
        let dsn = Dsn::parse("http://pub:sec@127.0.0.1:9000/sentry/prefix/7/").unwrap();
        assert_eq!(
            dsn.public_form().concat(),
            "http://pub@127.0.0.1:9000/sentry/prefix/7"
        );
        let dsn = Dsn::parse("https://abc@o1.ingest.sentry.io/42").unwrap();
        assert_eq!(
            dsn.public_form().concat(),
            "https://abc@o1.ingest.sentry.io/42"
        );
    }

    #[test]
    fn errors_never_echo_the_value() {
        let secret = "https://supersecretkey@host/notanumber";
        let message = Dsn::parse(secret).err().unwrap().to_string();
        assert!(!message.contains("supersecretkey"), "{message}");
    }
}
