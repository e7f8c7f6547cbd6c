"""The SQL store: every transition is one transaction of parameterised Core statements.

The SQL is the same on SQLite and PostgreSQL; the dialect modules add what differs (how a
write transaction begins, ``FOR UPDATE SKIP LOCKED``, ``LISTEN/NOTIFY``). Every time
comparison uses the ``now`` the engine passes in, never the database's clock.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from durable.errors import ExecutionNotFound, InvalidState, LeaseLost, StoreError
from durable.models import FINISHED, Status, StepExecution, StepStatus
from durable.stores.base import ExecutionRow, Store
from durable.stores.sql import migrations
from durable.stores.sql.schema import UTCDateTime, attempts, executions

__all__ = ["SQLStore"]

log = logging.getLogger("durable.stores.sql")

ex = executions
_UTC = UTCDateTime()
_LIVE = (Status.PENDING.value, Status.RUNNING.value)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _ms(ms: int) -> timedelta:
    return timedelta(milliseconds=ms)


def _row(m: sa.RowMapping) -> ExecutionRow:
    return ExecutionRow(
        id=m["id"],
        workflow=m["workflow"],
        status=Status(m["status"]),
        queue=m["queue"],
        priority=m["priority"],
        input=_loads(m["input"]),
        context=_loads(m["context"]),
        created_at=m["created_at"],
        scheduled_at=m["scheduled_at"],
        run_at=m["run_at"],
        timeout_ms=m["timeout_ms"],
        idempotency_key=m["idempotency_key"],
        started_at=m["started_at"],
        completed_at=m["completed_at"],
        deadline=m["deadline"],
        step_index=m["step_index"],
        step_name=m["step_name"],
        attempt=m["attempt"],
        attempt_started_at=m["attempt_started_at"],
        error=_loads(m["error"]),
        token=m["token"],
        worker_id=m["worker_id"],
        lease_expires_at=m["lease_expires_at"],
        cancel_requested=bool(m["cancel_requested"]),
        cancel_reason=m["cancel_reason"],
        seq=m["seq"],
    )


def _attempt_values(execution_id: str, r: StepExecution) -> dict[str, Any]:
    return {
        "execution_id": execution_id,
        "step_index": r.index,
        "name": r.name,
        "attempt": r.attempt,
        "status": r.status.value,
        "started_at": r.started_at,
        "completed_at": r.completed_at,
        "error": None if r.error is None else _dumps(r.error),
        "logs": _dumps(r.logs),
        "max_attempts": r.max_attempts,
        "retry_at": r.retry_at,
    }


def _cancelled(r: StepExecution, now: datetime) -> StepExecution:
    return StepExecution(
        r.name,
        StepStatus.CANCELLED,
        r.attempt,
        r.started_at,
        r.completed_at or now,
        {"type": "Cancelled", "message": "cancelled; the attempt's result was discarded"},
        r.logs,
        r.index,
        r.max_attempts,
    )


_ENDED: dict[str, Any] = {
    "run_at": None,
    "lease_expires_at": None,
    "worker_id": None,
    "attempt_started_at": None,
    "claimable_at": None,
}


class SQLStore(Store):
    """A store on a SQLAlchemy engine. Use ``sqlite:///...`` or ``postgresql://...`` URLs."""

    def __init__(self, url: str, engine: sa.Engine) -> None:
        self.url = url
        self.engine = engine
        self.dialect = engine.dialect.name
        self._subscribers: list[Callable[[], None]] = []
        self._sub_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- plumbing ------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """One write transaction (on SQLite: BEGIN IMMEDIATE, so writers queue up)."""
        try:
            with (
                self.engine.connect().execution_options(durable_write=True) as conn,
                conn.begin(),
            ):
                yield conn
        except sa.exc.DBAPIError as exc:
            raise StoreError(f"{self!r}: {exc.orig!r}") from exc

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except sa.exc.DBAPIError as exc:
            raise StoreError(f"{self!r}: {exc.orig!r}") from exc

    def _notify(self, conn: sa.Connection) -> None:
        """Tell idle workers (other processes too) to look for work after this commit."""

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when another worker makes work available."""
        with self._sub_lock:
            self._subscribers.append(callback)

    def _wake_subscribers(self) -> None:
        with self._sub_lock:
            callbacks = list(self._subscribers)
        for cb in callbacks:
            cb()

    def migrate(self, now: datetime) -> list[int]:
        """Create or upgrade the schema; returns the versions applied."""
        try:
            return migrations.upgrade(self.engine, now=now)
        except sa.exc.DBAPIError as exc:
            raise StoreError(f"{self!r}: migrating failed: {exc.orig!r}") from exc

    def close(self) -> None:
        self.engine.dispose()

    def _fenced(
        self, conn: sa.Connection, execution_id: str, token: int, values: dict[str, Any]
    ) -> sa.RowMapping:
        """UPDATE the claimed row, or raise LeaseLost / ExecutionNotFound."""
        result = (
            conn.execute(
                sa.update(ex)
                .where(ex.c.id == execution_id, ex.c.token == token, ex.c.status == "running")
                .values(values)
                .returning(*ex.c)
            )
            .mappings()
            .first()
        )
        if result is None:
            self._lost(conn, execution_id, token)
        assert result is not None
        return result

    def _lost(self, conn: sa.Connection, execution_id: str, token: int) -> None:
        current = conn.execute(
            sa.select(ex.c.token, ex.c.status).where(ex.c.id == execution_id)
        ).first()
        if current is None:
            raise ExecutionNotFound(f"no execution with id {execution_id!r}")
        raise LeaseLost(
            f"execution {execution_id} is no longer claimed by this worker "
            f"(token {token}, current token {current.token}, status {current.status})"
        )

    def _check_cancel(self, conn: sa.Connection, execution_id: str, token: int) -> bool:
        """Lock the claimed row; True when a cancel was requested."""
        found = conn.execute(
            sa.select(ex.c.cancel_requested)
            .where(ex.c.id == execution_id, ex.c.token == token, ex.c.status == "running")
            .with_for_update()
        ).first()
        if found is None:
            self._lost(conn, execution_id, token)
        assert found is not None
        return bool(found.cancel_requested)

    # -- reads ---------------------------------------------------------------------------

    def create(self, row: ExecutionRow) -> tuple[ExecutionRow, bool]:
        values = {
            "id": row.id,
            "workflow": row.workflow,
            "status": row.status.value,
            "queue": row.queue,
            "priority": row.priority,
            "input": _dumps(row.input),
            "context": _dumps(row.context),
            "created_at": row.created_at,
            "scheduled_at": row.scheduled_at,
            "run_at": row.run_at,
            "timeout_ms": row.timeout_ms,
            "idempotency_key": row.idempotency_key,
            "step_index": row.step_index,
            "step_name": row.step_name,
            "attempt": row.attempt,
            "token": row.token,
            "cancel_requested": False,
            "claimable_at": row.run_at if row.status == Status.PENDING else None,
        }
        if row.idempotency_key is not None:
            existing = self._by_key(row.idempotency_key)
            if existing is not None:
                return existing, False
        try:
            with self._write() as conn:
                stored = (
                    conn.execute(sa.insert(ex).values(values).returning(*ex.c)).mappings().one()
                )
                self._notify(conn)
        except StoreError as exc:
            if isinstance(exc.__cause__, sa.exc.IntegrityError) and row.idempotency_key:
                existing = self._by_key(row.idempotency_key)
                if existing is not None:  # another process won the race for the key
                    return existing, False
            if isinstance(exc.__cause__, sa.exc.IntegrityError):
                raise InvalidState(f"an execution with id {row.id!r} already exists") from exc
            raise
        return _row(stored), True

    def _by_key(self, key: str) -> ExecutionRow | None:
        with self._read() as conn:
            m = conn.execute(sa.select(ex).where(ex.c.idempotency_key == key)).mappings().first()
        return None if m is None else _row(m)

    def get(self, execution_id: str) -> ExecutionRow | None:
        with self._read() as conn:
            m = conn.execute(sa.select(ex).where(ex.c.id == execution_id)).mappings().first()
        return None if m is None else _row(m)

    def steps(self, execution_id: str) -> list[StepExecution]:
        with self._read() as conn:
            rows = (
                conn.execute(
                    sa.select(attempts)
                    .where(attempts.c.execution_id == execution_id)
                    .order_by(attempts.c.seq)
                )
                .mappings()
                .all()
            )
        return [
            StepExecution(
                name=r["name"],
                status=StepStatus(r["status"]),
                attempt=r["attempt"],
                started_at=r["started_at"],
                completed_at=r["completed_at"],
                error=_loads(r["error"]),
                logs=_loads(r["logs"]),
                index=r["step_index"],
                max_attempts=r["max_attempts"],
                retry_at=r["retry_at"],
            )
            for r in rows
        ]

    def list_executions(
        self,
        *,
        workflows: Sequence[str] | None,
        statuses: Sequence[Status] | None,
        queues: Sequence[str] | None,
        limit: int,
    ) -> list[ExecutionRow]:
        query = sa.select(ex)
        if workflows is not None:
            query = query.where(ex.c.workflow.in_(list(workflows)))
        if statuses is not None:
            query = query.where(ex.c.status.in_([s.value for s in statuses]))
        if queues is not None:
            query = query.where(ex.c.queue.in_(list(queues)))
        query = query.order_by(ex.c.created_at.desc(), ex.c.seq.desc()).limit(limit)
        with self._read() as conn:
            return [_row(m) for m in conn.execute(query).mappings()]

    def next_due(
        self, *, queues: Sequence[str] | None, workflows: Sequence[str] | None
    ) -> datetime | None:
        query = sa.select(sa.func.min(ex.c.claimable_at)).where(ex.c.claimable_at.isnot(None))
        if queues is not None:
            query = query.where(ex.c.queue.in_(list(queues)))
        if workflows is not None:
            query = query.where(ex.c.workflow.in_(list(workflows)))
        with self._read() as conn:
            value = conn.execute(query).scalar()
        # min() of a TypeDecorator column comes back raw on SQLite
        return _UTC.process_result_value(value, self.engine.dialect)

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
        if not workflows:
            return []
        candidates = (
            sa.select(ex.c.seq)
            .where(ex.c.claimable_at.isnot(None), ex.c.claimable_at <= now)
            .where(ex.c.workflow.in_(list(workflows)))
            .order_by(ex.c.priority.desc(), ex.c.scheduled_at, ex.c.created_at, ex.c.seq)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        if queues is not None:
            candidates = candidates.where(ex.c.queue.in_(list(queues)))
        expires = now + _ms(lease_ms)
        with self._write() as conn:
            claimed = (
                conn.execute(
                    sa.update(ex)
                    .where(ex.c.seq.in_(candidates.scalar_subquery()))
                    .values(
                        status="running",
                        token=ex.c.token + 1,
                        worker_id=worker_id,
                        lease_expires_at=expires,
                        claimable_at=expires,
                        run_at=None,
                        started_at=sa.func.coalesce(ex.c.started_at, now),
                    )
                    .returning(*ex.c)
                )
                .mappings()
                .all()
            )
            rows = [_row(m) for m in claimed]
            for r in rows:
                if r.deadline is None and r.timeout_ms is not None:
                    r.deadline = now + _ms(r.timeout_ms)
                    conn.execute(sa.update(ex).where(ex.c.seq == r.seq).values(deadline=r.deadline))
        rows.sort(key=lambda r: (-r.priority, r.scheduled_at, r.created_at, r.seq))
        return rows

    def heartbeat(
        self, claims: Sequence[tuple[str, int]], *, now: datetime, lease_ms: int
    ) -> list[str]:
        if not claims:
            return []
        expires = now + _ms(lease_ms)
        with self._write() as conn:
            renewed = set(
                conn.execute(
                    sa.update(ex)
                    .where(sa.tuple_(ex.c.id, ex.c.token).in_(list(claims)))
                    .where(ex.c.status == "running")
                    .values(lease_expires_at=expires, claimable_at=expires)
                    .returning(ex.c.id)
                ).scalars()
            )
        return [eid for eid, _ in claims if eid not in renewed]

    def begin_attempt(self, execution_id: str, token: int, *, now: datetime) -> int:
        with self._write() as conn:
            m = self._fenced(
                conn, execution_id, token, {"attempt": ex.c.attempt + 1, "attempt_started_at": now}
            )
        return int(m["attempt"])

    def _cancel_at_checkpoint(
        self,
        conn: sa.Connection,
        execution_id: str,
        token: int,
        record: StepExecution | None,
        now: datetime,
    ) -> Status:
        if record is not None:
            conn.execute(
                sa.insert(attempts).values(_attempt_values(execution_id, _cancelled(record, now)))
            )
        self._fenced(
            conn, execution_id, token, {"status": "cancelled", "completed_at": now, **_ENDED}
        )
        return Status.CANCELLED

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
    ) -> Status:
        with self._write() as conn:
            if self._check_cancel(conn, execution_id, token):
                return self._cancel_at_checkpoint(conn, execution_id, token, record, now)
            conn.execute(sa.insert(attempts).values(_attempt_values(execution_id, record)))
            values: dict[str, Any] = {"context": _dumps(context)}
            if next_step is None:
                values.update(status="completed", completed_at=now, **_ENDED)
            else:
                values.update(
                    step_index=next_step[0],
                    step_name=next_step[1],
                    attempt=1 if start_next else 0,
                    attempt_started_at=now if start_next else None,
                )
            m = self._fenced(conn, execution_id, token, values)
        return Status(m["status"])

    def fail_attempt(
        self,
        execution_id: str,
        token: int,
        *,
        now: datetime,
        record: StepExecution | None,
        retry_at: datetime | None,
        error: dict[str, Any] | None,
    ) -> Status:
        with self._write() as conn:
            if self._check_cancel(conn, execution_id, token):
                return self._cancel_at_checkpoint(conn, execution_id, token, record, now)
            if record is not None:
                conn.execute(sa.insert(attempts).values(_attempt_values(execution_id, record)))
            if retry_at is not None:
                values: dict[str, Any] = {
                    "status": "pending",
                    "run_at": retry_at,
                    "claimable_at": retry_at,
                    "lease_expires_at": None,
                    "worker_id": None,
                    "attempt_started_at": None,
                }
            else:
                values = {
                    "status": "failed",
                    "completed_at": now,
                    "error": _dumps(error),
                    **_ENDED,
                }
            m = self._fenced(conn, execution_id, token, values)
            if retry_at is not None:
                self._notify(conn)
        return Status(m["status"])

    def finish(
        self,
        execution_id: str,
        token: int,
        *,
        now: datetime,
        status: Status,
        error: dict[str, Any] | None,
        record: StepExecution | None = None,
    ) -> None:
        if status not in FINISHED:
            raise ValueError(f"finish() needs a final status, got {status}")
        with self._write() as conn:
            if record is not None:
                conn.execute(sa.insert(attempts).values(_attempt_values(execution_id, record)))
            self._fenced(
                conn,
                execution_id,
                token,
                {
                    "status": status.value,
                    "completed_at": now,
                    "error": None if error is None else _dumps(error),
                    **_ENDED,
                },
            )

    def release(self, execution_id: str, token: int, *, now: datetime) -> None:
        with self._write() as conn:
            self._fenced(
                conn,
                execution_id,
                token,
                {
                    "status": "pending",
                    "run_at": now,
                    "claimable_at": now,
                    "lease_expires_at": None,
                    "worker_id": None,
                },
            )
            self._notify(conn)

    def request_cancel(
        self, execution_id: str, *, now: datetime, reason: str | None
    ) -> ExecutionRow:
        with self._write() as conn:
            m = (
                conn.execute(sa.select(ex).where(ex.c.id == execution_id).with_for_update())
                .mappings()
                .first()
            )
            if m is None:
                raise ExecutionNotFound(f"no execution with id {execution_id!r}")
            row = _row(m)
            if row.status in FINISHED:
                raise InvalidState(
                    f"execution {execution_id} already finished with status "
                    f"{row.status.value}; only pending, waiting or running executions "
                    "can be cancelled"
                )
            lease_live = row.lease_expires_at is not None and row.lease_expires_at > now
            values: dict[str, Any] = {"cancel_requested": True, "cancel_reason": reason}
            if not (row.status == Status.RUNNING and lease_live):
                values.update(status="cancelled", completed_at=now, **_ENDED)
            m = (
                conn.execute(
                    sa.update(ex).where(ex.c.id == execution_id).values(values).returning(*ex.c)
                )
                .mappings()
                .one()
            )
        return _row(m)
