#!/usr/bin/env python3
"""edgeguard vs the JS SDKs, side by side, on loopback. Run through scripts/bench.sh.

Everything runs on 127.0.0.1 and is stopped by PID at the end (or on Ctrl-C):
- nginx: the origin (/1k: 1 KiB 200, /1m: 1 MiB 200, /64m: 64 MiB 200, /500: a 500) and, on a
  second port, the Sentry sink, which answers 200 to every POST /api/<id>/envelope/ and logs one
  line per envelope (that log is how events are counted);
- one workerd process per worker, started directly from a generated capnp config (no wrangler).

Phases: cold starts (process start to first 200, several per worker, interleaved; each cold
process then streams 64 MiB and its peak RSS growth is recorded), then load with wrk, interleaved
(every round runs every scenario against every target, the target order rotating) so machine
drift hits all alike. CPU per request is the workerd process's utime+stime (from /proc) over the
run divided by the requests wrk completed. Prints one Markdown table and writes it to --out.

It is a benchmark, not a test: it asserts nothing about speed. It does refuse to report a target
that answers wrongly (wrong status, origin body leaked, no event id on the page).
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from wasm import Module  # benches/wasm.py, beside this file

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
COMPATIBILITY_DATE = "2026-11-01"  # as wrangler.toml and the e2e harness
DSN_KEY = "benchpublickey0123456789abcdef0"
SCENARIOS = [("1k", "/1k", 200), ("1m", "/1m", 200), ("500", "/500", 500)]
# The single-connection pass one request at a time: 25 ms between requests, far more than any of
# these workers spends after a response (edgeguard: 1 ms of deferral, then ~0.5 ms of CPU).
PACE_S = 0.025
ORIGIN_500_BODY = "origin debug page: Traceback DEBUG-SECRET"

WRK_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d status_errors=%d socket_errors=%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# Processes


class Procs:
    """Everything we start, stopped by PID (its own process group) in reverse order."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], logfile: Path, cwd: Path | None = None) -> subprocess.Popen:
        out = open(logfile, "ab")
        p = subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                             start_new_session=True)
        out.close()
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self) -> None:
        for p in reversed(list(self.procs)):
            self.stop(p)


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, all threads, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        conn.close()


def paced_p50_us(port: int, paths: list[str], seconds: float) -> dict[str, int]:
    """Requests one at a time on one keep-alive connection, PACE_S apart, the paths taking turns,
    for `seconds`: each path's median latency in µs. The pause lets whatever a worker does after
    its response (reporting in waitUntil) finish before the next request, so each latency is the
    visitor's own wait; taking turns puts both paths in the same moment of the machine."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies: dict[str, list[int]] = {path: [] for path in paths}
    try:
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end or n < 20 * len(paths):
            path = paths[n % len(paths)]
            n += 1
            t0 = time.perf_counter_ns()
            conn.request("GET", path)
            r = conn.getresponse()
            while r.read(1 << 16):
                pass
            latencies[path].append((time.perf_counter_ns() - t0) // 1000)
            time.sleep(PACE_S)
    finally:
        conn.close()
    # The first few warm the connection.
    return {path: int(statistics.median(values[5:])) for path, values in latencies.items()}


def drain(port: int, path: str, timeout: float = 60.0) -> int:
    """GET and read the body in chunks without keeping it; returns the byte count."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        n = 0
        while chunk := r.read(1 << 16):
            n += len(chunk)
        return n
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------------
# Origin + sink (nginx)


