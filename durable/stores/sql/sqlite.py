"""``sqlite:///path``: the embedded default store.

Configured for durability and for several processes on one file: WAL journal (readers do
not block the writer), ``synchronous=FULL`` (a commit is on disk before it returns, so it
survives a killed process and a power cut), a busy timeout so writers wait for each other,
and ``BEGIN IMMEDIATE`` for every write transaction so two writers never deadlock on a
read lock they both hold.

URL options: ``?synchronous=normal`` (faster; survives a killed process, not a power cut),
``?busy_timeout_ms=5000``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
from sqlalchemy import event

from durable.errors import ConfigError
from durable.plugins import StoreRegistry, hookimpl
from durable.stores.sql.store import SQLStore

__all__ = ["SQLiteStore"]

_SYNC = {"full": "FULL", "normal": "NORMAL", "extra": "EXTRA"}


class SQLiteStore(SQLStore):
    """A store in one SQLite file, shared safely by the processes on one host."""


def open_sqlite(url: str) -> SQLiteStore:
    parts = urlsplit(url)
    if parts.netloc:
        raise ConfigError(
            f"a SQLite URL has three slashes then the path, like 'sqlite:///durable.db' or "
            f"'sqlite:////abs/path.db'; got {url!r}"
        )
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path or path == ":memory:":
        raise ConfigError(
            f"{url!r} names no file; SQLite needs a file to be durable (use memory:// for "
            "a store that lives in this process only)"
        )
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(options) - {"synchronous", "busy_timeout_ms"}
    if unknown:
        raise ConfigError(
            f"unknown sqlite option(s) {sorted(unknown)} in {url!r}; "
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
        raise ConfigError(f"busy_timeout_ms must be an int, in {url!r}") from None
    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        raise ConfigError(f"the folder of the SQLite file does not exist: {parent} (from {url!r})")

    engine = sa.create_engine(
        f"sqlite+pysqlite:///{path}",
        connect_args={
            "isolation_level": None,
            "check_same_thread": False,
            "timeout": busy_ms / 1000,
        },
        pool_size=8,
        max_overflow=8,
        pool_pre_ping=False,
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={sync}")
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get("durable_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return SQLiteStore(url, engine)


@hookimpl
def durable_register_stores(registry: StoreRegistry) -> None:
    """Register ``sqlite://``."""
    registry.add("sqlite", open_sqlite)
