"""Any transient payment fault within the retry budget is absorbed, at the backoff's cost.

Hypothesis runs many examples in one test, so each example takes an engine on an empty
store from the session's sandbox (the store --durable-store names) rather than from the
per-test durable_engine fixture."""

from __future__ import annotations

from hypothesis import given, settings

from durable_testing.strategies import fault_schedules
from shop.workflows import OrderWorkflow

ORDER = {"order": {"id": 7, "items": [{"price": 5.0}]}}


@settings(max_examples=30, deadline=None)
@given(fault_schedules(OrderWorkflow, budget="within"))
def test_transient_faults_within_the_budget_are_absorbed(durable_sandbox, schedule):
    with durable_sandbox.engine() as engine:
        schedule.apply(engine)
        wid = engine.start(OrderWorkflow, ORDER)
        ex = engine.run_until(wid)
        assert ex.status == "completed"
        assert ex.completed_at - ex.created_at == schedule.backoff()


@settings(max_examples=30, deadline=None)
@given(fault_schedules(OrderWorkflow, budget="beyond"))
def test_faults_beyond_the_budget_fail_the_order_where_they_happen(durable_sandbox, schedule):
    with durable_sandbox.engine() as engine:
        schedule.apply(engine)
        wid = engine.start(OrderWorkflow, ORDER)
        ex = engine.run_until(wid)
        assert ex.status == "failed"
        assert ex.error["step"] == schedule.exhausted_step()
