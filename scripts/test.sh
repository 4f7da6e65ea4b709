#!/usr/bin/env bash
# The one command that runs every test: installs what is missing, builds the worker, then runs
# the host unit tests and the end-to-end tests (real workerd, real local origin, strict Sentry
# sink, and a real Bugsink) through `cargo test`. Two builds: the default one (build/) and the
# flood-cap one (build-flood/, the shared flood cap's Durable Object). The Python venvs the tests
# run: Bugsink's, the demo's (its Django and sentry-sdk also serve the tracing tests' origin app)
# and Sentry's normaliser (tests/requirements.txt).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
"$ROOT/scripts/bugsink.sh" install
# shellcheck source=scripts/pyvenv.sh
source "$ROOT/scripts/pyvenv.sh"
pyvenv_sync "$ROOT/tools/.venv-demo" "$ROOT/demo/requirements.txt"
pyvenv_sync "$ROOT/tools/.venv-relay" "$ROOT/tests/requirements.txt"
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"
cd "$ROOT"
scripts/build.sh
# The flood-cap build (the FloodCap Durable Object) for tests/e2e/floodcap.rs.
flood_dir="${EDGEGUARD_E2E_FLOOD_BUILD_DIR:-build-flood}"
EDGEGUARD_BUILD_DIR="$flood_dir" EDGEGUARD_FEATURES=flood-cap scripts/build.sh
export EDGEGUARD_E2E_FLOOD_BUILD_DIR="$flood_dir"
cargo test --all-targets "$@"