def nginx_config(state: Path, origin_port: int, sink_port: int) -> str:
    tmp = state / "nginx-tmp"
    temp_paths = "\n".join(
        f"  {name}_temp_path {tmp}/{name};"
        for name in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"])
    return f"""
worker_processes 1;
daemon off;
pid {state}/nginx.pid;
error_log {state}/nginx-error.log warn;
{'user root;' if os.geteuid() == 0 else ''}
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
{temp_paths}
  log_format envelope '$request_method $status $content_length';

  # The origin.
  server {{
    listen 127.0.0.1:{origin_port} reuseport backlog=4096;
    root {state}/www;
    # Each 500 served is logged: the exact number of failures the workers saw.
    location = /500 {{
      access_log {state}/origin-500.log envelope buffer=64k flush=100ms;
      return 500 "{ORIGIN_500_BODY}\\n";
    }}
    location / {{ }}
  }}

  # The Sentry sink: counts envelopes, one log line each.
  server {{
    listen 127.0.0.1:{sink_port} backlog=4096;
    client_max_body_size 1m;
    client_body_buffer_size 1m;
    location ~ ^/api/[0-9]+/envelope/$ {{
      access_log {state}/sink.log envelope;
      if ($request_method != POST) {{ return 405; }}
      return 200 '{{}}';
    }}
    location / {{ return 400; }}
  }}
}}
"""


def write_origin_files(www: Path) -> None:
    www.mkdir(parents=True, exist_ok=True)
    block = bytes(range(32, 127)) * 11 + b"\n"  # printable, 1046 bytes
    (www / "1k").write_bytes(block[:1024])
    mib = (block * 1100)[: 1 << 20]
    (www / "1m").write_bytes(mib)
    with open(www / "64m", "wb") as f:
        for _ in range(64):
            f.write(mib)


def count_lines(path: Path, prefix: bytes) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.startswith(prefix))
    except FileNotFoundError:
        return 0


def sink_count(state: Path) -> int:
    return count_lines(state / "sink.log", b"POST 200 ")


def origin_500s(state: Path) -> int:
    return count_lines(state / "origin-500.log", b"GET 500 ")


def sink_settled(state: Path, max_wait: float = 10.0) -> int:
    """The sink's count once it has not moved for a second (reports run after the response)."""
    last, since = sink_count(state), time.monotonic()
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        time.sleep(0.2)
        n = sink_count(state)
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= 1.0:
            break
    return last


# ------------------------------------------------------------------------------------------------
# Workers under workerd


@dataclass
class Target:
    name: str
    port: int
    modules: list[Path] = field(default_factory=list)  # main module first; empty for the origin
    flags: list[str] = field(default_factory=list)
    reports: bool = True  # sends an event per 5xx
    extra_vars: dict[str, str] = field(default_factory=dict)  # on top of the common vars
    flood: bool = False  # bound as EDGEGUARD_FLOOD to a FloodCap that hangs (--hanging-flood-variant)
    dir: Path | None = None
    proc: subprocess.Popen | None = None

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.name).strip("-")

    @property
    def is_origin(self) -> bool:
        return not self.modules

    def upload(self) -> tuple[int, int]:
        raw = sum(m.stat().st_size for m in self.modules)
        gz = sum(len(gzip.compress(m.read_bytes(), 9)) for m in self.modules)
        return raw, gz


def edgeguard_modules(build: Path) -> list[Path]:
    """An edgeguard build's modules, main first: src/edge/entry.js, worker-build's module (absent
    in builds from before workers-rs, compared with --variant), the wasm."""
    modules = [build / "index.js", build / "worker.js", build / "index_bg.wasm"]
    return [m for m in modules if m.exists()]


HANGING_FLOOD_OBJECT = """import { DurableObject } from "cloudflare:workers";
export class FloodCap extends DurableObject {
  async fetch() {
    await new Promise((resolve) => setTimeout(resolve, 30000));
    return new Response(null, { status: 503 });
  }
}
export default { fetch() { return new Response("flood object"); } };
"""


def capnp_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_worker_dir(t: Target, state: Path, vars_: dict[str, str], v8_flags: tuple[str, ...] = (),
                     config: str = "config.capnp") -> None:
    d = state / "workers" / t.slug
    d.mkdir(parents=True, exist_ok=True)
    mods = []
    for m in t.modules:
        shutil.copy(m, d / m.name)
        kind = "wasm" if m.name.endswith(".wasm") else "esModule"
        mods.append(f"    (name = {capnp_str(m.name)}, {kind} = embed {capnp_str(m.name)}),")
    binds = [f"    (name = {capnp_str(k)}, text = {capnp_str(v)})," for k, v in vars_.items()]
    flags = f"  v8Flags = [{', '.join(capnp_str(f) for f in v8_flags)}],\n" if v8_flags else ""
    flood_service, flood_worker = "", ""
    if t.flood:
        # The shared flood cap made unavailable: a FloodCap whose every fetch hangs for 30 s, in a
        # service of its own (edgeguard gives up on it after 1 s, after the page).
        (d / "flood-object.js").write_text(HANGING_FLOOD_OBJECT)
        binds.append('    (name = "EDGEGUARD_FLOOD", durableObjectNamespace = '
                     '(className = "FloodCap", serviceName = "flood")),')
        flood_service = '    (name = "flood", worker = .flood),\n'
        flood_worker = f"""const flood :Workerd.Worker = (
  modules = [(name = "flood-object.js", esModule = embed "flood-object.js")],
  compatibilityDate = "{COMPATIBILITY_DATE}",
  durableObjectNamespaces = [(className = "FloodCap", uniqueKey = "hanging-floodcap")],
  durableObjectStorage = (inMemory = void),
);
"""
    (d / config).write_text(f"""using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
{flags}  services = [
    (name = "main", worker = .w),
{flood_service}
    # workerd's implicit "internet" reaches only public addresses; origin and sink are local.
    (name = "internet", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [(name = "http", address = "127.0.0.1:{t.port}", http = (), service = "main")],
);
const w :Workerd.Worker = (
  modules = [
{chr(10).join(mods)}
  ],
  compatibilityDate = "{COMPATIBILITY_DATE}",
  compatibilityFlags = [{", ".join(capnp_str(f) for f in t.flags)}],
  bindings = [
{chr(10).join(binds)}
  ],
  globalOutbound = "internet",
);
{flood_worker}""")
    t.dir = d


