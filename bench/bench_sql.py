"""Latency and throughput of durable on PostgreSQL and SQLite.

1. Sequential latency: start a three-step no-op workflow and run it to completion, one
   after another, in one process (start -> claim -> 3 steps -> completed, every transition
   committed). Reports median, p90 and p99 in ms.
2. Throughput of one worker process: start M executions, then one worker with
   ``concurrency`` threads runs them all; reports workflows per second.

A baseline is measured in the same run: the cost of one durable commit (an empty
transaction that updates one row) on the same store, so the figures can be read against
what the disk and server give at that moment.

    python bench/bench_sql.py [--store URL ...] [--runs 3] [--n 300] [--m 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

import durable
from durable import step, workflow
from durable_testing.sandbox import DATA_TABLES


@workflow("bench_three_noop")
class ThreeNoop:
    @step
    def one(self) -> None:
        pass

    @step
    def two(self) -> None:
        pass

    @step
    def three(self) -> None:
        pass


def _reset(engine: durable.Engine) -> None:
    """Empty the tables. TRUNCATE on PostgreSQL: DELETE would leave dead rows behind, and
    with autovacuum off (as on this machine's server) every later run would slow down."""
    store = engine.store
    with store.sa_engine().begin() as conn:  # type: ignore[attr-defined]
        if store.engine.dialect.name == "postgresql":  # type: ignore[attr-defined]
            conn.execute(sa.text(f"TRUNCATE {', '.join(DATA_TABLES)}"))
        else:
            for table in DATA_TABLES:
                conn.execute(sa.text(f"DELETE FROM {table}"))


def _commit_cost(engine: durable.Engine, n: int = 200) -> float:
    """Median ms of one committed single-row update, the floor under every transition."""
    store = engine.store
    wid = engine.start(ThreeNoop)
    # The value must change: SQLite skips writing (and syncing) an unchanged row.
    sql = "UPDATE durable_executions SET priority = priority + 1 WHERE id = " + (
        ":id" if store.engine.dialect.name == "sqlite" else "%(id)s"  # type: ignore[attr-defined]
    )
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        with store._cursor(write=True) as cur:  # type: ignore[attr-defined]
            cur.execute(sql, {"id": wid})
        times.append(time.perf_counter() - t0)
    engine.drain()
    return statistics.median(times) * 1000


def _run_one(engine: durable.Engine) -> str:
    """Start one execution and run it to completion the way a worker does: one claim,
    then its steps (drain() would add a last claim that finds nothing)."""
    wid = engine.start(ThreeNoop)
    (row,) = engine.scheduler.claim(None, limit=1)
    engine.scheduler.execute(row)
    return wid


def latency(engine: durable.Engine, n: int) -> dict[str, float]:
    for _ in range(30):
        _run_one(engine)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        wid = _run_one(engine)
        times.append(time.perf_counter() - t0)
        assert engine.get_execution(wid).status == "completed"
    times.sort()
    return {
        "median": statistics.median(times) * 1000,
        "p90": times[int(len(times) * 0.9)] * 1000,
        "p99": times[int(len(times) * 0.99)] * 1000,
    }


class _Done:
    @durable.hookimpl
    def durable_workflow_completed(self, execution: durable.Execution) -> None:
        with self.lock:
            self.count += 1
            if self.count >= self.target:
                self.event.set()

    def __init__(self, target: int) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.target = target
        self.event = threading.Event()


def throughput(
    url: str, m: int, concurrency: int, *, before: Callable[[], object] | None = None
) -> float:
    """Workflows per second of one worker with ``concurrency`` threads running ``m``
    executions started beforehand (``before()``, if given, is called once they are
    started, outside the timing)."""
    done = _Done(m)
    engine = durable.Engine(url, plugins=[done])
    _reset(engine)
    for _ in range(m):
        engine.start(ThreeNoop)
    if before is not None:
        before()
    t0 = time.perf_counter()
    with engine.worker(concurrency=concurrency):
        if not done.event.wait(600):
            raise RuntimeError(f"only {done.count} of {m} completed")
    elapsed = time.perf_counter() - t0
    engine.close()
    return m / elapsed


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database ``url`` names, if it does not exist (SQLite: nothing)."""
    if not url.startswith("postgresql"):
        return
    import psycopg

    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        name = url.rsplit("/", 1)[1]
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f"CREATE DATABASE {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--store",
        action="append",
        default=None,
        help="store URL (repeatable; default: Postgres at 127.0.0.1 and a temporary SQLite file)",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n", type=int, default=300, help="sequential executions per run")
    parser.add_argument("--m", type=int, default=2000, help="executions for throughput")
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    stores = args.store or [
        "postgresql://postgres@127.0.0.1:5432/durable_bench",
        f"sqlite:///{tmp / 'bench.db'}",
    ]
    results = []
    for url in stores:
        ensure_database(url)
        lat_runs, thr_runs, commit_runs = [], [], []
        for _ in range(args.runs):
            engine = durable.Engine(url)
            _reset(engine)
            commit_runs.append(_commit_cost(engine))
            lat_runs.append(latency(engine, args.n))
            engine.close()
            thr_runs.append(throughput(url, args.m, args.concurrency))
        lat = {k: statistics.median(r[k] for r in lat_runs) for k in ("median", "p90", "p99")}
        result = {
            "engine": "durable",
            "store": url.split("://")[0],
            "commit_ms": statistics.median(commit_runs),
            "latency_ms": lat,
            "throughput_wps": statistics.median(thr_runs),
        }
        results.append(result)
        print(f"{url}")
        print(f"  one durable commit:        median {result['commit_ms']:.3f} ms")
        print(
            f"  start->completed (3 steps): median {lat['median']:.2f} ms, "
            f"p90 {lat['p90']:.2f} ms, p99 {lat['p99']:.2f} ms "
            f"({lat['median'] / result['commit_ms']:.1f} commits' worth)"
        )
        print(
            f"  one worker, concurrency {args.concurrency}: "
            f"{result['throughput_wps']:,.0f} three-step workflows/s "
            f"(runs: {', '.join(f'{t:,.0f}' for t in thr_runs)})"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
