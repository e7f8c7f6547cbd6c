"""Workers, leases, heartbeats, crash recovery and fencing (in one process, on the
test clock; the multi-process versions run against the SQL stores)."""

from __future__ import annotations

import asyncio
import sys
import threading
from datetime import timedelta

import pytest

import durable
from durable import Retry, minutes, seconds, step, workflow
from durable.context import append_context, attempt, put_context, workflow_id
from durable.models import StepExecution, StepStatus
from durable.stores.base import ExecutionRow
from durable.stores.memory import MemoryStore

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


def test_the_scheduler_claims_and_executes(durable_clock):
    with durable.Engine("memory://", clock=durable_clock) as engine:
        wid = engine.start(CrashVictim)
        scheduler = engine.scheduler
        assert scheduler.workflows() and "crash_victim" in scheduler.workflows()
        (row,) = scheduler.claim(limit=5)
        assert row.id == wid and row.status == "running"
        assert scheduler.claim() == []  # claimed already
        scheduler.execute(row, stop_at=lambda name: name == "second")
        ex = engine.get_execution(wid)
        assert (ex.status, ex.current_step) == ("pending", "second")
        assert scheduler.run_due() == 1
        assert engine.get_execution(wid).status == "completed"
        assert scheduler.next_due() is None


@pytest.mark.parametrize("durable_store_url", ["postgres"], indirect=True)
def test_a_dropped_claim_is_not_left_locked_by_a_beat_in_flight(engine, durable_clock):
    """A beat's UPDATE holds the row's lock for a moment even when it finds the claim gone;
    drop() waits it out, so a claim just after (FOR UPDATE SKIP LOCKED) sees the row. Once,
    under load, drain() passed over a retry that was due this way."""
    import psycopg

    wid = engine.start(OrderWorkflow, ORDER)
    heartbeat = engine.scheduler.heartbeat
    (row,) = engine.scheduler.claim()
    claim = heartbeat.hold(row)
    heartbeat.stop()  # beats come from this test only
    durable_clock.advance(seconds(engine.scheduler.lease_ms / 1000))  # a beat is due
    order: list[str] = []
    with psycopg.connect(engine.store.url, autocommit=True) as other:
        with other.transaction():  # another transaction holds the row
            other.execute("SELECT 1 FROM durable_executions WHERE id = %s FOR UPDATE", (wid,))

            def beat() -> None:
                heartbeat.beat()
                order.append("beat done")

            def drop() -> None:
                heartbeat.drop(claim)
                order.append("dropped")

            beating = threading.Thread(target=beat)
            beating.start()
            waiting = (
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            with psycopg.connect(engine.store.url, autocommit=True) as watch:
                assert eventually(lambda: watch.execute(waiting).fetchone()[0] >= 1)
            dropping = threading.Thread(target=drop)
            dropping.start()
            dropping.join(0.5)  # a drop that does not wait for the beat returns meanwhile
        beating.join(10)
        dropping.join(10)
    assert order == ["beat done", "dropped"]


def test_lost_worker_is_recovered_after_its_lease_and_the_attempt_runs_again_for_free(
    engine, durable_clock
):
    store = engine.store
    crashed = durable.Engine(store, clock=durable_clock, lease=seconds(30))
    survivor = durable.Engine(store, clock=durable_clock)
    wid = crashed.start(CrashVictim)
    # The first worker claims (which begins attempt 1 of the first step) and dies.
    (row,) = crashed.scheduler.claim(None, limit=1)
    assert row.began and row.attempt == 1

    assert survivor.drain() == 0  # lease still live
    durable_clock.advance(seconds(30) - 1)
    assert survivor.drain() == 0
    durable_clock.advance(1)
    # The lost attempt is recorded and runs again, without spending the budget of a step
    # that has only one attempt.
    assert survivor.drain() == 1
    ex = survivor.get_execution(wid, include_steps=True)
    assert ex.status == "completed"
    assert ex.context == {"first": 1, "second": 1}
    assert [(s.name, s.attempt, s.status) for s in ex.steps] == [
        ("first", 1, "lost"),
        ("first", 1, "completed"),
        ("second", 1, "completed"),
    ]
    assert ex.steps[0].error["type"] == "durable.errors.WorkerLost"
    assert "without spending the step's retry budget" in ex.steps[0].error["message"]
    assert ex.steps[0].completed_at == durable_clock.now()  # recorded when found lost


def test_lost_attempt_in_a_later_step_runs_again_and_completed_steps_do_not_rerun(
    engine, durable_clock
):
    store = engine.store
    crashed = durable.Engine(store, clock=durable_clock, lease=seconds(30))
    survivor = durable.Engine(store, clock=durable_clock)
    wid = crashed.start(CrashVictim)
    (row,) = crashed.scheduler.claim(None, limit=1)
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
        next_max_attempts=3,
    )
    durable_clock.advance(seconds(30))
    survivor.drain()
    ex = survivor.get_execution(wid, include_steps=True)
    assert ex.status == "completed"
    assert ex.context == {"first": 1, "second": 1}  # first did not run again
    assert [(s.name, s.attempt, s.status) for s in ex.steps] == [
        ("first", 1, "completed"),
        ("second", 1, "lost"),
        ("second", 1, "completed"),
    ]
    assert ex.steps[1].max_attempts == 3


