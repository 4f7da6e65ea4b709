#!/usr/bin/env bash
# A local, throw-away Bugsink (a Sentry-compatible error tracker: Django + SQLite) for the demo and the
# end-to-end test. Everything it needs lives in a venv under tools/.venv and in one state directory.
#
#   scripts/bugsink.sh install
#   scripts/bugsink.sh start STATE_DIR PORT [SMTP_PORT]
#                                     prints BUGSINK_URL=, BUGSINK_LOGIN=, SENTRY_DSN= on stdout; with
#                                     SMTP_PORT, new-issue alerts are mailed to the login's address via
#                                     the SMTP server on 127.0.0.1:SMTP_PORT (else only logged)
#   scripts/bugsink.sh stop STATE_DIR
#   scripts/bugsink.sh has-event STATE_DIR EVENT_ID [TIMEOUT_SECONDS]
#   scripts/bugsink.sh python STATE_DIR SCRIPT [ARGS...]
#                                     runs SCRIPT with this instance's Django settings (for checks)
#
# Only stdout carries the three result lines of `start`; all chatter goes to stderr or STATE_DIR/*.log.
set -euo pipefail

BUGSINK_VERSION="2.6.2"
ADMIN_EMAIL="admin@example.com"
ADMIN_PASSWORD="edgeguard-demo"
PROJECT_NAME="edgeguard-demo"
START_TIMEOUT=60

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/tools/.venv"
VPY="$VENV/bin/python"

# shellcheck source=scripts/pyvenv.sh
source "$ROOT/scripts/pyvenv.sh"

