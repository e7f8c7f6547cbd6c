"""``postgresql://...``: many workers on many hosts sharing one database.

Claims take several rows per query with ``FOR UPDATE SKIP LOCKED``; commits that make work
available send ``NOTIFY durable_work`` and each engine LISTENs on one dedicated connection,
so idle workers wake at once; polling is only the fallback. Connections are checked before
use, so a restarted server needs no operator action.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa

from durable._text import redact_url
from durable.durations import MAX_DURATION_MS
from durable.errors import ConfigError
from durable.stores.sql.sqlite import _sql as sqlite_sql
from durable.stores.sql.store import ATTEMPT_COLUMNS, COLUMNS, SQLStore

if TYPE_CHECKING:
    import psycopg


def _psycopg() -> Any:
    """psycopg, imported on first use: durable installs without the postgres extra."""
    try:
        import psycopg
    except ImportError as exc:
        raise ConfigError(
            "postgresql:// stores need psycopg 3: pip install 'durable-engine[postgres]'"
        ) from exc
    return psycopg


__all__ = ["PostgresStore"]

log = logging.getLogger("durable.stores.postgres")

CHANNEL = "durable_work"


def _pyformat(sql: str) -> str:
    """``:name`` placeholders as psycopg's ``%(name)s`` (our SQL has no ``::`` casts)."""
    return re.sub(r"(?<![:\w]):([a-z_][a-z0-9_]*)", r"%(\1)s", sql)


