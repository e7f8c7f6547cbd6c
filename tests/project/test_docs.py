"""The documentation's examples run: docs/testing.md's Python blocks, in order, form one
test module, run by pytest against the example project's workflows (as a user would)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def python_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text())


def run_blocks(pytester: pytest.Pytester, blocks: list[str], *args: str) -> pytest.RunResult:
    shutil.copytree(ROOT / "examples" / "shop" / "shop", pytester.path / "shop")
    pytester.makepyfile(test_from_docs="\n\n".join(blocks))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


@pytest.mark.slow  # a pytest run in a process of its own
def test_testing_md_examples_run(pytester):
    blocks = python_blocks(ROOT / "docs" / "testing.md")
    tests = sum(len(re.findall(r"^def test_", b, re.M)) for b in blocks)
    assert tests >= 6
    result = run_blocks(pytester, blocks)
    result.assert_outcomes(passed=tests)


# Pages whose examples run as tests, on memory and PostgreSQL: each with at least this many.
PAGES = {
    "workflows.md": 3,
    "waits.md": 5,
    "flow.md": 5,
    "sagas.md": 4,
    "deploys.md": 5,
    "operations.md": 4,
    "cron.md": 3,
    "graph.md": 1,
    "observability.md": 4,
    "dashboard.md": 1,
}
# Pages whose examples need a plugin from plugins/ (and the OpenTelemetry SDK) installed:
# nox installs them; a run without them skips those pages, except under CI=true.
NEEDS = {"observability.md": ("durable_otel", "opentelemetry.sdk")}


@pytest.mark.slow  # a pytest run in a process of its own
@pytest.mark.parametrize("store", ["memory", "postgres"])
@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_examples_run(pytester, page, store, request):
    missing = [m for m in NEEDS.get(page, ()) if importlib.util.find_spec(m) is None]
    if missing:
        why = f"{page} needs {', '.join(missing)}: pip install -e 'plugins/durable-otel[test]'"
        if os.environ.get("CI"):
            pytest.fail(f"{why} (CI=true)")
        pytest.skip(why)
    blocks = python_blocks(ROOT / "docs" / page)
    tests = sum(len(re.findall(r"^def test_", b, re.M)) for b in blocks)
    assert tests >= PAGES[page]
    args = [] if store == "memory" else ["--durable-store", request.getfixturevalue("postgres_url")]
    result = run_blocks(pytester, blocks, *args)
    result.assert_outcomes(passed=tests)


@pytest.mark.slow  # a pytest run in a process of its own
def test_testing_md_examples_run_on_postgres(pytester, postgres_url):
    blocks = python_blocks(ROOT / "docs" / "testing.md")
    tests = sum(len(re.findall(r"^def test_", b, re.M)) for b in blocks)
    result = run_blocks(pytester, blocks, "--durable-store", postgres_url)
    result.assert_outcomes(passed=tests)


@pytest.mark.parametrize("name", ["retry", "workflow timeout"])
def test_the_quick_start_tests_in_the_docs_are_under_20_lines(name):
    text = (ROOT / "docs" / "testing.md").read_text()
    section = text.split(f"## The quick start's {name}", 1)[1].split("\n## ", 1)[0]
    for block in python_blocks_of(section):
        for test in re.split(r"\n(?=def test_)", block):
            if test.startswith("def test_"):
                assert len(test.strip().splitlines()) < 20, test


def python_blocks_of(text: str) -> list[str]:
    return BLOCK.findall(text)


@pytest.mark.slow  # a pytest run in a process of its own
def test_readme_testing_example_runs(pytester):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Testing your workflows", 1)[1].split("\n## ", 1)[0]
    blocks = python_blocks_of(section)
    assert blocks
    result = run_blocks(pytester, blocks)
    result.assert_outcomes(
        passed=sum(b.count("\ndef test_") + b.startswith("def test_") for b in blocks)
    )


def test_the_graphs_drawn_in_the_docs_are_those_of_their_workflows_now(monkeypatch):
    """docs/graph/*.dot (rendered to the .svg the pages show) are what durable.graph gives
    for the docs' workflows: after a change, run python docs/graph/render.py."""
    import importlib.util

    from durable import dsl

    monkeypatch.setattr(dsl, "_registry", {})  # (restored after: render swaps it)
    spec = importlib.util.spec_from_file_location("render", ROOT / "docs" / "graph" / "render.py")
    assert spec is not None and spec.loader is not None
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    for name, text in render.drawings().items():
        assert (ROOT / "docs" / "graph" / name).read_text() == text, name
        assert (ROOT / "docs" / "graph" / name.replace(".dot", ".svg")).exists()
