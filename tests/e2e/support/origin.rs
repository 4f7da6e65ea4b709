//! A real local origin that records every request it receives.
//!
//! Routes:
//! - `/ok`: 200, `text/plain`, [`ok_body`], two `Set-Cookie`s and `X-Origin-Header`.
//! - `/bytes/N`: 200 with N bytes of [`pattern_bytes`], Content-Length, written
//!   in 64 KiB chunks. With `?hop`, also `Connection: close, X-Hop-Secret` and
//!   `X-Hop-Secret` (so the worker must rebuild the response around the stream).
//! - `/status/NNN`: status NNN, a body with a fake stack trace containing
//!   [`SECRET_ORIGIN_DETAIL`].
//! - `/hang`: reads the request and never answers (until the origin is
//!   dropped, at most 60 s).
//! - `/echo`: 200 whose body is the request body.
//! - `/redirect`: 302 with `Location: /ok`.
//! - `/drip/N`: 200 with Content-Length 2N: N bytes of [`pattern_bytes`] at
//!   once, the next N only after [`Origin::release_drip`] (or the origin is
//!   dropped). A proxy that buffers cannot deliver the first half.
//! - `/delay/MS`: like `/ok`, but the response starts only after MS milliseconds.
//! - `/hop`: 200 with hop-by-hop headers (`Connection` naming `X-Hop-Secret`,
//!   `Keep-Alive`, `Proxy-Authenticate`, `Trailer`, `Upgrade`), two `Set-Cookie`s,
//!   `X-Origin-Header` and body `hop`.
//! - `/empty/NNN`: status NNN with no body at all (for 204 and 304), an `ETag`,
//!   and `Connection: close, X-Hop-Secret` + `X-Hop-Secret` (so the worker has
//!   to rebuild the response, bodyless).
//! - `/retry/NNN`: status NNN with `Retry-After: 120` and a secret body.
//! - `/chunked/NNN/LEN`: status NNN, a chunked body of LEN bytes (no Content-Length).
//! - `/stall/NNN`: status NNN, a chunked body whose first chunk is sent and
//!   whose end never comes (until the origin is dropped, at most 60 s).
//! - `/hash`: 200 `len=N fnv=HEX` of the request body ([`checksum`]).
//! - `/trickle`: 200, Content-Length, writes [`TRICKLE_FIRST`], then waits for
//!   [`Origin::open_gate`] (at most 20 s) before writing [`TRICKLE_REST`].
//! - `/ws`: a WebSocket echo (see [`super::ws`]): sends [`WS_GREETING`], then
//!   answers each text frame `t` with `echo: t` until a close frame.
//! - anything else: 404 `no such route`.

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::http::{reason_phrase, write_response, write_response_head, ServerRequest};
use super::server::{Handler, Server, Stopping};
use super::{checksum, lock, wait_timeout, ws};

pub const TRICKLE_FIRST: &[u8] = b"first part, sent before the origin has finished;";
pub const TRICKLE_REST: &[u8] = b" the rest, sent once the test has seen the first part";
pub const WS_GREETING: &str = "hello from the origin";
pub const RETRY_AFTER: &str = "120";

/// Appears in every `/status/NNN` body; a visitor must never see it on a
/// replaced error page.
pub const SECRET_ORIGIN_DETAIL: &str = "SECRET_ORIGIN_DETAIL";

/// `(i*31+7) % 251` for i in 0..n: deterministic, not periodic in powers of two.
pub fn pattern_bytes(n: usize) -> Vec<u8> {
    (0..n as u64).map(|i| ((i * 31 + 7) % 251) as u8).collect()
}

/// The `/ok` body: 1 KiB of text.
pub fn ok_body() -> Vec<u8> {
    let mut body = Vec::with_capacity(1024);
    let mut line = 0;
    while body.len() < 1024 {
        body.extend_from_slice(
            format!("edgeguard e2e origin says ok, line {line:03}\n").as_bytes(),
        );
        line += 1;
    }
    body.truncate(1024);
    body
}

/// The `Set-Cookie` every `/fail/...` response carries: it must never reach Sentry.
pub const FAIL_SET_COOKIE: &str = "origin_sid=e2eOriginSetCookie6604; Path=/; HttpOnly";

