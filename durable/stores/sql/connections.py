"""Connections of the SQL stores: one DBAPI connection per thread, kept open.

Transactions, errors (scrubbed of the URL's secrets), a lost connection (dropped, and a
read retried once on a new one), waking workers after a commit, and the SQLAlchemy engine
that migrations and tools use. The dialects give the driver: how to connect, how values
bind and read back, which errors mean what.
"""

from __future__ import annotations

import abc
import itertools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import sqlalchemy as sa

from durable._text import redact_url, scrub, url_secrets
from durable.errors import DurableError, StoreError
from durable.stores.base import AlreadyDone
from durable.stores.sql.loader import Queries

__all__ = ["Connections"]

T = TypeVar("T")

log = logging.getLogger("durable.stores.sql")


class Connections(abc.ABC):
    """Per-thread connections to one database, and the dialect's statements (``SQL``)."""

    #: the dialect's named statements (see ``durable.stores.sql.loader``)
    SQL: ClassVar[Queries]
    #: how a write transaction begins
    BEGIN = "BEGIN"

    def __init__(self, url: str) -> None:
        self.url = url
        self._secrets = url_secrets(url)  # scrubbed from every error message
        self._local = threading.local()
        self._all: list[tuple[threading.Thread, Any]] = []
        self._all_lock = threading.Lock()
        self._subscribers: list[Callable[[], None]] = []
        self._ended_subscribers: list[Callable[[str | None], None]] = []
        self._cancel_subscribers: list[Callable[[], None]] = []
        self._sub_lock = threading.Lock()
        self._sa_engine: sa.Engine | None = None
        #: how many times this store has tried to open a database connection (each
        #: thread opens one and keeps it; a figure for diagnostics and tests)
        self.connect_attempts = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact_url(self.url)!r})"

    # -- what a dialect provides ---------------------------------------------------------

    @abc.abstractmethod
    def _connect(self) -> Any:
        """A new DBAPI connection in autocommit mode whose rows read by column name."""

    @abc.abstractmethod
    def _sa_url(self) -> str:
        """The SQLAlchemy URL, for migrations."""

    def _ts(self, value: datetime | None) -> Any:
        """A datetime as the driver binds it."""
        return value

    @abc.abstractmethod
    def _dt(self, value: Any) -> datetime | None:
        """A stored time back as an aware UTC datetime."""

    @abc.abstractmethod
    def _array(self, values: Sequence[Any] | None) -> Any:
        """A list parameter as the dialect's statements take it (None stays None)."""

    def _is_disconnect(self, exc: Exception) -> bool:
        return False

    def _is_integrity_error(self, exc: Exception) -> bool:
        return False

    def _is_deadlock(self, exc: BaseException | None) -> bool:
        return False

    def _retry_deadlock(self, fn: Callable[[], T]) -> T:
        """Run the write transaction ``fn``; if the database broke a deadlock by rolling
        it back (a cancel cascading over an execution's units while they end), run it
        again: nothing of it was committed."""
        for tries in itertools.count(1):
            try:
                return fn()
            except StoreError as exc:
                if tries >= 3 or not self._is_deadlock(exc.__cause__):
                    raise
                log.info("durable: %r: a deadlock rolled back a write; trying again", self)
        raise AssertionError("unreachable")

    # -- connections and transactions ----------------------------------------------------

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            with self._all_lock:
                self.connect_attempts += 1
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
                    self._local.writing = True
                try:
                    yield cur
                    if write:
                        cur.execute("COMMIT")
                except BaseException:
                    if write:
                        self._local.writing = False
                        with suppress(Exception):
                            cur.execute("ROLLBACK")
                        self._rolled_back()
                    raise
                if write:
                    self._local.writing = False
                    self._committed(cur)
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

    def _writing(self) -> bool:
        """Whether this thread is inside a write transaction."""
        return bool(getattr(self._local, "writing", False))

    def _committed(self, cur: Any) -> None:
        """After a write transaction committed, on its cursor (now in autocommit): what
        had to wait for the commit."""
        return None

    def _rolled_back(self) -> None:
        """After a write transaction rolled back: forget what waited for its commit."""
        return None

    def _one(self, name: str, params: dict[str, Any]) -> Any:
        """One row of a single-statement read or start (autocommit)."""
        with self._cursor(write=False) as cur:
            cur.execute(self.SQL[name], params)
            return cur.fetchone()

    def _all_rows(
        self, name: str, params: dict[str, Any], decode: Callable[[Any], Any] | None = None
    ) -> list[Any]:
        """Every row of a single-statement read (each passed through ``decode`` as it is
        read, so that a large read never holds all its raw rows as well), retried once on
        a lost connection."""

        def read() -> list[Any]:
            out: list[Any] = []
            with self._cursor(write=False) as cur:
                cur.execute(self.SQL[name], params)
                while batch := cur.fetchmany(1000):
                    out.extend(batch if decode is None else map(decode, batch))
            return out

        return self._retry_once(read)

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

    # -- waking workers ------------------------------------------------------------------

    def _after_write(self) -> None:
        """Tell idle workers of other processes that a commit made work available (a
        start does so within its own statement); nothing where the dialect has no way."""
        notify = self.SQL.steps("notify")
        if notify:
            with self._cursor(write=False) as cur:
                for sql in notify:
                    cur.execute(sql)

    def _wake_others(self) -> None:
        """Notify after a committed transition; a failure here must not turn the committed
        change into an error (workers also poll)."""
        try:
            self._after_write()
        except Exception as exc:
            log.warning("durable: could not notify workers (%r); they will poll", exc)

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when work may have become available."""
        with self._sub_lock:
            self._subscribers.append(callback)

    def subscribe_ended(self, callback: Callable[[str | None], None]) -> None:
        """Call ``callback(execution_id)`` when an execution ended (where the dialect can
        tell: see ``tells_ends``)."""
        with self._sub_lock:
            self._ended_subscribers.append(callback)

    def unsubscribe_ended(self, callback: Callable[[str | None], None]) -> None:
        with self._sub_lock:
            if callback in self._ended_subscribers:
                self._ended_subscribers.remove(callback)

    def _tell_ended(self, execution_id: str | None) -> None:
        with self._sub_lock:
            callbacks = list(self._ended_subscribers)
        for cb in callbacks:
            cb(execution_id)

    def subscribe_cancels(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when a cancel was requested (where the dialect can tell: see
        ``tells_cancels``)."""
        with self._sub_lock:
            self._cancel_subscribers.append(callback)

    def _tell_cancels(self) -> None:
        with self._sub_lock:
            callbacks = list(self._cancel_subscribers)
        for cb in callbacks:
            cb()

    def _wake_subscribers(self) -> None:
        with self._sub_lock:
            callbacks = list(self._subscribers)
        for cb in callbacks:
            cb()

    # -- SQLAlchemy and closing ----------------------------------------------------------

    def sa_engine(self) -> sa.Engine:
        """A SQLAlchemy engine on the same database (migrations, tests, tools)."""
        if self._sa_engine is None:
            self._sa_engine = self._make_sa_engine()
        return self._sa_engine

    def _make_sa_engine(self) -> sa.Engine:
        return sa.create_engine(self._sa_url())

    @property
    def engine(self) -> sa.Engine:
        """Alias of ``sa_engine``."""
        return self.sa_engine()

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
