"""Sagas: compensations of completed steps, run newest first after a failure, a timeout,
a failed group or a cancel; their retries, their failures, and what is recorded."""

from __future__ import annotations

import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import durable
from durable import Retry, compensation, decision, foreach, parallel, seconds, step, workflow
from durable.context import (
    attempt,
    failure,
    get_context,
    increment_context,
    put_context,
    workflow_id,
)
from durable.waits import sleep_for

undone: list[tuple[str, object]] = []


@workflow("saga_trip")
class Trip:
    @step(compensate="cancel_flight")
    def book_flight(self):
        put_context("flight", "FL-1")

    @step(compensate="cancel_hotel")
    def book_hotel(self):
        put_context("hotel", "HT-2")

    @step(retry=Retry(max_attempts=2, backoff="constant", base=1))
    def charge(self):
        put_context("charged", True)  # discarded: the attempt fails
        raise RuntimeError("card declined")

    @compensation
    def cancel_hotel(self):
        undone.append(("cancel_hotel", get_context("hotel")))
        put_context("hotel_cancelled", True)

    @compensation(retry=Retry(max_attempts=3, backoff="constant", base=2))
    def cancel_flight(self):
        reason = failure()
        undone.append(("cancel_flight", (reason or {}).get("message")))
        if attempt() == 1:
            raise ConnectionError("airline busy")


def test_a_failure_runs_the_compensations_of_completed_steps_newest_first(
    durable_engine, durable_clock
):
    undone.clear()
    wid = durable_engine.start(Trip)
    ex = durable_engine.run_until(wid)
    assert ex.status == "compensated", ex.error
    assert ex.error is not None and ex.error["message"] == "card declined"
    assert ex.error["step"] == "charge"
    # the context as at the failure, then each compensation's writes
    assert ex.context == {"flight": "FL-1", "hotel": "HT-2", "hotel_cancelled": True}
    assert undone == [
        ("cancel_hotel", "HT-2"),
        ("cancel_flight", "card declined"),
        ("cancel_flight", "card declined"),
    ]
    steps = durable_engine.get_execution(wid, include_steps=True).steps
    comp = [(s.name, s.compensates, s.status, s.attempt) for s in steps if s.phase == "compensate"]
    assert comp == [
        ("cancel_hotel", "book_hotel", "completed", 1),
        ("cancel_flight", "book_flight", "failed", 1),
        ("cancel_flight", "book_flight", "completed", 2),
    ]
    assert all(s.phase == "run" for s in steps if s.compensates is None)
    # the compensation's retry waited its own backoff (2 s), driven by the test clock
    retried = next(s for s in steps if s.name == "cancel_flight" and s.status == "failed")
    again = next(s for s in steps if s.name == "cancel_flight" and s.status == "completed")
    assert retried.retry_at is not None and retried.completed_at is not None
    assert (retried.retry_at - retried.completed_at).total_seconds() == 2
    assert again.started_at == retried.retry_at
    history = durable_engine.history(wid)
    assert history.compensations == ["cancel_hotel", "cancel_flight"]
    assert "[compensates book_flight]" in history.format()


def test_while_compensations_wait_for_a_retry_the_execution_reads_compensating(durable_engine):
    undone.clear()
    wid = durable_engine.start(Trip)
    ex = durable_engine.run_until(wid, "compensating")
    assert ex.status == "compensating"
    while ex.status == "compensating" and ex.run_at == ex.created_at:
        durable_engine.drain()
        ex = durable_engine.get_execution(wid)
    # cancel_flight failed once and waits 2 s for its retry: still compensating
    assert ex.status == "compensating"
    assert [e.id for e in durable_engine.list_executions(status="compensating")] == [wid]
    assert durable_engine.list_executions(status="pending") == []
    both = durable_engine.list_executions(status=["compensating", "completed"])
    assert [e.id for e in both] == [wid]
    with pytest.raises(durable.InvalidState, match="compensating: its compensations run"):
        durable_engine.cancel(wid)
    assert durable_engine.run_until(wid).status == "compensated"


