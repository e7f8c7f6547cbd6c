"""Durations in milliseconds: ``seconds(30) == 30_000``.

Every option that takes a duration accepts an ``int`` number of milliseconds or a
:class:`datetime.timedelta`; :func:`to_ms` normalises both.
"""

from __future__ import annotations

from datetime import timedelta

from durable.errors import ConfigError

__all__ = ["Duration", "days", "hours", "minutes", "seconds", "to_ms", "to_timedelta"]

Duration = int | timedelta


def _scale(value: float, factor: int, unit: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{unit}() takes a number, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ConfigError(f"{unit}() takes a duration >= 0, got {value!r}")
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
    return ms


def to_timedelta(ms: int) -> timedelta:
    """Milliseconds as a timedelta."""
    return timedelta(milliseconds=ms)
