"""How promptly waiting executions wake, under the system clock, on PostgreSQL or SQLite.

1. Timers: N executions each ``sleep_until`` an instant spread over the next few seconds
   (started before any is due). One worker process (``concurrency`` threads) runs them.
   Each step records, once resumed, how late it woke: ``time.time() - due``. Reports the
   median, p90, p99 and max lateness in ms.
2. Events: M executions wait for an event; a second engine (another connection, as a
   separate web process would be) sends them one at a time; each step records how long
   after the send it resumed. Wakes travel by NOTIFY to the worker's LISTEN connection.

    python bench/bench_waits.py [--store URL] [--n 500] [--m 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

import durable
from durable import step, workflow
from durable.context import input, put_context, sleep_until, wait_for_event


@workflow("bench_sleep_until")
class SleepUntil:
    @step
    def nap(self) -> None:
        due = datetime.fromisoformat(input()["due"])
        sleep_until(due)
        put_context("late_ms", (time.time() - due.timestamp()) * 1000)


@workflow("bench_wait_event")
class WaitEvent:
    @step
    def wait(self) -> None:
        sent = wait_for_event("go")
        put_context("late_ms", (time.time() - sent) * 1000)


class _Done:
    def __init__(self, target: int) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.target = target
        self.event = threading.Event()

    @durable.hookimpl
    def durable_workflow_completed(self, execution: durable.Execution) -> None:
        with self.lock:
            self.count += 1
            if self.count >= self.target:
                self.event.set()


def _reset(url: str) -> None:
    engine = durable.Engine(url)
    store = engine.store
    with store.sa_engine().begin() as conn:  # type: ignore[attr-defined]
        tables = "durable_events, durable_waits, durable_step_attempts, durable_executions"
        if store.engine.dialect.name == "postgresql":  # type: ignore[attr-defined]
            conn.execute(sa.text(f"TRUNCATE {tables}"))
        else:
            for t in tables.split(", "):
                conn.execute(sa.text(f"DELETE FROM {t}"))
    engine.close()


def _lateness(engine: durable.Engine, workflow_name: str, n: int) -> list[float]:
    rows = engine.list_executions(workflow=workflow_name, status="completed", limit=n)
    return sorted(r.context["late_ms"] for r in rows)


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "p90": values[int(len(values) * 0.9)],
        "p99": values[int(len(values) * 0.99)],
        "max": values[-1],
    }


def timers(url: str, n: int, concurrency: int, spread_s: float) -> dict[str, float]:
    _reset(url)
    done = _Done(n)
    engine = durable.Engine(url, plugins=[done])
    start = datetime.now(UTC) + timedelta(seconds=1)
    with engine.worker(concurrency=concurrency):
        for i in range(n):
            due = start + timedelta(seconds=spread_s * i / n)
            engine.start(SleepUntil, {"due": due.isoformat()})
        if not done.event.wait(120):
            raise RuntimeError(f"only {done.count} of {n} woke")
    out = _lateness(engine, "bench_sleep_until", n)
    engine.close()
    return _summary(out)


def events(url: str, m: int, concurrency: int) -> dict[str, float]:
    _reset(url)
    done = _Done(m)
    engine = durable.Engine(url, plugins=[done])
    sender = durable.Engine(url)  # its own connections, no worker: like a web process
    with engine.worker(concurrency=concurrency):
        ids = [engine.start(WaitEvent) for _ in range(m)]
        while len(engine.list_waits(kind="event", limit=m)) < m:
            time.sleep(0.01)
        for wid in ids:
            sender.send_event(wid, "go", time.time())
            time.sleep(0.005)  # one at a time, as requests would come
        if not done.event.wait(120):
            raise RuntimeError(f"only {done.count} of {m} resumed")
    out = _lateness(engine, "bench_wait_event", m)
    sender.close()
    engine.close()
    return _summary(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", default="postgresql://postgres@127.0.0.1:5432/durable_bench")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--m", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--spread", type=float, default=3.0, help="seconds the dues spread over")
    args = parser.parse_args()
    t_runs = [timers(args.store, args.n, args.concurrency, args.spread) for _ in range(args.runs)]
    e_runs = [events(args.store, args.m, args.concurrency) for _ in range(args.runs)]
    t = {k: statistics.median(r[k] for r in t_runs) for k in t_runs[0]}
    e = {k: statistics.median(r[k] for r in e_runs) for k in e_runs[0]}
    t99 = ", ".join(f"{r['p99']:.1f}" for r in t_runs)
    e99 = ", ".join(f"{r['p99']:.1f}" for r in e_runs)
    print(f"{args.store} (median of {args.runs} runs)")
    print(
        f"  timers, {args.n} sleeps over {args.spread:g} s: woke late by median "
        f"{t['median']:.1f} ms, p90 {t['p90']:.1f}, p99 {t['p99']:.1f}, max {t['max']:.1f}"
        f"   (p99 per run: {t99})"
    )
    print(
        f"  events, {args.m} sent from another engine: resumed after median "
        f"{e['median']:.1f} ms, p90 {e['p90']:.1f}, p99 {e['p99']:.1f}, max {e['max']:.1f}"
        f"   (p99 per run: {e99})"
    )
    print(json.dumps({"timers": t, "events": e}))


if __name__ == "__main__":
    main()
