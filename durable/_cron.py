"""Cron ticks: parsing an expression (croniter's job), and the ticks of a schedule in a
time zone, as UTC instants, with the rules for daylight saving time.

Ticks are found in the zone's wall-clock time and then placed on the timeline:

* a wall time that does not exist (the hour skipped when clocks spring forward) fires
  once, at the first instant after the gap;
* a wall time that happens twice (the hour repeated when clocks fall back) fires once,
  the first time.

So an expression never fires twice at one instant, and never twice for one wall time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from durable.errors import ConfigError

__all__ = ["CATCH_UP", "MAX_CATCH_UP", "ON_TIME", "Cron"]

#: the catch-up policies: what a schedule does about the ticks no worker fired in time
CATCH_UP = ("latest", "all", "skip")
#: ``catch_up="all"`` fires at most this many missed ticks (the most recent ones)
MAX_CATCH_UP = 100
#: ``catch_up="skip"`` still fires a tick this late (a worker busy, a restart): later
#: than this, a tick counts as missed
ON_TIME = timedelta(seconds=60)

_SECOND = timedelta(seconds=1)
_REPEAT = timedelta(hours=3)  # longer than any daylight saving shift


class Cron:
    """A cron expression in a time zone. Five fields (minute hour day month weekday), or
    six with seconds first (second minute hour day month weekday); the ``@hourly``,
    ``@daily``... shorthands too. ConfigError names a bad expression or an unknown zone."""

    __slots__ = ("_zone", "expression", "timezone")

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        if not isinstance(expression, str) or not expression.strip():
            raise ConfigError(
                f"a cron expression is a non-empty str such as '0 9 * * *', got {expression!r}"
            )
        if not isinstance(timezone, str) or not timezone:
            raise ConfigError(
                f"a time zone is an IANA name such as 'America/New_York', got {timezone!r}"
            )
        try:
            self._zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(
                f"unknown time zone {timezone!r}: give an IANA name such as 'UTC' or "
                "'Europe/Paris' (zoneinfo; install tzdata where the system has no zone files)"
            ) from exc
        fields = len(expression.split())
        try:
            if expression.strip().startswith("@"):
                ok = croniter.is_valid(expression)
            elif fields not in (5, 6):
                ok = False
            else:
                ok = croniter.is_valid(expression, second_at_beginning=fields == 6)
        except (CroniterError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(
                f"bad cron expression {expression!r}: give five fields (minute hour "
                "day-of-month month day-of-week, e.g. '0 9 * * 1-5'), six with seconds first "
                "('*/10 * * * * *'), or a shorthand such as '@daily'"
            )
        if len(expression) > 200 or len(timezone) > 100:
            raise ConfigError(
                f"cron expression {expression[:60]!r}... or time zone too long (at most 200 "
                "and 100 characters): write ranges (1-5) and steps (*/10) instead of lists"
            )
        self.expression = expression.strip()
        self.timezone = timezone
        try:  # a date that never comes ("0 0 31 2 *") parses, but never fires
            self._iter(datetime(2000, 1, 1)).get_next(datetime)
        except (CroniterError, ValueError) as exc:
            raise ConfigError(
                f"cron expression {expression!r} never fires (no such date): {exc}"
            ) from exc

    def __repr__(self) -> str:
        return f"Cron({self.expression!r}, {self.timezone!r})"

    def _iter(self, start: datetime) -> croniter:
        seconds = len(self.expression.split()) == 6
        return croniter(self.expression, start, second_at_beginning=seconds)

    # -- from wall time to the timeline ------------------------------------------------------

    def _instant(self, wall: datetime) -> datetime:
        """The UTC instant the zone's naive wall time ``wall`` fires at."""
        first = wall.replace(tzinfo=self._zone, fold=0).astimezone(UTC)
        if first.astimezone(self._zone).replace(tzinfo=None) == wall:
            return first  # it exists (the first of two, when it happens twice)
        # Skipped by a spring-forward gap: the first instant after the gap, found between
        # the two readings of the wall time (its offsets before and after the change).
        other = wall.replace(tzinfo=self._zone, fold=1).astimezone(UTC)
        low, high = min(first, other), max(first, other)
        offset = low.astimezone(self._zone).utcoffset()
        while high - low > _SECOND:
            mid = (low + (high - low) / 2).replace(microsecond=0)
            if mid.astimezone(self._zone).utcoffset() == offset:
                low = mid
            else:
                high = mid
        return high.replace(microsecond=0)

    def _wall(self, instant: datetime) -> datetime:
        return instant.astimezone(self._zone).replace(tzinfo=None)

    # -- ticks -------------------------------------------------------------------------------

    def after(self, instant: datetime) -> Iterator[datetime]:
        """The ticks strictly after ``instant`` (aware), in order, as UTC instants."""
        walls = self._iter(self._wall(instant) - _SECOND)
        last = instant
        while True:
            tick = self._instant(walls.get_next(datetime))
            if tick > last:
                last = tick
                yield tick

    def next_after(self, instant: datetime) -> datetime:
        """The first tick strictly after ``instant``."""
        return next(self.after(instant))

    def at_or_before(self, instant: datetime) -> Iterator[datetime]:
        """The ticks at or before ``instant``, newest first, as UTC instants."""
        start = self._wall(instant) + _SECOND
        zone = self._zone
        if instant.astimezone(zone).utcoffset() != (instant - _REPEAT).astimezone(zone).utcoffset():
            # Clocks were set back lately: wall times later than now's may have happened
            # already, the first time round (those later than now are passed over below).
            start += _REPEAT
        walls = self._iter(start)
        last: datetime | None = None
        while True:
            tick = self._instant(walls.get_prev(datetime))
            if tick <= instant and (last is None or tick < last):
                last = tick
                yield tick

    def due(self, since: datetime, now: datetime, catch_up: str) -> tuple[list[datetime], int]:
        """The ticks to fire now, oldest first, for a schedule whose next tick was
        ``since`` (every tick before it fired or was let go), and how many of the ticks
        in ``[since, now]`` are not fired (missed, by ``catch_up``).

        ``latest``: the most recent tick only; ``all``: each, the most recent
        ``MAX_CATCH_UP`` at most; ``skip``: the most recent only if it is on time
        (at most ``ON_TIME`` late), else none."""
        if since > now:
            return [], 0
        keep = MAX_CATCH_UP if catch_up == "all" else 1
        found: list[datetime] = []
        missed = 0
        for tick in self.at_or_before(now):
            if tick < since:
                break
            if len(found) < keep:
                found.append(tick)
            else:
                missed += 1
                if missed >= 10 * MAX_CATCH_UP:  # (counted no further)
                    break
        if catch_up == "skip" and found and now - found[0] > ON_TIME:
            found, missed = [], missed + 1
        return found[::-1], missed
