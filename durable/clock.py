"""Clocks. All engine time comes from one: nothing in durable reads the wall clock otherwise."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "utc"]


@runtime_checkable
class Clock(Protocol):
    """What the engine needs of a clock.

    ``now()`` returns an aware UTC datetime. ``wait_until(until, event)`` blocks until
    ``event`` is set or the clock reaches ``until`` (``None``: only the event), and returns
    whether the event is set. A test clock wakes its waiters when it is moved.
    """

    def now(self) -> datetime: ...

    def wait_until(self, until: datetime | None, event: threading.Event) -> bool: ...


def utc(dt: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)

    def wait_until(self, until: datetime | None, event: threading.Event) -> bool:
        """Block until ``event`` is set or ``until`` passes."""
        while not event.is_set():
            if until is None:
                event.wait()
                continue
            remaining = (until - self.now()).total_seconds()
            if remaining <= 0:
                break
            event.wait(remaining)
        return event.is_set()

    def __repr__(self) -> str:
        return "SystemClock()"
