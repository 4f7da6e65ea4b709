//! A tiny threaded HTTP/1.1 server: one thread accepts, one thread per
//! connection, one request per connection (`Connection: close`). The origin
//! and the Sentry sink are both handlers on top of it.
//!
//! Dropping the server stops accepting, shuts down every connection still
//! open (including ones a handler is deliberately holding) and joins the
//! accept thread; no thread outlives the test by more than a few ms.

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::http::{self, ServerRequest};
use super::{lock, wait_timeout};

/// Passed to handlers so that a "hang" can end as soon as the server stops.
pub struct Stopping {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Stopping {
    /// Blocks until the server is dropped or `max` passes.
    pub fn wait(&self, max: Duration) {
        let deadline = Instant::now() + max;
        let mut stopped = lock(&self.flag);
        while !*stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            stopped = wait_timeout(&self.cv, stopped, left);
        }
    }

    /// Whether the server is being dropped.
    pub fn is_stopped(&self) -> bool {
        *lock(&self.flag)
    }

    fn stop(&self) {
        *lock(&self.flag) = true;
        self.cv.notify_all();
    }
}

/// What a handler does with a request that could not even be parsed.
pub enum BadRequest {
    /// The bytes did not form an HTTP request (or timed out).
    Malformed(String),
}

pub trait Handler: Send + Sync + 'static {
    /// Answers one request by writing to `stream`.
    fn handle(&self, req: ServerRequest, stream: &mut TcpStream, stopping: &Stopping);
    /// Called when a connection carried no parseable request. Connections
    /// closed without a single byte (port probes) are not reported.
    fn bad_request(&self, _err: BadRequest) {}
}

pub struct Server {
    port: u16,
    running: Arc<AtomicBool>,
    stopping: Arc<Stopping>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(name: &str, handler: Arc<dyn Handler>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let running = Arc::new(AtomicBool::new(true));
        let stopping = Arc::new(Stopping {
            flag: Mutex::new(false),
            cv: Condvar::new(),
        });
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let accepted: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let accept = {
            let (running, stopping, conns) = (running.clone(), stopping.clone(), conns.clone());
            let accepted = accepted.clone();
            thread::Builder::new()
                .name(format!("{name}-accept"))
                .spawn(move || {
                    while running.load(Ordering::SeqCst) {
                        match listener.accept() {
                            Ok((stream, _)) => {
                                accepted.fetch_add(1, Ordering::SeqCst);
                                stream.set_nonblocking(false).unwrap();
                                if let Ok(clone) = stream.try_clone() {
                                    lock(&conns).push(clone);
                                }
                                let (handler, stopping) = (handler.clone(), stopping.clone());
                                thread::spawn(move || serve_one(stream, &*handler, &stopping));
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                thread::sleep(Duration::from_millis(5));
                            }
                            Err(_) => thread::sleep(Duration::from_millis(5)),
                        }
                    }
                })
                .unwrap()
        };
        Server {
            port,
            running,
            stopping,
            conns,
            accepted,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn serve_one(stream: TcpStream, handler: &dyn Handler, stopping: &Stopping) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut reader = http::DeadlineReader::new(stream.try_clone().unwrap(), deadline);
    match http::read_request(&mut reader) {
        Ok(req) => {
            let mut stream = stream;
            handler.handle(req, &mut stream, stopping);
            let _ = stream.flush();
            let _ = stream.shutdown(Shutdown::Both);
        }
        Err(e)
            if e.kind() == std::io::ErrorKind::UnexpectedEof
                && e.to_string().contains("before head") => {}
        Err(e) => {
            handler.bad_request(BadRequest::Malformed(e.to_string()));
            let mut stream = stream;
            let _ = http::write_response(&mut stream, 400, &[], b"malformed request");
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
        self.stopping.stop();
        for c in lock(&self.conns).drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}
