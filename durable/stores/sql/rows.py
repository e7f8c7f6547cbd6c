"""Rows, read by column name, to and from the store's models.

A row is whatever the driver gives (``sqlite3.Row``, a psycopg ``dict_row``): anything
indexed by column name. Times go through the dialect's ``dt`` (stored value to an aware UTC
datetime) and ``ts`` (datetime to what the driver binds).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from durable._limits import MIN_TIME
from durable.models import Status, StepExecution, StepPhase, StepStatus, Wait
from durable.stores.base import ExecutionRow, UnitOutcome

__all__ = [
    "DECODING",
    "attempt_params",
    "dumps",
    "execution",
    "loads",
    "outcome",
    "step",
    "wait",
]

#: a row as the driver returns it, read by column name
Row = Any
ToDatetime = Callable[[Any], datetime | None]
FromDatetime = Callable[[datetime | None], Any]

# What "cannot be decoded" means: JSON that is broken (ValueError) or too deep to read
# (RecursionError), a date Python cannot hold (OverflowError, or ValueError for the
# PostgreSQL marker), an unknown status (ValueError). Anything else (MemoryError, a bug) is
# not the row's fault and must not fail it for good: it propagates.
DECODING = (ValueError, TypeError, OverflowError, RecursionError)


def dumps(value: Any) -> str:
    """``value`` as compact JSON text."""
    return json.dumps(value, separators=(",", ":"))


def loads(text: str | None) -> Any:
    """JSON text back as a value (None stays None)."""
    return None if text is None else json.loads(text)


def _context(text: str) -> dict[str, Any]:
    context = json.loads(text)
    if not isinstance(context, dict):
        raise ValueError(f"a JSON {type(context).__name__}, not a JSON object")
    return context


def execution(r: Row, dt: ToDatetime) -> ExecutionRow:
    """The execution in ``r``; a row that does not decode (a value nested past Python's
    recursion limit, a date past year 9999, text that is not JSON) comes back with those
    fields empty and ``unreadable`` saying why, instead of failing the read."""
    try:
        return _decode(r, dt, None)
    except DECODING:  # a value this process cannot read: note each one that fails
        problems: list[str] = []
        row = _decode(r, dt, problems)
        row.unreadable = tuple(problems)
        return row


def _decode(r: Row, dt: ToDatetime, problems: list[str] | None) -> ExecutionRow:
    """Decode ``r``. With ``problems`` (a list), a field that does not decode is noted there
    and left empty; without, its error is raised."""

    def field(name: str, decode: Callable[[Any], Any], default: Any) -> Any:
        if problems is None:
            return decode(r[name])
        try:
            return decode(r[name])
        except DECODING as exc:
            why = "nested too deep to read" if isinstance(exc, RecursionError) else exc
            problems.append(f"{name}: {why}")
            return default

    return ExecutionRow(
        seq=r["seq"],
        id=r["id"],
        workflow=r["workflow"],
        status=field("status", Status, Status.FAILED),
        queue=r["queue"],
        priority=r["priority"],
        input=field("input", loads, None),
        context=field("context", _context, {}),
        created_at=field("created_at", dt, MIN_TIME),
        scheduled_at=field("scheduled_at", dt, MIN_TIME),
        run_at=field("run_at", dt, None),
        timeout_ms=r["timeout_ms"],
        idempotency_key=r["idempotency_key"],
        started_at=field("started_at", dt, None),
        completed_at=field("completed_at", dt, None),
        deadline=field("deadline", dt, None),
        step_index=r["step_index"],
        step_name=r["step_name"],
        attempt=r["attempt"],
        attempt_started_at=field("attempt_started_at", dt, None),
        error=field("error", loads, None),
        token=r["token"],
        worker_id=r["worker_id"],
        lease_expires_at=field("lease_expires_at", dt, None),
        cancel_requested=bool(r["cancel_requested"]),
        cancel_reason=r["cancel_reason"],
        suspended=bool(r["suspended"]),
        last_write=r["last_write"],
        lost_attempts=r["lost_attempts"],
        max_attempts=r["max_attempts"],
        visit=r["step_visit"],
        visits=field("visits", _visits, {}),
        parent_id=r["parent_id"],
        unit=r["unit"],
        group_step=r["group_step"],
        group_visit=r["group_visit"],
        unit_index=r["unit_index"],
        stops_group=bool(r["stops_group"]),
        item=field("item", loads, None),
        result=field("result", loads, None),
        open_units=r["open_units"],
        phase=StepPhase(r["phase"]),
        origin=field("origin", loads, None),
        shape=field("shape", loads, None),
        headers=field("headers", _headers, {}),
        parent_step=r["parent_step"],
    )


def outcome(r: Row, dt: ToDatetime) -> UnitOutcome:
    """How the unit in ``r`` (a ``unit_outcomes`` row) ended."""
    return UnitOutcome(
        r["unit_index"],
        r["unit"],
        Status(r["status"]),
        dt(r["created_at"]) or MIN_TIME,
        dt(r["completed_at"]),
        loads(r["result"]),
        loads(r["error"]),
    )


def _headers(text: str | None) -> dict[str, str]:
    headers = {} if text is None else json.loads(text)
    if not isinstance(headers, dict):
        raise ValueError(f"a JSON {type(headers).__name__}, not a JSON object")
    return headers


def _visits(text: str | None) -> dict[str, int]:
    visits = {} if text is None else json.loads(text)
    if not isinstance(visits, dict):
        raise ValueError(f"a JSON {type(visits).__name__}, not a JSON object")
    return visits


def step(r: Row, dt: ToDatetime) -> StepExecution:
    """The attempt record in ``r`` (a ``durable_step_attempts`` row)."""
    return StepExecution(
        name=r["name"],
        status=StepStatus(r["status"]),
        attempt=r["attempt"],
        started_at=dt(r["started_at"]),  # type: ignore[arg-type]
        completed_at=dt(r["completed_at"]),
        error=loads(r["error"]),
        logs=loads(r["logs"]),
        index=r["step_index"],
        max_attempts=r["max_attempts"],
        retry_at=dt(r["retry_at"]),
        result=loads(r["result"]),
        visit=r["visit"],
        phase=StepPhase(r["phase"]),
        compensates=r["compensates"],
        changes=loads(r["changes"]),
    )


def wait(r: Row, dt: ToDatetime, workflow: str = "") -> Wait:
    """The wait in ``r`` (a ``durable_waits`` row)."""
    return Wait(
        execution_id=r["execution_id"],
        workflow=workflow,
        step=r["step"],
        seq=r["wait_seq"],
        kind=r["kind"],
        names=tuple(loads(r["names"])),
        mode=r["mode"],
        until=dt(r["until_at"]),
        status=r["status"],
        created_at=dt(r["created_at"]),  # type: ignore[arg-type]
        prompt=r["prompt"],
        schema=loads(r["input_schema"]),
        result=loads(r["result"]),
        resolved_at=dt(r["resolved_at"]),
        visit=r["visit"],
    )


def attempt_params(execution_id: str, r: StepExecution, ts: FromDatetime) -> dict[str, Any]:
    """The ``a_*`` parameters of ``insert_attempt`` (and of the transitions that include it)."""
    return {
        "a_execution_id": execution_id,
        "a_step_index": r.index,
        "a_name": r.name,
        "a_attempt": r.attempt,
        "a_status": r.status.value,
        "a_started_at": ts(r.started_at),
        "a_completed_at": ts(r.completed_at),
        "a_error": None if r.error is None else dumps(r.error),
        "a_logs": dumps(r.logs),
        "a_max_attempts": r.max_attempts,
        "a_retry_at": ts(r.retry_at),
        "a_result": None if r.result is None else dumps(r.result),
        "a_visit": r.visit,
        "a_phase": r.phase.value,
        "a_compensates": r.compensates,
        "a_changes": None if r.changes is None else dumps(r.changes),
    }
