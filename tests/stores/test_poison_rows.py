"""One row a store cannot decode never stops the others (SQL stores: rows written by an
older version, or by hand; the engine itself refuses such values at the door)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import durable
from durable import step, workflow
from durable.cli import format_execution
from durable.context import put_context

DEEP = "[" * 5000 + "]" * 5000  # valid JSON, far past Python's recursion limit to read


@workflow("poison_ok")
class Fine:
    @step
    def work(self) -> None:
        put_context("ran", True)


@pytest.fixture(params=["sqlite", "postgres"])
def sql_engine(request, durable_clock, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'poison.db'}"
    else:
        url = request.getfixturevalue("durable_store_url_pg")
    engine = durable.Engine(url, clock=durable_clock)
    yield engine
    engine.close()


def _set(engine: durable.Engine, wid: str, **values: object) -> None:
    """Write straight into the row, as an older version or a hand-made fix might have."""
    table = sa.Table("durable_executions", sa.MetaData(), autoload_with=engine.store.engine)
    with engine.store.engine.begin() as conn:
        conn.execute(sa.update(table).where(table.c.id == wid).values(**values))


def test_a_row_too_deep_to_read_fails_alone_and_the_others_run(sql_engine, caplog):
    engine = sql_engine
    before = [engine.start(Fine, priority=1) for _ in range(2)]
    poison = engine.start(Fine, priority=1)  # claimed in the same batch as its neighbours
    after = [engine.start(Fine) for _ in range(2)]
    _set(engine, poison, input=DEEP)

    # Reading it does not raise: the unreadable field is empty and named.
    ex = engine.get_execution(poison)
    assert ex.input is None
    assert [p.split(":")[0] for p in ex.unreadable] == ["input"]
    assert "too deep" in ex.unreadable[0]
    assert len(engine.list_executions()) == 5

    # A worker claiming a batch that holds it runs the others and fails it, once.
    rows = engine.scheduler.claim(None, limit=10)
    assert {r.id for r in rows} == {*before, *after}
    for row in rows:
        engine.scheduler.execute(row)
    assert engine.drain() == 0
    for wid in [*before, *after]:
        assert engine.get_execution(wid).context == {"ran": True}
    ex = engine.get_execution(poison, include_steps=True)
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.UnreadableExecution"
    assert "input: nested too deep to read" in ex.error["message"]
    assert "what is stored is kept as it was" in ex.error["message"]
    assert ex.steps == []
    assert f"execution {poison} cannot be read" in caplog.text
    # what is stored is kept: the row still holds the input as written
    table = sa.Table("durable_executions", sa.MetaData(), autoload_with=engine.store.engine)
    with engine.store.engine.connect() as conn:
        stored = conn.execute(sa.select(table.c.input).where(table.c.id == poison)).scalar()
    assert stored == DEEP
    assert "unreadable input: nested too deep to read" in format_execution(ex)


@pytest.mark.parametrize("timeout_ms", [10**15, 10**17])
def test_a_timeout_past_what_the_stores_hold_fails_that_execution_only(sql_engine, timeout_ms):
    # Timeouts of 31,000 years (10**15 ms) and more were accepted before durations were
    # bounded; computed, such a deadline overflows Python's dates (10**15) or even
    # PostgreSQL's interval (10**17), which would fail the whole claim statement. The
    # claim leaves it uncomputed and fails that row alone.
    engine = sql_engine
    ok = engine.start(Fine, priority=1)
    poison = engine.start(Fine, priority=2)
    late = engine.start(Fine)
    _set(engine, poison, timeout_ms=timeout_ms)
    assert engine.drain() == 2
    assert engine.get_execution(ok).status == "completed"
    assert engine.get_execution(late).status == "completed"
    ex = engine.get_execution(poison)
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.UnreadableExecution"
    assert "timeout_ms: " in ex.error["message"]
    assert "longer than any store keeps" in ex.error["message"]
    listed = {e.id: e for e in engine.list_executions()}
    assert listed[poison].status == "failed"


@pytest.mark.parametrize("context", ["{not json", "[]", '"a string"'])
def test_context_that_is_not_a_json_object_fails_that_execution_only(sql_engine, context):
    engine = sql_engine
    poison = engine.start(Fine)
    ok = engine.start(Fine)
    _set(engine, poison, context=context)
    assert engine.drain() == 1
    assert engine.get_execution(ok).status == "completed"
    ex = engine.get_execution(poison)
    assert ex.status == "failed"
    assert "context:" in ex.error["message"]
    assert ex.context == {}


def test_an_error_that_is_not_the_rows_fault_fails_nothing(tmp_path, durable_clock, monkeypatch):
    """A MemoryError (or a bug) while decoding is the process's trouble, not the row's: the
    claim fails as a StoreError, the execution is left as it was, and runs later."""
    import durable.stores.sql.rows as sql_rows

    engine = durable.Engine(f"sqlite:///{tmp_path / 'memory.db'}", clock=durable_clock)
    wid = engine.start(Fine, {"big": "input"})
    real, calls = sql_rows.loads, []

    def short_of_memory(text):
        if text and "big" in text and not calls:
            calls.append(1)
            raise MemoryError
        return real(text)

    monkeypatch.setattr(sql_rows, "loads", short_of_memory)
    with pytest.raises(durable.StoreError, match="MemoryError"):
        engine.drain()
    assert engine.get_execution(wid).status == "pending"  # the claim was rolled back
    assert engine.drain() == 1
    ex = engine.get_execution(wid)
    assert (ex.status, ex.unreadable) == ("completed", ())
    engine.close()
