"""Child workflows: call_workflow waits for a child holding no worker, start_workflow
starts one; each started once per call position; cancel reaches them."""

from __future__ import annotations

import pytest

import durable
from durable import Retry, call_workflow, start_workflow, step, workflow
from durable.context import attempt, input, put_context, workflow_id
from durable.waits import wait_for_event


@workflow("child_charge")
class Charge:
    @step
    def charge(self):
        if input().get("decline"):
            raise ValueError("card declined")
        put_context("charge_id", f"ch_{input()['amount']}")

    @step
    def confirm(self):
        if input().get("wait"):
            put_context("confirmed", wait_for_event("confirm"))


@workflow("child_order")
class Order:
    @step(retry=Retry(max_attempts=2, backoff="constant", base=1))
    def pay(self):
        paid = call_workflow(Charge, {"amount": 42, **(input() or {})})
        if attempt() == 1 and (input() or {}).get("fail_after_call"):
            raise RuntimeError("crashed after the child ended")
        put_context("paid", paid["charge_id"])

    @step
    def notify(self):
        put_context("audit", start_workflow("child_charge", {"amount": 0}))
        put_context("me", workflow_id())


def test_call_workflow_returns_the_childs_context(durable_engine):
    wid = durable_engine.start(Order)
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed", ex.error
    assert ex.context["paid"] == "ch_42" and ex.context["me"] == wid
    durable_engine.run_all()  # the child start_workflow started runs on its own
    children = durable_engine.list_executions(parent=wid)
    assert len(children) == 2 and all(c.parent_id == wid for c in children)
    assert {c.id for c in children} >= {ex.context["audit"]}
    assert all(c.status == "completed" for c in children)
    # by the other filters too (the children's own statement takes them all)
    assert len(durable_engine.list_executions(parent=wid, status="completed")) == 2
    assert durable_engine.list_executions(parent=wid, status=["failed", "running"]) == []
    assert len(durable_engine.list_executions(parent=wid, workflow="child_charge")) == 2
    assert durable_engine.list_executions(parent=wid, queue="elsewhere") == []
    assert [c.id for c in durable_engine.list_executions(parent=wid, limit=1)] == [children[0].id]
    # the children are listed with everything else too, the parent first started
    assert {e.id for e in durable_engine.list_executions()} == {wid} | {c.id for c in children}


def test_the_parent_waits_holding_no_worker(durable_engine):
    wid = durable_engine.start(Order, {"wait": True})
    durable_engine.drain()
    assert durable_engine.get_execution(wid).status == "waiting"
    (child,) = durable_engine.list_executions(parent=wid)
    assert child.status == "waiting"
    (waiting,) = durable_engine.list_waits(wid, kind=durable.WaitKind.CHILD)
    assert waiting.names == (child.id,) and durable_engine.list_waits(wid, kind="child")
    with pytest.raises(durable.ConfigError, match="sleep, event, input, child"):
        durable_engine.list_waits(wid, kind="children")
    durable_engine.send_event(child.id, "confirm", "ok")
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed"
    assert durable_engine.get_execution(child.id).context["confirmed"] == "ok"


def test_a_retried_step_finds_the_child_it_started(durable_engine):
    wid = durable_engine.start(Order, {"fail_after_call": True})
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed"
    charges = [c for c in durable_engine.list_executions(parent=wid) if c.input["amount"] == 42]
    assert len(charges) == 1  # started once, though the step ran twice


def test_a_failed_child_raises_child_workflow_failed(durable_engine):
    wid = durable_engine.start(Order, {"decline": True})
    ex = durable_engine.run_until(wid)
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.ChildWorkflowFailed"
    assert "card declined" in ex.error["message"]
    (child,) = durable_engine.list_executions(parent=wid)
    assert child.id in ex.error["message"] and child.status == "failed"


@workflow("child_catches")
class Catches:
    @step
    def pay(self):
        try:
            call_workflow(Charge, {"amount": 1, "decline": True})
        except durable.ChildWorkflowFailed as exc:
            put_context("caught", [exc.status, exc.error["type"], exc.child_id is not None])


def test_a_step_may_catch_the_childs_failure(durable_engine):
    ex = durable_engine.run_until(durable_engine.start(Catches))
    assert ex.context == {"caught": ["failed", "ValueError", True]}


def test_cancelling_the_parent_cancels_its_unfinished_children(durable_engine):
    wid = durable_engine.start(Order, {"wait": True})
    durable_engine.drain()
    durable_engine.cancel(wid)
    (child,) = durable_engine.list_executions(parent=wid)
    assert child.status == "cancelled"
    assert durable_engine.get_execution(wid).status == "cancelled"


def test_call_workflow_outside_a_step_is_a_context_error(durable_engine):
    with pytest.raises(durable.ContextError):
        call_workflow(Charge, {})
    with pytest.raises(durable.WorkflowNotFound):
        call_workflow("no_such_workflow", {})


def test_a_child_that_ends_before_its_caller_suspends_is_not_missed(engine, durable_clock):
    # Through the store API, the order a race can take: the caller records its child wait,
    # the child runs and ends, and only then does the caller suspend on the wait.
    from durable.models import StepExecution, StepStatus, WaitKind, WaitSpec
    from durable.stores.base import ExecutionRow

    store, now = engine.store, durable_clock.now()
    wid = engine.start(Catches)
    (caller,) = engine.scheduler.claim()
    child_id = "c1d2e3f4-0000-4000-8000-000000000001"
    spec = WaitSpec(kind=WaitKind.CHILD, names=(child_id,))
    got = store.wait(wid, caller.token, now=now, step="pay", visit=1, seq=0, attempt=1, spec=spec)
    assert got.status == "pending"
    child_row = durable.get_workflow(Charge)
    store.create(
        ExecutionRow(
            id=child_id,
            workflow=child_row.name,
            status=durable.Status.PENDING,
            queue="default",
            priority=0,
            input={"amount": 1},
            context={},
            created_at=now,
            scheduled_at=now,
            run_at=now,
            step_name=child_row.first_step.name,
            parent_id=wid,
        )
    )
    (child,) = engine.scheduler.claim()
    engine.scheduler.execute(child)  # the child runs to its end
    assert engine.get_execution(child_id).status == "completed"
    record = StepExecution("pay", StepStatus.SUSPENDED, 1, now, now)
    status = store.suspend(wid, caller.token, now=now, record=record, step="pay", visit=1, seq=0)
    assert status == "pending"  # the wait had resolved: runnable at once, not waiting
    (w,) = store.waits(execution_id=wid, pending_only=False)
    assert w.status == "resolved" and w.result["status"] == "completed"