pub const OK_COOKIES: [&str; 2] = [
    "origin_session=s3ss10n; Path=/; HttpOnly",
    "theme=dark; Path=/; Max-Age=3600",
];

#[derive(Default)]
struct Recorder {
    requests: Mutex<Vec<ServerRequest>>,
    cv: Condvar,
    drip_released: Mutex<bool>,
    drip_cv: Condvar,
    /// `/trickle` waits for this.
    gate: Mutex<bool>,
    gate_cv: Condvar,
    /// Set when `/trickle` wrote its last byte.
    trickle_done: Mutex<bool>,
    /// Files served as given (`Origin::serve`): path -> (content type, body).
    files: Mutex<Vec<(String, &'static str, Vec<u8>)>>,
}

impl Recorder {
    fn release_drip(&self) {
        *lock(&self.drip_released) = true;
        self.drip_cv.notify_all();
    }

    /// Blocks until released, at most `max`.
    fn wait_drip(&self, max: Duration) {
        let deadline = Instant::now() + max;
        let mut released = lock(&self.drip_released);
        while !*released {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            released = wait_timeout(&self.drip_cv, released, left);
        }
    }
}

struct OriginHandler {
    rec: Arc<Recorder>,
}

impl Handler for OriginHandler {
    fn handle(&self, req: ServerRequest, stream: &mut TcpStream, stopping: &Stopping) {
        {
            lock(&self.rec.requests).push(req.clone());
            self.rec.cv.notify_all();
        }
        let path = req.path().to_string();
        let file = lock(&self.rec.files)
            .iter()
            .find(|(p, _, _)| *p == path)
            .map(|(_, ct, body)| (*ct, body.clone()));
        if let Some((content_type, body)) = file {
            let _ = write_response(stream, 200, &[("Content-Type", content_type)], &body);
            return;
        }
        let _ = match path.as_str() {
            "/ok" => write_response(
                stream,
                200,
                &[
                    ("Content-Type", "text/plain"),
                    ("Set-Cookie", OK_COOKIES[0]),
                    ("Set-Cookie", OK_COOKIES[1]),
                    ("X-Origin-Header", "kept"),
                ],
                &ok_body(),
            ),
            "/echo" => write_response(
                stream,
                200,
                &[("Content-Type", "application/octet-stream")],
                &req.body,
            ),
            "/redirect" => write_response(
                stream,
                302,
                &[("Location", "/ok"), ("Content-Type", "text/plain")],
                b"redirecting to /ok",
            ),
            "/hop" => write_raw(
                stream,
                "HTTP/1.1 200 OK\r\n\
                 Connection: close, X-Hop-Secret\r\n\
                 X-Hop-Secret: must-not-pass\r\n\
                 Keep-Alive: timeout=5\r\n\
                 Proxy-Authenticate: Basic realm=\"origin-proxy\"\r\n\
                 Trailer: X-Checksum\r\n\
                 Upgrade: h2c\r\n\
                 Content-Type: text/plain\r\n\
                 Set-Cookie: origin_session=s3ss10n; Path=/; HttpOnly\r\n\
                 Set-Cookie: theme=dark; Path=/; Max-Age=3600\r\n\
                 X-Origin-Header: kept\r\n\
                 Content-Length: 3\r\n\r\nhop",
            ),
            "/hash" => {
                let body = format!("len={} fnv={:016x}", req.body.len(), checksum(&req.body));
                write_response(
                    stream,
                    200,
                    &[("Content-Type", "text/plain")],
                    body.as_bytes(),
                )
            }
            "/trickle" => self.trickle(stream, stopping),
            "/ws" => ws::serve_echo(&req, stream, WS_GREETING),
            p if p.starts_with("/empty/") => match p["/empty/".len()..].parse::<u16>() {
                Ok(code) => write_raw(
                    stream,
                    &format!(
                        "HTTP/1.1 {code} {}\r\nETag: \"v1\"\r\n\
                         Connection: close, X-Hop-Secret\r\nX-Hop-Secret: 1\r\n\r\n",
                        reason_phrase(code)
                    ),
                ),
                Err(_) => write_response(stream, 400, &[], b"bad status"),
            },
            p if p.starts_with("/retry/") => match p["/retry/".len()..].parse::<u16>() {
                Ok(code) => write_response(
                    stream,
                    code,
                    &[("Content-Type", "text/plain"), ("Retry-After", RETRY_AFTER)],
                    format!("{SECRET_ORIGIN_DETAIL}: down for maintenance").as_bytes(),
                ),
                Err(_) => write_response(stream, 400, &[], b"bad status"),
            },
            p if p.starts_with("/stall/") => match p["/stall/".len()..].parse::<u16>() {
                Ok(code) => {
                    let _ = write_raw(
                        stream,
                        &format!(
                            "HTTP/1.1 {code} {}\r\nTransfer-Encoding: chunked\r\n\
                             Connection: close\r\n\r\n10\r\n{SECRET_ORIGIN_DETAIL:.16}\r\n",
                            reason_phrase(code)
                        ),
                    );
                    stopping.wait(Duration::from_secs(60));
                    Ok(())
                }
                Err(_) => write_response(stream, 400, &[], b"bad status"),
            },
            p if p.starts_with("/chunked/") => {
                let mut it = p["/chunked/".len()..].split('/');
                match (
                    it.next().and_then(|c| c.parse::<u16>().ok()),
                    it.next().and_then(|n| n.parse::<usize>().ok()),
                ) {
                    (Some(code), Some(len)) => write_chunked(stream, code, len),
                    _ => write_response(stream, 400, &[], b"bad chunked route"),
                }
            }
            "/hang" => {
                stopping.wait(Duration::from_secs(60));
                Ok(())
            }
            p if p.starts_with("/delay/") => match p["/delay/".len()..].parse::<u64>() {
                Ok(ms) => {
                    // Headers only after `ms`: the worker's request stays in flight meanwhile.
                    stopping.wait(Duration::from_millis(ms));
                    write_response(stream, 200, &[("Content-Type", "text/plain")], &ok_body())
                }
                Err(_) => write_response(stream, 400, &[], b"bad delay"),
            },
            p if p.starts_with("/drip/") => match p["/drip/".len()..].parse::<usize>() {
                Ok(n) => write_drip(stream, n, &self.rec),
                Err(_) => write_response(stream, 400, &[], b"bad length"),
            },
            p if p.starts_with("/bytes/") => match p["/bytes/".len()..].parse::<usize>() {
                Ok(n) => write_bytes(stream, n, req.target.ends_with("?hop")),
                Err(_) => write_response(stream, 400, &[], b"bad length"),
            },
            // `/fail/<code>/<any path>`: that status on any route, for grouping tests.
            p if p.starts_with("/fail/") => match p["/fail/".len()..]
                .split('/')
                .next()
                .and_then(|c| c.parse::<u16>().ok())
            {
                Some(code) if (200..=599).contains(&code) => write_response(
                    stream,
                    code,
                    &[
                        ("Content-Type", "text/plain"),
                        ("Set-Cookie", FAIL_SET_COOKIE),
                    ],
                    format!("{SECRET_ORIGIN_DETAIL}: failed with {code}").as_bytes(),
                ),
                _ => write_response(stream, 400, &[], b"bad status"),
            },
            p if p.starts_with("/status/") => match p["/status/".len()..].parse::<u16>() {
                Ok(code) if (200..=599).contains(&code) => {
                    let body = format!(
                        "Traceback (most recent call last): {SECRET_ORIGIN_DETAIL}\n  \
                         File \"/srv/app/db.py\", line 42, in connect\n    \
                         password=hunter2 host=10.0.0.7\nRuntimeError: status {code}\n"
                    );
                    write_response(
                        stream,
                        code,
                        &[("Content-Type", "text/plain")],
                        body.as_bytes(),
                    )
                }
                _ => write_response(stream, 400, &[], b"bad status"),
            },
            _ => write_response(
                stream,
                404,
                &[("Content-Type", "text/plain")],
                b"no such route",
            ),
        };
    }
}

fn write_raw(stream: &mut TcpStream, raw: &str) -> std::io::Result<()> {
    stream.write_all(raw.as_bytes())?;
    stream.flush()
}

/// A chunked body of `len` bytes of [`SECRET_ORIGIN_DETAIL`] filler, in 8 KiB chunks.
fn write_chunked(stream: &mut TcpStream, status: u16, len: usize) -> std::io::Result<()> {
    write_raw(
        stream,
        &format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            reason_phrase(status)
        ),
    )?;
    // One 8 KiB chunk built once and repeated: the first bytes go out at once,
    // however large `len` is.
    let chunk: Vec<u8> = SECRET_ORIGIN_DETAIL
        .bytes()
        .chain(*b" ")
        .cycle()
        .take(8 * 1024)
        .collect();
    let mut left = len;
    while left > 0 {
        let part = &chunk[..left.min(chunk.len())];
        stream.write_all(format!("{:x}\r\n", part.len()).as_bytes())?;
        stream.write_all(part)?;
        stream.write_all(b"\r\n")?;
        left -= part.len();
    }
    stream.write_all(b"0\r\n\r\n")?;
    stream.flush()
}

