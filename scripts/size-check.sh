#!/usr/bin/env bash
# The upload-size budget: fails when build/index.js + build/index_bg.wasm grow past it. Bytes are
# deterministic for a given toolchain (gzip -9 -n: no name, no timestamp), so CI can run it after
# scripts/build.sh. Raise a budget only on purpose, in the same commit as the growth, saying why.
#
#   scripts/size-check.sh [BUILD_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build}"

# A regression guard under the 200 KB gzip limit issue 16 set (goal: 150 KB). On workers-rs
# (2026-12-03) the upload was 189,262 B gzip: worker, js-sys and the panic=unwind build are most
# of it (see README.md, "Upload size"). 2026-12-08: wasm-opt with the module's own features
# instead of worker-build's --all-features (-7.4 KB gzip, scripts/build.sh), then trace
# propagation and the edge hop's transaction (+11.4 KB gzip): 193,383 B gzip, wasm 477,284 B raw.
# These budgets were that size plus ~1%: growth past them must be a decision, made in the commit
# that grows it.
# 2026-12-08, issue 19: the browser SDK's tunnel (SENTRY_TUNNEL_PATH) measured +5,557 B gzip
# (198,942 B gzip, wasm 491,617 B raw; its target was ~5,000 B, see the commit). The budgets are
# that build plus a few bytes for the baked-in commit SHA, not +1%: 1% would pass the 200 KB limit.
GZIP_BUDGET=199000  # index.js + worker.js + index_bg.wasm, gzip -9, bytes
WASM_RAW_BUDGET=491700  # index_bg.wasm as uploaded, bytes

for f in index.js worker.js index_bg.wasm; do
  [ -f "$BUILD/$f" ] || { echo "size-check: $BUILD/$f not found (run scripts/build.sh)" >&2; exit 1; }
done
gz() { gzip -9 -n -c "$1" | wc -c; }
js_raw=$(cat "$BUILD/index.js" "$BUILD/worker.js" | wc -c); wasm_raw=$(wc -c <"$BUILD/index_bg.wasm")
js_gz=$(( $(gz "$BUILD/index.js") + $(gz "$BUILD/worker.js") )); wasm_gz=$(gz "$BUILD/index_bg.wasm")
total_gz=$((js_gz + wasm_gz))
printf 'size-check: index.js + worker.js %d B (gzip %d), index_bg.wasm %d B (gzip %d), total gzip %d B\n' \
  "$js_raw" "$js_gz" "$wasm_raw" "$wasm_gz" "$total_gz"
fail=0
if [ "$total_gz" -gt "$GZIP_BUDGET" ]; then
  echo "size-check: FAIL total gzip $total_gz B > budget $GZIP_BUDGET B" >&2; fail=1
fi
if [ "$wasm_raw" -gt "$WASM_RAW_BUDGET" ]; then
  echo "size-check: FAIL index_bg.wasm $wasm_raw B > budget $WASM_RAW_BUDGET B" >&2; fail=1
fi
[ "$fail" -eq 0 ] && echo "size-check: within budget (gzip $GZIP_BUDGET B, wasm $WASM_RAW_BUDGET B)"
exit "$fail"
