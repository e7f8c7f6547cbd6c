"""``postgresql://...``: many workers on many hosts sharing one database.

Claims take several rows per query with ``FOR UPDATE SKIP LOCKED``; commits that make work
available send ``NOTIFY durable_work`` and each engine LISTENs on one dedicated connection,
so idle workers wake at once; polling is only the fallback. Connections are checked before
use, so a restarted server needs no operator action.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import psycopg
import sqlalchemy as sa

from durable.errors import ConfigError
from durable.plugins import StoreRegistry, hookimpl
from durable.stores.sql.store import SQLStore

__all__ = ["PostgresStore"]

log = logging.getLogger("durable.stores.postgres")

CHANNEL = "durable_work"


class PostgresStore(SQLStore):
    """A store in PostgreSQL, for any number of worker processes."""

    def __init__(self, url: str, engine: sa.Engine, dsn: str) -> None:
        super().__init__(url, engine)
        self._dsn = dsn
        self._listener: threading.Thread | None = None
        self._closed = threading.Event()

    def _notify(self, conn: sa.Connection) -> None:
        conn.execute(sa.text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})

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
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    backoff = 0.1
                    self._wake_subscribers()  # we may have missed something while away
                    while not self._closed.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self._wake_subscribers()
            except psycopg.Error as exc:
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
        raise ConfigError(f"not a PostgreSQL URL: {url!r}")
    if not parts.path.strip("/"):
        raise ConfigError(
            f"the PostgreSQL URL names no database: {url!r}; use postgresql://user@host:5432/dbname"
        )
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, ""))
    engine = sa.create_engine(
        urlunsplit(("postgresql+psycopg", parts.netloc, parts.path, parts.query, "")),
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
    )
    return PostgresStore(url, engine, dsn)


@hookimpl
def durable_register_stores(registry: StoreRegistry) -> None:
    """Register ``postgresql://`` (and ``postgres://``)."""
    registry.add("postgresql", open_postgres)
    registry.add("postgres", open_postgres)
