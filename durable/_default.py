"""The module-level API: ``durable.start(...)`` and friends on one default engine."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from durable.engine import Engine, WorkflowRef
from durable.models import Execution, Status

_engine: Engine | None = None
_lock = threading.Lock()


def configure(store: Any = None, **options: Any) -> Engine:
    """Create the default engine (replacing any earlier one) and return it.

    Takes the same arguments as :class:`Engine`. Without ``configure`` the default engine
    is created on first use from ``DURABLE_STORE``, else ``sqlite:///durable.db``.
    """
    global _engine
    engine = Engine(store, **options)
    with _lock:
        old, _engine = _engine, engine
    if old is not None:
        old.close()
    return engine


def default_engine() -> Engine:
    """The default engine, created on first use."""
    global _engine
    with _lock:
        if _engine is None:
            _engine = Engine()
        return _engine


def start(
    workflow: WorkflowRef,
    input: Any = None,
    *,
    queue: str | None = None,
    priority: int = 0,
    scheduled_at: datetime | None = None,
    idempotency_key: str | None = None,
) -> str:
    """``Engine.start`` on the default engine."""
    return default_engine().start(
        workflow,
        input,
        queue=queue,
        priority=priority,
        scheduled_at=scheduled_at,
        idempotency_key=idempotency_key,
    )


def get_execution(execution_id: str, include_steps: bool = False) -> Execution:
    """``Engine.get_execution`` on the default engine."""
    return default_engine().get_execution(execution_id, include_steps=include_steps)


def list_executions(
    workflow: WorkflowRef | Sequence[WorkflowRef] | None = None,
    status: str | Status | Sequence[str | Status] | None = None,
    queue: str | Sequence[str] | None = None,
    limit: int = 100,
) -> list[Execution]:
    """``Engine.list_executions`` on the default engine."""
    return default_engine().list_executions(workflow, status, queue, limit)


def cancel(execution_id: str, reason: str | None = None) -> Execution:
    """``Engine.cancel`` on the default engine."""
    return default_engine().cancel(execution_id, reason)


def drain(queues: Sequence[str] | None = None) -> int:
    """``Engine.drain`` on the default engine."""
    return default_engine().drain(queues)


def run_worker(queues: Sequence[str] | None = None, concurrency: int = 10) -> None:
    """``Engine.run_worker`` on the default engine."""
    default_engine().run_worker(queues, concurrency)
