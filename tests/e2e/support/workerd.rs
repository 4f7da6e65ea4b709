//! Runs the built worker under a private `workerd` process.
//!
//! Each [`Worker`] gets its own temp dir holding a copy of the build output
//! and a generated Cap'n Proto config, its own port (workerd binds
//! `127.0.0.1:0` and reports the port on `--control-fd`), and its own log.
//! The process is killed on drop; if the test is failing, its log is printed.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::http::Request;
use super::lock;

pub const COMPATIBILITY_DATE: &str = "2026-11-01";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory whose `index.js` (and `*.wasm`) are served. Defaults to
/// `<repo>/build`; `EDGEGUARD_E2E_BUILD_DIR` overrides it (relative paths are
/// taken from the repo root), e.g. to check the harness against
/// `tests/e2e/reference_worker`.
pub fn build_dir() -> PathBuf {
    dir_from_env("EDGEGUARD_E2E_BUILD_DIR", "build")
}

/// The directory `var` names (relative paths taken from the repo root), else `<repo>/default`.
fn dir_from_env(var: &str, default: &str) -> PathBuf {
    let dir = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    // An absolute `dir` replaces the root in `join`.
    repo_root().join(dir)
}

/// The `flood-cap` build (`EDGEGUARD_FEATURES=flood-cap`, exporting the `FloodCap` Durable
/// Object): `EDGEGUARD_E2E_FLOOD_BUILD_DIR`, else `<repo>/build-flood` (scripts/test.sh makes it).
pub fn flood_build_dir() -> PathBuf {
    dir_from_env("EDGEGUARD_E2E_FLOOD_BUILD_DIR", "build-flood")
}

pub fn workerd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WORKERD_BIN") {
        return PathBuf::from(p);
    }
    let p = repo_root().join("tools/node_modules/@cloudflare/workerd-linux-64/bin/workerd");
    assert!(
        p.exists(),
        "workerd not found at {}: install the tools (scripts/setup.sh) or set WORKERD_BIN",
        p.display()
    );
    p
}

/// A directory under the system temp dir, removed by its owner.
fn unique_temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir = std::env::temp_dir().join(format!(
        "edgeguard-e2e-{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Module files of the build, main module (`index.js`) first, as paths
/// relative to the build dir.
fn module_files(build: &Path) -> Vec<PathBuf> {
    let index = build.join("index.js");
    if !index.is_file() {
        panic!(
            "built worker not found at {}: run scripts/build.sh (or scripts/test.sh)",
            index.display()
        );
    }
    let mut files = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(build.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let rel = rel.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                // Dot-dirs are not build output.
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') {
                    stack.push(rel);
                }
            } else if is_module(&rel) && rel != Path::new("index.js") {
                files.push(rel);
            }
        }
    }
    files.sort();
    files.insert(0, PathBuf::from("index.js"));
    files
}

fn is_module(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("js") | Some("mjs") | Some("wasm")
    )
}

/// The `.wasm` specifiers that `index.js` imports (`from "./index_bg.wasm"`).
pub fn wasm_imports(index_js: &str) -> Vec<String> {
    let mut out = Vec::new();
    for quote in ['"', '\''] {
        for (i, _) in index_js.match_indices(".wasm") {
            let after = &index_js[i + 5..];
            if !after.starts_with(quote) {
                continue;
            }
            if let Some(start) = index_js[..i].rfind(quote) {
                let spec = &index_js[start + 1..i + 5];
                if !spec.contains(char::is_whitespace) && !out.iter().any(|s| s == spec) {
                    out.push(spec.to_string());
                }
            }
        }
    }
    out
}

