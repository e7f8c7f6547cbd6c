"""The pytest plugin: ``durable_clock``, ``durable_engine``, ``durable_store_url`` and
``--durable-store``.

Loaded through the ``pytest11`` entry point, so imported by every pytest run of a project
that has durable installed. Nothing here is autouse, and durable itself (the engine,
freezegun through the clock) is imported only when a fixture is used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from durable_testing.clock import TimeTravelClock
    from durable_testing.engine import TimeTravelEngine
    from durable_testing.sandbox import StoreSandbox


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("durable", "durable workflow engine")
    group.addoption(
        "--durable-store",
        dest="durable_store",
        default=None,
        metavar="URL",
        help="run durable_engine tests on this kind of store, each test on an empty one: "
        "memory:// (default), sqlite:///any.db, postgresql://user@host/db (a schema of "
        "its own is made in that database for the run and dropped after it)",
    )


def session_label() -> str:
    """Tells apart test sessions that share a database: xdist worker and process id."""
    return f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"


@pytest.fixture(scope="session")
def durable_sandbox(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StoreSandbox]:
    """The session's store sandbox for ``--durable-store`` (memory:// by default)."""
    from durable_testing.sandbox import open_sandbox

    url: str = request.config.getoption("durable_store") or "memory://"
    sandbox = open_sandbox(url, tmp_path_factory.getbasetemp(), session_label())
    try:
        yield sandbox
    finally:
        sandbox.close()


@pytest.fixture
def durable_clock() -> Iterator[TimeTravelClock]:
    """A TimeTravelClock that also moves freezegun's time; stopped after the test."""
    from durable_testing.clock import TimeTravelClock

    clock = TimeTravelClock()
    try:
        yield clock
    finally:
        clock.close()


@pytest.fixture
def durable_store_url(durable_sandbox: StoreSandbox) -> Iterator[str]:
    """The URL of an empty store for this test, of the kind ``--durable-store`` names.

    Every Engine the test makes on this URL shares that store; no other test sees it.
    """
    url = durable_sandbox.for_test()
    try:
        yield url
    finally:
        durable_sandbox.after_test(url)


@pytest.fixture
def durable_engine(
    durable_clock: TimeTravelClock, durable_store_url: str
) -> Iterator[TimeTravelEngine]:
    """A TimeTravelEngine (an Engine with test helpers) on the test's durable_clock and
    its own empty store; closed after the test, its step overrides with it."""
    from durable_testing.engine import TimeTravelEngine

    # The sandbox migrated the store already; the engine only checks the version.
    engine = TimeTravelEngine(store=durable_store_url, clock=durable_clock, migrate=False)
    try:
        yield engine
    finally:
        engine.close()


def pytest_assertrepr_compare(config: pytest.Config, op: str, left: Any, right: Any) -> Any:
    """A failing comparison with a durable history (or its ``ran``/``tried``) shows the
    whole history: every attempt with its virtual times, errors and logs."""
    from durable_testing.history import History, StepNames, explain

    if not isinstance(left, History | StepNames) and not isinstance(right, History | StepNames):
        return None
    lines = [f"{_short(left)} {op} {_short(right)}"]
    if op == "==" and isinstance(left, list) and isinstance(right, list):
        import difflib

        lines += [
            line.rstrip()
            for line in difflib.ndiff([repr(x) for x in right], [repr(x) for x in left])
            if line[:1] in "+-?"
        ]
        lines.insert(1, "(- expected, + actual)")
    lines += explain(left) or explain(right)
    return lines


def _short(value: Any) -> str:
    from durable_testing.history import History

    if isinstance(value, History):
        return f"<History of {value.execution.id}>"
    return repr(list(value)) if isinstance(value, list) else repr(value)
