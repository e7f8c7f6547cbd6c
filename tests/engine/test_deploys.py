"""Deploys that rename or change steps under executions in flight (found by review)."""

from __future__ import annotations

import asyncio
import threading

import pytest

import durable
from durable import Retry, compensation, foreach, seconds, step, workflow
from durable.context import append_context, put_context
from durable.waits import sleep_for, wait_for_event

refunds: list[str] = []


def billing(version: int) -> type:
    @workflow("deploys_billing")
    class Billing:
        @step
        def start(self):
            append_context("ran", "start")

        if version == 1:

            @step(compensate="refund")
            def charge(self):
                append_context("ran", "charge")

        else:

            @step(compensate="refund", renamed_from="charge")
            def bill(self):
                append_context("ran", "bill")

        @step
        def approve(self):
            wait_for_event("approved")  # (version 2 renames nothing here)

        @step
        def ship(self):
            raise RuntimeError("warehouse closed")

        @compensation
        def refund(self):
            refunds.append("refund")

    return Billing


def test_a_renamed_step_that_completed_is_still_compensated(durable_engine):
    refunds.clear()
    billing(1)
    wid = durable_engine.start("deploys_billing")
    durable_engine.run_until(wid, "waiting")  # charge completed under its old name
    billing(2)  # charge is bill now
    assert durable_engine.check_deploy() == []
    durable_engine.send_event(wid, "approved")
    ex = durable_engine.run_until(wid)
    assert ex.status == "compensated" and refunds == ["refund"]


def waiting(version: int) -> type:
    @workflow("deploys_waiting")
    class Waiting:
        @step
        def begin(self):
            pass

        if version == 1:

            @step
            def approve(self):
                put_context("answer", wait_for_event("approved"))

        else:

            @step(renamed_from="approve")
            def review(self):
                put_context("answer", wait_for_event("approved"))

        @step
        def after_review(self):
            append_context("ran", "after_review")

    return Waiting


def test_a_step_renamed_while_an_execution_waits_in_it_resumes_it(durable_engine):
    waiting(1)
    wid = durable_engine.start("deploys_waiting")
    durable_engine.run_until(wid, "waiting")
    waiting(2)
    assert durable_engine.check_deploy() == []
    durable_engine.send_event(wid, "approved", {"ok": True})
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed", ex.error
    assert ex.context == {"answer": {"ok": True}, "ran": ["after_review"]}
    steps = durable_engine.get_execution(wid, include_steps=True).steps
    # the run that began as approve ended as approve: the same wait, resumed once
    assert [(s.name, s.status) for s in steps] == [
        ("begin", "completed"),
        ("approve", "suspended"),
        ("approve", "completed"),
        ("after_review", "completed"),
    ]


def ahead(version: int) -> type:
    @workflow("deploys_ahead")
    class Ahead:
        @step
        def first(self):
            put_context("xs", [1, 2])
            sleep_for(durable.hours(1))

        if version == 1:

            @step
            def ahead_step(self):
                append_context("ran", "ahead_step as a step")

        else:

            @foreach("xs", into="doubled")
            def ahead_step(self, x):  # changed kind: nothing has reached it yet
                return 2 * x

    return Ahead


def test_a_step_ahead_of_the_execution_may_change_kind(durable_engine):
    ahead(1)
    wid = durable_engine.start("deploys_ahead")
    durable_engine.run_until(wid, "waiting")
    ahead(2)
    assert durable_engine.check_deploy() == []
    ex = durable_engine.run_until(wid)
    assert (ex.status, ex.context["doubled"]) == ("completed", [2, 4])


def undoing(version: int) -> type:
    @workflow("deploys_undoing")
    class Undoing:
        @step(compensate={1: "refund", 2: None, 3: "refund_payment"}[version])
        def charge(self):
            put_context("charged", True)

        @step
        def ship(self):
            raise RuntimeError("warehouse closed")

        if version == 1:

            @compensation(retry=Retry(max_attempts=2, backoff="constant", base=60))
            def refund(self):
                raise ConnectionError("payments down")

        if version == 3:

            @compensation
            def refund_payment(self):
                put_context("refunded", True)

    return Undoing