def start_worker(t: Target, procs: Procs, workerd: Path, state: Path) -> subprocess.Popen:
    assert t.dir is not None
    return procs.start([str(workerd), "serve", str(t.dir / "config.capnp")],
                       state / f"workerd-{t.slug}.log", cwd=t.dir)


def wait_200(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> float:
    """Polls GET /1k until a 200; returns the time of that 200 (monotonic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"workerd on port {port} exited ({proc.returncode})")
        try:
            status, _, _ = get(port, "/1k", timeout=2.0)
            if status == 200:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.002)
    raise RuntimeError(f"no 200 from port {port} within {timeout}s")


# ------------------------------------------------------------------------------------------------
# Load


@dataclass
class Run:
    requests: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    p50_us: list[int] = field(default_factory=list)
    p99_us: list[int] = field(default_factory=list)
    status_errors: int = 0
    socket_errors: int = 0
    events: int = 0
    cpu_rounds_us: list[float] = field(default_factory=list)  # CPU µs/req of each round
    idle_p50_us: list[int] = field(default_factory=list)  # p50 with one connection back to back, per round
    paced_p50_us: list[int] = field(default_factory=list)  # p50 one request at a time, per round
    origin_500s: int = 0  # 500s the origin served during the run (the failures the worker saw)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu_s * 1e6 / self.requests if self.requests else 0.0


def wrk(port: int, path: str, args: argparse.Namespace, lua: Path, seconds: float,
        connections: int | None = None) -> dict[str, int]:
    c = connections or args.connections
    run = subprocess.run(
        ["wrk", f"-t{min(args.threads, c)}", f"-c{c}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
         "-s", str(lua), f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=seconds + 60)
    if run.returncode != 0:
        raise RuntimeError(f"wrk failed ({run.returncode}): {run.stderr.strip()}")
    out = run.stdout
    line = next(l for l in out.splitlines() if l.startswith("BENCH "))
    return {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}


def check_target(t: Target, state: Path) -> None:
    """Refuses to benchmark a target that does not do the job."""
    status, _, body = get(t.port, "/1k")
    if status != 200 or len(body) != 1024:
        raise RuntimeError(f"{t.name}: GET /1k gave {status} with {len(body)} bytes")
    before = sink_count(state)
    status, headers, body = get(t.port, "/500")
    if status != 500:
        raise RuntimeError(f"{t.name}: GET /500 gave {status}")
    if not t.reports:
        return
    if b"DEBUG-SECRET" in body:
        raise RuntimeError(f"{t.name}: GET /500 leaked the origin's body")
    event_id = headers.get("x-sentry-id", "")
    if len(event_id) != 32:
        raise RuntimeError(f"{t.name}: GET /500 page has no event id (x-sentry-id={event_id!r})")
    if sink_settled(state) - before != 1:
        raise RuntimeError(f"{t.name}: GET /500 did not send exactly one envelope")


# ------------------------------------------------------------------------------------------------
# Report


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def ratio(x: float, base: float) -> str:
    return f"{x / base:.2f}×" if base else "–"


def ratio_spread(r: "Run", base: "Run | None") -> str:
    """The lowest and highest of the per-round CPU ratios: each round's cells run minutes
    apart at most, so the spread shows how far the machine's drift moves one ratio."""
    if base is None or r is base or len(r.cpu_rounds_us) < 2 or len(base.cpu_rounds_us) != len(r.cpu_rounds_us):
        return ""
    each = [x / b for x, b in zip(r.cpu_rounds_us, base.cpu_rounds_us) if b]
    return f" ({min(each):.2f}–{max(each):.2f})" if len(each) >= 2 else ""


def median_ms(values_us: list[int]) -> str:
    return f"{statistics.median(values_us) / 1000:.2f}" if values_us else "–"


def gap(failing_us: list[int], passing_us: list[int]) -> str:
    """How much longer one failing request takes than one passing request, with one connection
    (back to back, or one at a time): the median over rounds of each round's own gap, with the
    smallest and largest in brackets (each round measures both cells minutes apart at most)."""
    if not failing_us or len(passing_us) != len(failing_us):
        return "–"
    gaps = [(f - p) / 1000 for f, p in zip(failing_us, passing_us)]
    spread = f" ({min(gaps):+.2f}…{max(gaps):+.2f})" if len(gaps) >= 2 else ""
    return f"{statistics.median(gaps):+.2f}{spread}"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores (shared by wrk, nginx and workerd), {platform.system()} {platform.release()}"


def render(targets: list[Target], runs: dict[tuple[str, str], Run], cold: dict[str, list[float]],
           stream: dict[str, list[int]], args: argparse.Namespace, versions: dict[str, str]) -> str:
    base = "js-passthrough"
    out = ["# Benchmark results", "",
           "Written by `scripts/bench.sh` (see benches/README.md for what is measured and how); "
           "re-run it to refresh.", ""]
    out.append(f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}; "
               f"workerd {versions.get('workerd', '?')}, wrk -t{args.threads} -c{args.connections}, "
               f"{args.rounds} interleaved rounds × {args.duration:g} s per cell.")
    out.append("")
    for scen, path, _ in SCENARIOS:
        b = runs.get((base, scen))
        out.append(f"**{path}** ({'origin 500' if scen == '500' else 'origin 200, ' + ('1 KiB' if scen == '1k' else '1 MiB')})")
        out.append("")
        hdr = ("| target | req/s | × JS | p50 ms | p99 ms | CPU µs/req | × JS | p50 ms, 1 conn "
               "| p50 ms, one at a time |")
        sep = "|---|--:|--:|--:|--:|--:|--:|--:|--:|"
        if scen == "500":
            hdr += " /500 − /1k, one at a time | /500 − /1k, 1 conn | events per 5xx |"
            sep += "--:|--:|--:|"
        out.append(hdr)
        out.append(sep)
        for t in targets:
            r = runs.get((t.name, scen))
            if r is None:
                continue
            p50 = statistics.median(r.p50_us) / 1000
            p99 = statistics.median(r.p99_us) / 1000
            row = (f"| {t.name} | {fmt_int(r.rps)} | {ratio(r.rps, b.rps) if b else '–'} | {p50:.2f} | "
                   f"{p99:.2f} | {r.cpu_us:.0f} | {ratio(r.cpu_us, b.cpu_us) + ratio_spread(r, b) if b else '–'} | "
                   f"{median_ms(r.idle_p50_us)} | {median_ms(r.paced_p50_us)} |")
            if scen == "500":
                passing = runs.get((t.name, "1k")) or Run()
                row += f" {gap(r.paced_p50_us, passing.paced_p50_us)} | {gap(r.idle_p50_us, passing.idle_p50_us)} |"
                if t.is_origin or not t.reports:
                    row += " – |"
                else:
                    row += f" {r.events / r.origin_500s:.3f} |" if r.origin_500s else " – |"
            errs = r.socket_errors + (r.status_errors if scen != "500" else 0)
            if errs:
                row = row[:-1] + f"| ⚠ {errs} errors |"
            out.append(row)
        out.append("")
    out.append("**Upload and start**")
    out.append("")
    out.append("| target | upload raw KB | upload gzip KB | cold start ms (median) | × JS | 64 MiB stream: peak RSS growth MiB |")
    out.append("|---|--:|--:|--:|--:|--:|")
    bcold = statistics.median(cold[base]) if cold.get(base) else 0.0
    for t in targets:
        if t.is_origin:
            continue
        raw, gz = t.upload()
        c = statistics.median(cold[t.name]) if cold.get(t.name) else 0.0
        s = max(stream.get(t.name, [0])) / 1024
        out.append(f"| {t.name} | {raw / 1000:.1f} | {gz / 1000:.1f} | {c:.0f} | "
                   f"{'+%.0f ms' % (c - bcold) if t.name != base else '–'} | {s:.1f} |")
    out.append("")
    out.append("req/s, p50, p99 and CPU are under load (wrk -c as above, so p50 includes queueing); "
               "'p50 ms, 1 conn' is a separate pass with one connection, requests back to back (wrk -c1), "
               "so a request can wait for what the worker does after the previous response; 'one at "
               f"a time' sends /1k and /500 in turns, {PACE_S * 1000:.0f} ms apart, so each latency "
               "is the visitor's own wait (both: median over as many interleaved rounds as the load "
               "phase; a /500 − /1k gap is the median of each round's own gap, smallest and largest "
               "in brackets). "
               "CPU is the serving process's utime+stime over the run divided by completed requests "
               "(the origin row: nginx's worker); its × JS is over all rounds, with the lowest and "
               "highest of the rounds' own ratios in brackets. Events per 5xx counts envelopes the sink received "
               "(after waiting for `waitUntil` work to finish) over the 500s the origin served to the "
               "worker in the same run. Upload sizes: the files uploaded "
               "(edgeguard: index.js + worker.js + index_bg.wasm; JS workers: the esbuild --minify bundle), gzip -9 "
               "per file. Cold start: process start to the first 200 on /1k.")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------


