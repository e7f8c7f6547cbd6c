"""Cancelling a running async step on PostgreSQL: from engine.cancel() in this process to
the execution's end (cancelled) in a `durable worker` process, which hears of the cancel
by NOTIFY and cancels the step at its current await. The target: within one second.

Each of --runs executions sleeps in an async step; this process cancels it once the step
is running, then polls (every 2 ms) until the execution reads cancelled. Reports the
median and the maximum.

    python bench/bench_cancel.py [--store URL] [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_sql import _reset

import durable
from durable import step, workflow

HERE = Path(__file__).resolve().parent


@workflow("bench_cancel")
class SleepsLong:
    @step
    async def nap(self) -> None:
        await asyncio.sleep(3600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    engine = durable.Engine(args.store)
    _reset(engine)
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    cmd = [sys.executable, "-m", "durable.cli", "--store", args.store, "-i", "bench_cancel"]
    worker = subprocess.Popen(
        [*cmd, "worker", "--concurrency", "4"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    took = []
    try:
        time.sleep(1.5)
        for _ in range(args.runs):
            wid = engine.start(SleepsLong)
            while engine.get_execution(wid).status != "running":
                time.sleep(0.002)
            time.sleep(0.05)  # inside its await
            t0 = time.perf_counter()
            engine.cancel(wid)
            while engine.get_execution(wid).status != "cancelled":
                time.sleep(0.002)
            took.append((time.perf_counter() - t0) * 1000)
    finally:
        worker.terminate()
        worker.wait(30)
        engine.close()
    print(
        json.dumps(
            {
                "runs": len(took),
                "cancel_to_cancelled_ms_median": round(statistics.median(took), 1),
                "cancel_to_cancelled_ms_max": round(max(took), 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
