"""durable_testing's helpers: travelling to due work, running until a status or a step,
step overrides and histories. Run on memory, SQLite and Postgres like the engine tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from datetime import timedelta

import pytest

import durable
from durable import Retry, hours, minutes, seconds, step, workflow
from durable.context import attempt, get_context, put_context
from durable_testing import ExecutionStuck, History, InjectedFault, TimeTravelEngine

from workflows import ORDER, CardNetworkError, OrderWorkflow, charges


@workflow("kit_stamps")
class Stamps:
    """Puts what step code sees of the time, and can be slowed by an override."""

    @step(retry=Retry(max_attempts=4, backoff="constant", base=10), timeout=seconds(30))
    def stamp(self) -> None:
        put_context("seen_at", dt.datetime.now(dt.UTC).isoformat())
        put_context("epoch", time.time())

    @step(retry=Retry(max_attempts=2, backoff="constant", base=1))
    async def later(self) -> None:
        await asyncio.sleep(0)
        put_context("later_attempt", attempt())


@workflow("kit_slow", timeout=minutes(10))
class Slow:
    @step(timeout=minutes(1))
    def wait_a_bit(self) -> None:
        put_context("ran", True)

    @step
    def after(self) -> None:
        put_context("after", True)


def test_the_fixture_is_a_time_travel_engine_on_the_test_clock(durable_engine, durable_clock):
    assert isinstance(durable_engine, TimeTravelEngine)
    assert isinstance(durable_engine, durable.Engine)
    assert durable_engine.clock is durable_clock


def test_step_code_sees_the_travelled_time(durable_engine, durable_clock):
    durable_clock.advance(hours(5))
    wid = durable_engine.start(Stamps)
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed"
    assert ex.context["seen_at"] == durable_clock.now().isoformat()
    assert ex.context["epoch"] == durable_clock.now().timestamp()


def test_advance_to_next_goes_exactly_to_the_next_due_work(durable_engine, durable_clock):
    assert durable_engine.advance_to_next() is None  # nothing scheduled: the clock stays
    start = durable_clock.now()
    wid = durable_engine.start(OrderWorkflow, {**ORDER, "fail_payment": 2})
    assert durable_engine.advance_to_next() == start  # due now: no move
    durable_engine.drain()  # attempt 1 fails; retry after 2 s
    assert durable_engine.advance_to_next() == start + timedelta(seconds=2)
    durable_engine.drain()  # attempt 2 fails; retry after 4 s more
    assert durable_engine.advance_to_next() == start + timedelta(seconds=6)
    durable_engine.drain()
    assert durable_engine.get_execution(wid).status == "completed"
    assert durable_engine.advance_to_next() is None


def test_run_until_finished_travels_through_the_backoffs(durable_engine, durable_clock):
    start = durable_clock.now()
    wid = durable_engine.start(OrderWorkflow, {**ORDER, "fail_payment": 2})
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed"
    assert ex.completed_at - start == timedelta(seconds=2 + 4)


def test_run_until_a_status(durable_engine):
    wid = durable_engine.start(OrderWorkflow, {**ORDER, "fail_payment": 5})
    ex = durable_engine.run_until(wid, "failed")
    assert ex.error["type"] == "workflows.CardNetworkError"
    assert durable_engine.history(wid).tried == [
        "validate",
        "calculate_total",
        "charge_payment",
        "charge_payment",
        "charge_payment",
    ]


def test_run_until_a_step_stops_before_it_runs(durable_engine):
    wid = durable_engine.start(OrderWorkflow, ORDER)
    ex = durable_engine.run_until(wid, step="charge_payment")
    assert ex.status == "pending"
    assert ex.current_step == "charge_payment"
    assert ex.context == {"order_id": 123, "items": ORDER["order"]["items"], "total": 99.99}
    assert durable_engine.history(wid).ran == ["validate", "calculate_total"]
    assert wid not in charges
    # and it carries on from there
    assert durable_engine.run_until(wid).status == "completed"
    assert durable_engine.history(wid).ran[-2:] == ["charge_payment", "send_confirmation"]


def test_run_until_a_step_the_execution_starts_at(durable_engine):
    wid = durable_engine.start(OrderWorkflow, ORDER)
    assert durable_engine.run_until(wid, step="validate").current_step == "validate"
    assert durable_engine.history(wid).tried == []


def test_run_until_says_why_it_cannot_get_there(durable_engine):
    wid = durable_engine.start(OrderWorkflow, ORDER)
    with pytest.raises(ExecutionStuck, match="ended as completed before reaching status failed"):
        durable_engine.run_until(wid, "failed")
    other = durable_engine.start(OrderWorkflow, {**ORDER, "fail_payment": 1})
    with pytest.raises(
        ExecutionStuck, match=r"(?s)not reached within 1000.*charge_payment #1 failed"
    ):
        durable_engine.run_until(other, within=1000)  # the retry is 2 s away
    with pytest.raises(durable.ConfigError, match="unknown status"):
        durable_engine.run_until(other, "done")


def test_run_all_runs_every_execution_to_its_end(durable_engine, durable_clock):
    start = durable_clock.now()
    ids = [durable_engine.start(OrderWorkflow, {**ORDER, "fail_payment": n}) for n in range(3)]
    later = durable_engine.start(OrderWorkflow, ORDER, scheduled_at=start + timedelta(hours=1))
    durable_engine.run_all()
    assert [durable_engine.get_execution(w).status for w in [*ids, later]] == ["completed"] * 4
    assert durable_clock.now() == start + timedelta(hours=1)
    with pytest.raises(ExecutionStuck, match="after the limit"):
        durable_engine.start(
            OrderWorkflow, ORDER, scheduled_at=durable_clock.now() + timedelta(hours=2)
        )
        durable_engine.run_all(within=hours(1))


# -- overrides ------------------------------------------------------------------------------


def test_override_fails_the_first_attempts_then_runs_the_real_step(durable_engine, durable_clock):
    start = durable_clock.now()
    ov = durable_engine.override("charge_payment", fail=2)
    wid = durable_engine.start(OrderWorkflow, ORDER)
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed"
    assert ex.context["charge_id"] == "ch_1"  # attempt 3 ran the real step
    assert ex.completed_at - start == timedelta(seconds=2 + 4)
    h = durable_engine.history(wid)
    assert h.errors == [
        ("charge_payment", 1, "durable_testing.overrides.InjectedFault"),
        ("charge_payment", 2, "durable_testing.overrides.InjectedFault"),
    ]
    assert h.attempts("charge_payment")[0].error_message == (
        "injected failure of step 'charge_payment', attempt 1"
    )
    assert ov.attempts == [1, 2, 3]


def test_override_beyond_the_budget_fails_the_execution(durable_engine):
    durable_engine.override(OrderWorkflow.charge_payment, error=CardNetworkError("declined"))
    wid = durable_engine.start(OrderWorkflow, ORDER)
    ex = durable_engine.run_until(wid)
    assert ex.status == "failed"
    assert ex.error["message"] == "declined"
    assert "send_confirmation" not in durable_engine.history(wid).tried


def test_override_with_a_fault_per_attempt(durable_engine):
    durable_engine.override(
        "charge_payment", faults=[ConnectionError, None], workflow=OrderWorkflow
    )
    wid = durable_engine.start(OrderWorkflow, ORDER)
    durable_engine.run_until(wid)
    assert durable_engine.history(wid).errors == [
        ("charge_payment", 1, "ConnectionError"),
    ]


def test_override_returns_or_puts_context_without_running_the_step(durable_engine):
    durable_engine.override("charge_payment", context={"charge_id": "ch_test"})
    wid = durable_engine.start(OrderWorkflow, ORDER)
    ex = durable_engine.run_until(wid)
    assert ex.context["charge_id"] == "ch_test"
    assert wid not in charges  # the real charge never ran


def test_override_takes_virtual_time(durable_engine, durable_clock):
    ov = durable_engine.override("wait_a_bit", takes=seconds(59))
    start = durable_clock.now()
    wid = durable_engine.start(Slow)
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed"
    first = durable_engine.history(wid)[0]
    assert (first.at, first.ended) == (timedelta(0), timedelta(seconds=59))
    assert ex.completed_at - start == timedelta(seconds=59)
    ov.remove()

    # As long as the step's timeout or longer: the attempt times out at its timeout, its
    # result discarded.
    durable_engine.override("wait_a_bit", takes=hours(1))
    wid = durable_engine.start(Slow)
    ex = durable_engine.run_until(wid)
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.StepTimeout"
    assert "ran" not in ex.context
    assert durable_engine.history(wid).errors == [("wait_a_bit", 1, "durable.errors.StepTimeout")]
    assert durable_engine.history(wid)[0].duration == timedelta(minutes=1)


def test_override_takes_past_the_workflow_deadline(durable_engine, durable_clock):
    durable_engine.override("after", workflow=Slow, takes=minutes(11))
    start = durable_clock.now()
    wid = durable_engine.start(Slow)
    ex = durable_engine.run_until(wid)
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.WorkflowTimeout"
    assert ex.completed_at - start == timedelta(minutes=10)  # at the deadline, not after


def test_override_an_async_step(durable_engine):
    durable_engine.override("later", fail=1)
    wid = durable_engine.start(Stamps)
    ex = durable_engine.run_until(wid)
    assert ex.context["later_attempt"] == 2


def test_override_is_scoped(durable_engine):
    with durable_engine.override("charge_payment", error=RuntimeError("down")):
        wid = durable_engine.start(OrderWorkflow, ORDER)
        assert durable_engine.run_until(wid).status == "failed"
    wid = durable_engine.start(OrderWorkflow, ORDER)
    assert durable_engine.run_until(wid).status == "completed"


def test_override_options_are_checked(durable_engine):
    with pytest.raises(durable.ConfigError, match="no registered workflow has a step named"):
        durable_engine.override("no_such_step", fail=1)
    with pytest.raises(durable.ConfigError, match="workflow 'process_order' has no step 'x'"):
        durable_engine.override("x", workflow=OrderWorkflow)
    with pytest.raises(durable.ConfigError, match="an int >= 0"):
        durable_engine.override("charge_payment", fail=-1)
    with pytest.raises(durable.ConfigError, match="must be an exception"):
        durable_engine.override("charge_payment", error="boom")
    with pytest.raises(durable.ConfigError, match="not both"):
        durable_engine.override("charge_payment", fail=1, faults=[None])
    durable_engine.override("charge_payment", fail=1)
    with pytest.raises(durable.ConfigError, match="already overridden"):
        durable_engine.override("charge_payment", fail=2)


def test_a_step_name_in_two_workflows_needs_the_workflow(durable_engine):
    @workflow("kit_twin_a")
    class A:
        @step
        def shared_name(self) -> None:
            put_context("a", get_context("a", 0) + 1)

    @workflow("kit_twin_b")
    class B:
        @step
        def shared_name(self) -> None:
            pass

    with pytest.raises(durable.ConfigError, match="in several workflows.*kit_twin_a, kit_twin_b"):
        durable_engine.override("shared_name", fail=1)
    durable_engine.override("shared_name", workflow=A, fail=1)
    wa, wb = durable_engine.start(A), durable_engine.start(B)
    durable_engine.run_all()
    assert durable_engine.history(wa).errors == [
        ("shared_name", 1, InjectedFault.__module__ + ".InjectedFault")
    ]
    assert durable_engine.history(wb).errors == []


def test_an_override_given_the_method_uses_the_methods_own_workflow(durable_engine):
    @workflow("kit_method_a")
    class A:
        @step
        def twin_method(self) -> None:
            put_context("a", True)

    @workflow("kit_method_b")
    class B:
        @step
        def twin_method(self) -> None:
            put_context("b", True)

    # By name the step is ambiguous; the method says whose it is.
    durable_engine.override(A.twin_method, fail=1)
    wa, wb = durable_engine.start(A), durable_engine.start(B)
    durable_engine.run_all()
    fault = InjectedFault.__module__ + ".InjectedFault"
    assert durable_engine.history(wa).errors == [("twin_method", 1, fault)]
    assert durable_engine.history(wb).errors == []
    durable_engine.override(B.twin_method, fail=1)  # and the other one
    again = durable_engine.start(B)
    durable_engine.run_all()
    assert durable_engine.history(again).errors == [("twin_method", 1, fault)]


# -- history ---------------------------------------------------------------------------------


def test_history_reads_as_a_table_in_virtual_time(durable_engine):
    durable_engine.override("charge_payment", faults=[CardNetworkError("card network down")])
    wid = durable_engine.start(OrderWorkflow, ORDER)
    durable_engine.run_until(wid)
    h = durable_engine.history(wid)
    assert isinstance(h, History)
    lines = [" ".join(line.split()) for line in str(h).splitlines()]
    assert lines == [
        f"execution {wid} of process_order: completed after 2s",
        "+0ms .. +0ms validate #1 completed",
        "+0ms .. +0ms calculate_total #1 completed",
        "+0ms .. +0ms charge_payment #1 failed: workflows.CardNetworkError: card network down"
        " (retry at +2s)",
        "+2s .. +2s charge_payment #2 completed",
        "+2s .. +2s send_confirmation #1 completed",
    ]
    assert h.finished_after == timedelta(seconds=2)
    assert [a.attempt for a in h.attempts("charge_payment")] == [1, 2]


@pytest.mark.slow  # a pytest run in a process of its own
def test_a_failing_history_assertion_prints_the_history(pytester):
    pytester.makepyfile(
        test_user="""