@workflow("saga_broken_undo")
class BrokenUndo:
    @step(compensate="undo_a")
    def a(self):
        put_context("a", 1)

    @step(compensate="undo_b")
    def b(self):
        put_context("b", 1)

    @step
    def boom(self):
        raise ValueError("boom")

    @compensation(retry=Retry(max_attempts=2, backoff="constant", base=1))
    def undo_b(self):
        raise RuntimeError("refund service down")

    @compensation
    def undo_a(self):
        undone.append(("undo_a", None))


def test_a_compensation_out_of_attempts_fails_the_execution_after_the_rest_ran(durable_engine):
    undone.clear()
    wid = durable_engine.start(BrokenUndo)
    ex = durable_engine.run_until(wid)
    assert ex.status == "failed"
    assert undone == [("undo_a", None)]  # still ran after undo_b gave up
    error = ex.error or {}
    assert error["type"].endswith("CompensationFailed")
    assert "undo_b (of b): RuntimeError: refund service down" in error["message"]
    assert [(f["compensation"], f["compensates"]) for f in error["failures"]] == [("undo_b", "b")]
    assert error["failures"][0]["error"]["message"] == "refund service down"
    assert error["cause"]["message"] == "boom"
    assert durable_engine.history(wid).errors == [
        ("boom", 1, "ValueError"),
        ("undo_b", 1, "RuntimeError"),
        ("undo_b", 2, "RuntimeError"),
    ]


@workflow("saga_wait")
class WaitsAfterBooking:
    @step(compensate="release")
    def reserve(self):
        put_context("held", True)

    @step
    def hold(self):
        sleep_for(durable.hours(1))

    @compensation
    def release(self):
        undone.append(("release", failure()))


def test_cancelling_a_waiting_execution_runs_its_compensations(durable_engine):
    undone.clear()
    wid = durable_engine.start(WaitsAfterBooking)
    assert durable_engine.run_until(wid, "waiting").status == "waiting"
    cancelled = durable_engine.cancel(wid, reason="customer asked")
    assert cancelled.status == "compensating"
    ex = durable_engine.run_until(wid)
    assert ex.status == "compensated"
    (name, why) = undone[0]
    assert name == "release" and why["type"] == "Cancelled" and why["reason"] == "customer asked"
    assert ex.cancel_reason == "customer asked"


def test_cancelling_before_any_compensable_step_completed_just_cancels(durable_engine):
    wid = durable_engine.start(WaitsAfterBooking)
    ex = durable_engine.cancel(wid)
    assert ex.status == "compensating"  # a worker decides: nothing to compensate
    ex = durable_engine.run_until(wid)
    assert ex.status == "cancelled" and ex.error is None


@workflow("saga_cancel_running")
class CancelledWhileRunning:
    @step(compensate="undo")
    def first(self):
        put_context("first", True)

    @step
    def second(self):
        durable.context.engine().cancel(workflow_id(), reason="stop")
        put_context("second", True)  # discarded by the cancel

    @step
    def third(self):
        put_context("third", True)

    @compensation
    def undo(self):
        undone.append(("undo", sorted(durable.context.context())))


def test_a_cancel_while_a_step_runs_starts_compensations_at_its_checkpoint(durable_engine):
    undone.clear()
    wid = durable_engine.start(CancelledWhileRunning)
    ex = durable_engine.run_until(wid)
    assert ex.status == "compensated"
    assert undone == [("undo", ["first"])]
    steps = durable_engine.get_execution(wid, include_steps=True).steps
    assert [(s.name, s.status) for s in steps] == [
        ("first", "completed"),
        ("second", "cancelled"),
        ("undo", "completed"),
    ]


@workflow("saga_timeout", timeout=durable.minutes(10))
class TimesOut:
    @step(compensate="undo")
    def first(self):
        put_context("first", True)

    @step
    def slow(self):
        sleep_for(durable.hours(1))

    @compensation(timeout=seconds(5))
    def undo(self):
        undone.append(("undo", failure()["type"]))


def test_the_workflow_timeout_runs_the_compensations(durable_engine, durable_clock):
    undone.clear()
    wid = durable_engine.start(TimesOut)
    ex = durable_engine.run_until(wid)
    assert ex.status == "compensated"
    assert undone == [("undo", "durable.errors.WorkflowTimeout")]
    assert (ex.error or {})["type"] == "durable.errors.WorkflowTimeout"


