"""The SQL store: each transition is one transaction of named, parameterised SQL.

The statements live as data, one file per dialect (``queries/sqlite.sql``,
``queries/postgres.sql``, read by ``loader``); connections are in
``connections``, rows in ``rows``, and this
module holds the transitions the dialects share. Hot transitions (start, claim, step
completion, retry) are a single statement on PostgreSQL (data-modifying CTEs in
autocommit), so each costs one round trip. Every time comparison uses the ``now`` the
engine passes in, never the database's clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from durable._text import scrub
from durable.durations import MAX_DURATION_MS
from durable.errors import ExecutionNotFound, InvalidState, LeaseLost, StoreError
from durable.models import (
    FINISHED,
    CatchUp,
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
    unit_state,
    unreadable_error,
)
from durable.stores.sql import migrations, rows
from durable.stores.sql.connections import Connections, log
from durable.stores.sql.rows import dumps
from durable.stores.sql.schema import GROUP_SHARDS, SCHEMA_VERSION

__all__ = ["SQLStore"]


#: how often a let-in owed after a commit looks again for the lowest parked unit when the
#: one it found was let in by another end meanwhile
_LET_IN_TRIES = 1000

#: units inserted per statement at a fork
_FORK_BATCH = 1000


def _shard_counts(units: int) -> list[list[int]]:
    """A group of ``units`` units counted over its rows: [shard, units in it] for each
    shard with a unit (unit i counts in shard i % GROUP_SHARDS)."""
    return [
        [shard, (units - shard + GROUP_SHARDS - 1) // GROUP_SHARDS]
        for shard in range(min(units, GROUP_SHARDS))
    ]


# the cursor of the first page: after every row
_NO_CURSOR = (datetime(9999, 12, 31, tzinfo=UTC), 2**63 - 1)


class SQLStore(Connections, Store):
    """What the SQL stores share. Subclasses give the statements and the connections."""

    #: whether the hot single-row transitions need an explicit transaction. True (SQLite):
    #: a hot transition's block is the fenced update alone, followed by insert_attempt in
    #: the same transaction; False (PostgreSQL): its block is one statement that also
    #: stores the attempt record, a transaction by itself
    HOT_IN_TRANSACTION = True

    # -- rows ----------------------------------------------------------------------------

    def _row(self, r: Any) -> ExecutionRow:
        return rows.execution(r, self._dt)

    def _fenced_params(
        self,
        execution_id: str,
        token: int,
        now: datetime,
        write_id: str | None,
        record: StepExecution,
    ) -> dict[str, Any]:
        """The parameters of a fenced transition that stores an attempt record."""
        return {
            "id": execution_id,
            "token": token,
            "now": self._ts(now),
            "write_id": write_id or uuid.uuid4().hex,
            **self._attempt_params(execution_id, record),
        }

    def _attempt_params(self, execution_id: str, record: StepExecution) -> dict[str, Any]:
        return rows.attempt_params(execution_id, record, self._ts)

    # -- schema --------------------------------------------------------------------------

    def migrate(self, now: datetime) -> list[int]:
        """Create or upgrade the schema; returns the versions applied."""
        try:
            return migrations.upgrade(self.sa_engine(), now=now)
        except sa.exc.DBAPIError as exc:
            raise StoreError(
                scrub(f"{self!r}: migrating failed: {exc.orig!r}", self._secrets)
            ) from exc

    def check_schema(self) -> None:
        """Refuse a database whose schema is not the version this code was written for."""

        def version() -> int:
            if not self._one("has_migrations", {})["present"]:
                return 0
            return int(self._one("schema_version", {})["version"])

        have = self._retry_once(version)
        if have < SCHEMA_VERSION:
            raise StoreError(
                f"{self!r} holds schema version {have}; this durable needs {SCHEMA_VERSION}. "
                f"Run `durable --store URL migrate` or create the Engine with migrate=True."
            )
        if have > SCHEMA_VERSION:
            raise StoreError(
                f"{self!r} holds schema version {have}, newer than this durable knows "
                f"({SCHEMA_VERSION}): another process upgraded it. Upgrade durable-engine here."
            )

    def note_plan(
        self, workflow: str, plan: str, *, process: str, worker: bool, now: datetime
    ) -> None:
        params = {
            "workflow": workflow,
            "plan": plan,
            "process": process,
            "worker": worker,
            "now": self._ts(now),
            "stale": self._ts(now - timedelta(days=1)),
        }

        def note() -> None:
            with self._cursor(write=True) as cur:
                for sql in self.SQL.steps("plan_note"):
                    cur.execute(sql, params)

        self._retry_deadlock(note)

    def plan_seen(
        self, workflow: str, plan: str, *, besides: str
    ) -> tuple[datetime | None, datetime | None]:
        params = {"workflow": workflow, "plan": plan, "besides": besides}
        found = self._retry_once(lambda: self._one("plan_get", params))
        if found is None:
            return None, None
        return self._dt(found["by_worker"]), self._dt(found["by_any"])

    def server_time(self) -> datetime | None:
        if not self.SQL.steps("server_time"):
            return None
        return self._dt(self._retry_once(lambda: self._one("server_time", {}))["now"])

    # -- fencing -------------------------------------------------------------------------

    def _why(self, cur: Any, execution_id: str, token: int, write_id: str) -> bool:
        """After a fenced write matched nothing: raise AlreadyDone (an earlier try of this
        write committed), LeaseLost or ExecutionNotFound, or return True when the claim
        is fine but a cancel was requested."""
        return self._fence_row(cur, execution_id, token, write_id).cancel_requested

    def _cancel_at_checkpoint(
        self,
        cur: Any,
        execution_id: str,
        token: int,
        record: StepExecution | None,
        now: datetime,
        write_id: str,
    ) -> Status:
        """In an open write transaction: discard the attempt, end as cancelled (or, marked
        to compensate by the cancel, enter the compensate phase)."""
        row = self._fence_row(cur, execution_id, token)
        if row.phase == StepPhase.COMPENSATE:
            cancelled = None if record is None else as_cancelled(record, now)
            self._compensate(
                cur, execution_id, token, now, cancel_error(row.cancel_reason), cancelled, write_id
            )
            return Status.COMPENSATING
        cur.execute(
            self.SQL["end"],
            {
                "id": execution_id,
                "token": token,
                "status": "cancelled",
                "now": self._ts(now),
                "error": None,
                "write_id": write_id,
            },
        )
        if cur.fetchone() is None:
            self._why(cur, execution_id, token, write_id)  # raises: the claim was lost
            raise LeaseLost(f"execution {execution_id}: claim lost while cancelling")
        if record is not None:
            cur.execute(
                self.SQL["insert_attempt"],
                self._attempt_params(execution_id, as_cancelled(record, now)),
            )
        self._after_end(cur, execution_id, now)
        return Status.CANCELLED

    def _after_end(
        self, cur: Any, execution_id: str, now: datetime, *, held_place: bool = True
    ) -> bool:
        """In the transaction that ended ``execution_id``: a unit's fan-in, or a child's
        end reported to the wait that called it (see Store.fork, list_executions). A unit
        that ``held_place`` (was let in, not parked) lets the next parked one in. True
        when that made work for a worker."""
        cur.execute(self.SQL["ended_row"], {"id": execution_id})
        r = cur.fetchone()
        if r is None:
            return False
        woke = False
        if r["unit"] is None:  # an execution's end, which engine.wait() may wait for
            for sql in self.SQL.steps("notify_done"):
                cur.execute(sql, {"id": execution_id})
            if r["origin"] is not None and '"schedule"' in r["origin"]:
                woke = self._release_buffered(cur, execution_id, r["origin"], now)
        if r["parent_id"] is None:
            return woke
        ts = self._ts(now)
        if r["unit"] is not None:
            # (its execution's compensations may be waiting for the group's last units)
            cur.execute(self.SQL["wake_compensating"], {"id": r["parent_id"], "now": ts})
            stop = bool(r["stops_group"]) and r["status"] != Status.COMPLETED.value
            group = self._group_of(r, now)
            # The unit's row of the group's count goes down; only the end that empties a
            # row (or a stopping failure) touches the execution's.
            cur.execute(
                self.SQL["shard_count_down"], {**group, "shard": r["unit_index"] % GROUP_SHARDS}
            )
            left = cur.fetchone()
            emptied = left is not None and left["open_units"] <= 0
            if emptied or stop:
                cur.execute(
                    self.SQL["group_count_down"], {**group, "stop": stop, "emptied": int(emptied)}
                )
                counted = cur.fetchone()
                if counted is not None and counted["status"] == Status.PENDING.value:
                    if stop:
                        cur.execute(
                            self.SQL["cancel_units"],
                            {
                                "id": r["parent_id"],
                                "step": r["group_step"],
                                "visit": r["group_visit"],
                                "now": ts,
                                "reason": f"{r['unit']} failed and its group fails fast",
                            },
                        )
                    return True
            if held_place and not stop:
                # The next item is claimable now; the worker that ran this one looks for
                # work at once, so no other worker needs waking. A parked unit that
                # something else holds locked is let in after the commit (waiting here,
                # holding this unit's locks, could deadlock with another unit's end).
                cur.execute(self.SQL["group_activate"], group)
                parked = self.SQL.steps("group_parked")  # (none where nothing is skipped)
                if cur.fetchone() is None and parked:
                    cur.execute(parked[0], group)
                    if cur.fetchone() is not None:
                        self._owe_let_in(cur, group)
            return False
        return self._child_ended(cur, r, now)

    def _release_buffered(self, cur: Any, execution_id: str, origin: str, now: datetime) -> bool:
        """In the transaction that ended ``execution_id``, started by a schedule: when it
        was the schedule's latest, its buffered execution (overlap="buffer_one") becomes
        the latest and is due now. True when that made work."""
        try:
            name = rows.loads(origin).get("schedule")
        except rows.DECODING:
            return False
        if not isinstance(name, str):
            return False
        cur.execute(self.SQL["schedule_release"], {"name": name, "id": execution_id})
        found = cur.fetchone()
        if found is None or found["buffered_id"] is None:
            return False
        cur.execute(
            self.SQL["release_buffered"], {"id": found["buffered_id"], "now": self._ts(now)}
        )
        return cur.fetchone() is not None

    def _group_of(self, r: Any, now: datetime) -> dict[str, Any]:
        """The parameters naming the group run the unit in row ``r`` belongs to."""
        return {
            "parent": r["parent_id"],
            "step": r["group_step"],
            "visit": r["group_visit"],
            "now": self._ts(now),
        }

    def _owe_let_in(self, cur: Any, group: dict[str, Any]) -> None:
        """A unit's end owes its group a place: let a parked unit in once the end commits
        (see _committed), or at once when the end was a statement of its own."""
        if not self._writing():
            self._let_in(cur, group)
            return
        owed = getattr(self._local, "owed", None)
        if owed is None:
            owed = self._local.owed = []
        owed.append(group)

    def _committed(self, cur: Any) -> None:
        owed = getattr(self._local, "owed", None)
        if owed:
            self._local.owed = []
            for group in owed:
                self._let_in(cur, group)

    def _rolled_back(self) -> None:
        self._local.owed = []

    def _let_in(self, cur: Any, group: dict[str, Any]) -> None:
        """Let the group's lowest parked unit in, waiting for it if something else holds it
        locked for a moment: one unit at a time, each try its own statement, so that it
        never holds one unit's lock while waiting for another's. A failure here loses the
        group a place, not a unit: it is logged."""
        try:
            for _ in range(_LET_IN_TRIES):
                cur.execute(self.SQL["group_activate_wait"], group)
                if cur.fetchone() is not None:
                    return
                cur.execute(self.SQL["group_parked"], group)
                if cur.fetchone() is None:
                    return  # none left parked (or the execution left the group)
            raise StoreError(f"no parked unit could be let in after {_LET_IN_TRIES} tries")
        except Exception as exc:
            log.warning(
                "durable: could not let the next unit of %s in (%r); the group runs with "
                "one place fewer",
                group.get("parent"),
                exc,
            )

    def _child_ended(self, cur: Any, r: Any, now: datetime) -> bool:
        """In the transaction that ended the child ``r``: resolve the wait that called it
        and wake the row suspended on it. That row is locked before the wait is resolved,
        as a suspend locks it before it decides: so an end racing the suspend wakes it,
        whichever commits first. True when a row was woken."""
        ts = self._ts(now)
        names = dumps([r["id"]])
        cur.execute(self.SQL["child_wait"], {"parent": r["parent_id"], "names": names})
        w = cur.fetchone()
        if w is None:
            return False
        status, run = self._live_row(cur, w["execution_id"])
        ended = {
            "id": r["id"],
            "status": r["status"],
            "context": rows.loads(r["context"]),
            "error": rows.loads(r["error"]),
        }
        cur.execute(
            self.SQL["wait_set"],
            {"wid": w["seq"], "status": "resolved", "result": dumps(ended), "now": ts},
        )
        if status != Status.WAITING or run != (w["step"], w["visit"]):
            return False
        if self._suspended_on(cur, w["execution_id"], run):
            return False  # it waits for something else too
        cur.execute(self.SQL["wake"], {"id": w["execution_id"], "now": ts})
        return True

    # -- starting and reading ------------------------------------------------------------

    def create(self, row: ExecutionRow) -> tuple[ExecutionRow, bool]:
        params = self._create_params(row)
        retried = False

        def insert() -> Any:
            nonlocal retried
            try:
                return self._one("create", params)
            except StoreError:
                retried = True
                raise

        # The key's execution can be purged between the conflicting insert and the read
        # of it: then the key is free, and the insert is tried again.
        for _ in range(3):
            try:
                stored = self._retry_once(insert)
            except Exception as exc:
                if not self._is_integrity_error(exc):
                    raise
                mine = self.get(row.id) if retried else None
                if mine is not None and mine.created_at == row.created_at:
                    return mine, True  # the first try did commit before the connection died
                raise InvalidState(f"an execution with id {row.id!r} already exists") from exc
            if stored is not None:
                break
            existing = self._retry_once(lambda: self._one("by_key", {"key": row.idempotency_key}))
            if existing is not None:  # the idempotency key is taken: return that execution
                return self._row(existing), False
        else:
            raise StoreError(
                f"{self!r}: idempotency key {row.idempotency_key!r} "
                "conflicted but its execution cannot be read"
            )
        return self._row(stored), True

    def _create_params(self, row: ExecutionRow) -> dict[str, Any]:
        return {
            "id": row.id,
            "workflow": row.workflow,
            "status": row.status.value,
            "queue": row.queue,
            "priority": row.priority,
            "input": dumps(row.input),
            "context": dumps(row.context),
            "created_at": self._ts(row.created_at),
            "scheduled_at": self._ts(row.scheduled_at),
            "run_at": self._ts(row.run_at),
            "timeout_ms": row.timeout_ms,
            "idempotency_key": row.idempotency_key,
            "step_index": row.step_index,
            "step_name": row.step_name,
            "attempt": row.attempt,
            "token": row.token,
            "claimable_at": self._ts(row.run_at if row.status == Status.PENDING else None),
            "max_attempts": row.max_attempts,
            "parent_id": row.parent_id,
            "origin": None if row.origin is None else dumps(row.origin),
            "shape": None if row.shape is None else dumps(row.shape),
            "headers": dumps(row.headers) if row.headers else None,
            "parent_step": row.parent_step,
        }

    def get(self, execution_id: str) -> ExecutionRow | None:
        r = self._retry_once(lambda: self._one("get", {"id": execution_id}))
        return None if r is None else self._row(r)

    def steps(self, execution_id: str) -> list[StepExecution]:
        return [rows.step(r, self._dt) for r in self._all_rows("steps", {"id": execution_id})]

    def own_steps(self, execution_id: str) -> list[StepExecution]:
        found = self._all_rows("own_steps", {"id": execution_id})
        return [rows.step(r, self._dt) for r in found]

    def get_by_key(self, idempotency_key: str) -> ExecutionRow | None:
        r = self._retry_once(lambda: self._one("by_key", {"key": idempotency_key}))
        return None if r is None else self._row(r)

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
        at, seq = before or _NO_CURSOR  # (a row comparison the indexes serve, never NULL)
        params: dict[str, Any] = {
            "workflows": self._array(workflows),
            "queues": self._array(queues),
            "limit": limit,
            "parent": parent,
            "before_at": self._ts(at),
            "before_seq": seq,
        }
        # Executions running their compensations (status compensating) have an index of
        # their own: listed by a statement of their own, merged with any other statuses.
        if statuses is not None and Status.COMPENSATING in statuses:
            found = [self._row(r) for r in self._all_rows("list_compensating", params)]
            others = [s for s in statuses if s != Status.COMPENSATING]
            if not others:
                return found
            more = self.list_executions(
                workflows=workflows,
                statuses=others,
                queues=queues,
                limit=limit,
                parent=parent,
                before=before,
            )
            merged = sorted(found + more, key=lambda r: (r.created_at, r.seq), reverse=True)
            return merged[:limit]
        # A filter that may be NULL cannot choose an index: given a parent, take the
        # statement that walks its children; else given statuses (else a single workflow),
        # the one that searches by them (one value: in index order; one workflow and one
        # status: by the pair, as either alone may walk many rows of the other); else one
        # queue, by the queue index
        if parent is not None:
            name = "list_children"
            params["statuses"] = self._array(
                None if statuses is None else [s.value for s in statuses]
            )
        elif (
            statuses is not None and workflows is not None and len(statuses) == len(workflows) == 1
        ):
            name = "list_by_workflow_status"
            params["workflow"], params["status"] = workflows[0], statuses[0].value
        elif statuses is not None and len(statuses) == 1:
            name, params["status"] = "list_by_status", statuses[0].value
        elif statuses is not None:
            name, params["statuses"] = "list_by_statuses", self._array([s.value for s in statuses])
        elif workflows is not None and len(workflows) == 1:
            name, params["workflow"] = "list_by_workflow", workflows[0]
        elif workflows is None and queues is not None and len(queues) == 1:
            name, params["queue"] = "list_by_queue", queues[0]
        else:
            name = "list"
        return [self._row(r) for r in self._all_rows(name, params)]

    def next_due(
        self, *, queues: Sequence[str] | None, workflows: Sequence[str] | None
    ) -> datetime | None:
        params = {"workflows": self._array(workflows), "queues": self._array(queues)}
        found = self._all_rows("next_due", params)
        return self._dt(found[0]["due"]) if found else None

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
        if not workflows or limit < 1:
            return []
        taken: list[ExecutionRow] = []
        while len(taken) < limit:
            want = limit - len(taken)
            got, failed = self._claim_batch(queues, workflows, worker_id, now, lease_ms, want)
            taken.extend(got)
            if not failed:  # else rows it could not read took places: claim for them again
                break
        taken.sort(key=lambda r: (-r.priority, r.scheduled_at, r.created_at, r.seq))
        return taken

    def _claim_batch(
        self,
        queues: Sequence[str] | None,
        workflows: Sequence[str],
        worker_id: str,
        now: datetime,
        lease_ms: int,
        limit: int,
    ) -> tuple[list[ExecutionRow], int]:
        """One claim statement: the rows it took and could read, and how many it failed."""
        params = {
            "now": self._ts(now),
            "expires": self._ts(now + timedelta(milliseconds=lease_ms)),
            "worker": worker_id,
            "limit": limit,
            "workflows": self._array(workflows),
            "queues": self._array(queues),
            "max_timeout_ms": MAX_DURATION_MS,
        }
        pick, *take = self.SQL.steps("claim")
        failed = 0
        unreadable: list[ExecutionRow] = []
        with self._cursor(write=self.HOT_IN_TRANSACTION) as cur:
            cur.execute(pick, params)
            if take:  # it picked the candidates (whether each is fresh, since when due)
                picked = {r["seq"]: (bool(r["fresh"]), r["due"]) for r in cur.fetchall()}
                if not picked:
                    return [], 0
                params["seqs"] = self._array(list(picked))
                for sql in take:
                    cur.execute(sql, params)
                found = [(r, *picked[r["seq"]]) for r in cur.fetchall()]
            else:  # one statement that took them and says which are fresh and when due
                found = [(r, bool(r["fresh"]), r["due"]) for r in cur.fetchall()]
            taken = []
            for r, began, due in found:
                claimed = self._row(r)
                claimed.began = began
                claimed.due_at = self._dt(due)
                if claimed.deadline is None and claimed.timeout_ms is not None:
                    try:
                        if claimed.timeout_ms > MAX_DURATION_MS:
                            raise OverflowError
                        claimed.deadline = now + timedelta(milliseconds=claimed.timeout_ms)
                    except OverflowError:
                        claimed.unreadable += (
                            f"timeout_ms: {claimed.timeout_ms} ms is longer than any store "
                            "keeps (at most 100 years)",
                        )
                    else:
                        cur.execute(
                            self.SQL["set_deadline"],
                            {"seq": claimed.seq, "deadline": self._ts(claimed.deadline)},
                        )
                if claimed.unreadable:
                    unreadable.append(claimed)
                    continue
                taken.append(claimed)
        # One row this process cannot decode must not stop the others: fail it (fenced by
        # the token just taken), in a transaction of its own with what its end tells
        # others, keep what is stored, go on.
        for claimed in unreadable:
            with self._cursor(write=True) as cur:
                self._fail_unreadable(cur, claimed, now)
            failed += 1
        return taken, failed

    def _fail_unreadable(self, cur: Any, row: ExecutionRow, now: datetime) -> None:
        log.error(
            "durable: execution %s cannot be read (%s); failing it so that other executions run",
            row.id,
            "; ".join(row.unreadable),
        )
        cur.execute(
            self.SQL["end"],
            {
                "id": row.id,
                "token": row.token,
                "status": Status.FAILED.value,
                "now": self._ts(now),
                "error": dumps(unreadable_error(row.id, row.unreadable)),
                "write_id": uuid.uuid4().hex,
            },
        )
        cur.fetchall()
        self._after_end(cur, row.id, now)

    def heartbeat(
        self, claims: Sequence[tuple[str, int]], *, now: datetime, lease_ms: int
    ) -> list[str]:
        if not claims:
            return []
        expires = self._ts(now + timedelta(milliseconds=lease_ms))
        lost = []
        with self._cursor(write=True) as cur:
            for eid, token in claims:
                cur.execute(self.SQL["heartbeat"], {"id": eid, "token": token, "expires": expires})
                if cur.fetchone() is None:
                    lost.append(eid)
        return lost

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
        params = self._fenced_params(execution_id, token, now, write_id, record)
        params["context"] = dumps(context)
        if next_step is None:
            name = "finish_run"
            params.update(
                status=Status.COMPLETED.value,
                result=None if result is None else dumps(result),
                error=None,
            )
        else:
            name = "complete_next"
            params.update(
                next_index=next_step[0],
                next_name=next_step[1],
                next_attempt=1 if start_next else 0,
                next_started=self._ts(now) if start_next else None,
                next_max=next_max_attempts,
                next_visit=1 if visits is None else visits.get(next_step[1], 1),
                visits=None if visits is None else dumps(dict(visits)),
            )
        return self._fenced_with_record(
            name, params, execution_id, token, record, now, ends=next_step is None
        )

    def _fenced_with_record(
        self,
        name: str,
        params: dict[str, Any],
        execution_id: str,
        token: int,
        record: StepExecution | None,
        now: datetime,
        *,
        ends: bool = False,
    ) -> Status:
        """Run a fenced update that also stores the attempt record; on no match, find out
        why (lost claim, or a cancel requested: then the result is discarded). One that
        ``ends`` the execution runs in a transaction with what its end tells its parent."""
        woke = False
        alone = self.SQL.steps("finish_alone") if name == "finish_run" else ()
        if alone:
            # The end and what it tells others, in one statement that is its own
            # transaction (no lock it takes is held while this thread waits for the GIL
            # to send a COMMIT). A child's end, or a failure that stops its group, matches
            # nothing there and goes on below.
            with self._cursor(write=False) as cur:
                cur.execute(alone[0], {**params, "shards": GROUP_SHARDS})
                found = cur.fetchone()
                if found is not None and found["let_in_later"]:
                    self._let_in(cur, self._group_of(found, now))
            if found is not None:  # (its statement told idle workers of what it woke)
                return Status(found["status"])
        with self._cursor(write=self.HOT_IN_TRANSACTION or ends) as cur:
            cur.execute(self.SQL[name], params)
            found = cur.fetchone()
            if found is not None and self.HOT_IN_TRANSACTION:
                cur.execute(self.SQL["insert_attempt"], params)
            if found is not None and ends:
                woke = self._after_end(cur, execution_id, now)
        if woke:
            self._wake_others()
        if found is not None:
            return Status(found["status"])
        write_id = params["write_id"]
        try:
            with self._cursor(write=True) as cur:
                if self._why(cur, execution_id, token, write_id):
                    return self._cancel_at_checkpoint(
                        cur, execution_id, token, record, now, write_id
                    )
        except AlreadyDone as done:
            return done.row.status
        raise StoreError(f"{self!r}: {name} matched nothing for {execution_id}")

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
        params = self._fenced_params(execution_id, token, now, write_id, record)
        if retry_at is not None:
            params["retry_at"] = self._ts(retry_at)
            status = self._fenced_with_record("retry", params, execution_id, token, record, now)
            if status == Status.PENDING:
                self._wake_others()
            return status
        params.update(status=Status.FAILED.value, error=dumps(error), context=None, result=None)
        return self._fenced_with_record(
            "finish_run", params, execution_id, token, record, now, ends=True
        )

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
        write_id = write_id or uuid.uuid4().hex
        ts = self._ts(now)
        try:
            with self._cursor(write=True) as cur:
                row = self._fence_row(cur, execution_id, token, write_id)
                if row.cancel_requested:
                    return self._cancel_at_checkpoint(cur, execution_id, token, None, now, write_id)
                deadline = self._ts(row.deadline)
                for start in range(0, len(units), _FORK_BATCH):
                    # A statement per batch of units (10,000 items: ten round trips), each
                    # unit's context and item as JSON text, written a unit at a time: the
                    # worker never holds every unit's row at once.
                    payload = (
                        "["
                        + ",".join(
                            dumps(
                                [
                                    unit_id(execution_id, step, visit, u.index),
                                    u.name,
                                    u.index,
                                    u.max_attempts,
                                    None if u.context is None else dumps(u.context),
                                    dumps(u.item),
                                ]
                            )
                            for u in units[start : start + _FORK_BATCH]
                        )
                        + "]"
                    )
                    cur.execute(
                        self.SQL["unit_insert"],
                        {
                            "units": payload,
                            "concurrency": concurrency,
                            "workflow": row.workflow,
                            "queue": row.queue,
                            "priority": row.priority,
                            "now": ts,
                            "scheduled_at": self._ts(row.scheduled_at),
                            "deadline": deadline,
                            "parent": execution_id,
                            "step": step,
                            "visit": visit,
                            "stops": stops_group,
                            "headers": dumps(row.headers) if row.headers else None,
                        },
                    )
                if units:
                    cur.execute(
                        self.SQL["group_counts_insert"],
                        {
                            "parent": execution_id,
                            "step": step,
                            "visit": visit,
                            "counts": dumps(_shard_counts(len(units))),
                        },
                    )
                status = Status.WAITING if units else Status.PENDING
                cur.execute(
                    self.SQL["fork_wait"],
                    {
                        "id": execution_id,
                        "token": token,
                        "write_id": write_id,
                        "status": status.value,
                        "wake": deadline if units else ts,
                        "open": min(len(units), GROUP_SHARDS),
                    },
                )
                if cur.fetchone() is None:
                    raise StoreError(f"{self!r}: fork matched nothing for {execution_id}")
        except AlreadyDone as done:
            return done.row.status
        self._wake_others()
        return status

    def units(self, execution_id: str, step: str, visit: int) -> list[ExecutionRow]:
        group = {"id": execution_id, "step": step, "visit": visit}
        return self._all_rows("units", group, self._row)

    def unit_outcomes(
        self,
        execution_id: str,
        step: str,
        visit: int,
        *,
        after: int = -1,
        limit: int | None = None,
    ) -> list[UnitOutcome]:
        group = {"id": execution_id, "step": step, "visit": visit, "after": after, "limit": limit}
        return self._all_rows("unit_outcomes", group, lambda r: rows.outcome(r, self._dt))

    def unit_states(self, execution_id: str, step: str, visit: int) -> dict[str, int]:
        group = {"id": execution_id, "step": step, "visit": visit}
        counts: dict[str, int] = {}
        for r in self._all_rows("unit_states", group):
            state = unit_state(r["status"], bool(r["began"]), bool(r["suspended"]))
            counts[state] = counts.get(state, 0) + r["n"]
        return counts

    def restart_attempt(
        self,
        execution_id: str,
        token: int,
        *,
        now: datetime,
        record: StepExecution,
        write_id: str | None = None,
    ) -> None:
        params = self._fenced_params(execution_id, token, now, write_id, record)
        self._fenced_with_record("restart", params, execution_id, token, record, now)

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
        params = {
            "id": execution_id,
            "token": token,
            "status": status.value,
            "now": self._ts(now),
            "error": None if error is None else dumps(error),
            "write_id": write_id or uuid.uuid4().hex,
        }

        woke = False

        def also_record(cur: Any) -> None:
            nonlocal woke
            if record is not None:
                cur.execute(self.SQL["insert_attempt"], self._attempt_params(execution_id, record))
            woke = self._after_end(cur, execution_id, now)

        self._fenced_write("end", params, execution_id, token, also_record)
        if woke:
            self._wake_others()

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
        params = {
            "id": execution_id,
            "token": token,
            "now": self._ts(now),
            "run_at": self._ts(now if run_at is None else run_at),
            "ran": attempt_ran,
            "write_id": write_id or uuid.uuid4().hex,
        }
        if self._fenced_write("release", params, execution_id, token):
            self._wake_others()

    def _fenced_write(
        self,
        name: str,
        params: dict[str, Any],
        execution_id: str,
        token: int,
        then: Callable[[Any], None] | None = None,
    ) -> bool:
        """One fenced statement in a write transaction (then ``then(cur)`` in it); on no
        match, why (LeaseLost, ExecutionNotFound). False when an earlier try of this write
        committed, so nothing was written now."""
        try:
            with self._cursor(write=True) as cur:
                cur.execute(self.SQL[name], params)
                if cur.fetchone() is None:
                    self._why(cur, execution_id, token, params["write_id"])
                if then is not None:
                    then(cur)
        except AlreadyDone:
            return False
        return True

    # -- waits ---------------------------------------------------------------------------

    def _wait_row(self, r: Any, workflow: str = "") -> Wait:
        return rows.wait(r, self._dt, workflow)

    def _fence_row(
        self, cur: Any, execution_id: str, token: int, write_id: str | None = None
    ) -> ExecutionRow:
        """In a write transaction: lock the execution, check the claim (LeaseLost if it was
        lost; AlreadyDone if ``write_id`` is the last write's: it committed) and return
        the row."""
        cur.execute(self.SQL["get_for_update"], {"id": execution_id})
        found = cur.fetchone()
        if found is None:
            raise ExecutionNotFound(f"no execution with id {execution_id!r}")
        row = self._row(found)
        # Done already only while the claim is still ours: after a takeover the old owner
        # must stop (LeaseLost), even if its own write did commit before it.
        if write_id is not None and row.last_write == write_id and row.token == token:
            raise AlreadyDone(row)
        if row.token != token or row.status != Status.RUNNING:
            raise LeaseLost(
                f"execution {execution_id} is no longer claimed by this worker "
                f"(token {token}, current token {row.token}, status {row.status})"
            )
        return row

    def _lock_inbox(self, cur: Any, row: ExecutionRow) -> str | None:
        """For a unit (its waits take its execution's events): lock its execution's row,
        as send_event and provide_input do, and return its id; None for an execution.

        Without it, on PostgreSQL, two units could take the same event, and an event sent
        while a unit suspends could find the unit not yet waiting while the unit found no
        event: the unit would sleep with its event in the inbox."""
        if row.unit is None or row.parent_id is None:
            return None
        cur.execute(self.SQL["live"], {"id": row.parent_id})
        cur.fetchone()
        return row.parent_id

    def _decide(self, cur: Any, r: Any, now: datetime, inbox_of: str | None = None) -> Any:
        """Decide a pending wait row in an open transaction; returns the row as it is now.
        ``inbox_of``: whose events it takes (a unit's waits take its execution's)."""
        if r["status"] != "pending":
            return r
        names = rows.loads(r["names"])
        inbox = []
        if r["kind"] == "event":  # only events come through the inbox
            owner = inbox_of or r["execution_id"]
            cur.execute(self.SQL["inbox"], {"id": owner, "names": self._array(names)})
            inbox = [
                (e["seq"], e["name"], rows.loads(e["payload"]), self._dt(e["sent_at"]))
                for e in cur.fetchall()
            ]
        d = decide_wait(r["kind"], r["mode"], names, self._dt(r["until_at"]), now, inbox)  # type: ignore[arg-type]
        if d.status == "pending":
            return r
        result = None if d.result is None else dumps(d.result)
        cur.execute(
            self.SQL["wait_set"],
            {"wid": r["seq"], "status": d.status, "result": result, "now": self._ts(now)},
        )
        if d.consumed:
            cur.execute(
                self.SQL["consume"],
                {"now": self._ts(now), "seqs": self._array(list(d.consumed))},
            )
        return {**r, "status": d.status, "result": result, "resolved_at": self._ts(now)}

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
        key = {"id": execution_id, "step": step, "visit": visit, "wseq": seq}
        fields = {
            "attempt": attempt,
            "kind": spec.kind,
            "names": dumps(list(spec.names)),
            "mode": spec.mode,
            "until": self._ts(spec.deadline(now)),
            "now": self._ts(now),
            "prompt": spec.prompt,
            "schema": None if spec.schema is None else dumps(spec.schema),
        }
        with self._cursor(write=True) as cur:
            fenced = self._fence_row(cur, execution_id, token)
            workflow = fenced.workflow
            inbox_of = self._lock_inbox(cur, fenced)
            cur.execute(self.SQL["wait_get"], key)
            r = cur.fetchone()
            if r is None:  # (a unit's wait names its execution: inbox_of)
                cur.execute(self.SQL["wait_insert"], {**key, **fields, "parent": inbox_of})
                r = cur.fetchone()
            elif (r["kind"], tuple(rows.loads(r["names"])), r["mode"]) != (
                spec.kind,
                spec.names,
                spec.mode,
            ) or (r["status"] == "timed_out" and r["attempt"] != attempt):
                cur.execute(self.SQL["wait_renew"], {"wid": r["seq"], **fields})
                r = cur.fetchone()
            r = self._decide(cur, r, now, inbox_of)
        return self._wait_row(r, workflow)

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
        write_id = write_id or uuid.uuid4().hex
        try:
            return self._suspend(execution_id, token, now, record, (step, visit, seq), write_id)
        except AlreadyDone as done:
            return done.row.status

    def _suspend(
        self,
        execution_id: str,
        token: int,
        now: datetime,
        record: StepExecution,
        place: tuple[str, int, int],
        write_id: str,
    ) -> Status:
        with self._cursor(write=True) as cur:
            row = self._fence_row(cur, execution_id, token, write_id)
            if row.cancel_requested:
                return self._cancel_at_checkpoint(cur, execution_id, token, record, now, write_id)
            step, visit, seq = place
            inbox_of = self._lock_inbox(cur, row)
            cur.execute(
                self.SQL["wait_get"],
                {"id": execution_id, "step": step, "visit": visit, "wseq": seq},
            )
            w = self._decide(cur, cur.fetchone(), now, inbox_of)
            deadline = row.deadline
            wake: datetime | None = now
            if w["status"] != "pending":
                status = Status.PENDING
            else:
                timers = [t for t in (self._dt(w["until_at"]), deadline) if t is not None]
                status, wake = Status.WAITING, min(timers) if timers else None
            params = {
                "id": execution_id,
                "token": token,
                "status": status.value,
                "wake": self._ts(wake),
                "write_id": write_id,
            }
            cur.execute(self.SQL["suspend"], params)
            if cur.fetchone() is None:
                raise StoreError(f"{self!r}: suspend matched nothing for {execution_id}")
            cur.execute(self.SQL["insert_attempt"], self._attempt_params(execution_id, record))
        self._wake_others()  # a pending row to claim, or a new timer to wait for
        return status

    def _live(self, cur: Any, execution_id: str) -> tuple[Status, tuple[str | None, int], str]:
        """The execution's status, its current step run (step, visit) and whose events its
        waits take (a unit's: its execution's), the row locked; ExecutionNotFound, or
        InvalidState when it finished."""
        cur.execute(self.SQL["live"], {"id": execution_id})
        found = cur.fetchone()
        if found is None:
            raise ExecutionNotFound(f"no execution with id {execution_id!r}")
        status = Status(found["status"])
        if status in FINISHED:
            raise not_live_error(execution_id, status)
        inbox = found["parent_id"] if found["unit"] is not None else execution_id
        return status, (found["step_name"], found["step_visit"]), inbox

    def _live_row(
        self, cur: Any, execution_id: str
    ) -> tuple[Status | None, tuple[str | None, int]]:
        """The row's status and current step run, the row locked (None: no such row)."""
        cur.execute(self.SQL["live"], {"id": execution_id})
        found = cur.fetchone()
        if found is None:
            return None, (None, 0)
        return Status(found["status"]), (found["step_name"], found["step_visit"])

    def _suspended_on(self, cur: Any, execution_id: str, run: tuple[str | None, int]) -> Any:
        """The wait the execution is suspended on: the newest pending one of its current
        step run."""
        step, visit = run
        cur.execute(
            self.SQL["wait_suspended_on"], {"id": execution_id, "step": step, "visit": visit}
        )
        return cur.fetchone()

    def send_event(self, execution_id: str, name: str, payload: Any, *, now: datetime) -> bool:
        return self._retry_deadlock(lambda: self._send_event(execution_id, name, payload, now))

    def _send_event(self, execution_id: str, name: str, payload: Any, now: datetime) -> bool:
        woke = False
        with self._cursor(write=True) as cur:
            status, run, inbox = self._live(cur, execution_id)
            cur.execute(
                self.SQL["event_insert"],
                {
                    "id": execution_id,
                    "name": name,
                    "payload": dumps(payload),
                    "now": self._ts(now),
                },
            )
            # The execution and its waiting units, each on the wait it is suspended on,
            # oldest wait first: an event goes to the first that takes it.
            suspended = []
            if status == Status.WAITING:
                w = self._suspended_on(cur, execution_id, run)
                if w is not None:
                    suspended.append(w)
            cur.execute(self.SQL["waiting_units"], {"id": execution_id})
            for unit in cur.fetchall():
                w = self._suspended_on(cur, unit["id"], (unit["step_name"], unit["step_visit"]))
                if w is not None:
                    suspended.append(w)
            # (stable: waits begun at the same time go in the rows' creation order)
            suspended.sort(key=lambda w: w["created_at"])
            for w in suspended:
                if self._decide(cur, w, now, inbox)["status"] != "pending":
                    cur.execute(self.SQL["wake"], {"id": w["execution_id"], "now": self._ts(now)})
                    woke = True
        if woke:
            self._wake_others()
        return woke

    def provide_input(
        self,
        execution_id: str,
        name: str,
        data: Any,
        *,
        now: datetime,
        validate: Callable[[dict[str, Any] | None], Any] | None = None,
    ) -> None:
        self._retry_deadlock(lambda: self._provide_input(execution_id, name, data, now, validate))

    def _provide_input(
        self,
        execution_id: str,
        name: str,
        data: Any,
        now: datetime,
        validate: Callable[[dict[str, Any] | None], Any] | None,
    ) -> None:
        with self._cursor(write=True) as cur:
            status, run, _ = self._live(cur, execution_id)
            # The execution, or one of its units, suspended on an input of that name.
            asking = []
            w = self._suspended_on(cur, execution_id, run)
            if w is not None:
                asking.append((status, w))
            cur.execute(self.SQL["waiting_units"], {"id": execution_id})
            for unit in cur.fetchall():
                uw = self._suspended_on(cur, unit["id"], (unit["step_name"], unit["step_visit"]))
                if uw is not None:
                    asking.append((Status.WAITING, uw))
            inputs = [(st, x) for st, x in asking if x["kind"] == "input"]
            asked = [n for _, x in inputs for n in rows.loads(x["names"])]
            chosen = next(((st, x) for st, x in inputs if name in rows.loads(x["names"])), None)
            if chosen is None:
                raise not_pending_error(execution_id, name, asked)
            status, w = chosen
            until = self._dt(w["until_at"])
            if until is not None and until < now:
                raise input_too_late(execution_id, name, until)
            if validate is not None:
                data = validate(rows.loads(w["input_schema"]))
            cur.execute(
                self.SQL["wait_set"],
                {
                    "wid": w["seq"],
                    "status": "resolved",
                    "result": dumps(data),
                    "now": self._ts(now),
                },
            )
            if status == Status.WAITING:
                cur.execute(self.SQL["wake"], {"id": w["execution_id"], "now": self._ts(now)})
        self._wake_others()

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
        params = {
            "workflow": workflow,
            "open_at": self._ts(open_at),
            "kind": kind,
            "limit": limit,
        }
        if execution_id is not None:  # (its units' waits too: by their parent_id)
            name = "waits_of"
            params.update(execution_id=execution_id, pending_only=pending_only)
        else:
            name = "waits_pending" if pending_only else "waits_all"
        found = self._all_rows(name, params)
        return [self._wait_row(r, r["workflow"]) for r in found]

    def recent_waits(self, execution_id: str, *, limit: int) -> tuple[list[Wait], int]:
        if limit < 1:  # (the count comes with the rows: it needs one)
            raise ValueError(f"recent_waits reads at least 1 wait, not limit={limit}")
        found = self._all_rows("waits_recent", {"execution_id": execution_id, "limit": limit})
        total = found[0]["total"] if found else 0
        return [self._wait_row(r, r["workflow"]) for r in found], total

    def purge(
        self, *, finished_before: datetime, workflows: Sequence[str] | None, limit: int
    ) -> list[str]:
        params = {
            "before": self._ts(finished_before),
            "workflows": self._array(workflows),
            "limit": limit,
        }
        with self._cursor(write=True) as cur:
            cur.execute(self.SQL["purge_pick"], params)
            picked = [r["id"] for r in cur.fetchall()]
            if not picked:
                return []
            cur.execute(self.SQL["units_of"], {"ids": self._array(picked)})
            units = [r["id"] for r in cur.fetchall()]
            ids = {"ids": self._array(picked + units)}
            for sql in self.SQL.steps("purge"):
                cur.execute(sql, ids)
            deleted = {r["id"] for r in cur.fetchall()}  # the last statement returns its ids
        return [eid for eid in picked if eid in deleted]

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
        params = {
            "origin": None if origin is None else dumps(origin),
            "id": execution_id,
            "now": self._ts(now),
            "step_index": step_index,
            "step_name": step_name,
            "visit": visit,
            "visits": dumps(dict(visits)),
            "context": dumps(context),
            "max_attempts": max_attempts,
        }
        with self._cursor(write=True) as cur:
            cur.execute(self.SQL["retry_execution"], params)
            found = cur.fetchone()
            if found is None:
                cur.execute(self.SQL["get"], {"id": execution_id})
                row = cur.fetchone()
                if row is None:
                    raise ExecutionNotFound(f"no execution with id {execution_id!r}")
                raise not_retryable_error(self._row(row))
        self._wake_others()
        return self._row(found)

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
        write_id = write_id or uuid.uuid4().hex
        try:
            with self._cursor(write=True) as cur:
                self._compensate(cur, execution_id, token, now, error, record, write_id)
        except AlreadyDone:
            pass
        self._wake_others()
        return Status.PENDING

    def _compensate(
        self,
        cur: Any,
        execution_id: str,
        token: int,
        now: datetime,
        error: dict[str, Any],
        record: StepExecution | None,
        write_id: str,
    ) -> None:
        """In a write transaction: the claimed execution enters its compensate phase."""
        params = {
            "id": execution_id,
            "token": token,
            "now": self._ts(now),
            "error": dumps(error),
            "write_id": write_id,
        }
        cur.execute(self.SQL["compensate"], params)
        if cur.fetchone() is None:
            self._why(cur, execution_id, token, write_id)  # raises: the claim was lost
            raise LeaseLost(f"execution {execution_id}: claim lost while compensating")
        if record is not None:
            cur.execute(self.SQL["insert_attempt"], self._attempt_params(execution_id, record))
        # Its flow is over: units still open (a timeout, a failure, a cancel at a group)
        # stop too, and the compensations wait for those running to end.
        cur.execute(
            self.SQL["cancel_units"],
            {
                "id": execution_id,
                "step": None,
                "visit": 0,
                "now": self._ts(now),
                "reason": f"its execution is compensating ({error.get('type')})",
            },
        )

    def request_cancel(
        self,
        execution_id: str,
        *,
        now: datetime,
        reason: str | None,
        compensates: Callable[[str], bool] = lambda workflow: False,
    ) -> ExecutionRow:
        def cancel() -> ExecutionRow:
            with self._cursor(write=True) as cur:
                return self._cancel(cur, execution_id, now, reason, compensates)

        row = self._retry_deadlock(cancel)
        # (it, a child or a unit's parent may have become claimable: compensations to run,
        # a group's fan-in)
        self._wake_others()
        return row

    def cancel_requested_among(self, execution_ids: Sequence[str]) -> set[str]:
        if not execution_ids:
            return set()
        found = self._all_rows("cancel_requested_among", {"ids": self._array(execution_ids)})
        return {r["id"] for r in found}

    def _cancel(
        self,
        cur: Any,
        execution_id: str,
        now: datetime,
        reason: str | None,
        compensates: Callable[[str], bool],
    ) -> ExecutionRow:
        """In a write transaction: cancel an execution, its units and (recursively) its
        unfinished children."""
        cur.execute(self.SQL["get_for_update"], {"id": execution_id})
        found = cur.fetchone()
        if found is None:
            raise ExecutionNotFound(f"no execution with id {execution_id!r}")
        row = self._row(found)
        if row.status in FINISHED:
            raise finished_error(execution_id, row.status)
        if row.phase == StepPhase.COMPENSATE:
            raise compensating_error(execution_id)
        lease_live = row.lease_expires_at is not None and row.lease_expires_at > now
        at_once = not (row.status == Status.RUNNING and lease_live)
        compensate = row.unit is None and compensates(row.workflow)
        if at_once and compensate:
            cur.execute(
                self.SQL["cancel_compensate"],
                {
                    "id": execution_id,
                    "reason": reason,
                    "now": self._ts(now),
                    "error": dumps(cancel_error(reason)),
                },
            )
        else:
            cur.execute(
                self.SQL["cancel"],
                {
                    "id": execution_id,
                    "reason": reason,
                    "now": self._ts(now),
                    "at_once": at_once,
                    "mark": compensate,
                },
            )
        cancelled = self._row(cur.fetchone())
        ts = self._ts(now)
        cur.execute(
            self.SQL["cancel_units"],
            {"id": execution_id, "step": None, "visit": 0, "now": ts, "reason": reason},
        )
        cur.execute(self.SQL["live_children"], {"id": execution_id})
        for child in [r["id"] for r in cur.fetchall()]:
            self._cancel(cur, child, now, reason, compensates)
        for sql in self.SQL.steps("notify_cancel"):  # (on commit: the workers look)
            cur.execute(sql)
        if at_once and not compensate:  # a unit: its group hears of it; a child: its caller
            parked = row.status == Status.PENDING and row.run_at is None
            self._after_end(cur, execution_id, now, held_place=not parked)
        return cancelled

    # -- schedules (cron) ------------------------------------------------------------------

    def _schedule(self, r: Any) -> Schedule:
        next_tick = self._dt(r["next_tick"])
        created_at = self._dt(r["created_at"])
        updated_at = self._dt(r["updated_at"])
        assert next_tick is not None and created_at is not None and updated_at is not None
        return Schedule(
            name=r["name"],
            workflow=r["workflow"],
            cron=r["cron"],
            timezone=r["timezone"],
            input=rows.loads(r["input"]),
            catch_up=CatchUp(r["catch_up"]),
            overlap=Overlap(r["overlap"]),
            paused=bool(r["paused"]),
            next_tick=next_tick,
            created_at=created_at,
            updated_at=updated_at,
            declared=bool(r["declared"]),
            last_tick=self._dt(r["last_tick"]),
            last_execution_id=r["last_execution_id"],
            buffered_id=r["buffered_id"],
            missed=int(r["missed"]),
        )

    def put_schedule(
        self, schedule: Schedule, *, now: datetime, expected: datetime | None = None
    ) -> Schedule | None:
        params = {
            "expected": self._ts(expected),
            "name": schedule.name,
            "workflow": schedule.workflow,
            "cron": schedule.cron,
            "timezone": schedule.timezone,
            "input": dumps(schedule.input),
            "catch_up": schedule.catch_up.value,
            "overlap": schedule.overlap.value,
            "paused": schedule.paused,
            "declared": schedule.declared,
            "next_tick": self._ts(schedule.next_tick),
            "now": self._ts(now),
        }
        r = self._retry_deadlock(lambda: self._write_one("schedule_put", params))
        self._wake_others()  # (workers elsewhere look at the next tick again)
        return None if r is None else self._schedule(r)

    def _write_one(self, name: str, params: dict[str, Any]) -> Any:
        with self._cursor(write=True) as cur:
            cur.execute(self.SQL[name], params)
            return cur.fetchone()

    def get_schedule(self, name: str) -> Schedule | None:
        r = self._retry_once(lambda: self._one("schedule_get", {"name": name}))
        return None if r is None else self._schedule(r)

    def list_schedules(self) -> list[Schedule]:
        return [self._schedule(r) for r in self._all_rows("schedule_list", {})]

    def delete_schedule(
        self, name: str, *, now: datetime, compensates: Callable[[str], bool] = lambda w: False
    ) -> bool:
        def delete() -> bool:
            with self._cursor(write=True) as cur:
                cur.execute(self.SQL["schedule_delete"], {"name": name})
                found = cur.fetchone()
                if found is None:
                    return False
                if found["buffered_id"] is not None:
                    cur.execute(self.SQL["get_for_update"], {"id": found["buffered_id"]})
                    buffered = cur.fetchone()
                    if buffered is not None and buffered["status"] == Status.PENDING.value:
                        why = "its schedule was removed"
                        self._cancel(cur, found["buffered_id"], now, why, compensates)
                return True

        return self._retry_deadlock(delete)

    def pause_schedule(
        self, name: str, *, paused: bool, next_tick: datetime, now: datetime
    ) -> Schedule | None:
        params = {
            "name": name,
            "paused": paused,
            "next_tick": self._ts(next_tick),
            "now": self._ts(now),
        }
        r = self._retry_deadlock(lambda: self._write_one("schedule_pause", params))
        self._wake_others()
        return None if r is None else self._schedule(r)

    def next_tick(self, *, workflows: Sequence[str] | None) -> datetime | None:
        found = self._all_rows("schedule_next_tick", {"workflows": self._array(workflows)})
        return self._dt(found[0]["due"]) if found else None

    def due_schedules(
        self, *, now: datetime, workflows: Sequence[str], limit: int
    ) -> list[Schedule]:
        if not workflows:
            return []
        params = {"now": self._ts(now), "workflows": self._array(workflows), "limit": limit}
        return [self._schedule(r) for r in self._all_rows("schedules_due", params)]

    def fire_schedules(
        self,
        fires: Sequence[Fire],
        *,
        now: datetime,
        compensates: Callable[[str], bool] = lambda w: False,
    ) -> list[str]:
        if not fires:
            return []

        def fire() -> list[str]:
            made: list[str] = []
            with self._cursor(write=True) as cur:
                # (by name: two workers firing the same schedules lock them in one order)
                ordered = sorted(fires, key=lambda f: f.name)
                made += self._fire_allowed(cur, [f for f in ordered if f.overlap == "allow"], now)
                for f in ordered:
                    if f.overlap != Overlap.ALLOW:
                        made += self._fire(cur, f, now, compensates)
            return made

        made = self._retry_deadlock(fire)
        if made:
            self._wake_others()
        return made

    def _json_ts(self, value: datetime | None) -> str | None:
        stored = self._ts(value)
        return stored if stored is None or isinstance(stored, str) else stored.isoformat()

    def _fire_allowed(self, cur: Any, fires: list[Fire], now: datetime) -> list[str]:
        """In a write transaction: "allow" fires, two statements for all of them (the
        schedules that still have the tick read move on; their executions are made)."""
        if not fires:
            return []
        payload = [
            [
                f.name,
                self._json_ts(f.expected),
                self._json_ts(f.next_tick),
                f.missed,
                self._json_ts(f.rows[-1].scheduled_at) if f.rows else None,
                f.rows[-1].id if f.rows else None,
            ]
            for f in fires
        ]
        cur.execute(self.SQL["schedules_advance"], {"fires": dumps(payload), "now": self._ts(now)})
        applied = {r["name"] for r in cur.fetchall()}
        rows = [row for f in fires if f.name in applied for row in f.rows]
        if not rows:
            return []
        runs = [
            [
                r.id,
                r.workflow,
                r.queue,
                r.priority,
                dumps(r.input),
                self._json_ts(r.scheduled_at),
                r.timeout_ms,
                r.step_name,
                r.max_attempts,
                None if r.origin is None else dumps(r.origin),
                None if r.shape is None else dumps(r.shape),
                dumps(r.headers) if r.headers else None,
            ]
            for r in rows
        ]
        cur.execute(self.SQL["schedule_runs_insert"], {"rows": dumps(runs), "now": self._ts(now)})
        return [r.id for r in rows]

    def _fire(
        self, cur: Any, f: Fire, now: datetime, compensates: Callable[[str], bool]
    ) -> list[str]:
        """In a write transaction: one schedule's fire (see Store.fire_schedules)."""
        ts = self._ts(now)
        allow = f.overlap == Overlap.ALLOW
        latest = None
        if not allow:
            cur.execute(self.SQL["schedule_latest"], {"name": f.name})  # (locked first)
            found = cur.fetchone()
            if found is not None:
                latest = (found["id"], Status(found["status"]), found["phase"])
        last = f.rows[-1] if allow and f.rows else None
        cur.execute(
            self.SQL["schedule_advance"],
            {
                "name": f.name,
                "expected": self._ts(f.expected),
                "next_tick": self._ts(f.next_tick),
                "missed": f.missed,
                "now": ts,
                "last_tick": None if last is None else self._ts(last.scheduled_at),
                "last_execution_id": None if last is None else last.id,
            },
        )
        advanced = cur.fetchone()
        if advanced is None:
            return []  # fired by another worker, paused or removed meanwhile
        if allow:
            for row in f.rows:
                cur.execute(self.SQL["create"], self._create_params(row))
                cur.fetchone()
            return [row.id for row in f.rows]
        s = self._schedule(advanced)
        if s.last_execution_id != (None if latest is None else latest[0]):
            # The latest ended while this fire waited for its lock, and let the buffered
            # one in: that one is the latest now (the schedule row, locked by the update
            # above, cannot change again before this commits).
            latest = None
            if s.last_execution_id is not None:
                cur.execute(self.SQL["schedule_latest_by_id"], {"id": s.last_execution_id})
                found = cur.fetchone()
                if found is not None:
                    latest = (found["id"], Status(found["status"]), found["phase"])
        made: list[str] = []
        last_tick, last_id, buffered, missed = (
            s.last_tick,
            s.last_execution_id,
            s.buffered_id,
            s.missed,
        )
        for row in f.rows:
            running = latest is not None and latest[1] not in FINISHED
            verdict = overlap_verdict(s.overlap, running, buffered is not None)
            if verdict == "let_go":
                missed += 1
                continue
            # (one already compensating is ending: it is left to its compensations)
            if verdict == "cancel_then_make" and latest and latest[2] == StepPhase.RUN.value:
                why = f"schedule {s.name!r} started the next tick's execution"
                self._cancel(cur, latest[0], now, why, compensates)
            parked = verdict == "park"
            params = self._create_params(row)
            if parked:
                params["run_at"] = params["claimable_at"] = None
            cur.execute(self.SQL["create"], params)
            if cur.fetchone() is None:
                continue  # (its idempotency key is taken: schedules give none)
            made.append(row.id)
            last_tick = row.scheduled_at
            if parked:
                buffered = row.id
            else:
                last_id = row.id
                latest = (row.id, Status.PENDING, StepPhase.RUN.value)
        cur.execute(
            self.SQL["schedule_fired"],
            {
                "name": s.name,
                "last_tick": self._ts(last_tick),
                "last_execution_id": last_id,
                "buffered_id": buffered,
                "missed": missed,
            },
        )
        return made
