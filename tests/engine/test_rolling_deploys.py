"""Rolling deploys: while old and new workers run side by side, an old worker must not run
an execution that new code started, or it walks the old steps and skips the new ones
without a word. Each process tells the store the plans (fingerprints of the steps) of
the code it runs, every 20 s; a worker hands back an execution started by another plan
while another process with that plan was seen in the last minute. Once none has been,
any worker runs it.

Here ``durable_engine`` is the old deploy's worker and a second engine on the same store
and clock is a process of the new deploy (each engine keeps its own notes, as processes
do); the workflow is defined again by version, as a deploy would. The clock travels past
PLAN_LIVE to play "the other deploy's processes are gone"."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest

from durable import compensation, parallel, step, workflow
from durable._executor import HAND_BACK, PLAN_LIVE
from durable.context import append_context
from durable.waits import wait_for_event
from durable_testing import TimeTravelEngine


@pytest.fixture
def other(durable_store_url, durable_clock) -> Iterator[TimeTravelEngine]:
    """A process of the other deploy: its own engine on the same store and clock."""
    engine = TimeTravelEngine(store=durable_store_url, clock=durable_clock, migrate=False)
    try:
        yield engine
    finally:
        engine.close()


def refund(version: int) -> type:
    """The workflow as deploy ``version`` defines it: version 2 adds ``notify``."""

    @workflow("rolling_refund")
    class Refund:
        @step
        def approve(self):
            append_context("ran", "approve")

        if version >= 2:

            @step
            def notify(self):
                append_context("ran", "notify")

        @step(compensate="undo")
        def pay(self):
            append_context("ran", "pay")

        @compensation
        def undo(self):
            append_context("ran", "undo")

    return Refund


def test_an_old_worker_hands_back_what_new_code_started(
    durable_engine, other, durable_clock, caplog
):
    before = durable_engine.start(refund(1))  # the old deploy runs ...
    started = other.start(refund(2))  # ... and a process of the new one starts one
    refund(1)  # the old worker claims it
    caplog.set_level(logging.WARNING, logger="durable")
    durable_engine.drain()
    ex = durable_engine.get_execution(started, include_steps=True)
    assert ex.status == "pending"  # untouched: no step ran, no attempt counted
    assert ex.steps == [] and ex.attempt == 0
    assert ex.run_at == durable_clock.now() + HAND_BACK
    (warning,) = [r.getMessage() for r in caplog.records if "other code" in r.getMessage()]
    assert f"{started} of workflow 'rolling_refund' was started by other code" in warning
    assert "(steps approve, notify, pay)" in warning and "has steps approve, pay:" in warning
    # the old code still runs what it started itself
    assert durable_engine.run_until(before).context == {"ran": ["approve", "pay"]}
    # a new worker runs it, every step of it
    refund(2)
    done = other.run_until(started)
    assert done.status == "completed"
    assert done.context == {"ran": ["approve", "notify", "pay"]}


def test_new_code_waits_for_the_old_while_it_is_alive_then_runs_it(
    durable_engine, other, durable_clock
):
    wid = other.start(refund(1))  # an old worker's process started it ...
    other.run_until(wid, step="pay")
    other.scheduler.note_plans()
    refund(2)  # ... a new worker leaves it to the old code while that is alive ...
    durable_engine.drain()
    assert durable_engine.get_execution(wid).status == "pending"
    durable_clock.advance(PLAN_LIVE + timedelta(seconds=1))  # ... and runs it once it is gone
    # (notify was added before the step it is at: it is not run for this one)
    assert durable_engine.run_until(wid).context == {"ran": ["approve", "pay"]}


def test_a_handed_back_execution_midway_keeps_what_it_did(durable_engine, other):
    refund(2)
    wid = other.start("rolling_refund")
    other.run_until(wid, step="notify")  # a new worker ran approve
    refund(1)
    durable_engine.drain()
    ex = durable_engine.get_execution(wid)
    assert (ex.status, ex.current_step, ex.context) == ("pending", "notify", {"ran": ["approve"]})
    refund(2)
    assert durable_engine.run_until(wid).context == {"ran": ["approve", "notify", "pay"]}


def test_after_a_rollback_the_old_code_runs_what_the_new_started(
    durable_engine, other, durable_clock
):
    wid = other.start(refund(2))
    refund(1)  # rolled back: the new code's processes are gone
    durable_engine.drain()
    assert durable_engine.get_execution(wid).status == "pending"  # (for a minute)
    # then the old code runs it as its own steps say: notify is not run (nothing can)
    assert durable_engine.run_until(wid).context == {"ran": ["approve", "pay"]}
    assert durable_clock.now() - durable_engine.get_execution(wid).created_at > PLAN_LIVE


def saga(version: int) -> type:
    """Version 2 adds ``notify``, which has a compensation of its own."""

    @workflow("rolling_saga")
    class Saga:
        @step
        def approve(self):
            append_context("ran", "approve")

        if version >= 2:

            @step(compensate="unnotify")
            def notify(self):
                append_context("ran", "notify")

            @compensation
            def unnotify(self):
                append_context("ran", "unnotify")

        @step
        def pay(self):
            raise RuntimeError("the bank is closed")

    return Saga


def test_an_old_worker_leaves_a_new_executions_compensations_alone(durable_engine, other):
    wid = other.start(saga(2))
    other.run_until(wid, step="pay")
    saga(1)  # an old worker claims it at pay: it would fail it, or skip unnotify
    durable_engine.drain()
    ex = durable_engine.get_execution(wid)
    assert (ex.status, ex.current_step, ex.context) == (
        "pending",
        "pay",
        {"ran": ["approve", "notify"]},
    )
    saga(2)  # a new worker fails pay, then compensates
    done = durable_engine.run_until(wid)
    assert done.status == "compensated"
    assert done.context == {"ran": ["approve", "notify", "unnotify"]}


def grouped(version: int) -> type:
    """Version 2 adds a parallel group."""

    @workflow("rolling_grouped")
    class Grouped:
        @step
        def first(self):
            append_context("ran", "first")

        if version >= 2:

            @parallel
            class both:
                @step
                def x(self):
                    wait_for_event("go")

                @step
                def y(self):
                    return "y"

        @step
        def last(self):
            append_context("ran", "last")

    return Grouped


def test_an_old_worker_hands_back_a_unit_of_a_group_it_does_not_have(durable_engine, other):
    wid = other.start(grouped(2))
    other.run_until(wid, "waiting")  # a new worker forked the units; x waits
    grouped(1)  # an old worker claims x when it wakes: it would fail the execution
    durable_engine.send_event(wid, "go")
    durable_engine.drain()
    ex = durable_engine.get_execution(wid)
    assert ex.status in ("pending", "waiting") and ex.error is None
    grouped(2)
    done = durable_engine.run_until(wid)
    assert (done.status, done.context["ran"]) == ("completed", ["first", "last"])


def body(label: str) -> type:
    """A one-step workflow whose step's body differs by deploy, not its plan."""

    @workflow("rolling_body")
    class Body:
        @step
        def only(self):
            append_context("ran", label)

    return Body