@workflow("saga_parallel")
class ParallelSaga:
    @parallel(fail_fast=False)
    class reserve:
        @step(compensate="unreserve_seat")
        def seat(self):
            put_context("seat", "12A")

        @step(compensate="refund")
        def meal(self):
            put_context("meal", "veg")

        @step
        def bags(self):
            raise RuntimeError("no bags left")

        @compensation
        def unreserve_seat(self):
            undone.append(("reserve.unreserve_seat", get_context("seat")))

    @compensation
    def refund(self):
        undone.append(("refund", get_context("meal")))


def test_completed_branches_of_a_failed_group_are_compensated(durable_engine):
    undone.clear()
    wid = durable_engine.start(ParallelSaga)
    ex = durable_engine.run_until(wid)
    assert ex.status == "compensated", ex.error
    # a branch's compensation sees the context at the failure: the group's writes were
    # never merged
    assert sorted(undone) == [("refund", None), ("reserve.unreserve_seat", None)]
    steps = durable_engine.get_execution(wid, include_steps=True).steps
    comp = sorted((s.name, s.compensates) for s in steps if s.phase == "compensate")
    assert comp == [("refund", "reserve.meal"), ("reserve.unreserve_seat", "reserve.seat")]


@workflow("saga_loop")
class LoopSaga:
    @step(compensate="unbook")
    def book(self):
        increment_context("booked")

    @decision("book")
    def again(self):
        return "book" if get_context("booked") < 3 else None

    @step
    def fail(self):
        raise RuntimeError("late failure")

    @compensation
    def unbook(self):
        undone.append(("unbook", get_context("booked")))


def test_every_visit_of_a_looped_step_is_compensated_once_newest_first(durable_engine):
    undone.clear()
    wid = durable_engine.start(LoopSaga)
    ex = durable_engine.run_until(wid)
    assert ex.status == "compensated"
    steps = durable_engine.get_execution(wid, include_steps=True).steps
    assert [(s.name, s.visit) for s in steps if s.phase == "compensate"] == [
        ("unbook", 3),
        ("unbook", 2),
        ("unbook", 1),
    ]


def test_a_workflow_without_compensations_fails_as_before(durable_engine):
    @workflow("saga_none")
    class NoSaga:
        @step
        def a(self):
            put_context("a", 1)

        @step
        def b(self):
            raise RuntimeError("nope")

    ex = durable_engine.run_until(durable_engine.start(NoSaga))
    assert ex.status == "failed" and (ex.error or {})["message"] == "nope"


def test_compensation_names_are_checked_when_the_class_is_defined():
    with pytest.raises(durable.ConfigError, match=r"compensate='refnud'.*compensations: refund"):

        @workflow("saga_bad_name")
        class BadName:
            @step(compensate="refnud")
            def charge(self): ...

            @compensation
            def refund(self): ...

    with pytest.raises(durable.ConfigError, match="for a step and a compensation"):

        @workflow("saga_clash")
        class Clash:
            @step(compensate="charge")
            def charge(self): ...

            @compensation(name="charge")
            def undo(self): ...

    with pytest.raises(durable.ConfigError, match="both @step and @compensation"):

        class Both:
            @compensation
            @step
            def charge(self): ...

    with pytest.raises(durable.ConfigError, match="no @compensation of that name"):

        @workflow("saga_branch_bad")
        class BranchBad:
            @parallel
            class g:
                @step(compensate="nothing")
                def a(self): ...


# -- a property: random sagas, failing at a random step ----------------------------------

ran: list[str] = []


