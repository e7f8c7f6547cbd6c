"""durable_testing: test durable workflows in pytest with a time-travel clock.

The pytest plugin (loaded through the ``pytest11`` entry point) provides the fixtures
``durable_clock`` (a :class:`TimeTravelClock`) and ``durable_engine`` (an engine on that
clock, on ``memory://`` unless pytest is given ``--durable-store URL``).
"""

from durable_testing.clock import TimeTravelClock

__all__ = ["TimeTravelClock"]