/// `compatibility_flags` from `<repo>/wrangler.toml`, so the test runtime
/// matches what gets deployed.
fn compatibility_flags() -> Vec<String> {
    let Ok(toml) = fs::read_to_string(repo_root().join("wrangler.toml")) else {
        return Vec::new();
    };
    let Some(line) = toml
        .lines()
        .find(|l| l.trim_start().starts_with("compatibility_flags"))
    else {
        return Vec::new();
    };
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn capnp_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A worker's `modules` entries in capnp (paths relative to the config file).
fn module_entries(modules: &[PathBuf]) -> Vec<String> {
    modules
        .iter()
        .map(|m| {
            let name = m.to_string_lossy().replace('\\', "/");
            let kind = if name.ends_with(".wasm") {
                "wasm"
            } else {
                "esModule"
            };
            format!(
                "    (name = {}, {kind} = embed {}),",
                capnp_string(&name),
                capnp_string(&name)
            )
        })
        .collect()
}

/// `vars` as capnp text bindings.
fn text_bindings(vars: &[(&str, &str)]) -> Vec<String> {
    vars.iter()
        .map(|(k, v)| {
            format!(
                "    (name = {}, text = {}),",
                capnp_string(k),
                capnp_string(v)
            )
        })
        .collect()
}

/// Builds the workerd config for `modules` (relative to the config file).
pub fn render_config(modules: &[PathBuf], vars: &[(&str, &str)], flags: &[String]) -> String {
    let modules = module_entries(modules);
    let bindings = text_bindings(vars);
    let flags: Vec<String> = flags.iter().map(|f| capnp_string(f)).collect();
    format!(
        r#"using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .edgeguard),
    # workerd's implicit "internet" only reaches public addresses; the tests'
    # origin and Sentry live on 127.0.0.1.
    (name = "internet", network = (
      allow = ["public", "private", "local"],
      tlsOptions = (trustBrowserCas = true),
    )),
  ],
  sockets = [
    (name = "http", address = "127.0.0.1:0", http = (), service = "main"),
  ],
);

const edgeguard :Workerd.Worker = (
  modules = [
{modules}
  ],
  compatibilityDate = "{COMPATIBILITY_DATE}",
  compatibilityFlags = [{flags}],
  bindings = [
{bindings}
  ],
  globalOutbound = "internet",
);
"#,
        modules = modules.join("\n"),
        bindings = bindings.join("\n"),
        flags = flags.join(", "),
    )
}

/// Copies the build's modules into a fresh temp dir: (the dir, the modules, main first).
fn copy_build(build: &Path) -> (PathBuf, Vec<PathBuf>) {
    let modules = module_files(build);
    let index = fs::read_to_string(build.join("index.js")).unwrap();
    for spec in wasm_imports(&index) {
        let name = spec.trim_start_matches("./");
        assert!(
            modules.iter().any(|m| m.to_string_lossy() == name),
            "index.js imports {spec:?} but {} has no such module; modules: {modules:?}",
            build.display()
        );
    }
    let dir = unique_temp_dir("workerd");
    for m in &modules {
        let to = dir.join(m);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::copy(build.join(m), &to).unwrap();
    }
    (dir, modules)
}

/// The `EDGEGUARD_FLOOD` namespace's class in [`Worker::start_isolates`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodObject {
    /// edgeguard's own `FloodCap` (the flood-cap build), owned by the first isolate's service.
    Edgeguard,
    /// A `FloodCap` whose every fetch throws (its own service).
    Throwing,
    /// A `FloodCap` whose every fetch hangs for 30 s (its own service).
    Hanging,
    /// No `EDGEGUARD_FLOOD` binding at all: the flood-cap build as a site without it runs it.
    Unbound,
}

impl FloodObject {
    fn script(self) -> &'static str {
        match self {
            FloodObject::Edgeguard | FloodObject::Unbound => "",
            FloodObject::Throwing => {
                r#"import { DurableObject } from "cloudflare:workers";
export class FloodCap extends DurableObject {
  async fetch() { throw new Error("FloodCap is out of order"); }
}
export default { fetch() { return new Response("flood object"); } };
"#
            }
            FloodObject::Hanging => {
                r#"import { DurableObject } from "cloudflare:workers";
export class FloodCap extends DurableObject {
  async fetch() {
    await new Promise((resolve) => setTimeout(resolve, 30000));
    return new Response("too late", { headers: { "edgeguard-grant": "v1 10 0 60000" } });
  }
}
export default { fetch() { return new Response("flood object"); } };
"#
            }
        }
    }
}

