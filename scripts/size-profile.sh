#!/usr/bin/env bash
# Where the upload's bytes go: builds the worker once more with its names section (in a temporary
# directory; build/ is not touched) and prints the wasm's code grouped by owner (each edgeguard
# module, each crate), the sections' sizes raw and gzipped, and the largest functions. The names
# section itself is left out: the deployed build has none. A tool for deciding what to cut, not a
# check: scripts/size-check.sh is the budget CI holds.
#
#   scripts/size-profile.sh [--top N]     N: also list the N largest functions (default 15)
#
# The module is read here (a few lines of Python) rather than with twiggy: twiggy 0.8 cannot
# parse the compact import section wasm-bindgen 0.2.130 writes.
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

python3 - "$work/build/index_bg.wasm" "$top" <<'EOF'
"""Function bodies by owner. Code generated for an edgeguard module counts for it (a generic
instantiated with its types, a `catch_unwind` around one of its closures: LTO inlines into
those), else for the first crate its name names."""
import re
import sys
import zlib
from collections import Counter

data = open(sys.argv[1], "rb").read()
top = int(sys.argv[2])


def leb(b: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = b[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def name_at(b: bytes, i: int) -> tuple[str, int]:
    n, i = leb(b, i)
    return b[i:i + n].decode("utf-8", "replace"), i + n


def skip_import_type(b: bytes, kind: int, i: int) -> int:
    if kind == 0:  # function: a type index
        return leb(b, i)[1]
    if kind in (1, 2):  # table (a reference type first) or memory: limits
        i += kind == 1
        flags, i = leb(b, i)
        i = leb(b, i)[1]
        return leb(b, i)[1] if flags & 1 else i
    if kind == 3:  # global: value type, mutability
        return i + 2
    if kind == 4:  # tag: attribute, type index
        return leb(b, i + 1)[1]
    raise ValueError(f"import kind {kind}")


sections: list[tuple[int, int, int]] = []
i = 8
while i < len(data):
    sid = data[i]
    size, i = leb(data, i + 1)
    sections.append((sid, i, size))
    i += size

function_imports, bodies, names = 0, [], {}
for sid, off, size in sections:
    b = data[off:off + size]
    if sid == 2:  # imports, plain or in compact groups (module, "", 0x7f, count, entries)
        count, j = leb(b, 0)
        for _ in range(count):
            _, j = name_at(b, j)
            field, j = name_at(b, j)
            if field == "" and b[j] == 0x7F:
                entries, j = leb(b, j + 1)
                for _ in range(entries):
                    _, j = name_at(b, j)
                    kind = b[j]
                    function_imports += kind == 0
                    j = skip_import_type(b, kind, j + 1)
            else:
                kind = b[j]
                function_imports += kind == 0
                j = skip_import_type(b, kind, j + 1)
    elif sid == 10:  # code: a count, then each body with its size first
        count, j = leb(b, 0)
        for _ in range(count):
            n, k = leb(b, j)
            bodies.append(k - j + n)
            j = k + n
    elif sid == 0 and name_at(b, 0)[0] == "name":
        j = name_at(b, 0)[1]
        while j < len(b):
            sub = b[j]
            n, j = leb(b, j + 1)
            if sub == 1:
                count, k = leb(b, j)
                for _ in range(count):
                    index, k = leb(b, k)
                    names[index], k = name_at(b, k)
            j += n

OURS = re.compile(r"edgeguard\[[0-9a-f]+\]::(\w+)(?:::(\w+))?")
CRATE = re.compile(r"([a-z_][a-z0-9_]*)\[[0-9a-f]+\]::")


def owner(name: str) -> str:
    ours = OURS.search(name)
    if ours:
        module, sub = ours.groups()
        return f"edgeguard::{module}" + (f"::{sub}" if sub and sub[0].islower() else "")
    crate = CRATE.search(name)
    return crate.group(1) if crate else "wasm-bindgen glue and shims"


SECTION = {0: "custom (names)", 1: "types", 2: "imports", 3: "functions", 7: "exports",
           9: "elements", 10: "code", 11: "data"}
print("| section | raw B | gzip B |\n|---|--:|--:|")
for sid, off, size in sections:
    if size >= 1024:
        raw = data[off:off + size]
        print(f"| {SECTION.get(sid, sid)} | {size:,} | {len(zlib.compress(raw, 9)):,} |")

groups: Counter[str] = Counter()
named = []
for k, size in enumerate(bodies):
    name = names.get(function_imports + k, "?")
    groups[owner(name)] += size
    named.append((size, name))
total = sum(bodies)
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