log() { printf 'bugsink.sh: %s\n' "$*" >&2; }
die() { printf 'bugsink.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

installed_version() {
  "$VPY" -c 'import importlib.metadata as m; print(m.version("bugsink"))' 2>/dev/null || true
}

cmd_install() {
  # Fast path: the venv works and already has the pinned version.
  if [ -x "$VPY" ] && [ "$(installed_version)" = "$BUGSINK_VERSION" ]; then
    return 0
  fi
  pyvenv_ensure "$VENV" || die "cannot create the venv $VENV"
  log "installing bugsink==$BUGSINK_VERSION into $VENV"
  "$VPY" -m pip install --quiet "bugsink==$BUGSINK_VERSION" >&2
  [ "$(installed_version)" = "$BUGSINK_VERSION" ] || die "bugsink $BUGSINK_VERSION did not install"
}

# Run Django things against the instance in $STATE (its conf is $STATE/bugsink_conf.py).
manage() {
  (cd "$STATE" && PYTHONPATH="$STATE" DJANGO_SETTINGS_MODULE=bugsink_conf "$VENV/bin/bugsink-manage" "$@")
}
django_py() {
  # Python with Django set up for this instance; the script comes on stdin, its arguments follow.
  (cd "$STATE" && PYTHONPATH="$STATE" DJANGO_SETTINGS_MODULE=bugsink_conf "$VPY" - "$@")
}

set_state() {
  [ -n "${1:-}" ] || usage
  mkdir -p "$1"
  STATE="$(cd "$1" && pwd)"
}

# pid_alive PIDFILE: true if the file names a live process that is one of ours (guards against PID reuse).
pid_alive() {
  local pid
  [ -f "$1" ] || return 1
  pid="$(cat "$1" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'bugsink' || return 1
}

port_in_use() {
  "$VPY" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
EOF
}

write_conf() {
  local port="$1" smtp_port="$2" conf="$STATE/bugsink_conf.py"
  # The generated file holds the SECRET_KEY: create it once, keep it across restarts.
  if [ ! -f "$conf" ]; then
    (cd "$STATE" && "$VENV/bin/bugsink-create-conf" --template=local --host=127.0.0.1 --port="$port" \
      --output-file="$conf" >&2)
  fi
  # Our overrides go in a marked block at the end; it is rewritten on every start (the port may change).
  sed -i '/^# >>> edgeguard overrides/,$d' "$conf"
  cat >>"$conf" <<EOF
# >>> edgeguard overrides (rewritten by scripts/bugsink.sh start; edit above this line only)
import os as _os
_STATE_DIR = _os.path.dirname(_os.path.abspath(__file__))
# Everything of this instance lives in its state dir, not in the current directory or /tmp.
DATABASES["default"]["NAME"] = _os.path.join(_STATE_DIR, "db.sqlite3")
DATABASES["default"]["TEST"]["NAME"] = _os.path.join(_STATE_DIR, "test.sqlite3")
DATABASES["snappea"]["NAME"] = _os.path.join(_STATE_DIR, "snappea.sqlite3")
# Digest every event inside the ingest request itself (the local template's setting, restated so it is
# obvious): no separate snappea worker process, and an event is in an issue once the POST returns.
SNAPPEA["TASK_ALWAYS_EAGER"] = True
SNAPPEA["WAKEUP_CALLS_DIR"] = _os.path.join(_STATE_DIR, "snappea.wakeup")
BUGSINK.update({
    # The DSN is built from BASE_URL: it must be the address the worker reaches.
    "BASE_URL": "http://127.0.0.1:$port",
    "INGEST_STORE_BASE_DIR": _os.path.join(_STATE_DIR, "ingestion"),
    # No network here, and with eager tasks a phone-home would block a request until it times out.
    "PHONEHOME": False,
})
EOF
  if [ -n "$smtp_port" ]; then
    cat >>"$conf" <<EOF
# Alerts (a mail per new issue, to each member with alerts on: the login's address) go to the local
# SMTP server on this port, plain SMTP on loopback. With eager tasks a mail is sent inside the ingest
# request that made the issue, so that server must be up before events arrive.
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = $smtp_port
EMAIL_USE_TLS = EMAIL_USE_SSL = False
SERVER_EMAIL = DEFAULT_FROM_EMAIL = "Bugsink <bugsink@example.com>"
EOF
  fi
}

setup_instance() {
  log "migrating $STATE (log: $STATE/setup.log)"
  {
    manage migrate --no-input
    manage migrate snappea --database=snappea --no-input
  } >>"$STATE/setup.log" 2>&1 || { tail -n 30 "$STATE/setup.log" >&2; die "migrations failed"; }

  # Idempotent: creates the admin, a team and the project if missing, then prints the project's DSN.
  django_py "$ADMIN_EMAIL" "$ADMIN_PASSWORD" "$PROJECT_NAME" 2>>"$STATE/setup.log" <<'EOF' >"$STATE/dsn.txt"
import sys
import django
django.setup()
from django.contrib.auth import get_user_model
from teams.models import Team, TeamMembership, TeamRole
from projects.models import Project, ProjectMembership, ProjectRole

email, password, project_name = sys.argv[1:4]
User = get_user_model()
user = User.objects.filter(username=email).first()
if user is None:
    user = User.objects.create_superuser(username=email, email=email, password=password)
else:
    # Reused state dir: make sure the documented login still works.
    user.set_password(password)
    user.is_superuser = user.is_staff = user.is_active = True
    user.save()

team, _ = Team.objects.get_or_create(name=project_name)
TeamMembership.objects.get_or_create(team=team, user=user, defaults={"role": TeamRole.ADMIN, "accepted": True})
project = Project.objects.filter(name=project_name, is_deleted=False).first()
if project is None:
    project = Project.objects.create(name=project_name, team=team)
ProjectMembership.objects.get_or_create(
    project=project, user=user, defaults={"role": ProjectRole.ADMIN, "accepted": True})
print(project.dsn)
EOF
  [ -s "$STATE/dsn.txt" ] || { tail -n 30 "$STATE/setup.log" >&2; die "could not create the project"; }
}

cmd_stop() {
  set_state "${1:-}"
  local pidfile="$STATE/bugsink.pid" pid
  if ! pid_alive "$pidfile"; then
    rm -f "$pidfile"
    log "nothing running for $STATE"
    return 0
  fi
  pid="$(cat "$pidfile")"
  kill -TERM "$pid" 2>/dev/null || true
  # Wait up to 10 s for a clean exit, then insist.
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "bugsink (pid $pid) ignored TERM, sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$pidfile"
  log "stopped bugsink (pid $pid)"
}

cmd_start() {
  [ $# -eq 2 ] || [ $# -eq 3 ] || usage
  local port="$2" smtp_port="${3:-}"
  [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
  [ -z "$smtp_port" ] || [[ "$smtp_port" =~ ^[0-9]+$ ]] || die "SMTP_PORT must be a number, got '$smtp_port'"
  cmd_install
  set_state "$1"

  # One server per state dir: restart rather than leave a stale one around.
  if pid_alive "$STATE/bugsink.pid"; then
    log "an instance is already running for $STATE; restarting it"
    cmd_stop "$STATE"
  fi
  if port_in_use "$port"; then
    die "127.0.0.1:$port is already in use by another process"
  fi

  write_conf "$port" "$smtp_port"
  setup_instance
  local dsn url="http://127.0.0.1:$port"
  dsn="$(cat "$STATE/dsn.txt")"

  # --noreload: a single process, so the recorded PID is the server itself. setsid: its own session, so a
  # Ctrl-C in the caller's terminal does not kill it behind the caller's back; `stop` does that.
  log "starting bugsink on $url (log: $STATE/server.log)"
  (
    cd "$STATE"
    export PYTHONPATH="$STATE" DJANGO_SETTINGS_MODULE=bugsink_conf
    exec setsid "$VENV/bin/bugsink-manage" runserver --noreload "127.0.0.1:$port"
  ) </dev/null >>"$STATE/server.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$STATE/bugsink.pid"

  local deadline=$((SECONDS + START_TIMEOUT))
  # Any HTTP answer counts (the front page redirects to the login page).
  until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url/" 2>/dev/null || true)" != "000" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$STATE/server.log" >&2
      rm -f "$STATE/bugsink.pid"
      die "bugsink exited during startup (see $STATE/server.log)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 30 "$STATE/server.log" >&2
      cmd_stop "$STATE"
      die "bugsink did not answer on $url within ${START_TIMEOUT}s"
    fi
    sleep 0.3
  done
  log "bugsink is up (pid $pid)"

  echo "BUGSINK_URL=$url"
  echo "BUGSINK_LOGIN=$ADMIN_EMAIL / $ADMIN_PASSWORD"
  echo "SENTRY_DSN=$dsn"
}

cmd_has_event() {
  [ $# -ge 2 ] && [ $# -le 3 ] || usage
  set_state "$1"
  local event_id="$2" timeout="${3:-20}"
  [[ "$timeout" =~ ^[0-9]+$ ]] || die "TIMEOUT_SECONDS must be a whole number, got '$timeout'"
  [ -f "$STATE/bugsink_conf.py" ] || die "no bugsink instance in $STATE (run start first)"
  [ -x "$VPY" ] || die "bugsink is not installed (run install first)"

  # One Python process polls the DB (cheap) rather than starting Django once per try.
  django_py "$event_id" "$timeout" <<'EOF'
import sys, time, uuid
import django
django.setup()
from django.db import close_old_connections
from events.models import Event

raw, timeout = sys.argv[1], float(sys.argv[2])
try:
    wanted = uuid.UUID(raw.strip())  # accepts 32 hex and the dashed form alike
except ValueError:
    print(f"not a valid event id: {raw!r}")
    sys.exit(1)

deadline = time.monotonic() + timeout
while True:
    close_old_connections()  # see rows committed by the server since the last try
    event = Event.objects.filter(event_id=wanted).select_related("issue", "project").first()
    if event is not None:
        issue = event.issue
        print(f"found event {wanted.hex} in issue {issue.friendly_id()} ({issue.id}): {issue.title()} "
              f"[project {event.project.name}]")
        sys.exit(0)
    if time.monotonic() >= deadline:
        break
    time.sleep(0.5)

total = Event.objects.count()
print(f"event {wanted.hex} not found after {timeout:g}s ({total} event(s) stored in total)")
sys.exit(1)
EOF
}

cmd_python() {
  [ $# -ge 2 ] || usage
  set_state "$1"
  local script
  script="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
  shift 2
  [ -f "$STATE/bugsink_conf.py" ] || die "no bugsink instance in $STATE (run start first)"
  [ -x "$VPY" ] || die "bugsink is not installed (run install first)"
  (cd "$STATE" && PYTHONPATH="$STATE" DJANGO_SETTINGS_MODULE=bugsink_conf "$VPY" "$script" "$@")
}

main() {
  [ $# -ge 1 ] || usage
  local sub="$1"
  shift
  case "$sub" in
    install) [ $# -eq 0 ] || usage; cmd_install ;;
    start) cmd_start "$@" ;;
    stop) [ $# -eq 1 ] || usage; cmd_stop "$1" ;;
    has-event) cmd_has_event "$@" ;;
    python) cmd_python "$@" ;;
    -h|--help|help) usage ;;
    *) usage ;;
  esac
}

main "$@"
