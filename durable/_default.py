"""The module-level API: ``durable.start(...)`` and friends on one default engine — or,
inside a running step, on the engine running that step."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from durable._runtime import current
from durable.durations import Duration
from durable.engine import Engine, WorkflowRef
from durable.models import Execution, Status

_engine: Engine | None = None
_lock = threading.Lock()


def configure(store: Any = None, **options: Any) -> Engine:
    """Create the default engine (replacing any earlier one) and return it.

    Takes the same arguments as ``Engine``. Without ``configure`` the default engine
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
    """The engine the module-level API acts on: inside a running step the engine running
    it (so a step in a PostgreSQL worker starts work in that database, not in a
    ``durable.db`` of its own); elsewhere the default engine, created on first use."""
    global _engine
    run = current.get()
    if run is not None and isinstance(run.engine, Engine):
        return run.engine
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
    parent: str | None = None,
) -> list[Execution]:
    """``Engine.list_executions`` on the default engine."""
    return default_engine().list_executions(workflow, status, queue, limit, parent)


def send_event(execution_id: str, name: str, payload: Any = None) -> None:
    """``Engine.send_event`` on the default engine."""
    default_engine().send_event(execution_id, name, payload)


def provide_input(execution_id: str, name: str, data: Any) -> None:
    """``Engine.provide_input`` on the default engine."""
    default_engine().provide_input(execution_id, name, data)


def wait(execution_id: str, timeout: Duration | None = None) -> Execution:
    """``Engine.wait`` on the default engine."""
    return default_engine().wait(execution_id, timeout)


def cancel(execution_id: str, reason: str | None = None) -> Execution:
    """``Engine.cancel`` on the default engine."""
    return default_engine().cancel(execution_id, reason)


def drain(queues: Sequence[str] | None = None) -> int:
    """``Engine.drain`` on the default engine."""
    return default_engine().drain(queues)


def run_worker(queues: Sequence[str] | None = None, concurrency: int = 10) -> None:
    """``Engine.run_worker`` on the default engine."""
    default_engine().run_worker(queues, concurrency)
