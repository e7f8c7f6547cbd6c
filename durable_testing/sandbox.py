"""Store sandboxes: each test gets an empty store of the kind a run asks for.

Set up once per test session (per xdist worker), so that a test pays only for emptying:

* ``memory://``: a store of its own per test (named, so a second Engine in the same test
  on the same URL sees the same data), dropped afterwards.
* ``sqlite:///...``: the schema is migrated once into a template file; each test gets a
  copy of it in the session's temporary folder (URL options such as
  ``?synchronous=normal`` are kept).
* ``postgresql://...``: the run gets a schema of its own in the given database
  (``durable_test_<worker>``, made with the tables once, dropped at the end); each test
  starts with its tables emptied (DELETE; TRUNCATE now and then). The URL a test gets
  sets ``search_path`` to that schema, so nothing outside it is touched.
"""

from __future__ import annotations

import abc
import itertools
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from durable.clock import SystemClock
from durable.errors import ConfigError
from durable.plugins import PluginHost
from durable.stores import memory
from durable_testing.engine import TimeTravelEngine

__all__ = ["DATA_TABLES", "TRUNCATE_AFTER_ROWS", "PostgresSandbox", "StoreSandbox", "open_sandbox"]

#: how many rows a PostgreSQL sandbox deletes before it truncates instead
TRUNCATE_AFTER_ROWS = 20_000
#: every table that holds executions' data (not the migrations record)
DATA_TABLES = (
    "durable_events",
    "durable_waits",
    "durable_step_attempts",
    "durable_group_counts",
    "durable_schedules",
    "durable_plans",
    "durable_executions",
)


class StoreSandbox(abc.ABC):
    """Hands out one empty store URL per test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._ids = itertools.count(1)

    @abc.abstractmethod
    def for_test(self) -> str:
        """The URL of an empty, migrated store for one test."""

    def after_test(self, url: str) -> None:  # noqa: B027 - optional
        """Let go of what ``for_test`` made for ``url``."""

    def close(self) -> None:  # noqa: B027 - optional
        """Remove what the sandbox made for the session."""

    @contextmanager
    def engine(self, **options: Any) -> Iterator[TimeTravelEngine]:
        """A TimeTravelEngine on a fresh empty store, closed (and the store let go) after
        the block: for hypothesis tests, which run many examples in one test."""
        url = self.for_test()
        try:
            with TimeTravelEngine(url, migrate=False, **options) as engine:
                yield engine
        finally:
            self.after_test(url)


class MemorySandbox(StoreSandbox):
    def __init__(self, url: str, label: str) -> None:
        super().__init__(url)
        self.label = label

    def for_test(self) -> str:
        return f"memory://durable-test-{self.label}-{next(self._ids)}"

    def after_test(self, url: str) -> None:
        memory.forget(urlsplit(url).netloc)


class SQLiteSandbox(StoreSandbox):
    def __init__(self, url: str, workdir: Path) -> None:
        super().__init__(url)
        self.query = urlsplit(url).query
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.template = workdir / "template.db"
        store = PluginHost().make_store(self._url(self.template))
        try:
            store.migrate(SystemClock().now())
        finally:
            store.close()
        # Fold the WAL into the file, so that a plain copy is the whole database.
        with sqlite3.connect(self.template) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _url(self, path: Path) -> str:
        # quoted: the path is a URL path ('%' and spaces in a folder name stay themselves)
        return f"sqlite:///{quote(str(path))}" + (f"?{self.query}" if self.query else "")

    def for_test(self) -> str:
        path = self.workdir / f"test-{next(self._ids)}.db"
        shutil.copyfile(self.template, path)
        return self._url(path)

    def after_test(self, url: str) -> None:
        path = unquote(urlsplit(url).path[1:])
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)


class PostgresSandbox(StoreSandbox):
    def __init__(
        self, url: str, label: str, *, truncate_after_rows: int = TRUNCATE_AFTER_ROWS
    ) -> None:
        super().__init__(url)
        self.truncate_after_rows = truncate_after_rows
        import psycopg

        parts = urlsplit(url)
        self.schema = "durable_test_" + re.sub(r"\W", "_", label).lower()
        query = dict(parse_qsl(parts.query))
        query["options"] = f"{query.get('options', '')} -c search_path={self.schema}".strip()
        self.test_url = urlunsplit(
            (parts.scheme, parts.netloc, parts.path, urlencode(query, quote_via=quote), "")
        )
        self._plain = urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, ""))
        self._psycopg = psycopg
        self.conn = self._connect()
        self.conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        self.conn.execute(f'CREATE SCHEMA "{self.schema}"')
        store = PluginHost().make_store(self.test_url)
        try:
            store.migrate(SystemClock().now())
        finally:
            store.close()
        self._dirty = False
        self._deleted = 0

    @property
    def rows_deleted(self) -> int:
        """Rows deleted by emptying since the last TRUNCATE."""
        return self._deleted

    def for_test(self) -> str:
        if self._dirty:
            self._empty()
        self._dirty = True
        return self.test_url

    def _empty(self) -> None:
        # DELETE of a test's few rows costs ~0.05 ms where TRUNCATE costs ~5 ms (new files,
        # fsynced); the dead rows it leaves are cleared by a TRUNCATE once they add up, so
        # a long session does not slow down where autovacuum is off.
        tables = [f'"{self.schema}".{name}' for name in DATA_TABLES]
        if self._deleted >= self.truncate_after_rows:
            sql, self._deleted = f"TRUNCATE {', '.join(tables)}", 0
        else:
            sql = "; ".join(f"DELETE FROM {t}" for t in tables)
        for again in (False, True):
            try:
                cur = self.conn.execute(sql)
                break
            except self._psycopg.OperationalError:
                if again:
                    raise
                # The server restarted under an earlier test: reconnect, once.
                self.conn.close()
                self.conn = self._connect()
        while True:  # one count per statement
            self._deleted += max(cur.rowcount, 0)
            if not cur.nextset():
                break

    def _connect(self) -> Any:
        conn = self._psycopg.connect(
            self._plain, autocommit=True, application_name="durable-sandbox"
        )
        # A test that left a transaction open must fail the next one, not hang it.
        conn.execute("SET lock_timeout = '10s'")
        return conn

    def close(self) -> None:
        try:
            self.conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        except self._psycopg.OperationalError:
            pass  # the database went away first (dropped at the end of a run): so did this
        finally:
            self.conn.close()


def open_sandbox(url: str, workdir: Path, label: str | None = None) -> StoreSandbox:
    """The sandbox for the kind of store ``url`` names (``memory://``, ``sqlite://``...,
    ``postgresql://...``); ``workdir`` holds SQLite files; ``label`` tells parallel
    sessions (xdist workers) apart."""
    label = label or f"p{os.getpid()}"
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        return MemorySandbox(url, label)
    if scheme == "sqlite":
        return SQLiteSandbox(url, workdir / f"durable-{label}")
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return PostgresSandbox(url, label)
    raise ConfigError(
        f"--durable-store supports memory://, sqlite:///path and postgresql://...; "
        f"got {url!r} (a plugin store can be tested with durable_testing.contract)"
    )
