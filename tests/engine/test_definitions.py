"""Workflow definitions: what @workflow and @step accept, how a class defined again
replaces itself, and what becomes of stored executions when a redeploy changes their
workflow's steps."""

from __future__ import annotations

import asyncio
import functools

import pytest

import durable
from durable import Retry, seconds, step, workflow
from durable.context import append_context, attempt, put_context
from durable.dsl import get_workflow

# -- what a definition may say ------------------------------------------------------------


def test_two_steps_with_one_name_are_a_config_error():
    with pytest.raises(
        durable.ConfigError,
        match=r"two steps named 'charge': the methods charge_card and charge_wallet",
    ):

        @workflow("definitions_dup_steps")
        class Dup:
            @step(name="charge")
            def charge_card(self) -> None: ...

            @step(name="charge")
            def charge_wallet(self) -> None: ...


def test_a_subclass_may_redefine_a_step_method():
    @workflow("definitions_base")
    class Base:
        @step
        def a(self) -> None: ...

        @step
        def b(self) -> None: ...

    @workflow("definitions_child")
    class Child(Base):
        @step(retry=Retry(max_attempts=2))
        def a(self) -> None: ...

    wdef = durable.get_workflow(Child)
    assert [s.name for s in wdef.steps] == ["a", "b"]
    assert wdef.steps[0].retry == Retry(max_attempts=2)


def _wrapped(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


def _hidden(fn):
    def wrapper(*args, **kwargs):  # no functools.wraps: the coroutine is hidden
        return fn(*args, **kwargs)

    return wrapper


@workflow("definitions_wrapped_async")
class WrappedAsync:
    @step
    @_wrapped
    async def s(self) -> None:
        await asyncio.sleep(0)
        put_context("ran", True)


@workflow("definitions_hidden_async")
class HiddenAsync:
    @step
    @_hidden
    async def s(self) -> None:
        put_context("ran", True)


def test_async_steps_behind_decorators(engine):
    ok = engine.start(WrappedAsync)
    hidden = engine.start(HiddenAsync)
    engine.drain()
    assert engine.get_execution(ok).context == {"ran": True}
    ex = engine.get_execution(hidden)
    assert ex.status == "failed"
    assert "returned an awaitable but is not an async def step" in ex.error["message"]


@workflow("definitions_bad_init")
class NeedsArgs:
    def __init__(self, required: int) -> None:
        self.required = required

    @step
    def s(self) -> None: ...


def test_a_workflow_class_that_cannot_be_built_fails_the_attempt(engine):
    wid = engine.start(NeedsArgs)
    engine.drain()
    ex = engine.get_execution(wid)
    assert ex.status == "failed"
    assert ex.error["type"] == "TypeError"


# -- defined again ------------------------------------------------------------------------


def _define_twice():
    @workflow("definitions_twice")
    class Twice:
        @step
        def one(self) -> None: ...

    first = Twice

    @workflow("definitions_twice")  # same module, same qualname, another definition
    class Twice:  # type: ignore[no-redef]
        @step
        def two(self) -> None: ...

    return first, Twice


def test_a_second_class_of_the_same_name_in_one_file_is_a_config_error():
    with pytest.raises(durable.ConfigError, match="defines _define_twice.<locals>.Twice twice"):
        _define_twice()


def _make() -> type:
    @workflow("definitions_remade")
    class Remade:
        @step
        def one(self) -> None: ...

    return Remade


def test_the_same_definition_run_again_replaces_itself():
    # a module reloaded, or a class made by a function called again (a test, a notebook)
    first, second = _make(), _make()
    assert first is not second
    assert durable.get_workflow("definitions_remade").cls is second


# -- redeploys under stored executions ----------------------------------------------------


def _versioned(*names: str) -> type:
    """The same workflow class, as two deploys define it (same module and qualname)."""
    ns = {}
    for name in names:

        def run(self: object, name: str = name) -> None:
            append_context("ran", name)
            if name == "b" and attempt() == 1:
                raise RuntimeError("b fails once")

        run.__name__ = name
        ns[name] = step(retry=Retry(max_attempts=2, backoff="constant", base=1))(run)
    return workflow("definitions_redeploy")(type("Redeployed", (), ns))


def test_the_step_pointer_survives_a_redeploy_that_adds_a_step(engine, durable_clock):
    _versioned("a", "b", "c")
    wid = engine.start("definitions_redeploy")
    engine.drain()  # a completes, b fails once and waits for its retry
    assert engine.get_execution(wid).current_step == "b"
    v2 = _versioned("audit", "a", "b", "c")
    assert [s.name for s in get_workflow(v2).steps] == ["audit", "a", "b", "c"]
    durable_clock.advance(seconds(1))
    engine.drain()
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.status == "completed"
    assert ex.context == {"ran": ["a", "b", "c"]}  # a did not run again, audit never ran


def test_a_redeploy_that_removes_the_current_step_fails_clearly(engine, durable_clock):
    _versioned("a", "b", "c")
    wid = engine.start("definitions_redeploy")
    engine.drain()
    _versioned("a", "c")
    durable_clock.advance(seconds(1))
    engine.drain()
    ex = engine.get_execution(wid)
    assert ex.status == "failed"
    # (WorkflowChanged is a StepNotFound)
    assert ex.error["type"] == "durable.errors.WorkflowChanged"
    assert "step 'b' is gone" in ex.error["message"]
    assert "renamed_from='b'" in ex.error["message"]
    assert ex.context == {"ran": ["a"]}  # nothing already stored was lost