def _saga(n: int, compensable: tuple[bool, ...], fail_at: int, flaky: tuple[int, ...]) -> type:
    """A workflow of n steps s0..s{n-1}; step i declares compensation c_i when
    compensable[i]; step fail_at raises; compensation c_i fails flaky[i] times first
    (within its budget of 3 attempts)."""
    attrs: dict[str, object] = {}
    for i in range(n):

        def body(self, i=i):
            if i == fail_at:
                raise RuntimeError(f"s{i} failed")
            put_context(f"s{i}", True)

        attrs[f"s{i}"] = step(name=f"s{i}", compensate=f"c{i}" if compensable[i] else None)(body)
        if compensable[i]:

            def undo(self, i=i):
                if attempt() <= flaky[i]:
                    raise ConnectionError("flaky")
                ran.append(f"c{i}")

            attrs[f"c{i}"] = compensation(
                name=f"c{i}", retry=Retry(max_attempts=3, backoff="constant", base=1)
            )(undo)
    return workflow(f"saga_prop_{n}_{''.join('1' if c else '0' for c in compensable)}_{fail_at}")(
        type("Saga", (), attrs)
    )


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.integers(min_value=1, max_value=6).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.tuples(*[st.booleans()] * n),
            st.integers(min_value=0, max_value=n - 1),
            st.tuples(*[st.integers(min_value=0, max_value=2)] * n),
        )
    )
)
def test_the_compensations_that_run_are_those_of_the_completed_steps_newest_first(
    durable_engine, case
):
    n, compensable, fail_at, flaky = case
    ran.clear()
    wid = durable_engine.start(_saga(n, compensable, fail_at, flaky))
    ex = durable_engine.run_until(wid)
    owed = [f"c{i}" for i in reversed(range(fail_at)) if compensable[i]]
    assert ran == owed
    assert ex.status == ("compensated" if owed else "failed")
    history = durable_engine.history(wid)
    assert history.compensations == owed  # each completed exactly once


@workflow("saga_child")
class ChildSaga:
    @step(compensate="unhold")
    def hold(self):
        put_context("held", True)

    @step
    def wait(self):
        sleep_for(durable.hours(1))

    @compensation
    def unhold(self):
        put_context("unheld", True)


@workflow("saga_parent")
class ParentOfSaga:
    @step
    def call(self):
        put_context("child", durable.call_workflow(ChildSaga, None))


def test_cancelling_a_parent_starts_its_childs_compensations(durable_engine):
    wid = durable_engine.start(ParentOfSaga)
    durable_engine.run_until(wid, "waiting")
    (child,) = durable_engine.list_executions(parent=wid)
    durable_engine.run_until(child.id, "waiting")  # the child holds, then sleeps
    durable_engine.cancel(wid, reason="order withdrawn")
    assert durable_engine.get_execution(child.id).status == "compensating"
    ex = durable_engine.run_until(child.id)
    assert ex.status == "compensated" and ex.context == {"held": True, "unheld": True}
    assert durable_engine.get_execution(wid).status == "cancelled"


# -- found by review ------------------------------------------------------------------------

side_effects: list[str] = []


@workflow("saga_cancel_between")
class CancelledFromElsewhere:
    @step(compensate="undo")
    def first(self):
        # another engine (another process, say) cancels while this step runs: this
        # engine's worker does not hear of it before the step's checkpoint
        other = durable.Engine(durable.context.engine().store_url)
        other.cancel(workflow_id())
        other.close()

    @step
    def second(self):
        side_effects.append("second ran")

    @compensation
    def undo(self):
        side_effects.append("undone")


def test_a_cancel_met_at_a_checkpoint_stops_the_walk_before_the_next_step(tmp_path, durable_clock):
    side_effects.clear()
    url = f"sqlite:///{tmp_path / 'x.db'}"
    engine = durable.Engine(url, clock=durable_clock)
    try:
        wid = engine.start(CancelledFromElsewhere)
        engine.drain()
        ex = engine.get_execution(wid, include_steps=True)
        # first's result was discarded by the cancel (so there is nothing to undo), and
        # the walk stopped there: second never ran
        assert ex.status == "cancelled"
        assert side_effects == []
        assert [(s.name, s.status) for s in ex.steps] == [("first", "cancelled")]
    finally:
        engine.close()


@workflow("saga_group_loop")
class GroupInALoop:
    @parallel
    class reserve:
        @step(compensate="unseat")
        def seat(self):
            increment_context("seats")

    @decision("reserve")
    def again(self):
        return "reserve" if get_context("seats") < 3 else None

    @step
    def fail(self):
        raise RuntimeError("late failure")

    @compensation(retry=Retry(max_attempts=2, backoff="constant", base=1))
    def unseat(self):
        if attempt() == 1:
            raise ConnectionError("flaky")
        undone.append(("unseat", None))