def test_a_compensation_renamed_while_an_execution_compensates_runs_under_its_new_name(
    durable_engine,
):
    undoing(1)
    wid = durable_engine.start("deploys_undoing")
    durable_engine.drain()  # refund failed once, its retry is a minute away
    undoing(3)  # refund is refund_payment now
    assert durable_engine.check_deploy() == []
    ex = durable_engine.run_until(wid)
    assert (ex.status, ex.context.get("refunded")) == ("compensated", True)


def renamed_undo(version: int) -> type:
    @workflow("deploys_renamed_undo")
    class RenamedUndo:
        @step
        def begin(self):
            wait_for_event("go")

        if version == 1:

            @step(compensate="refund")
            def charge(self):
                pass

        else:

            @step(renamed_from="charge", compensate="refund" if version == 2 else None)
            def bill(self):
                pass

        @step
        def ship(self):
            raise RuntimeError("warehouse closed")

        if version in (1, 2):

            @compensation(retry=Retry(max_attempts=2, backoff="constant", base=60))
            def refund(self):
                raise ConnectionError("payments down")

    return RenamedUndo


def test_a_step_renamed_then_stripped_of_its_compensation_is_reported(durable_engine):
    renamed_undo(1)
    wid = durable_engine.start("deploys_renamed_undo")
    durable_engine.drain()  # waits in begin, under v1's names
    renamed_undo(2)  # charge is bill now
    durable_engine.send_event(wid, "go")
    durable_engine.drain()  # bill completed, ship failed, refund failed once
    assert durable_engine.get_execution(wid).status == "compensating"
    renamed_undo(3)  # the compensation is gone
    (problem,) = durable_engine.check_deploy()
    assert "compensation 'refund' of step 'bill' is gone" in problem.change
    ex = durable_engine.run_until(wid)
    assert ex.error["type"] == "durable.errors.WorkflowChanged"  # not silently compensated


def test_a_compensating_execution_whose_compensation_is_gone_fails_clearly(durable_engine):
    undoing(1)
    wid = durable_engine.start("deploys_undoing")
    durable_engine.drain()  # refund failed once, its retry is a minute away
    assert durable_engine.get_execution(wid).status == "compensating"
    undoing(2)
    (problem,) = durable_engine.check_deploy()
    assert "compensation 'refund' of step 'charge' is gone" in problem.change
    ex = durable_engine.run_until(wid)
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.WorkflowChanged"  # not silently compensated


entered = threading.Event()


@workflow("deploys_stubborn")
class Stubborn:
    @step
    async def slow(self):
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.Event().wait()  # a cleanup that never ends


def test_a_cancelled_async_step_whose_cleanup_never_ends_is_abandoned_after_a_grace(
    durable_engine, durable_clock
):
    entered.clear()
    wid = durable_engine.start(Stubborn)
    with durable_engine.worker(concurrency=1):
        assert entered.wait(30)
        durable_engine.cancel(wid)
        for _ in range(200):  # the worker notices the cancel and starts the grace
            if durable_engine.get_execution(wid).status == "cancelled":
                break
            durable_clock.advance(seconds(11))  # past the 10 s grace
            threading.Event().wait(0.05)
        ex = durable_engine.wait(wid, timeout=seconds(30))
    assert ex.status == "cancelled"


class _Failures:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @durable.hookimpl
    def durable_workflow_failed(self, execution, error):
        self.seen.append(error["type"])


def test_a_workflow_changed_failure_is_told_to_observers(durable_clock, durable_store_url):
    failures = _Failures()
    engine = durable.Engine(durable_store_url, clock=durable_clock, plugins=[failures])
    try:
        undoing(1)
        wid = engine.start("deploys_undoing")
        engine.drain()
        undoing(2)
        durable_clock.advance(durable.minutes(2))
        engine.drain()
        assert engine.get_execution(wid).status == "failed"
        assert failures.seen == ["durable.errors.WorkflowChanged"]
    finally:
        engine.close()


# -- renames in a loop, of groups, and twice ------------------------------------------------


def looping(version: int) -> type:
    @workflow("deploys_looping")
    class Looping:
        @step
        def begin(self):
            put_context("n", 0)

        if version == 1:

            @step
            def book(self):
                put_context("n", durable.context.get_context("n") + 1)

        else:

            @step(renamed_from="book")
            def reserve(self):
                put_context("n", durable.context.get_context("n") + 1)
                if durable.context.get_context("n") == 4:
                    raise RuntimeError("no rooms left")

        @durable.decision("book" if version == 1 else "reserve")
        def again(self):
            wait_for_event("more")
            return (
                ("book" if version == 1 else "reserve")
                if durable.context.get_context("n") < 5
                else None
            )

    return Looping