impl OriginHandler {
    fn trickle(&self, stream: &mut TcpStream, stopping: &Stopping) -> std::io::Result<()> {
        let len = TRICKLE_FIRST.len() + TRICKLE_REST.len();
        write_response_head(stream, 200, &[("Content-Type", "text/plain")], len)?;
        stream.write_all(TRICKLE_FIRST)?;
        stream.flush()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut open = lock(&self.rec.gate);
        while !*open {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            open = wait_timeout(
                &self.rec.gate_cv,
                open,
                left.min(Duration::from_millis(100)),
            );
            if stopping.is_stopped() {
                return Ok(());
            }
        }
        drop(open);
        stream.write_all(TRICKLE_REST)?;
        stream.flush()?;
        *lock(&self.rec.trickle_done) = true;
        Ok(())
    }
}

fn write_bytes(stream: &mut TcpStream, n: usize, hop: bool) -> std::io::Result<()> {
    let mut headers = vec![("Content-Type", "application/octet-stream")];
    if hop {
        headers.push(("Connection", "X-Hop-Secret"));
        headers.push(("X-Hop-Secret", "1"));
    }
    write_response_head(stream, 200, &headers, n)?;
    let body = pattern_bytes(n);
    for chunk in body.chunks(64 * 1024) {
        stream.write_all(chunk)?;
    }
    stream.flush()
}

