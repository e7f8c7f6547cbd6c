"""Every code block of every page of the documentation (docs/ and the README) is run the
way a reader would use it, on memory and on PostgreSQL: docs_pages.py says how each kind
of block is treated, and a block of no known kind fails here."""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from docs_pages import ROOT, Block, Run, blocks, pages, parse_config, shown
from docs_pages import UNRUN as UNRUN_KINDS

# At least this many tests in a page's module (a floor, so that a page losing its tests
# to an edit is noticed); a page not listed needs one if its module has any.
AT_LEAST = {
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
    "testing.md": 6,
}
# Pages whose examples need a plugin from plugins/ (and the OpenTelemetry SDK) installed:
# nox installs them; a run without them skips those pages, except under CI=true.
NEEDS = {
    "observability.md": ("durable_otel", "opentelemetry.sdk"),
    "how-to/tracing.md": ("durable_otel", "opentelemetry.sdk"),
}
# What a page's snippet takes as given (the reader's own services), run before its module.
GIVEN = {
    "index.md": "from docs_given import payments, emails, order\n",
    "../README.md": "from docs_given import payments, emails, order\n",
}
# Pages whose module blocks form one module per "## " section: the README's sections are
# separate examples (its quick start and its test both define process_order).
BY_SECTION = {"../README.md"}

# Blocks shown but not run (docs_pages.UNRUN's languages), by page: each needs what the
# test does not have. Raising a count is a decision, not a fix.
UNRUN = {
    "../README.md": 1,  # a fresh machine's venv and nox run (CI runs exactly that)
    "dashboard.md": 1,  # curl to a served dashboard (its Python twin below it runs)
    "how-to/workers.md": 2,  # a systemd unit and a Dockerfile
    "observability.md": 1,  # opentelemetry-instrument with an OTLP collector
}

ALL = [b for page in pages() for b in blocks(page)]
RUN = sorted({b.page for b in ALL if b.kind in ("module", "file", "console")})


def test_every_block_is_accounted_for():
    unknown = [f"{b.where}: ```{b.lang} {b.attrs}" for b in ALL if b.kind == "unknown"]
    assert unknown == [], "blocks that are neither run, shown as output nor parsed:\n" + (
        "\n".join(unknown)
    )
    for b in ALL:
        if b.kind == "other" and b.lang == "python":
            compile(b.body, b.where, "exec")
        parse_config(b)
    shown: dict[str, int] = {}
    for b in ALL:
        if b.kind in UNRUN_KINDS:
            shown[b.page] = shown.get(b.page, 0) + 1
    assert shown == UNRUN
    assert len(RUN) >= 15


def _modules(page: str, found: list[Block]) -> list[str]:
    """The page's module blocks joined: one module, or one per section (BY_SECTION)."""
    mods = [b for b in found if b.kind == "module"]
    if page not in BY_SECTION:
        return ["\n\n".join(b.body for b in mods)] if mods else []
    lines = (ROOT / "docs" / page).read_text().splitlines()
    section = {b.line: sum(x.startswith("## ") for x in lines[: b.line]) for b in mods}
    groups = itertools.groupby(mods, key=lambda b: section[b.line])
    return ["\n\n".join(b.body for b in group) for _, group in groups]


_databases = itertools.count()


