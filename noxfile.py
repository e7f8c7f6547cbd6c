"""Sessions: tests (per store), plugins, lint, typecheck, docs, bench.

nox -s lint typecheck tests plugins docs
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "plugins", "docs"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
# The separately packaged plugins (plugins/<name>/), each installed with its test extras.
PLUGINS = ["plugins/durable-otel"]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite, every engine test on memory, SQLite and PostgreSQL; then the example
    project's own tests, as its user runs them, on each of the three stores. The plugins
    are installed too, as users install them: the suite runs with them loaded (and the
    docs pages that show them run)."""
    session.install("-e", ".[dev]", *_plugins())
    # Mermaid's own parser (node), which the graph tests read durable's Mermaid text with.
    if not os.path.exists("tests/mermaid/node_modules/.package-lock.json"):
        session.run(
            "npm",
            "ci",
            "--prefix",
            "tests/mermaid",
            "--silent",
            "--no-audit",
            "--no-fund",
            external=True,
        )
    # Every property test at its full example count (the everyday default is a tenth).
    session.run("pytest", "--hypothesis-profile=full", *session.posargs)
    if session.posargs:
        return
    postgres = os.environ.get("DURABLE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    session.chdir("examples/shop")
    for store in ("memory://", "sqlite:///shop.db", postgres):
        session.run("pytest", "-p", "no:cacheprovider", "--durable-store", store)


@nox.session(python=PYTHON)
def plugins(session: nox.Session) -> None:
    """Each plugin's own test suite (plugins/<name>/tests), durable installed from here."""
    session.install("-e", ".[dev]", *_plugins())
    for plugin in PLUGINS:
        with session.chdir(plugin):
            session.run("pytest", "-p", "no:cacheprovider", *session.posargs)


def _plugins() -> list[str]:
    """pip arguments that install every plugin, editable, with its test extras."""
    return [arg for plugin in PLUGINS for arg in ("-e", f"{plugin}[test]")]


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint and format check."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over durable, durable_testing and the plugins."""
    session.install("-e", ".[dev]", *_plugins())
    session.run("mypy")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks (figures, not pass/fail tests)."""
    session.install("-e", ".[postgres]")
    session.run("python", "bench/bench_memory.py")
    session.run("python", "bench/bench_sql.py")
    session.run("python", "bench/bench_index.py")
    session.run("python", "bench/bench_waits.py")
