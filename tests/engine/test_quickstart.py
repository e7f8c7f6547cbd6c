"""The quick start of DESIGN.md, run as written."""

from __future__ import annotations

import durable
from durable import seconds

from workflows import ORDER, MixedWorkflow, OrderWorkflow


def test_order_workflow_completes_with_the_quick_start_context(engine, durable_clock):
    wid = engine.start(OrderWorkflow, ORDER)
    assert isinstance(wid, str)
    engine.drain()
    ex = engine.get_execution(wid)
    assert ex.status == "completed"
    assert ex.status is durable.Status.COMPLETED
    assert {k: ex.context[k] for k in ("order_id", "total", "charge_id")} == {
        "order_id": 123,
        "total": 99.99,
        "charge_id": "ch_1",
    }
    assert ex.steps is None  # only with include_steps=True
    assert ex.completed_at == durable_clock.now()


def test_steps_run_in_written_order_and_are_recorded(engine):
    wid = engine.start(OrderWorkflow, ORDER)
    engine.drain()
    ex = engine.get_execution(wid, include_steps=True)
    assert [s.name for s in ex.steps] == [
        "validate",
        "calculate_total",
        "charge_payment",
        "send_confirmation",
    ]
    assert all(s.status == "completed" and s.attempt == 1 for s in ex.steps)
    assert all(isinstance(s, durable.StepExecution) for s in ex.steps)
    # the pinned positional shape
    name, status, attempt, started_at, completed_at, error, logs = (
        ex.steps[0].name,
        ex.steps[0].status,
        ex.steps[0].attempt,
        ex.steps[0].started_at,
        ex.steps[0].completed_at,
        ex.steps[0].error,
        ex.steps[0].logs,
    )
    assert (name, status, attempt, error, logs) == ("validate", "completed", 1, None, [])
    assert started_at <= completed_at


def test_start_by_registered_name(engine):
    wid = engine.start("process_order", ORDER)
    engine.drain()
    ex = engine.get_execution(wid)
    assert ex.workflow == "process_order"
    assert ex.status == "completed"


def test_payment_retry_in_the_quick_start(engine, durable_clock):
    wid = engine.start(OrderWorkflow, {**ORDER, "fail_payment": 1})
    engine.drain()
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.status == "pending"
    assert ex.current_step == "charge_payment"
    failed = ex.steps[-1]
    assert (failed.name, failed.status, failed.attempt) == ("charge_payment", "failed", 1)
    assert failed.error["type"] == "workflows.CardNetworkError"
    assert "card network timeout" in failed.error["message"]
    assert failed.retry_at == durable_clock.now() + durable.durations.to_timedelta(seconds(2))

    durable_clock.advance(seconds(2))
    engine.drain()
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.status == "completed"
    assert ex.context["charge_id"] == "ch_1"
    assert [(s.name, s.attempt, s.status) for s in ex.steps][2:4] == [
        ("charge_payment", 1, "failed"),
        ("charge_payment", 2, "completed"),
    ]


def test_def_and_async_def_steps(engine):
    wid = engine.start(MixedWorkflow)
    engine.drain()
    ex = engine.get_execution(wid)
    assert ex.status == "completed"
    assert ex.context == {"trail": ["sync", "async", "sync again"]}


def test_async_steps_under_a_worker_thread(engine, recorder):
    ids = [engine.start(MixedWorkflow) for _ in range(5)]
    with engine.worker(concurrency=3):
        assert recorder.wait_done(5)
    assert {engine.get_execution(i).status for i in ids} == {"completed"}


def test_observer_hooks_fire_in_order(engine, recorder, durable_clock):
    wid = engine.start(OrderWorkflow, {**ORDER, "fail_payment": 1})
    engine.drain()
    durable_clock.advance(seconds(2))
    engine.drain()
    assert recorder.hooks(wid) == [
        "started",
        "step_started",
        "step_completed",
        "step_started",
        "step_completed",
        "step_started",
        "step_retrying",
        "step_started",
        "step_completed",
        "step_started",
        "step_completed",
        "completed",
    ]
