//! A real headless Chromium (Debian's `chromium`), driven over the DevTools protocol with a small
//! WebSocket client written here: no browser automation crate, no mocks.
//!
//! Chromium runs with a fresh `--user-data-dir` and `--remote-debugging-port=0`; the port it picked
//! is read from `DevToolsActivePort` in that directory. On drop the browser is asked to close,
//! then killed by PID if it has not, and the directory is removed.

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::http::Request;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// The Chromium binary: `$CHROMIUM_BIN`, else `chromium` on the PATH.
pub fn chromium_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM_BIN") {
        return PathBuf::from(p);
    }
    for dir in std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
    {
        let candidate = dir.join("chromium");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "chromium not found: run scripts/setup.sh (installs Debian's chromium) or set CHROMIUM_BIN"
    );
}

pub struct Browser {
    child: Child,
    dir: PathBuf,
    port: u16,
    /// `/devtools/browser/<id>`: the browser-wide endpoint, for `Browser.close`.
    browser_path: String,
}

impl Browser {
    pub fn start() -> Browser {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "edgeguard-e2e-chromium-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&dir).unwrap();
        let child = Command::new(chromium_bin())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", dir.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium_bin().display()));
        let mut browser = Browser {
            child,
            dir,
            port: 0,
            browser_path: String::new(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let file = browser.dir.join("DevToolsActivePort");
        loop {
            let contents = fs::read_to_string(&file).unwrap_or_default();
            let mut lines = contents.lines();
            if let (Some(Ok(port)), Some(path)) =
                (lines.next().map(|l| l.trim().parse()), lines.next())
            {
                browser.port = port;
                browser.browser_path = path.trim().to_string();
                break;
            }
            if let Ok(Some(status)) = browser.child.try_wait() {
                panic!("chromium exited during startup: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not start within {START_TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
        browser
    }

    /// A fresh tab, attached over its own WebSocket.
    pub fn new_page(&self) -> Page {
        let resp = Request::new("PUT", "/json/new?about:blank").send(self.port);
        assert_eq!(resp.status, 200, "{resp:?}");
        let target = resp.json();
        let ws = target["webSocketDebuggerUrl"]
            .as_str()
            .unwrap_or_else(|| panic!("no webSocketDebuggerUrl: {target}"));
        let path = ws
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
            .unwrap();
        Page::connect(self.port, &path)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ask politely first, so Chromium ends and reaps its own helper processes; then make sure
        // by PID.
        if !self.browser_path.is_empty() {
            if let Ok(mut browser) = Page::try_connect(self.port, &self.browser_path) {
                let msg = json!({ "id": 1, "method": "Browser.close" }).to_string();
                let _ = write_text_frame(&mut browser.writer, msg.as_bytes());
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// One tab: DevTools commands and the events they cause.
pub struct Page {
    writer: TcpStream,
    incoming: Receiver<Value>,
    events: VecDeque<Value>,
    next_id: u64,
}

impl Page {
    fn connect(port: u16, path: &str) -> Page {
        Page::try_connect(port, path).unwrap_or_else(|e| panic!("devtools connect {path}: {e}"))
    }

    fn try_connect(port: u16, path: &str) -> std::io::Result<Page> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true).ok();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: ZWRnZWd1YXJkLWUyZS1rZXk=\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut status = String::new();
        reader.read_line(&mut status)?;
        if !status.starts_with("HTTP/1.1 101") {
            return Err(std::io::Error::other(format!(
                "WebSocket upgrade refused: {status:?}"
            )));
        }
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            while let Ok(Some(text)) = read_message(&mut reader) {
                match serde_json::from_str::<Value>(&text) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                    Err(e) => eprintln!("devtools: unparseable message ({e}): {text}"),
                }
            }
        });
        Ok(Page {
            writer: stream,
            incoming: rx,
            events: VecDeque::new(),
            next_id: 1,
        })
    }

    /// Sends a command and waits for its result; events that arrive meanwhile are kept.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        write_text_frame(&mut self.writer, msg.as_bytes()).unwrap();
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.incoming.recv_timeout(left) {
                Ok(v) if v["id"] == id => {
                    if let Some(err) = v.get("error") {
                        panic!("devtools {method} failed: {err}");
                    }
                    return v["result"].clone();
                }
                Ok(v) => self.events.push_back(v),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("devtools {method}: no answer in {CALL_TIMEOUT:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("devtools connection closed during {method}")
                }
            }
        }
    }

    /// Waits for the event `name`; returns it. Earlier events stay in [`Page::take_events`].
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Value {
        if let Some(pos) = self.events.iter().position(|e| e["method"] == name) {
            return self.events[pos].clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.incoming.recv_timeout(left) {
                Ok(v) => {
                    let hit = v["method"] == name;
                    self.events.push_back(v.clone());
                    if hit {
                        return v;
                    }
                }
                Err(_) => panic!("devtools event {name} did not arrive within {timeout:?}"),
            }
        }
    }

    /// Every event received so far, emptying the buffer (drains what is already queued).
    pub fn take_events(&mut self) -> Vec<Value> {
        while let Ok(v) = self.incoming.try_recv() {
            self.events.push_back(v);
        }
        self.events.drain(..).collect()
    }

    /// Evaluates `expression` in the page and returns its value (by value, awaited).
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("evaluating {expression:?} threw: {ex}");
        }
        r["result"]["value"].clone()
    }
}

fn write_text_frame(w: &mut impl Write, payload: &[u8]) -> std::io::Result<()> {
    // Client frames must be masked (RFC 6455 §5.3); the key need not be secret here.
    let mask = [0x5a, 0x1e, 0x77, 0x03];
    let mut frame = vec![0x81];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    w.write_all(&frame)?;
    w.flush()
}

/// Reads one whole (possibly fragmented) text message; `None` on close.
fn read_message(r: &mut impl Read) -> std::io::Result<Option<String>> {
    let mut message = Vec::new();
    loop {
        let mut head = [0u8; 2];
        r.read_exact(&mut head)?;
        let fin = head[0] & 0x80 != 0;
        let opcode = head[0] & 0x0f;
        let masked = head[1] & 0x80 != 0;
        let mut len = u64::from(head[1] & 0x7f);
        if len == 126 {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            len = u64::from(u16::from_be_bytes(b));
        } else if len == 127 {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            len = u64::from_be_bytes(b);
        }
        let mut mask = [0u8; 4];
        if masked {
            r.read_exact(&mut mask)?;
        }
        let mut payload = vec![0u8; len as usize];
        r.read_exact(&mut payload)?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        match opcode {
            0x8 => return Ok(None),
            0x9 | 0xA => continue, // ping/pong: Chromium does not ping its clients
            _ => message.extend_from_slice(&payload),
        }
        if fin {
            return Ok(Some(String::from_utf8_lossy(&message).into_owned()));
        }
    }
}
