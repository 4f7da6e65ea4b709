#!/usr/bin/env bash
# The edgeguard demo: a local error tracker (Bugsink), a demo origin that fails on purpose, and the worker
# (wrangler dev) in front of it. Everything listens on 127.0.0.1 only.
#
#   scripts/demo.sh           start everything, print where to click, stream the worker's log; Ctrl-C stops all
#   scripts/demo.sh --check   start everything, request /ok, /error and the unreachable-origin worker once,
#                             check the statuses and that the /error event reached Bugsink, stop, exit 0/1
#
# Ports (override with the environment variables of the same name):
#   8000 Bugsink   8001 demo origin   8787 worker -> origin   8788 worker -> 8009, where nothing listens
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$ROOT/.state"
BUGSINK_STATE="$STATE/bugsink"
LOGS="$STATE/demo"

BUGSINK_PORT="${BUGSINK_PORT:-8000}"
ORIGIN_PORT="${ORIGIN_PORT:-8001}"
WORKER_PORT="${WORKER_PORT:-8787}"
DOWN_WORKER_PORT="${DOWN_WORKER_PORT:-8788}"
CLOSED_PORT="${CLOSED_PORT:-8009}"
# The first `wrangler dev` runs the [build] command of wrangler.toml: a cold cargo build takes minutes.
WORKER_START_TIMEOUT="${WORKER_START_TIMEOUT:-900}"
# How long the worker waits for the origin before it gives up (/hang): shorter than the 30 s default,
# so a newcomer clicking /hang does not think the demo froze.
ORIGIN_TIMEOUT_MS="${ORIGIN_TIMEOUT_MS:-10000}"

MODE=run
case "${1:-}" in
  "") ;;
  --check) MODE=check ;;
  -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: scripts/demo.sh [--check]" >&2; exit 2 ;;
esac

