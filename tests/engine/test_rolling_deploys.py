"""Rolling deploys: while old and new workers run side by side, an old worker must not run
an execution that new code started, or it walks the old steps and skips the new ones
without a word. Each code's plan (a fingerprint of its steps) is noted in the store with
when it was first seen; a worker hands back an execution started by a plan newer than its
own. One process plays both deploys here, swapping the workflow's definition."""

from __future__ import annotations

import logging
from datetime import timedelta

from durable import compensation, seconds, step, workflow
from durable._executor import HAND_BACK
from durable.context import append_context


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


def test_an_old_worker_hands_back_what_new_code_started(durable_engine, durable_clock, caplog):
    old = refund(1)
    before = durable_engine.start(old)  # the old code is in use first
    durable_clock.advance(seconds(60))
    new = refund(2)
    started = durable_engine.start(new)  # the new code starts an execution ...
    refund(1)  # ... and an old worker, still running, claims it
    caplog.set_level(logging.WARNING, logger="durable")
    durable_engine.drain()
    ex = durable_engine.get_execution(started, include_steps=True)
    assert ex.status == "pending"  # untouched: no step ran, no attempt counted
    assert ex.steps == [] and ex.attempt == 0
    assert ex.run_at == durable_clock.now() + HAND_BACK
    (warning,) = [r.getMessage() for r in caplog.records if "newer code" in r.getMessage()]
    assert f"execution {started} of workflow 'rolling_refund' was started by newer code" in warning
    assert "(steps approve, notify, pay;" in warning and "runs (steps approve, pay)" in warning
    # the old code still runs what it started itself
    assert durable_engine.run_until(before).context == {"ran": ["approve", "pay"]}
    # the deploy ends: a new worker runs it, every step of it
    refund(2)
    done = durable_engine.run_until(started)
    assert done.status == "completed"
    assert done.context == {"ran": ["approve", "notify", "pay"]}


def test_new_code_runs_what_old_code_started(durable_engine, durable_clock):
    refund(1)
    wid = durable_engine.start("rolling_refund")
    durable_engine.run_until(wid, step="pay")
    durable_clock.advance(seconds(60))
    refund(2)  # (notify was added before the step it is at: it is not run for this one)
    assert durable_engine.run_until(wid).context == {"ran": ["approve", "pay"]}
    other = durable_engine.start("rolling_refund")  # (one it starts runs them all)
    refund(1)
    assert durable_engine.run_until(wid).status == "completed"
    refund(2)
    assert durable_engine.run_until(other).context == {"ran": ["approve", "notify", "pay"]}


def test_a_handed_back_execution_midway_keeps_what_it_did(durable_engine, durable_clock):
    refund(1)
    durable_engine.start("rolling_refund")
    durable_clock.advance(seconds(60))
    refund(2)
    wid = durable_engine.start("rolling_refund")
    durable_engine.run_until(wid, step="notify")  # a new worker ran approve
    refund(1)
    durable_engine.drain()
    ex = durable_engine.get_execution(wid)
    assert (ex.status, ex.current_step, ex.context) == ("pending", "notify", {"ran": ["approve"]})
    refund(2)
    assert durable_engine.run_until(wid).context == {"ran": ["approve", "notify", "pay"]}


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


def test_an_old_worker_leaves_a_new_executions_compensations_alone(durable_engine, durable_clock):
    durable_engine.start(saga(1))
    durable_clock.advance(seconds(60))
    wid = durable_engine.start(saga(2))
    durable_engine.run_until(wid, step="pay")
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


def body(label: str) -> type:
    """A one-step workflow whose step's body differs by deploy, not its plan."""

    @workflow("rolling_body")
    class Body:
        @step
        def only(self):
            append_context("ran", label)

    return Body


def test_a_changed_body_is_the_same_plan(durable_engine, durable_clock):
    durable_engine.start(body("v1"))
    durable_clock.advance(timedelta(minutes=1))
    wid = durable_engine.start(body("v2"))
    body("v1 again")  # an old worker: the same steps, so the same plan, and it runs it
    assert durable_engine.run_until(wid).context == {"ran": ["v1 again"]}


def test_every_store_keeps_when_a_plan_was_first_seen(durable_engine, durable_clock):
    store = durable_engine.store
    t0 = durable_clock.now()
    assert store.plan_first_seen("rolling_x", "p1") is None
    assert store.note_plan("rolling_x", "p1", now=t0) == t0
    later = t0 + timedelta(hours=1)
    assert store.note_plan("rolling_x", "p1", now=later) == t0  # first seen stays
    assert store.note_plan("rolling_x", "p2", now=later) == later
    assert store.note_plan("rolling_y", "p1", now=later) == later  # plans are per workflow
    assert store.plan_first_seen("rolling_x", "p1") == t0
    assert store.plan_first_seen("rolling_x", "p2") == later