def test_a_changed_body_is_the_same_plan(durable_engine, other):
    wid = other.start(body("v2"))
    body("v1")  # an old worker: the same steps, so the same plan, and it runs it
    assert durable_engine.run_until(wid).context == {"ran": ["v1"]}


def test_one_process_that_defines_a_workflow_again_runs_it_as_it_is_now(
    durable_engine, durable_clock
):
    """A test (or a notebook) that defines a workflow again in one process is not two
    deploys: what it started under the earlier definition runs under the new one."""
    durable_engine.start(refund(2))
    wid = durable_engine.start("rolling_refund")
    refund(1)
    assert durable_engine.run_until(wid).context == {"ran": ["approve", "pay"]}


def test_a_process_that_only_starts_old_executions_does_not_hold_them(durable_engine, other):
    """An old web process (it only starts executions) outlives the old workers: the new
    code, which has every step of the old, runs what it starts."""
    wid = other.start(refund(1))  # the old web process; no old worker anywhere
    refund(2)
    durable_engine.drain()  # at once, not a minute later
    ex = durable_engine.get_execution(wid)
    assert (ex.status, ex.context) == ("completed", {"ran": ["approve", "notify", "pay"]})


def test_a_live_old_worker_gets_back_what_the_old_code_started(durable_engine, other):
    wid = other.start(refund(1))
    other.scheduler.note_plans()  # an old worker is alive
    refund(2)
    durable_engine.drain()  # the new worker leaves it to the old one
    assert durable_engine.get_execution(wid).status == "pending"
    refund(1)
    assert other.run_until(wid).context == {"ran": ["approve", "pay"]}


