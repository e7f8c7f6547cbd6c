"""The API reference (docs/reference/, built by mkdocstrings from the docstrings) documents
every public name and every plugin hook: a name added to an ``__all__`` or a hook added to
durable.hookspecs without a place in the reference fails here."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import durable.hookspecs

ROOT = Path(__file__).resolve().parents[2]

PAGES = {
    "durable": "reference/durable",
    "durable.context": "reference/context",
    "durable.aio": "reference/aio",
    "durable_testing": "reference/testing",
}


def _ids(site: Path, page: str) -> set[str]:
    return set(re.findall(r'id="([^"]+)"', (site / page / "index.html").read_text()))


@pytest.mark.parametrize("module", sorted(PAGES))
def test_every_public_name_has_its_entry(site, module):
    names = importlib.import_module(module).__all__
    ids = _ids(site, PAGES[module])
    missing = [name for name in names if f"{module}.{name}" not in ids]
    assert missing == [], f"{module}: not in docs/{PAGES[module]}.md's reference: {missing}"


def test_every_hook_spec_has_its_entry_with_its_signature(site):
    specs = [name for name in dir(durable.hookspecs) if name.startswith("durable_")]
    assert "durable_step_call" in specs
    page = (site / "reference/hooks/index.html").read_text()
    ids = _ids(site, "reference/hooks")
    missing = [name for name in specs if f"durable.hookspecs.{name}" not in ids]
    assert missing == [], f"hook specs not in docs/reference/hooks.md: {missing}"
    entries = re.split(r'(?=id="durable\.hookspecs\.)', page)
    for name in specs:  # (each with its parameters, as a plugin author writes them)
        (entry,) = [e for e in entries if e.startswith(f'id="durable.hookspecs.{name}"')]
        signature = re.search(rf"{name}\s*\(([^)]*)\)", re.sub(r"<[^>]+>", "", entry))
        assert signature, f"{name}'s entry shows no signature"
        code = getattr(durable.hookspecs, name).__code__
        for param in code.co_varnames[: code.co_argcount]:
            assert re.search(rf"\b{param}\b", signature[1]), (name, param, signature[0])


def test_docstrings_use_no_sphinx_roles():
    """The reference renders docstrings as Markdown, where ``:class:`X``` shows as it is
    written: name things as ``X`` (a code span) instead."""
    role = re.compile(r":(class|func|meth|data|attr|exc|mod|obj):`")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for package in ("durable", "durable_testing", "plugins/durable-otel/durable_otel")
        for path in sorted((ROOT / package).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if role.search(line)
    ]
    assert found == [], f"Sphinx roles in docstrings: {found}"