def test_every_run_of_a_branch_in_a_loop_is_compensated(durable_engine):
    undone.clear()
    wid = durable_engine.start(GroupInALoop)
    ex = durable_engine.run_until(wid)
    assert ex.status == "compensated"
    assert undone == [("unseat", None)] * 3
    steps = durable_engine.get_execution(wid, include_steps=True).steps
    done = [
        (s.compensates, s.visit)
        for s in steps
        if s.phase == "compensate" and s.status == "completed"
    ]
    assert done == [("reserve.seat", 3), ("reserve.seat", 2), ("reserve.seat", 1)]


def test_a_second_round_of_compensations_ends_on_its_own_records(durable_engine):
    undone.clear()
    wid = durable_engine.start(BrokenUndo)
    assert durable_engine.run_until(wid).status == "failed"  # undo_b ran out: round 1
    durable_engine.retry(wid, from_step="b")  # b runs again (a new visit), boom again
    ex = durable_engine.run_until(wid)
    assert ex.status == "failed"  # undo_b fails again, for b's second visit
    (failed,) = ex.error["failures"]  # only this round's failure is named
    assert (failed["compensates"], failed["visit"]) == ("b", 2)


# -- a cancel while a branch runs -----------------------------------------------------------

branch_entered = threading.Event()
branch_release = threading.Event()


@workflow("saga_cancel_running_branch")
class CancelWhileABranchRuns:
    @step(compensate="unbook")
    def book(self):
        put_context("booked", True)

    @parallel
    class reserve:
        @step(compensate="unquick")
        def quick(self):
            return None

        @step
        def slow(self):
            branch_entered.set()
            branch_release.wait(60)

    @compensation
    def unbook(self):
        undone.append(("unbook", None))

    @compensation
    def unquick(self):
        undone.append(("unquick", None))


def _relooked(engine, wid: str) -> bool:
    """Whether a worker claimed the compensating execution and put it back for later."""
    row = engine.store.get(wid)
    return row.status == "pending" and row.run_at > engine.clock.now()


def _until(done) -> None:
    """Wait (up to 30 s of real time) for worker threads to get somewhere."""
    for _ in range(3000):
        if done():
            return
        branch_release.wait(0.01)
    raise AssertionError("the workers never got there")


def test_compensations_wait_for_a_branch_still_running_when_its_group_is_cancelled(
    durable_engine, durable_clock
):
    undone.clear()
    branch_entered.clear()
    branch_release.clear()
    store = durable_engine.store
    wid = durable_engine.start(CancelWhileABranchRuns)
    with durable_engine.worker(concurrency=3):
        try:
            assert branch_entered.wait(30)
            _until(lambda: store.unit_outcomes(wid, "reserve", 1)[0].status == "completed")
            assert durable_engine.cancel(wid).status == "compensating"
            _until(lambda: _relooked(durable_engine, wid))
            # the slow branch still runs: nothing before the group is undone yet
            assert undone == []
        finally:
            branch_release.set()
        # the branch's end wakes the compensations (no clock move: a frozen test clock)
        ex = durable_engine.wait(wid, timeout=seconds(30))
    assert ex.status == "compensated", ex.error
    assert undone == [("unquick", None), ("unbook", None)]
    steps = durable_engine.get_execution(wid, include_steps=True).steps
    assert ("reserve.slow", "cancelled") in [(s.name, s.status) for s in steps]


# -- which run a compensation undoes --------------------------------------------------------


@workflow("saga_which_visit")
class WhichVisit:
    @step(compensate="unbook")
    def book(self):
        n = get_context("n", 0) + 1
        put_context("n", n)
        put_context("booking", f"B{n}")
        put_context("outside", durable.context.compensating())

    @decision("book")
    def again(self):
        return "book" if get_context("n") < 3 else None

    @parallel
    class extras:
        @step(compensate="unseat")
        def seat(self):
            put_context("seat", "12A")

        @step
        def meal(self):
            put_context("meal", "veg")

    @step
    def fail(self):
        raise RuntimeError("late failure")

    @compensation
    def unbook(self):
        u = durable.context.compensating()
        undone.append((u.step, u.visit, u.context["booking"], get_context("booking")))

    @compensation
    def unseat(self):
        u = durable.context.compensating()
        undone.append((u.step, u.visit, u.context.get("seat"), u.context.get("meal")))


