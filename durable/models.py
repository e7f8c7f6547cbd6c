"""What the engine reports: execution and step-attempt snapshots, and statuses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = ["FINISHED", "Execution", "Status", "StepExecution", "StepStatus", "Wait"]


class Status(StrEnum):
    """Status of an execution. A ``str``: ``Status.COMPLETED == "completed"``."""

    PENDING = "pending"  # runnable at ``run_at`` (new, or a retry is scheduled)
    RUNNING = "running"  # claimed by a worker under a lease
    WAITING = "waiting"  # suspended on a sleep, an event or an input; holds no worker
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"


FINISHED = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.COMPENSATED})


class StepStatus(StrEnum):
    """Status of one step attempt."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUSPENDED = "suspended"  # the run reached a wait; the step runs again when it resolves
    LOST = "lost"  # its worker was lost (killed, paused, cut off); the attempt runs again


@dataclass(frozen=True, slots=True)
class Wait:
    """A wait a step reached: what it waits for and until when.

    ``kind``: ``sleep``, ``event`` or ``input``. ``names``: the events (or the input) it
    waits for; ``mode``: ``any`` or ``all`` of them. ``until``: when a sleep ends or a
    wait times out (None: no timeout). ``status``: ``pending``, ``resolved`` or
    ``timed_out``. ``prompt`` and ``schema`` describe an input for whoever provides it.
    """

    execution_id: str
    workflow: str
    step: str
    seq: int
    kind: str
    names: tuple[str, ...]
    mode: str
    until: datetime | None
    status: str
    created_at: datetime
    prompt: str | None = None
    schema: dict[str, Any] | None = None
    result: Any = None
    resolved_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StepExecution:
    """One attempt of one step, as stored.

    ``error`` is ``{"type", "message", "traceback"}`` for a failed attempt; ``logs`` holds the
    logging records emitted during the attempt. A run that reached a wait is ``suspended``;
    when the wait resolves the step runs again under the same attempt number.
    ``retry_at`` is when the next attempt was scheduled for (failed attempts with budget
    left); ``max_attempts`` the budget in force. A ``lost`` run (its worker was killed or
    cut off) is run again under the same attempt number. ``result`` is what a completed
    attempt returned (JSON).
    """

    name: str
    status: StepStatus
    attempt: int
    started_at: datetime
    completed_at: datetime | None = None
    error: dict[str, Any] | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    index: int = 0
    max_attempts: int = 1
    retry_at: datetime | None = None
    result: Any = None

    @property
    def duration_ms(self) -> int | None:
        """Virtual (clock) time the attempt took, in ms; None while it runs."""
        if self.completed_at is None:
            return None
        return round((self.completed_at - self.started_at).total_seconds() * 1000)


@dataclass(frozen=True, slots=True)
class Execution:
    """A snapshot of one workflow execution.

    ``steps`` is filled by ``get_execution(..., include_steps=True)``: every attempt of every
    step in the order they started, including the attempt in flight. ``unreadable`` names
    the stored fields this process could not decode, and why (they read as None or empty).
    """

    id: str
    workflow: str
    status: Status
    input: Any
    context: dict[str, Any]
    queue: str
    priority: int
    created_at: datetime
    scheduled_at: datetime
    run_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    deadline: datetime | None
    current_step: str | None
    attempt: int
    error: dict[str, Any] | None
    idempotency_key: str | None
    cancel_requested: bool = False
    cancel_reason: str | None = None
    steps: list[StepExecution] | None = None
    unreadable: tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        """True once the execution reached a final status."""
        return self.status in FINISHED
