#!/usr/bin/env bash
# The edgeguard demo: a small real Django site (demo/shop: DEBUG = False, gunicorn, Sentry's SDK)
# behind the worker (wrangler dev), both reporting to a local Bugsink, which mails an alert for
# every new issue to a local SMTP mailbox (demo/mailbox.py). Everything listens on 127.0.0.1 only,
# and every run starts with an empty Bugsink, so each failure is a new issue with its mail.
#
#   scripts/demo.sh           start everything, print what to open and what appears, then stream the
#                             shop's, the worker's and the mailbox's lines; Enter stops/starts the shop
#                             (to see the 502 page); Ctrl-C stops all
#   scripts/demo.sh --check   start everything, walk every step unattended (stopping the shop for the
#                             502), verify pages, issues, events and mails (scripts/demo_check.py),
#                             stop, exit 0/1
#
# Ports (override with the environment variables of the same name):
#   8000 BUGSINK_PORT   8001 ORIGIN_PORT (the shop)   8025 MAIL_PORT   8787 WORKER_PORT
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$ROOT/.state"
BUGSINK_STATE="$STATE/bugsink"
LOGS="$STATE/demo"
MAIL_DIR="$LOGS/mail"
DEMO_VENV="$ROOT/tools/.venv-demo"

BUGSINK_PORT="${BUGSINK_PORT:-8000}"
ORIGIN_PORT="${ORIGIN_PORT:-8001}"
MAIL_PORT="${MAIL_PORT:-8025}"
WORKER_PORT="${WORKER_PORT:-8787}"
# The first `wrangler dev` runs the [build] command of wrangler.toml: a cold cargo build takes minutes.
WORKER_START_TIMEOUT="${WORKER_START_TIMEOUT:-900}"

MODE=run
case "${1:-}" in
  "") ;;
  --check) MODE=check ;;
  -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: scripts/demo.sh [--check]" >&2; exit 2 ;;
esac

# How long the worker waits for the shop before it gives up (/slow): shorter than the 30 s default, so
# a newcomer clicking /slow does not think the demo froze; shorter still in the unattended check.
if [ "$MODE" = check ]; then
  ORIGIN_TIMEOUT_MS="${ORIGIN_TIMEOUT_MS:-3000}"
else
  ORIGIN_TIMEOUT_MS="${ORIGIN_TIMEOUT_MS:-10000}"
fi
[[ "$ORIGIN_TIMEOUT_MS" =~ ^[0-9]+$ ]] || { echo "ORIGIN_TIMEOUT_MS must be a number" >&2; exit 2; }
# /slow sleeps this long: well past the worker's timeout.
SHOP_SLOW_SECONDS=$(((ORIGIN_TIMEOUT_MS + 999) / 1000 + 5))