def test_an_old_worker_of_other_queues_does_not_hold_this_queues_executions(durable_engine, other):
    wid = other.start(refund(1))
    other.scheduler.note_plans(["emails"])  # an old worker, but for the emails queue only
    refund(2)
    durable_engine.drain()  # the old worker would never claim it: the new one runs it
    assert durable_engine.get_execution(wid).status == "completed"


def test_an_execution_moved_on_by_other_code_stays_with_it(durable_engine, other, durable_clock):
    """Old code started it, new code took it to a step the old does not have: an old
    worker that comes back does not get it (it could not go on from there)."""
    wid = other.start(refund(1))
    durable_clock.advance(PLAN_LIVE + timedelta(seconds=1))  # the old code is gone
    refund(2)
    durable_engine.run_until(wid, step="notify")  # a new worker ran approve; at notify
    refund(1)
    other.scheduler.note_plans()  # an old worker comes back to life ...
    refund(2)
    durable_engine.drain()  # ... and the new worker still goes on with it
    assert durable_engine.get_execution(wid).context == {"ran": ["approve", "notify", "pay"]}


def test_every_store_keeps_who_ran_a_plan_last(durable_engine, durable_clock):
    store = durable_engine.store
    t0 = durable_clock.now()
    assert store.plan_seen("rolling_x", "p1", besides="me") == (None, None)
    store.note_plan("rolling_x", "p1", process="web", worker=False, now=t0)
    later = t0 + timedelta(seconds=30)
    store.note_plan("rolling_x", "p1", process="worker", worker=True, now=later)
    store.note_plan("rolling_x", "p1", process="worker", worker=False, now=t0)
    assert store.plan_seen("rolling_x", "p1", besides="me") == (later, later)
    assert store.plan_seen("rolling_x", "p1", besides="worker") == (None, t0)


@pytest.mark.parametrize("skew", [timedelta(0), timedelta(hours=1)])
def test_a_worker_notes_its_plans_only_while_its_clock_agrees_with_the_stores(
    durable_engine, durable_clock, monkeypatch, skew
):
    """A worker whose clock is far from the store's claims nothing, and must not say its
    code is alive either: its notes would carry its wrong time."""
    from concurrent.futures import ThreadPoolExecutor

    from durable._worker import Worker
    from durable.dsl import get_workflow

    refund(1)
    scheduler = durable_engine.scheduler
    monkeypatch.setattr(scheduler, "_checks_skew", True)
    monkeypatch.setattr(durable_engine.store, "server_time", lambda: durable_clock.now() - skew)
    worker = Worker(scheduler, queues=None, concurrency=1, poll_ms=1000)
    with ThreadPoolExecutor(1) as pool:
        worker._claim_some(pool)  # (one turn of its loop: nothing is due)
    plan = get_workflow("rolling_refund").plan
    seen = durable_engine.store.plan_seen("rolling_refund", plan, besides="someone else")
    assert scheduler.refusing_claims == (skew > timedelta(0))
    assert seen == ((None, None) if skew else (durable_clock.now(), durable_clock.now()))
