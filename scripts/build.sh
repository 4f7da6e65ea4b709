#!/usr/bin/env bash
# Builds the worker into build/index.js + build/index_bg.wasm (wrangler.toml's build command).
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEGUARD_ROOT"
exec worker-build --release "$@"
