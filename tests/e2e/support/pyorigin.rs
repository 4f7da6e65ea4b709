//! A real Python origin app with Sentry's official SDK (`traced_origin.py`), for the tracing
//! tests: started from the venv `scripts/test.sh` installs (`tools/.venv-demo`, the demo's pinned
//! `demo/requirements.txt`: sentry-sdk 2.75.0), stopped by PID on drop.

use super::workerd::{die_with_parent, repo_root};
use super::{lock, wait_until};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A Python interpreter from one of the project's venvs (`tools/<venv>`), installed by
/// `scripts/test.sh`.
pub fn venv_python(venv: &str) -> PathBuf {
    let python = repo_root().join("tools").join(venv).join("bin/python");
    assert!(
        python.exists(),
        "{} not found: run scripts/test.sh (it installs the Python venvs the tests use)",
        python.display()
    );
    python
}

pub struct PyOrigin {
    child: Child,
    port: u16,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl PyOrigin {
    /// Starts the app reporting to `dsn` and waits (bounded) until it listens.
    pub fn start(dsn: &str) -> PyOrigin {
        let script = repo_root().join("tests/e2e/support/traced_origin.py");
        let mut command = Command::new(venv_python(".venv-demo"));
        die_with_parent(&mut command);
        let mut child = command
            .arg(&script)
            .arg(dsn)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the Python origin");
        let stdout = child.stdout.take().expect("piped stdout");
        let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (port_tx, port_rx) = mpsc::channel();
        {
            let seen = seen.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(port) = line.strip_prefix("listening ") {
                        let _ = port_tx.send(port.trim().parse::<u16>().ok());
                    } else if let Ok(value) = serde_json::from_str::<Value>(&line) {
                        lock(&seen).push(value);
                    }
                }
            });
        }
        let port = port_rx.recv_timeout(Duration::from_secs(30)).ok().flatten();
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the Python origin did not start listening within 30 s");
        };
        PyOrigin { child, port, seen }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests the app received: `{"path", "sentry_trace", "baggage"}` each.
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.seen).clone()
    }

    /// Waits (bounded) for `n` requests.
    pub fn wait_for_requests(&self, n: usize) -> Vec<Value> {
        let arrived = wait_until(Duration::from_secs(10), || lock(&self.seen).len() >= n);
        assert!(
            arrived,
            "the Python origin saw {:?}, expected {n} request(s)",
            self.requests()
        );
        self.requests()
    }
}

impl Drop for PyOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sentry's normaliser's `errors` for each of `events` (empty: accepted with no errors), from
/// PyPI's `sentry-relay` in `tools/.venv-relay` (`tests/e2e/support/normalize.py`).
pub fn normalizer_errors(events: &[Value]) -> Vec<Value> {
    use std::io::Write;
    let script = repo_root().join("tests/e2e/support/normalize.py");
    let mut child = Command::new(venv_python(".venv-relay"))
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the normaliser");
    let input = serde_json::to_vec(events).expect("events serialise");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(&input)
        .expect("write events");
    let out = child.wait_with_output().expect("normaliser output");
    assert!(out.status.success(), "the normaliser failed");
    let parsed: Value = serde_json::from_slice(&out.stdout).expect("normaliser JSON");
    parsed.as_array().cloned().unwrap_or_default()
}
