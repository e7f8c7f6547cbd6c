from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

import durable
from durable_testing.plugin import session_label
from durable_testing.sandbox import StoreSandbox, open_sandbox

pytest_plugins = ["pytester"]

# Hypothesis: the everyday run tries a tenth of the examples; CI (nox -s tests) passes
# --hypothesis-profile=full. Both start from the profile hypothesis chose (its "ci"
# one where a CI variable is set). Counts a test sets itself go through helpers.examples.
settings.register_profile("full", settings(), max_examples=100)
settings.register_profile("everyday", settings(), max_examples=10)


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("--hypothesis-profile"):
        settings.load_profile("everyday")


PG_ADMIN = os.environ.get("DURABLE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
# One database per test run, so that two runs (a developer's and CI's) never meet.
PG_DB = f"durable_tests_{os.getpid()}"
STORES = ["memory", "sqlite", "postgres"]
# How a test reaches the PostgreSQL server: one of these fixtures, or "postgres" as the
# value of a store parameter (durable_store_url's, or a test's own store-kind fixture's).
PG_FIXTURES = {"postgres_url", "durable_store_url_pg"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the PostgreSQL server ``postgres``, so that
    ``-m "not postgres"`` runs the rest where there is none."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        values = list(callspec.params.values()) if callspec is not None else []
        if PG_FIXTURES & set(getattr(item, "fixturenames", ())) or "postgres" in values:
            item.add_marker(pytest.mark.postgres)


def _pg_url(db: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + db


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated database for this run; fails (never skips) under CI=true."""
    import psycopg

    try:
        with psycopg.connect(
            PG_ADMIN.replace("postgresql://", "postgresql://", 1),
            autocommit=True,
            connect_timeout=5,
        ) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {PG_DB}")
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is unreachable at {PG_ADMIN} and CI=true: {exc}")
        pytest.skip(f"PostgreSQL is unreachable at {PG_ADMIN}: {exc}")
    url = _pg_url(PG_DB)
    durable.Engine(url).close()  # migrate once
    yield url
    import psycopg as pg

    with pg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")


@pytest.fixture(scope="session")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, StoreSandbox]]:
    """One store sandbox per kind, made on first use (the plugin's own mechanism)."""
    made: dict[str, StoreSandbox] = {}
    yield made
    for sandbox in made.values():
        sandbox.close()


@pytest.fixture
def sandbox_of(
    request: pytest.FixtureRequest,
    sandboxes: dict[str, StoreSandbox],
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str], StoreSandbox]:
    """The session's sandbox of a kind of store ("memory", "sqlite", "postgres"): its
    for_test() is an empty, migrated store, at the cost of emptying, not migrating."""

    def get(kind: str) -> StoreSandbox:
        if kind not in sandboxes:
            url = {
                "memory": lambda: "memory://",
                "sqlite": lambda: "sqlite:///sandbox.db",
                "postgres": lambda: request.getfixturevalue("postgres_url"),
            }[kind]()
            sandboxes[kind] = open_sandbox(url, tmp_path_factory.getbasetemp(), session_label())
        return sandboxes[kind]

    return get


@pytest.fixture(params=STORES)
def durable_store_url(
    request: pytest.FixtureRequest, sandbox_of: Callable[[str], StoreSandbox]
) -> Iterator[str]:
    """Every engine test runs on each store: memory, a SQLite file, Postgres; each test on
    an empty one, through the same sandboxes ``--durable-store`` uses."""
    sandbox = sandbox_of(request.param)
    url = sandbox.for_test()
    try:
        yield url
    finally:
        sandbox.after_test(url)


@pytest.fixture
def durable_store_url_pg(postgres_url: str) -> str:
    """The session's Postgres database, emptied: for tests with worker processes."""
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE durable_executions, durable_step_attempts, durable_waits, durable_events, "
            "durable_group_counts RESTART IDENTITY"
        )
    return postgres_url


class Recorder:
    """An observer plugin: records every lifecycle hook call, and can signal a count."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.lock = threading.Lock()
        self.finished = threading.Condition(self.lock)
        self.done_ids: set[str] = set()

    def _add(self, hook: str, execution: durable.Execution, extra: Any = None) -> None:
        with self.lock:
            self.calls.append((hook, execution.id, extra))
            if hook in ("completed", "failed", "cancelled"):
                self.done_ids.add(execution.id)
                self.finished.notify_all()

    def wait_done(self, n: int, timeout: float = 30.0) -> bool:
        """Block until n executions ended (an event, not a sleep); False on timeout."""
        with self.lock:
            return self.finished.wait_for(lambda: len(self.done_ids) >= n, timeout)

    def hooks(self, execution_id: str | None = None) -> list[str]:
        return [h for h, eid, _ in self.calls if execution_id in (None, eid)]

    @durable.hookimpl
    def durable_workflow_started(self, execution: durable.Execution) -> None:
        self._add("started", execution)

    @durable.hookimpl
    def durable_workflow_completed(self, execution: durable.Execution) -> None:
        self._add("completed", execution)

    @durable.hookimpl
    def durable_workflow_failed(self, execution: durable.Execution, error: dict[str, Any]) -> None:
        self._add("failed", execution, error["type"])

    @durable.hookimpl
    def durable_workflow_cancelled(self, execution: durable.Execution, reason: str | None) -> None:
        self._add("cancelled", execution, reason)

    @durable.hookimpl
    def durable_step_started(
        self, execution: durable.Execution, step: durable.StepExecution
    ) -> None:
        self._add("step_started", execution, (step.name, step.attempt))

    @durable.hookimpl
    def durable_step_completed(
        self, execution: durable.Execution, step: durable.StepExecution
    ) -> None:
        self._add("step_completed", execution, (step.name, step.attempt))

    @durable.hookimpl
    def durable_step_retrying(
        self, execution: durable.Execution, step: durable.StepExecution, retry_at: Any
    ) -> None:
        self._add("step_retrying", execution, (step.name, step.attempt, retry_at))

    @durable.hookimpl
    def durable_step_suspended(
        self, execution: durable.Execution, step: durable.StepExecution, until: Any
    ) -> None:
        self._add("step_suspended", execution, (step.name, step.attempt, until))

    @durable.hookimpl
    def durable_step_failed(
        self, execution: durable.Execution, step: durable.StepExecution
    ) -> None:
        self._add("step_failed", execution, (step.name, step.attempt))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def engine(
    durable_clock: Any, durable_store_url: str, recorder: Recorder
) -> Iterator[durable.Engine]:
    """Like durable_engine, with the recorder observing."""
    # The sandbox migrated the store; migrating again costs ~20 ms (SQLite) to ~90 ms
    # (PostgreSQL) a test for nothing. The engine still checks the schema version.
    eng = durable.Engine(
        store=durable_store_url, clock=durable_clock, plugins=[recorder], migrate=False
    )
    try:
        yield eng
    finally:
        eng.close()


@pytest.fixture(params=["sqlite", "postgres"])
def blank_url(request, tmp_path):
    """An empty database of each SQL kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'blank.db'}"
        return
    import psycopg

    base: str = request.getfixturevalue("postgres_url")
    name = f"durable_blank_{os.getpid()}"
    admin = base.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    yield base.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as conn:
        for db in (name, f"durable_reference_{os.getpid()}"):
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documentation site, built with --strict (a broken link or reference fails):
    for tests/project's reference and browser tests."""
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    return out
