#!/usr/bin/env bash
# Where the upload's bytes go: builds the worker once more with its names section (in a temporary
# directory; build/ is not touched) and prints the wasm's code grouped by owner (each edgeguard
# module, each crate), the sections' sizes raw and gzipped, and the largest functions. The names
# section itself is left out: the deployed build has none. A tool for deciding what to cut, not a
# check: scripts/size-check.sh is the budget CI holds.
#
#   scripts/size-profile.sh [--top N]     N: also list the N largest functions (default 15)
#
# The module is read by benches/wasm.py rather than twiggy: twiggy 0.8 cannot parse the compact
# import section wasm-bindgen 0.2.130 writes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
top=15
case "${1:-}" in
  "") ;;
  --top) top="${2:?size-profile: --top needs a number}" ;;
  *) echo "size-profile: unknown argument '$1' (usage: scripts/size-profile.sh [--top N])" >&2; exit 2 ;;
esac

work="$(mktemp -d "${TMPDIR:-/tmp}/edgeguard-size.XXXXXX")"
trap 'rm -rf "$work"' EXIT
EDGEGUARD_WASM_NAMES=1 EDGEGUARD_BUILD_DIR="$work/build" scripts/build.sh >&2

PYTHONPATH=benches python3 - "$work/build/index_bg.wasm" "$top" <<'EOF'
"""Function bodies by owner. Code generated for an edgeguard module counts for it (a generic
instantiated with its types, a `catch_unwind` around one of its closures: LTO inlines into
those), else for the first crate its name names."""
import re
import sys
import zlib
from collections import Counter
from pathlib import Path

from wasm import Module  # benches/wasm.py

module = Module(Path(sys.argv[1]))
top = int(sys.argv[2])
OURS = re.compile(r"edgeguard\[[0-9a-f]+\]::(\w+)(?:::(\w+))?")
CRATE = re.compile(r"([a-z_][a-z0-9_]*)\[[0-9a-f]+\]::")


def owner(name: str) -> str:
    ours = OURS.search(name)
    if ours:
        part, sub = ours.groups()
        return f"edgeguard::{part}" + (f"::{sub}" if sub and sub[0].islower() else "")
    crate = CRATE.search(name)
    return crate.group(1) if crate else "wasm-bindgen glue and shims"


SECTION = {0: "custom (names)", 1: "types", 2: "imports", 3: "functions", 7: "exports",
           9: "elements", 10: "code", 11: "data"}
print("| section | raw B | gzip B |\n|---|--:|--:|")
for sid, off, size in module.sections:
    if size >= 1024:
        raw = module.data[off:off + size]
        print(f"| {SECTION.get(sid, sid)} | {size:,} | {len(zlib.compress(raw, 9)):,} |")

groups: Counter[str] = Counter()
named = []
for k, size in enumerate(module.bodies):
    name = module.names.get(module.function_imports + k, "?")
    groups[owner(name)] += size
    named.append((size, name))
total = sum(module.bodies)
ours = sum(v for k, v in groups.items() if k.startswith("edgeguard::"))
print(f"\nCode: {total:,} B raw; edgeguard's own {ours:,} B ({100 * ours / total:.0f}%), "
      "counting what LTO inlined into it.\n")
print("| owner | bytes | share |\n|---|--:|--:|")
for group, size in groups.most_common(25):
    print(f"| {group} | {size:,} | {100 * size / total:.1f}% |")
if top:
    print(f"\nThe {top} largest functions:\n\n| bytes | function |\n|--:|---|")
    for size, name in sorted(named, reverse=True)[:top]:
        short = re.sub(r"\[[0-9a-f]{16}\]", "", name)
        print(f"| {size:,} | `{short[:150]}` |")
EOF
