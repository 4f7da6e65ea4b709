#!/usr/bin/env bash
# Builds the worker into build/index.js + build/index_bg.wasm (wrangler.toml's build command).
# --panic-unwind: nightly Rust rebuilds std with panic=unwind, so edgeguard can catch a panic,
# answer that request with its page and an event, and keep serving the requests in flight.
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEGUARD_ROOT"
worker-build --release --panic-unwind "$@"

# Size pass, run here rather than by worker-build (off in Cargo.toml): worker-build always adds
# `--debuginfo`, which ships a names section (~16 KB gzip) to every edge. -Oz: smallest code; the
# hot path is I/O-bound. The producers and target-features sections are metadata no runtime
# reads. The feature list is worker-build's own: nothing newer than workerd supports, and
# exception handling is what the panic=unwind build and wasm-bindgen's catch wrappers use.
WASM_OPT="${WASM_OPT_BIN:-wasm-opt}"
"$WASM_OPT" -Oz --strip-producers --strip-target-features \
  --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int \
  --enable-bulk-memory --enable-multivalue --enable-reference-types --enable-exception-handling \
  build/index_bg.wasm -o build/index_bg.wasm.opt
mv build/index_bg.wasm.opt build/index_bg.wasm
