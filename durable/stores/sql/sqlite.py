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

import json
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
from durable.stores.sql.loader import load
from durable.stores.sql.store import SQLStore

__all__ = ["SQLiteStore"]

_SYNC = {"full": "FULL", "normal": "NORMAL", "extra": "EXTRA"}


class SQLiteStore(SQLStore):
    """A store in one SQLite file, shared safely by the processes on one host."""

    BEGIN = "BEGIN IMMEDIATE"  # take the write lock up front: writers queue, never deadlock
    SQL = load("sqlite")

    def __init__(self, url: str, path: str, synchronous: str, busy_ms: int) -> None:
        super().__init__(url)
        self.path = path
        self._synchronous = synchronous
        self._busy_ms = busy_ms

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self._busy_ms / 1000
        )
        conn.row_factory = sqlite3.Row
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

    # Times are stored as fixed-width ISO text ("0999-01-01 00:00:00.000000"), naive UTC,
    # so text order is time order.

    def _ts(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

    def _dt(self, value: Any) -> datetime | None:
        if value is None:
            return None
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)

    def _array(self, values: Sequence[Any] | None) -> str | None:
        return None if values is None else json.dumps(list(values))

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
