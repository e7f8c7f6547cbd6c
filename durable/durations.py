"""Durations in milliseconds: ``seconds(30) == 30_000``.

Every option that takes a duration accepts an ``int`` number of milliseconds or a
``datetime.timedelta``; ``to_ms`` normalises both.
"""

from __future__ import annotations

import math
from datetime import timedelta

from durable.errors import ConfigError

__all__ = [
    "MAX_DURATION_MS",
    "Duration",
    "days",
    "finite",
    "hours",
    "minutes",
    "seconds",
    "to_ms",
    "to_timedelta",
]

Duration = int | timedelta

#: The longest duration any option takes: 100 years. A timeout, sleep or lease added to
#: the clock's time must stay within the dates every store holds (up to year 9999).
MAX_DURATION_MS = 36_500 * 86_400_000


def finite(value: float) -> bool:
    """True for an int or float that is neither infinite, NaN nor too large for a float."""
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float
        return False


def _scale(value: float, factor: int, unit: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{unit}() takes a number, got {type(value).__name__} {value!r}")
    if not finite(value) or value < 0:
        raise ConfigError(f"{unit}() takes a finite duration >= 0, got {value!r}")
    return round(value * factor)


def seconds(n: float) -> int:
    """``n`` seconds in milliseconds."""
    return _scale(n, 1_000, "seconds")


def minutes(n: float) -> int:
    """``n`` minutes in milliseconds."""
    return _scale(n, 60_000, "minutes")


def hours(n: float) -> int:
    """``n`` hours in milliseconds."""
    return _scale(n, 3_600_000, "hours")


def days(n: float) -> int:
    """``n`` days in milliseconds."""
    return _scale(n, 86_400_000, "days")


def to_ms(value: object, *, what: str = "duration", allow_zero: bool = True) -> int:
    """Normalise a duration option (int milliseconds or timedelta) to int milliseconds."""
    if isinstance(value, timedelta):
        ms = round(value.total_seconds() * 1000)
    elif isinstance(value, int) and not isinstance(value, bool):
        ms = value
    else:
        raise ConfigError(
            f"{what} must be milliseconds as an int (e.g. seconds(30)) or a timedelta, "
            f"got {type(value).__name__} {value!r}"
        )
    if ms < 0 or (ms == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{what} must be {bound} ms, got {ms} ms")
    if ms > MAX_DURATION_MS:
        raise ConfigError(
            f"{what} must be at most {MAX_DURATION_MS} ms (100 years: the stores hold dates "
            f"up to the year 9999), got {ms} ms"
        )
    return ms


def to_timedelta(ms: int) -> timedelta:
    """Milliseconds as a timedelta."""
    return timedelta(milliseconds=ms)
