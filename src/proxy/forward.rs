//! What edgeguard changes in the headers it forwards, in both directions, and how it notices a
//! request that has looped back to itself.
//!
//! The edge hands in the headers as lowercase `(name, value)` pairs and gets back an edit (names
//! to delete, then names to set) to apply to a copy of the runtime's `Headers`. Applying an edit
//! to a copy, rather than rebuilding from pairs, keeps repeated headers (`Set-Cookie`, several
//! `Cookie`) exactly as they came.
//!
//! Rules (RFC 9110 §7.6.1, §7.8; RFC 6455 for WebSocket):
//! - Hop-by-hop headers describe one connection and are never forwarded: `Connection` and every
//!   header it (or `Proxy-Connection`) names, `Proxy-Connection`, `Keep-Alive`, `TE`, `Trailer`,
//!   `Transfer-Encoding`, `Upgrade`, `Proxy-Authorization`, `Proxy-Authenticate`. The one
//!   exception is `Upgrade: websocket` on a GET: the runtime needs it to open a WebSocket to the
//!   origin (and writes its own `Connection: Upgrade` and handshake keys).
//! - `Host` is not forwarded: the runtime sets it from the URL fetched, so the origin sees its
//!   own host (`ORIGIN_URL`'s, or the request's own in route mode). The visitor's host goes in
//!   `X-Forwarded-Host`, the visitor's scheme in `X-Forwarded-Proto` (both overwrite whatever the
//!   visitor sent: edgeguard is the first proxy the origin can trust), and the visitor's address
//!   (`CF-Connecting-IP`, set by Cloudflare and not forgeable there) is appended to
//!   `X-Forwarded-For`.
//! - Every request leaves with edgeguard's loop marker: [`LOOP_HEADER`] lists one token per
//!   edgeguard deployment it passed through. A request that arrives already carrying this
//!   deployment's token has come back around (`ORIGIN_URL` points at the worker itself) and must
//!   not be fetched again. Tokens are derived from where the deployment sends requests, so two
//!   different edgeguards chained on purpose do not mistake each other for a loop.

use crate::config::Origin;
use crate::fnv::Fnv32;

/// The loop marker: a comma-separated list of deployment tokens, like `Via`.
pub const LOOP_HEADER: &str = "edgeguard-via";

/// Hop-by-hop headers: meaningful for one connection only (RFC 9110 §7.6.1 plus the proxy
/// authentication pair, which is addressed to the proxy, not the origin).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// What [`request_edit`] reads besides the hop-by-hop names that matter: `Upgrade` (a WebSocket
/// handshake keeps it), the loop marker and the forwarding pair.
const REQUEST_EDIT_ALSO_READS: [&str; 4] = [
    "upgrade",
    LOOP_HEADER,
    "cf-connecting-ip",
    "x-forwarded-for",
];

/// Every header [`request_edit`] must see for the origin to get the same request as from all of
/// them. A browser's request carries cookies and a dozen other headers the edit never needs,
/// and the hop-by-hop names the runtime drops itself need no reading either (tested below).
pub fn request_edit_reads() -> impl Iterator<Item = &'static str> {
    hop_by_hop_kept_by_runtime().chain(REQUEST_EDIT_ALSO_READS)
}

/// The headers [`response_edit`] must see for the visitor to get the same response as from all
/// of them. Four reads instead of nine on every proxied response.
pub fn response_edit_reads() -> impl Iterator<Item = &'static str> {
    hop_by_hop_kept_by_runtime()
}

/// `Connection` (for the names it lists) and the hop-by-hop names the runtime keeps. The ones
/// it drops itself need no reading: deleting them changes nothing anyone receives.
fn hop_by_hop_kept_by_runtime() -> impl Iterator<Item = &'static str> {
    HOP_BY_HOP
        .iter()
        .copied()
        .filter(|name| *name == "connection" || !DROPPED_BY_RUNTIME.contains(name))
}

