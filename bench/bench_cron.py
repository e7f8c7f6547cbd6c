"""Cron on PostgreSQL with the system clock, one `durable worker` process (8 threads).

1. lateness: 20 schedules firing every second for 10 seconds. For each tick: how late
   after it its 20 executions were all committed (seen by a client that polls every 5 ms:
   up to 5 ms of that is the poll), and how late each began to run (started_at). Reports
   the median and p99 of each (the target: p99 of the firing at most 50 ms).
2. burst: 1,000 schedules whose one tick falls in the same second. Reports how long after
   that tick the 1,000 executions were all committed (polled as above), and the last began
   to run (the target: all made within one second).

Each is run --runs times; the figures are the medians of the runs. A baseline is measured
in the same run, as bench_sql.py does: one durable commit, so the figures can be read
against what the server gives at that moment.

    python bench/bench_cron.py [--store URL] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from bench_sql import _commit_cost, _reset

import durable
from durable import step, workflow

HERE = Path(__file__).resolve().parent


@workflow("bench_tick")
class BenchTick:
    @step
    def tick(self) -> None:
        pass


def _worker(url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    cmd = [sys.executable, "-m", "durable.cli", "--store", url, "-i", "bench_cron", "worker"]
    worker = subprocess.Popen(
        [*cmd, "--concurrency", "8"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.5)  # the worker is up (imports, LISTEN) before the first tick
    return worker


def _ms(later: datetime | None, tick: datetime) -> float:
    assert later is not None
    return (later - tick) / timedelta(milliseconds=1)


def _runs(engine: durable.Engine) -> list[durable.Execution]:
    return [e for e in engine.list_executions(workflow="bench_tick", limit=10_000) if e.schedule]


def _seen(engine: durable.Engine, want: int, until: float) -> dict[datetime, float]:
    """Poll every 5 ms until ``until`` (monotonic): the wall time (as a datetime's
    timestamp) at which each tick first had ``want`` executions committed."""
    sql = sa.text(
        "SELECT scheduled_at, count(*) AS n FROM durable_executions "
        "WHERE workflow = 'bench_tick' GROUP BY scheduled_at"
    )
    seen: dict[datetime, float] = {}
    with engine.store.sa_engine().connect() as conn:  # type: ignore[attr-defined]
        while time.monotonic() < until:
            for tick, n in conn.execute(sql).all():
                if n >= want and tick not in seen:
                    seen[tick.astimezone(UTC)] = time.time()
            conn.commit()
            time.sleep(0.005)
    return seen


def lateness(url: str, schedules: int = 20, seconds: int = 10) -> tuple[list[float], list[float]]:
    """ms from each tick until its executions were all committed; from each tick to each
    execution's start."""
    engine = durable.Engine(url)
    _reset(engine)
    worker = _worker(url)
    try:
        names = [f"late-{i}" for i in range(schedules)]
        for name in names:
            engine.schedule(BenchTick, "* * * * * *", name=name)
        seen = _seen(engine, schedules, time.monotonic() + seconds)
        for name in names:
            engine.pause_schedule(name)
        time.sleep(1.0)  # the last ones start
        made = [(at - tick.timestamp()) * 1000 for tick, at in seen.items()]
        runs = [e for e in _runs(engine) if e.started_at is not None]
        began = [_ms(e.started_at, e.scheduled_at) for e in runs]
        return made, began
    finally:
        worker.terminate()
        worker.wait(30)
        engine.close()


def burst(url: str, schedules: int = 1000) -> tuple[float, float]:
    """ms from the shared tick until its executions were all committed, and until the
    last one began to run."""
    engine = durable.Engine(url)
    _reset(engine)
    worker = _worker(url)
    try:
        tick = (datetime.now(UTC) + timedelta(seconds=8)).replace(microsecond=0)
        cron = f"{tick.second} {tick.minute} {tick.hour} {tick.day} {tick.month} *"
        for i in range(schedules):
            engine.schedule(BenchTick, cron, name=f"burst-{i:04}")
        left = (tick - datetime.now(UTC)).total_seconds()
        assert left > 0, "making the schedules took past their tick"
        seen = _seen(engine, schedules, time.monotonic() + left + 5)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = _runs(engine)
            if len(runs) == schedules and all(e.started_at for e in runs):
                break
            time.sleep(0.2)
        runs = _runs(engine)
        assert len(runs) == schedules and {e.scheduled_at for e in runs} == {tick}
        return (
            (seen[tick] - tick.timestamp()) * 1000,
            max(_ms(e.started_at, tick) for e in runs),
        )
    finally:
        worker.terminate()
        worker.wait(30)
        engine.close()


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, object] = {}
    commits, made_med, made_p99, began_med, began_p99, made_n = [], [], [], [], [], []
    burst_made, burst_began = [], []
    for _ in range(args.runs):
        engine = durable.Engine(args.store)
        _reset(engine)
        commits.append(_commit_cost(engine))
        engine.close()
        made, began = lateness(args.store)
        made_n.append(len(made))
        made_med.append(statistics.median(made))
        made_p99.append(_p99(made))
        began_med.append(statistics.median(began))
        began_p99.append(_p99(began))
        last_made, last_began = burst(args.store)
        burst_made.append(last_made)
        burst_began.append(last_began)
    results["baseline_commit_ms_median"] = round(statistics.median(commits), 3)
    results["ticks_seen_per_run"] = made_n
    results["tick_made_late_ms_median"] = round(statistics.median(made_med), 1)
    results["tick_made_late_ms_p99"] = round(statistics.median(made_p99), 1)
    results["tick_made_late_ms_p99_runs"] = [round(x, 1) for x in made_p99]
    results["tick_began_late_ms_median"] = round(statistics.median(began_med), 1)
    results["tick_began_late_ms_p99"] = round(statistics.median(began_p99), 1)
    results["burst_1000_last_made_ms"] = round(statistics.median(burst_made), 1)
    results["burst_1000_last_made_ms_runs"] = [round(x, 1) for x in burst_made]
    results["burst_1000_last_began_ms"] = round(statistics.median(burst_began), 1)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
