"""Cancelling a step while it runs: an async step stops at its current await (its
CancelledError cleanup runs, its result is discarded); a sync step can look with
durable.context.cancel_requested(). The cancel reaches the worker at once in-process and on
PostgreSQL (NOTIFY), and at the next heartbeat elsewhere."""

from __future__ import annotations

import asyncio
import threading

import pytest

import durable
from durable import compensation, seconds, step, workflow
from durable.context import cancel_requested, put_context

entered = threading.Event()
cleaned = threading.Event()
release = threading.Event()  # lets a sync step stuck in a test go, whatever happens


@workflow("cancel_async_step")
class AsyncStep:
    @step
    def first(self):
        put_context("first", True)

    @step
    async def slow(self):
        put_context("slow", "started")  # discarded with the attempt
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cleaned.set()
            raise
        put_context("slow", "done")


@workflow("cancel_sync_step")
class SyncStep:
    @step
    def loop(self):
        entered.set()
        for _ in range(2000):
            if cancel_requested():
                put_context("stopped_early", True)  # discarded: the cancel wins
                return "stopped"
            release.wait(0.01)
        return "ran to the end"


@workflow("cancel_async_saga")
class AsyncSaga:
    @step(compensate="undo")
    def book(self):
        put_context("booked", True)

    @step
    async def wait_long(self):
        entered.set()
        await asyncio.sleep(3600)

    @compensation
    def undo(self):
        put_context("undone", True)


def _reset() -> None:
    entered.clear()
    cleaned.clear()
    release.clear()


def test_an_async_step_is_cancelled_at_its_await_and_its_cleanup_runs(durable_engine):
    _reset()
    wid = durable_engine.start(AsyncStep)
    with durable_engine.worker(concurrency=1):
        assert entered.wait(30)
        durable_engine.cancel(wid, reason="operator")
        ex = durable_engine.wait(wid, timeout=seconds(30))
    assert ex.status == "cancelled"
    assert cleaned.is_set()  # its `except CancelledError` ran
    assert ex.context == {"first": True}  # the cancelled attempt's writes are gone
    steps = durable_engine.get_execution(wid, include_steps=True).steps
    assert [(s.name, s.status) for s in steps] == [("first", "completed"), ("slow", "cancelled")]


def test_a_sync_step_sees_cancel_requested_and_its_result_is_discarded(durable_engine):
    _reset()
    wid = durable_engine.start(SyncStep)
    try:
        with durable_engine.worker(concurrency=1):
            assert entered.wait(30)
            durable_engine.cancel(wid)
            ex = durable_engine.wait(wid, timeout=seconds(30))
    finally:
        release.set()
    assert ex.status == "cancelled" and ex.context == {}
    (record,) = durable_engine.get_execution(wid, include_steps=True).steps
    assert record.status == "cancelled" and record.result is None


def test_cancel_requested_is_false_while_nobody_cancelled(durable_engine):
    @workflow("cancel_not_asked")
    class NotAsked:
        @step
        def look(self):
            put_context("asked", cancel_requested())

    wid = durable_engine.start(NotAsked)
    assert durable_engine.run_until(wid).context == {"asked": False}


def test_a_running_async_step_cancelled_starts_the_compensations(durable_engine):
    _reset()
    wid = durable_engine.start(AsyncSaga)
    with durable_engine.worker(concurrency=1):
        assert entered.wait(30)
        assert durable_engine.cancel(wid).status == "compensating"
        ex = durable_engine.wait(wid, timeout=seconds(30))
    assert ex.status == "compensated"
    assert ex.context == {"booked": True, "undone": True}


@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
def test_a_cancel_from_another_engine_reaches_the_worker(kind, request, tmp_path):
    """On PostgreSQL the cancel comes by NOTIFY, long before the worker's next heartbeat
    (its lease is a minute: it beats every 20 s); on SQLite, at its next heartbeat (a lease
    of 3 s: within a second)."""
    _reset()
    if kind == "postgres":
        url = request.getfixturevalue("durable_store_url_pg")
        lease = durable.minutes(1)
    else:
        url = f"sqlite:///{tmp_path / 'c.db'}"
        lease = seconds(3)
    runner = durable.Engine(url, lease=lease)
    operator = durable.Engine(url)
    try:
        wid = operator.start(AsyncStep)
        with runner.worker(concurrency=1):
            assert entered.wait(30)
            operator.cancel(wid, reason="from elsewhere")
            # well within a heartbeat on PostgreSQL: only NOTIFY can have told the worker
            ex = operator.wait(wid, timeout=seconds(10))
        assert ex.status == "cancelled" and cleaned.is_set()
    finally:
        runner.close()
        operator.close()


@pytest.mark.parametrize("how", ["inline", "thread", "async"])
def test_a_step_whose_cancel_came_before_its_body_began_never_begins(how):
    from datetime import timedelta

    from durable._invoke import AsyncRunner, invoke
    from durable._runtime import StepRun
    from durable_testing.clock import TimeTravelClock

    clock = TimeTravelClock()
    runner = AsyncRunner()
    began: list[str] = []

    def body():
        began.append("sync")

    async def async_body():
        began.append("async")

    run = StepRun("ex-1", "wf", "step", 1, None, {}, clock)
    run.request_cancel()  # (the worker heard of the cancel between the claim and the attempt)
    try:
        outcome = invoke(
            async_body if how == "async" else body,
            run,
            is_async=how == "async",
            until=clock.now() + timedelta(seconds=5) if how == "thread" else None,
            clock=clock,
            runner=runner,
        )
    finally:
        runner.close()
        clock.close()
    assert isinstance(outcome.error, asyncio.CancelledError)
    assert began == []
