#!/usr/bin/env bash
# Builds the worker into build/index.js + build/index_bg.wasm (wrangler.toml's build command):
# cargo (nightly, panic=unwind) -> wasm-bindgen (glue) -> esbuild (src/entry.js + glue, one
# module) -> wasm-opt (size). Extra arguments go to cargo.
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEGUARD_ROOT"

# 1. Rust -> wasm. panic=unwind: nightly Rust rebuilds std with panic=unwind, so edgeguard can
#    catch a panic, answer that request with its page and an event, and keep serving the requests
#    in flight. These are the flags `worker-build --panic-unwind` used (kept in RUSTFLAGS, so
#    they apply to std too); any RUSTFLAGS of the caller's are kept. One more nightly option,
#    since std is rebuilt anyway: -Zfmt-debug=none, `{:?}` prints nothing (-3.8 KB gzip of
#    wasm, no CPU change measured). edgeguard formats nothing with Debug outside tests
#    (host-only); what is lost is the Debug part of a panic message raised inside std or a
#    dependency, e.g. the value in "called `Result::unwrap()` on an `Err` value: ...". Such a
#    panic is still caught, paged and reported, with its location. (std's optimize_for_size
#    feature was tried and left out: -1.6 KB gzip, but +12% CPU per proxied request.)
#    std and the dependencies are compiled from this machine's toolchain and cargo directories,
#    so their panic locations would carry those paths (/root/.rustup/..., /root/.cargo/...)
#    into the wasm and into a panic's event. They are remapped: std to /rustc/<commit>, what a
#    prebuilt std shows (`event.rs` marks such a frame not in-app), the crates to /cargo. The
#    same on every machine; edgeguard's own paths are already relative (src/...).
sysroot_src="$(rustc +nightly --print sysroot)/lib/rustlib/src/rust"
std_commit="$(rustc +nightly -vV | sed -n 's/^commit-hash: //p')"
remap="--remap-path-prefix=$sysroot_src=/rustc/${std_commit:-nightly}"
remap="$remap --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-Cpanic=unwind -Zfmt-debug=none $remap" \
  cargo +nightly build --lib --release --target wasm32-unknown-unknown \
  -Zbuild-std=std,panic_unwind "$@"

stage="$(mktemp -d "${TMPDIR:-/tmp}/edgeguard-build.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
"${WASM_BINDGEN_BIN:-wasm-bindgen}" target/wasm32-unknown-unknown/release/edgeguard.wasm \
  --out-dir "$stage" --out-name index --target module --no-typescript
# workerd's module loader gives a `.wasm` import as a WebAssembly.Module with a plain default
# import; the source-phase syntax is not needed (nor supported) there.
sed -i 's/^import source \([A-Za-z_$][A-Za-z0-9_$]*\) from /import \1 from /' "$stage/index.js"
grep -q '^import [A-Za-z_$][A-Za-z0-9_$]* from "./index_bg.wasm";' "$stage/index.js" \
  || { echo "build: wasm-bindgen's glue no longer imports ./index_bg.wasm as expected" >&2; exit 1; }

# 3. One module: the entry and the glue (with its inline-JS snippets), minified. The wasm stays
#    a separate file, imported by name. The glue names a snippet module once per group of
#    imports the wasm calls directly (no glue shim): the same key, the same module, so
#    esbuild's duplicate-key warning says nothing here.
cp src/entry.js "$stage/entry.js"
"${ESBUILD_BIN:-esbuild}" "$stage/entry.js" --bundle --format=esm --minify \
  --external:./index_bg.wasm --log-level=warning --log-override:duplicate-object-key=silent \
  --outfile="$stage/bundle.js"

# 4. Size pass. -Oz: smallest code; the hot path is I/O-bound. No names section (no
#    --debuginfo): it would ship ~16 KB gzip to every edge. The producers and target-features
#    sections are metadata no runtime reads. The feature list is the one worker-build used:
#    nothing newer than workerd supports, and exception handling is what the panic=unwind build
#    and wasm-bindgen's catch wrappers use.
# EDGEGUARD_WASM_NAMES=1 keeps the names section, for a CPU profile that names wasm functions
# (`scripts/bench.sh --profile`) or a size profile (`scripts/size-profile.sh`); never for a
# deploy.
names=()
[ "${EDGEGUARD_WASM_NAMES:-0}" = 1 ] && names=(--debuginfo)
"${WASM_OPT_BIN:-wasm-opt}" -Oz "${names[@]}" --strip-producers --strip-target-features \
  --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int \
  --enable-bulk-memory --enable-multivalue --enable-reference-types --enable-exception-handling \
  "$stage/index_bg.wasm" -o "$stage/index_bg.opt.wasm"

# Replace build/ only when everything above worked, and leave nothing else in it.
# EDGEGUARD_BUILD_DIR writes elsewhere (a profiling build beside the real one).
out="${EDGEGUARD_BUILD_DIR:-build}"
mkdir -p "$out"
rm -rf "$out/worker" "$out/snippets" "$out/package.json"
mv "$stage/bundle.js" "$out/index.js"
mv "$stage/index_bg.opt.wasm" "$out/index_bg.wasm"