def test_a_step_renamed_between_visits_of_a_loop_counts_on_from_its_old_visits(durable_engine):
    looping(1)
    wid = durable_engine.start("deploys_looping")
    durable_engine.run_until(wid, "waiting")
    durable_engine.send_event(wid, "more")
    durable_engine.run_until(wid, "waiting")  # book ran visits 1 and 2; the decision waits
    looping(2)  # book is reserve now
    assert durable_engine.check_deploy() == []
    durable_engine.send_event(wid, "more")
    durable_engine.run_until(wid, "waiting")
    durable_engine.send_event(wid, "more")
    ex = durable_engine.run_until(wid)
    assert ex.status == "failed"
    runs = [
        (s.name, s.visit, s.status)
        for s in durable_engine.get_execution(wid, include_steps=True).steps
        if s.name in ("book", "reserve")
    ]
    # visits go on 3, 4 under the new name: none used twice
    assert runs == [
        ("book", 1, "completed"),
        ("book", 2, "completed"),
        ("reserve", 3, "completed"),
        ("reserve", 4, "failed"),
    ]
    # a retry starts visit 5 from the context before visit 4 (n == 3)
    assert durable_engine.retry(wid).current_visit == 5
    assert durable_engine.get_execution(wid).context["n"] == 3
    # and fork rebuilds the context before the latest run, not before the old visit 2
    fid = durable_engine.fork(wid, "reserve")
    assert durable_engine.get_execution(fid).context["n"] == 3


def grouped(version: int) -> type:
    @workflow("deploys_grouped")
    class Grouped:
        @step
        def begin(self):
            pass

        if version == 1:

            @durable.parallel
            class extras:
                @step
                def seat(self):
                    wait_for_event("seat_ok")
                    put_context("seat", "12A")

        else:

            @durable.parallel(renamed_from="extras")
            class add_ons:
                @step(renamed_from="seat")
                def choose_seat(self):
                    wait_for_event("seat_ok")
                    put_context("seat", "12A")

        @step
        def done(self):
            put_context("done", True)

    return Grouped


def test_a_group_and_its_branch_renamed_while_a_branch_waits_resume_it(durable_engine):
    grouped(1)
    wid = durable_engine.start("deploys_grouped")
    durable_engine.drain()
    grouped(2)  # extras.seat is add_ons.choose_seat now
    assert durable_engine.check_deploy() == []
    durable_engine.send_event(wid, "seat_ok")
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed", ex.error
    assert ex.context == {"seat": "12A", "done": True}


def test_renamed_from_takes_every_earlier_name_and_refuses_a_taken_one():
    @workflow("deploys_twice")
    class Twice:
        @step(renamed_from=("charge", "bill"))  # charge -> bill -> take_payment
        def take_payment(self):
            pass

    wdef = durable.get_workflow("deploys_twice")
    assert wdef.current_name("charge") == wdef.current_name("bill") == "take_payment"

    with pytest.raises(durable.ConfigError, match="renamed_from 'take'"):

        @workflow("deploys_taken")
        class Taken:
            @durable.decision("take", renamed_from="take")
            def take(self):
                return None


# -- check_deploy: every execution, no false alarms, executions without a shape -------------


def branches(version: int) -> type:
    @workflow("deploys_branches")
    class Branches:
        @step
        def begin(self):
            pass

        @durable.parallel
        class pick:
            if version in (1, 3):

                @step
                def quick(self):
                    put_context("quick", True)

            if version != 3:

                @step
                def slow(self):
                    put_context("slow", wait_for_event("go"))

    return Branches


def test_a_removed_branch_whose_unit_ended_is_no_problem_and_still_merged(durable_engine):
    branches(1)
    wid = durable_engine.start("deploys_branches")
    durable_engine.drain()  # quick completed; slow waits
    branches(2)  # quick is gone
    assert durable_engine.check_deploy() == []
    durable_engine.send_event(wid, "go", 1)
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed", ex.error
    assert ex.context == {"quick": True, "slow": 1}


