"""Retention: purging finished executions and everything kept for them, on every store."""

from __future__ import annotations

from datetime import timedelta

import pytest

import durable
from durable import days, hours
from wait_workflows import Several, Sleepy

from workflows import ORDER, OrderWorkflow, RecordWorkflow


def test_purge_deletes_what_finished_long_enough_ago_and_nothing_else(engine, durable_clock):
    old_done = engine.start(OrderWorkflow, ORDER, idempotency_key="order-1")
    old_failed = engine.start(OrderWorkflow, {**ORDER, "fail_payment": 9})
    waiting = engine.start(Several)  # old but never finishes: never purged
    engine.send_event(waiting, "unrelated", 1)
    engine.drain()
    for _ in range(3):  # the failing one runs out of retries
        durable_clock.advance(hours(1))
        engine.drain()
    assert engine.get_execution(old_failed).status == "failed"  # all finished by +3 h
    durable_clock.advance(days(30))
    recent = engine.start(OrderWorkflow, ORDER)
    engine.drain()
    pending_old = engine.start(
        OrderWorkflow, ORDER, scheduled_at=durable_clock.now() + timedelta(days=365)
    )

    assert engine.purge(days(30) + hours(4)) == 0  # nothing finished that long ago
    assert engine.purge(days(30)) == 2
    for wid in (old_done, old_failed):
        with pytest.raises(durable.ExecutionNotFound):
            engine.get_execution(wid)
        assert engine.store.steps(wid) == []
    left = {e.id for e in engine.list_executions(limit=100)}
    assert left == {waiting, recent, pending_old}
    assert [w.execution_id for w in engine.list_waits()] == [waiting]
    # the idempotency key of a purged execution can be used again
    again = engine.start(OrderWorkflow, ORDER, idempotency_key="order-1")
    assert again != old_done


def test_purge_by_workflow_and_in_batches(engine, durable_clock):
    orders = [engine.start(OrderWorkflow, ORDER) for _ in range(5)]
    records = [engine.start(RecordWorkflow, {"name": str(i)}) for i in range(3)]
    engine.drain()
    durable_clock.advance(days(1))
    assert engine.purge(hours(1), workflow=RecordWorkflow, batch=2) == 3
    assert engine.purge(hours(1), batch=2) == 5
    assert engine.list_executions() == []
    assert len(orders + records) == 8


def test_purge_removes_waits_and_events_of_cancelled_executions(engine, durable_clock):
    wid = engine.start(Sleepy)
    engine.drain()
    engine.cancel(wid)
    durable_clock.advance(days(2))
    assert engine.purge(days(1)) == 1
    assert engine.store.waits(pending_only=False, execution_id=wid) == []


def test_purge_checks_its_arguments(engine):
    with pytest.raises(durable.ConfigError, match="older_than must be"):
        engine.purge(-1)
    with pytest.raises(durable.ConfigError, match="batch must be an int >= 1"):
        engine.purge(1000, batch=0)


def test_purge_command(tmp_path):
    from click.testing import CliRunner

    from durable.cli import main

    url = f"sqlite:///{tmp_path / 'p.db'}"
    with durable.Engine(url) as eng:
        eng.start(RecordWorkflow, {"name": "x"})
        eng.drain()
    run = CliRunner().invoke
    bad = run(main, ["--store", url, "purge", "--older-than", "ninety days"])
    assert bad.exit_code == 2 and "use a number and a unit" in bad.output
    kept = run(main, ["--store", url, "-i", "workflows", "purge", "--older-than", "1d"])
    assert kept.exit_code == 0 and "purged 0 execution(s)" in kept.output
    gone = run(main, ["--store", url, "-i", "workflows", "purge", "--older-than", "0ms"])
    assert "purged 1 execution(s) finished more than 0ms ago" in gone.output


def test_sqlite_purge_uses_the_finished_index(tmp_path):
    store = durable.Engine(f"sqlite:///{tmp_path / 'plan.db'}").store
    sql = store.SQL["purge_pick"]
    with store.sa_engine().connect() as conn:
        params = {"before": "2030-01-01", "workflows": None, "limit": 10}
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).all()
        plan = " ".join(str(r[-1]) for r in rows)
    assert "durable_executions_finished" in plan
    assert "TEMP B-TREE" not in plan  # no sort of every finished execution
    store.close()


@pytest.mark.parametrize("durable_store_url", ["sqlite", "postgres"], indirect=True)
def test_a_key_whose_execution_was_purged_meanwhile_starts_anew(engine, monkeypatch):
    # (SQL stores only: the memory store holds one lock, no window between insert and read)
    first = engine.start(RecordWorkflow, {"name": "a"}, idempotency_key="k")
    store = engine.store
    # Fault injection: a purge landing between the conflicting insert and the read of the
    # key's execution is a race no public call can time, so the read is intercepted.
    real = store._one
    calls = {"n": 0}

    def purged_meanwhile(name, params):
        if name == "by_key" and calls["n"] == 0:
            calls["n"] += 1
            store.purge(
                finished_before=engine.clock.now() + timedelta(days=1), workflows=None, limit=10
            )
            return None
        return real(name, params)

    engine.drain()
    monkeypatch.setattr(store, "_one", purged_meanwhile)
    again = engine.start(RecordWorkflow, {"name": "b"}, idempotency_key="k")
    assert again != first
    assert engine.get_execution(again).input == {"name": "b"}