/// The config of [`Worker::start_isolates`]: services `w0`..`w{n-1}` (the build, each its own
/// isolate, socket `http{i}`), all bound as `EDGEGUARD_FLOOD` to one namespace of class
/// `FloodCap`: `w0`'s own (in-memory storage) for [`FloodObject::Edgeguard`], else that of a
/// service `flood` running the broken class.
pub fn render_isolates_config(
    modules: &[PathBuf],
    vars: &[(&str, &str)],
    flags: &[String],
    isolates: usize,
    object: FloodObject,
) -> String {
    let modules = module_entries(modules);
    let vars = text_bindings(vars);
    let flags: Vec<String> = flags.iter().map(|f| capnp_string(f)).collect();
    let mut services = Vec::new();
    let mut sockets = Vec::new();
    let mut workers = Vec::new();
    let owner = if object == FloodObject::Edgeguard {
        "w0"
    } else {
        "flood"
    };
    for i in 0..isolates {
        services.push(format!("    (name = \"w{i}\", worker = .w{i}),"));
        sockets.push(format!(
            "    (name = \"http{i}\", address = \"127.0.0.1:0\", http = (), service = \"w{i}\"),"
        ));
        let owns = i == 0 && object == FloodObject::Edgeguard;
        let namespace = if owns {
            "(className = \"FloodCap\")".to_string()
        } else {
            format!("(className = \"FloodCap\", serviceName = \"{owner}\")")
        };
        let binding = if object == FloodObject::Unbound {
            String::new()
        } else {
            format!("    (name = \"EDGEGUARD_FLOOD\", durableObjectNamespace = {namespace}),\n")
        };
        let own_objects = if owns {
            "  durableObjectNamespaces = [(className = \"FloodCap\", uniqueKey = \"edgeguard-floodcap\")],\n  durableObjectStorage = (inMemory = void),\n"
        } else {
            ""
        };
        workers.push(format!(
            r#"const w{i} :Workerd.Worker = (
  modules = [
{modules}
  ],
  compatibilityDate = "{COMPATIBILITY_DATE}",
  compatibilityFlags = [{flags}],
  bindings = [
{vars}
{binding}  ],
{own_objects}  globalOutbound = "internet",
);
"#,
            modules = modules.join("\n"),
            vars = vars.join("\n"),
            flags = flags.join(", "),
        ));
    }
    if matches!(object, FloodObject::Throwing | FloodObject::Hanging) {
        services.push("    (name = \"flood\", worker = .flood),".to_string());
        workers.push(format!(
            r#"const flood :Workerd.Worker = (
  modules = [(name = "flood-object.js", esModule = embed "flood-object.js")],
  compatibilityDate = "{COMPATIBILITY_DATE}",
  durableObjectNamespaces = [(className = "FloodCap", uniqueKey = "broken-floodcap")],
  durableObjectStorage = (inMemory = void),
);
"#
        ));
    }
    format!(
        r#"using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
{services}
    (name = "internet", network = (
      allow = ["public", "private", "local"],
      tlsOptions = (trustBrowserCas = true),
    )),
  ],
  sockets = [
{sockets}
  ],
);

{workers}"#,
        services = services.join("\n"),
        sockets = sockets.join("\n"),
        workers = workers.join("\n"),
    )
}

pub struct Worker {
    child: Child,
    port: u16,
    /// Every socket's port, in the order the sockets were named (`port` is the first).
    ports: Vec<u16>,
    dir: PathBuf,
    logs: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    /// Set when the build is older than the sources: said on failure.
    stale: Option<String>,
}

impl Worker {
    /// Starts the built worker with `vars` as text bindings and waits
    /// (bounded) until it accepts connections.
    pub fn start(vars: &[(&str, &str)]) -> Worker {
        let build = build_dir();
        let (dir, modules) = copy_build(&build);
        let config = render_config(&modules, vars, &compatibility_flags());
        Worker::launch(dir, &config, &["http"], stale_build_note(&build))
    }

    /// `isolates` separate worker services (each its own isolate) of the build in `build` (the
    /// `flood-cap` build), all bound as `EDGEGUARD_FLOOD` to one Durable Object namespace of
    /// `object`, each on its own port ([`Worker::ports`]), in one workerd process.
    pub fn start_isolates(
        build: &Path,
        vars: &[(&str, &str)],
        isolates: usize,
        object: FloodObject,
    ) -> Worker {
        let (dir, modules) = copy_build(build);
        if matches!(object, FloodObject::Throwing | FloodObject::Hanging) {
            fs::write(dir.join("flood-object.js"), object.script()).unwrap();
        }
        let config =
            render_isolates_config(&modules, vars, &compatibility_flags(), isolates, object);
        let sockets: Vec<String> = (0..isolates).map(|i| format!("http{i}")).collect();
        let sockets: Vec<&str> = sockets.iter().map(String::as_str).collect();
        Worker::launch(dir, &config, &sockets, stale_build_note(build))
    }

