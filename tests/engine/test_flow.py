"""Decisions, loops and conditional steps: the step plan followed by the executor, with
visits for steps reached again, on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import operator
from datetime import timedelta

import pytest

import durable
from durable import Retry, decision, seconds, step, workflow
from durable.context import (
    attempt,
    get_context,
    increment_context,
    input,
    put_context,
)
from durable.waits import sleep_for, wait_for_event

# -- a decision routes -----------------------------------------------------------------


@workflow("flow_route_order")
class RouteOrder:
    @step
    def validate(self) -> None:
        put_context("total", input()["total"])

    @decision("manual_review", "pack")
    def route(self) -> str | None:
        return "manual_review" if get_context("total") > 1000 else None

    @step
    def auto_approve(self) -> None:
        put_context("approved_by", "rules")

    @decision("ship")
    def after_auto(self) -> str:
        return "ship"  # past the review

    @step
    def manual_review(self) -> None:
        put_context("approved_by", "a human")

    @step
    def pack(self) -> None:
        put_context("packed", True)

    @step
    def ship(self) -> None:
        put_context("shipped", True)


def test_a_decision_routes_to_a_target_or_the_next_step(durable_engine):
    small = durable_engine.start(RouteOrder, {"total": 10})
    large = durable_engine.start(RouteOrder, {"total": 5000})
    assert durable_engine.run_until(small).context == {
        "total": 10,
        "approved_by": "rules",
        "shipped": True,
    }
    assert durable_engine.run_until(large).context == {
        "total": 5000,
        "approved_by": "a human",
        "packed": True,
        "shipped": True,
    }
    ran = [(a.step, a.status) for a in durable_engine.history(large)]
    assert ran == [
        ("validate", "completed"),
        ("route", "completed"),
        ("manual_review", "completed"),
        ("pack", "completed"),
        ("ship", "completed"),
    ]
    route = durable_engine.get_execution(large, include_steps=True).steps[1]
    assert route.result == "manual_review"  # what the decision chose is recorded


# -- a loop: retry until a condition holds ---------------------------------------------


@workflow("flow_poll_until_ready")
class PollUntilReady:
    @step
    def prepare(self) -> None:
        put_context("polls", 0)

    @step(retry=Retry(max_attempts=2, backoff="constant", base=1))
    def poll(self) -> None:
        if input().get("flaky") and attempt() == 1:
            raise ConnectionError("the service blinked")
        increment_context("polls")

    @decision("done")
    def ready(self) -> str | None:
        return "done" if get_context("polls") >= input()["needed"] else None

    @step
    def pause(self) -> None:
        sleep_for(seconds(30))

    @decision("poll")
    def again(self) -> str:
        return "poll"

    @step
    def done(self) -> None:
        put_context("done", True)


def test_a_loop_runs_a_step_again_as_new_visits(durable_engine, durable_clock):
    start = durable_clock.now()
    wid = durable_engine.start(PollUntilReady, {"needed": 3})
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed"
    assert ex.context == {"polls": 3, "done": True}
    assert durable_clock.now() == start + timedelta(seconds=60)  # two 30 s sleeps, exactly
    polls = [(a.visit, a.attempt) for a in durable_engine.history(wid) if a.step == "poll"]
    assert polls == [(1, 1), (2, 1), (3, 1)]
    waits = durable_engine.store.waits(execution_id=wid, pending_only=False)
    assert [(w.step, w.visit, w.status) for w in waits] == [
        ("pause", 1, "resolved"),
        ("pause", 2, "resolved"),  # a new wait each visit, not the first one replayed
    ]


def test_each_visit_gets_its_own_attempts_and_budget(durable_engine):
    wid = durable_engine.start(PollUntilReady, {"needed": 2, "flaky": True})
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed" and ex.context["polls"] == 2
    polls = [
        (a.visit, a.attempt, a.status) for a in durable_engine.history(wid) if a.step == "poll"
    ]
    assert polls == [
        (1, 1, "failed"),
        (1, 2, "completed"),
        (2, 1, "failed"),  # attempts count from 1 again: the budget is per visit
        (2, 2, "completed"),
    ]


@workflow("flow_endless", max_step_runs=7)
class Endless:
    @step
    def spin(self) -> None:
        increment_context("spins")

    @decision("spin")
    def again(self) -> str:
        return "spin"


def test_a_loop_past_max_step_runs_fails_the_execution(durable_engine):
    wid = durable_engine.start(Endless)
    ex = durable_engine.run_until(wid)
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.TooManyStepRuns"
    assert "max_step_runs of 7" in ex.error["message"]
    assert "step 'again', visit 4" in ex.error["message"]
    assert ex.context == {"spins": 4}  # spin, again, spin, again, spin, again, spin: 7 runs
    assert len(durable_engine.history(wid)) == 7


def test_max_step_runs_defaults_to_ten_thousand():
    assert durable.get_workflow(RouteOrder).max_step_runs == 10_000


@workflow("flow_bad_decision")
class BadDecision:
    @decision("finish")
    def choose(self) -> str:
        return input()["choice"]

    @step
    def middle(self) -> None:
        put_context("middle", True)

    @step
    def finish(self) -> None:
        put_context("finished", True)


@pytest.mark.parametrize("choice", ["nowhere", "middle", 3])
def test_a_decision_that_returns_no_target_fails_its_attempt(durable_engine, choice):
    wid = durable_engine.start(BadDecision, {"choice": choice})
    ex = durable_engine.run_until(wid)
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.InvalidDecision"
    assert repr(choice) in ex.error["message"]
    assert "'finish'" in ex.error["message"] and "None" in ex.error["message"]
    assert ex.context == {}


def test_a_decision_may_return_none_for_the_next_step(durable_engine):
    wid = durable_engine.start(BadDecision, {"choice": None})
    assert durable_engine.run_until(wid).context == {"middle": True, "finished": True}


# -- when=: conditional steps ----------------------------------------------------------


@workflow("flow_customs")
class Customs:
    @step
    def address(self) -> None:
        put_context(input())

    @step(when=lambda ctx: ctx.get("country") != "US")
    def customs(self) -> None:
        put_context("declared", True)

    @step(when="gift")
    def wrap(self) -> None:
        put_context("wrapped", True)

    @step
    def ship(self) -> None:
        put_context("shipped", True)


def test_when_skips_a_step_and_records_it_as_skipped(durable_engine):
    home = durable_engine.start(Customs, {"country": "US"})
    abroad = durable_engine.start(Customs, {"country": "FR", "gift": True})
    assert durable_engine.run_until(home).context == {"country": "US", "shipped": True}
    assert durable_engine.run_until(abroad).context == {
        "country": "FR",
        "gift": True,
        "declared": True,
        "wrapped": True,
        "shipped": True,
    }
    ex = durable_engine.get_execution(home, include_steps=True)
    assert [(s.name, s.status) for s in ex.steps] == [
        ("address", "completed"),
        ("customs", "skipped"),
        ("wrap", "skipped"),  # a key not in the context is falsy
        ("ship", "completed"),
    ]


@workflow("flow_when_mutates")
class WhenMutates:
    @step
    def first(self) -> None:
        put_context("items", [1])

    @step(when=lambda ctx: ctx["items"].append(2) or True)
    def second(self) -> None:
        put_context("seen", get_context("items"))

    @step(when=lambda ctx: operator.setitem(ctx, "items", []))
    def third(self) -> None:
        put_context("third", True)


def test_a_when_condition_gets_a_read_only_context_and_its_error_fails_the_step(
    durable_engine,
):
    wid = durable_engine.start(WhenMutates)
    ex = durable_engine.run_until(wid)
    assert ex.status == "failed"
    assert ex.error["type"] == "TypeError" and ex.error["step"] == "third"
    assert ex.context == {"items": [1], "seen": [1]}  # the condition's append did not leak


@workflow("flow_when_after_wait")
class WhenAfterWait:
    @step
    def first(self) -> None:
        put_context("go", True)

    @step(when="go", retry=Retry(max_attempts=2, backoff="constant", base=1))
    def waits(self) -> None:
        got = wait_for_event("ping")
        if attempt() == 1:
            raise RuntimeError("once")
        put_context("got", got)


def test_when_is_asked_once_per_visit_not_on_resume_or_retry(durable_engine):
    wid = durable_engine.start(WhenAfterWait)
    durable_engine.drain()
    assert durable_engine.get_execution(wid).status == "waiting"
    durable_engine.send_event(wid, "ping", "pong")
    ex = durable_engine.run_until(wid)
    assert ex.context == {"go": True, "got": "pong"}
    assert [a.status for a in durable_engine.history(wid) if a.step == "waits"] == [
        "suspended",
        "failed",
        "completed",
    ]


# -- checked when the class is defined -------------------------------------------------


def test_definition_errors_name_the_problem():
    with pytest.raises(durable.ConfigError, match="names no targets"):
        decision()
    with pytest.raises(durable.ConfigError, match="used bare"):

        @decision  # type: ignore[arg-type]
        def bare(self) -> None: ...

    with pytest.raises(durable.ConfigError, match="twice"):
        decision("a", "a")
    with pytest.raises(durable.ConfigError, match="when=.*got 3"):
        step(when=3)  # type: ignore[arg-type]
    with pytest.raises(durable.ConfigError, match="max_step_runs must be an int >= 1"):
        workflow("flow_bad_runs", max_step_runs=0)
    with pytest.raises(durable.ConfigError, match=r"'nowhere'.*not a step.*steps: first"):

        @workflow("flow_unknown_target")
        class UnknownTarget:
            @decision("nowhere")
            def first(self) -> None: ...

    with pytest.raises(durable.ConfigError, match="two steps named 'same'"):

        @workflow("flow_same_name")
        class SameName:
            @step(name="same")
            def one(self) -> None: ...

            @decision("same", name="same")
            def two(self) -> None: ...


def test_the_plan_answers_what_runs_next():
    wdef = durable.get_workflow(RouteOrder)
    assert wdef.next_step("validate").name == "route"
    assert wdef.next_step("route", None).name == "auto_approve"
    assert wdef.next_step("route", "pack").name == "pack"
    assert wdef.next_step("ship") is None
    with pytest.raises(durable.InvalidDecision):
        wdef.next_step("route", "ship")
