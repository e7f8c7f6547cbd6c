"""Retry policies: how many attempts a step gets and how long to wait between them."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from durable._limits import check_int32
from durable.durations import finite, to_ms
from durable.errors import ConfigError, NonRetryableError

__all__ = ["BACKOFFS", "Retry"]

Backoff = Literal["exponential", "linear", "constant"]
BACKOFFS: tuple[str, ...] = ("exponential", "linear", "constant")
MAX_DELAY_MS = 365 * 86_400_000  # no retry is scheduled more than a year ahead


@dataclass(frozen=True, slots=True)
class Retry:
    """How a failed step is retried.

    The delay before attempt ``n + 1``, after attempt ``n`` failed, in milliseconds:
    exponential ``base**n * 1000``, linear ``n * base * 1000``, constant ``base * 1000``;
    capped at ``max_backoff`` and at one year. With ``jitter=True`` the delay is drawn
    uniformly from ``[delay / 2, delay]``.

    ``non_retryable``: exception types (their subclasses too) that fail the step at once,
    with attempts left: ``Retry(max_attempts=5, non_retryable=(CardDeclined,))``. A
    ``durable.NonRetryableError`` raised by the step never is retried either. A timed out
    attempt is retried as before.
    """

    max_attempts: int = 3
    backoff: Backoff = "exponential"
    base: float = 2
    max_backoff: int | None = None
    jitter: bool = False
    non_retryable: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        check_int32(self.max_attempts, "Retry max_attempts", minimum=1)
        if self.backoff not in BACKOFFS:
            raise ConfigError(
                f"Retry backoff must be one of {', '.join(BACKOFFS)}, got {self.backoff!r}"
            )
        base = self.base
        if (
            isinstance(base, bool)
            or not isinstance(base, int | float)
            or not finite(base)
            or base < 0
        ):
            raise ConfigError(f"Retry base must be a finite number >= 0, got {base!r}")
        if self.max_backoff is not None:
            object.__setattr__(
                self, "max_backoff", to_ms(self.max_backoff, what="Retry max_backoff")
            )
        if not isinstance(self.jitter, bool):
            raise ConfigError(f"Retry jitter must be True or False, got {self.jitter!r}")
        types = self.non_retryable
        if isinstance(types, type):
            types = (types,)
        if not isinstance(types, tuple | list) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in types
        ):
            raise ConfigError(
                "Retry non_retryable takes exception classes, e.g. "
                f"non_retryable=(ValueError, CardDeclined), got {self.non_retryable!r}"
            )
        object.__setattr__(self, "non_retryable", tuple(types))

    def retries(self, error: BaseException) -> bool:
        """Whether an attempt that raised ``error`` may be tried again (attempts left
        permitting): not for a ``NonRetryableError`` nor a ``non_retryable`` type."""
        return not isinstance(error, (NonRetryableError, *self.non_retryable))

    @classmethod
    def coerce(cls, value: Retry | Mapping[str, Any] | None) -> Retry | None:
        """Accept a Retry, a dict with Retry's keys, or None."""
        if value is None or isinstance(value, Retry):
            return value
        if isinstance(value, Mapping):
            known = {"max_attempts", "backoff", "base", "max_backoff", "jitter", "non_retryable"}
            unknown = set(value) - known
            if unknown:
                raise ConfigError(
                    f"unknown retry option(s) {sorted(unknown)}; "
                    "use max_attempts, backoff, base, max_backoff, jitter, non_retryable"
                )
            return cls(**value)
        raise ConfigError(f"retry= takes a Retry or a dict, got {type(value).__name__}")

    def delay_ms(self, attempt: int, rng: random.Random | None = None) -> int:
        """Milliseconds to wait after attempt number ``attempt`` (1-based) failed."""
        if self.backoff == "exponential":
            try:
                delay = self.base**attempt * 1000
            except OverflowError:
                delay = MAX_DELAY_MS
        elif self.backoff == "linear":
            delay = attempt * self.base * 1000
        else:
            delay = self.base * 1000
        if self.max_backoff is not None:
            delay = min(delay, self.max_backoff)
        delay = min(delay, MAX_DELAY_MS)
        if self.jitter:
            delay = (rng or random).uniform(delay / 2, delay)
        return round(delay)
