"""Operator recovery: what a step run changed in the context, and the context as it was
just before a step ran, rebuilt from those changes (for ``engine.retry`` and
``engine.fork``)."""

from __future__ import annotations

from typing import Any

from durable._json import clone
from durable.errors import InvalidState
from durable.models import StepExecution, StepPhase, StepStatus

__all__ = [
    "apply_changes",
    "changes",
    "context_after",
    "context_before",
    "latest_visit",
    "rewound_at",
]

_UNIT_MARKS = ".["  # a unit's record ("group.step", "step[3]"): its group's carries the merge


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What went from ``before`` to ``after``, small when a run changed a little of a large
    value: ``set`` (keys new or replaced: their values), ``deleted`` (keys gone), and when
    there are any, ``extended`` (lists that only grew at the end: the items added) and
    ``patched`` (dicts changed in part: their changes, in this same form). Recording whole
    values instead would store a list a loop appends to once per visit, over and over."""
    set_: dict[str, Any] = {}
    extended: dict[str, list[Any]] = {}
    patched: dict[str, dict[str, Any]] = {}
    for k, v in after.items():
        if k not in before:
            set_[k] = v
            continue
        old = before[k]
        if type(old) is not type(v):
            set_[k] = v
        elif _same(old, v):
            continue
        elif isinstance(v, list) and old and len(v) > len(old) and _same(v[: len(old)], old):
            extended[k] = v[len(old) :]
        elif isinstance(v, dict) and old:
            patched[k] = changes(old, v)
        else:
            set_[k] = v
    out: dict[str, Any] = {"set": set_, "deleted": [k for k in before if k not in after]}
    if extended:
        out["extended"] = extended
    if patched:
        out["patched"] = patched
    return out


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``==``, and the same types all the way down (10 == 10.0 and
    1 == True in Python, but a change from one to the other is a change)."""
    if a != b:
        return False
    return _same_types(a, b)


def _same_types(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return all(map(_same_types, a, b))
    if isinstance(a, dict):
        return all(_same_types(v, b[k]) for k, v in a.items())
    return True


def apply_changes(context: dict[str, Any], change: dict[str, Any]) -> None:
    """Apply what ``changes`` recorded to ``context`` (in place)."""
    for key in change.get("deleted", []):
        context.pop(key, None)
    context.update(clone(change.get("set", {})))
    for key, items in change.get("extended", {}).items():
        context[key] = [*context.get(key, []), *clone(items)]
    for key, inner in change.get("patched", {}).items():
        value = context.get(key)
        if not isinstance(value, dict):
            value = context[key] = {}
        apply_changes(value, inner)


def _runs_of(records: list[StepExecution], names: tuple[str, ...]) -> list[int]:
    return [i for i, r in enumerate(records) if r.phase == StepPhase.RUN and r.name in names]


def latest_visit(records: list[StepExecution], step: str, aliases: tuple[str, ...] = ()) -> int:
    """The latest visit of ``step`` (recorded under it or an earlier name, ``aliases``)
    the records show (0: it never ran)."""
    return max((records[i].visit for i in _runs_of(records, (step, *aliases))), default=0)


def rewound_at(origin: dict[str, Any] | None) -> int:
    """How many records the execution had when it was last retried (its history before
    that is of an earlier round: 0 when it never was)."""
    rewinds = (origin or {}).get("rewinds") or []
    return int(rewinds[-1][0]) if rewinds else 0


def context_before(
    execution_id: str,
    origin: dict[str, Any] | None,
    records: list[StepExecution],
    step: str,
    *,
    current: tuple[str, int] | None = None,
    aliases: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The context just before the latest visit of ``step`` (recorded under it or an
    earlier name, ``aliases``) began.

    It is rebuilt from where that run's history starts (the context the execution
    started with, ``origin["context"]`` for a fork, or the context a retry set before
    that run, ``origin["rewinds"]``), with the changes of every step run that completed
    after that and before the step, applied in order: runs a retry rewound are not in it.

    A step that has not run yet (at that visit: the execution's ``current`` step and
    visit, stopped or cancelled before it began; or one never reached, or new in this
    code) starts from the context as it stands: every completed run counts.
    InvalidState when a run in between was recorded without its changes (before schema
    version 10)."""
    runs = _runs_of(records, (step, *aliases))
    ran_visit = max((records[i].visit for i in runs), default=0)
    not_yet = current is not None and current[0] in (step, *aliases) and current[1] > ran_visit
    if not runs or not_yet:
        end = len(records)
    else:
        end = min(i for i in runs if records[i].visit == ran_visit)
    start, base = 0, (origin or {}).get("context", {})
    for after, context in (origin or {}).get("rewinds") or []:
        if after <= end:
            start, base = after, context
    return _replay(execution_id, base, records[start:end], step)


def context_after(
    execution_id: str, origin: dict[str, Any] | None, records: list[StepExecution], position: int
) -> dict[str, Any]:
    """The context as the step run recorded at ``position`` left it (a unit's: as its
    group began, its own writes not merged). InvalidState as for ``context_before``."""
    start, base = 0, (origin or {}).get("context", {})
    for after, context in (origin or {}).get("rewinds") or []:
        if after <= position:
            start, base = after, context
    return _replay(execution_id, base, records[start : position + 1], records[position].name)


def _replay(
    execution_id: str, base: dict[str, Any], records: list[StepExecution], step: str
) -> dict[str, Any]:
    context: dict[str, Any] = clone(base)
    for r in records:
        if r.phase != StepPhase.RUN or r.status not in (StepStatus.COMPLETED, StepStatus.SKIPPED):
            continue
        if any(c in r.name for c in _UNIT_MARKS):
            continue
        if r.changes is None:
            raise InvalidState(
                f"step {r.name!r} of execution {execution_id} completed before its changes "
                "to the context were recorded (durable before schema version 10): the "
                f"context before {step!r} cannot be rebuilt"
            )
        apply_changes(context, r.changes)
    return context
