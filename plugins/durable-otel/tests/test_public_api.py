"""The plugin uses durable's public API only: what `durable`, `durable.plugins`,
`durable.hookspecs` and `durable.models` export, never a private module."""

from __future__ import annotations

import ast
from pathlib import Path

import durable_otel

PUBLIC = {"durable", "durable.plugins", "durable.hookspecs", "durable.models"}


def test_the_plugin_imports_only_public_durable_modules():
    package = Path(durable_otel.__file__).parent
    used: set[str] = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                used |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                used.add(node.module)
    durables = {m for m in used if m == "durable" or m.startswith("durable.")}
    assert durables and durables <= PUBLIC, durables - PUBLIC


def test_it_is_registered_through_the_durable_entry_point_group():
    import importlib.metadata

    (ep,) = [e for e in importlib.metadata.entry_points(group="durable") if e.name == "otel"]
    assert ep.value == "durable_otel:plugin"
    assert ep.load() is durable_otel.plugin
