"""What the engine reports: execution and step-attempt snapshots, and statuses."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

__all__ = [
    "FINISHED",
    "Execution",
    "Status",
    "StepExecution",
    "StepPhase",
    "StepStatus",
    "Wait",
    "WaitDecision",
    "WaitKind",
    "WaitMode",
    "WaitSpec",
    "WaitStatus",
    "decide_wait",
]


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
    SKIPPED = "skipped"  # its ``when=`` condition was false when the step came up: not run


class StepPhase(StrEnum):
    """What a step attempt was run for: the workflow's flow (``run``), or undoing a
    completed step after the execution failed or was cancelled (``compensate``). An
    execution in its ``compensate`` phase reads as status ``compensating`` until it ends."""

    RUN = "run"
    COMPENSATE = "compensate"


class WaitKind(StrEnum):
    """What a wait waits for."""

    SLEEP = "sleep"
    EVENT = "event"
    INPUT = "input"
    CHILD = "child"  # a child workflow's end (call_workflow); its name is the child's id


class WaitMode(StrEnum):
    """For a wait on several events: the first of them (``any``) or every one (``all``)."""

    ANY = "any"
    ALL = "all"


class WaitStatus(StrEnum):
    """Where a recorded wait stands."""

    PENDING = "pending"
    RESOLVED = "resolved"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True, slots=True)
class Wait:
    """A wait a step reached: what it waits for and until when.

    ``kind``: ``sleep``, ``event`` or ``input``. ``names``: the events (or the input) it
    waits for; ``mode``: ``any`` or ``all`` of them. ``until``: when a sleep ends or a
    wait times out (None: no timeout). ``status``: ``pending``, ``resolved`` or
    ``timed_out``. ``prompt`` and ``schema`` describe an input for whoever provides it;
    ``model`` names the pydantic model (``"module:Name"``) its schema was made from.
    ``(step, visit, seq)`` is its place in the execution's journal: the ``seq``-th wait
    reached in that visit of that step.
    """

    execution_id: str
    workflow: str
    step: str
    seq: int
    kind: WaitKind
    names: tuple[str, ...]
    mode: WaitMode
    until: datetime | None
    status: WaitStatus
    created_at: datetime
    prompt: str | None = None
    schema: dict[str, Any] | None = None
    result: Any = None
    resolved_at: datetime | None = None
    visit: int = 1
    model: str | None = None

    def __post_init__(self) -> None:
        # Stores hand in what they read back (plain str); the API gives enums. A value no
        # enum has (a row written by hand, or by a newer version) is kept as it is read.
        for name, enum in (("kind", WaitKind), ("mode", WaitMode), ("status", WaitStatus)):
            with contextlib.suppress(ValueError):
                object.__setattr__(self, name, enum(getattr(self, name)))


@dataclass(frozen=True, slots=True)
class Undoing:
    """What the running compensation undoes (``durable.context.compensating()``): the
    step run ``step`` (a parallel branch's as ``"group.step"``) of visit ``visit``, and
    ``context``, the context as that run left it (a branch's: as its group began, plus
    what the branch wrote). So a compensation of a step run once per loop visit undoes
    that visit's booking, not the last one's. ``context`` is None when it cannot be
    rebuilt (a run recorded before schema version 10 kept no changes)."""

    step: str
    visit: int
    context: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class StepExecution:
    """One attempt of one step, as stored.

    ``error`` is ``{"type", "message", "traceback"}`` for a failed attempt. ``logs`` is what
    the attempt logged and printed, in order: logging records (``{"time", "level",
    "logger", "message"}``, plus ``"exception"``), text written to stdout or stderr
    (``{"time", "stream", "text"}``, from the step and the threads it started), and, where
    the attempt went past the 64 KiB it keeps of its records, of its stdout or of its
    stderr (the first 32 KiB and the last 32 KiB of each), a mark of what was dropped there
    (``{"time", "cut": "logs" | "stdout" | "stderr", "dropped", "message"}``).
    ``records``, ``stdout``, ``stderr`` and ``output`` read it.
    A run that reached a wait is ``suspended``; when the wait resolves the step runs again
    under the same attempt number.
    ``retry_at`` is when the next attempt was scheduled for (failed attempts with budget
    left); ``max_attempts`` the budget in force. A ``lost`` run (its worker was killed or
    cut off) is run again under the same attempt number. ``result`` is what a completed
    attempt returned (JSON). ``visit`` counts the times the execution reached this step
    (a step reached again by a loop starts a new visit, its attempts from 1 again);
    ``phase`` is what the attempt ran for: the flow itself (``run``), or a compensation
    (``compensate``), whose ``name`` is the compensation's and ``compensates`` the step run
    it undoes (``visit`` being that run's visit). ``changes`` is what a completed run of
    a step (or compensation) changed in the context: ``{"set": {key: value},
    "deleted": [key]}``, plus ``"extended": {key: [items added at the end]}`` for lists
    that only grew and ``"patched": {key: {...the same form...}}`` for dicts changed in
    part (None for other attempts, and for units: a group's own record carries the
    merge).
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
    visit: int = 1
    phase: StepPhase = StepPhase.RUN
    compensates: str | None = None
    changes: dict[str, Any] | None = None

    @property
    def records(self) -> list[dict[str, Any]]:
        """The logging records of the attempt (and the mark of their cut, if any)."""
        return [e for e in self.logs if "level" in e or e.get("cut") == "logs"]

    @property
    def stdout(self) -> str:
        """What the attempt printed to stdout (the cut marked on a line of its own)."""
        return self._printed({"stdout"})

    @property
    def stderr(self) -> str:
        """What the attempt wrote to stderr (the cut marked on a line of its own)."""
        return self._printed({"stderr"})

    @property
    def output(self) -> str:
        """stdout and stderr as they were written, interleaved."""
        return self._printed({"stdout", "stderr"})

    def _printed(self, streams: set[str]) -> str:
        parts = []
        for e in self.logs:
            if e.get("stream") in streams:
                parts.append(str(e.get("text", "")))
            elif e.get("cut") in streams or e.get("cut") == "output":  # ("output": older rows)
                gap = "" if not parts or parts[-1].endswith("\n") else "\n"
                parts.append(f"{gap}{e.get('message', '')}\n")
        return "".join(parts)

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
    ``current_visit`` is the visit of ``current_step`` (1 unless a loop came back to it).
    ``headers`` are the string headers plugins stored with the execution when it was
    created (``durable_execution_headers``: a trace context, say); empty when none did.
    A child workflow's ``parent_step`` is the step run of ``parent_id`` that started it:
    the step's name, or a unit's own (``"group.step"``, ``"step[3]"``).
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
    current_visit: int = 1
    parent_id: str | None = None  # a child workflow: the execution that started it
    forked_from: str | None = None  # made by engine.fork: the execution it was forked from
    schedule: str | None = None  # started by a schedule (its tick is ``scheduled_at``)
    headers: dict[str, str] = field(default_factory=dict)
    parent_step: str | None = None

    @property
    def finished(self) -> bool:
        """True once the execution reached a final status."""
        return self.status in FINISHED


class CatchUp(StrEnum):
    """What a schedule does about ticks no worker fired in time (see ``engine.schedule``)."""

    LATEST = "latest"
    ALL = "all"
    SKIP = "skip"


class Overlap(StrEnum):
    """What a schedule does at a tick while the previous tick's execution is unfinished."""

    ALLOW = "allow"
    SKIP = "skip"
    BUFFER_ONE = "buffer_one"
    CANCEL_PREVIOUS = "cancel_previous"


@dataclass(frozen=True, slots=True)
class Schedule:
    """A cron schedule as stored: ``workflow`` started with ``input`` at every tick of
    ``cron`` in ``timezone``. ``next_tick`` is the next tick to fire (UTC; ticks while
    ``paused`` are not fired and not made up for); ``last_tick`` and
    ``last_execution_id`` the latest fired; ``missed`` counts the ticks not fired (by
    ``catch_up`` after no worker ran, or by ``overlap="skip"``); ``buffered_id`` is the
    execution waiting for the previous one to end (``overlap="buffer_one"``).
    ``declared``: made by ``@workflow(cron=...)`` (kept in step with the code by workers),
    not by ``engine.schedule()``."""

    name: str
    workflow: str
    cron: str
    timezone: str
    input: Any
    catch_up: CatchUp
    overlap: Overlap
    paused: bool
    next_tick: datetime
    created_at: datetime
    updated_at: datetime
    declared: bool = False
    last_tick: datetime | None = None
    last_execution_id: str | None = None
    buffered_id: str | None = None
    missed: int = 0


@dataclass(frozen=True, slots=True)
class WaitSpec:
    """What a step waits for, as the engine passes it to the store.

    ``kind``: ``sleep``, ``event`` or ``input``; ``names``: event or input names (empty for
    a sleep); ``mode``: ``any`` or ``all``. ``for_ms``: how long a sleep lasts or when a
    wait times out, from the moment it is first reached; ``until`` instead for an absolute
    instant. ``timeout_value`` is returned on timeout when ``has_timeout_value``.
    """

    kind: WaitKind
    names: tuple[str, ...] = ()
    mode: WaitMode = WaitMode.ANY
    for_ms: int | None = None
    until: datetime | None = None
    prompt: str | None = None
    schema: dict[str, Any] | None = None
    timeout_value: Any = None
    has_timeout_value: bool = False
    single: bool = False  # wait_for_event: return the payload, not (name, payload)
    # a child wait: the child to start, once, when the wait is first reached
    # (workflow, input, queue, timeout_ms)
    child: tuple[str, Any, str | None, int | None] | None = None

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
        if self.kind in ("input", "child"):
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
        if self.kind == "child":
            return f"child workflow {names}"
        return f"event {names}" if len(self.names) == 1 else f"{self.mode} of events {names}"


@dataclass(frozen=True, slots=True)
class WaitDecision:
    """What a pending wait comes to at ``now``: ``status`` (pending, resolved, timed_out),
    the ``result`` to record, and the inbox events (by seq) it consumes."""

    status: WaitStatus
    result: Any = None
    consumed: tuple[int, ...] = ()


def decide_wait(
    kind: WaitKind | str,
    mode: WaitMode | str,
    names: Sequence[str],
    until: datetime | None,
    now: datetime,
    inbox: Sequence[tuple[int, str, Any, datetime]],
) -> WaitDecision:
    """The rule every store applies to a pending wait, given the execution's unconsumed
    events ``(seq, name, payload, sent_at)`` in arrival order.

    An event counts if it was sent by ``until`` (one sent at that very instant wins over
    the timeout); one sent later, however soon it is looked at, does not."""
    if kind == "sleep":
        if until is not None and until <= now:
            return WaitDecision(WaitStatus.RESOLVED)
        return WaitDecision(WaitStatus.PENDING)
    if kind == "event":
        timely = [e for e in inbox if e[1] in names and (until is None or e[3] <= until)]
        if mode == "any":
            if timely:
                seq, name, payload, _ = timely[0]
                return WaitDecision(WaitStatus.RESOLVED, {"name": name, "payload": payload}, (seq,))
        else:
            first: dict[str, tuple[int, Any]] = {}
            for seq, name, payload, _ in timely:
                first.setdefault(name, (seq, payload))
            if len(first) == len(names):
                return WaitDecision(
                    WaitStatus.RESOLVED,
                    {n: first[n][1] for n in names},
                    tuple(sorted(first[n][0] for n in names)),
                )
    # an input (a child's end) is resolved by provide_input (the child's last transition)
    # itself; here it can only time out
    if until is not None and until <= now:
        return WaitDecision(WaitStatus.TIMED_OUT)
    return WaitDecision(WaitStatus.PENDING)
