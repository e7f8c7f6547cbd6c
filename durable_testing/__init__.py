"""durable_testing: test durable workflows in pytest with a time-travel clock.

The pytest plugin (loaded through the ``pytest11`` entry point) provides the fixtures
``durable_clock`` (a :class:`TimeTravelClock`), ``durable_engine`` (a
:class:`TimeTravelEngine` on that clock, on an empty ``memory://`` store unless pytest is
given ``--durable-store URL``) and ``durable_store_url``. Hypothesis strategies for fault
and clock schedules are in :mod:`durable_testing.strategies`; the store contract suite in
:mod:`durable_testing.contract`.
"""

from durable_testing.clock import TimeTravelClock
from durable_testing.engine import ExecutionStuck, TimeTravelEngine
from durable_testing.history import Attempt, History
from durable_testing.overrides import InjectedFault, StepOverride

__all__ = [
    "Attempt",
    "ExecutionStuck",
    "History",
    "InjectedFault",
    "StepOverride",
    "TimeTravelClock",
    "TimeTravelEngine",
]
