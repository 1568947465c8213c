"""The shape of the package, read from its imports (no network, nothing imported).

- No import cycle between modules at import time: each module can be read after the ones it
  imports. Nor once the imports inside functions are counted too: a late import may save start-up
  time, never hide two modules that need each other (a port, or the shared piece moved, does).
- The HTTP API and the web page sit side by side: neither package imports the other; they
  are put together by ``broadcaster.asgi``.
- The ledger is the persistence boundary: only ``broadcaster/ledger`` may import SQLAlchemy or
  the ledger's schema.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "broadcaster"

def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _target(name: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imported(name: str, is_pkg: bool, node: ast.stmt, known: set[str]) -> set[str]:
    """The modules of ours one import statement names; ``from pkg import sub`` names ``pkg.sub``."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in known}
    if isinstance(node, ast.ImportFrom):
        target = _target(name, is_pkg, node)
        subs = {f"{target}.{a.name}" for a in node.names} & known
        return subs if len(subs) == len(node.names) else subs | ({target} & known)
    return set()


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def top_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of ours that ``name`` imports when it is loaded (not inside functions, not under
    ``if TYPE_CHECKING``)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if _type_checking(node):
                continue
            found.update(_imported(name, is_pkg, node, known))
            if isinstance(node, (ast.If, ast.Try, ast.With)):
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, ast.stmt):
                        visit([child])
                    elif isinstance(child, ast.ExceptHandler):
                        visit(child.body)

    visit(ast.parse(path.read_text()).body)
    found.discard(name)
    return found


def all_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of ours that ``name`` imports anywhere — inside functions too — except under
    ``if TYPE_CHECKING`` (a name for the type checker is not a dependency)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking(node):
            return
        if isinstance(node, ast.stmt):
            found.update(_imported(name, is_pkg, node, known))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    found.discard(name)
    return found


def graph(*, inside_functions: bool = False) -> dict[str, set[str]]:
    mods = modules()
    read = all_imports if inside_functions else top_level_imports
    return {name: read(name, path, set(mods)) for name, path in mods.items()}


def cycles_of(edges: dict[str, set[str]]) -> list[list[str]]:
    """Each cycle found by a depth-first walk, as the path that closes it."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    found: list[list[str]] = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            walk(start, [start])
    return found


def test_no_import_cycles():
    cycles = cycles_of(graph())
    assert not cycles, "import cycles: " + "; ".join(" → ".join(c) for c in cycles)


def test_no_import_cycles_through_imports_inside_functions_either():
    cycles = cycles_of(graph(inside_functions=True))
    assert not cycles, "import cycles (late imports counted): " + "; ".join(" → ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_late_import_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def late():\n    from . import a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    known = {"pkg.a", "pkg.b", "pkg.c"}
    edges = {n: all_imports(n, pkg / f"{n.split('.')[1]}.py", known) for n in known}
    assert edges == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": set()}
    assert cycles_of(edges) == [["pkg.a", "pkg.b", "pkg.a"]]
    assert not cycles_of({n: top_level_imports(n, pkg / f"{n.split('.')[1]}.py", known) for n in known})


def test_api_and_web_do_not_import_each_other():
    edges = graph()
    crossing = sorted(
        f"{src} → {dst}" for src, dsts in edges.items() for dst in dsts
        if (src.startswith("broadcaster.api") and dst.startswith("broadcaster.web"))
        or (src.startswith("broadcaster.web") and dst.startswith("broadcaster.api"))
    )
    assert not crossing, crossing


def test_only_the_ledger_speaks_sql():
    speaking = set()
    for name, path in modules().items():
        if name.startswith("broadcaster.ledger"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):  # inside functions too: a late import is still SQL
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n == "sqlalchemy" or n.startswith("sqlalchemy.") or n.endswith("ledger.schema") for n in names):
                speaking.add(name)
    assert not speaking, f"SQL outside broadcaster/ledger: {sorted(speaking)}"
