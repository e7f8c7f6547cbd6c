"""Foreach items and parallel branches as units: results in order, concurrency, failure
semantics, merges, waits, timeouts, cancel, and the test kit's view of them."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings

import durable
from durable import Retry, foreach, minutes, parallel, seconds, step, workflow
from durable.context import (
    append_context,
    attempt,
    get_context,
    input,
    item_index,
    put_context,
)
from durable.waits import sleep_for, wait_for_event

from helpers import examples

seen: list[tuple[int, int]] = []
lock = threading.Lock()


@workflow("units_ship_items")
class ShipItems:
    @step
    def load(self):
        put_context("items", input()["items"])

    @foreach("items", concurrency=3, into="labels", retry=Retry(max_attempts=2, base=1))
    def ship(self, item):
        with lock:
            seen.append((item_index(), attempt()))
        if item == "flaky" and attempt() == 1:
            raise ConnectionError("carrier timeout")
        return {"sku": item, "n": item_index(), "of": len(get_context("items"))}

    @step
    def done(self):
        put_context("count", len(get_context("labels")))


def test_foreach_runs_each_item_once_and_keeps_results_in_item_order(durable_engine):
    seen.clear()
    items = [f"sku-{i}" for i in range(7)] + ["flaky"]
    wid = durable_engine.start(ShipItems, {"items": items})
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed", ex.error
    assert ex.context["labels"] == [{"sku": s, "n": i, "of": 8} for i, s in enumerate(items)]
    assert ex.context["count"] == 8
    assert sorted(seen) == [(i, 1) for i in range(8)] + [(7, 2)]
    steps = durable_engine.get_execution(wid, include_steps=True).steps
    names = [s.name for s in steps if s.status == "completed"]
    assert names[0] == "load" and names[-2:] == ["ship", "done"]
    assert sorted(n for n in names if n.startswith("ship[")) == sorted(
        f"ship[{i}]" for i in range(8)
    )


def test_an_empty_list_gives_an_empty_result(durable_engine):
    wid = durable_engine.start(ShipItems, {"items": []})
    assert durable_engine.run_until(wid).context == {"items": [], "labels": [], "count": 0}


@workflow("units_many_items")
class ManyItems:
    @step
    def load(self):
        put_context("xs", list(range(input()["n"])))

    @foreach("xs", concurrency=100)
    def double(self, x):
        return 2 * x


@pytest.mark.slow
def test_a_foreach_larger_than_a_store_batch_or_a_join_page_keeps_every_result_in_order(
    durable_engine,
):
    # 2,500 items: a SQL store inserts them in three batches, the join reads three pages
    wid = durable_engine.start(ManyItems, {"n": 2_500})
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed", ex.error
    assert ex.context["double"] == [2 * x for x in range(2_500)]


@pytest.mark.parametrize(
    ("items", "found"), [(None, "NoneType None"), ({"a": 1}, "dict {'a': 1}"), ("abc", "str")]
)
def test_a_foreach_over_what_is_not_a_list_fails_naming_the_key(durable_engine, items, found):
    wid = durable_engine.start(ShipItems, {"items": items})
    ex = durable_engine.run_until(wid)
    assert ex.status == "failed"
    assert "context['items']" in ex.error["message"] and found in ex.error["message"]
    assert "not a list" in ex.error["message"]


@workflow("units_bounded")
class Bounded:
    @step
    def load(self):
        put_context("rows", list(range(5)))

    @foreach("rows", max_items=4)
    def each(self, row):
        return row


def test_more_than_max_items_fails_the_step(durable_engine):
    ex = durable_engine.run_until(durable_engine.start(Bounded))
    assert ex.status == "failed"
    assert "5 items, more than its max_items of 4" in ex.error["message"]
    assert ex.context == {"rows": [0, 1, 2, 3, 4]}  # nothing half-stored


@workflow("units_read_only")
class ReadOnly:
    @step
    def load(self):
        put_context("xs", [1, 2])

    @foreach("xs")
    def write(self, x):
        put_context("nope", x)


def test_the_context_is_read_only_in_an_item(durable_engine):
    ex = durable_engine.run_until(durable_engine.start(ReadOnly))
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.ContextError"
    assert "read-only in foreach item 'write[0]'" in ex.error["message"]


@workflow("units_not_json")
class NotJson:
    @step
    def load(self):
        put_context("xs", [1, 2])

    @foreach("xs")
    def each(self, x):
        return {1, 2} if x == 2 else x


def test_an_item_result_that_is_not_json_fails_naming_the_item(durable_engine):
    ex = durable_engine.run_until(durable_engine.start(NotJson))
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.SerializationError"
    assert "item 1" in ex.error["message"] and "each[1]" in ex.error["message"]
    assert "each" not in ex.context


def test_at_most_concurrency_items_are_claimable_at_once(durable_engine):
    durable_engine.start(ShipItems, {"items": [f"s{i}" for i in range(10)]})
    scheduler = durable_engine.scheduler
    (parent,) = scheduler.claim(limit=100)
    scheduler.execute(parent)  # load, then the fork: the execution waits for its items
    claimed = scheduler.claim(limit=100)
    assert len(claimed) == 3  # concurrency=3: the others are parked
    for row in claimed:
        scheduler.execute(row)
    assert len(scheduler.claim(limit=100)) == 3  # each end let one more in


# -- parallel failure semantics --------------------------------------------------------


@workflow("units_fail_fast")
class FailFast:
    @parallel(fail_fast=True)
    class both:
        @step
        def bad(self):
            raise ValueError("bad branch")

        @step
        def slow(self):
            sleep_for(minutes(10))
            put_context("slow", True)

    @step
    def after(self):
        put_context("after", True)


def test_fail_fast_fails_the_execution_with_the_first_error(durable_engine):
    wid = durable_engine.start(FailFast)
    ex = durable_engine.run_until(wid)
    assert ex.status == "failed"
    assert ex.error["type"] == "ValueError" and ex.error["step"] == "both.bad"
    assert ex.context == {}
    statuses = {s.name: s.status for s in durable_engine.get_execution(wid, True).steps}
    assert statuses.get("both.slow") in (None, "suspended", "cancelled")  # never completed
    assert durable_engine.list_waits(wid) == []  # the sleeping branch was cancelled


@workflow("units_all_fail")
class AllFail:
    @parallel(fail_fast=False)
    class group:
        @step
        def one(self):
            raise ValueError("one broke")

        @step
        def two(self):
            put_context("two", True)

        @step
        def three(self):
            raise KeyError("three")


def test_without_fail_fast_every_branch_ends_and_all_failures_are_listed(durable_engine):
    ex = durable_engine.run_until(durable_engine.start(AllFail))
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.ParallelFailed"
    assert set(ex.error["failures"]) == {"group.one", "group.three"}
    assert "group.one: ValueError: one broke" in ex.error["message"]


@workflow("units_conflict")
class Conflict:
    @parallel
    class g:
        @step
        def a(self):
            put_context("total", 1)

        @step
        def b(self):
            put_context("total", 2)


def test_a_key_set_by_two_branches_is_a_conflict_naming_both(durable_engine):
    ex = durable_engine.run_until(durable_engine.start(Conflict))
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.ContextConflict"
    assert ex.error["key"] == "total" and ex.error["branches"] == ["g.a", "g.b"]


# -- waits, timeouts and cancel inside units -------------------------------------------


@workflow("units_waiting_branch", timeout=minutes(30))
class WaitingBranch:
    @parallel
    class g:
        @step
        def approve(self):
            put_context("approved", wait_for_event("approved"))

        @step
        def nap(self):
            sleep_for(minutes(5))
            append_context("log", "napped")


def test_an_event_sent_to_the_execution_reaches_the_waiting_branch(durable_engine, durable_clock):
    wid = durable_engine.start(WaitingBranch)
    durable_engine.drain()
    assert {w.step for w in durable_engine.list_waits(wid)} == {"g.approve", "g.nap"}
    durable_engine.send_event(wid, "approved", "yes")
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed"
    assert ex.context == {"approved": "yes", "log": ["napped"]}


def test_the_workflow_timeout_covers_the_branches(durable_engine, durable_clock):
    start = durable_clock.now()
    wid = durable_engine.start(WaitingBranch)
    ex = durable_engine.run_until(wid)  # nobody sends the event
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.WorkflowTimeout"
    assert ex.completed_at - start == timedelta(minutes=30)


def test_cancelling_the_execution_cancels_its_units(durable_engine):
    wid = durable_engine.start(WaitingBranch)
    durable_engine.drain()
    durable_engine.cancel(wid, reason="no longer needed")
    assert durable_engine.get_execution(wid).status == "cancelled"
    assert durable_engine.list_waits(wid) == []
    assert durable_engine.next_due() is None  # nothing of it is left to run


# -- the test kit ------------------------------------------------------------------------


def test_overrides_by_qualified_name(durable_engine):
    durable_engine.override("g.a", context={"total": 5}, workflow=Conflict)
    durable_engine.override("g.b", returns=None, workflow=Conflict)
    ex = durable_engine.run_until(durable_engine.start(Conflict))
    assert ex.status == "completed" and ex.context == {"total": 5}


def test_overriding_a_foreach_fails_each_item_or_one(durable_engine):
    durable_engine.override("ship[1]", fail=1, workflow=ShipItems)
    wid = durable_engine.start(ShipItems, {"items": ["a", "b", "c"]})
    assert durable_engine.run_until(wid).status == "completed"
    errors = durable_engine.history(wid).errors
    assert errors == [("ship[1]", 1, "durable_testing.overrides.InjectedFault")]


def test_the_history_shows_items_and_the_clock_drives_their_retries(durable_engine, durable_clock):
    start = durable_clock.now()
    wid = durable_engine.start(ShipItems, {"items": ["flaky"]})
    durable_engine.run_until(wid)
    flaky = [a for a in durable_engine.history(wid) if a.step == "ship[0]"]
    assert [(a.attempt, a.status) for a in flaky] == [(1, "failed"), (2, "completed")]
    assert flaky[1].at == timedelta(seconds=1)  # base=1 s, exponential: exactly 1 s later
    assert durable_clock.now() == start + timedelta(seconds=1)


def test_a_branch_method_and_the_checks_at_definition(durable_engine):
    with pytest.raises(durable.ConfigError, match="no @step methods"):

        @workflow("units_empty_group")
        class EmptyGroup:
            @parallel
            class nothing:
                pass

    with pytest.raises(durable.ConfigError, match="takes no item"):

        @foreach("xs")
        def no_item(self): ...

    with pytest.raises(durable.ConfigError, match="contains one of"):
        step(name="a.b")(lambda self: None)


# -- units run at the same time on different workers -----------------------------------

barrier = threading.Barrier(2, timeout=20)


@workflow("units_barrier")
class Barrier:
    @parallel
    class meet:
        @step
        def left(self):
            put_context("left", barrier.wait())

        @step
        def right(self):
            put_context("right", barrier.wait())


def test_two_branches_run_at_once_on_two_worker_threads(engine, durable_clock):
    barrier.reset()
    wid = engine.start(Barrier)
    with engine.worker(concurrency=2):
        ex = engine.wait(wid, timeout=seconds(30))
    assert ex.status == "completed", ex.error  # neither branch could pass the barrier alone
    assert sorted([ex.context["left"], ex.context["right"]]) == [0, 1]


active = {"now": 0, "most": 0}
turnstile = threading.Condition()


@workflow("units_pairs")
class Pairs:
    @step
    def load(self):
        put_context("xs", list(range(8)))

    @foreach("xs", concurrency=2)
    def each(self, x):
        with turnstile:
            active["now"] += 1
            active["most"] = max(active["most"], active["now"])
            turnstile.notify_all()
            # give another item the chance to be in flight too (an item left alone at the
            # end goes on after a second: the bound below holds either way)
            turnstile.wait_for(lambda: active["now"] >= 2, timeout=1)
        with turnstile:
            active["now"] -= 1
        return x * 10


def test_at_most_concurrency_items_run_at_once_across_workers(engine):
    active.update(now=0, most=0)
    wid = engine.start(Pairs)
    with engine.worker(concurrency=4):
        ex = engine.wait(wid, timeout=seconds(30))
    assert ex.context["each"] == [x * 10 for x in range(8)]
    assert active["most"] <= 2  # four worker threads, but two items at a time


# -- a property: any fault schedule within the budgets ends as the fault-free run --------


@workflow("units_prop")
class PropFlow:
    @step
    def load(self):
        put_context("xs", list(range(6)))

    @parallel
    class enrich:
        @step(retry=Retry(max_attempts=3, backoff="constant", base=1))
        def a(self):
            append_context("tags", "a")

        @step(retry=Retry(max_attempts=4, backoff="linear", base=2))
        def b(self):
            put_context("b", get_context("xs")[-1])

    @foreach("xs", concurrency=2, retry=Retry(max_attempts=3, backoff="exponential", base=2))
    def square(self, x):
        return x * x


PROP_ITEMS = [f"square[{i}]" for i in range(6)]


def _prop_schedules():
    from durable_testing.strategies import fault_schedules

    return fault_schedules(
        PropFlow, budget="within", steps=["load", "enrich.a", "enrich.b", *PROP_ITEMS]
    )


@settings(
    max_examples=examples(30),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(schedule=_prop_schedules())
def test_faults_within_budget_across_branches_and_items_change_nothing(schedule, durable_store_url):
    from durable_testing import TimeTravelEngine

    with TimeTravelEngine(durable_store_url) as engine:
        schedule.apply(engine)
        wid = engine.start(PropFlow)
        ex = engine.run_until(wid)
        assert ex.status == "completed", engine.history(wid)
        assert ex.context == {
            "xs": list(range(6)),
            "tags": ["a"],
            "b": 5,
            "square": [x * x for x in range(6)],
        }
        history = engine.history(wid)
        for name in PROP_ITEMS:
            attempts = history.attempts(name)
            assert [a.status for a in attempts].count("completed") == 1  # exactly once
            assert len(attempts) == schedule.failures(name) + 1


def test_overriding_the_foreach_step_applies_to_every_item(durable_engine):
    durable_engine.override("ship", returns={"stub": True}, workflow=ShipItems)
    wid = durable_engine.start(ShipItems, {"items": ["a", "b", "c"]})
    ex = durable_engine.run_until(wid)
    assert ex.context["labels"] == [{"stub": True}] * 3


@workflow("units_item_timeout")
class ItemTimeout:
    @step
    def load(self):
        put_context("xs", [1, 2, 3])

    @foreach("xs", timeout=minutes(1), retry=Retry(max_attempts=2, backoff="constant", base=1))
    def slow(self, x):
        if x == 2 and attempt() == 1:
            clocks["clock"].advance(minutes(5))  # as a slow call would: past the timeout
        return x


clocks: dict[str, object] = {}


def test_a_step_timeout_applies_to_each_item(durable_engine, durable_clock):
    clocks["clock"] = durable_clock
    wid = durable_engine.start(ItemTimeout)
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed", ex.error
    assert ex.context["slow"] == [1, 2, 3]
    attempts = durable_engine.history(wid).attempts("slow[1]")
    assert [a.status for a in attempts][-2:] == ["failed", "completed"]
    assert attempts[-2].error_type == "durable.errors.StepTimeout"
    assert "step 'slow[1]' attempt 1 ran past its timeout" in attempts[-2].error_message
    assert [a.status for a in durable_engine.history(wid).attempts("slow[0]")] == ["completed"]
