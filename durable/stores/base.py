"""The store interface: the state transitions a workflow store must make atomically.

Every method is one transaction. Methods that act on behalf of a claim take the claim's
``token`` (fencing token) and raise ``LeaseLost`` when it is no longer
the execution's current token or the execution is no longer running: a worker that lost its
lease can write nothing. Every time comparison uses the ``now`` passed in, never the store's
own clock, so a test clock controls stores exactly as it controls the engine.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from durable._json import clone
from durable.errors import InvalidState
from durable.models import (
    FINISHED,
    Execution,
    Overlap,
    Schedule,
    Status,
    StepExecution,
    StepPhase,
    StepStatus,
    Wait,
    WaitDecision,
    WaitSpec,
    decide_wait,
)

__all__ = [
    "AlreadyDone",
    "ExecutionRow",
    "Fire",
    "Store",
    "Unit",
    "UnitOutcome",
    "WaitDecision",
    "as_cancelled",
    "cancel_error",
    "compensating_error",
    "decide_wait",
    "finished_error",
    "input_too_late",
    "not_live_error",
    "not_pending_error",
    "not_retryable_error",
    "overlap_verdict",
    "unit_id",
    "unit_state",
    "unreadable_error",
]


@dataclass(slots=True)
class ExecutionRow:
    """An execution as a store holds it, including the claim and the step pointer."""

    id: str
    workflow: str
    status: Status
    queue: str
    priority: int
    input: Any
    context: dict[str, Any]
    created_at: datetime
    scheduled_at: datetime
    run_at: datetime | None
    timeout_ms: int | None = None
    idempotency_key: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    deadline: datetime | None = None
    step_index: int = 0
    step_name: str | None = None
    attempt: int = 0  # number of the latest attempt of the current step
    attempt_started_at: datetime | None = None  # set while an attempt is in flight
    error: dict[str, Any] | None = None
    token: int = 0
    worker_id: str | None = None
    lease_expires_at: datetime | None = None
    cancel_requested: bool = False
    cancel_reason: str | None = None
    seq: int = 0  # assigned by the store at create: creation order, for stable ordering
    # the current step was suspended by a wait: the next claim resumes it under the same
    # attempt number (cleared when the resumed run ends)
    suspended: bool = False
    # the write id of the last fenced transition that committed: a transition retried
    # after an interrupted commit recognises itself by it (see Store.complete_step)
    last_write: str | None = None
    lost_attempts: int = 0  # attempts of the current step run lost with their worker
    max_attempts: int = 1  # the retry budget in force for the current step
    # the journal key of the current step run is (id, step_name, visit): the visit counts
    # the times this execution reached that step; visits holds the latest visit of every
    # step reached (a step missing from it was never left)
    visit: int = 1
    visits: dict[str, int] = field(default_factory=dict)
    # Units (a parallel group's branches, a foreach's items) are rows of their own, claimed
    # like executions: ``parent_id`` is the execution, ``unit`` the unit's name
    # ("group.step", "step[i]"), ``group_step`` / ``group_visit`` the step run they belong
    # to. A unit ending ends its part of that run (see Store.fork).
    parent_id: str | None = None
    unit: str | None = None
    group_step: str | None = None
    group_visit: int = 0
    unit_index: int = 0
    stops_group: bool = False  # a unit whose failure ends the group at once (fail_fast)
    item: Any = None  # an item unit: its item
    result: Any = None  # a unit that completed: its result (what the executor gave)
    # an execution at a group: what is still open of its count (the memory store counts
    # units; the SQL stores count the rows their count is split over, see GROUP_SHARDS)
    open_units: int = 0
    # what the execution runs: its flow, or its compensations (then its status reads
    # compensating until it ends; see Store.compensate)
    phase: StepPhase = StepPhase.RUN
    # an execution made by engine.fork: {"forked_from", "step", "context"} (the context
    # it started with, which a later fork or retry rebuilds from)
    origin: dict[str, Any] | None = None
    # the workflow's shape when the execution started (WorkflowDef.shape()), for deploy
    # checks; None for units and for executions started before it was recorded
    shape: dict[str, Any] | None = None
    # what plugins stored with the execution when it was created (durable_execution_headers,
    # e.g. a W3C traceparent): string keys and values, kept as they are by every transition
    # and given to its units
    headers: dict[str, str] = field(default_factory=dict)
    # a child workflow: the step run of its parent that started it (that step's name, a
    # unit's own name for a child a unit started); None otherwise, and for children
    # stored before it was recorded
    parent_step: str | None = None
    began: bool = False  # not stored: set by claim() when it began the current attempt
    # not stored: set by claim(): when the row became claimable before the claim took it
    # (its run_at, or the lease expiry of a claim taken over), for queue lag
    due_at: datetime | None = None
    # not stored: when this process claimed it (set by the scheduler that claimed it)
    claimed_at: datetime | None = None
    # not stored: what of the stored row this process could not decode, and why (those
    # fields read as None or empty); a claim fails such an execution at once
    unreadable: tuple[str, ...] = ()

    @property
    def public_status(self) -> Status:
        """The status users see: ``compensating`` while the compensations of an execution
        run (its row pending, running or waiting under them), else the row's own."""
        if self.phase == StepPhase.COMPENSATE and self.status not in FINISHED:
            return Status.COMPENSATING
        return Status(self.status)

    def to_execution(self, steps: list[StepExecution] | None = None) -> Execution:
        """The public snapshot (context, input and error deep-copied)."""
        return Execution(
            id=self.id,
            workflow=self.workflow,
            status=self.public_status,
            input=clone(self.input),
            context=clone(self.context),
            queue=self.queue,
            priority=self.priority,
            created_at=self.created_at,
            scheduled_at=self.scheduled_at,
            run_at=self.run_at,
            started_at=self.started_at,
            completed_at=self.completed_at,
            deadline=self.deadline,
            current_step=self.step_name,
            attempt=self.attempt,
            error=clone(self.error),
            idempotency_key=self.idempotency_key,
            cancel_requested=self.cancel_requested,
            cancel_reason=self.cancel_reason,
            steps=steps,
            unreadable=self.unreadable,
            current_visit=self.visit,
            parent_id=self.parent_id,
            forked_from=(self.origin or {}).get("forked_from"),
            schedule=(self.origin or {}).get("schedule"),
            headers=dict(self.headers),
            parent_step=self.parent_step,
        )


