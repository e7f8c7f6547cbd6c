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
:class:`~durable.errors.WaitTimeout` and the step's retry rules apply (a retried attempt
waits afresh).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from durable._json import normalise
from durable._limits import check_name, check_text, check_time
from durable._runtime import StepRun, current
from durable.durations import to_ms
from durable.errors import ConfigError, ContextError, InvalidInput

__all__ = [
    "StoreInterrupt",
    "Suspend",
    "WaitSignal",
    "WaitSpec",
    "sleep_for",
    "sleep_until",
    "wait_for_all_events",
    "wait_for_any_event",
    "wait_for_event",
    "wait_for_input",
]

_NO_VALUE: Any = object()


@dataclass(frozen=True, slots=True)
class WaitSpec:
    """What a step waits for, as the engine passes it to the store.

    ``kind``: ``sleep``, ``event`` or ``input``; ``names``: event or input names (empty for
    a sleep); ``mode``: ``any`` or ``all``. ``for_ms``: how long a sleep lasts or when a
    wait times out, from the moment it is first reached; ``until`` instead for an absolute
    instant. ``timeout_value`` is returned on timeout when ``has_timeout_value``.
    """

    kind: str
    names: tuple[str, ...] = ()
    mode: str = "any"
    for_ms: int | None = None
    until: datetime | None = None
    prompt: str | None = None
    schema: dict[str, Any] | None = None
    timeout_value: Any = None
    has_timeout_value: bool = False
    single: bool = False  # wait_for_event: return the payload, not (name, payload)

    def deadline(self, now: datetime) -> datetime | None:
        """When the sleep ends or the wait times out, if first reached at ``now``."""
        if self.until is not None:
            return self.until
        if self.for_ms is not None:
            return now + timedelta(milliseconds=self.for_ms)
        return None

    def shape(self, raw: Any) -> Any:
        """The value a resolved wait returns, from what the store recorded: nothing for a
        sleep, the data of an input, the payload of one event, ``(name, payload)`` for
        any of several, ``{name: payload}`` for all of several."""
        if self.kind == "sleep":
            return None
        if self.kind == "input":
            return raw
        if self.single:
            return raw["payload"]
        if self.mode == "any":
            return (raw["name"], raw["payload"])
        return raw

    def describe(self) -> str:
        if self.kind == "sleep":
            return "sleep"
        names = ", ".join(repr(n) for n in self.names)
        if self.kind == "input":
            return f"input {names}"
        return f"event {names}" if len(self.names) == 1 else f"{self.mode} of events {names}"


class WaitSignal(BaseException):
    """What a wait raises through the step's code to the executor. A BaseException, so
    that a step's ``except Exception`` does not swallow it."""


class Suspend(WaitSignal):
    """Raised by a wait that is not resolved yet: the executor suspends the step."""

    def __init__(self, spec: WaitSpec, seq: int, until: datetime | None) -> None:
        super().__init__(f"waiting for {spec.describe()}")
        self.spec = spec
        self.seq = seq
        self.until = until


