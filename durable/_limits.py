"""Limits every store keeps, checked before anything is stored.

The SQL schema bounds names and keys (``VARCHAR(n)``), keeps integers in 32 bits, cannot
hold NUL characters in text (PostgreSQL) nor lone surrogates (neither driver can encode
them as UTF-8), and keeps times between the years 1 and 9999. The engine checks those
limits itself so that a value accepted by one store is accepted by all of them, and the
error names the limit at the call instead of surfacing as a driver error after the fact.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from durable.errors import ConfigError

__all__ = [
    "CAPTURE_LIMIT",
    "MAX_INT32",
    "MAX_KEY_LENGTH",
    "MAX_LOST_ATTEMPTS",
    "MAX_NAME_LENGTH",
    "MAX_TIME",
    "MIN_TIME",
    "check_int32",
    "check_name",
    "check_text",
    "check_time",
    "storable",
]

MAX_INT32 = 2**31 - 1
MAX_NAME_LENGTH = 200  # workflow, step, queue, event and input names; worker ids
MAX_KEY_LENGTH = 500  # idempotency keys (schema: String(500))
# Times a store can hold and the engine can still add a lease or a timer to: a day inside
# datetime's own range, so that converting to UTC never overflows.
MIN_TIME = datetime(1, 1, 2, tzinfo=UTC)
MAX_TIME = datetime(9999, 12, 30, tzinfo=UTC)
# An attempt lost with its worker (killed, paused past its lease, a store outage) runs
# again without spending the step's retry budget this many times in a row (the count starts
# again when the step completes or reaches a wait); after that each loss counts as a failed
# attempt, so a step that kills its worker every time ends.
MAX_LOST_ATTEMPTS = 3
# What one attempt keeps of its logging records, and of what it printed (UTF-8 bytes, each);
# beyond that the rest is counted, and the cut marked, but not stored.
CAPTURE_LIMIT = 64 * 1024

# C0 and C1 control characters and DEL: a name is an identifier, printed in listings.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _unstorable(value: str, *, controls: bool) -> str | None:
    """What in ``value`` no store can keep (or, for names, print): None when nothing."""
    if "\x00" in value:
        return "NUL characters ('\\x00')"
    if _SURROGATE.search(value):
        return "lone surrogates (such as '\\ud800'; they cannot be encoded as UTF-8)"
    if controls:
        found = _CONTROL.search(value)
        if found:
            return f"control characters (such as {found.group()!r})"
    return None


def check_name(value: object, what: str, max_length: int = MAX_NAME_LENGTH) -> str:
    """``value`` if it is a non-empty str of at most ``max_length`` characters without
    control characters or lone surrogates."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty str, got {value!r}")
    if len(value) > max_length:
        raise ConfigError(
            f"{what} is {len(value)} characters long; at most {max_length} fit: {value[:40]!r}..."
        )
    problem = _unstorable(value, controls=True)
    if problem is not None:
        raise ConfigError(f"{what} must not contain {problem}, got {value!r}")
    return value


def check_text(value: object, what: str) -> str | None:
    """Free text (a cancel reason, a prompt): None, or a str without NUL characters or
    lone surrogates, which no store can keep."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a str or None, got {type(value).__name__}")
    problem = _unstorable(value, controls=False)
    if problem is not None:
        raise ConfigError(f"{what} must not contain {problem}, got {value!r}")
    return value


def storable(value: str) -> bool:
    """Whether every store can hold (and look up) ``value``: no NUL, no lone surrogate."""
    return _unstorable(value, controls=False) is None


def check_int32(value: object, what: str, *, minimum: int = 0) -> int:
    """``value`` if it is an int (not bool) in ``minimum..2**31-1``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{what} must be an int, got {value!r}")
    if not minimum <= value <= MAX_INT32:
        raise ConfigError(f"{what} must be between {minimum} and {MAX_INT32}, got {value!r}")
    return value


def check_time(value: object, what: str) -> datetime:
    """``value`` (a datetime, aware or naive meaning UTC) as an aware UTC datetime within
    what the stores hold (``MIN_TIME`` to ``MAX_TIME``)."""
    if not isinstance(value, datetime):
        raise ConfigError(f"{what} must be a datetime, got {type(value).__name__}")
    try:
        at = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        at = None
    if at is None or not MIN_TIME <= at <= MAX_TIME:
        raise ConfigError(
            f"{what} must be between {MIN_TIME.date()} and {MAX_TIME.date()} (UTC), "
            f"got {value.isoformat()}"
        )
    return at
