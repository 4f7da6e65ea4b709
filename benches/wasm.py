"""Just enough of the wasm binary format to say where a build's bytes and compile time go: its
sections, function bodies, function imports and the `name` section. Used by benches/bench.py
(the first request's compile trace) and scripts/size-profile.sh. Read here rather than with
twiggy, which cannot parse the compact import section wasm-bindgen 0.2.130 writes."""

from pathlib import Path


def leb128(b: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        x = b[i]
        i += 1
        n |= (x & 0x7F) << shift
        shift += 7
        if x < 0x80:
            return n, i


def name_at(b: bytes, i: int) -> tuple[str, int]:
    n, i = leb128(b, i)
    return b[i:i + n].decode("utf-8", "replace"), i + n


class Module:
    """A wasm module's sections, read once: `sections` as (id, offset, size), `bodies` (each
    function body's size, in order), `function_imports` (function indices before the first body)
    and `names` (function index -> name; empty without a `name` section)."""

    def __init__(self, path: Path):
        self.data = path.read_bytes()
        self.sections: list[tuple[int, int, int]] = []
        self.bodies: list[int] = []
        self.function_imports = 0
        self.names: dict[int, str] = {}
        i = 8
        while i < len(self.data):
            sid = self.data[i]
            size, i = leb128(self.data, i + 1)
            self.sections.append((sid, i, size))
            section = self.data[i:i + size]
            if sid == 2:
                self._imports(section)
            elif sid == 10:
                self._bodies(section)
            elif sid == 0 and name_at(section, 0)[0] == "name":
                self._names(section, name_at(section, 0)[1])
            i += size

    def _imports(self, b: bytes) -> None:
        """Plain imports, and compact groups (module, "", 0x7f, count, entries)."""
        count, j = leb128(b, 0)
        for _ in range(count):
            _, j = name_at(b, j)
            field, j = name_at(b, j)
            if field == "" and b[j] == 0x7F:
                entries, j = leb128(b, j + 1)
                for _ in range(entries):
                    _, j = name_at(b, j)
                    j = self._import_type(b, j)
            else:
                j = self._import_type(b, j)

    def _import_type(self, b: bytes, j: int) -> int:
        kind, j = b[j], j + 1
        if kind == 0:  # function: a type index
            self.function_imports += 1
            return leb128(b, j)[1]
        if kind in (1, 2):  # table (a reference type first) or memory: limits
            j += kind == 1
            flags, j = leb128(b, j)
            j = leb128(b, j)[1]
            return leb128(b, j)[1] if flags & 1 else j
        if kind == 3:  # global: value type, mutability
            return j + 2
        if kind == 4:  # tag: attribute, type index
            return leb128(b, j + 1)[1]
        raise ValueError(f"import kind {kind}")

    def _bodies(self, b: bytes) -> None:
        """A count, then each body with its size first."""
        count, j = leb128(b, 0)
        for _ in range(count):
            n, k = leb128(b, j)
            self.bodies.append(k - j + n)
            j = k + n

    def _names(self, b: bytes, j: int) -> None:
        """Subsection 1: function names."""
        while j < len(b):
            sub = b[j]
            n, j = leb128(b, j + 1)
            if sub == 1:
                count, k = leb128(b, j)
                for _ in range(count):
                    index, k = leb128(b, k)
                    self.names[index], k = name_at(b, k)
            j += n