# V8 traces each wasm function it compiles, with its own timing (workerd hands the config's
# v8Flags to V8). Tier-up off: what is left is the baseline (Liftoff) compile that V8's lazy
# compilation runs the first time a function is called.
COMPILE_TRACE_FLAGS = ("--trace-wasm-compilation-times", "--no-wasm-tier-up")
COMPILED_RE = re.compile(r"#(\d+) using Liftoff, took (\d+) μs.*?bodysize (\d+)")


def wasm_code_facts(wasm: Path) -> tuple[int, dict[int, str]]:
    """The bytes of all function bodies, and function index -> name from the `name` section
    (empty for a build without one: `EDGEGUARD_WASM_NAMES=1 scripts/build.sh` keeps it)."""
    module = Module(wasm)
    return sum(module.bodies), module.names


def first_request_compile(t: Target, procs: "Procs", workerd: Path, state: Path,
                          vars_: dict[str, str]) -> None:
    """Starts a fresh process with V8's compile trace on, sends it one /1k and prints what wasm
    that first request compiled: a large part of the cold start beyond a JS worker's."""
    write_worker_dir(t, state, vars_, COMPILE_TRACE_FLAGS, "config-trace.capnp")
    assert t.dir is not None
    runs = []  # three fresh processes: the times move with the machine, the functions do not
    for i in range(3):
        log_path = state / f"workerd-{t.slug}-trace-{i}.log"
        log_path.unlink(missing_ok=True)
        proc = procs.start([str(workerd), "serve", str(t.dir / "config-trace.capnp")], log_path, cwd=t.dir)
        try:
            wait_200(t.port, proc)
            time.sleep(0.2)
        except RuntimeError as e:  # e.g. a workerd whose V8 rejects one of the flags
            print(f"\n### First request: {t.name}: not traced ({e}; see {log_path})")
            return
        finally:
            procs.stop(proc)
        runs.append([tuple(int(g) for g in m.groups())
                     for m in COMPILED_RE.finditer(log_path.read_text(errors="replace"))])
    runs.sort(key=lambda run: sum(c[1] for c in run))
    compiled = runs[1]
    code, names = wasm_code_facts(next(m for m in t.modules if m.name.endswith(".wasm")))
    print(f"\n### First request: the wasm it compiled, {t.name}\n```")
    if not compiled:
        print(f"no compile trace in {log_path} (this V8 ignored {' '.join(COMPILE_TRACE_FLAGS)}?)")
    else:
        totals = ", ".join(f"{sum(c[1] for c in run) / 1000:.1f}" for run in runs)
        body = sum(c[2] for c in compiled)
        print(f"{len(compiled)} functions, {body:,} of the module's {code:,} bytes of code, compiled "
              f"(Liftoff, V8's own clock) in {totals} ms in three fresh processes; the median one:\n")
        print("    µs   bytes  function (largest compile times)")
        for index, took, size in sorted(compiled, key=lambda c: -c[1])[:12]:
            name = re.sub(r"\[[0-9a-f]{16}\]", "", names.get(index, f"wasm-function[{index}]"))
            print(f"{took:6d}  {size:6d}  {name[:110]}")
    print("```")