fn write_drip(stream: &mut TcpStream, n: usize, rec: &Recorder) -> std::io::Result<()> {
    write_response_head(
        stream,
        200,
        &[("Content-Type", "application/octet-stream")],
        2 * n,
    )?;
    let body = pattern_bytes(2 * n);
    stream.write_all(&body[..n])?;
    stream.flush()?;
    rec.wait_drip(Duration::from_secs(60));
    stream.write_all(&body[n..])?;
    stream.flush()
}

pub struct Origin {
    server: Server,
    rec: Arc<Recorder>,
}

impl Origin {
    pub fn start() -> Origin {
        let rec = Arc::new(Recorder::default());
        let server = Server::start("origin", Arc::new(OriginHandler { rec: rec.clone() }));
        Origin { server, rec }
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `http://127.0.0.1:<port>`, suitable for `ORIGIN_URL`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// Serves `body` at `path` with `content_type` (a page and its script, for the browser).
    pub fn serve(&self, path: &str, content_type: &'static str, body: Vec<u8>) {
        lock(&self.rec.files).push((path.to_owned(), content_type, body));
    }

    /// Lets every `/drip/N` response send its second half.
    pub fn release_drip(&self) {
        self.rec.release_drip();
    }

    /// Lets `/trickle` send the rest of its body.
    pub fn open_gate(&self) {
        *lock(&self.rec.gate) = true;
        self.rec.gate_cv.notify_all();
    }

    /// Whether `/trickle` has written its whole body.
    pub fn trickle_done(&self) -> bool {
        *lock(&self.rec.trickle_done)
    }

    /// TCP connections accepted so far (a fetch that never sends a byte counts too).
    pub fn connections(&self) -> usize {
        self.server.connections()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<ServerRequest> {
        lock(&self.rec.requests).clone()
    }

    /// Waits (bounded) until at least `n` requests have arrived.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<ServerRequest> {
        let deadline = Instant::now() + timeout;
        let mut reqs = lock(&self.rec.requests);
        while reqs.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "origin got {} request(s) within {timeout:?}, expected {n}: {:?}",
                    reqs.len(),
                    *reqs
                );
            }
            reqs = wait_timeout(&self.rec.cv, reqs, left);
        }
        reqs.clone()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        // Unblock `/drip` handlers; `server`'s own drop closes their sockets.
        self.rec.release_drip();
    }
}