def _sql() -> dict[str, Any]:
    shared = {
        name: tuple(map(_pyformat, sql)) if isinstance(sql, tuple) else _pyformat(sql)
        for name, sql in sqlite_sql().items()
    }
    fence = (
        "WHERE id = %(id)s AND token = %(token)s AND status = 'running' "
        "AND coalesce(last_write, '') <> %(write_id)s"
    )
    ended = (
        "run_at = NULL, lease_expires_at = NULL, worker_id = NULL, "
        "attempt_started_at = NULL, claimable_at = NULL, suspended = FALSE"
    )
    record = (
        f"INSERT INTO durable_step_attempts ({ATTEMPT_COLUMNS}) SELECT %(a_execution_id)s, "
        "%(a_step_index)s, %(a_name)s, %(a_attempt)s, %(a_status)s, %(a_started_at)s, "
        "%(a_completed_at)s, %(a_error)s, %(a_logs)s, %(a_max_attempts)s, %(a_retry_at)s, "
        "%(a_result)s FROM u RETURNING (SELECT status FROM u)"
    )

    def with_record(update: str) -> str:
        # One statement: the fenced update and the attempt record commit together.
        return f"WITH u AS ({update} {fence} AND NOT cancel_requested RETURNING status) {record}"

    return {
        **shared,
        # to_regclass resolves through search_path, as the store's own statements do.
        "has_migrations": (
            "SELECT CASE WHEN to_regclass('durable_migrations') IS NULL THEN 0 ELSE 1 END"
        ),
        "create": (
            "WITH i AS (INSERT INTO durable_executions (id, workflow, status, queue, "
            "priority, input, context, created_at, scheduled_at, run_at, timeout_ms, "
            "idempotency_key, step_index, step_name, attempt, token, cancel_requested, "
            "claimable_at, max_attempts) VALUES (%(id)s, %(workflow)s, %(status)s, "
            "%(queue)s, %(priority)s, %(input)s, %(context)s, %(created_at)s, "
            "%(scheduled_at)s, %(run_at)s, %(timeout_ms)s, %(idempotency_key)s, "
            "%(step_index)s, %(step_name)s, %(attempt)s, %(token)s, FALSE, "
            "%(claimable_at)s, %(max_attempts)s) "
            f"ON CONFLICT (idempotency_key) DO NOTHING RETURNING {COLUMNS}), "
            f"n AS (SELECT pg_notify('{CHANNEL}', '')) SELECT i.* FROM i, n"
        ),
        "get_for_update": f"SELECT {COLUMNS} FROM durable_executions WHERE id = %(id)s FOR UPDATE",
        "live": "SELECT status, step_name FROM durable_executions WHERE id = %(id)s FOR UPDATE",
        "claim": (
            # c remembers, before the update, whether an attempt was in flight
            "WITH c AS (SELECT seq, attempt_started_at IS NULL AS fresh "
            "FROM durable_executions WHERE claimable_at <= %(now)s "
            "AND status IN ('pending', 'running', 'waiting') /*where*/ "
            "ORDER BY priority DESC, scheduled_at, created_at, seq LIMIT %(limit)s "
            "FOR UPDATE SKIP LOCKED) "
            "UPDATE durable_executions AS e SET status = 'running', token = token + 1, "
            "worker_id = %(worker)s, lease_expires_at = %(expires)s, "
            "claimable_at = %(expires)s, run_at = NULL, "
            "started_at = coalesce(started_at, %(now)s), "
            # a timeout past what a store holds (written by an older version) is left for
            # the claim to fail that row alone, not computed: it could overflow the interval
            "deadline = CASE WHEN deadline IS NULL AND timeout_ms IS NOT NULL "
            f"AND timeout_ms <= {MAX_DURATION_MS} "
            "THEN %(now)s + timeout_ms * INTERVAL '1 millisecond' ELSE deadline END, "
            "attempt = CASE WHEN attempt_started_at IS NULL AND NOT suspended THEN attempt + 1 "
            "ELSE attempt END, "
            "attempt_started_at = coalesce(attempt_started_at, %(now)s) "
            "FROM c WHERE e.seq = c.seq RETURNING "
            + ", ".join(f"e.{col}" for col in COLUMNS.split(", "))
            + ", c.fresh"
        ),
        "complete_next": with_record(
            "UPDATE durable_executions SET context = %(context)s, "
            "step_index = %(next_index)s, step_name = %(next_name)s, suspended = FALSE, "
            "attempt = %(next_attempt)s, attempt_started_at = %(next_started)s, "
            "lost_attempts = 0, max_attempts = %(next_max)s, last_write = %(write_id)s"
        ),
        "complete_last": with_record(
            "UPDATE durable_executions SET context = %(context)s, status = 'completed', "
            f"completed_at = %(now)s, last_write = %(write_id)s, {ended}"
        ),
        "retry": with_record(
            "UPDATE durable_executions SET status = 'pending', run_at = %(retry_at)s, "
            "claimable_at = %(retry_at)s, lease_expires_at = NULL, worker_id = NULL, "
            "attempt_started_at = NULL, suspended = FALSE, "
            "max_attempts = %(a_max_attempts)s, last_write = %(write_id)s"
        ),
        "fail": with_record(
            "UPDATE durable_executions SET status = 'failed', completed_at = %(now)s, "
            f"error = %(error)s, last_write = %(write_id)s, {ended}"
        ),
        "restart": (
            "WITH u AS (UPDATE durable_executions SET attempt_started_at = %(now)s, "
            "lost_attempts = lost_attempts + 1, last_write = %(write_id)s "
            f"{fence} RETURNING status) {record}"
        ),
        "cancel": str(shared["cancel"]).replace("cancel_requested = 1", "cancel_requested = TRUE"),
        # the server's clock, to compare a worker's with (never used for a decision in SQL)
        "server_time": "SELECT clock_timestamp()",
        # two purges at once take different rows (no INDEXED BY here: the planner uses it)
        "purge_pick": str(shared["purge_pick"]).replace(
            " INDEXED BY durable_executions_finished", ""
        )
        + " FOR UPDATE SKIP LOCKED",
    }


OUT_OF_RANGE: Any = type("OutOfRange", (), {"__repr__": lambda _: "<date out of range>"})()


def _load_dates_safely(conn: Any) -> None:
    """Make a timestamptz Python cannot hold (after the year 9999) load as OUT_OF_RANGE
    instead of failing the whole fetch: one such row must not stop a claim of several."""
    pg = _psycopg()
    from psycopg.adapt import Loader
    from psycopg.pq import Format

    oid = conn.adapters.types["timestamptz"].oid
    inner_cls = conn.adapters.get_loader(oid, Format.TEXT)

    class SafeTimestamptzLoader(Loader):
        def __init__(self, oid: int, context: Any = None) -> None:
            super().__init__(oid, context)
            self._inner = inner_cls(oid, context)

        def load(self, data: Any) -> Any:
            try:
                return self._inner.load(data)
            except pg.DataError:
                return OUT_OF_RANGE

    conn.adapters.register_loader(oid, SafeTimestamptzLoader)


