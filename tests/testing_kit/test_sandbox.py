"""--durable-store isolation: every test gets an empty store, shared by the engines it makes."""

from __future__ import annotations

from pathlib import Path

import pytest

import durable
from durable.stores.sql.schema import metadata
from durable_testing import TimeTravelClock
from durable_testing.sandbox import DATA_TABLES, PostgresSandbox, open_sandbox

from workflows import ORDER, OrderWorkflow


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def sandbox_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return "sqlite:///ignored.db?synchronous=normal"
    return request.getfixturevalue("postgres_url")


def test_each_test_gets_an_empty_store_shared_by_its_engines(sandbox_url, tmp_path):
    sandbox = open_sandbox(sandbox_url, tmp_path, "isolation")
    try:
        with TimeTravelClock() as clock:
            first = sandbox.for_test()
            with durable.Engine(first, clock=clock, migrate=False) as a:
                wid = a.start(OrderWorkflow, ORDER)
                with durable.Engine(first, clock=clock, migrate=False) as b:
                    assert [e.id for e in b.list_executions()] == [wid]
                    b.drain()
                assert a.get_execution(wid).status == "completed"
            sandbox.after_test(first)

            second = sandbox.for_test()
            with durable.Engine(second, clock=clock, migrate=False) as c:
                assert c.list_executions() == []
                with pytest.raises(durable.ExecutionNotFound):
                    c.get_execution(wid)
            sandbox.after_test(second)
        if sandbox_url.startswith("sqlite"):
            assert "synchronous=normal" in second  # the URL's options are kept
            assert not Path(second.split("///")[1].split("?")[0]).exists()  # removed after
    finally:
        sandbox.close()


def test_a_sqlite_sandbox_in_a_folder_with_percent_signs_and_spaces(tmp_path):
    # The sandbox's URLs are URL paths: a folder named "run%41 b" stays itself.
    workdir = tmp_path / "run%41 b"
    sandbox = open_sandbox("sqlite:///ignored.db", workdir, "percent")
    try:
        with TimeTravelClock() as clock:
            url = sandbox.for_test()
            with durable.Engine(url, clock=clock, migrate=False) as engine:
                wid = engine.start(OrderWorkflow, ORDER)
                engine.drain()
                assert engine.get_execution(wid).status == "completed"
            files = workdir / "durable-percent"
            assert [p.name for p in files.glob("test-*.db")] == [url.rsplit("/", 1)[1]]
            sandbox.after_test(url)
            assert list(files.glob("test-*.db*")) == []  # removed after, from that folder
    finally:
        sandbox.close()


def test_postgres_sandbox_has_a_schema_of_its_own_and_truncates_now_and_then(
    postgres_url, tmp_path
):
    import psycopg

    executions_and_attempts = 3 + 4 * 3
    sandbox = PostgresSandbox(postgres_url, "schema", truncate_after_rows=executions_and_attempts)
    try:
        url = sandbox.for_test()
        assert "search_path" in url
        with TimeTravelClock() as clock, durable.Engine(url, clock=clock, migrate=False) as eng:
            for _ in range(3):
                eng.start(OrderWorkflow, ORDER)
            eng.drain()
        sandbox.for_test()
        assert sandbox.rows_deleted >= executions_and_attempts  # deleted, not truncated
        sandbox.for_test()  # past the threshold, as after a long session: truncated
        assert sandbox.rows_deleted == 0
        with psycopg.connect(postgres_url) as conn:
            schemas = [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")]
            assert sandbox.schema in schemas
            # the run's tables live in its schema, not in public
            count = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (sandbox.schema,)
            ).fetchone()
            assert count == (len(metadata.tables),)
        assert set(DATA_TABLES) == set(metadata.tables) - {"durable_migrations"}
    finally:
        sandbox.close()
    with psycopg.connect(postgres_url) as conn:
        schemas = [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")]
        assert sandbox.schema not in schemas


def test_an_unsupported_store_is_a_clear_error(tmp_path):
    with pytest.raises(durable.ConfigError, match="--durable-store supports memory://"):
        open_sandbox("redis://localhost", tmp_path)


USER_TESTS = """
from durable import step, workflow

@workflow("sandbox_user_wf")
class W:
    @step
    def only(self):
        pass

def test_a(durable_engine):
    durable_engine.start(W)
    assert len(durable_engine.list_executions()) == 1

def test_b(durable_engine):
    durable_engine.start(W)
    durable_engine.start(W)
    assert len(durable_engine.list_executions()) == 2
"""


@pytest.mark.slow  # a pytest run in a process of its own
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_user_suite_on_each_store_is_isolated_per_test(pytester, kind, request):
    pytester.makepyfile(test_user=USER_TESTS)
    url = "sqlite:///any.db" if kind == "sqlite" else request.getfixturevalue("postgres_url")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--durable-store", url)
    result.assert_outcomes(passed=2)