/// Hop-by-hop names the runtime removes by itself, from a response it writes to the visitor and
/// from a request it sends to the origin (checked on workerd 1.20261117: it frames the body and
/// manages the connection itself, and opens a WebSocket from its own handshake; it keeps
/// `Proxy-Authenticate`, `Proxy-Authorization`, `Proxy-Connection` and the names `Connection`
/// lists).
const DROPPED_BY_RUNTIME: [&str; 6] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Header edits to apply in order: delete every name in `remove`, then set each pair in `set`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeaderEdit {
    /// Lowercase names, each once.
    pub remove: Vec<String>,
    pub set: Vec<(&'static str, String)>,
}

impl HeaderEdit {
    /// Whether applying this edit to a response changes what the visitor receives. Almost every
    /// origin sends `Connection: keep-alive`, which the runtime drops anyway: such a response
    /// goes out as-is instead of being rebuilt around its stream on every request.
    pub fn changes_response(&self) -> bool {
        !self.set.is_empty()
            || self
                .remove
                .iter()
                .any(|name| !DROPPED_BY_RUNTIME.contains(&name.as_str()))
    }

    fn remove(&mut self, name: &str) {
        let name = name.trim().to_ascii_lowercase();
        if !name.is_empty() && !self.remove.contains(&name) {
            self.remove.push(name);
        }
    }
}

/// The request came back to the deployment that already forwarded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopDetected;

/// Who asked, as the runtime saw it.
#[derive(Debug, Clone, Copy)]
pub struct Visitor<'a> {
    /// The request method (`GET`, ...).
    pub method: &'a str,
    /// The scheme the visitor used (`https`).
    pub scheme: &'a str,
    /// `host[:port]` the visitor asked for.
    pub host: &'a str,
}

/// This deployment's loop token: 8 hex digits of FNV-1a over where it sends requests. Only the
/// origin ever sees it, and a hash says nothing it does not already know. Made on every proxied
/// request, so the hex is written directly (no `format!` machinery on the pass-through path).
pub fn loop_token(origin: &Origin, visitor_host: &str) -> String {
    let mut hash = Fnv32::new();
    match origin {
        Origin::Url(url) => {
            hash.write(b"url:");
            hash.write(url.base().as_bytes());
        }
        Origin::Route | Origin::Invalid(_) => {
            hash.write(b"route:");
            hash.write(visitor_host.to_ascii_lowercase().as_bytes());
        }
    }
    crate::hex::encode(&hash.finish().to_be_bytes())
}

/// The edit that turns the visitor's request headers into the ones sent to the origin, or
/// [`LoopDetected`] when the request already carries `token`.
pub fn request_edit(
    headers: &[(String, String)],
    visitor: &Visitor<'_>,
    token: &str,
) -> Result<HeaderEdit, LoopDetected> {
    let marker = joined(headers, LOOP_HEADER);
    if let Some(marker) = &marker {
        if list(marker).any(|t| t.eq_ignore_ascii_case(token)) {
            return Err(LoopDetected);
        }
    }
    let websocket = visitor.method.eq_ignore_ascii_case("GET")
        && joined(headers, "upgrade")
            .is_some_and(|v| list(&v).any(|t| t.eq_ignore_ascii_case("websocket")));

    let mut edit = hop_by_hop(headers, websocket);
    edit.remove("host");

    let client_ip = value(headers, "cf-connecting-ip").map(str::trim);
    let forwarded_for = if edit.remove.iter().any(|n| n == "x-forwarded-for") {
        None
    } else {
        joined(headers, "x-forwarded-for")
    };
    match (forwarded_for, client_ip.filter(|ip| !ip.is_empty())) {
        (Some(list_so_far), Some(ip)) if list(&list_so_far).last() != Some(ip) => {
            edit.set
                .push(("x-forwarded-for", format!("{list_so_far}, {ip}")));
        }
        (None, Some(ip)) => edit.set.push(("x-forwarded-for", ip.to_owned())),
        _ => {}
    }
    edit.set
        .push(("x-forwarded-proto", visitor.scheme.to_ascii_lowercase()));
    edit.set.push(("x-forwarded-host", visitor.host.to_owned()));
    edit.set.push((
        LOOP_HEADER,
        match marker.filter(|m| !m.trim().is_empty()) {
            Some(marker) => format!("{marker}, {token}"),
            None => token.to_owned(),
        },
    ));
    Ok(edit)
}

