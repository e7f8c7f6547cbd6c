"""durable_testing: test durable workflows in pytest with a time-travel clock.

The pytest plugin (loaded through the ``pytest11`` entry point) provides the fixtures
``durable_clock`` (a ``TimeTravelClock``), ``durable_engine`` (a
``TimeTravelEngine`` on that clock, on an empty ``memory://`` store unless pytest is
given ``--durable-store URL``) and ``durable_store_url``. Hypothesis strategies for fault
and clock schedules are in ``durable_testing.strategies``; the store contract suite in
``durable_testing.contract``.

pytest imports this package at every start, to load the plugin: the names below (the
engine, freezegun through the clock) are imported when first used.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from durable_testing.clock import TimeTravelClock
    from durable_testing.engine import ExecutionStuck, TimeTravelEngine
    from durable_testing.history import Attempt, History
    from durable_testing.overrides import InjectedFault, StepOverride

# The module of each name imported on first use; the same names as the imports above.
_LAZY = {
    "durable_testing.clock": ("TimeTravelClock",),
    "durable_testing.engine": ("ExecutionStuck", "TimeTravelEngine"),
    "durable_testing.history": ("Attempt", "History"),
    "durable_testing.overrides": ("InjectedFault", "StepOverride"),
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}


if not _typing.TYPE_CHECKING:  # type checkers see the imports above, and no catch-all

    def __getattr__(name: str) -> object:
        """A public name, imported from its module on first use; else a submodule
        (``durable_testing.clock``), as when this package imported them all."""
        module = _MODULE_OF.get(name)
        if module is not None:
            value = getattr(_importlib.import_module(module), name)
            globals()[name] = value
            return value
        if not name.startswith("__"):
            try:
                return _importlib.import_module(f"{__name__}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{__name__}.{name}":
                    raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "Attempt",
    "ExecutionStuck",
    "History",
    "InjectedFault",
    "StepOverride",
    "TimeTravelClock",
    "TimeTravelEngine",
]
