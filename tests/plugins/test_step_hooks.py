"""The around-step hook (durable_step_call) and how observer hooks are called."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

import durable
from durable import Retry, step, workflow
from durable.context import put_context
from durable.plugins import hookimpl

where = contextvars.ContextVar[str | None]("where", default=None)


@workflow("hooked")
class Hooked:
    @step(retry=Retry(max_attempts=3, backoff="constant", base=1))
    def first(self):
        put_context("first", [where.get(), threading.current_thread().name])

    @step
    async def second(self):
        await asyncio.sleep(0)
        put_context("second", [where.get(), threading.current_thread().name])


class Around:
    """Sets a context variable around each attempt and records both halves."""

    def __init__(self, fail_first_attempt: bool = False) -> None:
        self.seen: list[tuple[str, str, int, bool]] = []
        self.after: list[tuple[str, object]] = []
        self.fail_first_attempt = fail_first_attempt

    @hookimpl(wrapper=True)
    def durable_step_call(self, call: durable.StepCall):
        self.seen.append((call.workflow, call.step, call.attempt, call.is_async))
        if self.fail_first_attempt and call.step == "first" and call.attempt == 1:
            raise RuntimeError("refused by the wrapper")
        token = where.set(f"{call.step}#{call.attempt}")
        try:
            result = yield
            self.after.append((call.step, where.get()))
            return result
        finally:
            where.reset(token)


def test_a_wrapper_runs_inside_each_attempt_sync_and_async(durable_store_url):
    around = Around()
    with durable.Engine(durable_store_url, plugins=[around]) as engine:
        wid = engine.start(Hooked)
        engine.drain()
        ex = engine.get_execution(wid)
    assert ex.status == "completed"
    assert ex.context["first"][0] == "first#1"
    # the async step's wrapper ran in its task on the event loop, around the awaits
    assert ex.context["second"] == ["second#1", "durable-async-steps"]
    assert around.seen == [("hooked", "first", 1, False), ("hooked", "second", 1, True)]
    assert around.after == [("first", "first#1"), ("second", "second#1")]


def test_a_wrapper_that_raises_before_it_yields_fails_the_attempt(durable_clock):
    around = Around(fail_first_attempt=True)
    with durable.Engine("memory://", clock=durable_clock, plugins=[around]) as engine:
        wid = engine.start(Hooked)
        engine.drain()
        ex = engine.get_execution(wid, include_steps=True)
        assert ex.status == "pending"  # the step's retry policy applies
        assert ex.steps[0].error["message"] == "refused by the wrapper"
        durable_clock.advance(1000)
        engine.drain()
        assert engine.get_execution(wid).status == "completed"
    assert [s[2] for s in around.seen if s[1] == "first"] == [1, 2]


def test_wrappers_nest_outermost_first():
    order: list[str] = []

    class Outer:
        @hookimpl(wrapper=True, tryfirst=True)
        def durable_step_call(self, call):
            order.append(f"outer>{call.step}")
            result = yield
            order.append(f"outer<{call.step}")
            return result

    class Inner:
        @hookimpl(wrapper=True)
        def durable_step_call(self, call):
            order.append(f"inner>{call.step}")
            result = yield
            order.append(f"inner<{call.step}")
            return result

    with durable.Engine("memory://", plugins=[Inner(), Outer()]) as engine:
        engine.start(Hooked)
        engine.drain()
    assert order == [
        "outer>first",
        "inner>first",
        "inner<first",
        "outer<first",
        "outer>second",
        "inner>second",
        "inner<second",
        "outer<second",
    ]


def test_a_plain_step_call_implementation_is_refused():
    class Plain:
        @hookimpl
        def durable_step_call(self, call):
            return call.body()

    with pytest.raises(durable.ConfigError, match=r"durable_step_call must be a new-style wrapper"):
        durable.Engine("memory://", plugins=[Plain()])


@pytest.mark.parametrize("kind", ["wrapper", "hookwrapper"])
def test_a_wrapper_on_an_observer_hook_is_refused_not_skipped(kind):
    class Wrapping:
        @hookimpl(**{kind: True})
        def durable_step_completed(self, execution, step):
            yield

    with pytest.raises(durable.ConfigError, match=r"durable_step_completed is a wrapper"):
        durable.Engine("memory://", plugins=[Wrapping()])


def test_an_observer_that_raises_does_not_silence_the_others(caplog):
    heard: list[str] = []

    class Broken:
        @hookimpl(tryfirst=True)
        def durable_step_completed(self, execution, step):
            raise RuntimeError("observer bug")

    class Fine:
        @hookimpl
        def durable_step_completed(self, execution, step):
            heard.append(step.name)

    with durable.Engine("memory://", plugins=[Broken(), Fine()]) as engine:
        wid = engine.start(Hooked)
        engine.drain()
        assert engine.get_execution(wid).status == "completed"
    assert heard == ["first", "second"]
    failures = [r for r in caplog.records if r.name == "durable.plugins"]
    assert len(failures) == 2
    assert "<locals>.Broken.durable_step_completed failed" in failures[0].getMessage()


def test_an_override_is_the_innermost_wrapper_so_other_wrappers_see_its_faults(durable_engine):
    seen: list[tuple[str, int, str]] = []

    class Tracer:
        @hookimpl(wrapper=True)
        def durable_step_call(self, call):
            try:
                result = yield
            except Exception as exc:
                seen.append((call.step, call.attempt, type(exc).__name__))
                raise
            seen.append((call.step, call.attempt, repr(result)))
            return result

    from durable_testing import TimeTravelEngine

    with TimeTravelEngine(plugins=[Tracer()]) as engine:
        engine.override("first", workflow=Hooked, fail=1, returns="fake")
        wid = engine.start(Hooked)
        assert engine.run_until(wid).status == "completed"
    assert seen == [
        ("first", 1, "InjectedFault"),
        ("first", 2, "'fake'"),
        ("second", 1, "None"),
    ]


def test_a_wrapper_sees_a_suspension_pass_as_a_wait_signal(durable_clock):
    passed: list[str] = []

    @workflow("hooked_sleep")
    class Sleeper:
        @step
        def nap(self):
            durable.sleep_for(1000)

    class Watch:
        @hookimpl(wrapper=True)
        def durable_step_call(self, call):
            try:
                return (yield)
            except durable.WaitSignal:
                passed.append("suspended")
                raise

    with durable.Engine("memory://", clock=durable_clock, plugins=[Watch()]) as engine:
        wid = engine.start(Sleeper)
        engine.drain()
        assert engine.get_execution(wid).status == "waiting"
        durable_clock.advance(1000)
        engine.drain()
        assert engine.get_execution(wid).status == "completed"
    assert passed == ["suspended"]
