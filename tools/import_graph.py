"""The package-level import graph of src/synthembed, read from the code with `ast` (nothing is imported).

`python tools/import_graph.py` prints one edge a line, `a -> b  N`, where N counts the import statements in a's
modules that name b (imports inside functions included), then the cycles between packages and between modules.
A package is the first name under synthembed (`data`, `evaluate`, ...; `cli` and `config` are modules of their own).
tests/test_architecture.py checks the allowed directions on the same edges.
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path
from typing import NamedTuple

SRC = Path(__file__).resolve().parents[1] / "src" / "synthembed"


def module_name(path: Path, src: Path = SRC) -> str:
    parts = path.relative_to(src.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str | None:
    """synthembed.data.pairs -> data; synthembed.cli -> cli; anything outside synthembed -> None."""
    parts = module.split(".")
    return parts[1] if parts[0] == "synthembed" and len(parts) > 1 else None


class Import(NamedTuple):
    path: Path
    line: int
    module: str  # the module named (for `from synthembed import config`: synthembed.config)
    names: tuple[str, ...]  # the names taken from it (`from m import a, b`), empty for `import m`
    lazy: bool  # inside a function: runs only when the function is called


def imports(path: Path, src: Path = SRC) -> list[Import]:
    """Every import statement of the file, wherever in the file it stands."""
    here = module_name(path, src)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    in_function = {id(inner) for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for inner in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        lazy = id(node) in in_function
        if isinstance(node, ast.Import):
            found += [Import(path, node.lineno, alias.name, (), lazy) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: climb from the file's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = tuple(alias.name for alias in node.names)
            if base == "synthembed":
                found += [Import(path, node.lineno, f"{base}.{name}", (), lazy) for name in names]
            else:
                found.append(Import(path, node.lineno, base, names, lazy))
    return found


def all_imports(src: Path = SRC) -> list[Import]:
    return [imp for path in sorted(src.rglob("*.py")) for imp in imports(path, src)]


def edges(src: Path = SRC, modules: bool = False) -> Counter:
    """(importing package, imported package) -> number of import statements, self-edges left out;
    `modules`: the same between modules (synthembed.pipeline.run -> synthembed.pipeline.report)."""
    known = {module_name(path, src) for path in src.rglob("*.py")}
    counts: Counter = Counter()
    for imp in all_imports(src):
        here = module_name(imp.path, src)
        if modules:
            source, target = here, imp.module if imp.module in known else None
        else:
            source, target = part_of(here), part_of(imp.module)
        if source and target and target != source:
            counts[source, target] += 1
    return counts


def cycles(graph: Counter) -> list[list[str]]:
    """Groups of packages that reach each other (strongly connected, two or more)."""
    nodes = sorted({n for edge in graph for n in edge})
    reach = {n: _reachable(n, graph) for n in nodes}
    groups = {tuple(sorted(m for m in nodes if m in reach[n] and n in reach[m] or m == n)) for n in nodes}
    return sorted(list(g) for g in groups if len(g) > 1)


def _reachable(start: str, graph: Counter) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        for a, b in graph:
            if a == node and b not in seen:
                seen.add(b)
                todo.append(b)
    return seen


def main(src: Path = SRC) -> None:
    graph = edges(src)
    for (a, b), n in sorted(graph.items()):
        print(f"{a:>9} -> {b:<9} {n}")
    for label, found in (("cycles", cycles(graph)), ("module cycles", cycles(edges(src, modules=True)))):
        print(f"{label}: " + ("; ".join(" <-> ".join(g) for g in found) if found else "none"))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else SRC)