from durable import Retry, step, workflow
from durable.context import put_context

@workflow("kit_user_history")
class W:
    @step
    def one(self):
        put_context("x", 1)

    @step(retry=Retry(max_attempts=2, backoff="constant", base=1))
    def two(self):
        pass

def test_history(durable_engine):
    durable_engine.override("two", fail=1)
    wid = durable_engine.start(W)
    durable_engine.run_until(wid)
    assert durable_engine.history(wid).ran == ["one", "three"]
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: assert *'one', 'two'* == *'one', 'three'*",
            "*durable history:*",
            "*execution * of kit_user_history: completed after 1s*",
            "*two #1 failed: durable_testing.overrides.InjectedFault*(retry at +1s)*",
            "*two #2 completed*",
        ]
    )


def test_run_until_says_what_a_waiting_execution_waits_for(durable_engine):
    from wait_workflows import Several

    wid = durable_engine.start(Several)
    with pytest.raises(
        ExecutionStuck,
        match=r"it is waiting in step 'any_of', for any of the events 'approved', 'rejected' "
        r"\(no timeout\): send it with send_event\(\)",
    ):
        durable_engine.run_until(wid)


def test_run_until_says_what_a_waiting_execution_waits_for_when_time_runs_out(
    durable_engine, durable_clock
):
    from wait_workflows import Approval

    wid = durable_engine.start(Approval)
    until = (durable_clock.now() + timedelta(hours=48)).isoformat()
    with pytest.raises(ExecutionStuck) as stuck:
        durable_engine.run_until(wid, within=timedelta(minutes=5))
    assert "not reached within" in str(stuck.value)
    assert f"for the input 'approval' until {until}: give it with provide_input()" in str(
        stuck.value
    )


