"""Workers, leases, heartbeats, crash recovery and fencing (in one process, on the
test clock; the multi-process versions run against the SQL stores)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

import durable
from durable import Retry, seconds, step, workflow
from durable.context import attempt, put_context, workflow_id
from durable.models import StepExecution, StepStatus

from helpers import eventually
from workflows import ORDER, OrderWorkflow

shared: dict[str, object] = {}
gate = threading.Event()


@pytest.fixture(autouse=True)
def _open_gate():
    gate.clear()
    shared.clear()
    yield
    gate.set()


def test_worker_runs_everything_with_concurrency(engine, recorder):
    ids = [engine.start(OrderWorkflow, ORDER) for _ in range(30)]
    with engine.worker(queues=["default"], concurrency=4):
        assert recorder.wait_done(30)
    assert {engine.get_execution(i).status for i in ids} == {"completed"}
    assert len(engine.list_executions(status="completed", limit=100)) == 30


def test_worker_picks_up_retries_when_the_clock_reaches_them(engine, recorder, durable_clock):
    wid = engine.start(OrderWorkflow, {**ORDER, "fail_payment": 2})
    with engine.worker(concurrency=2):
        assert eventually(
            lambda: (
                engine.get_execution(wid).attempt == 1
                and engine.get_execution(wid).status == "pending"
            )
        )
        durable_clock.advance(seconds(2))
        assert eventually(
            lambda: (
                engine.get_execution(wid).attempt == 2
                and engine.get_execution(wid).status == "pending"
            )
        )
        durable_clock.advance(seconds(4))
        assert recorder.wait_done(1)
    assert engine.get_execution(wid).context["charge_id"] == "ch_1"


@workflow("held_step")
class Held:
    @step
    def hold(self) -> None:
        shared["started"] = True
        gate.wait(10)
        put_context("done", workflow_id())


def test_heartbeats_keep_a_long_step_claimed(engine, durable_clock, recorder):
    other = durable.Engine(engine.store, clock=durable_clock)
    wid = engine.start(Held)
    with engine.worker(concurrency=1):
        assert eventually(lambda: shared.get("started") is True)
        lease = timedelta(milliseconds=engine.lease_ms)
        for _ in range(6):  # two whole leases, a third at a time
            durable_clock.advance(engine.lease_ms // 3)
            target = durable_clock.now() + lease
            assert eventually(lambda t=target: engine.store.get(wid).lease_expires_at == t), (
                engine.store.get(wid),
                target,
            )
            assert other.drain() == 0  # the claim is alive: nobody else can take it
        gate.set()
        assert recorder.wait_done(1)
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.status == "completed"
    assert len(ex.steps) == 1


@workflow("crash_victim")
class CrashVictim:
    @step
    def first(self) -> None:
        put_context("first", attempt())

    @step(retry=Retry(max_attempts=3, backoff="constant", base=5))
    def second(self) -> None:
        put_context("second", attempt())


def test_lost_worker_is_recovered_after_its_lease_and_the_attempt_counts(engine, durable_clock):
    store = engine.store
    crashed = durable.Engine(store, clock=durable_clock, lease=seconds(30))
    survivor = durable.Engine(store, clock=durable_clock)
    wid = crashed.start(CrashVictim)
    # The first worker claims (which begins attempt 1 of the first step) and dies.
    (row,) = crashed._claim(None, limit=1)
    assert row.began and row.attempt == 1

    assert survivor.drain() == 0  # lease still live
    durable_clock.advance(seconds(30) - 1)
    assert survivor.drain() == 0
    durable_clock.advance(1)
    assert survivor.drain() == 1  # lost attempt recorded; no retry policy: one attempt
    ex = survivor.get_execution(wid, include_steps=True)
    assert ex.status == "failed"
    assert ex.steps[0].error["type"] == "WorkerLost"
    assert ex.error["step"] == "first"


def test_lost_attempt_with_budget_left_is_retried_and_completed_steps_do_not_rerun(
    engine, durable_clock
):
    store = engine.store
    crashed = durable.Engine(store, clock=durable_clock, lease=seconds(30))
    survivor = durable.Engine(store, clock=durable_clock)
    wid = crashed.start(CrashVictim)
    (row,) = crashed._claim(None, limit=1)
    # first step completes and second begins in one transaction, then the worker dies
    now = durable_clock.now()
    crashed.store.complete_step(
        wid,
        row.token,
        now=now,
        record=StepExecution("first", StepStatus.COMPLETED, 1, now, now),
        context={"first": 1},
        next_step=(1, "second"),
        start_next=True,
    )
    durable_clock.advance(seconds(30))
    survivor.drain()
    ex = survivor.get_execution(wid, include_steps=True)
    assert ex.status == "pending"
    assert [(s.name, s.attempt, s.status) for s in ex.steps] == [
        ("first", 1, "completed"),
        ("second", 1, "failed"),
    ]
    assert ex.steps[1].error["type"] == "WorkerLost"
    durable_clock.advance(seconds(5))
    survivor.drain()
    ex = survivor.get_execution(wid, include_steps=True)
    assert ex.status == "completed"
    assert ex.context == {"first": 1, "second": 2}  # first did not run again
    assert [s.name for s in ex.steps].count("first") == 1


@workflow("paused_worker")
class PausedWorker:
    @step(retry=Retry(max_attempts=3, backoff="constant", base=1))
    def slow(self) -> None:
        if attempt() == 1:
            # This worker "pauses" past its lease; another worker takes over meanwhile.
            clock = shared["clock"]
            clock.advance(seconds(31))  # type: ignore[attr-defined]
            assert shared["survivor"].drain() == 1  # type: ignore[attr-defined]
        put_context("written_by_attempt", attempt())


def test_a_worker_that_lost_its_lease_cannot_write(engine, durable_clock, caplog):
    store = engine.store
    paused = durable.Engine(store, clock=durable_clock, lease=seconds(30))
    paused._heartbeat.stop()  # a paused process sends no heartbeats
    survivor = durable.Engine(store, clock=durable_clock)
    shared.update(clock=durable_clock, survivor=survivor)
    wid = paused.start(PausedWorker)
    paused.drain()  # attempt 1 returns after the takeover: its completion is refused
    assert "no longer claimed by this worker" in caplog.text
    ex = survivor.get_execution(wid, include_steps=True)
    assert ex.status == "pending"
    assert ex.context == {}
    durable_clock.advance(seconds(1))
    survivor.drain()
    ex = survivor.get_execution(wid, include_steps=True)
    assert ex.status == "completed"
    assert ex.context == {"written_by_attempt": 2}
    assert [(s.attempt, s.status) for s in ex.steps] == [(1, "failed"), (2, "completed")]


def test_stale_tokens_are_refused_by_every_claimed_write(engine, durable_clock):
    eng = durable.Engine(engine.store, clock=durable_clock, lease=seconds(10))
    wid = eng.start(OrderWorkflow, ORDER)
    (old,) = eng._claim(None, limit=1)
    durable_clock.advance(seconds(10))
    (new,) = eng._claim(None, limit=1)
    assert new.token == old.token + 1
    now = durable_clock.now()
    rec = StepExecution("validate", StepStatus.COMPLETED, 1, now, now)
    writes = [
        lambda: eng.store.complete_step(
            wid, old.token, now=now, record=rec, context={}, next_step=None, start_next=False
        ),
        lambda: eng.store.fail_attempt(
            wid, old.token, now=now, record=rec, retry_at=None, error={"type": "x"}
        ),
        lambda: eng.store.finish(wid, old.token, now=now, status=durable.Status.FAILED, error=None),
        lambda: eng.store.release(wid, old.token, now=now, attempt_ran=False),
    ]
    for write in writes:
        with pytest.raises(durable.LeaseLost):
            write()
    assert eng.store.heartbeat([(wid, old.token)], now=now, lease_ms=1000) == [wid]
    assert eng.store.get(wid).token == new.token


def test_graceful_stop_releases_between_steps(engine, durable_clock, recorder):
    wid = engine.start(Held)
    with engine.worker(concurrency=1) as worker:
        assert eventually(lambda: shared.get("started") is True)
        worker.stop()
        gate.set()
    ex = engine.get_execution(wid)
    assert ex.status == "completed"  # the running step finished; nothing was lost
