"""Operator recovery: engine.retry from the failed step (or another), engine.fork with the
context rebuilt from what each step changed."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import durable
from durable import Retry, compensation, decision, parallel, step, workflow
from durable.context import delete_context, get_context, input, put_context

calls: list[str] = []
broken = {"charge": True}


@workflow("recover_order")
class Order:
    @step
    def load(self):
        calls.append("load")
        put_context("order", input()["order"])
        put_context("scratch", 1)

    @step
    def price(self):
        calls.append("price")
        put_context("total", 10 * get_context("order"))
        delete_context("scratch")

    @step(retry=Retry(max_attempts=2, backoff="constant", base=1))
    def charge(self):
        calls.append("charge")
        if broken["charge"]:
            raise RuntimeError("gateway down")
        put_context("charged", get_context("total"))

    @step
    def ship(self):
        calls.append("ship")
        put_context("shipped", True)


def test_retry_resumes_at_the_failed_step_without_rerunning_the_others(durable_engine):
    calls.clear()
    broken["charge"] = True
    wid = durable_engine.start(Order, {"order": 3})
    failed = durable_engine.run_until(wid)
    assert failed.status == "failed" and failed.current_step == "charge"
    broken["charge"] = False
    calls.clear()
    again = durable_engine.retry(wid)
    assert (again.status, again.current_step, again.current_visit) == ("pending", "charge", 2)
    assert again.error is None and again.completed_at is None
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed"
    assert calls == ["charge", "ship"]  # load and price were not run again
    assert ex.context == {"order": 3, "total": 30, "charged": 30, "shipped": True}
    steps = durable_engine.get_execution(wid, include_steps=True).steps
    charge = [(s.visit, s.attempt, s.status) for s in steps if s.name == "charge"]
    assert charge == [(1, 1, "failed"), (1, 2, "failed"), (2, 1, "completed")]


def test_each_completion_records_what_it_changed(durable_engine):
    broken["charge"] = False
    wid = durable_engine.start(Order, {"order": 2})
    durable_engine.run_until(wid)
    steps = durable_engine.get_execution(wid, include_steps=True).steps
    by_name = {s.name: s.changes for s in steps}
    assert by_name["load"] == {"set": {"order": 2, "scratch": 1}, "deleted": []}
    assert by_name["price"] == {"set": {"total": 20}, "deleted": ["scratch"]}


def test_retry_from_an_earlier_step_rebuilds_the_context_before_it(durable_engine):
    broken["charge"] = True
    wid = durable_engine.start(Order, {"order": 1})
    durable_engine.run_until(wid)
    broken["charge"] = False
    calls.clear()
    again = durable_engine.retry(wid, from_step="price")
    assert again.context == {"order": 1, "scratch": 1}  # as before price ran
    ex = durable_engine.run_until(wid)
    assert calls == ["price", "charge", "ship"]
    assert ex.context == {"order": 1, "total": 10, "charged": 10, "shipped": True}


def test_retry_refuses_what_it_cannot_do(durable_engine):
    broken["charge"] = False
    wid = durable_engine.start(Order, {"order": 1})
    with pytest.raises(durable.InvalidState, match="is pending; only a failed, cancelled"):
        durable_engine.retry(wid)
    durable_engine.run_until(wid)
    with pytest.raises(durable.InvalidState, match="is completed"):
        durable_engine.retry(wid)
    broken["charge"] = True
    failed = durable_engine.start(Order, {"order": 1})
    durable_engine.run_until(failed)
    with pytest.raises(durable.StepNotFound, match="no step 'nope'.*load, price, charge, ship"):
        durable_engine.retry(failed, from_step="nope")
    with pytest.raises(durable.ExecutionNotFound):
        durable_engine.retry("no-such-id")
    assert durable_engine.get_execution(failed).status == "failed"  # nothing changed


def test_a_cancelled_execution_can_be_retried(durable_engine):
    broken["charge"] = False
    wid = durable_engine.start(Order, {"order": 5})
    durable_engine.run_until(wid, step="charge")
    durable_engine.cancel(wid)
    assert durable_engine.get_execution(wid).status == "cancelled"
    durable_engine.retry(wid)
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed" and ex.cancel_reason is None
    assert ex.context["charged"] == 50


def test_fork_starts_a_new_execution_at_a_step_with_corrected_context(durable_engine):
    broken["charge"] = False
    wid = durable_engine.start(Order, {"order": 4})
    original = durable_engine.run_until(wid)
    calls.clear()
    fid = durable_engine.fork(wid, "charge", context={"total": 35})
    forked = durable_engine.get_execution(fid)
    assert fid != wid and forked.forked_from == wid
    assert (forked.status, forked.current_step, forked.input) == ("pending", "charge", {"order": 4})
    assert forked.context == {"order": 4, "total": 35}
    done = durable_engine.run_until(fid)
    assert calls == ["charge", "ship"]
    assert done.context == {"order": 4, "total": 35, "charged": 35, "shipped": True}
    assert durable_engine.get_execution(wid) == original  # untouched
    # a fork of a fork starts from the context its own run had
    calls.clear()
    again = durable_engine.fork(fid, "ship")
    assert durable_engine.get_execution(again).context == {
        "order": 4,
        "total": 35,
        "charged": 35,
    }
    with pytest.raises(durable.SerializationError, match="takes a dict"):
        durable_engine.fork(wid, "ship", context=["x"])  # type: ignore[arg-type]


def test_retry_from_a_step_that_never_ran_keeps_the_context_as_it_stands(durable_engine):
    broken["charge"] = True
    wid = durable_engine.start(Order, {"order": 2})
    durable_engine.run_until(wid)
    calls.clear()
    again = durable_engine.retry(wid, from_step="ship")  # (skipping charge: the operator's call)
    assert again.context == {"order": 2, "total": 20}
    assert durable_engine.run_until(wid).context["shipped"] is True
    assert calls == ["ship"]


@workflow("recover_saga")
class Saga:
    @step(compensate="undo")
    def book(self):
        put_context("booked", True)

    @step
    def pay(self):
        if broken["charge"]:
            raise RuntimeError("declined")
        put_context("paid", True)

    @compensation
    def undo(self):
        put_context("undone", True)


def test_a_compensated_execution_retried_starts_from_the_context_before_the_failed_step(
    durable_engine,
):
    broken["charge"] = True
    wid = durable_engine.start(Saga)
    assert durable_engine.run_until(wid).context == {"booked": True, "undone": True}
    broken["charge"] = False
    again = durable_engine.retry(wid)
    assert again.context == {"booked": True}  # the compensation's write is not kept
    ex = durable_engine.run_until(wid)
    assert (ex.status, ex.context) == ("completed", {"booked": True, "paid": True})


@workflow("recover_groups")
class WithGroup:
    @step
    def start(self):
        put_context("n", 0)

    @parallel
    class both:
        @step
        def a(self):
            put_context("a", 1)

        @step
        def b(self):
            put_context("b", 2)

    @decision("start")
    def again(self):
        return None

    @step
    def end(self):
        if broken["charge"]:
            raise RuntimeError("late")


def test_the_context_before_a_step_after_a_group_includes_the_merge(durable_engine):
    broken["charge"] = True
    wid = durable_engine.start(WithGroup)
    durable_engine.run_until(wid)
    fid = durable_engine.fork(wid, "end")
    assert durable_engine.get_execution(fid).context == {"n": 0, "a": 1, "b": 2}
    fid = durable_engine.fork(wid, "both")
    assert durable_engine.get_execution(fid).context == {"n": 0}
    broken["charge"] = False
    assert durable_engine.run_until(fid).context == {"n": 0, "a": 1, "b": 2}


# -- found by review ------------------------------------------------------------------------

discount = {"on": True}


@workflow("recover_rewind")
class Rewind:
    @step
    def price(self):
        put_context("total", 100)

    @step
    def discount(self):
        if discount["on"]:
            put_context("discount", 10)

    @step
    def charge(self):
        if broken["charge"]:
            raise RuntimeError("declined")
        put_context("charged", get_context("total") - get_context("discount", 0))


def test_a_second_retry_does_not_bring_back_what_the_first_rewound(durable_engine):
    broken["charge"], discount["on"] = True, True
    wid = durable_engine.start(Rewind)
    durable_engine.run_until(wid)
    discount["on"] = False
    durable_engine.retry(wid, from_step="discount")  # the discount is withdrawn
    durable_engine.run_until(wid)  # charge fails again
    broken["charge"] = False
    again = durable_engine.retry(wid)
    assert again.context == {"total": 100}
    assert durable_engine.run_until(wid).context["charged"] == 100


@workflow("recover_group_cancel")
class GroupThenEnd:
    @parallel
    class both:
        @step
        def a(self):
            put_context("a", 1)

        @step
        def b(self):
            from durable.waits import wait_for_event

            wait_for_event("go")
            put_context("b", 2)


def test_retrying_an_execution_cancelled_at_a_group_runs_a_new_visit_of_it(durable_engine):
    wid = durable_engine.start(GroupThenEnd)
    durable_engine.run_until(wid, "waiting")
    durable_engine.drain()  # a completes; b waits
    durable_engine.cancel(wid)
    again = durable_engine.retry(wid)
    assert (again.current_step, again.current_visit) == ("both", 2)
    durable_engine.drain()
    durable_engine.send_event(wid, "go")
    ex = durable_engine.run_until(wid)
    assert (ex.status, ex.context) == ("completed", {"a": 1, "b": 2})


def test_a_change_of_type_alone_is_recorded():
    from durable._recovery import changes

    assert changes({"a": [1]}, {"a": [True]})["set"] == {"a": [True]}
    assert changes({"a": {"x": 1}}, {"a": {"x": True}})["patched"] == {
        "a": {"set": {"x": True}, "deleted": []}
    }
    assert changes({"a": [1]}, {"a": [True, 2]})["set"] == {"a": [True, 2]}

    assert changes({"amount": 10}, {"amount": 10.0}) == {"set": {"amount": 10.0}, "deleted": []}
    assert changes({"paid": 0}, {"paid": False})["set"] == {"paid": False}


# -- what a completion records -----------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-2, 2)
    | st.sampled_from([0.0, 1.0, -1.0, 2.5])
    | st.text(max_size=5)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=12,
)
contexts = st.dictionaries(st.sampled_from("abcde"), json_values, max_size=5)


@given(before=contexts, after=contexts)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_the_changes_recorded_rebuild_the_context_after(before, after):
    from durable._recovery import apply_changes, changes

    rebuilt = json.loads(json.dumps(before))
    apply_changes(rebuilt, json.loads(json.dumps(changes(before, after))))
    # as JSON, so that 1 and True (and 1 and 1.0) differ at any depth
    assert json.dumps(rebuilt, sort_keys=True) == json.dumps(after, sort_keys=True)


@given(
    before=contexts,
    extra=st.lists(json_values, min_size=1, max_size=3),
    key=st.sampled_from("abcde"),
)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_a_list_grown_at_its_end_records_only_what_was_added(before, extra, key):
    from durable._recovery import changes

    start = before.get(key)
    if not isinstance(start, list) or not start:
        start = before[key] = [0]
    after = {**before, key: [*start, *extra]}
    assert changes(before, after) == {"set": {}, "deleted": [], "extended": {key: extra}}


@workflow("recover_appends")
class Appends:
    @step
    def grow(self):
        put_context("log", [*get_context("log", []), {"visit": len(get_context("log", []))}])
        put_context("seen", {**get_context("seen", {}), str(len(get_context("log"))): True})

    @decision("grow")
    def again(self):
        return "grow" if len(get_context("log")) < 50 else None

    @step
    def fail(self):
        raise RuntimeError("stop here")


def test_a_loop_that_appends_records_a_size_linear_in_its_visits(durable_engine):
    wid = durable_engine.start(Appends)
    durable_engine.run_until(wid)
    steps = durable_engine.get_execution(wid, include_steps=True).steps
    grows = [s for s in steps if s.name == "grow"]
    assert len(grows) == 50
    # each visit records its one new entry, not the whole list again
    assert all(len(json.dumps(s.changes)) < 160 for s in grows[1:]), grows[-1].changes
    assert grows[-1].changes == {
        "set": {},
        "deleted": [],
        "extended": {"log": [{"visit": 49}]},
        "patched": {"seen": {"set": {"50": True}, "deleted": []}},
    }
    # and fork still rebuilds the context before any visit from them
    forked = durable_engine.fork(wid, "fail")
    assert len(durable_engine.get_execution(forked).context["log"]) == 50