@workflow("tt_wait_for_event")
class WaitsForEvent:
    @step
    def hold(self) -> None:
        from durable.waits import wait_for_event

        put_context("got", wait_for_event("go"))


def test_wait_without_a_worker_runs_the_execution_in_virtual_time(durable_engine, durable_clock):
    start = durable_clock.now()
    durable_engine.override("charge_payment", fail=1, workflow=OrderWorkflow)
    wid = durable_engine.start(OrderWorkflow, ORDER)
    ex = durable_engine.wait(wid)  # nobody else would run it: run here, travelling time
    assert ex.status == "completed"
    assert durable_clock.now() - start == timedelta(seconds=2)  # exactly the backoff


def test_wait_on_an_execution_that_cannot_finish_says_why(durable_engine):
    wid = durable_engine.start(WaitsForEvent)
    with pytest.raises(ExecutionStuck, match="'go'"):
        durable_engine.wait(wid)


def test_wait_with_a_worker_running_waits_for_it(durable_engine):
    wid = durable_engine.start(WaitsForEvent)
    with durable_engine.worker(concurrency=1):
        assert durable_engine.workers_running == 1
        durable_engine.send_event(wid, "go", "now")
        assert durable_engine.wait(wid, timeout=seconds(30)).context == {"got": "now"}
    assert durable_engine.workers_running == 0