/// The names to delete from an origin's response before it goes to the visitor. Empty for
/// almost every response, so the edge can return those untouched. (A `101 Switching Protocols`
/// is never edited: its `Upgrade` is the point.)
pub fn response_edit(headers: &[(String, String)]) -> HeaderEdit {
    hop_by_hop(headers, false)
}

/// Hop-by-hop names present in `headers`, plus every name listed in `Connection` or
/// `Proxy-Connection`; `Upgrade` survives when `keep_upgrade`.
fn hop_by_hop(headers: &[(String, String)], keep_upgrade: bool) -> HeaderEdit {
    let mut edit = HeaderEdit::default();
    for (name, value) in headers {
        let name = name.as_str();
        if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("proxy-connection")
        {
            // `close` is a connection option, not a header name.
            for named in list(value).filter(|t| !t.eq_ignore_ascii_case("close")) {
                edit.remove(named);
            }
        }
        if HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            edit.remove(name);
        }
    }
    if keep_upgrade {
        edit.remove.retain(|n| n != "upgrade");
    }
    edit
}

/// First value of `name`.
fn value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every value of `name` joined by `", "` (the runtime usually has joined them already).
fn joined(headers: &[(String, String)], name: &str) -> Option<String> {
    let mut values = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim());
    let first = values.next()?;
    Some(values.fold(first.to_owned(), |mut all, v| {
        all.push_str(", ");
        all.push_str(v);
        all
    }))
}

