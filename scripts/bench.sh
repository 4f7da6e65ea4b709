#!/usr/bin/env bash
# The benchmark: edgeguard vs a no-op JS pass-through, a minimal hand-written reporter (the floor),
# toucan-js and @sentry/cloudflare, each under workerd started directly, behind one local nginx
# origin and Sentry sink, loaded with wrk on 127.0.0.1. Prints one Markdown table and writes it to
# benches/RESULTS.md. About 15 minutes.
#
#   scripts/bench.sh [bench.py options]     e.g. --duration 4 --rounds 1 for a quick look
#
# The shared flood cap made unavailable, against the local cap (README, "Shared flood cap"):
#   EDGEGUARD_BUILD_DIR=build-flood EDGEGUARD_FEATURES=flood-cap scripts/build.sh
#   BENCH_SKIP_BUILD=1 scripts/bench.sh --max-events-per-minute 10 --only edgeguard,hanging-flood \
#     --hanging-flood-variant hanging-flood=build-flood --out /tmp/flood-bench.md
#
# Environment: BENCH_SKIP_BUILD=1 uses build/ as it is instead of rebuilding the worker first.
# Not part of `cargo test`: it measures, it does not assert speed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { echo "bench.sh: $*" >&2; }

# The load generator and the origin/sink come from Debian.
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]} with apt-get"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh

# The JS workers: the SDKs pinned in benches/package-lock.json, bundled and minified like a careful
# deploy.
stamp="benches/node_modules/.edgeguard-lock"
if [ ! -f "$stamp" ] || ! cmp -s benches/package-lock.json "$stamp"; then
  say "installing the JS SDKs into benches/node_modules"
  (cd benches && npm ci --no-audit --no-fund --loglevel=error)
  cp benches/package-lock.json "$stamp"
fi
BUNDLES="$ROOT/target/bench-bundles"
mkdir -p "$BUNDLES"
for w in passthrough floor toucan sentry-cloudflare; do
  esbuild "benches/workers/$w.js" --bundle --format=esm --minify --platform=neutral \
    --conditions=workerd,worker,browser --main-fields=module,main --external:'node:*' \
    --outfile="$BUNDLES/$w.js" --log-level=warning
done

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ] || [ ! -f build/index_bg.wasm ]; then
  say "building the worker"
  scripts/build.sh >&2
fi

WORKERD_VERSION="$(node -p 'require("./tools/node_modules/workerd/package.json").version')"
exec python3 benches/bench.py --bundles "$BUNDLES" --workerd-version "$WORKERD_VERSION" \
  --out benches/RESULTS.md "$@"
