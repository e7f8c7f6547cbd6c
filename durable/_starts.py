"""Making a new execution's row and storing it: one place for ``Engine.start`` and for
child workflows started inside a step."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from durable.dsl import WorkflowDef
from durable.errors import InvalidState
from durable.models import Status
from durable.stores.base import ExecutionRow, Store

__all__ = ["child_id", "new_row", "store_new"]

# ids of children: the same call position of the same step run gives the same id
_CHILDREN = uuid.UUID("6f1b3f0e-2d7c-4a59-9a55-3f7f2f6b2c11")


def child_id(execution_id: str, step: str, visit: int, position: str) -> str:
    """The id of the child started at ``position`` of a step run: a resumed or retried
    step that starts it again finds the one it started."""
    return str(uuid.uuid5(_CHILDREN, f"{execution_id}\x00{step}\x00{visit}\x00{position}"))


def new_row(
    wdef: WorkflowDef,
    value: Any,
    *,
    now: datetime,
    queue: str,
    priority: int = 0,
    scheduled_at: datetime | None = None,
    idempotency_key: str | None = None,
    execution_id: str | None = None,
    parent_id: str | None = None,
    parent_step: str | None = None,
    timeout_ms: int | None = None,
) -> ExecutionRow:
    """A pending execution of ``wdef`` with input ``value`` (already JSON-checked)."""
    when = now if scheduled_at is None else scheduled_at
    return ExecutionRow(
        id=execution_id or str(uuid.uuid4()),
        workflow=wdef.name,
        status=Status.PENDING,
        queue=queue,
        priority=priority,
        input=value,
        context={},
        created_at=now,
        scheduled_at=when,
        run_at=when,
        timeout_ms=wdef.timeout if timeout_ms is None else timeout_ms,
        idempotency_key=idempotency_key,
        step_name=wdef.first_step.name,
        max_attempts=wdef.budget(wdef.first_step),
        parent_id=parent_id,
        parent_step=parent_step,
        shape=wdef.shape(),
    )


def store_new(store: Store, row: ExecutionRow) -> tuple[ExecutionRow, bool]:
    """Store ``row``; with an idempotency key or an id already used, the execution that
    has it and False — InvalidState when that one was started with another workflow or
    input (nothing is started)."""
    try:
        stored, created = store.create(row)
    except InvalidState:
        existing = store.get(row.id)
        if existing is None:
            raise
        stored, created = existing, False
    if not created and (
        stored.workflow != row.workflow or _canonical(stored.input) != _canonical(row.input)
    ):
        same = "input" if stored.workflow == row.workflow else "workflow"
        what = (
            f"idempotency key {row.idempotency_key!r}"
            if row.idempotency_key is not None and stored.idempotency_key == row.idempotency_key
            else f"id {row.id!r}"
        )
        raise InvalidState(
            f"{what} was already used by execution {stored.id} (workflow "
            f"{stored.workflow!r}, {stored.status.value}) with another {same}; reuse a key "
            "only to repeat the same start, or use a new key (nothing was started)"
        )
    return stored, created


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