say() { printf 'demo: %s\n' "$*" >&2; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------------------
# Process bookkeeping: every long-running thing we start is a process-group leader (setsid), so stopping
# it by its PID also stops its children (wrangler runs workerd and esbuild under it).
PIDS=()
NAMES=()
BUGSINK_STARTED=0
CLEANED=0

is_running() {
  # A zombie still answers kill -0, so look at its state too.
  [ -e "/proc/$1" ] && ! awk '{ exit !($3 == "Z") }' "/proc/$1/stat" 2>/dev/null
}

stop_group() {
  local pid="$1" name="$2" i
  is_running "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do
    is_running "$pid" || break
    sleep 0.1
  done
  if is_running "$pid"; then
    say "$name (pid $pid) ignored TERM for 10 s, killing it"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  # Children that outlived their leader (the group id stays reserved while they exist).
  kill -KILL -- "-$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  set +e
  # If our output pipe is gone (e.g. `demo.sh | tee` after Ctrl-C), writing must not kill the cleanup.
  trap '' PIPE
  [ "$CLEANED" = 1 ] && return
  CLEANED=1
  trap - INT TERM
  if [ "${#PIDS[@]}" -gt 0 ] || [ "$BUGSINK_STARTED" = 1 ]; then
    say "stopping everything the demo started"
  fi
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    stop_group "${PIDS[$i]}" "${NAMES[$i]}"
  done
  if [ "$BUGSINK_STARTED" = 1 ]; then
    "$ROOT/scripts/bugsink.sh" stop "$BUGSINK_STATE" || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_bg NAME LOGFILE CMD...: run CMD in its own process group, output to LOGFILE.
start_bg() {
  local name="$1" log="$2"
  shift 2
  setsid "$@" </dev/null >>"$log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  NAMES+=("$name")
  echo "$pid" >"$LOGS/$name.pid"
  LAST_PID="$pid"
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_for_log NAME PID LOGFILE PATTERN TIMEOUT: until PATTERN shows up in LOGFILE, or fail clearly.
wait_for_log() {
  local name="$1" pid="$2" log="$3" pattern="$4" timeout="$5"
  local deadline=$((SECONDS + timeout)) next_note=$((SECONDS + 30))
  until grep -q -- "$pattern" "$log" 2>/dev/null; do
    if ! is_running "$pid"; then
      tail -n 40 "$log" >&2
      die "$name exited before it was ready (full log: $log)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 40 "$log" >&2
      die "$name was not ready within ${timeout}s (full log: $log)"
    fi
    if [ "$SECONDS" -ge "$next_note" ]; then
      say "still waiting for $name ($((SECONDS - deadline + timeout))s; log: $log)"
      next_note=$((SECONDS + 30))
    fi
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------------------------------------
# Preflight: fixed ports make the banner predictable, so say clearly when one is taken.
for p in "$BUGSINK_PORT" "$ORIGIN_PORT" "$WORKER_PORT" "$DOWN_WORKER_PORT"; do
  if port_open "$p"; then
    die "127.0.0.1:$p is already in use (another demo still running?); stop it first"
  fi
done
if port_open "$CLOSED_PORT"; then
  die "something listens on 127.0.0.1:$CLOSED_PORT, so the 'unreachable origin' demo would not be unreachable"
fi
mkdir -p "$LOGS"

# (a) Toolchain: Rust (nightly too), wasm-bindgen, Node 22, esbuild and wrangler (idempotent, fast when done).
[ -x "$ROOT/scripts/setup.sh" ] || die "scripts/setup.sh is missing or not executable"
say "checking the toolchain (scripts/setup.sh)"
"$ROOT/scripts/setup.sh" >&2
# env.sh is written for interactive shells too; don't let our strict mode trip over it.
set +u
# shellcheck source=/dev/null
source "$ROOT/scripts/env.sh"
set -u
if command -v wrangler >/dev/null 2>&1; then
  WRANGLER="$(command -v wrangler)"
else
  WRANGLER="$ROOT/tools/node_modules/.bin/wrangler"
fi
[ -x "$WRANGLER" ] || die "wrangler not found (expected on PATH after scripts/env.sh, or at $WRANGLER)"
# No telemetry, and no fetch of the Request.cf sample from the internet (miniflare falls back to a placeholder).
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false

# (b) The error tracker.
say "starting Bugsink on 127.0.0.1:$BUGSINK_PORT (state: $BUGSINK_STATE)"
BUGSINK_STARTED=1
BUGSINK_OUT="$("$ROOT/scripts/bugsink.sh" start "$BUGSINK_STATE" "$BUGSINK_PORT")"
BUGSINK_URL="$(printf '%s\n' "$BUGSINK_OUT" | sed -n 's/^BUGSINK_URL=//p')"
BUGSINK_LOGIN="$(printf '%s\n' "$BUGSINK_OUT" | sed -n 's/^BUGSINK_LOGIN=//p')"
SENTRY_DSN="$(printf '%s\n' "$BUGSINK_OUT" | sed -n 's/^SENTRY_DSN=//p')"
[ -n "$SENTRY_DSN" ] || die "bugsink.sh start printed no SENTRY_DSN"
BUGSINK_PID="$(cat "$BUGSINK_STATE/bugsink.pid")"

# (c) The origin.
say "starting the demo origin on 127.0.0.1:$ORIGIN_PORT"
: >"$LOGS/origin.log"
start_bg origin "$LOGS/origin.log" python3 "$ROOT/demo/origin.py" "$ORIGIN_PORT"
wait_for_log origin "$LAST_PID" "$LOGS/origin.log" "listening on" 15

# (d) The worker, twice: once in front of the origin, once in front of a port where nothing listens.
# The second starts after the first is ready, so the two never run the [build] command at the same time.
start_worker() {
  local port="$1" origin="$2" log="$LOGS/worker-$1.log"
  : >"$log"
  # Run from the repo root, where wrangler.toml is. Each instance keeps its local state apart.
  start_bg "worker-$port" "$log" env -C "$ROOT" "$WRANGLER" dev \
    --ip 127.0.0.1 --port "$port" \
    --var "ORIGIN_URL:$origin" --var "SENTRY_DSN:$SENTRY_DSN" --var "SENTRY_ENVIRONMENT:demo" \
    --var "ORIGIN_TIMEOUT_MS:$ORIGIN_TIMEOUT_MS" \
    --persist-to "$STATE/wrangler-$port" --show-interactive-dev-session=false
  wait_for_log "wrangler dev on :$port" "$LAST_PID" "$log" "Ready on http://127.0.0.1:$port" "$WORKER_START_TIMEOUT"
}
say "starting the worker on 127.0.0.1:$WORKER_PORT (the first run builds it: this can take minutes)"
start_worker "$WORKER_PORT" "http://127.0.0.1:$ORIGIN_PORT"
say "starting the second worker on 127.0.0.1:$DOWN_WORKER_PORT (its origin, 127.0.0.1:$CLOSED_PORT, is closed)"
start_worker "$DOWN_WORKER_PORT" "http://127.0.0.1:$CLOSED_PORT"

W="http://127.0.0.1:$WORKER_PORT"
D="http://127.0.0.1:$DOWN_WORKER_PORT"

# ---------------------------------------------------------------------------------------------------------
if [ "$MODE" = check ]; then
  PASSED=0
  FAILED=0
  ok() { PASSED=$((PASSED + 1)); printf 'ok    %s\n' "$*"; }
  bad() { FAILED=$((FAILED + 1)); printf 'FAIL  %s\n' "$*"; }

  # fetch URL: sets STATUS and HEADERS_FILE / BODY_FILE.
  HEADERS_FILE="$LOGS/check.headers"
  BODY_FILE="$LOGS/check.body"
  fetch() {
    STATUS="$(curl -sS --max-time 60 -o "$BODY_FILE" -D "$HEADERS_FILE" -w '%{http_code}' "$1" 2>>"$LOGS/check.curl.log" || true)"
  }
  expect_status() {
    local url="$1" want="$2"
    fetch "$url"
    if [ "$STATUS" = "$want" ]; then ok "GET $url -> $STATUS"; else bad "GET $url -> $STATUS (wanted $want)"; fi
  }

  expect_status "$W/ok" 200

  expect_status "$W/error" 500
  # The origin's debug page carries these markers: the visitor must never see them.
  if grep -q -e 'Traceback' -e 'DEMO-SECRET' "$BODY_FILE"; then
    bad "GET $W/error leaked the origin's debug page to the visitor"
  else
    ok "GET $W/error did not leak the origin's debug page"
  fi
  EVENT_ID="$(tr -d '\r' <"$HEADERS_FILE" | sed -n 's/^[Xx]-[Ss]entry-[Ii][Dd]:[[:space:]]*//p' | head -n 1)"

  expect_status "$D/" 502

  if [ -z "$EVENT_ID" ]; then
    bad "the /error response had no X-Sentry-ID header, so its event cannot be looked up"
  elif FOUND="$("$ROOT/scripts/bugsink.sh" has-event "$BUGSINK_STATE" "$EVENT_ID" 20)"; then
    ok "Bugsink: $FOUND"
  else
    bad "Bugsink: $FOUND"
  fi

  echo "demo check: $PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ] || { say "logs: $LOGS"; exit 1; }
  exit 0
fi

# ---------------------------------------------------------------------------------------------------------
cat <<EOF

  edgeguard demo is running
  =========================

  The worker, in front of the demo origin:   $W/
    $W/ok            the origin works: passed through untouched (200)
    $W/error         the origin crashes (500 + a debug traceback): you get edgeguard's page, never the traceback
    $W/unavailable   the origin answers 503 with Retry-After: 30
    $W/slow          the origin takes 2 s, still fine
    $W/hang          the origin accepts and never answers: after $((ORIGIN_TIMEOUT_MS / 1000)) s edgeguard gives up and shows its page

  The worker, in front of an origin that is down (nothing listens on 127.0.0.1:$CLOSED_PORT):
    $D/              any URL here shows the "origin unreachable" page (502)

  Every failure above is reported to Bugsink, the local error tracker:
    URL:    $BUGSINK_URL
    Login:  $BUGSINK_LOGIN
    DSN:    $SENTRY_DSN

  Logs: $LOGS   (the worker logs one line per event it sends; they follow below)
  Press Ctrl-C to stop everything.

EOF

# Stream the logs of both workers (prefixed with their port) and the origin (its lines say "origin:").
# shellcheck disable=SC2016  # the inner script gets its values as arguments
start_bg logs /dev/stdout bash -c '
  tail -n 0 -F "$1" | sed -u "s/^/[worker :$4] /" &
  tail -n 0 -F "$2" | sed -u "s/^/[worker :$5] /" &
  tail -n 0 -F "$3" &
  wait' _ "$LOGS/worker-$WORKER_PORT.log" "$LOGS/worker-$DOWN_WORKER_PORT.log" "$LOGS/origin.log" \
  "$WORKER_PORT" "$DOWN_WORKER_PORT"

# Stay in the foreground; if a service dies, say so and stop the rest.
while sleep 1; do
  for i in "${!PIDS[@]}"; do
    if ! is_running "${PIDS[$i]}"; then
      say "${NAMES[$i]} stopped unexpectedly (log: $LOGS)"
      exit 1
    fi
  done
  if ! is_running "$BUGSINK_PID"; then
    say "Bugsink stopped unexpectedly (log: $BUGSINK_STATE/server.log)"
    exit 1
  fi
done