@pytest.fixture
def page_databases(request: pytest.FixtureRequest) -> Iterator[Callable[[str], str]]:
    """Fresh PostgreSQL databases of the page's own, one per name: the store its scripts
    and commands share ("DURABLE_STORE"), and one for each URL a command names (a reader
    runs those on a database they just created)."""
    import psycopg

    shared = request.getfixturevalue("postgres_url")  # reachable, or fail under CI=true
    server, run_db = shared.rsplit("/", 1)
    admin = f"{server}/postgres"
    made: dict[str, str] = {}

    def fresh(key: str) -> str:
        if key not in made:
            made[key] = f"{run_db}_docs_{next(_databases)}"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {made[key]} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {made[key]}")
        return f"{server}/{made[key]}"

    yield fresh
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in made.values():
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.slow  # pytest, scripts and commands in processes of their own
@pytest.mark.parametrize("store", ["memory", "postgres"])
@pytest.mark.parametrize("page", RUN)
def test_page_runs(pytester, monkeypatch, page, store, request):
    """The page's blocks in order, as a reader follows it: files written, commands run
    (on the SQLite default for "memory", since commands are processes of their own),
    then its module run by pytest (or python) on the store."""
    missing = [m for m in NEEDS.get(page, ()) if importlib.util.find_spec(m) is None]
    if missing:
        why = f"{page} needs {', '.join(missing)}: pip install -e 'plugins/durable-otel[test]'"
        if os.environ.get("CI"):
            pytest.fail(f"{why} (CI=true)")
        pytest.skip(why)
    found = blocks(page)
    folder = pytester.path
    shutil.copytree(ROOT / "examples" / "shop" / "shop", folder / "shop")
    shutil.copy(Path(__file__).with_name("docs_given.py"), folder / "docs_given.py")
    env = {k: v for k, v in os.environ.items() if k != "DURABLE_STORE"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    # A URL of PostgreSQL in a command stands for a fresh database, in both runs.
    wants_pg = any(b.kind == "console" and "postgresql://" in b.body for b in found)
    databases = None
    if store == "postgres" or wants_pg:
        databases = request.getfixturevalue("page_databases")
    pg_url = databases("DURABLE_STORE") if databases and store == "postgres" else None
    if pg_url:
        env["DURABLE_STORE"] = pg_url
    run = Run(folder, env, databases)
    modules = _modules(page, found)
    names = []
    for n, module in enumerate(modules):  # there from the start: a page may run pytest
        tests = len(re.findall(r"^(?:async )?def test_", module, re.M))
        names.append((f"test_page_{n}" if tests else f"page_{n}", tests))
        (folder / f"{names[-1][0]}.py").write_text(GIVEN.get(page, "") + module)
    try:
        for block in found:
            if block.kind == "file":
                run.write(block)
            elif block.kind == "console":
                run.console(block)
        for name, tests in names:
            _run_module(pytester, monkeypatch, page, name, tests, pg_url)
    finally:
        run.stop()


def _run_module(pytester, monkeypatch, page: str, name: str, tests: int, pg_url) -> None:
    monkeypatch.setenv("DURABLE_STORE", pg_url or "memory://")  # for its own Engine()
    if tests:
        assert tests >= AT_LEAST.get(page, 1)
        args = ["-p", "no:cacheprovider", f"{name}.py"]
        if pg_url:
            args += ["--durable-store", pg_url]
        result = pytester.runpytest_subprocess(*args)
        outcomes = result.parseoutcomes()  # (a page's test class may inherit tests)
        assert outcomes.get("passed", 0) >= tests, outcomes
        assert set(outcomes) <= {"passed", "warnings", "warning"}, outcomes
    else:
        result = pytester.run(sys.executable, f"{name}.py", timeout=120)
        assert result.ret == 0, result.stderr.str()


def test_a_shown_line_of_dots_is_one_wildcard_not_thousands_of_backtracks():
    """pytest's progress line shown on a page (72 dots) once took the harness minutes to
    compare with a line it did not match: each ``...`` was a wildcard of its own."""
    dots = "." * 72 + " [100%]"
    assert shown(dots).pattern.count(".*?") == 1
    assert shown(dots).search(".             [100%]")
    assert not shown(dots).search("." * 60 + " [ 98%]")
    assert shown("72 passed in 9.58s").search("73 passed in 12.1s")


@pytest.mark.parametrize("name", ["retry", "workflow timeout"])
def test_the_quick_start_tests_in_the_docs_are_under_20_lines(name):
    text = (ROOT / "docs" / "testing.md").read_text()
    section = text.split(f"## The quick start's {name}", 1)[1].split("\n## ", 1)[0]
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        for test in re.split(r"\n(?=def test_)", block):
            if test.startswith("def test_"):
                assert len(test.strip().splitlines()) < 20, test


def test_the_graphs_drawn_in_the_docs_are_those_of_their_workflows_now(monkeypatch):
    """docs/graph/*.dot (rendered to the .svg the pages show) are what durable.graph gives
    for the docs' workflows: after a change, run python docs/graph/render.py."""
    from durable import dsl

    monkeypatch.setattr(dsl, "_registry", {})  # (restored after: render swaps it)
    spec = importlib.util.spec_from_file_location("render", ROOT / "docs" / "graph" / "render.py")
    assert spec is not None and spec.loader is not None
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    for name, text in render.drawings().items():
        assert (ROOT / "docs" / "graph" / name).read_text() == text, name
        assert (ROOT / "docs" / "graph" / name.replace(".dot", ".svg")).exists()
