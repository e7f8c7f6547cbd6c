"""``postgresql://...``: many workers on many hosts sharing one database.

Claims take several rows per query with ``FOR UPDATE SKIP LOCKED``; commits that make work
available send ``NOTIFY durable_work`` and each engine LISTENs on one dedicated connection,
so idle workers wake at once; polling is only the fallback. Connections are checked before
use, so a restarted server needs no operator action.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa

from durable._text import redact_url
from durable.errors import ConfigError
from durable.stores.sql.loader import load
from durable.stores.sql.store import SQLStore

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

OUT_OF_RANGE: Any = type("OutOfRange", (), {"__repr__": lambda _: "<date out of range>"})()


def _by_name(cursor: Any) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """Rows as dicts by column name, like psycopg's ``dict_row``, with the names read
    straight from the result: ``dict_row`` builds ``cursor.description`` (an object per
    column) for every statement, a cost each hot transition would pay."""
    result = cursor.pgresult
    count = 0 if result is None else result.nfields
    names = [result.fname(i).decode() for i in range(count)]
    return lambda values: dict(zip(names, values, strict=True))


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

    SQL = load("postgres")
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
        conn: psycopg.Connection[Any] = pg.connect(autocommit=True, row_factory=_by_name, **params)
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

    def _array(self, values: Sequence[Any] | None) -> list[Any] | None:
        return None if values is None else list(values)

    def _is_integrity_error(self, exc: Exception) -> bool:
        return isinstance(exc, _psycopg().errors.IntegrityError)

    def _is_deadlock(self, exc: BaseException | None) -> bool:
        return isinstance(exc, _psycopg().errors.DeadlockDetected)

    def _is_disconnect(self, exc: Exception) -> bool:
        conn = getattr(self._local, "conn", None)
        return isinstance(exc, _psycopg().OperationalError) or (conn is not None and conn.broken)

    tells_ends = True
    tells_cancels = True

    def subscribe_cancels(self, callback: Callable[[], None]) -> None:
        super().subscribe_cancels(callback)
        self._start_listening()

    def subscribe(self, callback: Callable[[], None]) -> None:
        super().subscribe(callback)
        self._start_listening()

    def subscribe_ended(self, callback: Callable[[str | None], None]) -> None:
        super().subscribe_ended(callback)
        self._start_listening()

    def _start_listening(self) -> None:
        with self._sub_lock:
            if self._listener is not None:
                return
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
                    for sql in self.SQL.steps("listen"):
                        conn.execute(sql)
                    backoff = 0.1
                    # we may have missed something while away
                    self._wake_subscribers()
                    self._tell_ended(None)
                    self._tell_cancels()
                    while not self._closed.is_set():
                        for note in conn.notifies(timeout=1.0, stop_after=1):
                            if note.channel == "durable_done":
                                self._tell_ended(note.payload)
                            elif note.channel == "durable_cancel":
                                self._tell_cancels()
                            else:
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
