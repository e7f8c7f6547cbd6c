"""``sqlite:///path``: the embedded default store.

Configured for durability and for several processes on one file: WAL journal (readers do
not block the writer), ``synchronous=FULL`` (a commit is on disk before it returns, so it
survives a killed process and a power cut), a busy timeout so writers wait for each other,
and ``BEGIN IMMEDIATE`` for every write transaction so two writers never deadlock on a
read lock they both hold.

URL options: ``?synchronous=normal`` (faster; survives a killed process, not a power cut),
``?busy_timeout_ms=5000``. The path is a URL path: ``%20`` is a space, as for SQLAlchemy,
so ``sqlite:///a%20b.db`` names the file ``a b.db`` for the engine, migrations and the CLI.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import sqlalchemy as sa
from sqlalchemy import event

from durable._text import redact_url
from durable.errors import ConfigError
from durable.stores.sql.store import ATTEMPT_COLUMNS, COLUMNS, WAIT_COLUMNS, SQLStore

__all__ = ["SQLiteStore"]

_SYNC = {"full": "FULL", "normal": "NORMAL", "extra": "EXTRA"}


# Times are stored as fixed-width ISO text ("0999-01-01 00:00:00.000000"), naive UTC,
# so text order is time order.


def _sql() -> dict[str, Any]:
    ended = (
        "run_at = NULL, lease_expires_at = NULL, worker_id = NULL, "
        "attempt_started_at = NULL, claimable_at = NULL, suspended = FALSE"
    )
    claimed = "WHERE id = :id AND token = :token AND status = 'running'"
    # A fenced write also refuses to apply twice: a retry of a transition whose first try
    # committed finds its own write id on the row (and the store reports it done).
    fence = f"{claimed} AND coalesce(last_write, '') <> :write_id"
    insert_attempt = (
        f"INSERT INTO durable_step_attempts ({ATTEMPT_COLUMNS}) VALUES (:a_execution_id, "
        ":a_step_index, :a_name, :a_attempt, :a_status, :a_started_at, :a_completed_at, "
        ":a_error, :a_logs, :a_max_attempts, :a_retry_at, :a_result)"
    )
    return {
        "create": (
            "INSERT INTO durable_executions (id, workflow, status, queue, priority, input, "
            "context, created_at, scheduled_at, run_at, timeout_ms, idempotency_key, "
            "step_index, step_name, attempt, token, cancel_requested, claimable_at, "
            "max_attempts) VALUES "
            "(:id, :workflow, :status, :queue, :priority, :input, :context, :created_at, "
            ":scheduled_at, :run_at, :timeout_ms, :idempotency_key, :step_index, :step_name, "
            ":attempt, :token, 0, :claimable_at, :max_attempts) "
            f"ON CONFLICT (idempotency_key) DO NOTHING RETURNING {COLUMNS}"
        ),
        "by_key": f"SELECT {COLUMNS} FROM durable_executions WHERE idempotency_key = :key",
        "get": f"SELECT {COLUMNS} FROM durable_executions WHERE id = :id",
        "has_migrations": (
            "SELECT count(*) FROM sqlite_master "
            "WHERE type = 'table' AND name = 'durable_migrations'"
        ),
        "schema_version": "SELECT coalesce(max(version), 0) FROM durable_migrations",
        "get_for_update": f"SELECT {COLUMNS} FROM durable_executions WHERE id = :id",
        "steps": (
            f"SELECT {ATTEMPT_COLUMNS} FROM durable_step_attempts "
            "WHERE execution_id = :id ORDER BY seq"
        ),
        "list": (
            f"SELECT {COLUMNS} FROM durable_executions WHERE 1 = 1 /*where*/ "
            "ORDER BY created_at DESC, seq DESC LIMIT :limit"
        ),
        "next_due": (
            "SELECT min(claimable_at) FROM durable_executions "
            "WHERE claimable_at IS NOT NULL /*where*/ HAVING min(claimable_at) IS NOT NULL"
        ),
        "claim": (
            "SELECT seq, attempt_started_at IS NULL FROM durable_executions "
            "WHERE claimable_at <= :now AND status IN ('pending', 'running', 'waiting') /*where*/ "
            "ORDER BY priority DESC, scheduled_at, created_at, seq LIMIT :limit",
            "UPDATE durable_executions SET status = 'running', token = token + 1, "
            "worker_id = :worker, lease_expires_at = :expires, claimable_at = :expires, "
            "run_at = NULL, started_at = coalesce(started_at, :now), "
            "attempt = CASE WHEN attempt_started_at IS NULL AND NOT suspended THEN attempt + 1 "
            "ELSE attempt END, "
            "attempt_started_at = coalesce(attempt_started_at, :now) "
            f"WHERE seq IN (/*seqs*/) RETURNING {COLUMNS}",
        ),
        # -- waits
        "wait_get": (
            f"SELECT {WAIT_COLUMNS} FROM durable_waits "
            "WHERE execution_id = :id AND step = :step AND wait_seq = :wseq"
        ),
        "wait_insert": (
            "INSERT INTO durable_waits (execution_id, step, wait_seq, attempt, kind, names, "
            "mode, until_at, status, created_at, prompt, input_schema) VALUES (:id, :step, "
            ":wseq, :attempt, :kind, :names, :mode, :until, 'pending', :now, :prompt, :schema) "
            f"RETURNING {WAIT_COLUMNS}"
        ),
        "wait_renew": (
            "UPDATE durable_waits SET attempt = :attempt, kind = :kind, names = :names, "
            "mode = :mode, until_at = :until, status = 'pending', created_at = :now, "
            "prompt = :prompt, input_schema = :schema, result = NULL, resolved_at = NULL "
            f"WHERE seq = :wid RETURNING {WAIT_COLUMNS}"
        ),
        "wait_set": (
            "UPDATE durable_waits SET status = :status, result = :result, "
            "resolved_at = :now WHERE seq = :wid AND status = 'pending'"
        ),
        "wait_suspended_on": (
            f"SELECT {WAIT_COLUMNS} FROM durable_waits WHERE execution_id = :id "
            "AND step = :step AND status = 'pending' ORDER BY wait_seq DESC LIMIT 1"
        ),
        "waits_list": (
            f"SELECT {', '.join('w.' + c for c in WAIT_COLUMNS.split(', '))}, e.workflow "
            "FROM durable_waits w JOIN durable_executions e ON e.id = w.execution_id "
            "WHERE 1 = 1 /*where*/ ORDER BY w.created_at, w.seq LIMIT :limit"
        ),
        "waits_open": " AND (w.until_at IS NULL OR w.until_at >= :open_at)",
        "inbox": (
            "SELECT seq, name, payload, sent_at FROM durable_events "
            "WHERE execution_id = :id AND consumed_at IS NULL AND name /*names*/ ORDER BY seq"
        ),
        "consume": "UPDATE durable_events SET consumed_at = :now WHERE seq /*in*/",
        "event_insert": (
            "INSERT INTO durable_events (execution_id, name, payload, sent_at) "
            "VALUES (:id, :name, :payload, :now)"
        ),
        "live": "SELECT status, step_name FROM durable_executions WHERE id = :id",
        "suspend": (
            "UPDATE durable_executions SET status = :status, run_at = :wake, "
            "claimable_at = :wake, lease_expires_at = NULL, worker_id = NULL, "
            "attempt_started_at = NULL, suspended = TRUE, last_write = :write_id, "
            f"lost_attempts = 0 {fence} AND NOT cancel_requested RETURNING status, deadline"
        ),
        "wake": (
            "UPDATE durable_executions SET status = 'pending', run_at = :now, "
            "claimable_at = :now WHERE id = :id AND status = 'waiting'"
        ),
        # -- retention
        "purge_pick": (
            # INDEXED BY: without ANALYZE statistics SQLite would take the status index and
            # sort every finished execution, under the write lock, for each batch
            "SELECT id FROM durable_executions INDEXED BY durable_executions_finished "
            "WHERE completed_at < :before "
            "AND status IN ('completed', 'failed', 'cancelled', 'compensated') /*where*/ "
            "ORDER BY completed_at, seq LIMIT :limit"
        ),
        "purge": (
            "DELETE FROM durable_events WHERE execution_id /*ids*/",
            "DELETE FROM durable_waits WHERE execution_id /*ids*/",
            "DELETE FROM durable_step_attempts WHERE execution_id /*ids*/",
            "DELETE FROM durable_executions WHERE id /*ids*/ RETURNING id",
        ),
        "set_deadline": "UPDATE durable_executions SET deadline = :deadline WHERE seq = :seq",
        "heartbeat": (
            "UPDATE durable_executions SET lease_expires_at = :expires, "
            f"claimable_at = :expires {claimed} RETURNING id"
        ),
        "insert_attempt": insert_attempt,
        "complete_next": (
            "UPDATE durable_executions SET context = :context, step_index = :next_index, "
            "step_name = :next_name, attempt = :next_attempt, suspended = FALSE, "
            "lost_attempts = 0, max_attempts = :next_max, last_write = :write_id, "
            f"attempt_started_at = :next_started {fence} AND NOT cancel_requested "
            "RETURNING status",
            insert_attempt,
        ),
        "complete_last": (
            "UPDATE durable_executions SET context = :context, status = 'completed', "
            f"completed_at = :now, last_write = :write_id, {ended} {fence} "
            "AND NOT cancel_requested RETURNING status",
            insert_attempt,
        ),
        "retry": (
            "UPDATE durable_executions SET status = 'pending', run_at = :retry_at, "
            "claimable_at = :retry_at, lease_expires_at = NULL, worker_id = NULL, "
            "suspended = FALSE, max_attempts = :a_max_attempts, last_write = :write_id, "
            f"attempt_started_at = NULL {fence} AND NOT cancel_requested RETURNING status",
            insert_attempt,
        ),
        "fail": (
            "UPDATE durable_executions SET status = 'failed', completed_at = :now, "
            f"error = :error, last_write = :write_id, {ended} {fence} "
            "AND NOT cancel_requested RETURNING status",
            insert_attempt,
        ),
        "restart": (
            "UPDATE durable_executions SET attempt_started_at = :now, "
            f"lost_attempts = lost_attempts + 1, last_write = :write_id {fence} "
            "RETURNING status",
            insert_attempt,
        ),
        "end": (
            "UPDATE durable_executions SET status = :status, completed_at = :now, "
            f"error = :error, last_write = :write_id, {ended} {fence} RETURNING status"
        ),
        "release": (
            "UPDATE durable_executions SET status = 'pending', run_at = :now, "
            "claimable_at = :now, lease_expires_at = NULL, worker_id = NULL, "
            "attempt = CASE WHEN :ran OR attempt_started_at IS NULL OR suspended THEN attempt "
            "ELSE attempt - 1 END, last_write = :write_id, "
            "attempt_started_at = CASE WHEN :ran THEN attempt_started_at ELSE NULL END "
            f"{fence} RETURNING status"
        ),
        "cancel": (
            "UPDATE durable_executions SET cancel_requested = 1, cancel_reason = :reason, "
            "status = CASE WHEN :at_once THEN 'cancelled' ELSE status END, "
            "completed_at = CASE WHEN :at_once THEN :now ELSE completed_at END, "
            "run_at = CASE WHEN :at_once THEN NULL ELSE run_at END, "
            "lease_expires_at = CASE WHEN :at_once THEN NULL ELSE lease_expires_at END, "
            "worker_id = CASE WHEN :at_once THEN NULL ELSE worker_id END, "
            "attempt_started_at = CASE WHEN :at_once THEN NULL ELSE attempt_started_at END, "
            "claimable_at = CASE WHEN :at_once THEN NULL ELSE claimable_at END, "
            "suspended = CASE WHEN :at_once THEN FALSE ELSE suspended END "
            f"WHERE id = :id RETURNING {COLUMNS}"
        ),
    }


class SQLiteStore(SQLStore):
    """A store in one SQLite file, shared safely by the processes on one host."""

    BEGIN = "BEGIN IMMEDIATE"  # take the write lock up front: writers queue, never deadlock
    SQL = _sql()

    def __init__(self, url: str, path: str, synchronous: str, busy_ms: int) -> None:
        super().__init__(url)
        self.path = path
        self._synchronous = synchronous
        self._busy_ms = busy_ms

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self._busy_ms / 1000
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
        return conn

    def _sa_url(self) -> str:
        return str(sa.engine.URL.create("sqlite+pysqlite", database=self.path))

    def _make_sa_engine(self) -> sa.Engine:
        engine = sa.create_engine(
            # built from the path, never re-parsed: the file is exactly self.path
            sa.engine.URL.create("sqlite+pysqlite", database=self.path),
            poolclass=sa.pool.NullPool,
            connect_args={"isolation_level": None, "timeout": self._busy_ms / 1000},
        )

        @event.listens_for(engine, "connect")
        def _configure(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")

        @event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            write = conn.get_execution_options().get("durable_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    def _ts(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

    def _dt(self, value: Any) -> datetime | None:
        if value is None:
            return None
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)

    def _in(self, name: str, values: Sequence[Any], params: dict[str, Any]) -> str:
        keys = [f"{name}{i}" for i in range(len(values))]
        params.update(zip(keys, values, strict=True))
        return "IN (" + ", ".join(f":{k}" for k in keys) + ")" if keys else "IN (NULL)"

    def _is_integrity_error(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.IntegrityError)


def open_sqlite(url: str) -> SQLiteStore:
    parts = urlsplit(url)
    if parts.netloc:
        raise ConfigError(
            f"a SQLite URL has three slashes then the path, like 'sqlite:///durable.db' or "
            f"'sqlite:////abs/path.db'; got {redact_url(url)!r}"
        )
    path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    if not path or path == ":memory:":
        raise ConfigError(
            f"{redact_url(url)!r} names no file; SQLite needs a file to be durable (use "
            "memory:// for a store that lives in this process only)"
        )
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(options) - {"synchronous", "busy_timeout_ms"}
    if unknown:
        raise ConfigError(
            f"unknown sqlite option(s) {sorted(unknown)} in {redact_url(url)!r}; "
            "use synchronous=full|normal|extra, busy_timeout_ms=N"
        )
    sync = _SYNC.get(options.get("synchronous", "full").lower())
    if sync is None:
        raise ConfigError(
            f"synchronous must be full, normal or extra, got {options['synchronous']!r}"
        )
    try:
        busy_ms = int(options.get("busy_timeout_ms", "30000"))
    except ValueError:
        raise ConfigError(f"busy_timeout_ms must be an int, in {redact_url(url)!r}") from None
    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        raise ConfigError(
            f"the folder of the SQLite file does not exist: {parent} (from {redact_url(url)!r})"
        )

    return SQLiteStore(url, str(Path(path).expanduser().resolve()), sync, busy_ms)