@dataclass(frozen=True, slots=True)
class Unit:
    """One unit to insert at a fork: a branch or an item."""

    name: str  # "group.step" or "step[i]"
    index: int  # the branch's position in the group, the item's in the list
    context: dict[str, Any] | None = None  # a branch's copy of the context (items: None)
    item: Any = None
    max_attempts: int = 1


@dataclass(frozen=True, slots=True)
class UnitOutcome:
    """What a group's join needs of one of its units (lighter than its whole row)."""

    index: int
    name: str
    status: Status
    created_at: datetime
    completed_at: datetime | None
    result: Any = None
    error: dict[str, Any] | None = None


_UNITS = uuid.UUID("0c7d6a2e-5b1f-4f8e-9d3a-6e2b8c4a1f57")


def unit_state(status: Status | str, began: bool, suspended: bool) -> str:
    """How a unit stands, in one word, from its row: its status once it ended
    (completed, failed, cancelled) or while an attempt runs (running); ``waiting`` when it
    is suspended on a wait (woken or not); ``retrying`` when it is pending with an attempt
    behind it (its next is due); ``pending`` when none began."""
    status = Status(status)
    if status == Status.WAITING or (status == Status.PENDING and suspended and began):
        return "waiting"
    if status == Status.PENDING:
        return "retrying" if began else "pending"
    return status.value


def unit_id(execution_id: str, step: str, visit: int, index: int) -> str:
    """The id of a unit row: the same for the same unit, so a fork repeated finds it."""
    return str(uuid.uuid5(_UNITS, f"{execution_id}\x00{step}\x00{visit}\x00{index}"))


def as_cancelled(record: StepExecution, now: datetime) -> StepExecution:
    """The record of an attempt whose result a cancel discarded."""
    return StepExecution(
        record.name,
        StepStatus.CANCELLED,
        record.attempt,
        record.started_at,
        record.completed_at or now,
        {"type": "Cancelled", "message": "cancelled; the attempt's result was discarded"},
        record.logs,
        record.index,
        record.max_attempts,
        visit=record.visit,
        phase=record.phase,
        compensates=record.compensates,
    )  # (no changes: its writes were discarded)


def cancel_error(reason: str | None) -> dict[str, Any]:
    """The failure a cancel gives an execution whose compensations it starts (what
    ``durable.context.failure()`` returns in them)."""
    message = "cancelled" if reason is None else f"cancelled: {reason}"
    return {"type": "Cancelled", "message": message, "traceback": "", "reason": reason}


def not_retryable_error(row: ExecutionRow) -> InvalidState:
    """The error for retrying an execution that has not ended failed, cancelled or
    compensated (or is a unit)."""
    if row.unit is not None:
        return InvalidState(
            f"{row.id} is a unit ({row.unit}) of execution {row.parent_id}: retry the "
            "execution instead"
        )
    return InvalidState(
        f"execution {row.id} is {row.public_status.value}; only a failed, cancelled or "
        "compensated execution can be retried"
    )


def compensating_error(execution_id: str) -> InvalidState:
    """The error for cancelling an execution whose compensations are running."""
    return InvalidState(
        f"execution {execution_id} is compensating: its compensations run to the end "
        "(a cancel cannot stop them); it then ends compensated, or failed if one failed"
    )


