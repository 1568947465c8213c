"""The shape of the package, read from its imports (no network, nothing imported).

- No import cycle between modules at import time: each module can be read after the ones it
  imports. (Imports inside functions are not counted; they are the deliberate late bindings.)
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


def top_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of ours that ``name`` imports when it is loaded (not inside functions, not under
    ``if TYPE_CHECKING``); ``from pkg import sub`` counts as importing ``pkg.sub``."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in known)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = {f"{target}.{a.name}" for a in node.names} & known
                found.update(subs if len(subs) == len(node.names) else subs | ({target} & known))
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, ast.stmt):
                        visit([child])
                    elif isinstance(child, ast.ExceptHandler):
                        visit(child.body)

    visit(ast.parse(path.read_text()).body)
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: top_level_imports(name, path, set(mods)) for name, path in mods.items()}


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[list[str]] = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            walk(start, [start])
    assert not cycles, "import cycles: " + "; ".join(" → ".join(c) for c in cycles)


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
