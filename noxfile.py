"""Sessions: tests (per store), lint, typecheck, docs, bench.

nox -s lint typecheck tests
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite, every engine test on memory, SQLite and PostgreSQL; then the example
    project's own tests, as its user runs them, on each of the three stores."""
    session.install("-e", ".[dev]")
    # Every property test at its full example count (the everyday default is a tenth).
    session.run("pytest", "--hypothesis-profile=full", *session.posargs)
    if session.posargs:
        return
    postgres = os.environ.get("DURABLE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    session.chdir("examples/shop")
    for store in ("memory://", "sqlite:///shop.db", postgres):
        session.run("pytest", "-p", "no:cacheprovider", "--durable-store", store)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint and format check."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over durable and durable_testing."""
    session.install("-e", ".[dev]")
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
