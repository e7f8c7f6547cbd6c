"""The SQL store: each transition is one transaction of named, parameterised SQL.

The statements live as data in the dialect modules (``sqlite.py``, ``postgres.py``); this
module holds the logic they share. Hot transitions (start, claim, step completion, retry)
are a single statement on PostgreSQL (data-modifying CTEs in autocommit), so each costs one
round trip. Statements run on one DBAPI connection per thread, kept open. Every time
comparison uses the ``now`` the engine passes in, never the database's clock.
"""

from __future__ import annotations

import abc
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

import sqlalchemy as sa

from durable._limits import MIN_TIME
from durable._text import redact_url, scrub, url_secrets
from durable.durations import MAX_DURATION_MS
from durable.errors import DurableError, ExecutionNotFound, InvalidState, LeaseLost, StoreError
from durable.models import FINISHED, Status, StepExecution, StepStatus, Wait, WaitSpec
from durable.stores.base import (
    AlreadyDone,
    ExecutionRow,
    Store,
    as_cancelled,
    decide_wait,
    finished_error,
    input_too_late,
    not_live_error,
    not_pending_error,
    unreadable_error,
)
from durable.stores.sql import migrations
from durable.stores.sql.schema import SCHEMA_VERSION

__all__ = ["COLUMNS", "WAIT_COLUMNS", "SQLStore"]

T = TypeVar("T")

log = logging.getLogger("durable.stores.sql")

# The execution columns every statement that returns a row returns, in this order.
COLUMNS = (
    "seq, id, workflow, status, queue, priority, input, context, created_at, scheduled_at, "
    "run_at, timeout_ms, idempotency_key, started_at, completed_at, deadline, step_index, "
    "step_name, attempt, attempt_started_at, error, token, worker_id, lease_expires_at, "
    "cancel_requested, cancel_reason, suspended, last_write, lost_attempts, max_attempts"
)
WAIT_COLUMNS = (
    "seq, execution_id, step, wait_seq, attempt, kind, names, mode, until_at, status, "
    "created_at, prompt, input_schema, result, resolved_at"
)
ATTEMPT_COLUMNS = (
    "execution_id, step_index, name, attempt, status, started_at, completed_at, error, logs, "
    "max_attempts, retry_at, result"
)


# What "cannot be decoded" means: JSON that is broken (ValueError) or too deep to read
# (RecursionError), a date Python cannot hold (OverflowError, or ValueError for the
# PostgreSQL marker), an unknown status (ValueError). Anything else (MemoryError, a bug) is
# not the row's fault and must not fail it for good: it propagates.
_DECODING = (ValueError, TypeError, OverflowError, RecursionError)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _context(text: str) -> dict[str, Any]:
    context = json.loads(text)
    if not isinstance(context, dict):
        raise ValueError(f"a JSON {type(context).__name__}, not a JSON object")
    return context


