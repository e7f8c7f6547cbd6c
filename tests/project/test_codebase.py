"""Rules of the codebase that a test can hold."""

from __future__ import annotations

import re
import types
from pathlib import Path

import durable
import durable_testing

ROOT = Path(__file__).resolve().parents[2]

WALL_CLOCK = re.compile(
    r"\b(datetime\.(now|utcnow|today)\(|date\.today\(|time\.(time|monotonic|perf_counter"
    r"|time_ns|monotonic_ns|sleep)\(|asyncio\.sleep\()"
)


def test_the_engine_reads_the_wall_clock_only_through_the_clock_plugin():
    offenders = []
    for path in sorted((ROOT / "durable").rglob("*.py")):
        if path.name == "clock.py" and path.parent.name == "durable":
            continue
        for no, line in enumerate(path.read_text().splitlines(), 1):
            if WALL_CLOCK.search(line.split("#")[0]):
                offenders.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()}")
    assert offenders == []


def test_all_is_sorted_and_complete():
    for module in (durable, durable_testing):
        names = module.__all__
        assert names == sorted(names), module.__name__
        public = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_") and not isinstance(value, types.ModuleType)
        }
        assert public - set(names) == set(), module.__name__
        assert all(hasattr(module, n) for n in names)


def test_pinned_imports():
    from durable import Retry, days, hours, minutes, seconds, step, workflow  # noqa: F401
    from durable.context import (  # noqa: F401
        append_context,
        context,
        delete_context,
        get_context,
        increment_context,
        input,
        put_context,
        update_context,
        workflow_id,
    )

    assert (seconds(30), minutes(5), hours(2), days(7)) == (30_000, 300_000, 7_200_000, 604_800_000)
    for name in (
        "ConfigError",
        "ContextError",
        "ExecutionNotFound",
        "InvalidState",
        "SerializationError",
        "WorkflowNotFound",
    ):
        assert issubclass(getattr(durable, name), durable.DurableError)
