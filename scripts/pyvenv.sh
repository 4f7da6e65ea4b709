# Sourced by scripts that need a Python venv of pinned packages (scripts/bugsink.sh: the local
# Bugsink; scripts/demo.sh: the demo's Django app and mailbox). Each venv is created once, on a
# fresh machine too, from PyPI; nothing is installed into the system's Python.
#
#   pyvenv_find_python            prints a python3 >= 3.11 with the venv module (or fails)
#   pyvenv_ensure VENV            VENV exists and its interpreter works (recreated if it broke)
#   pyvenv_sync VENV REQUIREMENTS VENV has exactly what REQUIREMENTS pins (skipped when unchanged)
#
# Output goes to stderr; the caller's strict mode (set -euo pipefail) applies.

# Never prompt, never nag (CI has no stdin).
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

_pyvenv_log() { printf 'pyvenv: %s\n' "$*" >&2; }

# Bugsink 2.6.2 requires Python >= 3.11; so does nothing else here, but one floor keeps it simple.
pyvenv_find_python() {
  local c
  for c in "${PYTHON:-}" python3 python3.13 python3.12 python3.11; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 &&
       "$c" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; then
      command -v "$c"
      return 0
    fi
  done
  return 1
}

pyvenv_ensure() {
  local venv="$1" py
  # A venv whose interpreter vanished (python upgraded/moved) cannot be repaired: recreate it.
  if [ -d "$venv" ] && ! "$venv/bin/python" -c 'pass' >/dev/null 2>&1; then
    _pyvenv_log "venv at $venv is broken, recreating it"
    rm -rf "$venv"
  fi
  if [ ! -x "$venv/bin/python" ]; then
    py="$(pyvenv_find_python)" || {
      _pyvenv_log "need Python >= 3.11 with the venv module (set PYTHON=/path/to/python3.11)"
      return 1
    }
    _pyvenv_log "creating venv $venv (with $py)"
    mkdir -p "$(dirname "$venv")"
    "$py" -m venv "$venv"
  fi
}

pyvenv_sync() {
  local venv="$1" requirements="$2" stamp="$1/.edgeguard-requirements"
  pyvenv_ensure "$venv"
  # The stamp is a copy of the requirements last installed: unchanged file, nothing to do.
  if [ -f "$stamp" ] && cmp -s "$requirements" "$stamp"; then
    return 0
  fi
  _pyvenv_log "installing $requirements into $venv"
  "$venv/bin/python" -m pip install --quiet -r "$requirements" >&2
  cp "$requirements" "$stamp"
}