def unreadable_error(execution_id: str, problems: Sequence[str]) -> dict[str, Any]:
    """The error a claim stores for an execution it cannot decode."""
    return {
        "type": "durable.errors.UnreadableExecution",
        "message": f"execution {execution_id} cannot be read by this process ("
        + "; ".join(problems)
        + "); it was failed so that other executions run, and what is stored is kept as it was",
        "traceback": "",
    }


class AlreadyDone(Exception):
    """Raised inside a store when a fenced transition finds its own ``write_id`` already
    on the row: an earlier try committed (its reply was lost). Carries the row as that
    commit left it; the store returns what the transition returns, without writing."""

    def __init__(self, row: ExecutionRow) -> None:
        super().__init__(row.id)
        self.row = row


def finished_error(execution_id: str, status: Status) -> InvalidState:
    """The error for cancelling an execution that already finished."""
    return InvalidState(
        f"execution {execution_id} already finished with status {status.value}; only "
        "pending, waiting or running executions can be cancelled"
    )


def input_too_late(execution_id: str, name: str, until: datetime) -> InvalidState:
    """The error for an input given after its wait timed out."""
    return InvalidState(
        f"execution {execution_id} stopped waiting for the input {name!r} at "
        f"{until.isoformat()} (its timeout); nothing was stored"
    )


def not_live_error(execution_id: str, status: Status) -> InvalidState:
    """The error for an event or input sent to an execution that finished."""
    return InvalidState(
        f"execution {execution_id} already finished with status {status.value}; "
        "events and inputs go to executions that have not finished"
    )


def not_pending_error(execution_id: str, name: str, pending: Sequence[str]) -> InvalidState:
    """The error for providing an input nobody waits for."""
    return InvalidState(
        f"execution {execution_id} is not waiting for an input named {name!r}"
        + (f"; it waits for: {', '.join(map(repr, pending))}" if pending else "")
        + " (an input is accepted only while a step waits for it)"
    )


def _no(_workflow: str) -> bool:
    return False


def _no_schedules(store: object) -> NotImplementedError:
    return NotImplementedError(
        f"{type(store).__name__} keeps no schedules: cron needs a store that implements "
        "the schedule methods of durable.stores.base.Store (memory, SQLite and PostgreSQL do)"
    )


def overlap_verdict(
    overlap: Overlap, latest_running: bool, buffered: bool
) -> Literal["make", "let_go", "park", "cancel_then_make"]:
    """What a fire does with one tick's row (see Store.fire_schedules), by the schedule's
    ``overlap``, whether its latest execution is unfinished, and whether one is buffered."""
    if not latest_running or overlap == Overlap.ALLOW:
        return "make"
    if overlap == Overlap.SKIP or (overlap == Overlap.BUFFER_ONE and buffered):
        return "let_go"
    return "cancel_then_make" if overlap == Overlap.CANCEL_PREVIOUS else "park"


@dataclass(frozen=True, slots=True)
class Fire:
    """What a worker fires for one due schedule (see Store.fire_schedules)."""

    name: str
    expected: datetime  # the schedule's next_tick as read: the fire applies only then
    next_tick: datetime  # its next tick after this fire
    rows: tuple[ExecutionRow, ...]  # an execution per tick to fire, oldest first
    missed: int = 0  # ticks let go by the catch-up policy
    # the overlap policy as read: "allow" needs no look at the latest execution (a
    # policy changed between the read and the fire applies from the next tick)
    overlap: Overlap = Overlap.ALLOW