class PostgresStore(SQLStore):
    """A store in PostgreSQL, for any number of worker processes."""

    SQL = _sql()
    HOT_IN_TRANSACTION = False  # each hot transition is a single statement

    def __init__(self, url: str, dsn: str) -> None:
        super().__init__(url)
        self._dsn = dsn
        self._listener: threading.Thread | None = None
        self._closed = threading.Event()

    def _connect(self) -> psycopg.Connection[Any]:
        pg = _psycopg()
        # Keep what the URL sets (search_path, sslmode, ...); add UTC to its options.
        params = pg.conninfo.conninfo_to_dict(self._dsn)
        params["options"] = f"{params.get('options', '')} -c TimeZone=UTC".strip()
        params.setdefault("connect_timeout", "10")
        params.setdefault("application_name", "durable")
        conn: psycopg.Connection[Any] = pg.connect(autocommit=True, **params)
        _load_dates_safely(conn)
        return conn

    def _sa_url(self) -> str:
        return self._dsn.replace("postgresql://", "postgresql+psycopg://", 1)

    def _make_sa_engine(self) -> sa.Engine:
        return sa.create_engine(self._sa_url(), pool_pre_ping=True)

    def _dt(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if value is OUT_OF_RANGE:
            raise ValueError("a date outside the years 1 to 9999, which Python cannot hold")
        return value.astimezone(UTC)  # type: ignore[no-any-return]

    def _in(self, name: str, values: Sequence[Any], params: dict[str, Any]) -> str:
        params[name] = list(values)
        return f"= ANY(%({name})s)"

    def _is_integrity_error(self, exc: Exception) -> bool:
        return isinstance(exc, _psycopg().errors.IntegrityError)

    def _is_disconnect(self, exc: Exception) -> bool:
        conn = getattr(self._local, "conn", None)
        return isinstance(exc, _psycopg().OperationalError) or (conn is not None and conn.broken)

    def _after_write(self) -> None:
        with self._cursor(write=False) as cur:
            cur.execute(f"SELECT pg_notify('{CHANNEL}', '')")

    def subscribe(self, callback: Callable[[], None]) -> None:
        super().subscribe(callback)
        if self._listener is None:
            self._listener = threading.Thread(
                target=self._listen, name="durable-pg-listen", daemon=True
            )
            self._listener.start()

    def _listen(self) -> None:
        backoff = 0.1
        while not self._closed.is_set():
            try:
                with _psycopg().connect(
                    self._dsn, autocommit=True, application_name="durable-listen"
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    backoff = 0.1
                    self._wake_subscribers()  # we may have missed something while away
                    while not self._closed.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self._wake_subscribers()
            except _psycopg().Error as exc:
                if self._closed.is_set():
                    return
                log.warning(
                    "durable: LISTEN connection lost (%r); reconnecting in %.1f s", exc, backoff
                )
                self._closed.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def close(self) -> None:
        self._closed.set()
        super().close()


def open_postgres(url: str) -> PostgresStore:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
        raise ConfigError(f"not a PostgreSQL URL: {redact_url(url)!r}")
    if not parts.path.strip("/"):
        raise ConfigError(
            f"the PostgreSQL URL names no database: {redact_url(url)!r}; use "
            "postgresql://user@host:5432/dbname"
        )
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        raise ConfigError(
            f"the port in the PostgreSQL URL {redact_url(url)!r} is not a number from 1 to 65535"
        ) from None
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, ""))
    pg = _psycopg()  # a clear error now rather than at the first statement
    try:
        pg.conninfo.conninfo_to_dict(dsn)
    except pg.ProgrammingError:
        # (psycopg's message quotes the offending part, which may be the password)
        raise ConfigError(
            f"the PostgreSQL URL {redact_url(url)!r} cannot be read: percent-encode special "
            "characters in the user name and password ('%' as %25, '@' as %40, ':' as %3A, "
            "'/' as %2F)"
        ) from None
    return PostgresStore(url, dsn)
