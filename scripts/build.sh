#!/usr/bin/env bash
# Builds the worker into build/index.js + build/index_bg.wasm: wrangler.toml's build command.
# It is `worker-build --release --panic-unwind` (pinned in scripts/setup.sh) with the project's
# pinned tools (scripts/env.sh: WASM_BINDGEN_BIN, WASM_OPT_BIN, ESBUILD_BIN), so nothing is
# downloaded at build time. Extra arguments go to worker-build.
#
# --panic-unwind: worker-build runs `cargo +nightly build -Zbuild-std=std,panic_unwind` with
# `-Cpanic=unwind`, so a panic unwinds only the request that raised it; edgeguard catches it and
# answers with its page and an event, and the requests in flight carry on.
#
# RUSTFLAGS (worker-build adds its own to these): std and the crates are compiled from this
# machine's toolchain and cargo directories, so their panic locations would carry those paths
# (/root/.rustup/..., /root/.cargo/...) into the wasm and into a panic's event. They are
# remapped: std to /rustc/<commit>, what a prebuilt std shows (the event marks such a frame not
# in-app), the crates to /cargo. edgeguard's own paths are already relative (src/...).
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEGUARD_ROOT"

sysroot_src="$(rustc +nightly --print sysroot)/lib/rustlib/src/rust"
std_commit="$(rustc +nightly -vV | sed -n 's/^commit-hash: //p')"
remap="--remap-path-prefix=$sysroot_src=/rustc/${std_commit:-nightly}"
remap="$remap --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }$remap" \
  worker-build --release --panic-unwind "$@"

# worker-build's module becomes build/worker.js, behind src/edge/entry.js (build/index.js), which
# answers the requests a trap of the wasm instance would leave hanging (see that file).
# worker-build's other outputs (a legacy alias, a package.json) are not loaded by anything.
mv build/index.js build/worker.js
cp src/edge/entry.js build/index.js
rm -rf build/worker build/package.json