def test_a_removed_branch_whose_unit_still_runs_is_reported(durable_engine):
    branches(2)
    wid = durable_engine.start("deploys_branches")
    durable_engine.drain()  # slow waits
    branches(1)  # (quick added: harmless)
    assert durable_engine.check_deploy() == []
    branches(3)  # slow is gone while its unit waits
    (problem,) = durable_engine.check_deploy()
    assert problem.execution_id == wid
    assert "branch 'pick.slow' of group 'pick' is gone" in problem.change


def test_check_deploy_looks_at_every_unfinished_execution(durable_engine, monkeypatch):
    import durable.engine

    monkeypatch.setattr(durable.engine, "_CHECK_PAGE", 2)
    kinds(1)
    wids = [durable_engine.start("deploys_kinds") for _ in range(5)]
    durable_engine.drain()
    kinds(2)  # the step they wait in is a foreach now
    found = durable_engine.check_deploy()
    assert sorted(p.execution_id for p in found) == sorted(wids)
    assert len(durable_engine.check_deploy(limit=3)) == 3


def test_an_execution_that_recorded_no_shape_is_still_checked_by_its_units(durable_engine):
    """Executions started before schema version 11 recorded no shape: whether their run
    forked units tells what it began as."""
    kinds(1)
    wid = durable_engine.start("deploys_kinds")
    durable_engine.drain()  # suspended in its wait, inside a plain step
    _forget_shape(durable_engine.store, wid)
    kinds(2)  # the step is a foreach now
    (problem,) = durable_engine.check_deploy()
    assert "was a step when its run began and is a foreach now" in problem.change


def kinds(version: int) -> type:
    @workflow("deploys_kinds")
    class Kinds:
        @step
        def begin(self):
            pass

        if version == 1:

            @step
            def work(self):
                wait_for_event("go")

        else:

            @foreach("items")
            def work(self, item):
                return item

    return Kinds


def _forget_shape(store, wid: str) -> None:
    """Make the row look as one written before schema version 11 (no shape column)."""
    rows = getattr(store, "_rows", None)
    if rows is not None:
        rows[wid].shape = None
        return
    with store._cursor(write=True) as cur:
        mark = "%s" if "postgres" in type(store).__name__.lower() else "?"
        cur.execute(f"UPDATE durable_executions SET shape = NULL WHERE id = {mark}", (wid,))


# -- the other rows of deploys.md's table -------------------------------------------------


def table(version: int) -> type:
    @workflow("deploys_table")
    class Table:
        @step
        def begin(self):
            pass

        if version == 1:

            @step
            def charge(self):
                append_context("got", wait_for_event("a"))

        elif version == 2:

            @step(renamed_from="charge")
            def bill(self):
                append_context("got", wait_for_event("a"))

        elif version == 3:

            @step(renamed_from=("charge", "bill"))  # charge -> bill -> take_payment
            def take_payment(self):
                append_context("got", wait_for_event("a"))

        else:

            @step
            def charge(self):  # its wait changed under a suspended execution
                append_context("got", wait_for_event("b"))

        if version == 1:

            @step
            def audit(self):  # gone in every later version; no execution waits in it
                append_context("got", "audit")

    return Table


def test_a_step_renamed_twice_carries_an_execution_from_the_first_name(durable_engine):
    table(1)
    wid = durable_engine.start("deploys_table")
    durable_engine.drain()  # suspended in charge
    table(3)  # charge -> bill -> take_payment, bill never deployed while it waited
    assert durable_engine.check_deploy() == []
    durable_engine.send_event(wid, "a", 1)
    ex = durable_engine.run_until(wid)
    # and audit, removed while no execution was at it, is simply not run
    assert (ex.status, ex.context["got"]) == ("completed", [1])


def test_changing_the_waits_of_a_suspended_step_is_not_detected(durable_engine):
    table(1)
    wid = durable_engine.start("deploys_table")
    durable_engine.drain()  # suspended in charge, waiting for "a"
    table(4)  # the same step now waits for "b" first
    assert durable_engine.check_deploy() == []  # not detected (deploys.md says so)
    durable_engine.send_event(wid, "a", 1)
    durable_engine.drain()
    # the recorded wait was replaced by the new one: "a" no longer resumes it
    assert durable_engine.get_execution(wid).status == "waiting"
