"""pinchpoint's import graph, read from the source: its circles, and private names imported across
modules.

    .venv/bin/python tools/import_graph.py [-v]

Every ``import`` and ``from ... import`` counts, those inside functions too (an import moved into a
function to dodge a circle is still a circle of the design). A name is private when it starts with
one underscore; a package's private modules imported by its own modules are listed apart, as they
are the package's to share. Exits 1 when there is a circle.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def modules() -> dict[str, Path]:
    """Module name to file, for every module under ``src``."""
    out = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def graph(mods: dict[str, Path]) -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """Each module's imported pinchpoint modules, and every private name imported across modules
    (importer, module, name)."""
    edges: dict[str, set[str]] = defaultdict(set)
    private = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                edges[name].update(a.name for a in node.names if a.name in mods)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = [*parts[: len(parts) - node.level + 1], node.module or ""]
                    source = ".".join(p for p in base if p)
                else:
                    source = node.module or ""
                if not source.startswith("pinchpoint"):
                    continue
                for alias in node.names:
                    full = f"{source}.{alias.name}"
                    target = full if full in mods else source
                    if target in mods:
                        edges[name].add(target)
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        private.append((name, source, alias.name))
    return edges, private


def circles(edges: dict[str, set[str]], names: list[str]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in names:
        if v not in index:
            visit(v)
    return found


def main() -> int:
    mods = modules()
    edges, private = graph(mods)
    found = circles(edges, sorted(mods))
    own = [(m, s, n) for m, s, n in private if f"{s}.{n}" in mods and m.startswith(s + ".")]
    across = [p for p in private if p not in own]
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in mods.values())
    print(f"{len(mods)} modules, {lines} lines")
    print(f"import circles: {len(found)}")
    for component in found:
        print("  " + " <-> ".join(component))
    print(f"private names imported across modules: {len(across)}")
    print(f"private modules imported inside their own package: {len(own)}")
    if "-v" in sys.argv:
        for importer, source, name in across + own:
            print(f"  {importer}: from {source} import {name}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