@workflow("exits_its_worker")
class ExitsItsWorker:
    @step
    def first(self) -> None:
        put_context("first", True)

    @step(retry=Retry(max_attempts=3, backoff="constant", base=5))
    def second(self) -> None:
        shared["exits"] = int(shared.get("exits", 0)) + 1  # type: ignore[call-overload]
        sys.exit(3)  # as a step that crashes its worker process would


def test_a_step_that_stops_its_worker_every_time_still_ends(durable_engine):
    """SystemExit from a step stops the process after releasing the claim, the attempt in
    flight; its next owner runs it again. Three such losses per step run are free; after
    that each counts as a failed attempt, so the budget (three attempts) runs out."""
    engine = durable_engine
    wid = engine.start(ExitsItsWorker)
    exits = 0
    for _ in range(30):
        if engine.get_execution(wid).finished:
            break
        try:
            engine.drain()
        except SystemExit as stop:
            assert stop.code == 3
            exits += 1
            assert engine.get_execution(wid).status == "pending"  # released at once
        engine.advance_to_next()
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.status == "failed"
    assert ex.context == {"first": True}
    assert ex.error["type"] == "durable.errors.WorkerLost"
    assert "counts as a failed attempt" in ex.error["message"]
    assert exits == shared["exits"] == 6  # 1 + 3 free re-runs, then attempts 2 and 3
    assert [(s.attempt, s.status) for s in ex.steps if s.name == "second"] == [
        (1, "lost"),
        (1, "lost"),
        (1, "lost"),
        (1, "failed"),  # the fourth loss of attempt 1
        (2, "failed"),
        (3, "failed"),
    ]


@workflow("paused_worker")
class PausedWorker:
    @step(retry=Retry(max_attempts=3, backoff="constant", base=1))
    def slow(self) -> None:
        if not shared.get("paused"):
            # This worker "pauses" past its lease; another worker takes over meanwhile.
            shared["paused"] = True
            clock = shared["clock"]
            clock.advance(seconds(31))  # type: ignore[attr-defined]
            assert shared["survivor"].drain() == 1  # type: ignore[attr-defined]
            put_context("written_by", "paused")
        else:
            put_context("written_by", "survivor")


def test_a_worker_that_lost_its_lease_cannot_write(engine, durable_clock, caplog):
    store = engine.store
    paused = durable.Engine(store, clock=durable_clock, lease=seconds(30))
    paused.scheduler.heartbeat.stop()  # a paused process sends no heartbeats
    survivor = durable.Engine(store, clock=durable_clock)
    shared.update(clock=durable_clock, survivor=survivor)
    wid = paused.start(PausedWorker)
    # The step pauses past its lease; the survivor takes over and runs the lost attempt
    # again (its completion commits); then the paused attempt's completion is refused.
    paused.drain()
    assert "no longer claimed by this worker" in caplog.text
    ex = survivor.get_execution(wid, include_steps=True)
    assert ex.status == "completed"
    assert ex.context == {"written_by": "survivor"}
    assert [(s.attempt, s.status) for s in ex.steps] == [(1, "lost"), (1, "completed")]


def test_stale_tokens_are_refused_by_every_claimed_write(engine, durable_clock):
    eng = durable.Engine(engine.store, clock=durable_clock, lease=seconds(10))
    wid = eng.start(OrderWorkflow, ORDER)
    (old,) = eng.scheduler.claim(None, limit=1)
    durable_clock.advance(seconds(10))
    (new,) = eng.scheduler.claim(None, limit=1)
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


