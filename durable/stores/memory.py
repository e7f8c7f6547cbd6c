"""The in-memory store: one process, no durability; for tests and demos.

``memory://`` gives each engine a fresh store; ``memory://NAME`` shares one store per name
within the process, so several engines (workers) can run against it.
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
import heapq
import itertools
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from durable._json import clone
from durable.errors import ConfigError, ExecutionNotFound, InvalidState, LeaseLost
from durable.models import (
    FINISHED,
    Overlap,
    Schedule,
    Status,
    StepExecution,
    StepPhase,
    Wait,
    WaitSpec,
)
from durable.stores.base import (
    AlreadyDone,
    ExecutionRow,
    Fire,
    Store,
    Unit,
    UnitOutcome,
    as_cancelled,
    cancel_error,
    compensating_error,
    decide_wait,
    finished_error,
    input_too_late,
    not_live_error,
    not_pending_error,
    not_retryable_error,
    overlap_verdict,
    unit_id,
)

__all__ = ["MemoryStore", "forget"]

_named: dict[str, MemoryStore] = {}
_Ready = tuple[int, datetime, datetime, int, str, int, datetime]
_named_lock = threading.Lock()


class MemoryStore(Store):
    """A store held in this process's memory, with the same semantics as the SQL stores.

    Claimable rows are indexed by two heaps (due time, then claim order) with lazy
    deletion, so a claim costs O(log n) however many executions are held.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._rows: dict[str, ExecutionRow] = {}
        # per execution: its attempt records, each with when it was stored (so that an
        # execution's records and its units' read back in one order)
        self._steps: dict[str, list[tuple[int, StepExecution]]] = {}
        # per execution: (step, visit, seq) -> mutable wait fields; and its unconsumed events
        self._waits: dict[str, dict[tuple[str, int, int], dict[str, Any]]] = {}
        self._inbox: dict[str, list[tuple[int, str, Any, datetime]]] = {}
        self._keys: dict[str, str] = {}
        self._children: dict[str, list[str]] = {}  # an execution's unit rows, by id
        # (execution, step, visit) -> its units' ids, by index
        self._cancel_listeners: list[Callable[[], None]] = []
        self._groups: dict[tuple[str, str, int], list[str]] = {}
        # per group: no unit below this index is parked (parked units are only ever let
        # in or cancelled), where the search for the next one to let in starts
        self._parked_from: dict[tuple[str, str, int], int] = {}
        self._ended: list[Callable[[str | None], None]] = []
        self._schedules: dict[str, Schedule] = {}
        # (workflow, plan, process) -> (a worker?, last seen)
        self._plans: dict[tuple[str, str, str], tuple[bool, datetime]] = {}
        self._version: dict[str, int] = {}
        self._seq = itertools.count()
        # (due, seq, id, version): pending rows by run_at, running rows by lease expiry
        self._timed: list[tuple[datetime, int, str, int]] = []
        # per queue: (-priority, scheduled_at, created_at, seq, id, version, due) of due rows
        self._ready: dict[str, list[_Ready]] = {}

    # -- index upkeep --------------------------------------------------------------------

    def _touch(self, row: ExecutionRow) -> None:
        """Call after every change of a row: re-index it under a new version."""
        v = self._version.get(row.id, 0) + 1
        self._version[row.id] = v
        due = None
        if row.status in (Status.PENDING, Status.WAITING):
            due = row.run_at
        elif row.status == Status.RUNNING:
            due = row.lease_expires_at
        if due is not None:
            heapq.heappush(self._timed, (due, next(self._seq), row.id, v))

    def _promote(self, now: datetime) -> None:
        timed = self._timed
        while timed and timed[0][0] <= now:
            due, _, rid, v = heapq.heappop(timed)
            if self._version.get(rid) != v:
                continue
            row = self._rows[rid]
            heap = self._ready.setdefault(row.queue, [])
            heapq.heappush(
                heap, (-row.priority, row.scheduled_at, row.created_at, row.seq, rid, v, due)
            )

    def _row(self, execution_id: str) -> ExecutionRow:
        row = self._rows.get(execution_id)
        if row is None:
            raise ExecutionNotFound(f"no execution with id {execution_id!r}")
        return row

    def _fenced(self, execution_id: str, token: int, write_id: str | None = None) -> ExecutionRow:
        row = self._row(execution_id)
        # Done already only while the claim is still ours (see SQLStore._fence_row).
        if write_id is not None and row.last_write == write_id and row.token == token:
            raise AlreadyDone(_clone_row(row))
        if row.token != token or row.status != Status.RUNNING:
            raise LeaseLost(
                f"execution {execution_id} is no longer claimed by this worker "
                f"(token {token}, current token {row.token}, status {row.status})"
            )
        return row

    def _write(self, execution_id: str, token: int, write_id: str | None) -> ExecutionRow | None:
        """Under the lock, for a fenced transition: the claimed row, marked with this
        write's id; None when the id is on the row already (an earlier try committed)."""
        write_id = write_id or uuid.uuid4().hex
        try:
            row = self._fenced(execution_id, token, write_id)
        except AlreadyDone:
            return None
        row.last_write = write_id
        return row

    # -- reads ---------------------------------------------------------------------------

    def create(self, row: ExecutionRow) -> tuple[ExecutionRow, bool]:
        with self._lock:
            key = row.idempotency_key
            if key is not None and key in self._keys:
                return copy.deepcopy(self._rows[self._keys[key]]), False
            if row.id in self._rows:
                raise InvalidState(f"an execution with id {row.id!r} already exists")
            stored = copy.deepcopy(row)
            stored.seq = next(self._seq)
            self._rows[row.id] = stored
            self._steps[row.id] = []
            if key is not None:
                self._keys[key] = row.id
            self._touch(stored)
            return copy.deepcopy(stored), True

    def get(self, execution_id: str) -> ExecutionRow | None:
        with self._lock:
            row = self._rows.get(execution_id)
            return None if row is None else copy.deepcopy(row)

    def steps(self, execution_id: str) -> list[StepExecution]:
        with self._lock:
            stored = list(self._steps.get(execution_id, []))
            for u in self._units_of(execution_id):  # their attempts among its own
                stored += self._steps[u.id]
            stored.sort(key=lambda pair: pair[0])
            return copy.deepcopy([record for _, record in stored])

    def own_steps(self, execution_id: str) -> list[StepExecution]:
        with self._lock:
            return copy.deepcopy([record for _, record in self._steps.get(execution_id, [])])

    def get_by_key(self, idempotency_key: str) -> ExecutionRow | None:
        with self._lock:
            for row in self._rows.values():
                if row.idempotency_key == idempotency_key and row.unit is None:
                    return _clone_row(row)
        return None

    def _units_of(self, execution_id: str) -> list[ExecutionRow]:
        ids = self._children.get(execution_id, ())
        return [self._rows[i] for i in ids if i in self._rows]

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
        with self._lock:
            out = [
                r
                for r in self._rows.values()
                if r.unit is None
                and (before is None or (r.created_at, r.seq) < before)
                and (parent is None or r.parent_id == parent)
                and (workflows is None or r.workflow in workflows)
                and (statuses is None or r.public_status in statuses)
                and (queues is None or r.queue in queues)
            ]
            out.sort(key=lambda r: (r.created_at, r.seq), reverse=True)
            return copy.deepcopy(out[:limit])

    def next_due(
        self, *, queues: Sequence[str] | None, workflows: Sequence[str] | None
    ) -> datetime | None:
        with self._lock:
            best: datetime | None = None
            for r in self._rows.values():
                if (queues is not None and r.queue not in queues) or (
                    workflows is not None and r.workflow not in workflows
                ):
                    continue
                due = (
                    r.run_at
                    if r.status in (Status.PENDING, Status.WAITING)
                    else r.lease_expires_at
                    if r.status == Status.RUNNING
                    else None
                )
                if due is not None and (best is None or due < best):
                    best = due
            return best

    # -- claims --------------------------------------------------------------------------

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
        wanted = set(workflows)
        claimed: list[ExecutionRow] = []
        with self._lock:
            self._promote(now)
            queues = list(self._ready) if queues is None else queues
            set_aside: list[tuple[str, _Ready]] = []
            while len(claimed) < limit:
                best_q = None
                for q in queues:
                    heap = self._ready.get(q)
                    while heap and self._version.get(heap[0][4]) != heap[0][5]:
                        heapq.heappop(heap)
                    if heap and (best_q is None or heap[0] < self._ready[best_q][0]):
                        best_q = q
                if best_q is None:
                    break
                entry = heapq.heappop(self._ready[best_q])
                row = self._rows[entry[4]]
                if entry[6] > now:  # promoted by a claim with a later `now` (another clock)
                    heapq.heappush(self._timed, (entry[6], next(self._seq), row.id, entry[5]))
                    continue
                if row.workflow not in wanted:
                    set_aside.append((best_q, entry))
                    continue
                due = row.lease_expires_at if row.status == Status.RUNNING else row.run_at
                row.status = Status.RUNNING
                row.token += 1
                row.worker_id = worker_id
                row.lease_expires_at = now + timedelta(milliseconds=lease_ms)
                row.run_at = None
                if row.started_at is None:
                    row.started_at = now
                if row.deadline is None and row.timeout_ms is not None:
                    row.deadline = now + timedelta(milliseconds=row.timeout_ms)
                began = row.attempt_started_at is None
                if began:
                    if not row.suspended:
                        row.attempt += 1
                    row.attempt_started_at = now
                self._touch(row)
                out = _clone_row(row)
                out.began = began
                out.due_at = due
                claimed.append(out)
            for q, entry in set_aside:
                heapq.heappush(self._ready[q], entry)
        return claimed

    def heartbeat(
        self, claims: Sequence[tuple[str, int]], *, now: datetime, lease_ms: int
    ) -> list[str]:
        lost = []
        with self._lock:
            for eid, token in claims:
                row = self._rows.get(eid)
                if row is None or row.token != token or row.status != Status.RUNNING:
                    lost.append(eid)
                    continue
                row.lease_expires_at = now + timedelta(milliseconds=lease_ms)
                self._touch(row)
        return lost

    def note_plan(
        self, workflow: str, plan: str, *, process: str, worker: bool, now: datetime
    ) -> None:
        with self._lock:
            key = (workflow, plan, process)
            seen = self._plans.get(key)
            self._plans[key] = (
                (worker, now) if seen is None else (seen[0] or worker, max(seen[1], now))
            )
            stale = now - timedelta(days=1)  # (as the SQL stores: a day unheard of)
            for gone in [
                k for k, (_, at) in self._plans.items() if k[0] == workflow and at < stale
            ]:
                del self._plans[gone]

    def plan_seen(
        self, workflow: str, plan: str, *, besides: str
    ) -> tuple[datetime | None, datetime | None]:
        with self._lock:
            seen = [
                (worker, at)
                for (w, p, process), (worker, at) in self._plans.items()
                if (w, p) == (workflow, plan) and process != besides
            ]
        return (
            max((at for worker, at in seen if worker), default=None),
            max((at for _, at in seen), default=None),
        )

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
        with self._lock:
            row = self._write(execution_id, token, write_id)
            if row is None:
                return
            if not attempt_ran and row.attempt_started_at is not None:
                if not row.suspended:
                    row.attempt -= 1
                row.attempt_started_at = None
            row.status = Status.PENDING
            row.run_at = now if run_at is None else run_at
            row.lease_expires_at = None
            row.worker_id = None
            self._touch(row)

    def _record(self, row: ExecutionRow, record: StepExecution | None) -> None:
        if record is not None:
            if record.error is not None or record.logs or record.result is not None:
                record = dataclasses.replace(
                    record,
                    error=clone(record.error),
                    logs=clone(record.logs),
                    result=clone(record.result),
                )
            self._steps[row.id].append((next(self._seq), record))

    def _end(self, row: ExecutionRow, status: Status, now: datetime) -> None:
        # a parked unit (never let in) holds no place a parked one could take
        held_place = not (row.status == Status.PENDING and row.run_at is None)
        row.suspended = False
        row.status = status
        row.completed_at = now
        row.run_at = None
        row.lease_expires_at = None
        row.worker_id = None
        row.attempt_started_at = None
        if row.unit is not None:
            self._unit_ended(row, now, held_place=held_place)
            return
        if row.parent_id is not None:
            self._child_ended(row, now)
        schedule = (row.origin or {}).get("schedule")
        if schedule is not None:
            self._release_buffered(schedule, row.id, now)
        for callback in list(self._ended):
            callback(row.id)  # (under the lock: the change is visible to whoever looks)

    def _cancel_unit(self, unit: ExecutionRow, now: datetime, reason: str | None) -> None:
        """Cancel an unfinished unit: one running under a live lease at its next
        checkpoint, any other at once (its group is not counted down: it is ending too)."""
        if unit.status in FINISHED:
            return
        unit.cancel_requested, unit.cancel_reason = True, reason
        live = unit.lease_expires_at is not None and unit.lease_expires_at > now
        if not (unit.status == Status.RUNNING and live):
            unit.status, unit.completed_at, unit.run_at = Status.CANCELLED, now, None
            unit.suspended, unit.attempt_started_at = False, None
        self._touch(unit)

    def _child_ended(self, child: ExecutionRow, now: datetime) -> None:
        """Resolve the wait of the parent (or of its unit) that called ``child``."""
        parent = self._rows.get(child.parent_id or "")
        if parent is None:
            return
        units = sorted(self._units_of(parent.id), key=lambda u: u.unit_index)
        for r in [parent, *units]:
            # (the first by step run and position, as the SQL stores pick it)
            for (step, visit, _), w in sorted(self._waits.get(r.id, {}).items()):
                if w["kind"] == "child" and w["names"] == [child.id] and w["status"] == "pending":
                    w["status"], w["resolved_at"] = "resolved", now
                    w["result"] = {
                        "id": child.id,
                        "status": child.status.value,
                        "context": clone(child.context),
                        "error": clone(child.error),
                    }
                    # (woken only if suspended in that step run, as the SQL stores do)
                    in_run = r.status == Status.WAITING and (r.step_name, r.visit) == (step, visit)
                    if in_run and self._suspended_on(r) is None:
                        self._wake(r, now)
                    return

    def _unit_ended(self, unit: ExecutionRow, now: datetime, *, held_place: bool) -> None:
        """The fan-in, in the transition that ended ``unit`` (see Store.fork); a unit that
        ``held_place`` (was let in) lets the next parked one in."""
        parent = self._rows.get(unit.parent_id or "")
        if (
            parent is not None
            and parent.phase == StepPhase.COMPENSATE
            and parent.status == Status.PENDING
            and parent.run_at is not None
            and parent.run_at > now
        ):  # (its compensations may be waiting for the group's last running units)
            parent.run_at = now
            self._touch(parent)
        if (
            parent is None
            or parent.status != Status.WAITING
            or (parent.step_name, parent.visit) != (unit.group_step, unit.group_visit)
        ):
            return
        parent.open_units -= 1
        key = (parent.id, unit.group_step or "", unit.group_visit)
        group = self._groups.get(key, [])
        stop = unit.stops_group and unit.status != Status.COMPLETED
        if parent.open_units <= 0 or stop:
            if stop:
                why = f"{unit.unit} failed and its group fails fast"
                for uid in group:
                    self._cancel_unit(self._rows[uid], now, why)
            self._wake(parent, now)
            return
        if not held_place:
            return
        i = self._parked_from.get(key, 0)
        while i < len(group):  # the lowest parked unit is let in
            nxt = self._rows[group[i]]
            i += 1
            if nxt.status == Status.PENDING and nxt.run_at is None:
                nxt.run_at = now
                self._touch(nxt)
                break
        self._parked_from[key] = i

    def _cancel_at_checkpoint(
        self, row: ExecutionRow, record: StepExecution | None, now: datetime
    ) -> Status:
        if record is not None:
            record = as_cancelled(record, now)
        if row.phase == StepPhase.COMPENSATE:  # the cancel starts its compensations
            self._to_compensate(row, now, cancel_error(row.cancel_reason), record)
            return Status.COMPENSATING
        self._record(row, record)
        self._end(row, Status.CANCELLED, now)
        self._touch(row)
        return Status.CANCELLED

    def _to_compensate(
        self,
        row: ExecutionRow,
        now: datetime,
        error: dict[str, Any],
        record: StepExecution | None,
    ) -> None:
        """Under the lock: the execution enters its compensate phase (Store.compensate)."""
        self._record(row, record)
        row.phase = StepPhase.COMPENSATE
        row.status, row.run_at = Status.PENDING, now
        row.lease_expires_at = row.worker_id = row.attempt_started_at = None
        row.attempt, row.lost_attempts, row.max_attempts = 0, 0, 1
        row.suspended = row.cancel_requested = False
        row.open_units = 0
        row.error = clone(error)
        self._touch(row)
        # Its flow is over: units still open stop too (the compensations wait for those
        # running to end).
        why = f"its execution is compensating ({error.get('type')})"
        for unit in self._units_of(row.id):
            self._cancel_unit(unit, now, why)

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
        with self._lock:
            row = self._row(execution_id)
            retryable = (Status.FAILED, Status.CANCELLED, Status.COMPENSATED)
            if row.unit is not None or row.status not in retryable:
                raise not_retryable_error(row)
            row.status, row.phase, row.run_at = Status.PENDING, StepPhase.RUN, now
            row.completed_at = row.error = row.result = row.cancel_reason = None
            row.cancel_requested = row.suspended = False
            row.lease_expires_at = row.worker_id = row.attempt_started_at = None
            row.attempt, row.lost_attempts, row.open_units = 0, 0, 0
            row.deadline = None
            row.max_attempts = max_attempts
            row.step_index, row.step_name = step_index, step_name
            row.visit, row.visits = visit, dict(visits)
            row.context = clone(context)
            if origin is not None:
                row.origin = clone(origin)
            self._touch(row)
            return _clone_row(row)

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
        with self._lock:
            row = self._write(execution_id, token, write_id)
            if row is None:
                return self._rows[execution_id].status
            self._to_compensate(row, now, error, record)
            return Status.PENDING

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
        with self._lock:
            row = self._write(execution_id, token, write_id)
            if row is None:
                return self._rows[execution_id].status
            if row.cancel_requested:
                return self._cancel_at_checkpoint(row, record, now)
            self._record(row, record)
            row.context = clone(context)
            row.suspended = False
            if next_step is None:
                row.result = clone(result)
                row.error = None
                self._end(row, Status.COMPLETED, now)
            else:
                row.step_index, row.step_name = next_step
                if visits is not None:
                    row.visits = dict(visits)
                row.visit = row.visits.get(row.step_name, 1) if visits is not None else 1
                row.attempt = 1 if start_next else 0
                row.attempt_started_at = now if start_next else None
                row.lost_attempts = 0
                row.max_attempts = next_max_attempts
            self._touch(row)
            return row.status

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
        with self._lock:
            row = self._write(execution_id, token, write_id)
            if row is None:
                return self._rows[execution_id].status
            if row.cancel_requested:
                return self._cancel_at_checkpoint(row, record, now)
            self._record(row, record)
            row.attempt_started_at = None
            row.suspended = False
            if retry_at is not None:
                row.status = Status.PENDING
                row.run_at = retry_at
                row.lease_expires_at = None
                row.worker_id = None
                row.max_attempts = record.max_attempts
            else:
                row.error = error
                self._end(row, Status.FAILED, now)
            self._touch(row)
            return row.status

    tells_ends = True

    def subscribe_ended(self, callback: Callable[[str | None], None]) -> None:
        with self._lock:
            self._ended.append(callback)

    tells_cancels = True

    def subscribe_cancels(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._cancel_listeners.append(callback)

    def unsubscribe_ended(self, callback: Callable[[str | None], None]) -> None:
        with self._lock:
            if callback in self._ended:
                self._ended.remove(callback)

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
        with self._lock:
            row = self._write(execution_id, token, write_id)
            if row is None:
                return self._rows[execution_id].status
            if row.cancel_requested:
                return self._cancel_at_checkpoint(row, None, now)
            children = self._children.setdefault(row.id, [])
            group = self._groups.setdefault((row.id, step, visit), [])
            for u in units:
                uid = unit_id(row.id, step, visit, u.index)
                if uid in self._rows:
                    continue
                unit = ExecutionRow(
                    id=uid,
                    workflow=row.workflow,
                    status=Status.PENDING,
                    queue=row.queue,
                    priority=row.priority,
                    input=None,
                    context=clone(u.context) if u.context is not None else {},
                    created_at=now,
                    scheduled_at=row.scheduled_at,
                    run_at=now if concurrency is None or u.index < concurrency else None,
                    deadline=row.deadline,
                    step_name=u.name,
                    max_attempts=u.max_attempts,
                    parent_id=row.id,
                    unit=u.name,
                    group_step=step,
                    group_visit=visit,
                    unit_index=u.index,
                    visit=visit,  # (a unit runs as its group run's visit)
                    stops_group=stops_group,
                    item=clone(u.item),
                    headers=dict(row.headers),
                )
                unit.seq = next(self._seq)
                self._rows[uid] = unit
                self._steps[uid] = []
                children.append(uid)
                group.append(uid)
                self._touch(unit)
            row.open_units = len(units)
            row.attempt_started_at = None
            row.lease_expires_at = None
            row.worker_id = None
            row.suspended = True
            row.lost_attempts = 0
            if units:
                row.status, row.run_at = Status.WAITING, row.deadline
            else:
                row.status, row.run_at = Status.PENDING, now
            self._touch(row)
            return row.status

    def units(self, execution_id: str, step: str, visit: int) -> list[ExecutionRow]:
        with self._lock:
            group = self._groups.get((execution_id, step, visit), [])
            return [_clone_row(self._rows[uid]) for uid in group if uid in self._rows]

    def unit_outcomes(
        self,
        execution_id: str,
        step: str,
        visit: int,
        *,
        after: int = -1,
        limit: int | None = None,
    ) -> list[UnitOutcome]:
        with self._lock:
            group = self._groups.get((execution_id, step, visit), [])
            # (a group's ids are kept in index order: the page starts after `after`)
            start = bisect.bisect_right(group, after, key=lambda uid: self._rows[uid].unit_index)
            page = group[start:] if limit is None else group[start : start + limit]
            return [
                UnitOutcome(
                    u.unit_index,
                    u.unit or "",
                    u.status,
                    u.created_at,
                    u.completed_at,
                    clone(u.result),
                    clone(u.error),
                )
                for u in (self._rows[uid] for uid in page)
            ]

    def restart_attempt(
        self,
        execution_id: str,
        token: int,
        *,
        now: datetime,
        record: StepExecution,
        write_id: str | None = None,
    ) -> None:
        with self._lock:
            row = self._write(execution_id, token, write_id)
            if row is None:
                return
            self._record(row, record)
            row.lost_attempts += 1
            row.attempt_started_at = now
            self._touch(row)

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
        if status not in FINISHED:
            raise ValueError(f"finish() needs a final status, got {status}")
        with self._lock:
            row = self._write(execution_id, token, write_id)
            if row is None:
                return
            self._record(row, record)
            row.error = error
            self._end(row, status, now)
            self._touch(row)

    # -- waits ---------------------------------------------------------------------------

    def _wait_view(self, w: dict[str, Any]) -> Wait:
        return Wait(
            execution_id=w["execution_id"],
            workflow=self._rows[w["execution_id"]].workflow,
            step=w["step"],
            seq=w["seq"],
            visit=w["visit"],
            kind=w["kind"],
            names=tuple(w["names"]),
            mode=w["mode"],
            until=w["until"],
            status=w["status"],
            created_at=w["created_at"],
            prompt=w["prompt"],
            schema=clone(w["schema"]),
            result=clone(w["result"]),
            resolved_at=w["resolved_at"],
        )

    def _inbox_of(self, execution_id: str) -> str:
        """Whose events a row's waits take: a unit takes its execution's."""
        row = self._rows.get(execution_id)
        return row.parent_id if row is not None and row.unit is not None else execution_id  # type: ignore[return-value]

    def _decide(self, w: dict[str, Any], now: datetime) -> None:
        if w["status"] != "pending":
            return
        owner = self._inbox_of(w["execution_id"])
        inbox = self._inbox.get(owner, [])
        d = decide_wait(w["kind"], w["mode"], w["names"], w["until"], now, inbox)
        if d.status == "pending":
            return
        w["status"], w["result"], w["resolved_at"] = d.status, clone(d.result), now
        if d.consumed:
            self._inbox[owner] = [e for e in inbox if e[0] not in d.consumed]

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
        with self._lock:
            self._fenced(execution_id, token)
            mine = self._waits.setdefault(execution_id, {})
            w = mine.get((step, visit, seq))
            renew = w is not None and (
                (w["kind"], tuple(w["names"]), w["mode"]) != (spec.kind, spec.names, spec.mode)
                or (w["status"] == "timed_out" and w["attempt"] != attempt)
            )
            if w is None or renew:
                w = mine[(step, visit, seq)] = {
                    "execution_id": execution_id,
                    "step": step,
                    "visit": visit,
                    "seq": seq,
                    "attempt": attempt,
                    "kind": spec.kind,
                    "names": list(spec.names),
                    "mode": spec.mode,
                    "until": spec.deadline(now),
                    "status": "pending",
                    "created_at": now,
                    "prompt": spec.prompt,
                    "schema": clone(spec.schema),
                    "result": None,
                    "resolved_at": None,
                }
            self._decide(w, now)
            return self._wait_view(w)

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
        with self._lock:
            row = self._write(execution_id, token, write_id)
            if row is None:
                return self._rows[execution_id].status
            if row.cancel_requested:
                return self._cancel_at_checkpoint(row, record, now)
            self._record(row, record)
            w = self._waits[execution_id][(step, visit, seq)]
            self._decide(w, now)
            row.attempt_started_at = None
            row.lease_expires_at = None
            row.worker_id = None
            row.suspended = True
            row.lost_attempts = 0  # the run got to a wait: progress, so losses start again
            if w["status"] != "pending":
                row.status, row.run_at = Status.PENDING, now
            else:
                wake = [t for t in (w["until"], row.deadline) if t is not None]
                row.status, row.run_at = Status.WAITING, min(wake) if wake else None
            self._touch(row)
            return row.status

    def _live(self, execution_id: str) -> ExecutionRow:
        row = self._row(execution_id)
        if row.status in FINISHED:
            raise not_live_error(execution_id, row.status)
        return row

    def _wake(self, row: ExecutionRow, now: datetime) -> bool:
        if row.status != Status.WAITING:
            return False
        row.status, row.run_at = Status.PENDING, now
        self._touch(row)
        return True

    def send_event(self, execution_id: str, name: str, payload: Any, *, now: datetime) -> bool:
        with self._lock:
            row = self._live(execution_id)
            self._inbox.setdefault(execution_id, []).append(
                (next(self._seq), name, clone(payload), now)
            )
            woke = False
            # The execution and its waiting units, each on the wait it is suspended on,
            # oldest wait first: an event goes to the first that takes it.
            suspended = [
                (w, r)
                for r in [row, *self._units_of(row.id)]
                if r.status == Status.WAITING
                for w in [self._suspended_on(r)]
                if w is not None
            ]
            suspended.sort(key=lambda pair: (pair[0]["created_at"], pair[1].seq))
            for w, r in suspended:
                self._decide(w, now)
                if w["status"] != "pending":
                    woke = self._wake(r, now) or woke
            return woke

    def _suspended_on(self, row: ExecutionRow) -> dict[str, Any] | None:
        """The wait the execution is suspended on: the newest pending one of its current
        step run."""
        pending = [
            w
            for (step, visit, _), w in self._waits.get(row.id, {}).items()
            if step == row.step_name and visit == row.visit and w["status"] == "pending"
        ]
        return max(pending, key=lambda w: w["seq"]) if pending else None

    def provide_input(
        self,
        execution_id: str,
        name: str,
        data: Any,
        *,
        now: datetime,
        validate: Callable[[dict[str, Any] | None], Any] | None = None,
    ) -> None:
        with self._lock:
            row = self._live(execution_id)
            # The execution, or one of its units, suspended on an input of that name.
            asking = [
                (r, w)
                for r in [row, *(u for u in self._units_of(row.id) if u.status == Status.WAITING)]
                for w in [self._suspended_on(r)]
                if w is not None and w["kind"] == "input"
            ]
            asked = [n for _, w in asking for n in w["names"]]
            chosen = next(((r, w) for r, w in asking if name in w["names"]), None)
            if chosen is None:
                raise not_pending_error(execution_id, name, asked)
            row, w = chosen
            if w["until"] is not None and w["until"] < now:
                raise input_too_late(execution_id, name, w["until"])
            if validate is not None:
                data = validate(clone(w["schema"]))
            w["status"], w["result"], w["resolved_at"] = "resolved", clone(data), now
            self._wake(row, now)

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
        with self._lock:
            if execution_id is None:
                groups = list(self._waits.items())
            elif execution_id in self._rows:
                groups = [
                    (eid, self._waits.get(eid, {}))
                    for eid in [execution_id, *(u.id for u in self._units_of(execution_id))]
                ]
            else:
                groups = []
            out = [
                w
                for eid, mine in groups
                if (workflow is None or self._rows[eid].workflow == workflow)
                and (not pending_only or self._rows[eid].status not in FINISHED)
                for w in mine.values()
                if (kind is None or w["kind"] == kind)
                and (not pending_only or w["status"] == "pending")
                and (open_at is None or w["until"] is None or w["until"] >= open_at)
            ]
            out.sort(
                key=lambda w: (w["created_at"], w["execution_id"], w["step"], w["visit"], w["seq"])
            )
            return [self._wait_view(w) for w in out[:limit]]

    def purge(
        self, *, finished_before: datetime, workflows: Sequence[str] | None, limit: int
    ) -> list[str]:
        with self._lock:
            done = sorted(
                (
                    r
                    for r in self._rows.values()
                    if r.status in FINISHED
                    and r.unit is None
                    and r.completed_at is not None
                    and r.completed_at < finished_before
                    and (workflows is None or r.workflow in workflows)
                ),
                key=lambda r: (r.completed_at, r.seq),
            )[:limit]
            for r in done:
                for u in self._units_of(r.id):
                    del self._rows[u.id]
                    self._steps.pop(u.id, None)
                    self._version.pop(u.id, None)
                    self._waits.pop(u.id, None)
                self._children.pop(r.id, None)
                for key in [k for k in self._groups if k[0] == r.id]:
                    del self._groups[key]
                    self._parked_from.pop(key, None)
                del self._rows[r.id]
                self._steps.pop(r.id, None)
                self._version.pop(r.id, None)
                self._inbox.pop(r.id, None)
                if r.idempotency_key is not None:
                    self._keys.pop(r.idempotency_key, None)
                self._waits.pop(r.id, None)
            return [r.id for r in done]

    def request_cancel(
        self,
        execution_id: str,
        *,
        now: datetime,
        reason: str | None,
        compensates: Callable[[str], bool] = lambda workflow: False,
    ) -> ExecutionRow:
        row = self._request_cancel(execution_id, now, reason, compensates)
        with self._lock:
            listeners = list(self._cancel_listeners)
        for callback in listeners:  # (outside the lock: a worker looks at what it runs)
            callback()
        return row

    def _request_cancel(
        self,
        execution_id: str,
        now: datetime,
        reason: str | None,
        compensates: Callable[[str], bool],
    ) -> ExecutionRow:
        with self._lock:
            row = self._row(execution_id)
            if row.status in FINISHED:
                raise finished_error(execution_id, row.status)
            if row.phase == StepPhase.COMPENSATE:
                raise compensating_error(execution_id)
            row.cancel_reason = reason
            lease_live = row.lease_expires_at is not None and row.lease_expires_at > now
            compensate = row.unit is None and compensates(row.workflow)
            if row.status == Status.RUNNING and lease_live:
                row.cancel_requested = True
                if compensate:
                    row.phase = StepPhase.COMPENSATE  # the mark its next checkpoint meets
            elif compensate:
                self._to_compensate(row, now, cancel_error(reason), None)
            else:
                row.cancel_requested = True
                self._end(row, Status.CANCELLED, now)
            self._touch(row)
            for unit in self._units_of(row.id):
                self._cancel_unit(unit, now, reason)
            for child in [r for r in self._rows.values() if r.parent_id == row.id]:
                # (one already running its compensations is ending: left to them)
                live = child.status not in FINISHED and child.phase == StepPhase.RUN
                if child.unit is None and live:
                    self._request_cancel(child.id, now, reason, compensates)
            return copy.deepcopy(row)

    # -- schedules -------------------------------------------------------------------------

    def put_schedule(
        self, schedule: Schedule, *, now: datetime, expected: datetime | None = None
    ) -> Schedule | None:
        with self._lock:
            old = self._schedules.get(schedule.name)
            if old is not None:
                moved = (old.cron, old.timezone) != (schedule.cron, schedule.timezone)
                if moved and old.next_tick != expected:
                    return None
                schedule = dataclasses.replace(
                    schedule,
                    next_tick=schedule.next_tick if moved else old.next_tick,
                    paused=old.paused,
                    created_at=old.created_at,
                    last_tick=old.last_tick,
                    last_execution_id=old.last_execution_id,
                    buffered_id=old.buffered_id,
                    missed=old.missed,
                )
            schedule = dataclasses.replace(schedule, input=clone(schedule.input), updated_at=now)
            self._schedules[schedule.name] = schedule
            return dataclasses.replace(schedule, input=clone(schedule.input))

    def get_schedule(self, name: str) -> Schedule | None:
        with self._lock:
            found = self._schedules.get(name)
            return None if found is None else dataclasses.replace(found, input=clone(found.input))

    def list_schedules(self) -> list[Schedule]:
        with self._lock:
            return [
                dataclasses.replace(s, input=clone(s.input))
                for _, s in sorted(self._schedules.items())
            ]

    def delete_schedule(
        self, name: str, *, now: datetime, compensates: Callable[[str], bool] = lambda w: False
    ) -> bool:
        with self._lock:
            found = self._schedules.pop(name, None)
            if found is None:
                return False
            buffered = self._rows.get(found.buffered_id or "")
            if buffered is not None and buffered.status == Status.PENDING:
                self._request_cancel(buffered.id, now, "its schedule was removed", compensates)
            return True

    def pause_schedule(
        self, name: str, *, paused: bool, next_tick: datetime, now: datetime
    ) -> Schedule | None:
        with self._lock:
            found = self._schedules.get(name)
            if found is None or not (paused or found.paused):
                return None
            found = dataclasses.replace(
                found,
                paused=paused,
                next_tick=found.next_tick if paused else next_tick,
                updated_at=now,
            )
            self._schedules[name] = found
            return dataclasses.replace(found, input=clone(found.input))

    def next_tick(self, *, workflows: Sequence[str] | None) -> datetime | None:
        with self._lock:
            return min(
                (
                    s.next_tick
                    for s in self._schedules.values()
                    if not s.paused and (workflows is None or s.workflow in workflows)
                ),
                default=None,
            )

    def due_schedules(
        self, *, now: datetime, workflows: Sequence[str], limit: int
    ) -> list[Schedule]:
        with self._lock:
            due = [
                s
                for s in self._schedules.values()
                if not s.paused and s.next_tick <= now and s.workflow in workflows
            ]
            due.sort(key=lambda s: (s.next_tick, s.name))
            return [dataclasses.replace(s, input=clone(s.input)) for s in due[:limit]]

    def fire_schedules(
        self,
        fires: Sequence[Fire],
        *,
        now: datetime,
        compensates: Callable[[str], bool] = lambda w: False,
    ) -> list[str]:
        made: list[str] = []
        with self._lock:
            for fire in sorted(fires, key=lambda f: f.name):
                s = self._schedules.get(fire.name)
                if s is None or s.paused or s.next_tick != fire.expected:
                    continue  # (fired by another worker, paused or removed meanwhile)
                s = dataclasses.replace(
                    s, next_tick=fire.next_tick, missed=s.missed + fire.missed, updated_at=now
                )
                for row in fire.rows:
                    latest = self._rows.get(s.last_execution_id or "")
                    running = latest is not None and latest.status not in FINISHED
                    running = running and fire.overlap != Overlap.ALLOW  # (as read)
                    verdict = overlap_verdict(s.overlap, running, s.buffered_id is not None)
                    if verdict == "let_go":
                        s = dataclasses.replace(s, missed=s.missed + 1)
                        continue
                    if verdict == "cancel_then_make" and latest is not None:
                        why = f"schedule {s.name!r} started the next tick's execution"
                        if latest.phase == StepPhase.RUN:  # (one compensating is ending)
                            self._request_cancel(latest.id, now, why, compensates)
                    parked = verdict == "park"
                    stored = _clone_row(row)
                    stored.seq = next(self._seq)
                    if parked:
                        stored.run_at = None
                    self._rows[stored.id] = stored
                    self._steps[stored.id] = []
                    self._touch(stored)
                    made.append(stored.id)
                    if parked:
                        s = dataclasses.replace(
                            s, buffered_id=stored.id, last_tick=row.scheduled_at
                        )
                    else:
                        s = dataclasses.replace(
                            s, last_execution_id=stored.id, last_tick=row.scheduled_at
                        )
                self._schedules[s.name] = s
        return made

    def _release_buffered(self, name: str, ended: str, now: datetime) -> None:
        """Under the lock: ``ended`` was its schedule's latest execution; a buffered one
        is due now and becomes the latest."""
        s = self._schedules.get(name)
        if s is None or s.last_execution_id != ended or s.buffered_id is None:
            return
        buffered = self._rows.get(s.buffered_id)
        if buffered is not None and buffered.status == Status.PENDING and buffered.run_at is None:
            buffered.run_at = now
            self._touch(buffered)
        self._schedules[name] = dataclasses.replace(
            s, last_execution_id=s.buffered_id, buffered_id=None
        )


def _clone_row(row: ExecutionRow) -> ExecutionRow:
    out = copy.copy(row)
    out.input = clone(row.input)
    out.context = clone(row.context)
    out.error = clone(row.error)
    out.visits = dict(row.visits)
    out.item = clone(row.item)
    out.result = clone(row.result)
    out.origin = clone(row.origin)
    out.shape = clone(row.shape)
    out.headers = dict(row.headers)
    return out


def open_memory_url(url: str) -> MemoryStore:
    """The store for a ``memory://`` URL: a new one, or the one shared under its name."""
    parts = urlsplit(url)
    name = (parts.netloc + parts.path).strip("/")
    if parts.query:
        raise ConfigError(f"memory:// takes no options, got {url!r}")
    if not name:
        return MemoryStore()
    with _named_lock:
        store = _named.get(name)
        if store is None:
            store = _named[name] = MemoryStore()
        return store


def forget(name: str) -> None:
    """Drop the shared store ``memory://name`` (its data goes; the next open starts empty)."""
    with _named_lock:
        _named.pop(name.strip("/"), None)