    fn launch(dir: PathBuf, config: &str, sockets: &[&str], stale: Option<String>) -> Worker {
        let config_path = dir.join("config.capnp");
        fs::write(&config_path, config).unwrap();

        // The control messages (`{"event":"listen",...,"port":N}`) go to
        // stdout, next to the worker's console.log output; console.error and
        // workerd's own --verbose messages go to stderr.
        let mut command = Command::new(workerd_bin());
        die_with_parent(&mut command);
        let mut child = command
            .arg("serve")
            .arg(&config_path)
            .arg("--verbose")
            .arg("--control-fd=1")
            .current_dir(&dir)
            .env("PWD", &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", workerd_bin().display()));

        let logs: Arc<Mutex<Vec<u8>>> = Arc::default();
        let (port_tx, port_rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let out_reader = {
            let logs = logs.clone();
            thread::spawn(move || {
                let mut r = BufReader::new(stdout);
                let mut line = Vec::new();
                while r.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                    if let Some(listen) = listen_port(&line) {
                        let _ = port_tx.send(listen);
                        line.clear();
                        continue;
                    }
                    lock(&logs).extend_from_slice(&line);
                    line.clear();
                }
            })
        };
        let err_reader = {
            let logs = logs.clone();
            thread::spawn(move || {
                let mut r = stderr;
                let mut buf = [0u8; 8192];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    lock(&logs).extend_from_slice(&buf[..n]);
                }
            })
        };
        let mut worker = Worker {
            child,
            port: 0,
            ports: vec![0; sockets.len()],
            dir,
            logs,
            readers: vec![out_reader, err_reader],
            stale,
        };

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while worker.ports.contains(&0) {
            match port_rx.recv_timeout(Duration::from_millis(100)) {
                Ok((socket, port)) => {
                    if let Some(i) = sockets.iter().position(|s| *s == socket) {
                        worker.ports[i] = port;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    worker.fail_start("workerd closed stdout without reporting its port")
                }
            }
            if let Ok(Some(status)) = worker.child.try_wait() {
                worker.fail_start(&format!("workerd exited during startup ({status})"));
            }
            if Instant::now() > deadline {
                worker.fail_start(&format!(
                    "workerd did not report a port within {STARTUP_TIMEOUT:?}"
                ));
            }
        }
        worker.port = worker.ports[0];
        for port in worker.ports.clone() {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if Instant::now() > deadline {
                    worker.fail_start(&format!("port {port} not accepting connections"));
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        worker
    }

    fn fail_start(&mut self, why: &str) -> ! {
        let config = fs::read_to_string(self.dir.join("config.capnp")).unwrap_or_default();
        let _ = self.child.kill();
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        panic!(
            "{why}\n--- config:\n{config}\n--- workerd log:\n{}",
            self.logs()
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every socket's port ([`Worker::start_isolates`]: one per isolate).
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The workerd process id (for reading its memory from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// GET `target` from the worker.
    pub fn get(&self, target: &str) -> super::http::Response {
        Request::get(target).send(self.port)
    }

    /// Everything workerd wrote so far (stdout and stderr, interleaved by
    /// arrival, minus the control messages).
    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&lock(&self.logs)).into_owned()
    }

    /// Waits (bounded) until the log contains `needle`; returns whether it did.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.logs().contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(25));
        }
    }
}

/// Whether something under `src/`, `www/` or `Cargo.toml` changed after the
/// build was made (the tests would then exercise old code).
fn stale_build_note(build: &Path) -> Option<String> {
    fn newest(p: &Path) -> Option<SystemTime> {
        let meta = fs::metadata(p).ok()?;
        if !meta.is_dir() {
            return meta.modified().ok();
        }
        fs::read_dir(p)
            .ok()?
            .filter_map(|e| newest(&e.ok()?.path()))
            .max()
    }
    let built = fs::metadata(build.join("index_bg.wasm"))
        .or_else(|_| fs::metadata(build.join("index.js")))
        .and_then(|m| m.modified())
        .ok()?;
    let root = repo_root();
    let changed: Vec<String> = ["src", "www", "Cargo.toml"]
        .iter()
        .filter(|p| newest(&root.join(p)).is_some_and(|t| t > built))
        .map(|p| p.to_string())
        .collect();
    (!changed.is_empty()).then(|| {
        format!(
            "{} changed after {} was built: rebuild with scripts/build.sh",
            changed.join(", "),
            build.display()
        )
    })
}

/// Drop kills workerd, but a test binary that aborts (a panic inside a
/// panic, a signal) runs no Drop: have the kernel SIGKILL workerd when the
/// thread that spawned it goes away. That thread is the test's own, and the
/// `Worker` never leaves it.
#[cfg(target_os = "linux")]
pub fn die_with_parent(command: &mut Command) {
    use std::os::raw::{c_int, c_ulong};
    use std::os::unix::process::CommandExt;
    extern "C" {
        fn prctl(option: c_int, arg2: c_ulong, ...) -> c_int;
    }
    const PR_SET_PDEATHSIG: c_int = 1;
    const SIGKILL: c_ulong = 9;
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches only
    // the calling (child) process; nothing is allocated between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if prctl(PR_SET_PDEATHSIG, SIGKILL) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub fn die_with_parent(_: &mut Command) {}

/// A control message `{"event":"listen","socket":NAME,"port":N}`: (NAME, N).
fn listen_port(line: &[u8]) -> Option<(String, u16)> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    if v["event"] == "listen" {
        Some((
            v["socket"].as_str()?.to_string(),
            v["port"].as_u64()? as u16,
        ))
    } else {
        None
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        if thread::panicking() || super::verbose() {
            eprintln!(
                "--- workerd log (port {}):\n{}--- end of workerd log",
                self.port,
                self.logs()
            );
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