def test_a_compensation_knows_which_run_it_undoes_and_the_context_that_run_left(
    durable_engine,
):
    undone.clear()
    wid = durable_engine.start(WhichVisit)
    ex = durable_engine.run_until(wid)
    assert ex.status == "compensated", ex.error
    assert ex.context["outside"] is None  # None in a step of the flow
    # each visit's compensation sees its own booking (the context at the failure has B3);
    # the branch's sees what it wrote, not what its sibling did
    assert undone == [
        ("extras.seat", 1, "12A", None),
        ("book", 3, "B3", "B3"),
        ("book", 2, "B2", "B3"),
        ("book", 1, "B1", "B3"),
    ]


@workflow("saga_timeout_at_foreach", timeout=seconds(10))
class TimeoutAtForeach:
    @step(compensate="unbook")
    def book(self):
        put_context("items", list(range(12)))  # more than the concurrency of 10: 2 parked

    @foreach("items")
    def each(self, item):
        sleep_for(seconds(60))

    @compensation
    def unbook(self):
        undone.append(("unbook", None))


def test_a_timeout_at_a_foreach_with_parked_items_compensates_and_ends(durable_engine):
    undone.clear()
    wid = durable_engine.start(TimeoutAtForeach)
    durable_engine.run_until(wid, "waiting")
    ex = durable_engine.run_until(wid, within=seconds(600))
    assert ex.status == "compensated", ex.error
    assert ex.error["type"] == "durable.errors.WorkflowTimeout"
    assert undone == [("unbook", None)]
    assert {u.status for u in durable_engine.store.units(wid, "each", 1)} == {"cancelled"}


# -- what starts compensations: a failed child; a compensation's own timeout ----------------

clock_box: dict[str, object] = {}


@workflow("saga_child_that_fails")
class ChildThatFails:
    @step
    def work(self):
        raise RuntimeError("supplier refused")


@workflow("saga_parent_of_failing_child")
class ParentOfFailingChild:
    @step(compensate="unreserve")
    def reserve(self):
        put_context("reserved", True)

    @step
    def order(self):
        durable.call_workflow(ChildThatFails)  # not caught: the step fails with it

    @compensation
    def unreserve(self):
        undone.append(("unreserve", failure()["type"]))


def test_a_failed_child_the_step_did_not_catch_runs_the_compensations(durable_engine):
    undone.clear()
    wid = durable_engine.start(ParentOfFailingChild)
    ex = durable_engine.run_until(wid)
    assert ex.status == "compensated", ex.error
    assert undone == [("unreserve", "durable.errors.ChildWorkflowFailed")]


@workflow("saga_slow_compensation")
class SlowCompensation:
    @step(compensate="unbook")
    def book(self):
        put_context("booked", True)

    @step
    def fail(self):
        raise RuntimeError("late failure")

    @compensation(timeout=seconds(30), retry=Retry(max_attempts=2, backoff="constant", base=1))
    def unbook(self):
        if attempt() == 1:
            clock_box["clock"].advance(seconds(31))  # as slow work would take time
        put_context("unbooked", attempt())


def test_a_compensation_past_its_timeout_is_a_failed_attempt_and_retried(
    durable_engine, durable_clock
):
    clock_box["clock"] = durable_clock
    wid = durable_engine.start(SlowCompensation)
    ex = durable_engine.run_until(wid)
    assert ex.status == "compensated"
    assert ex.context["unbooked"] == 2  # the first attempt's write was discarded
    comp = [
        s
        for s in durable_engine.get_execution(wid, include_steps=True).steps
        if s.phase == "compensate"
    ]
    assert [(s.attempt, s.status) for s in comp] == [(1, "failed"), (2, "completed")]
    assert comp[0].error["type"] == "durable.errors.StepTimeout"
    assert comp[0].duration_ms == seconds(30)