class SQLStore(Store):
    """What the SQL stores share. Subclasses give the statements and the connections."""

    #: named statements in the driver's parameter style; a hot transition given as a pair
    #: is (fenced UPDATE ... RETURNING status, INSERT of the attempt record)
    SQL: ClassVar[dict[str, Any]] = {}

    def __init__(self, url: str) -> None:
        self.url = url
        self._secrets = url_secrets(url)  # scrubbed from every error message
        self._local = threading.local()
        self._all: list[tuple[threading.Thread, Any]] = []
        self._all_lock = threading.Lock()
        self._subscribers: list[Callable[[], None]] = []
        self._sub_lock = threading.Lock()
        self._sa_engine: sa.Engine | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact_url(self.url)!r})"

    @property
    def dialect(self) -> str:
        """The SQL dialect: ``sqlite`` or ``postgresql``."""
        return self.sa_engine().dialect.name

    # -- what a dialect provides ---------------------------------------------------------

    @abc.abstractmethod
    def _connect(self) -> Any:
        """A new DBAPI connection in autocommit mode."""

    @abc.abstractmethod
    def _sa_url(self) -> str:
        """The SQLAlchemy URL, for migrations."""

    #: how a write transaction begins
    BEGIN = "BEGIN"
    #: whether the hot single-row transitions need an explicit transaction: on PostgreSQL
    #: each is one statement (so one transaction by itself); SQLite needs two statements
    HOT_IN_TRANSACTION = True

    def _ts(self, value: datetime | None) -> Any:
        """A datetime as the driver binds it."""
        return value

    @abc.abstractmethod
    def _dt(self, value: Any) -> datetime | None:
        """A stored time back as an aware UTC datetime."""

    @abc.abstractmethod
    def _in(self, name: str, values: Sequence[Any], params: dict[str, Any]) -> str:
        """SQL for ``IN values`` (binding the values into params)."""

    def _is_disconnect(self, exc: Exception) -> bool:
        return False

    def _notify(self, cur: Any) -> None:
        """Tell idle workers (other processes too) to look for work."""

    def _after_write(self) -> None:
        """Called after a retry or a release made work available (to NOTIFY other
        processes; a start notifies within its own statement)."""

    # -- connections ---------------------------------------------------------------------

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = self._connect()
            except Exception as exc:
                raise StoreError(scrub(f"{self!r}: cannot connect: {exc}", self._secrets)) from exc
            self._local.conn = conn
            with self._all_lock:
                ended = [c for t, c in self._all if not t.is_alive()]
                self._all = [(t, c) for t, c in self._all if t.is_alive()]
                self._all.append((threading.current_thread(), conn))
            for old in ended:
                with suppress(Exception):
                    old.close()
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with suppress(Exception):
                conn.close()

    @contextmanager
    def _cursor(self, *, write: bool) -> Iterator[Any]:
        """A cursor; with ``write`` inside one explicit transaction (BEGIN ... COMMIT, or
        ROLLBACK on error), else in autocommit, where each statement is its own."""
        conn = self._conn()
        try:
            cur = conn.cursor()
            try:
                if write:
                    cur.execute(self.BEGIN)
                try:
                    yield cur
                    if write:
                        cur.execute("COMMIT")
                except BaseException:
                    if write:
                        with suppress(Exception):
                            cur.execute("ROLLBACK")
                    raise
            finally:
                with suppress(Exception):
                    cur.close()
        except (DurableError, AlreadyDone):
            raise  # ours (a lost claim, a refused input...): already says what is wrong
        except Exception as exc:
            if self._is_integrity_error(exc):
                raise
            if self._is_disconnect(exc):
                self._drop()
            raise StoreError(scrub(f"{self!r}: {exc!r}", self._secrets)) from exc

    def _is_integrity_error(self, exc: Exception) -> bool:
        return False

    def _one(self, name: str, params: dict[str, Any]) -> Any:
        """One row of a single-statement read or start (autocommit)."""
        with self._cursor(write=False) as cur:
            cur.execute(self.SQL[name], params)
            return cur.fetchone()

    def _wake_others(self) -> None:
        """NOTIFY after a committed transition; a failure here must not turn the committed
        change into an error (workers also poll)."""
        try:
            self._after_write()
        except Exception as exc:
            log.warning("durable: could not notify workers (%r); they will poll", exc)

    def _retry_once(self, fn: Callable[[], T]) -> T:
        """Run fn; if its connection turned out dead (e.g. the server restarted since it
        was last used), run it once more on a new connection. Only for reads and for
        writes that are safe to repeat."""
        try:
            return fn()
        except StoreError as exc:
            cause = exc.__cause__
            if not isinstance(cause, Exception) or not self._is_disconnect(cause):
                raise
            log.info("durable: %r lost its connection (%r); retrying on a new one", self, exc)
            return fn()

    # -- rows ----------------------------------------------------------------------------

    def _row(self, r: Sequence[Any]) -> ExecutionRow:
        """The row decoded; a row that does not decode (a value nested past Python's
        recursion limit, a date past year 9999, text that is not JSON) comes back with
        those fields empty and ``unreadable`` saying why, instead of failing the read."""
        try:
            return self._decode(r, None)
        except _DECODING:  # a value this process cannot read: note each one that fails
            problems: list[str] = []
            row = self._decode(r, problems)
            row.unreadable = tuple(problems)
            return row

    def _decode(self, r: Sequence[Any], problems: list[str] | None) -> ExecutionRow:
        """Decode ``r``. With ``problems`` (a list), a field that does not decode is noted
        there and left empty; without, its error is raised."""

        def field(name: str, decode: Callable[[Any], Any], i: int, default: Any) -> Any:
            if problems is None:
                return decode(r[i])
            try:
                return decode(r[i])
            except _DECODING as exc:
                why = "nested too deep to read" if isinstance(exc, RecursionError) else exc
                problems.append(f"{name}: {why}")
                return default

        dt = self._dt
        return ExecutionRow(
            seq=r[0],
            id=r[1],
            workflow=r[2],
            status=field("status", Status, 3, Status.FAILED),
            queue=r[4],
            priority=r[5],
            input=field("input", _loads, 6, None),
            context=field("context", _context, 7, {}),
            created_at=field("created_at", dt, 8, MIN_TIME),
            scheduled_at=field("scheduled_at", dt, 9, MIN_TIME),
            run_at=field("run_at", dt, 10, None),
            timeout_ms=r[11],
            idempotency_key=r[12],
            started_at=field("started_at", dt, 13, None),
            completed_at=field("completed_at", dt, 14, None),
            deadline=field("deadline", dt, 15, None),
            step_index=r[16],
            step_name=r[17],
            attempt=r[18],
            attempt_started_at=field("attempt_started_at", dt, 19, None),
            error=field("error", _loads, 20, None),
            token=r[21],
            worker_id=r[22],
            lease_expires_at=field("lease_expires_at", dt, 23, None),
            cancel_requested=bool(r[24]),
            cancel_reason=r[25],
            suspended=bool(r[26]),
            last_write=r[27],
            lost_attempts=r[28],
            max_attempts=r[29],
        )

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

    def _attempt_params(self, execution_id: str, r: StepExecution) -> dict[str, Any]:
        return {
            "a_execution_id": execution_id,
            "a_step_index": r.index,
            "a_name": r.name,
            "a_attempt": r.attempt,
            "a_status": r.status.value,
            "a_started_at": self._ts(r.started_at),
            "a_completed_at": self._ts(r.completed_at),
            "a_error": None if r.error is None else _dumps(r.error),
            "a_logs": _dumps(r.logs),
            "a_max_attempts": r.max_attempts,
            "a_retry_at": self._ts(r.retry_at),
            "a_result": None if r.result is None else _dumps(r.result),
        }

    # -- schema and lifecycle ------------------------------------------------------------

    def sa_engine(self) -> sa.Engine:
        """A SQLAlchemy engine on the same database (migrations, tests, tools)."""
        if self._sa_engine is None:
            self._sa_engine = self._make_sa_engine()
        return self._sa_engine

    def _make_sa_engine(self) -> sa.Engine:
        return sa.create_engine(self._sa_url())

    @property
    def engine(self) -> sa.Engine:
        """Alias of :meth:`sa_engine`."""
        return self.sa_engine()

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
            if not self._one("has_migrations", {})[0]:
                return 0
            return int(self._one("schema_version", {})[0])

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

    def subscribe(self, callback: Callable[[], None]) -> None:
        with self._sub_lock:
            self._subscribers.append(callback)

    def _wake_subscribers(self) -> None:
        with self._sub_lock:
            callbacks = list(self._subscribers)
        for cb in callbacks:
            cb()

    def server_time(self) -> datetime | None:
        sql = self.SQL.get("server_time")
        if sql is None:
            return None
        return self._dt(self._retry_once(lambda: self._one("server_time", {}))[0])

    def close(self) -> None:
        """Close this thread's connection and those of threads that have ended.

        A connection of a thread that still runs is left to that thread (closing it under
        a running statement would crash the driver); it closes when the thread ends.
        """
        me = threading.current_thread()
        with self._all_lock:
            mine = [c for t, c in self._all if t is me or not t.is_alive()]
            self._all = [(t, c) for t, c in self._all if t is not me and t.is_alive()]
        for conn in mine:
            with suppress(Exception):
                conn.close()
        self._local.conn = None
        if self._sa_engine is not None:
            self._sa_engine.dispose()

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
        """In an open write transaction: discard the attempt, end as cancelled."""
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
        return Status.CANCELLED

    # -- starting and reading ------------------------------------------------------------

    def create(self, row: ExecutionRow) -> tuple[ExecutionRow, bool]:
        params = {
            "id": row.id,
            "workflow": row.workflow,
            "status": row.status.value,
            "queue": row.queue,
            "priority": row.priority,
            "input": _dumps(row.input),
            "context": _dumps(row.context),
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
        }
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

    def get(self, execution_id: str) -> ExecutionRow | None:
        r = self._retry_once(lambda: self._one("get", {"id": execution_id}))
        return None if r is None else self._row(r)

    def _all_rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        def read() -> list[Any]:
            with self._cursor(write=False) as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())

        return self._retry_once(read)

    def steps(self, execution_id: str) -> list[StepExecution]:
        rows = self._all_rows(self.SQL["steps"], {"id": execution_id})
        dt = self._dt
        return [
            StepExecution(
                name=r[2],
                status=StepStatus(r[4]),
                attempt=r[3],
                started_at=dt(r[5]),  # type: ignore[arg-type]
                completed_at=dt(r[6]),
                error=_loads(r[7]),
                logs=_loads(r[8]),
                index=r[1],
                max_attempts=r[9],
                retry_at=dt(r[10]),
                result=_loads(r[11]),
            )
            for r in rows
        ]

    def _filters(
        self,
        params: dict[str, Any],
        workflows: Sequence[str] | None,
        queues: Sequence[str] | None,
        statuses: Sequence[str] | None = None,
    ) -> str:
        # Only fixed fragments and placeholders go into the SQL text; values are bound.
        where = ""
        if workflows is not None:
            where += " AND workflow " + self._in("wf", list(workflows), params)
        if queues is not None:
            where += " AND queue " + self._in("q", list(queues), params)
        if statuses is not None:
            where += " AND status " + self._in("st", list(statuses), params)
        return where

    def list_executions(
        self,
        *,
        workflows: Sequence[str] | None,
        statuses: Sequence[Status] | None,
        queues: Sequence[str] | None,
        limit: int,
    ) -> list[ExecutionRow]:
        params: dict[str, Any] = {"limit": limit}
        where = self._filters(
            params, workflows, queues, None if statuses is None else [s.value for s in statuses]
        )
        sql = self.SQL["list"].replace("/*where*/", where)
        return [self._row(r) for r in self._all_rows(sql, params)]

    def next_due(
        self, *, queues: Sequence[str] | None, workflows: Sequence[str] | None
    ) -> datetime | None:
        params: dict[str, Any] = {}
        sql = self.SQL["next_due"].replace("/*where*/", self._filters(params, workflows, queues))
        found = self._all_rows(sql, params)
        return self._dt(found[0][0]) if found else None

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
        rows: list[ExecutionRow] = []
        while len(rows) < limit:
            want = limit - len(rows)
            got, failed = self._claim_batch(queues, workflows, worker_id, now, lease_ms, want)
            rows.extend(got)
            if not failed:  # else rows it could not read took places: claim for them again
                break
        rows.sort(key=lambda r: (-r.priority, r.scheduled_at, r.created_at, r.seq))
        return rows

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
        params: dict[str, Any] = {
            "now": self._ts(now),
            "expires": self._ts(now + timedelta(milliseconds=lease_ms)),
            "worker": worker_id,
            "limit": limit,
        }
        where = self._filters(params, workflows, queues)
        sql = self.SQL["claim"]
        failed = 0
        with self._cursor(write=self.HOT_IN_TRANSACTION) as cur:
            if isinstance(sql, tuple):  # select the candidates, then update them
                cur.execute(sql[0].replace("/*where*/", where), params)
                fresh = {seq: bool(f) for seq, f in cur.fetchall()}
                if not fresh:
                    return [], 0
                seqs = self._in("seq", list(fresh), params)[len("IN (") : -1]
                cur.execute(sql[1].replace("/*seqs*/", seqs), params)
                found = [(*r, fresh[r[0]]) for r in cur.fetchall()]
            else:  # one statement that returns the fresh flag last
                cur.execute(sql.replace("/*where*/", where), params)
                found = cur.fetchall()
            rows = []
            for values in found:
                claimed = self._row(values)
                claimed.began = bool(values[-1])
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
                    # One row this process cannot decode must not stop the others: fail it
                    # (fenced by the token just taken), keep what is stored, go on.
                    self._fail_unreadable(cur, claimed, now)
                    failed += 1
                    continue
                rows.append(claimed)
        return rows, failed

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
                "error": _dumps(unreadable_error(row.id, row.unreadable)),
                "write_id": uuid.uuid4().hex,
            },
        )
        cur.fetchall()

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
        write_id: str | None = None,
    ) -> Status:
        params = self._fenced_params(execution_id, token, now, write_id, record)
        params["context"] = _dumps(context)
        if next_step is None:
            name = "complete_last"
        else:
            name = "complete_next"
            params.update(
                next_index=next_step[0],
                next_name=next_step[1],
                next_attempt=1 if start_next else 0,
                next_started=self._ts(now) if start_next else None,
                next_max=next_max_attempts,
            )
        return self._fenced_with_record(name, params, execution_id, token, record, now)

    def _fenced_with_record(
        self,
        name: str,
        params: dict[str, Any],
        execution_id: str,
        token: int,
        record: StepExecution | None,
        now: datetime,
    ) -> Status:
        """Run a fenced update that also stores the attempt record; on no match, find out
        why (lost claim, or a cancel requested: then the result is discarded)."""
        sql = self.SQL[name]
        with self._cursor(write=self.HOT_IN_TRANSACTION) as cur:
            if isinstance(sql, tuple):
                cur.execute(sql[0], params)
                found = cur.fetchone()
                if found is not None:
                    cur.execute(sql[1], params)
            else:
                cur.execute(sql, params)
                found = cur.fetchone()
        if found is not None:
            return Status(found[0])
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
        params["error"] = _dumps(error)
        return self._fenced_with_record("fail", params, execution_id, token, record, now)

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
            "error": None if error is None else _dumps(error),
            "write_id": write_id or uuid.uuid4().hex,
        }

        def also_record(cur: Any) -> None:
            if record is not None:
                cur.execute(self.SQL["insert_attempt"], self._attempt_params(execution_id, record))

        self._fenced_write("end", params, execution_id, token, also_record)

    def release(
        self,
        execution_id: str,
        token: int,
        *,
        now: datetime,
        attempt_ran: bool,
        write_id: str | None = None,
    ) -> None:
        params = {
            "id": execution_id,
            "token": token,
            "now": self._ts(now),
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

    def _wait_row(self, r: Sequence[Any], workflow: str = "") -> Wait:
        dt = self._dt
        return Wait(
            execution_id=r[1],
            workflow=workflow,
            step=r[2],
            seq=r[3],
            kind=r[5],
            names=tuple(_loads(r[6])),
            mode=r[7],
            until=dt(r[8]),
            status=r[9],
            created_at=dt(r[10]),  # type: ignore[arg-type]
            prompt=r[11],
            schema=_loads(r[12]),
            result=_loads(r[13]),
            resolved_at=dt(r[14]),
        )

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

    def _decide(self, cur: Any, r: Sequence[Any], now: datetime) -> Sequence[Any]:
        """Decide a pending wait row in an open transaction; returns the row as it is now."""
        if r[9] != "pending":
            return r
        names = _loads(r[6])
        inbox = []
        if r[5] == "event":  # only events come through the inbox
            params: dict[str, Any] = {"id": r[1]}
            sql = self.SQL["inbox"].replace("/*names*/", self._in("n", names, params))
            cur.execute(sql, params)
            inbox = [(seq, name, _loads(p), self._dt(at)) for seq, name, p, at in cur.fetchall()]
        d = decide_wait(r[5], r[7], names, self._dt(r[8]), now, inbox)  # type: ignore[arg-type]
        if d.status == "pending":
            return r
        result = None if d.result is None else _dumps(d.result)
        cur.execute(
            self.SQL["wait_set"],
            {"wid": r[0], "status": d.status, "result": result, "now": self._ts(now)},
        )
        if d.consumed:
            consume: dict[str, Any] = {"now": self._ts(now)}
            cur.execute(
                self.SQL["consume"].replace("/*in*/", self._in("ev", list(d.consumed), consume)),
                consume,
            )
        out = list(r)
        out[9], out[13], out[14] = d.status, result, self._ts(now)
        return out

    def wait(
        self,
        execution_id: str,
        token: int,
        *,
        now: datetime,
        step: str,
        seq: int,
        attempt: int,
        spec: WaitSpec,
    ) -> Wait:
        key = {"id": execution_id, "step": step, "wseq": seq}
        fields = {
            "attempt": attempt,
            "kind": spec.kind,
            "names": _dumps(list(spec.names)),
            "mode": spec.mode,
            "until": self._ts(spec.deadline(now)),
            "now": self._ts(now),
            "prompt": spec.prompt,
            "schema": None if spec.schema is None else _dumps(spec.schema),
        }
        with self._cursor(write=True) as cur:
            workflow = self._fence_row(cur, execution_id, token).workflow
            cur.execute(self.SQL["wait_get"], key)
            r = cur.fetchone()
            if r is None:
                cur.execute(self.SQL["wait_insert"], {**key, **fields})
                r = cur.fetchone()
            elif (r[5], tuple(_loads(r[6])), r[7]) != (spec.kind, spec.names, spec.mode) or (
                r[9] == "timed_out" and r[4] != attempt
            ):
                cur.execute(self.SQL["wait_renew"], {"wid": r[0], **fields})
                r = cur.fetchone()
            r = self._decide(cur, r, now)
        return self._wait_row(r, workflow)

    def suspend(
        self,
        execution_id: str,
        token: int,
        *,
        now: datetime,
        record: StepExecution,
        step: str,
        seq: int,
        write_id: str | None = None,
    ) -> Status:
        write_id = write_id or uuid.uuid4().hex
        try:
            return self._suspend(execution_id, token, now, record, step, seq, write_id)
        except AlreadyDone as done:
            return done.row.status

    def _suspend(
        self,
        execution_id: str,
        token: int,
        now: datetime,
        record: StepExecution,
        step: str,
        seq: int,
        write_id: str,
    ) -> Status:
        with self._cursor(write=True) as cur:
            row = self._fence_row(cur, execution_id, token, write_id)
            if row.cancel_requested:
                return self._cancel_at_checkpoint(cur, execution_id, token, record, now, write_id)
            cur.execute(self.SQL["wait_get"], {"id": execution_id, "step": step, "wseq": seq})
            w = self._decide(cur, cur.fetchone(), now)
            deadline = row.deadline
            wake: datetime | None = now
            if w[9] != "pending":
                status = Status.PENDING
            else:
                timers = [t for t in (self._dt(w[8]), deadline) if t is not None]
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

    def _live(self, cur: Any, execution_id: str) -> tuple[Status, str | None]:
        cur.execute(self.SQL["live"], {"id": execution_id})
        found = cur.fetchone()
        if found is None:
            raise ExecutionNotFound(f"no execution with id {execution_id!r}")
        status = Status(found[0])
        if status in FINISHED:
            raise not_live_error(execution_id, status)
        return status, found[1]

    def _suspended_on(self, cur: Any, execution_id: str, step: str | None) -> Any:
        cur.execute(self.SQL["wait_suspended_on"], {"id": execution_id, "step": step})
        return cur.fetchone()

    def send_event(self, execution_id: str, name: str, payload: Any, *, now: datetime) -> bool:
        woke = False
        with self._cursor(write=True) as cur:
            status, step = self._live(cur, execution_id)
            cur.execute(
                self.SQL["event_insert"],
                {
                    "id": execution_id,
                    "name": name,
                    "payload": _dumps(payload),
                    "now": self._ts(now),
                },
            )
            if status == Status.WAITING:
                w = self._suspended_on(cur, execution_id, step)
                if w is not None and self._decide(cur, w, now)[9] != "pending":
                    cur.execute(self.SQL["wake"], {"id": execution_id, "now": self._ts(now)})
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
        validate: Callable[[dict[str, Any] | None], None] | None = None,
    ) -> None:
        with self._cursor(write=True) as cur:
            status, step = self._live(cur, execution_id)
            w = self._suspended_on(cur, execution_id, step)
            asked = [] if w is None or w[5] != "input" else _loads(w[6])
            if name not in asked:
                raise not_pending_error(execution_id, name, asked)
            until = self._dt(w[8])
            if until is not None and until < now:
                raise input_too_late(execution_id, name, until)
            if validate is not None:
                validate(_loads(w[12]))
            cur.execute(
                self.SQL["wait_set"],
                {"wid": w[0], "status": "resolved", "result": _dumps(data), "now": self._ts(now)},
            )
            if status == Status.WAITING:
                cur.execute(self.SQL["wake"], {"id": execution_id, "now": self._ts(now)})
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
        params: dict[str, Any] = {"limit": limit}
        where = ""
        if workflow is not None:
            where += " AND e.workflow " + self._in("wf", [workflow], params)
        if open_at is not None:
            params["open_at"] = self._ts(open_at)
            where += self.SQL["waits_open"]
        if execution_id is not None:
            where += " AND w.execution_id " + self._in("eid", [execution_id], params)
        if kind is not None:
            where += " AND w.kind " + self._in("kind", [kind], params)
        if pending_only:
            where += " AND w.status = 'pending' AND e.status " + self._in(
                "live", [s.value for s in Status if s not in FINISHED], params
            )
        rows = self._all_rows(self.SQL["waits_list"].replace("/*where*/", where), params)
        return [self._wait_row(r, r[15]) for r in rows]

    def purge(
        self, *, finished_before: datetime, workflows: Sequence[str] | None, limit: int
    ) -> list[str]:
        params: dict[str, Any] = {"before": self._ts(finished_before), "limit": limit}
        where = self._filters(params, workflows, None)
        with self._cursor(write=True) as cur:
            cur.execute(self.SQL["purge_pick"].replace("/*where*/", where), params)
            picked = [r[0] for r in cur.fetchall()]
            if not picked:
                return []
            bound: dict[str, Any] = {}
            in_ids = self._in("pid", picked, bound)
            for sql in self.SQL["purge"]:
                cur.execute(sql.replace("/*ids*/", in_ids), bound)
            deleted = {r[0] for r in cur.fetchall()}  # the last statement returns its ids
        return [eid for eid in picked if eid in deleted]

    def request_cancel(
        self, execution_id: str, *, now: datetime, reason: str | None
    ) -> ExecutionRow:
        with self._cursor(write=True) as cur:
            cur.execute(self.SQL["get_for_update"], {"id": execution_id})
            found = cur.fetchone()
            if found is None:
                raise ExecutionNotFound(f"no execution with id {execution_id!r}")
            row = self._row(found)
            if row.status in FINISHED:
                raise finished_error(execution_id, row.status)
            lease_live = row.lease_expires_at is not None and row.lease_expires_at > now
            at_once = not (row.status == Status.RUNNING and lease_live)
            cur.execute(
                self.SQL["cancel"],
                {"id": execution_id, "reason": reason, "now": self._ts(now), "at_once": at_once},
            )
            return self._row(cur.fetchone())
