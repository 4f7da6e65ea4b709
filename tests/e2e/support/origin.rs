//! A real local origin that records every request it receives.
//!
//! Routes:
//! - `/ok`: 200, `text/plain`, [`ok_body`], two `Set-Cookie`s and `X-Origin-Header`.
//! - `/bytes/N`: 200 with N bytes of [`pattern_bytes`], Content-Length, written
//!   in 64 KiB chunks.
//! - `/status/NNN`: status NNN, a body with a fake stack trace containing
//!   [`SECRET_ORIGIN_DETAIL`].
//! - `/hang`: reads the request and never answers (until the origin is
//!   dropped, at most 60 s).
//! - `/echo`: 200 whose body is the request body.
//! - `/redirect`: 302 with `Location: /ok`.
//! - `/drip/N`: 200 with Content-Length 2N: N bytes of [`pattern_bytes`] at
//!   once, the next N only after [`Origin::release_drip`] (or the origin is
//!   dropped). A proxy that buffers cannot deliver the first half.
//! - anything else: 404 `no such route`.

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::http::{write_response, write_response_head, ServerRequest};
use super::server::{Handler, Server, Stopping};
use super::{lock, wait_timeout};

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
            "/hang" => {
                stopping.wait(Duration::from_secs(60));
                Ok(())
            }
            p if p.starts_with("/drip/") => match p["/drip/".len()..].parse::<usize>() {
                Ok(n) => write_drip(stream, n, &self.rec),
                Err(_) => write_response(stream, 400, &[], b"bad length"),
            },
            p if p.starts_with("/bytes/") => match p["/bytes/".len()..].parse::<usize>() {
                Ok(n) => write_bytes(stream, n),
                Err(_) => write_response(stream, 400, &[], b"bad length"),
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

fn write_bytes(stream: &mut TcpStream, n: usize) -> std::io::Result<()> {
    write_response_head(
        stream,
        200,
        &[("Content-Type", "application/octet-stream")],
        n,
    )?;
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

    /// Lets every `/drip/N` response send its second half.
    pub fn release_drip(&self) {
        self.rec.release_drip();
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
