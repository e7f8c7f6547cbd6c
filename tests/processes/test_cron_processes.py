"""Cron across real worker processes on PostgreSQL with the system clock: 4 `durable
worker` processes, 200 schedules firing every second for 20 seconds, one worker
SIGKILLed halfway: every tick has exactly one execution, none lost."""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from datetime import timedelta

import pytest
from test_crash_and_scale_out import Workers

import durable

from helpers import eventually

pytestmark = [pytest.mark.processes, pytest.mark.slow]

SCHEDULES = 200
SECONDS = 20


@pytest.fixture
def pg_workers(durable_store_url_pg, tmp_path):
    w = Workers(durable_store_url_pg, tmp_path / "steps.log")
    yield w
    w.stop_all()


def test_every_tick_once_on_four_workers_one_killed(pg_workers, durable_store_url_pg):
    import proc_workflows  # noqa: F401

    client = durable.Engine(durable_store_url_pg)
    try:
        procs = [pg_workers.start(concurrency=8) for _ in range(4)]
        names = [f"tick-{i:03}" for i in range(SCHEDULES)]
        for name in names:
            client.schedule("proc_tick", "* * * * * *", name=name, catch_up="all")
        threading.Event().wait(SECONDS / 2)
        procs[0].kill()  # SIGKILL, with fires and executions in flight
        procs[0].wait()
        threading.Event().wait(SECONDS / 2)
        for name in names:
            client.pause_schedule(name)
        last = {s.name: s.last_tick for s in client.list_schedules()}

        def runs() -> list[durable.Execution]:
            return [
                e
                for e in client.list_executions(workflow="proc_tick", limit=10_000)
                if e.schedule is not None
            ]

        assert eventually(lambda: all(e.finished for e in runs()), 180)
        ticks: dict[str, list] = defaultdict(list)
        for e in runs():
            assert e.status == "completed", e.error
            ticks[e.schedule].append(e.scheduled_at)
        assert sorted(ticks) == names
        for name in names:
            fired = sorted(ticks[name])
            assert len(fired) == len(set(fired)), f"{name}: a tick fired twice"
            # one execution per second from its first tick to its last: none lost
            steps = {b - a for a, b in itertools.pairwise(fired)}
            assert steps <= {timedelta(seconds=1)}, f"{name}: ticks lost {sorted(steps)}"
            assert fired[-1] == last[name]
            assert len(fired) >= SECONDS - 3, f"{name}: only {len(fired)} ticks"
    finally:
        client.close()
