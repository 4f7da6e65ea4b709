#!/usr/bin/env bash
# Installs everything building, running and testing edgeguard needs, on a fresh machine of this
# kind. Idempotent: each step checks first and is skipped when already satisfied.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { echo "setup: $*" >&2; }

# Where `cargo install` puts binaries (and where scripts/env.sh looks for them).
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"

# 1. The wasm target for the stable toolchain.
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# 1b. The nightly toolchain for the panic=unwind build (`worker-build --panic-unwind` runs
#     `cargo +nightly` with -Zbuild-std): rust-src and the wasm32 target. Components are added to
#     the installed nightly, never a newer one downloaded, so a working machine is not silently
#     changed.
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  say "installing a nightly toolchain (for --panic-unwind)"
  rustup toolchain install nightly --profile minimal --component rust-src --target wasm32-unknown-unknown
fi
if ! rustup component list --toolchain nightly --installed | grep -qx rust-src; then
  rustup component add rust-src --toolchain nightly
fi
if ! rustup target list --toolchain nightly --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown --toolchain nightly
fi

# 1c. worker-build, pinned: the workers-rs build tool (wrangler.toml's build command runs it
#     through scripts/build.sh).
WORKER_BUILD_VERSION="0.8.5"
if ! "$CARGO_BIN/worker-build" --version 2>/dev/null | grep -q "$WORKER_BUILD_VERSION"; then
  say "installing worker-build $WORKER_BUILD_VERSION (about 3 minutes, once)"
  cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked
fi

# 2. wasm-bindgen-cli at exactly the version Cargo.lock pins: the glue it writes must match the
#    wasm-bindgen crate the wasm was built with.
WASM_BINDGEN_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
if [ -z "$WASM_BINDGEN_VERSION" ]; then
  say "cannot find wasm-bindgen's version in Cargo.lock"; exit 1
fi
if ! "$CARGO_BIN/wasm-bindgen" --version 2>/dev/null | grep -qx "wasm-bindgen $WASM_BINDGEN_VERSION"; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 8 minutes, once)"
  # --locked can name a dependency version the registry has since yanked; retry unlocked.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --locked \
    || cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

# 3. JS-side tools, pinned in tools/package-lock.json: Node 22 (wrangler needs >= 22.12; the
#    system has 20), wrangler, workerd, binaryen's wasm-opt (Debian's is too old), and esbuild
#    (wrangler's; worker-build bundles the glue with it).
stamp="tools/node_modules/.edgeguard-lock"
if [ ! -f "$stamp" ] || ! cmp -s tools/package-lock.json "$stamp"; then
  say "installing the npm tools into tools/node_modules"
  (cd tools && npm ci --no-audit --no-fund --loglevel=error)
  cp tools/package-lock.json "$stamp"
fi

# 4. Debian's Chromium for the browser tests (tests/e2e/browser.rs), and Korean fonts so the
#    Korean pages render as visitors see them, not as boxes.
if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi "Noto Sans CJK"; then
  say "installing chromium and fonts-noto-cjk (apt)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  # A fresh image has no package lists yet.
  $SUDO apt-get update -qq
  # --no-install-recommends: the recommends pull in desktop packages a headless test never uses.
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium fonts-noto-cjk
fi

say "ready"