class StoreInterrupt(WaitSignal):
    """The store failed (or the claim was lost) while a wait was decided: the executor
    handles ``error`` as it handles any store failure, outside the step's code."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


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


def sleep_for(duration: int | timedelta) -> None:
    """Sleep for ``duration`` (ms or timedelta) from the moment the step first reaches this
    call, durably: the execution waits without a worker, and resumes when it is due."""
    ms = to_ms(duration, what="sleep_for() duration")
    _wait("sleep_for", WaitSpec(kind="sleep", for_ms=ms))


def sleep_until(when: datetime) -> None:
    """Sleep until ``when`` (aware, or naive meaning UTC); returns at once if it is past."""
    _wait("sleep_until", WaitSpec(kind="sleep", until=check_time(when, "sleep_until() time")))


def wait_for_event(
    name: str, *, timeout: int | timedelta | None = None, timeout_value: Any = _NO_VALUE
) -> Any:
    """Wait for the event ``name`` sent with ``engine.send_event(wid, name, payload)``;
    return its payload. An event sent before the step got here is kept and returned."""
    ms = _timeout_ms(timeout, "wait_for_event")
    value, has = _timeout_value(timeout_value, "wait_for_event")
    return _wait(
        "wait_for_event",
        WaitSpec(
            kind="event",
            names=(check_name(name, "wait_for_event() event name"),),
            single=True,
            for_ms=ms,
            timeout_value=value,
            has_timeout_value=has,
        ),
    )


def _several(fn: str, mode: str, names: Sequence[str], timeout: Any, timeout_value: Any) -> Any:
    ms = _timeout_ms(timeout, fn)
    value, has = _timeout_value(timeout_value, fn)
    spec = WaitSpec(
        kind="event",
        names=_names(names, fn),
        mode=mode,
        for_ms=ms,
        timeout_value=value,
        has_timeout_value=has,
    )
    return _wait(fn, spec)


def wait_for_any_event(
    names: Sequence[str], *, timeout: int | timedelta | None = None, timeout_value: Any = _NO_VALUE
) -> Any:
    """Wait for whichever of the events ``names`` comes first; return ``(name, payload)``
    (or ``timeout_value`` on timeout). Only that event is consumed."""
    return _several("wait_for_any_event", "any", names, timeout, timeout_value)


def wait_for_all_events(
    names: Sequence[str], *, timeout: int | timedelta | None = None, timeout_value: Any = _NO_VALUE
) -> Any:
    """Wait until every one of the events ``names`` has arrived; return ``{name: payload}``
    (or ``timeout_value`` on timeout). Nothing is consumed until all are there."""
    return _several("wait_for_all_events", "all", names, timeout, timeout_value)


def wait_for_input(
    name: str,
    *,
    prompt: str | None = None,
    schema: dict[str, Any] | None = None,
    timeout: int | timedelta | None = None,
    timeout_value: Any = _NO_VALUE,
) -> Any:
    """Wait for a person (or system) to provide the input ``name`` with
    ``engine.provide_input(wid, name, data)``; return the data.

    ``prompt`` says what is asked; ``schema`` (JSON Schema) is what ``data`` must match,
    checked when it is provided. ``engine.list_pending_inputs()`` lists the open requests.
    """
    ms = _timeout_ms(timeout, "wait_for_input")
    value, has = _timeout_value(timeout_value, "wait_for_input")
    check_text(prompt, "wait_for_input() prompt")
    if schema is not None:
        _check_schema(schema)
    return _wait(
        "wait_for_input",
        WaitSpec(
            kind="input",
            names=(check_name(name, "wait_for_input() name"),),
            for_ms=ms,
            prompt=prompt,
            schema=schema,
            timeout_value=value,
            has_timeout_value=has,
        ),
    )


_REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")


def _refs(schema: Any) -> tuple[list[str], bool]:
    """The references in ``schema``, and whether a subschema sets its own ``$id`` (which
    changes what its references are relative to)."""
    found: list[str] = []
    nested_id = False
    stack: list[tuple[Any, bool]] = [(schema, True)]
    while stack:
        node, root = stack.pop()
        if isinstance(node, dict):
            if not root and isinstance(node.get("$id"), str):
                nested_id = True
            for key, value in node.items():
                if key in _REF_KEYWORDS and isinstance(value, str):
                    found.append(value)
                elif isinstance(value, dict | list):
                    stack.append((value, False))
        elif isinstance(node, list):
            stack.extend((v, False) for v in node if isinstance(v, dict | list))
    return found, nested_id


def _check_local_refs(schema: dict[str, Any], refs: list[str], meta: dict[str, Any]) -> None:
    """Each ``#...`` reference must point at a part of the schema (else the wait is
    refused now, not every provide_input later)."""
    from referencing import Registry
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012, specification_with

    dialect = schema.get("$schema") or meta.get("$id") or ""
    resource = specification_with(dialect, default=DRAFT202012).create_resource(schema)
    base = resource.id() or "urn:durable:input-schema"
    resolver = Registry().with_resource(base, resource).resolver(base_uri=base)
    for ref in refs:
        try:
            resolver.lookup(ref)
        except Unresolvable:
            raise ConfigError(
                f"wait_for_input() schema refers to {ref!r}, which is not in the schema"
            ) from None


def _check_schema(schema: Any) -> None:
    from jsonschema import exceptions, validators

    if not isinstance(schema, dict):
        raise ConfigError(f"wait_for_input() schema must be a dict, got {type(schema).__name__}")
    normalise(schema, "wait_for_input() schema")
    refs, nested_id = _refs(schema)
    external = [r for r in refs if not r.startswith("#")]
    if external:
        raise ConfigError(
            f"wait_for_input() schema refers outside itself ({', '.join(map(repr, external))}); "
            'a schema must be self-contained: put what it refers to under "$defs" and refer '
            'to it as "#/$defs/name" (durable never reads files or URLs for a schema)'
        )
    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except exceptions.SchemaError as exc:
        raise ConfigError(
            f"wait_for_input() schema is not a valid JSON Schema: {exc.message}"
        ) from None
    if refs and not nested_id:
        _check_local_refs(schema, refs, cls.META_SCHEMA)


def validate_input(name: str, data: Any, schema: dict[str, Any] | None) -> None:
    """Raise InvalidInput (naming where and why) when ``data`` does not match ``schema``.

    Only the schema itself is used: a reference outside it (a file, a URL) is never
    fetched; it fails the check instead (schemas stored by older versions may have one)."""
    if schema is None:
        return
    from jsonschema import validators
    from referencing import Registry
    from referencing.exceptions import Unresolvable

    # An empty registry retrieves nothing (without one, jsonschema would fetch remote
    # references, file:// URLs included).
    validator = validators.validator_for(schema)(schema, registry=Registry())
    try:
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    except Unresolvable as exc:
        raise InvalidInput(
            f"input {name!r} cannot be checked: its schema has a reference that does not "
            f"resolve within it ({exc}); durable never fetches a schema from a file or a "
            "URL. Nothing was stored"
        ) from None
    if errors:
        shown = "; ".join(
            f"at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:5]
        )
        raise InvalidInput(
            f"input {name!r} does not match its schema ({len(errors)} problem(s)): {shown}; "
            "nothing was stored"
        )
