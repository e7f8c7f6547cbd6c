"""Limits every store keeps, checked before anything is stored.

The SQL schema bounds names and keys (``VARCHAR(n)``), keeps integers in 32 bits and
cannot hold NUL characters in text. The engine checks those limits itself so that a value
accepted by one store is accepted by all of them, and the error names the limit instead of
surfacing as a driver error after the fact.
"""

from __future__ import annotations

from durable.errors import ConfigError

__all__ = [
    "MAX_INT32",
    "MAX_KEY_LENGTH",
    "MAX_NAME_LENGTH",
    "check_int32",
    "check_name",
    "clean_text",
]

MAX_INT32 = 2**31 - 1
MAX_NAME_LENGTH = 200  # workflow, step and queue names (schema: String(200))
MAX_KEY_LENGTH = 500  # idempotency keys (schema: String(500))


def check_name(value: object, what: str, max_length: int = MAX_NAME_LENGTH) -> str:
    """``value`` if it is a non-empty str of at most ``max_length`` characters without NUL."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty str, got {value!r}")
    if len(value) > max_length:
        raise ConfigError(
            f"{what} is {len(value)} characters long; at most {max_length} fit: {value[:40]!r}..."
        )
    if "\x00" in value:
        raise ConfigError(f"{what} must not contain NUL characters ('\\x00'), got {value!r}")
    return value


def check_int32(value: object, what: str, *, minimum: int = 0) -> int:
    """``value`` if it is an int (not bool) in ``minimum..2**31-1``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{what} must be an int, got {value!r}")
    if not minimum <= value <= MAX_INT32:
        raise ConfigError(f"{what} must be between {minimum} and {MAX_INT32}, got {value!r}")
    return value


def clean_text(value: str | None) -> str | None:
    """Free text (a cancel reason) with NUL characters shown as ``\\x00``: kept readable,
    and storable in PostgreSQL, which refuses NUL in text."""
    if value is None or "\x00" not in value:
        return value
    return value.replace("\x00", "\\x00")
