"""Fail on an import cycle among ``pipeline``'s modules.

Walks every ``.py`` file under ``pipeline/`` with ``ast`` (nothing is imported), takes each
``import`` and ``from ... import`` of a ``pipeline`` module, at the top of a module or inside
a function alike (a lazy import is still a dependency), and looks for cycles in that graph.
``from pipeline.x import y`` depends on ``pipeline.x.y`` when that is a module, else on
``pipeline.x``; a package's ``__init__`` is its own node (importing ``pipeline.a.b`` does not
count as depending on ``pipeline.a``'s face). Imports under ``if TYPE_CHECKING:`` are left out:
they never run.

    python scripts/check_imports.py [ROOT]    # ROOT: the repository (default: this one)

Prints each cycle found and exits 1, or prints the module count and exits 0.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "pipeline"


def module_names(root: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` of every module of the package under ``root``."""
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                skip.update(id(n) for n in ast.walk(inner))
    return skip


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that module ``name`` (file ``path``) imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skip = _type_checking_nodes(tree)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[:len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            if base != PACKAGE and not base.startswith(PACKAGE + "."):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    found.discard(name)
    return {m for m in found if m in modules}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted.

    >>> find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    [['a', 'b', 'c']]
    >>> find_cycles({"a": {"b"}, "b": set()})
    []
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
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
                components.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(components)


def _path_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth first)."""
    start = min(component)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [v]  # v, its parent, ..., start
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    return sorted(component)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path(__file__).resolve().parents[1]
    modules = module_names(root)
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    cycles = find_cycles(graph)
    for component in cycles:
        print(f"import cycle among {len(component)} modules: "
              + " -> ".join(_path_in(graph, set(component))))
        print("  all of them: " + ", ".join(component))
    if cycles:
        return 1
    print(f"no import cycle among {len(modules)} modules of {PACKAGE}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