/// The non-empty elements of a comma-separated header list, trimmed.
fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::origin::OriginUrl;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const VISITOR: Visitor<'static> = Visitor {
        method: "GET",
        scheme: "https",
        host: "site.example",
    };

    fn set(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    #[test]
    fn plain_request_gets_forwarding_headers_and_loses_host() {
        let edit = request_edit(
            &h(&[("host", "site.example"), ("accept", "*/*")]),
            &VISITOR,
            "0badf00d",
        )
        .unwrap();
        assert_eq!(edit.remove, ["host"]);
        assert_eq!(
            edit.set,
            set(&[
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "site.example"),
                ("edgeguard-via", "0badf00d"),
            ])
        );
    }

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_removed() {
        let edit = request_edit(
            &h(&[
                ("connection", "keep-alive, X-Secret-Hop ,, Upgrade"),
                ("proxy-connection", "x-other-hop"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("trailer", "x-checksum"),
                ("transfer-encoding", "chunked"),
                ("upgrade", "h2c"),
                ("proxy-authorization", "Basic cHJveHk6cHc="),
                ("proxy-authenticate", "Basic"),
                ("x-secret-hop", "1"),
                ("x-other-hop", "2"),
                ("authorization", "Bearer kept"),
            ]),
            &VISITOR,
            "t",
        )
        .unwrap();
        assert_eq!(
            edit.remove,
            [
                "keep-alive",
                "x-secret-hop",
                "upgrade",
                "connection",
                "x-other-hop",
                "proxy-connection",
                "te",
                "trailer",
                "transfer-encoding",
                "proxy-authorization",
                "proxy-authenticate",
                "host",
            ]
        );
    }

    #[test]
    fn a_websocket_upgrade_keeps_its_upgrade_header_only_on_get() {
        let headers = h(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        let edit = request_edit(&headers, &VISITOR, "t").unwrap();
        assert_eq!(edit.remove, ["connection", "host"]);

        let post = Visitor {
            method: "POST",
            ..VISITOR
        };
        let edit = request_edit(&headers, &post, "t").unwrap();
        assert_eq!(edit.remove, ["upgrade", "connection", "host"]);

        let h2c = h(&[("connection", "Upgrade"), ("upgrade", "h2c")]);
        let edit = request_edit(&h2c, &VISITOR, "t").unwrap();
        assert_eq!(edit.remove, ["upgrade", "connection", "host"]);
    }

    #[test]
    fn forwarded_for_appends_the_connecting_ip_once() {
        type Case = (
            &'static [(&'static str, &'static str)],
            Option<&'static str>,
        );
        let table: [Case; 5] = [
            (&[], None),
            (&[("cf-connecting-ip", "203.0.113.7")], Some("203.0.113.7")),
            (
                &[
                    ("x-forwarded-for", "198.51.100.1"),
                    ("cf-connecting-ip", "203.0.113.7"),
                ],
                Some("198.51.100.1, 203.0.113.7"),
            ),
            // Already the last hop (Cloudflare may have appended it): not repeated.
            (
                &[
                    ("x-forwarded-for", "198.51.100.1, 203.0.113.7"),
                    ("cf-connecting-ip", "203.0.113.7"),
                ],
                None,
            ),
            // Without a connecting IP the visitor's list passes through unchanged.
            (&[("x-forwarded-for", "198.51.100.1")], None),
        ];
        for (headers, want) in table {
            let edit = request_edit(&h(headers), &VISITOR, "t").unwrap();
            let got = edit
                .set
                .iter()
                .find(|(k, _)| *k == "x-forwarded-for")
                .map(|(_, v)| v.as_str());
            assert_eq!(got, want, "{headers:?}");
        }
    }

    #[test]
    fn visitor_supplied_forwarding_headers_are_overwritten() {
        let edit = request_edit(
            &h(&[
                ("x-forwarded-host", "evil.example"),
                ("x-forwarded-proto", "gopher"),
            ]),
            &Visitor {
                method: "POST",
                scheme: "HTTP",
                host: "site.example:8443",
            },
            "t",
        )
        .unwrap();
        assert!(edit.remove.is_empty() || edit.remove == ["host"]);
        assert!(edit
            .set
            .contains(&("x-forwarded-host", "site.example:8443".into())));
        assert!(edit.set.contains(&("x-forwarded-proto", "http".into())));
    }

    #[test]
    fn own_token_in_the_marker_is_a_loop_and_other_tokens_are_kept() {
        let looped = h(&[("edgeguard-via", "aaaa1111, 0BADF00D")]);
        assert_eq!(
            request_edit(&looped, &VISITOR, "0badf00d"),
            Err(LoopDetected)
        );

        let chained = h(&[("Edgeguard-Via", "aaaa1111")]);
        let edit = request_edit(&chained, &VISITOR, "0badf00d").unwrap();
        assert!(edit
            .set
            .contains(&("edgeguard-via", "aaaa1111, 0badf00d".into())));
    }

    #[test]
    fn loop_tokens_differ_per_destination_and_are_stable() {
        let a = Origin::Url(OriginUrl::parse("https://origin-a.example").unwrap());
        let a_again = Origin::Url(OriginUrl::parse("HTTPS://Origin-A.example/").unwrap());
        let b = Origin::Url(OriginUrl::parse("https://origin-b.example").unwrap());
        let token = loop_token(&a, "site.example");
        assert_eq!(token.len(), 8);
        assert!(token.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(token, loop_token(&a_again, "other.example"));
        assert_ne!(token, loop_token(&b, "site.example"));
        assert_ne!(
            loop_token(&Origin::Route, "a.example"),
            loop_token(&Origin::Route, "b.example")
        );
        // Fixed value: the token must not change between builds, or a rolling deploy would
        // stop recognising its own requests.
        assert_eq!(loop_token(&Origin::Route, "a.example"), {
            let mut f = Fnv32::new();
            f.write(b"route:a.example");
            format!("{:08x}", f.finish())
        });
        let mut f = Fnv32::new();
        f.write(b"a");
        assert_eq!(f.finish(), 0xe40c_292c, "FNV-1a 32 of \"a\"");
    }

    #[test]
    fn response_edit_strips_hop_by_hop_and_keeps_the_rest() {
        let edit = response_edit(&h(&[
            ("connection", "close, x-hop"),
            ("x-hop", "1"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("location", "/next"),
            ("proxy-authenticate", "Basic"),
            ("upgrade", "h2c"),
        ]));
        assert_eq!(
            edit.remove,
            ["x-hop", "connection", "proxy-authenticate", "upgrade"]
        );
        assert!(edit.set.is_empty());
        assert!(edit.changes_response());
        assert_eq!(
            response_edit(&h(&[("content-type", "text/html")])),
            HeaderEdit::default()
        );
    }

    /// Only the headers named in `names`, as the edge reads them.
    fn only<'a>(
        headers: &[(String, String)],
        names: impl Iterator<Item = &'a str>,
    ) -> Vec<(String, String)> {
        let names: Vec<&str> = names.collect();
        headers
            .iter()
            .filter(|(k, _)| names.contains(&k.as_str()))
            .cloned()
            .collect()
    }

    #[test]
    fn the_edits_need_only_the_headers_they_declare() {
        let visitor = Visitor {
            method: "GET",
            scheme: "https",
            host: "shop.example",
        };
        let requests = [
            h(&[
                ("host", "shop.example"),
                ("cookie", "session=abc"),
                ("connection", "keep-alive, x-hop"),
                ("x-hop", "1"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("proxy-authorization", "Basic Zm9v"),
                ("x-forwarded-for", "198.51.100.7"),
                ("cf-connecting-ip", "203.0.113.9"),
                ("edgeguard-via", "0badf00d"),
                ("user-agent", "test"),
            ]),
            h(&[
                ("upgrade", "websocket"),
                ("connection", "Upgrade"),
                ("x-forwarded-for", ""),
            ]),
            h(&[("accept", "*/*")]),
            h(&[
                ("te", "trailers"),
                ("trailer", "x-checksum"),
                ("transfer-encoding", "chunked"),
                ("upgrade", "h2c"),
                ("proxy-connection", "x-pc"),
                ("x-pc", "1"),
            ]),
        ];
        // The runtime drops some names itself, both ways: what must agree is what is received.
        let visible = |edit: HeaderEdit| {
            let mut kept = edit.remove.clone();
            kept.retain(|name| !DROPPED_BY_RUNTIME.contains(&name.as_str()));
            (edit.changes_response(), kept, edit.set)
        };
        for method in ["GET", "POST"] {
            let visitor = Visitor { method, ..visitor };
            for headers in &requests {
                let all = request_edit(headers, &visitor, "12345678").map(visible);
                let read = request_edit(&only(headers, request_edit_reads()), &visitor, "12345678");
                assert_eq!(all, read.map(visible), "{method} {headers:?}");
            }
        }
        let response = h(&[
            ("connection", "close, x-hop"),
            ("x-hop", "1"),
            ("proxy-authenticate", "Basic"),
            ("set-cookie", "a=1"),
            ("content-type", "text/html"),
        ]);
        let responses = [
            response,
            h(&[
                ("connection", "keep-alive"),
                ("keep-alive", "timeout=5"),
                ("transfer-encoding", "chunked"),
                ("trailer", "expires"),
                ("content-type", "text/html"),
            ]),
            h(&[
                ("proxy-connection", "x-a"),
                ("x-a", "1"),
                ("te", "trailers"),
            ]),
            h(&[("proxy-authorization", "Basic Zm9v"), ("upgrade", "h2c")]),
            h(&[("content-length", "3")]),
        ];
        for response in &responses {
            assert_eq!(
                visible(response_edit(response)),
                visible(response_edit(&only(response, response_edit_reads()))),
                "{response:?}"
            );
        }
        assert_eq!(
            response_edit_reads().collect::<Vec<_>>(),
            [
                "connection",
                "proxy-connection",
                "proxy-authorization",
                "proxy-authenticate"
            ]
        );
    }

    #[test]
    fn what_the_runtime_drops_itself_needs_no_rebuild() {
        // nginx's and gunicorn's usual framing headers: removed by the runtime on the way out.
        let edit = response_edit(&h(&[
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("content-type", "text/html"),
        ]));
        assert_eq!(
            edit.remove,
            ["keep-alive", "connection", "transfer-encoding"]
        );
        assert!(!edit.changes_response());
        // A name listed in Connection is the origin's own header: only we can remove it.
        let edit = response_edit(&h(&[("connection", "keep-alive, x-hop"), ("x-hop", "1")]));
        assert!(edit.changes_response());
        let edit = response_edit(&h(&[("proxy-connection", "keep-alive")]));
        assert!(edit.changes_response());
    }
}
