"""The context API, callable inside a running step.

Reads see the context as committed by earlier steps plus this attempt's own writes. Writes
are kept with the attempt and committed atomically with the step's completion; a failed or
timed-out attempt's writes are discarded. Every value must be JSON: a value that is not raises
``SerializationError`` at the call that put it, and nothing is stored.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from durable._json import normalise
from durable._merge import note
from durable._runtime import StepRun, current
from durable.dsl import registered_workflows
from durable.errors import ContextError, SerializationError
from durable.models import Undoing
from durable.waits import (
    sleep_for,
    sleep_until,
    wait_for_all_events,
    wait_for_any_event,
    wait_for_event,
    wait_for_input,
)

__all__ = [
    "append_context",
    "attempt",
    "cancel_requested",
    "compensating",
    "context",
    "delete_context",
    "engine",
    "failure",
    "get_context",
    "increment_context",
    "input",
    "item_index",
    "put_context",
    "scheduled_at",
    "sleep_for",
    "sleep_until",
    "update_context",
    "wait_for_all_events",
    "wait_for_any_event",
    "wait_for_event",
    "wait_for_input",
    "workflow_id",
]

_MISSING = object()


def _run(fn: str) -> StepRun:
    run = current.get()
    if run is None:
        raise ContextError(
            f"{fn}() was called outside a running step; call it from a @step method "
            "while the engine runs the workflow"
        )
    return run


@contextmanager
def _writing(fn: str) -> Iterator[StepRun]:
    """The running attempt, locked for a write; ContextError once it has ended (a thread
    the step started, writing after the step returned: the write would be lost)."""
    run = _run(fn)
    if run.read_only is not None:
        raise ContextError(f"{fn}(): {run.read_only}")
    with run.lock:
        if run.closed:
            raise ContextError(
                f"{fn}() was called after step {run.step!r} attempt {run.attempt} ended, so "
                "the write would be lost; a thread the step starts must finish its context "
                "writes before the step returns (join it)"
            )
        yield run


def _key(key: object, fn: str) -> str:
    if not isinstance(key, str):
        raise SerializationError(f"{fn}() context keys must be str, got {type(key).__name__}")
    return key


def context() -> dict[str, Any]:
    """The whole context, as a copy."""
    run = _run("context")
    with run.lock:  # a thread the step started may be writing
        return copy.deepcopy(run.context)


def get_context(key: str, default: Any = None) -> Any:
    """The value under ``key``, or ``default`` when it is not set."""
    run = _run("get_context")
    with run.lock:
        value = run.context.get(key, default)
    # A foreach item shares its execution's context with the thread's other items: what
    # it reads is its own copy.
    return copy.deepcopy(value) if run.read_only is not None else value


def input() -> Any:
    """The input the execution was started with: an instance of the workflow's input
    model when it declares one (``@workflow(input=Model)``; a new one at each call),
    else the JSON as stored."""
    run = _run("input")
    wdef = registered_workflows().get(run.workflow)
    if wdef is not None and wdef.input_model is not None:
        return wdef.load_input(run.input, run.workflow_id or run.execution_id)
    return copy.deepcopy(run.input) if run.read_only is not None else run.input


def workflow_id() -> str:
    """The id of the running execution."""
    run = _run("workflow_id")
    return run.workflow_id or run.execution_id


def attempt() -> int:
    """The number of the running attempt of this step (1 for the first)."""
    return _run("attempt").attempt


def put_context(key: str | Mapping[str, Any], value: Any = _MISSING) -> None:
    """Set one key, or merge a mapping: ``put_context("k", v)`` or ``put_context({"k": v})``."""
    if value is _MISSING:
        if not isinstance(key, Mapping):
            raise ContextError(
                "put_context() takes a key and a value, or one mapping to merge; "
                f"got only {type(key).__name__}"
            )
        items = {_key(k, "put_context"): normalise(v, f"context key {k!r}") for k, v in key.items()}
        with _writing("put_context") as run:
            run.context.update(items)
            for k in items:
                _note(run, k, "set")
        return
    k = _key(key, "put_context")
    new = normalise(value, f"context key {k!r}")
    with _writing("put_context") as run:
        run.context[k] = new
        _note(run, k, "set")


def update_context(key: str, fn: Callable[[Any], Any]) -> Any:
    """Replace the value under ``key`` with ``fn(old)`` (``old`` is None when unset)."""
    k = _key(key, "update_context")
    with _writing("update_context") as run:
        new = normalise(fn(copy.deepcopy(run.context.get(k))), f"context key {k!r}")
        run.context[k] = new
        _note(run, k, "set")
    return new


def delete_context(key: str) -> None:
    """Remove ``key``; nothing happens when it is not set."""
    k = _key(key, "delete_context")
    with _writing("delete_context") as run:
        run.context.pop(k, None)
        _note(run, k, "set")


def append_context(key: str, value: Any) -> list[Any]:
    """Append to the list under ``key``, creating it when unset."""
    k = _key(key, "append_context")
    item = normalise(value, f"context key {k!r}")
    with _writing("append_context") as run:
        old = run.context.get(k, [])
        if not isinstance(old, list):
            raise ContextError(
                f"append_context({k!r}) needs a list there, but it holds {type(old).__name__}"
            )
        new = [*old, item]
        run.context[k] = new
        _note(run, k, "append", item, new)
    return new


def increment_context(key: str, by: int | float = 1) -> int | float:
    """Add ``by`` to the number under ``key`` (0 when unset) and return the new value."""
    k = _key(key, "increment_context")
    if isinstance(by, bool) or not isinstance(by, int | float):
        raise ContextError(f"increment_context() by= must be a number, got {type(by).__name__}")
    with _writing("increment_context") as run:
        old = run.context.get(k, 0)
        if isinstance(old, bool) or not isinstance(old, int | float):
            raise ContextError(
                f"increment_context({k!r}) needs a number there, but it holds {type(old).__name__}"
            )
        new: int | float = normalise(old + by, f"context key {k!r}")
        run.context[k] = new
        _note(run, k, "increment", by, new)
    return new


def _note(run: StepRun, key: str, kind: str, amount: Any = None, after: Any = None) -> None:
    if run.ops is not None:
        note(run.ops, key, kind, amount, after)


def engine() -> Any:
    """The ``Engine`` running the current step (the module-level API
    ``durable.start`` and friends act on it inside a step)."""
    run = _run("engine")
    if run.engine is None:
        raise ContextError("engine() was called in a step no engine runs (a test double?)")
    return run.engine


def cancel_requested() -> bool:
    """Whether a cancel of the execution reached this attempt while it runs. A sync step
    doing long work may look now and then and stop early: its result is discarded either
    way (an ``async def`` step is cancelled at its current ``await`` instead)."""
    return _run("cancel_requested").cancel_requested


def failure() -> dict[str, Any] | None:
    """In a compensation: the failure that started its execution's compensations, as
    stored (``{"type", "message", "traceback", ...}``; a cancel's has type ``Cancelled``
    and its ``reason``). None in a step of the flow."""
    run = _run("failure")
    return copy.deepcopy(run.failure)


def compensating() -> Undoing | None:
    """In a compensation: the step run it undoes, its visit, and the context as that run
    left it (see ``Undoing``); None in a step of the flow. Every visit of
    a looped step is compensated on its own: this tells which."""
    run = _run("compensating")
    if run.undoing is None:
        return None
    found: Undoing = run.undoing() if run.owner is None else run.owner.call(run.undoing)
    return found


def scheduled_at() -> datetime:
    """When the execution was scheduled to start (UTC): for one a schedule started, the
    cron tick it fired for, whatever time its step actually runs at."""
    run = _run("scheduled_at")
    if run.scheduled_at is None:
        raise ContextError("scheduled_at() is not known in this step (a test double?)")
    return run.scheduled_at


def item_index() -> int:
    """The position of the running foreach item in its list (0 for the first)."""
    run = _run("item_index")
    if run.item_index is None:
        raise ContextError(
            f"item_index() was called in step {run.step!r}, which is not a @foreach item"
        )
    return run.item_index
