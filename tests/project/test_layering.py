"""The package's shape: layers that import only from the layers below them, and no cycles.

Read from the source (every import, including those inside functions, except the ones
under ``if TYPE_CHECKING:``), so a lazy import that reaches up a layer counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "durable"

# DESIGN.md's target layering. A module is placed by its full name, else by the longest
# package prefix listed; a new module must be placed here on purpose.
LAYERS: dict[str, int] = {
    # 1. values
    "durable.errors": 1,
    "durable.models": 1,
    "durable.durations": 1,
    "durable.retry": 1,
    "durable._limits": 1,
    "durable._kept": 1,
    "durable._json": 1,
    "durable._text": 1,
    "durable._schemas": 1,
    "durable._typed": 1,
    "durable._merge": 1,
    "durable._cron": 1,
    "durable.clock": 1,
    # 2. the workflow's shape, and the running step's state
    "durable.dsl": 2,
    "durable._runtime": 2,
    "durable._capture": 2,
    # 3. stores
    "durable.stores": 3,
    # 4. plugins
    "durable.hookspecs": 4,
    "durable.plugins": 4,
    "durable._builtins": 4,
    # 5. running
    "durable._invoke": 5,
    "durable._executor": 5,
    "durable._saga": 5,
    "durable._recovery": 5,
    "durable._deploy": 5,
    "durable.scheduler": 5,
    "durable._starts": 5,
    "durable._ticks": 5,
    # 6. the engine and its workers
    "durable.engine": 6,
    "durable._worker": 6,
    # 7. user-facing helpers
    "durable.context": 7,
    "durable.waits": 7,
    "durable.aio": 7,
    "durable._default": 7,
    "durable._demo": 7,
    "durable.cli": 7,
    "durable.graph": 7,
    "durable.graphs": 7,
    "durable.dashboard": 7,
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The durable modules ``name`` imports. Its own parent packages are left out: every
    import of a module runs them first (``from durable.stores.sql import migrations``
    depends on ``migrations``, not on the package's re-exports)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                out.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                out.add(base)
                out.update(f"{base}.{a.name}" for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    parents = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
    return {m for m in out if m in MODULES and m != name and m not in parents}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items() if name != "durable"}


def layer(name: str) -> int | None:
    while name:
        if name in LAYERS:
            return LAYERS[name]
        name = name.rpartition(".")[0]
    return None


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in GRAPH if layer(m) is None)
    assert not unplaced, (
        f"place these modules in a layer (tests/project/test_layering.py): {unplaced}"
    )


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_a_module_imports_only_from_its_layer_and_below(module):
    mine = layer(module)
    assert mine is not None
    upward = sorted(f"{dep} (layer {layer(dep)})" for dep in GRAPH[module] if layer(dep) > mine)
    assert not upward, f"{module} (layer {mine}) imports from a higher layer: {upward}"


def _cycle() -> list[str] | None:
    """One import cycle among durable's modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(GRAPH.get(node, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state:
                found = walk(dep)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(GRAPH):
        if start not in state:
            found = walk(start)
            if found:
                return found
    return None


def test_no_import_cycle():
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def test_the_cycle_finder_finds_a_cycle(monkeypatch):
    """The check above can fail: a cycle put into the graph is found."""
    monkeypatch.setitem(GRAPH, "durable.errors", GRAPH["durable.errors"] | {"durable.engine"})
    cycle = _cycle()
    assert cycle is not None and cycle[0] == cycle[-1] and "durable.engine" in cycle