def profile(targets: list[Target], procs: "Procs", workerd: Path, state: Path,
            args: argparse.Namespace, lua: Path, vars_: dict[str, str]) -> None:
    """Restarts each edgeguard build with the V8 inspector on and samples it under load; then
    traces what its first request compiles."""
    node = shutil.which("node") or "node"
    script = ROOT / "benches" / "cpu-profile.mjs"
    for t in targets:
        if t.is_origin or not t.modules[0].name.endswith("index.js"):
            continue
        assert t.proc is not None and t.dir is not None
        procs.stop(t.proc)
        inspector = args.port_base + 40
        t.proc = procs.start([str(workerd), "serve", str(t.dir / "config.capnp"),
                              f"--inspector-addr=127.0.0.1:{inspector}"],
                             state / f"workerd-{t.slug}-profile.log", cwd=t.dir)
        wait_200(t.port, t.proc)
        for scen, path, _ in SCENARIOS:
            out = state / f"{t.slug}-{scen}.cpuprofile"
            sampler = subprocess.Popen([node, str(script), str(inspector), str(args.profile), str(out)],
                                       stdout=subprocess.PIPE, text=True)
            time.sleep(0.3)
            wrk(t.port, path, args, lua, max(args.profile - 1, 1))
            report, _ = sampler.communicate(timeout=args.profile + 30)
            print(f"\n### CPU profile: {t.name} {path}\n```\n{report.strip()}\n```")
        sink_settled(state)
        procs.stop(t.proc)
        first_request_compile(t, procs, workerd, state, vars_)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=8, help="seconds of load per cell per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cold-starts", type=int, default=5)
    ap.add_argument("--idle-seconds", type=int, default=2, help="seconds per cell of the 1-connection pass")
    ap.add_argument("--port-base", type=int, default=18700)
    ap.add_argument("--bundles", type=Path, required=True, help="dir with the esbuild'ed JS workers")
    ap.add_argument("--build", type=Path, default=ROOT / "build", help="edgeguard's build/ dir")
    ap.add_argument("--state", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="also write the table here")
    ap.add_argument("--workerd-version", default="?")
    ap.add_argument("--only", default="", help="comma-separated target names to run (js-passthrough is always kept)")
    ap.add_argument("--scenarios", default="1k,1m,500", help="comma-separated: 1k, 1m, 500")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=DIR",
                    help="also run another edgeguard build (DIR with index.js, worker.js, index_bg.wasm)")
    ap.add_argument("--variant-env", action="append", default=[], metavar="NAME:VAR=VALUE",
                    help="another edgeguard row: the same build with one var more, e.g. "
                         "'propagation off:SENTRY_TRACE_PROPAGATION=false'")
    ap.add_argument("--hanging-flood-variant", action="append", default=[], metavar="NAME=DIR",
                    help="also run a flood-cap build (DIR) bound as EDGEGUARD_FLOOD to a FloodCap that "
                         "hangs; with --max-events-per-minute > 0 it asks it (its pages may show no id)")
    ap.add_argument("--max-events-per-minute", default="0", metavar="N",
                    help="edgeguard's SENTRY_MAX_EVENTS_PER_MINUTE (default 0: every 5xx reported, "
                         "like the JS SDKs); a cap drops events, so its 'events per 5xx' is low")
    ap.add_argument("--variant-no-report", action="store_true",
                    help="the variants do not report (experiments: a proxy-only floor); only their 200s are checked")
    ap.add_argument("--profile", type=int, default=0, metavar="SECONDS",
                    help="after the table, sample V8's CPU profiler in edgeguard's workerd for SECONDS "
                         "per scenario under load and print where the time goes")
    args = ap.parse_args()

    workerd = Path(os.environ.get("WORKERD_BIN", ROOT / "tools/node_modules/@cloudflare/workerd-linux-64/bin/workerd"))
    for tool in ["wrk", "nginx"]:
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            log(f"{tool} not found")
            return 1
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"

    state = args.state or Path(tempfile.mkdtemp(prefix="edgeguard-bench-"))
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o755)
    origin_port, sink_port = args.port_base, args.port_base + 1
    dsn = f"http://{DSN_KEY}@127.0.0.1:{sink_port}/42"
    origin_url = f"http://127.0.0.1:{origin_port}"

    targets = [
        Target("origin direct", origin_port, reports=False),
        Target("js-passthrough", args.port_base + 2, [args.bundles / "passthrough.js"], reports=False),
        Target("js-floor", args.port_base + 6, [args.bundles / "floor.js"]),
        Target("edgeguard", args.port_base + 3, edgeguard_modules(args.build)),
        Target("toucan-js", args.port_base + 4, [args.bundles / "toucan.js"]),
        Target("@sentry/cloudflare", args.port_base + 5, [args.bundles / "sentry-cloudflare.js"],
               flags=["nodejs_compat"]),
    ]
    for i, v in enumerate(args.variant):
        name, _, d = v.partition("=")
        targets.append(Target(name, args.port_base + 7 + i, edgeguard_modules(Path(d)),
                              reports=not args.variant_no_report))
    for j, v in enumerate(args.variant_env):
        name, _, setting = v.partition(":")
        var, _, value = setting.partition("=")
        if not name or not var:
            log(f"--variant-env {v!r}: expected NAME:VAR=VALUE")
            return 2
        targets.append(Target(name, args.port_base + 20 + j, edgeguard_modules(args.build),
                              extra_vars={var: value}))
    for i, v in enumerate(args.hanging_flood_variant):
        name, _, d = v.partition("=")
        # Its first /500 of a minute waits (after the page) for the object: no id on that page,
        # so the one-event check does not apply.
        targets.append(Target(name, args.port_base + 7 + len(args.variant) + i,
                              edgeguard_modules(Path(d)), reports=False, flood=True))
    if args.only:
        keep = set(args.only.split(",")) | {"js-passthrough"}
        targets = [t for t in targets if t.name in keep]
    global SCENARIOS
    SCENARIOS = [s for s in SCENARIOS if s[0] in args.scenarios.split(",")]
    for t in targets:
        for m in t.modules:
            if not m.is_file():
                log(f"missing {m}")
                return 1
    for p in [origin_port, sink_port] + [t.port for t in targets]:
        if not port_free(p):
            log(f"127.0.0.1:{p} is in use; pick another --port-base")
            return 1

    procs = Procs()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        log(f"state in {state}")
        write_origin_files(state / "www")
        for name in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]:
            (state / "nginx-tmp" / name).mkdir(parents=True, exist_ok=True)
        (state / "nginx.conf").write_text(nginx_config(state, origin_port, sink_port))
        ng = procs.start([nginx, "-c", str(state / "nginx.conf"), "-e", str(state / "nginx-error.log")],
                         state / "nginx.log")
        deadline = time.monotonic() + 10
        while port_free(origin_port) or port_free(sink_port):
            if ng.poll() is not None or time.monotonic() > deadline:
                log("nginx did not start:\n" + (state / "nginx-error.log").read_text(errors="replace"))
                return 1
            time.sleep(0.05)
        # The process that serves is nginx's worker (a child of the master we started).
        nginx_worker = int(subprocess.run(["pgrep", "-P", str(ng.pid)], capture_output=True, text=True)
                           .stdout.split()[0])

        # By default the flood cap is lifted (0 = none) so edgeguard, like the JS SDKs, sends one
        # event per 5xx: the comparison is the cost of reporting every error, not of dropping most
        # of them. --max-events-per-minute sets a cap (the shared flood cap's variant needs one).
        vars_ = {"ORIGIN_URL": origin_url, "SENTRY_DSN": dsn, "SENTRY_ENVIRONMENT": "bench",
                 "SENTRY_MAX_EVENTS_PER_MINUTE": args.max_events_per_minute}
        workers = [t for t in targets if not t.is_origin]
        for t in workers:
            write_worker_dir(t, state, {**vars_, **t.extra_vars})

        # Cold starts, interleaved; each cold process also streams 64 MiB once.
        cold: dict[str, list[float]] = {t.name: [] for t in workers}
        stream: dict[str, list[int]] = {t.name: [] for t in workers}
        log(f"cold starts: {args.cold_starts} per worker")
        for i in range(args.cold_starts):
            for t in workers[i % len(workers):] + workers[: i % len(workers)]:
                t0 = time.monotonic()
                p = start_worker(t, procs, workerd, state)
                t1 = wait_200(t.port, p)
                cold[t.name].append((t1 - t0) * 1000)
                rss0 = status_kib(p.pid, "VmRSS")
                n = drain(t.port, "/64m")
                if n != 64 << 20:
                    raise RuntimeError(f"{t.name}: /64m streamed {n} bytes")
                stream[t.name].append(status_kib(p.pid, "VmHWM") - rss0)
                procs.stop(p)

        for t in workers:
            t.proc = start_worker(t, procs, workerd, state)
            wait_200(t.port, t.proc)
        for t in targets:
            check_target(t, state)
        log("all targets answer correctly; warming up")

        lua = state / "report.lua"
        lua.write_text(WRK_LUA)
        for t in targets:
            for _, path, _ in SCENARIOS:
                wrk(t.port, path, args, lua, 1.0)
        sink_settled(state)

        runs: dict[tuple[str, str], Run] = {}
        total = args.rounds * len(SCENARIOS) * len(targets)
        n = 0
        for rnd in range(args.rounds):
            for scen, path, _ in SCENARIOS:
                k = (rnd + SCENARIOS.index((scen, path, _))) % len(targets)
                for t in targets[k:] + targets[:k]:
                    n += 1
                    pid = nginx_worker if t.is_origin else t.proc.pid
                    events0 = sink_settled(state, 2.0) if scen == "500" else 0
                    fails0 = origin_500s(state)
                    c0 = cpu_ticks(pid)
                    res = wrk(t.port, path, args, lua, args.duration)
                    c1 = cpu_ticks(pid)
                    r = runs.setdefault((t.name, scen), Run())
                    r.requests += res["requests"]
                    r.seconds += res["duration_us"] / 1e6
                    r.cpu_s += (c1 - c0) / CLK_TCK
                    cell_cpu_us = (c1 - c0) / CLK_TCK * 1e6 / max(res["requests"], 1)
                    r.cpu_rounds_us.append(cell_cpu_us)
                    r.p50_us.append(res["p50_us"])
                    r.p99_us.append(res["p99_us"])
                    r.status_errors += res["status_errors"]
                    r.socket_errors += res["socket_errors"]
                    if scen == "500":
                        r.events += sink_settled(state) - events0
                        time.sleep(0.2)  # the origin's log flushes every 100 ms
                        r.origin_500s += origin_500s(state) - fails0
                    log(f"[{n}/{total}] {t.name:20} {path:4} {res['requests'] / (res['duration_us'] / 1e6):9.0f} req/s "
                        f"p50 {res['p50_us'] / 1000:.2f} ms  CPU {cell_cpu_us:.0f} µs/req")

        # Latency without load: one connection, no queue of other visitors. As many
        # rounds as the load phase, interleaved and rotated the same way: a single pass let one
        # moment of drift decide a /500-vs-/1k gap (the same build measured +0.16 and +0.77 ms).
        # Two ways: back to back (wrk -c1: the next request can wait for what the worker does after
        # the previous response, e.g. build and send its event), and one at a time (PACE_S apart:
        # only the visitor's own wait, which is what "reporting after the response" promises).
        log(f"single-connection latency passes ({args.rounds} rounds × {args.idle_seconds} s per cell, "
            f"then /1k and /500 one at a time, {2 * args.idle_seconds} s per target)")
        for rnd in range(args.rounds):
            for i, (scen, path, _) in enumerate(SCENARIOS):
                k = (rnd + i) % len(targets)
                for t in targets[k:] + targets[:k]:
                    res = wrk(t.port, path, args, lua, args.idle_seconds, connections=1)
                    runs[(t.name, scen)].idle_p50_us.append(res["p50_us"])
            sink_settled(state)
            k = rnd % len(targets)
            for t in targets[k:] + targets[:k]:
                paced = paced_p50_us(t.port, [p for s_, p, _ in SCENARIOS if s_ in ("1k", "500")],
                                     2 * args.idle_seconds)
                for scen, path, _ in SCENARIOS:
                    if path in paced:
                        runs[(t.name, scen)].paced_p50_us.append(paced[path])
                sink_settled(state)

        table = render(targets, runs, cold, stream, args, {"workerd": args.workerd_version})
        print(table)
        if args.out:
            args.out.write_text(table + "\n")
        if args.profile:
            profile(targets, procs, workerd, state, args, lua, vars_)
        if args.state is None:
            shutil.rmtree(state, ignore_errors=True)
        return 0
    except Exception:
        log(f"failed; logs and configs kept in {state}")
        raise
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