@workflow("loses_between_waits")
class LosesBetweenWaits:
    @step  # one attempt, no retries
    def work(self) -> None:
        for i in range(5):
            durable.wait_for_event(f"e{i}")
        put_context("done", True)


def test_losses_spread_over_a_waiting_steps_resumes_do_not_add_up(engine, durable_clock):
    """Five resumes, each lost once with its worker before running (as when a claim's
    reply is lost): each run that reaches the next wait is progress, so the count of lost
    runs starts again there and the one-attempt step still completes."""
    wid = engine.start(LosesBetweenWaits)
    engine.drain()
    for i in range(5):
        engine.send_event(wid, f"e{i}")
        crashed = durable.Engine(engine.store, clock=durable_clock, lease=seconds(30))
        (_claimed,) = crashed.scheduler.claim(None, limit=1)  # claims (begins the resume), dies
        crashed.scheduler.heartbeat.stop()
        durable_clock.advance(seconds(30))
        engine.drain()
    ex = engine.get_execution(wid, include_steps=True)
    assert (ex.status, ex.context) == ("completed", {"done": True})
    assert [s.status for s in ex.steps].count("lost") == 5
    assert "failed" not in [s.status for s in ex.steps]


@workflow("workers_long_step")
class LongStep:
    @step(timeout=minutes(5))
    def work(self) -> None:
        append_context("runs", attempt())
        shared.setdefault("runs", []).append(attempt())  # type: ignore[attr-defined]
        gate.wait(10)


def test_a_clock_jump_past_the_lease_does_not_make_the_engine_steal_its_own_claim(
    engine, durable_clock, recorder
):
    wid = engine.start(LongStep)
    with engine.worker(concurrency=2, poll_interval=seconds(1)):
        assert eventually(lambda: shared.get("runs") == [1])
        durable_clock.advance(minutes(1))  # past the 30 s lease, within the step timeout
        # let the worker loop and the heartbeat both see the jump
        durable_clock.advance(1)
        assert eventually(lambda: engine.store.get(wid).lease_expires_at > durable_clock.now())
        gate.set()
        assert recorder.wait_done(1)
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.status == "completed"
    assert shared["runs"] == [1]
    assert [(s.attempt, s.status) for s in ex.steps] == [(1, "completed")]


class FlakyNextDue(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    def next_due(self, *, queues, workflows):
        if self.failures:
            self.failures -= 1
            raise durable.StoreError("database restarting")
        return super().next_due(queues=queues, workflows=workflows)


def test_a_store_error_in_the_idle_loop_does_not_kill_the_worker(durable_clock, recorder):
    store = FlakyNextDue()
    eng = durable.Engine(store, clock=durable_clock, plugins=[recorder])
    with eng.worker(concurrency=1):
        assert eventually(lambda: store.failures == 0)
        durable_clock.advance(seconds(1))  # past the worker's backoff
        wid = eng.start(OrderWorkflow, ORDER)
        assert recorder.wait_done(1)
    assert eng.get_execution(wid).status == "completed"


def test_next_due_ignores_workflows_this_worker_cannot_run(engine, durable_clock):
    now = durable_clock.now()
    engine.store.create(
        ExecutionRow(
            id="ghost",
            workflow="not_deployed_here",
            status=durable.Status.PENDING,
            queue="default",
            priority=0,
            input=None,
            context={},
            created_at=now,
            scheduled_at=now,
            run_at=now,
        )
    )
    assert engine.store.next_due(queues=None, workflows=None) == now
    assert engine.store.next_due(queues=None, workflows=["process_order"]) is None
    assert engine.drain() == 0  # and nothing claims it


started = threading.Event()


@workflow("workers_async_forever")
class AsyncForever:
    @step
    async def s(self) -> None:
        started.set()
        await asyncio.Event().wait()


def test_close_returns_with_an_async_step_in_flight(durable_store_url):
    started.clear()
    eng = durable.Engine(durable_store_url)
    thread = threading.Thread(target=eng.run_worker, daemon=True)
    thread.start()
    wid = eng.start(AsyncForever)
    assert started.wait(10)
    eng.close(timeout=0.1)  # the step never ends by itself: its task is cancelled
    thread.join(10)
    assert not thread.is_alive()
    ex = eng.get_execution(wid)  # (a closed engine can still read)
    assert ex.status == "pending"  # handed back, resumable at once
