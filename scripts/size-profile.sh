#!/usr/bin/env bash
# Where the upload's bytes go: builds the worker once more with its names section (in a temporary
# directory; build/ is not touched), runs twiggy over it and prints the wasm's bytes grouped by
# owner: each edgeguard module, Rust's std (allocator, panics, formatting, the rest), the
# wasm-bindgen glue and the module's structure, and the static data (pages, strings). The names
# section itself is left out: the deployed build has none. A tool for deciding what to cut, not a
# check: scripts/size-check.sh is the budget CI holds.
#
#   scripts/size-profile.sh [--top N]     N: also list the N largest functions (default 15)
#
# Needs twiggy (`cargo install twiggy --locked`, about 2 minutes; installed here when missing).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
top=15
case "${1:-}" in
  "") ;;
  --top) top="${2:?size-profile: --top needs a number}" ;;
  *) echo "size-profile: unknown argument '$1' (usage: scripts/size-profile.sh [--top N])" >&2; exit 2 ;;
esac

if ! command -v twiggy >/dev/null 2>&1; then
  echo "size-profile: installing twiggy with cargo" >&2
  cargo install twiggy --locked >&2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/edgeguard-size.XXXXXX")"
trap 'rm -rf "$work"' EXIT
EDGEGUARD_WASM_NAMES=1 EDGEGUARD_BUILD_DIR="$work/build" scripts/build.sh >&2
twiggy top -n 1000000 --format csv "$work/build/index_bg.wasm" >"$work/items.csv"

python3 - "$work/items.csv" "$top" <<'EOF'
"""Groups twiggy's items by owner. Code generated for an edgeguard module counts for it: a
generic instantiated with its types, and a `catch_unwind` call around one of its closures, into
which LTO inlined the request entry and the report."""
import csv
import re
import sys
from collections import Counter

EDGE_PARTS = ("task", "transport", "js", "runtime")
OUR_PATH = re.compile(r"edgeguard\[[0-9a-f]+\]::(\w+)(?:::(\w+))?")


def owner(name: str) -> str | None:
    if name.startswith('"') or name.startswith("custom section 'name'"):
        return None  # the names section: only this profiling build has it
    if name.startswith("data segment") or name.startswith("data section"):
        return "static data (pages, CSS, strings, tables)"
    if re.search(r"dlmalloc|__rdl_|__rust_(alloc|dealloc|realloc)|__wbindgen_(malloc|realloc|free)", name):
        return "Rust std: allocator (dlmalloc)"
    # Anything generated for our code (a generic instantiated with our types or closures, the
    # catch_unwind around a closure of ours) is that module's.
    ours = OUR_PATH.search(name)
    if ours:
        module, sub = ours.group(1), ours.group(2)
        return f"edgeguard::{module}::{sub}" if module == "edge" and sub in EDGE_PARTS else f"edgeguard::{module}"
    if re.search(r"panicking|panic_unwind|__rust_try|backtrace|PanicHookInfo|panic::location", name):
        return "Rust std: panics"
    if "fmt" in name:
        return "Rust core: formatting"
    if re.search(r"wasm_bindgen|__wbindgen|__externref|externref shim|sp wrapper|^import |^export |"
                 r"^type|section headers|^elem|^table|^global|^memory|TagSection|wasm magic", name):
        return "wasm-bindgen glue, imports, exports, types"
    if "drop_glue" in name or "drop_in_place" in name:
        return "Rust core: drop glue"
    return "Rust core/alloc/std: other (iterators, str, slices, integers)"


rows = list(csv.DictReader(open(sys.argv[1], newline="")))
top = int(sys.argv[2])
groups: Counter[str] = Counter()
named: list[tuple[int, str]] = []
for row in rows:
    name, size = row["Name"], int(row["ShallowSize"])
    if name.startswith("Σ") or name.startswith("..."):
        continue
    group = owner(name)
    if group is None:
        continue
    groups[group] += size
    if not name.startswith(("data", "import", "export", "type")):
        named.append((size, name))

total = sum(groups.values())
ours = sum(v for k, v in groups.items() if k.startswith("edgeguard::"))
print(f"wasm without its names section: {total:,} B; edgeguard's own code {ours:,} B "
      f"({100 * ours / total:.0f}%). Code that LTO inlined counts for the function it was inlined "
      "into: edge's share holds much of the event building and page rendering.\n")
print("| owner | bytes | share |\n|---|--:|--:|")
for group, size in groups.most_common():
    print(f"| {group} | {size:,} | {100 * size / total:.1f}% |")
if top:
    print(f"\nThe {top} largest functions:\n\n| bytes | function |\n|--:|---|")
    for size, name in sorted(named, reverse=True)[:top]:
        short = re.sub(r"\[[0-9a-f]{16}\]", "", name)
        print(f"| {size:,} | `{short[:150]}` |")
EOF
