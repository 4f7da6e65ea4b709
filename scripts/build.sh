#!/usr/bin/env bash
# Builds the worker into build/index.js + build/index_bg.wasm: wrangler.toml's build command.
# It is `worker-build --release --panic-unwind` (pinned in scripts/setup.sh) with the project's
# pinned tools (scripts/env.sh: WASM_BINDGEN_BIN, WASM_OPT_BIN, ESBUILD_BIN), so nothing is
# downloaded at build time. Extra arguments go to worker-build.
#
# EDGEGUARD_FEATURES: Cargo features to build with, comma-separated. `flood-cap` adds the
# FloodCap Durable Object class (the flood cap shared by every isolate; README "Shared flood
# cap"), exported from build/index.js for wrangler.toml's EDGEGUARD_FLOOD binding.
#
# --panic-unwind: worker-build runs `cargo +nightly build -Zbuild-std=std,panic_unwind` with
# `-Cpanic=unwind`, so a panic unwinds only the request that raised it; edgeguard catches it and
# answers with its page and an event, and the requests in flight carry on.
#
# RUSTFLAGS (worker-build adds its own to these):
# - -Zfmt-debug=none (nightly, and std is rebuilt anyway): `{:?}` prints nothing. edgeguard
#   formats nothing with Debug outside host tests; what is lost is the Debug part of a panic
#   message raised inside std or a dependency (the value in "called `Result::unwrap()` on an
#   `Err` value: ..."). Such a panic is still caught, paged and reported, with its location.
#   Measured: -3.0 KB gzip of wasm.
# - path remapping: std and the crates are compiled from this
# machine's toolchain and cargo directories, so their panic locations would carry those paths
# (/root/.rustup/..., /root/.cargo/...) into the wasm and into a panic's event. They are
# remapped: std to /rustc/<commit>, what a prebuilt std shows (the event marks such a frame not
# in-app), the crates to /cargo. edgeguard's own paths are already relative (src/...).
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEGUARD_ROOT"

out="${EDGEGUARD_BUILD_DIR:-build}"
sysroot_src="$(rustc +nightly --print sysroot)/lib/rustlib/src/rust"
std_commit="$(rustc +nightly -vV | sed -n 's/^commit-hash: //p')"
remap="--remap-path-prefix=$sysroot_src=/rustc/${std_commit:-nightly}"
remap="$remap --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-Zfmt-debug=none $remap" \
  RUSTUP_TOOLCHAIN=nightly worker-build --release --panic-unwind --out-dir "$out" "$@" \
  ${EDGEGUARD_FEATURES:+--features "$EDGEGUARD_FEATURES"}

# wasm-opt -Oz runs here, not in worker-build (Cargo.toml sets `wasm-opt = false` for it):
# worker-build adds `--all-features`, and binaryen then optimises for every proposal at once
# (GC, compact imports, ...). With only the features the module itself declares (rustc's and
# wasm-bindgen's: what workerd runs), the same wasm came out 7.4 KB gzip smaller (187,769 B ->
# 180,309 B; measured 2026-12-08, binaryen 132, on the build of that day).
# The names section (function names in a trap's stack trace in the log) is stripped as well:
# 26.8 KB gzip (192 KB raw) shipped to every edge location, for a log line that the panic hook's
# own message and location already make readable. EDGEGUARD_WASM_NAMES=1 keeps it (for a CPU or
# size profile that names functions); never for a deploy.
if [ "${EDGEGUARD_WASM_NAMES:-0}" = 1 ]; then
  keep=(--debuginfo)
else
  keep=(--strip-debug --strip-producers)
fi
"${WASM_OPT_BIN:-wasm-opt}" -Oz "${keep[@]}" "$out/index_bg.wasm" -o "$out/index_bg.wasm"
# worker-build's module becomes build/worker.js, behind src/edge/entry.js (build/index.js), which
# answers the requests a trap of the wasm instance would leave hanging (see that file).
# worker-build's other outputs (a legacy alias, a package.json) are not loaded by anything.
mv "$out/index.js" "$out/worker.js"
cp src/edge/entry.js "$out/index.js"
# A Durable Object class (FloodCap, with the flood-cap feature) must be a named export of the
# module the runtime loads: worker-build's module exports it (bundled by esbuild as
# `export{... as FloodCap ...}`), and index.js re-exports it. Only the Durable Object classes:
# worker.js also exports workers-rs's own wasm-bindgen classes (R2Range, ...), which the runtime
# has no use for.
if grep -qE "(as|const) FloodCap\b" "$out/worker.js"; then
  echo 'export { FloodCap } from "./worker.js";' >>"$out/index.js"
fi
if [[ ",${EDGEGUARD_FEATURES:-}," == *,flood-cap,* ]] && ! grep -q "export { FloodCap }" "$out/index.js"; then
  echo "build.sh: the flood-cap build does not export FloodCap from $out/index.js" >&2
  exit 1
fi
rm -rf "$out/worker" "$out/package.json"