say() { printf 'demo: %s\n' "$*" >&2; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------------------
# Process bookkeeping: every long-running thing we start is a process-group leader (setsid), so stopping
# it by its PID also stops its children (wrangler runs workerd and esbuild under it, gunicorn its worker).
# The shop is kept apart (APP_PID): the demo stops and starts it on purpose.
PIDS=()
NAMES=()
APP_PID=""
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
  if [ "${#PIDS[@]}" -gt 0 ] || [ -n "$APP_PID" ] || [ "$BUGSINK_STARTED" = 1 ]; then
    say "stopping everything the demo started"
  fi
  local i
  [ -z "$APP_PID" ] || stop_group "$APP_PID" shop
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

# start_bg NAME LOGFILE CMD...: run CMD in its own process group, output to LOGFILE; its PID in LAST_PID.
start_bg() {
  local name="$1" log="$2"
  shift 2
  setsid "$@" </dev/null >>"$log" 2>&1 &
  LAST_PID=$!
  echo "$LAST_PID" >"$LOGS/$name.pid"
}
# keep NAME: the last start_bg is stopped when the demo ends.
keep() {
  PIDS+=("$LAST_PID")
  NAMES+=("$1")
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_for_log NAME PID LOGFILE PATTERN TIMEOUT [FROM_BYTE]: until PATTERN shows up in LOGFILE (past its
# first FROM_BYTE bytes: a restart appends to the log of the previous run), or fail clearly.
wait_for_log() {
  local name="$1" pid="$2" log="$3" pattern="$4" timeout="$5" from="${6:-0}"
  local deadline=$((SECONDS + timeout)) next_note=$((SECONDS + 30))
  until tail -c "+$((from + 1))" "$log" 2>/dev/null | grep -q -- "$pattern"; do
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
    sleep 0.2
  done
}

# ---------------------------------------------------------------------------------------------------------
# Preflight: fixed ports make the banner predictable, so say clearly when one is taken.
for p in "$BUGSINK_PORT" "$ORIGIN_PORT" "$MAIL_PORT" "$WORKER_PORT"; do
  if port_open "$p"; then
    die "127.0.0.1:$p is already in use (another demo still running?); stop it first"
  fi
done

# (a) Toolchain: Rust (nightly too), wasm-bindgen, Node 22, esbuild and wrangler (idempotent, fast when done);
#     Bugsink's venv; the shop's and the mailbox's venv (demo/requirements.txt, pinned).
[ -x "$ROOT/scripts/setup.sh" ] || die "scripts/setup.sh is missing or not executable"
say "checking the toolchain (scripts/setup.sh)"
"$ROOT/scripts/setup.sh" >&2
"$ROOT/scripts/bugsink.sh" install
# shellcheck source=scripts/pyvenv.sh
source "$ROOT/scripts/pyvenv.sh"
pyvenv_sync "$DEMO_VENV" "$ROOT/demo/requirements.txt" || die "could not install demo/requirements.txt"
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

# A fresh start: an empty Bugsink (every failure below is a new issue, and mails its alert), an empty
# mailbox, the shop's database made again.
"$ROOT/scripts/bugsink.sh" stop "$BUGSINK_STATE" >/dev/null 2>&1 || true
rm -rf "$BUGSINK_STATE" "$LOGS"
mkdir -p "$LOGS" "$MAIL_DIR"

# (b) The mailbox, first: Bugsink mails inside the request that stores a new issue.
say "starting the SMTP mailbox on 127.0.0.1:$MAIL_PORT (mails kept in $MAIL_DIR)"
: >"$LOGS/mail.log"
start_bg mail "$LOGS/mail.log" "$DEMO_VENV/bin/python" "$ROOT/demo/mailbox.py" "$MAIL_PORT" "$MAIL_DIR"
keep mail
wait_for_log mailbox "$LAST_PID" "$LOGS/mail.log" "listening on" 15

# (c) The error tracker, mailing its alerts to the mailbox.
say "starting Bugsink on 127.0.0.1:$BUGSINK_PORT (state: $BUGSINK_STATE)"
BUGSINK_STARTED=1
BUGSINK_OUT="$("$ROOT/scripts/bugsink.sh" start "$BUGSINK_STATE" "$BUGSINK_PORT" "$MAIL_PORT")"
BUGSINK_URL="$(printf '%s\n' "$BUGSINK_OUT" | sed -n 's/^BUGSINK_URL=//p')"
BUGSINK_LOGIN="$(printf '%s\n' "$BUGSINK_OUT" | sed -n 's/^BUGSINK_LOGIN=//p')"
SENTRY_DSN="$(printf '%s\n' "$BUGSINK_OUT" | sed -n 's/^SENTRY_DSN=//p')"
[ -n "$SENTRY_DSN" ] || die "bugsink.sh start printed no SENTRY_DSN"
BUGSINK_PID="$(cat "$BUGSINK_STATE/bugsink.pid")"

# (d) The shop: migrate its SQLite database, then gunicorn (one worker process, threads for /slow).
#     Its SDK reports to the same Bugsink project as the worker (see README: one project, both sides).
export SENTRY_DSN SENTRY_ENVIRONMENT=demo SHOP_DB="$LOGS/shop.sqlite3" SHOP_SLOW_SECONDS
(cd "$ROOT/demo" && "$DEMO_VENV/bin/python" manage.py migrate --noinput) >"$LOGS/migrate.log" 2>&1 \
  || { tail -n 30 "$LOGS/migrate.log" >&2; die "the shop's migrations failed (log: $LOGS/migrate.log)"; }
: >"$LOGS/shop.log"
start_app() {
  local from
  from="$(wc -c <"$LOGS/shop.log")"
  start_bg shop "$LOGS/shop.log" "$DEMO_VENV/bin/gunicorn" shop.wsgi --chdir "$ROOT/demo" \
    --bind "127.0.0.1:$ORIGIN_PORT" --workers 1 --threads 8 --graceful-timeout 2 --no-control-socket \
    --access-logfile - --access-logformat '%(h)s "%(r)s" %(s)s'
  APP_PID="$LAST_PID"
  wait_for_log shop "$APP_PID" "$LOGS/shop.log" "Listening at: http://127.0.0.1:$ORIGIN_PORT" 30 "$from"
}
say "starting the shop (Django, gunicorn) on 127.0.0.1:$ORIGIN_PORT"
start_app

# (e) The worker in front of the shop, reporting to the same project. SENTRY_DEBUG: one log line per
#     event Sentry (here Bugsink) accepted.
W="http://127.0.0.1:$WORKER_PORT"
WORKER_LOG="$LOGS/worker.log"
: >"$WORKER_LOG"
say "starting the worker on $W (the first run builds it: this can take minutes)"
# Run from the repo root, where wrangler.toml is: it runs the [build] command wrangler.toml names.
start_bg worker "$WORKER_LOG" env -C "$ROOT" "$WRANGLER" dev \
  --ip 127.0.0.1 --port "$WORKER_PORT" \
  --var "ORIGIN_URL:http://127.0.0.1:$ORIGIN_PORT" --var "SENTRY_DSN:$SENTRY_DSN" \
  --var "SENTRY_ENVIRONMENT:demo" --var "ORIGIN_TIMEOUT_MS:$ORIGIN_TIMEOUT_MS" --var "SENTRY_DEBUG:true" \
  --persist-to "$STATE/wrangler-$WORKER_PORT" --show-interactive-dev-session=false
keep worker
wait_for_log "wrangler dev" "$LAST_PID" "$WORKER_LOG" "Ready on http://127.0.0.1:$WORKER_PORT" "$WORKER_START_TIMEOUT"

RELEASE="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || true)"

# ---------------------------------------------------------------------------------------------------------
if [ "$MODE" = check ]; then
  say "checking every step (scripts/demo_check.py)"
  "$ROOT/scripts/bugsink.sh" python "$BUGSINK_STATE" "$ROOT/scripts/demo_check.py" \
    --worker "$W" --bugsink "$BUGSINK_URL" --release "$RELEASE" --timeout-ms "$ORIGIN_TIMEOUT_MS" \
    --shop-pid "$APP_PID" --shop-port "$ORIGIN_PORT" --mail-dir "$MAIL_DIR" --worker-log "$WORKER_LOG" \
    || { say "logs: $LOGS"; exit 1; }
  exit 0
fi

# ---------------------------------------------------------------------------------------------------------
TIMEOUT_S=$((ORIGIN_TIMEOUT_MS / 1000))
cat <<EOF

  edgeguard demo is running
  =========================

  A Django shop (demo/shop: DEBUG = False, gunicorn, Sentry's SDK, release ${RELEASE:0:12}) on
  127.0.0.1:$ORIGIN_PORT, behind edgeguard on $W. Both report to Bugsink, one project:
      $BUGSINK_URL    login $BUGSINK_LOGIN
  and Bugsink mails an alert for each new issue to a local mailbox: the [mail] lines below.

  Open these in a browser, in order:

  1. $W/
     The shop's home page, passed through untouched (200). Nothing is reported.

  2. $W/subscribe
     The view inserts a duplicate row: an unhandled IntegrityError. Alone, Django would answer a
     white "Server Error (500)". Through edgeguard you get its page, "Something went wrong on our
     side", with an event ID to quote. In Bugsink, two new issues side by side:
       IntegrityError: UNIQUE constraint failed: shop_subscriber.email
           from the shop's SDK: the stack trace down to shop/views.py, line 26, in subscribe
       OriginStatus: Origin answered 500 Internal Server Error
           from edgeguard: the request, the route GET /subscribe, the event ID on the page
     and two mails: [mail] "IntegrityError: UNIQUE constraint failed: ..." in "edgeguard-demo" (New issue)
     Both events carry the release; they are not linked by a trace yet (edgeguard does not pass
     sentry-trace to the origin, so the shop's SDK starts its own trace).

  3. $W/report
     Works (200), and the view logs a handled error with logger.error: the SDK's logging integration
     reports it. New issue "Sales report skipped 1 order(s) with an unreadable total", one mail.
     edgeguard reports nothing: the visitor got the page.

  4. $W/maintenance
     The shop answers 503 with Retry-After: 120. edgeguard's 503 page, "The site is temporarily
     unavailable" (Retry-After kept); new issue
     "OriginStatus: Origin answered 503 Service Unavailable", one mail. No exception, so the SDK is silent.

  5. $W/slow
     The view takes ${SHOP_SLOW_SECONDS} s; edgeguard waits ${TIMEOUT_S} s, then shows its 504 page, "The site
     took too long to answer". New issue
     "OriginTimeout: Origin sent no response within $ORIGIN_TIMEOUT_MS ms", one mail: the shop cannot report
     this itself, it is still busy.

  6. Press Enter here to stop the shop, then open $W/ : edgeguard's 502 page, "We could not
     reach the site"; new issue "OriginUnreachable: ...", one mail. Press Enter again to start the shop.

  Every event carries release ${RELEASE:0:12}, the shop's and edgeguard's alike.
  Logs: $LOGS     Ctrl-C stops everything.

EOF

# Stream the worker's, the shop's and the mailbox's lines, each prefixed with its source.
# shellcheck disable=SC2016  # the inner script gets its values as arguments
start_bg logs /dev/stdout bash -c '
  tail -n 0 -F "$1" 2>/dev/null | sed -u "s/^/[worker] /" &
  tail -n 0 -F "$2" 2>/dev/null | sed -u "s/^/[shop]   /" &
  tail -n +1 -F "$3" 2>/dev/null | sed -u "s/^/[mail]   /" &
  wait' _ "$WORKER_LOG" "$LOGS/shop.log" "$LOGS/mail.log"
keep logs

INTERACTIVE=0
[ -t 0 ] && INTERACTIVE=1
APP_STOPPED=0
# Stay in the foreground; Enter toggles the shop; if a service dies, say so and stop the rest.
while true; do
  if [ "$INTERACTIVE" = 1 ]; then
    rc=0
    read -r -t 1 _ || rc=$?
    if [ "$rc" = 0 ]; then
      if [ "$APP_STOPPED" = 0 ]; then
        stop_group "$APP_PID" shop
        APP_STOPPED=1
        say "the shop is stopped: open $W/ for the 502 page; press Enter to start it again"
      else
        start_app
        APP_STOPPED=0
        say "the shop is running again"
      fi
    elif [ "$rc" -le 128 ]; then
      INTERACTIVE=0 # stdin closed: no more toggling
    fi
  else
    sleep 1
  fi
  for i in "${!PIDS[@]}"; do
    if ! is_running "${PIDS[$i]}"; then
      say "${NAMES[$i]} stopped unexpectedly (log: $LOGS)"
      exit 1
    fi
  done
  if [ "$APP_STOPPED" = 0 ] && ! is_running "$APP_PID"; then
    say "the shop stopped unexpectedly (log: $LOGS/shop.log)"
    exit 1
  fi
  if ! is_running "$BUGSINK_PID"; then
    say "Bugsink stopped unexpectedly (log: $BUGSINK_STATE/server.log)"
    exit 1
  fi
done
