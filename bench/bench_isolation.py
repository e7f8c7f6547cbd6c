"""Per-test cost of ``--durable-store``: how much a test using ``durable_engine`` pays for
its own empty store, on memory, SQLite and PostgreSQL.

A generated test file holds N tests; each takes ``durable_engine``, starts a one-step
workflow and runs it to completion. pytest runs the file in a subprocess once per store
(and once with N tests that use no fixture, the baseline); the wall time of each run is
taken ``--runs`` times and the median kept. The per-test overhead of a store is
(its median - the baseline's median) / N; the session's one-off setup (the schema of the
run, the SQLite template) is included, spread over the N tests.

    python bench/bench_isolation.py [--n 200] [--runs 3] \\
        [--postgres postgresql://postgres@127.0.0.1:5432/durable_bench]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = """
import pytest
from durable import step, workflow
from durable.context import put_context


@workflow("bench_isolation_one")
class One:
    @step
    def only(self):
        put_context("done", True)


@pytest.mark.parametrize("i", range({n}))
def test_with_engine(durable_engine, i):
    wid = durable_engine.start(One)
    assert durable_engine.run_until(wid).status == "completed"
    assert len(durable_engine.list_executions()) == 1  # isolated: only this test's


@pytest.mark.parametrize("i", range({n}))
def test_baseline(i):
    assert i >= 0
"""


def run(folder: Path, args: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=folder,
        capture_output=True,
        check=False,
        text=True,
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"pytest failed ({args}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/durable_bench")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    (folder / "test_iso.py").write_text(TESTS.replace("{n}", str(args.n)))
    stores = {
        "memory": [],
        "sqlite": ["--durable-store", "sqlite:///bench.db"],
        "postgresql": ["--durable-store", args.postgres],
    }
    times: dict[str, list[float]] = {"baseline": [], **{k: [] for k in stores}}
    for _ in range(args.runs):
        times["baseline"].append(run(folder, ["-k", "baseline"]))
        for kind, extra in stores.items():
            times[kind].append(run(folder, ["-k", "with_engine", *extra]))
    base = statistics.median(times["baseline"])
    result = {}
    print(f"{args.n} tests per run, {args.runs} runs, medians")
    print(f"  baseline (no fixture): {base:.2f} s")
    for kind in stores:
        med = statistics.median(times[kind])
        per_test = (med - base) / args.n * 1000
        result[kind] = per_test
        print(f"  {kind:<10} {med:6.2f} s  -> {per_test:6.2f} ms per test (engine, store, run)")
    print(
        f"  isolation on PostgreSQL costs {result['postgresql'] - result['memory']:.2f} ms "
        f"per test more than memory://, SQLite {result['sqlite'] - result['memory']:.2f} ms"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
