#!/usr/bin/env bash
# Builds the worker into build/index.js + build/index_bg.wasm (wrangler.toml's build command).
# --panic-unwind: nightly Rust rebuilds std with panic=unwind, so edgeguard can catch a panic,
# answer that request with its page and an event, and keep serving the requests in flight.
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEGUARD_ROOT"
exec worker-build --release --panic-unwind "$@"
