"""TimeTravelClock: a clock that moves only when a test moves it, and moves freezegun too."""

from __future__ import annotations

import importlib
import threading
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any

from freezegun import api as freezegun_api
from freezegun import freeze_time

from durable.clock import utc
from durable.durations import Duration, to_ms
from durable.plugins import entry_point_plugins

__all__ = ["TimeTravelClock"]

# Drivers keep their own timeouts, and pytest its durations, on real time.
_REAL_TIME_MODULES = ["sqlalchemy", "psycopg", "psycopg_pool", "pluggy", "hypothesis", "_pytest"]
_POLL_SECONDS = 0.002
_DRIVERS = ("psycopg",)  # imported lazily by the Postgres store


def _truncate_ms(dt: datetime) -> datetime:
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


class TimeTravelClock:
    """A clock for tests: ``now()`` stands still until ``advance()`` or ``set()``.

    ``start``: the first instant (aware, or naive meaning UTC); None means the wall time
    when the clock is made, to the millisecond. With ``freeze=True`` (the default)
    freezegun is started at that instant and moved with the clock, so code that calls
    ``datetime.now()`` or ``time.time()`` sees the travelled time. Call ``close()`` (or use
    it as a context manager) to stop freezegun.
    """

    def __init__(self, start: datetime | None = None, *, freeze: bool = True) -> None:
        if start is not None and not isinstance(start, datetime):
            raise TypeError(f"start must be a datetime or None, got {type(start).__name__}")
        self._now = _truncate_ms(utc(start) if start is not None else datetime.now(UTC))
        self._lock = threading.Condition()
        self._freezer: Any = None
        self._frozen: Any = None
        if freeze:
            # Import every store plugin and the database drivers before freezing: a C
            # extension first imported under freezegun would see its fake datetime types.
            entry_point_plugins()
            for driver in _DRIVERS:
                with suppress(ImportError):
                    importlib.import_module(driver)
            self._freezer = freeze_time(self._now, ignore=_REAL_TIME_MODULES, real_asyncio=True)
            # freezegun gives real time to any call with an ignored module (its defaults
            # include ``threading``) within 5 frames up the stack, so a step running in a
            # thread of its own (a step with a timeout) would see the wall clock. Looking
            # at the caller and its caller only still gives drivers their real time.
            self._inspection_limit = freezegun_api.call_stack_inspection_limit
            freezegun_api.call_stack_inspection_limit = 2
            self._frozen = self._freezer.start()

    def now(self) -> datetime:
        """The clock's current instant (aware UTC)."""
        with self._lock:
            return self._now

    def advance(self, by: Duration) -> datetime:
        """Move forward by ``by`` (ms or timedelta) and return the new instant."""
        ms = to_ms(by, what="advance()")
        with self._lock:
            return self._move(self._now + timedelta(milliseconds=ms))

    def set(self, when: datetime) -> datetime:
        """Move to ``when``, which may not be earlier than now (time only goes forward)."""
        target = utc(when)
        with self._lock:
            if target < self._now:
                raise ValueError(
                    f"TimeTravelClock only goes forward: it is {self._now.isoformat()}, "
                    f"set() got {target.isoformat()}"
                )
            return self._move(target)

    def _move(self, target: datetime) -> datetime:
        self._now = target
        if self._frozen is not None:
            self._frozen.move_to(target)
        self._lock.notify_all()
        return target

    def wait_until(self, until: datetime | None, event: threading.Event) -> bool:
        """Block until ``event`` is set or the clock is moved to ``until`` or beyond."""
        while not event.is_set():
            with self._lock:
                if until is not None and self._now >= until:
                    break
            event.wait(_POLL_SECONDS)
        return event.is_set()

    def close(self) -> None:
        """Stop freezegun; the clock itself keeps working."""
        if self._freezer is not None:
            self._freezer.stop()
            self._freezer = None
            self._frozen = None
            freezegun_api.call_stack_inspection_limit = self._inspection_limit

    def __enter__(self) -> TimeTravelClock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TimeTravelClock({self._now.isoformat()})"
