"""Waits, callable inside a step: durable sleeps, events and human input.

A step that reaches a wait that is not yet resolved is **suspended**: the execution
becomes ``waiting`` and holds no worker and no connection. When the wait resolves (its time
comes, the event arrives, the input is provided, or it times out) the step **runs again
from its start**, under the same attempt number; every wait it already passed returns its
recorded result at once, in the order the step reaches them. So:

* code before a wait runs again on resume — keep side effects after a step's last wait,
  or in an earlier step (context writes are safe: they are kept only when the step
  completes);
* a step must reach its waits in the same order on every run (don't wait inside a branch
  on the time, a random number, or data that changes).

A wait for an event or an input with a ``timeout`` returns ``timeout_value`` when it times
out, if one was given; without one the attempt fails with
``WaitTimeout`` and the step's retry rules apply (a retried attempt
waits afresh).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast, overload

from durable._json import normalise
from durable._limits import check_name, check_text, check_time
from durable._runtime import StepRun, current
from durable._schemas import check_schema, model_schema
from durable._typed import is_model_class, json_form, validate_model
from durable.dsl import get_workflow
from durable.durations import Duration, to_ms
from durable.errors import (
    ChildWorkflowFailed,
    ConfigError,
    ContextError,
    InvalidInput,
    WaitTimeout,
)
from durable.models import WaitKind, WaitMode, WaitSpec

if TYPE_CHECKING:
    from typing import TypeVar

    from pydantic import BaseModel

    M = TypeVar("M", bound=BaseModel)

__all__ = [
    "call_workflow",
    "sleep_for",
    "sleep_until",
    "start_workflow",
    "wait_for_all_events",
    "wait_for_any_event",
    "wait_for_event",
    "wait_for_input",
]

_NO_VALUE: Any = object()


def _run(fn: str) -> StepRun:
    run = current.get()
    if run is None or run.waiter is None:
        raise ContextError(
            f"{fn}() was called outside a running step; waits are called from a @step "
            "method while the engine runs the workflow"
        )
    return run


def _wait(fn: str, spec: WaitSpec) -> Any:
    run = _run(fn)
    assert run.waiter is not None
    return run.waiter(spec)


def _timeout_ms(timeout: Any, fn: str) -> int | None:
    if timeout is None:
        return None
    return to_ms(timeout, what=f"{fn}() timeout", allow_zero=False)


def _names(names: Iterable[str] | str, fn: str) -> tuple[str, ...]:
    if isinstance(names, str):
        raise ConfigError(f"{fn}() takes a list of event names, got the str {names!r}")
    out = tuple(check_name(n, f"{fn}() event name") for n in names)
    if not out:
        raise ConfigError(f"{fn}() needs at least one event name")
    if len(set(out)) != len(out):
        raise ConfigError(f"{fn}() got the same event name twice: {list(out)}")
    return out


def _timeout_value(value: Any, fn: str) -> tuple[Any, bool]:
    if value is _NO_VALUE:
        return None, False
    return normalise(value, f"{fn}() timeout_value"), True


def sleep_for(duration: Duration) -> None:
    """Sleep for ``duration`` (ms or timedelta) from the moment the step first reaches this
    call, durably: the execution waits without a worker, and resumes when it is due."""
    ms = to_ms(duration, what="sleep_for() duration")
    _wait("sleep_for", WaitSpec(kind=WaitKind.SLEEP, for_ms=ms))


def sleep_until(when: datetime) -> None:
    """Sleep until ``when`` (aware, or naive meaning UTC); returns at once if it is past."""
    _wait(
        "sleep_until", WaitSpec(kind=WaitKind.SLEEP, until=check_time(when, "sleep_until() time"))
    )


def wait_for_event(
    name: str, *, timeout: Duration | None = None, timeout_value: Any = _NO_VALUE
) -> Any:
    """Wait for the event ``name`` sent with ``engine.send_event(wid, name, payload)``;
    return its payload. An event sent before the step got here is kept and returned."""
    ms = _timeout_ms(timeout, "wait_for_event")
    value, has = _timeout_value(timeout_value, "wait_for_event")
    return _wait(
        "wait_for_event",
        WaitSpec(
            kind=WaitKind.EVENT,
            names=(check_name(name, "wait_for_event() event name"),),
            single=True,
            for_ms=ms,
            timeout_value=value,
            has_timeout_value=has,
        ),
    )


def _several(
    fn: str, mode: WaitMode, names: Sequence[str], timeout: Any, timeout_value: Any
) -> Any:
    ms = _timeout_ms(timeout, fn)
    value, has = _timeout_value(timeout_value, fn)
    spec = WaitSpec(
        kind=WaitKind.EVENT,
        names=_names(names, fn),
        mode=mode,
        for_ms=ms,
        timeout_value=value,
        has_timeout_value=has,
    )
    return _wait(fn, spec)


def wait_for_any_event(
    names: Sequence[str], *, timeout: Duration | None = None, timeout_value: Any = _NO_VALUE
) -> Any:
    """Wait for whichever of the events ``names`` comes first; return ``(name, payload)``
    (or ``timeout_value`` on timeout). Only that event is consumed."""
    return _several("wait_for_any_event", WaitMode.ANY, names, timeout, timeout_value)


def wait_for_all_events(
    names: Sequence[str], *, timeout: Duration | None = None, timeout_value: Any = _NO_VALUE
) -> Any:
    """Wait until every one of the events ``names`` has arrived; return ``{name: payload}``
    (or ``timeout_value`` on timeout). Nothing is consumed until all are there."""
    return _several("wait_for_all_events", WaitMode.ALL, names, timeout, timeout_value)


@overload
def wait_for_input(
    name: str,
    *,
    prompt: str | None = None,
    schema: type[M],
    timeout: Duration | None = None,
) -> M: ...
@overload
def wait_for_input(
    name: str,
    *,
    prompt: str | None = None,
    schema: type[M],
    timeout: Duration | None = None,
    timeout_value: M | dict[str, Any] | None,
) -> M | None: ...
@overload
def wait_for_input(
    name: str,
    *,
    prompt: str | None = None,
    schema: dict[str, Any] | None = None,
    timeout: Duration | None = None,
    timeout_value: Any = _NO_VALUE,
) -> Any: ...


def wait_for_input(
    name: str,
    *,
    prompt: str | None = None,
    schema: dict[str, Any] | type[BaseModel] | None = None,
    timeout: Duration | None = None,
    timeout_value: Any = _NO_VALUE,
) -> Any:
    """Wait for a person (or system) to provide the input ``name`` with
    ``engine.provide_input(wid, name, data)``; return the data.

    ``prompt`` says what is asked; ``schema`` is what ``data`` must match, checked when it
    is provided: a JSON Schema (a dict), or a pydantic model class. With a model the wait
    stores the model's JSON Schema (for whoever provides the input without the code) and
    returns an instance of the model (``timeout_value``: None, an instance, or data the
    model accepts). ``engine.list_pending_inputs()`` lists the open requests.
    """
    ms = _timeout_ms(timeout, "wait_for_input")
    check_text(prompt, "wait_for_input() prompt")
    model: type[BaseModel] | None = None
    stored: dict[str, Any] | None = None
    fallback: tuple[Any, bool] = (None, False)  # a model's timeout_value (JSON form)
    if is_model_class(schema):
        model = cast("type[BaseModel]", schema)
        stored = model_schema(model, "wait_for_input() schema")
        fallback = _model_timeout_value(model, timeout_value)
        # (its timeout is turned into the timeout_value here: see below)
        value, has = None, False
    elif isinstance(schema, type):
        raise ConfigError(
            "wait_for_input() schema takes a JSON Schema (a dict) or a pydantic model class "
            f"(a subclass of pydantic.BaseModel, pydantic 2); {schema.__qualname__} is not one"
        )
    else:
        value, has = _timeout_value(timeout_value, "wait_for_input")
        if schema is not None:
            check_schema(schema)
        stored = schema
    check_name(name, "wait_for_input() name")
    try:
        raw = _wait(
            "wait_for_input",
            WaitSpec(
                kind=WaitKind.INPUT,
                names=(name,),
                for_ms=ms,
                prompt=prompt,
                schema=stored,
                timeout_value=value,
                has_timeout_value=has,
            ),
        )
    except WaitTimeout:
        if model is None or not fallback[1]:
            raise
        if fallback[0] is None:
            return None
        return validate_model(model, fallback[0], "wait_for_input() timeout_value", "")
    if model is None:
        return raw
    # Checked when it was provided: with the model where it was imported, else with its
    # JSON Schema only (so the model's own validators may refuse it here).
    return validate_model(
        model,
        raw,
        f"the data provided for input {name!r}",
        f"the step cannot go on with it (provided where {model.__name__} was not "
        "imported, it was checked against its JSON Schema only); the attempt fails",
    )


def _a(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _model_timeout_value(model: type[BaseModel], value: Any) -> tuple[Any, bool]:
    """A timeout_value for a wait with a model, checked now: None or an instance's JSON
    form, and whether one was given."""
    if value is _NO_VALUE:
        return None, False
    if value is None:
        return None, True
    data = normalise(value, "wait_for_input() timeout_value")
    name = model.__name__
    try:
        instance = validate_model(
            model,
            data,
            "wait_for_input() timeout_value",
            f"with schema={name}, timeout_value is None, {_a(name)} {name}, or data {name} accepts",
        )
    except InvalidInput as exc:
        raise ConfigError(str(exc)) from None
    return json_form(instance, "wait_for_input() timeout_value"), True


def _child(
    fn: str, workflow: Any, input: Any, timeout: Duration | None, queue: str | None
) -> tuple[str, Any, str | None, int | None]:
    wdef = get_workflow(workflow)
    if queue is not None:
        check_name(queue, f"{fn}() queue")
    ms = None if timeout is None else to_ms(timeout, what=f"{fn}() timeout", allow_zero=False)
    value = wdef.check_input(input, what=f"the input of {fn}({wdef.name!r})")
    return (wdef.name, value, queue, ms)


def call_workflow(
    workflow: Any, input: Any = None, *, timeout: Duration | None = None, queue: str | None = None
) -> Any:
    """Start ``workflow`` (a class or name) as a child of the running execution and wait
    for it to end, holding no worker; return the child's final context.

    The child is started once per call position, however often the step is resumed or
    retried after it started. ``timeout`` (ms or timedelta) is the child's workflow
    timeout (default: its own). A child that fails or is cancelled raises
    ``ChildWorkflowFailed`` with its id, status and error. The child's id is
    in ``engine.list_executions(parent=workflow_id())``; cancelling this execution
    cancels the child."""
    spec = WaitSpec(
        kind=WaitKind.CHILD, child=_child("call_workflow", workflow, input, timeout, queue)
    )
    ended = _wait("call_workflow", spec)
    if ended["status"] == "completed":
        return ended["context"]
    error = ended.get("error") or {}
    why = f": {error.get('type')}: {error.get('message')}" if error else ""
    raise ChildWorkflowFailed(
        f"child workflow {spec.child[0] if spec.child else ''!r} {ended['id']} "
        f"{ended['status']}{why}",
        child_id=ended["id"],
        status=ended["status"],
        error=error or None,
    )


def start_workflow(
    workflow: Any, input: Any = None, *, timeout: Duration | None = None, queue: str | None = None
) -> str:
    """Start ``workflow`` as a child of the running execution and return its id at once
    (started once per call position, however often the step runs again). Wait for it
    later with ``call_workflow``'s sibling ``engine.wait``, or not at all."""
    run = _run("start_workflow")
    if run.starter is None:
        raise ContextError("start_workflow() needs a running step")
    return run.starter(_child("start_workflow", workflow, input, timeout, queue))