class Store(abc.ABC):
    """A workflow store. Implement every method as one transaction.

    **Write ids.** Every fenced transition takes a ``write_id`` (the store makes one when
    given None) and keeps it on the row as ``last_write``. The engine retries a transition
    whose commit was interrupted (a dropped connection) with the same ``write_id``; a store
    that finds its own ``write_id`` on the row knows the earlier try committed, writes
    nothing more, and returns what that try would have returned.
    """

    # -- starting and reading ------------------------------------------------------------

    @abc.abstractmethod
    def create(self, row: ExecutionRow) -> tuple[ExecutionRow, bool]:
        """Insert a new pending execution, assigning ``seq`` (creation order), with every
        field given (its ``headers`` too: kept unchanged for its whole life).

        When ``row.idempotency_key`` is already used, insert nothing and return
        ``(existing, False)``; else ``(stored row, True)``."""

    @abc.abstractmethod
    def get(self, execution_id: str) -> ExecutionRow | None:
        """The execution, or None."""

    @abc.abstractmethod
    def steps(self, execution_id: str) -> list[StepExecution]:
        """Every recorded step attempt of the execution, in the order they started."""

    def own_steps(self, execution_id: str) -> list[StepExecution]:
        """The step attempts the execution itself recorded (not its units': read those
        with ``steps(unit_id(...))``), in the order they started. A store should
        override it to leave the units out (this default reads everything)."""
        return self.steps(execution_id)

    def get_by_key(self, idempotency_key: str) -> ExecutionRow | None:
        """The execution started with that idempotency key, or None. A store should
        override it (this default walks every execution)."""
        before: tuple[datetime, int] | None = None
        while page := self.list_executions(
            workflows=None, statuses=None, queues=None, limit=1000, before=before
        ):
            for row in page:
                if row.idempotency_key == idempotency_key:
                    return row
            before = (page[-1].created_at, page[-1].seq)
        return None

    @abc.abstractmethod
    def list_executions(
        self,
        *,
        workflows: Sequence[str] | None,
        statuses: Sequence[Status] | None,
        queues: Sequence[str] | None,
        limit: int,
        parent: str | None = None,
        before: tuple[datetime, int] | None = None,
    ) -> list[ExecutionRow]:
        """Executions matching every given filter, newest first (by ``created_at`` then
        ``seq``), at most ``limit``; ``parent``: only its child workflows; ``before``: only
        those after that ``(created_at, seq)`` in this order (the next page: keyset
        paging, as fast for the thousandth page as for the first). Units are never
        listed.

        A child workflow (``parent_id`` set, not a unit) that ends — in any transition
        that gives it a final status — resolves, in that transaction, the pending
        ``child`` wait named by its id in its parent or the parent's units with
        ``{"id", "status", "context", "error"}``, and wakes the row suspended on it. A
        cancel of an execution cancels its unfinished children (and theirs) with it."""

    @abc.abstractmethod
    def next_due(
        self, *, queues: Sequence[str] | None, workflows: Sequence[str] | None
    ) -> datetime | None:
        """The earliest time at which something becomes claimable: a pending execution's
        ``run_at`` or a running one's lease expiry. None when nothing is scheduled."""

    # -- claims --------------------------------------------------------------------------

    @abc.abstractmethod
    def claim(
        self,
        *,
        queues: Sequence[str] | None,
        workflows: Sequence[str],
        worker_id: str,
        now: datetime,
        lease_ms: int,
        limit: int,
    ) -> list[ExecutionRow]:
        """Claim up to ``limit`` executions that are pending or waiting with
        ``run_at <= now`` or running with ``lease_expires_at <= now``, in the given queues
        (None: any) and of the given workflows; highest priority first, then earliest
        ``scheduled_at``, then earliest creation (``created_at``, then ``seq``).

        Each claimed row becomes ``running`` with a new token (one more than before),
        ``worker_id`` and ``lease_expires_at = now + lease``; ``started_at`` and (from
        ``timeout_ms``) ``deadline`` are set on the first claim. When no attempt is in
        flight, the claim also begins the current step's next attempt (``attempt + 1``,
        ``attempt_started_at = now``; for a ``suspended`` step the same attempt resumes,
        its number unchanged) and returns the row with ``began=True``; an attempt
        left in flight by a lost worker is left as it is (``began=False``), for the new
        owner to count as failed. Each returned row's ``due_at`` is when it had become
        claimable (its ``run_at``, or for a running row its lease expiry), read in the
        same statement. Returns the claimed rows, in claim order.
        """

    @abc.abstractmethod
    def heartbeat(
        self, claims: Sequence[tuple[str, int]], *, now: datetime, lease_ms: int
    ) -> list[str]:
        """Extend the leases of ``(execution_id, token)`` claims to ``now + lease``.
        Returns the ids whose claims were lost (stale token or no longer running)."""

    @abc.abstractmethod
    def release(
        self,
        execution_id: str,
        token: int,
        *,
        now: datetime,
        attempt_ran: bool,
        run_at: datetime | None = None,
        write_id: str | None = None,
    ) -> None:
        """Give a claim back (a worker shutting down): the execution becomes ``pending``
        with ``run_at = now``, claimable by any worker at once (or at ``run_at``, when
        given: compensations waiting for a group's last running units look again then).
        With ``attempt_ran=False`` the attempt begun but never run is taken back
        (``attempt - 1``, not in flight); with ``True`` it stays in flight, so the next
        owner counts it as lost."""

    @abc.abstractmethod
    def complete_step(
        self,
        execution_id: str,
        token: int,
        *,
        now: datetime,
        record: StepExecution,
        context: dict[str, Any],
        next_step: tuple[int, str] | None,
        start_next: bool,
        next_max_attempts: int = 1,
        visits: Mapping[str, int] | None = None,
        result: Any = None,
        write_id: str | None = None,
    ) -> Status:
        """Commit a completed attempt: its record, the new context and the step pointer.

        ``next_step`` is ``(index, name)`` of the step to run next, or None when the
        workflow is done (status ``completed``). ``visits`` is the execution's map of
        visits after the move (kept as ``visits``); the next step runs as its visit
        ``visits[name]`` (1 when not given), so a step reached again starts afresh: its
        attempts count from 1, its waits are new. With ``start_next`` the next step's first
        attempt is begun in the same transaction; ``next_max_attempts`` is its retry budget
        (kept as ``max_attempts``) and its count of lost attempts starts at 0. When a
        cancel was requested, the result is discarded instead: the record is stored as
        ``cancelled`` with the old context and the execution becomes ``cancelled``.
        A unit (see ``fork``) completes with ``next_step=None``, keeping ``result``.
        Returns the execution's new status.
        """

    @abc.abstractmethod
    def fail_attempt(
        self,
        execution_id: str,
        token: int,
        *,
        now: datetime,
        record: StepExecution,
        retry_at: datetime | None,
        error: dict[str, Any] | None,
        write_id: str | None = None,
    ) -> Status:
        """Commit a failed attempt. With ``retry_at`` the execution becomes ``pending`` with
        ``run_at = retry_at`` and the claim is released (``max_attempts`` becomes the
        record's); without it the execution becomes ``failed`` with ``error``. A requested
        cancel wins (``cancelled``). Returns the new status."""

    @abc.abstractmethod
    def fork(
        self,
        execution_id: str,
        token: int,
        *,
        now: datetime,
        step: str,
        visit: int,
        units: Sequence[Unit],
        concurrency: int | None,
        stops_group: bool,
        write_id: str | None = None,
    ) -> Status:
        """The claimed execution reached a parallel group or foreach step: insert its
        units and let it wait for them, in one transaction.

        Each unit becomes a row (id ``unit_id``) of the same workflow, queue, priority,
        ``scheduled_at``, deadline and ``headers``, ``status`` pending, attempt 0, at step
        ``unit.name`` as visit ``visit`` (its records carry the group run's visit)
        with budget ``unit.max_attempts``, ``context`` the unit's (or empty), input None.
        Units whose index is below ``concurrency`` (all when None) are claimable at
        ``now``; the others are parked (pending with no ``run_at``) until a unit ends. The execution
        becomes ``waiting`` (suspended, its timer the deadline if any) with ``open_units``
        counting what is open of the group (its units; a SQL store counts the rows it
        splits the group's count over, at most 64); with no units it becomes ``pending``
        at once.

        A unit ends when a transition gives it a final status: ``complete_step`` with
        ``next_step=None`` (completed, its ``result`` kept), ``fail_attempt`` without a
        retry, ``finish``, or a cancel. In that same transaction the group counts down;
        when nothing is open, or the unit failed or was cancelled and ``stops_group``,
        the parent becomes ``pending`` (run_at now) and, for a stopping failure, the
        group's unfinished units are cancelled (running ones at their next checkpoint);
        otherwise, if the unit held a place (it was not itself parked), the group's
        lowest parked unit becomes claimable. Only while the parent waits at (``step``,
        ``visit``). A requested cancel wins (``cancelled``). Returns the parent's status.
        """

    @abc.abstractmethod
    def units(self, execution_id: str, step: str, visit: int) -> list[ExecutionRow]:
        """The units of visit ``visit`` of ``step`` of an execution, by index."""

    def unit_outcomes(
        self,
        execution_id: str,
        step: str,
        visit: int,
        *,
        after: int = -1,
        limit: int | None = None,
    ) -> list[UnitOutcome]:
        """How the units of visit ``visit`` of ``step`` ended (or stand), by index: those
        whose index is above ``after``, at most ``limit`` (None: all). The join reads them
        a page at a time, so a foreach of 10,000 items never holds them all at once; it
        reads until a page comes back empty. A store should override it to read only that
        page (this default reads every unit for each page)."""
        return [
            UnitOutcome(
                u.unit_index,
                u.unit or "",
                u.status,
                u.created_at,
                u.completed_at,
                u.result,
                u.error,
            )
            for u in self.units(execution_id, step, visit)
            if u.unit_index > after
        ][:limit]  # ([:None] is all)

    def unit_states(self, execution_id: str, step: str, visit: int) -> dict[str, int]:
        """How many units of visit ``visit`` of ``step`` stand each way (see
        ``unit_state``: completed, failed, cancelled, running, waiting, retrying,
        pending); only the ways some unit stands are keys. A store should override it to
        count in one query (this default reads every unit)."""
        counts: dict[str, int] = {}
        for u in self.units(execution_id, step, visit):
            state = unit_state(u.status, u.attempt > 0, u.suspended)
            counts[state] = counts.get(state, 0) + 1
        return counts

    def each_unit_outcome(
        self, execution_id: str, step: str, visit: int, *, page: int = 1000
    ) -> Iterator[UnitOutcome]:
        """Every unit of a group run, by index, read ``page`` at a time (until a page comes
        back empty: a store may return fewer than asked)."""
        after = -1
        while found := self.unit_outcomes(execution_id, step, visit, after=after, limit=page):
            yield from found
            after = found[-1].index

    @abc.abstractmethod
    def restart_attempt(
        self,
        execution_id: str,
        token: int,
        *,
        now: datetime,
        record: StepExecution,
        write_id: str | None = None,
    ) -> None:
        """The claimed execution's attempt in flight was lost with its worker: store
        ``record`` (status ``lost``), count it (``lost_attempts + 1``) and begin the same
        attempt again (``attempt_started_at = now``, the attempt number unchanged), for the
        claim's owner to run."""

    @abc.abstractmethod
    def finish(
        self,
        execution_id: str,
        token: int,
        *,
        now: datetime,
        status: Status,
        error: dict[str, Any] | None,
        record: StepExecution | None = None,
        write_id: str | None = None,
    ) -> None:
        """End a claimed execution with a final ``status`` (a workflow timeout, or a cancel
        seen at a checkpoint), storing ``record`` (the attempt it interrupted) if given."""

    @abc.abstractmethod
    def request_cancel(
        self,
        execution_id: str,
        *,
        now: datetime,
        reason: str | None,
        compensates: Callable[[str], bool] = lambda workflow: False,
    ) -> ExecutionRow:
        """Cancel: a pending or waiting execution, or a running one whose lease expired,
        becomes ``cancelled`` at once; a running one is marked ``cancel_requested`` and
        stops at its next checkpoint. Its units are cancelled with it, and its unfinished
        children (recursively) but those already running their compensations.

        An execution whose workflow ``compensates(workflow)`` (it declares compensations)
        is not ended: instead of ``cancelled`` at once it enters its compensate phase as
        ``compensate`` describes (``error`` ``cancel_error``, ``cancel_reason``
        kept); a running one is marked ``cancel_requested`` with ``phase`` compensate, and
        the transition that meets that mark (a checkpoint) enters the phase instead of
        ending it, storing the attempt as cancelled and returning ``compensating``.

        Raises ExecutionNotFound; InvalidState when it already finished
        (``finished_error``) or its compensations run (``compensating_error``).
        Returns the row after the change."""

    @abc.abstractmethod
    def retry_execution(
        self,
        execution_id: str,
        *,
        now: datetime,
        step_index: int,
        step_name: str,
        visit: int,
        visits: Mapping[str, int],
        context: dict[str, Any],
        max_attempts: int,
        origin: dict[str, Any] | None = None,
    ) -> ExecutionRow:
        """``engine.retry``: an execution that ended ``failed``, ``cancelled`` or
        ``compensated`` becomes ``pending`` at ``now`` again, in its flow (phase run), at
        ``(step_index, step_name)`` as its visit ``visit`` (``visits`` kept), with
        ``context``, no attempt in flight (``attempt`` 0, budget ``max_attempts``), no
        error, result, cancel request or deadline (its next claim sets a fresh one from
        ``timeout_ms``); ``origin`` replaces the row's when given (the retry's rewind is
        kept there); its ``headers`` are kept. Raises ExecutionNotFound, or InvalidState
        when it has not ended so (or is a unit). Returns the row after the change."""

    @abc.abstractmethod
    def compensate(
        self,
        execution_id: str,
        token: int,
        *,
        now: datetime,
        error: dict[str, Any],
        record: StepExecution | None = None,
        write_id: str | None = None,
    ) -> Status:
        """The claimed execution failed (or met a cancel) and completed steps declare
        compensations: instead of ending, it enters its compensate phase. ``phase``
        becomes compensate; it becomes ``pending`` at ``now`` (claimable at once) with no
        attempt in flight (``attempt`` 0, ``lost_attempts`` 0, not suspended); the cancel
        request is cleared; ``error`` is kept as the failure that started it; ``record``
        (the attempt that failed, if any) is stored. Its status reads ``compensating``
        (see ``ExecutionRow.public_status``) until a transition gives it a final
        status. Later transitions (complete_step, fail_attempt, finish, ...) work on it as
        on any claimed execution. Returns ``pending``."""

    # -- waits ---------------------------------------------------------------------------

    @abc.abstractmethod
    def wait(
        self,
        execution_id: str,
        token: int,
        *,
        now: datetime,
        step: str,
        visit: int,
        seq: int,
        attempt: int,
        spec: WaitSpec,
    ) -> Wait:
        """Reach the ``seq``-th wait of visit ``visit`` of ``step`` in a claimed execution
        (fenced) and return it as it stands after ``decide_wait``. Waits of another
        visit of the step are never matched.

        The first time, the wait is recorded (``until`` from ``spec.deadline(now)``). Later
        runs of the step find it: resolved or timed out, it is returned as it is (a
        resumed step gets the same result); still pending, it is decided again, consuming
        the events it takes. A wait that timed out in an earlier attempt is begun afresh
        by a new attempt (what did come, an event or an input, is kept). A recorded wait
        whose kind or names differ from ``spec`` (the code changed) is replaced."""

    @abc.abstractmethod
    def suspend(
        self,
        execution_id: str,
        token: int,
        *,
        now: datetime,
        record: StepExecution,
        step: str,
        visit: int,
        seq: int,
        write_id: str | None = None,
    ) -> Status:
        """Suspend a claimed execution on its pending wait ``(step, visit, seq)``: store the
        run's
        ``record`` and release the claim. The execution becomes ``waiting`` until the
        wait's ``until`` (or the workflow deadline, if earlier; no timer if neither), and
        ``suspended`` so that the next claim resumes the same attempt. If the wait can
        already resolve (an event or input arrived since it was decided) it becomes
        ``pending`` at once instead. A requested cancel wins (``cancelled``). Returns the
        new status."""

    @abc.abstractmethod
    def send_event(self, execution_id: str, name: str, payload: Any, *, now: datetime) -> bool:
        """Keep the event for the execution (in arrival order) and, if it is ``waiting``
        on a wait this event lets resolve, make it ``pending`` at once. Raises
        ExecutionNotFound, or InvalidState when the execution finished. Returns True when
        it woke the execution."""

    @abc.abstractmethod
    def provide_input(
        self,
        execution_id: str,
        name: str,
        data: Any,
        *,
        now: datetime,
        validate: Callable[[dict[str, Any] | None], Any] | None = None,
    ) -> None:
        """Resolve the execution's pending input wait ``name`` with ``data`` and wake the
        execution if it is waiting. ``validate(schema)`` is called with the wait's schema
        in the same transaction, before anything is written: it raises to refuse, else
        returns what to store in place of ``data`` (the JSON form of what the wait's model
        made of it: defaults filled in once, not at each read). Raises
        ExecutionNotFound; InvalidState when it finished, no such input is pending (see
        ``not_pending_error``), or the wait's ``until`` is before ``now``
        (``input_too_late``)."""

    @abc.abstractmethod
    def waits(
        self,
        *,
        execution_id: str | None = None,
        kind: str | None = None,
        pending_only: bool = True,
        workflow: str | None = None,
        open_at: datetime | None = None,
        limit: int = 1000,
    ) -> list[Wait]:
        """Recorded waits (pending ones of unfinished executions when ``pending_only``),
        oldest first; ``open_at`` leaves out those whose ``until`` is before it."""

    def recent_waits(self, execution_id: str, *, limit: int) -> tuple[list[Wait], int]:
        """The execution's ``limit`` (at least 1) newest waits, its units' too, whatever
        their status, newest first; and how many it has in all. A store should override
        it to read only those (this default reads every wait of the execution)."""
        every = self.waits(execution_id=execution_id, pending_only=False, limit=2**62)
        return every[::-1][:limit], len(every)

    # -- retention -----------------------------------------------------------------------

    @abc.abstractmethod
    def purge(
        self, *, finished_before: datetime, workflows: Sequence[str] | None, limit: int
    ) -> list[str]:
        """Delete up to ``limit`` executions that finished (completed, failed, cancelled,
        compensated) before ``finished_before``, oldest first, with everything kept for
        them (attempts, waits, events), in one transaction. Returns their ids. Unfinished
        executions are never touched."""

    def migrate(self, now: datetime) -> list[int]:
        """Optional: create or upgrade what the store keeps (``Engine(migrate=True)`` and
        ``durable migrate`` call it); returns the versions applied."""
        return []

    def note_plan(  # noqa: B027 - optional: a store may keep no plans
        self, workflow: str, plan: str, *, process: str, worker: bool, now: datetime
    ) -> None:
        """Optional: ``process`` runs code whose ``workflow`` has ``plan`` (a fingerprint
        of its shape, ``WorkflowDef.plan``) at ``now``, as a worker or (``worker=False``)
        only starting executions. Keep when each process last said so (never moved
        back), and whether it ever said so as a worker. A store that keeps no plans
        does nothing: its workers then run every execution with the code they have,
        whatever code started it."""

    def plan_seen(
        self, workflow: str, plan: str, *, besides: str
    ) -> tuple[datetime | None, datetime | None]:
        """Optional: when a process other than ``besides`` last noted ``plan`` of
        ``workflow``: as a worker, and as any process (None: never, or the store keeps
        no plans)."""
        return None, None

    def server_time(self) -> datetime | None:
        """Optional: the store server's own clock, for workers to check that their clock
        agrees with it (None: the store has no clock of its own, e.g. in-process)."""
        return None

    def check_schema(self) -> None:  # noqa: B027 - optional hook, nothing to check by default
        """Optional: raise ``StoreError`` when what the store keeps is
        not at the version this code needs, saying how to put it right."""

    def subscribe(self, callback: Callable[[], None]) -> None:  # noqa: B027
        """Optional: call ``callback`` whenever work may have become claimable (a start, a
        retry, a release), including by other processes. Workers also poll, so a store
        that never calls back is correct, only slower to react."""

    #: whether ``subscribe_ended`` hears of every execution that ends (in any process
    #: using the store); when False, whoever waits for an end also checks now and then
    tells_ends = False

    def subscribe_ended(self, callback: Callable[[str | None], None]) -> None:  # noqa: B027
        """Optional: call ``callback(execution_id)`` after an execution ended (None: one
        may have ended unheard, look again), including in other processes."""

    def unsubscribe_ended(self, callback: Callable[[str | None], None]) -> None:  # noqa: B027
        """Optional: stop calling ``callback``."""

    #: whether ``subscribe_cancels`` hears of every cancel (in any process); when
    #: False, workers look for cancels of what they run at each heartbeat
    tells_cancels = False

    def subscribe_cancels(self, callback: Callable[[], None]) -> None:  # noqa: B027
        """Optional: call ``callback()`` after a cancel was requested (anywhere), so that a
        worker looks at once whether a step it runs was cancelled."""

    def cancel_requested_among(self, execution_ids: Sequence[str]) -> set[str]:
        """Those of ``execution_ids`` whose cancel was requested (a worker asks about the
        executions and units whose steps it runs)."""
        found = set()
        for eid in execution_ids:
            row = self.get(eid)
            if row is not None and row.cancel_requested:
                found.add(eid)
        return found

    # -- schedules (cron) ------------------------------------------------------------------
    # A store that keeps no schedules may leave these: engine.schedule() then says so.

    def put_schedule(
        self, schedule: Schedule, *, now: datetime, expected: datetime | None = None
    ) -> Schedule | None:
        """Store ``schedule`` under its name and return it as stored. A new one is stored
        as given. An existing one takes the given workflow, cron, time zone, input,
        policies and ``declared``; it keeps its ``next_tick`` unless the cron or the time
        zone changed (then the given one), and keeps ``paused``, its last tick and
        execution, its buffered execution and ``missed``. A change of cron or zone applies
        only while the schedule's ``next_tick`` is ``expected`` (the one the caller read:
        a tick fired meanwhile must not be given again); else nothing is written and None
        is returned."""
        raise _no_schedules(self)

    def get_schedule(self, name: str) -> Schedule | None:
        """The schedule of that name, or None."""
        raise _no_schedules(self)

    def list_schedules(self) -> list[Schedule]:
        """Every schedule, by name."""
        raise _no_schedules(self)

    def delete_schedule(
        self, name: str, *, now: datetime, compensates: Callable[[str], bool] = _no
    ) -> bool:
        """Remove the schedule (False: there was none). Its buffered execution, never
        started, is cancelled with it; executions it started go on."""
        raise _no_schedules(self)

    def pause_schedule(
        self, name: str, *, paused: bool, next_tick: datetime, now: datetime
    ) -> Schedule | None:
        """Pause the schedule (its next tick kept), or resume a paused one from
        ``next_tick`` (it does not make up for the ticks while it was paused). None: no
        schedule of that name, or (resuming) one that is not paused."""
        raise _no_schedules(self)

    def next_tick(self, *, workflows: Sequence[str] | None) -> datetime | None:
        """The earliest ``next_tick`` of the schedules not paused (of those workflows)."""
        return None

    def due_schedules(
        self, *, now: datetime, workflows: Sequence[str], limit: int
    ) -> list[Schedule]:
        """Schedules not paused whose ``next_tick`` is at or before ``now``, of those
        workflows, earliest first, at most ``limit``. Reads only: see fire_schedules."""
        return []

    def fire_schedules(
        self,
        fires: Sequence[Fire],
        *,
        now: datetime,
        compensates: Callable[[str], bool] = _no,
    ) -> list[str]:
        """Fire ticks, all in one transaction, and return the ids of the executions made.

        Each ``Fire`` applies only if its schedule is still not paused with
        ``next_tick == fire.expected`` (else another worker fired it: it is left alone).
        Then ``next_tick`` becomes ``fire.next_tick``, ``missed`` grows by
        ``fire.missed``, and each of ``fire.rows`` (one per tick, oldest first) is made
        in turn by the schedule's ``overlap``, looking at its latest execution
        (``last_execution_id``) as it stands:

        * finished (or none), or ``allow``: the row is made and becomes the latest;
        * ``skip``: not made (``missed`` + 1);
        * ``buffer_one``: made parked (``pending``, no ``run_at``) as ``buffered_id``,
          unless one is buffered already (then not made, ``missed`` + 1); when the
          latest execution ends, in the transaction that ends it, the buffered one is
          due at once and becomes the latest;
        * ``cancel_previous``: the latest is cancelled (as ``request_cancel`` with
          ``compensates``), then the row is made and becomes the latest.

        ``last_tick`` is the tick of the last row made."""
        raise _no_schedules(self)

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Release connections."""
