"""Control flow on PostgreSQL: foreach throughput, parallel fan-in latency, decision cost.

1. foreach: one workflow whose foreach runs N no-op items at concurrency 50, run by one
   `durable worker` process with 16 threads. Reports items per second (from the start to
   the execution's end) and the worker's peak resident memory, for two sizes of N: memory
   must not grow with the number of items (beyond the results list).
2. fan-in: a 100-branch parallel group followed by a step; reports the median and p90 of
   the time from the last branch's completion to that step's start (from the attempt
   records), over several executions, one worker in this process with 16 threads. The
   fan-in proper: 99 no-op branches and one that ends 0.3 s later, so that its end is
   the group's last on its own. The burst: 100 no-op branches ending together, where the
   last one also waits behind the other ends (the machine's cores are the limit there).
   A baseline is measured in the same run, as bench_sql.py does: one durable commit (an
   empty transaction updating one row), so the figure can be read against what the
   server gives at that moment (a 2-core machine shared with others varies by 2x).
3. decisions: sequential latency of a three-step workflow whose middle step is plain,
   a @decision returning None, or a @step(when=...) that holds; reports each median and
   its ratio to the plain one, measured in the same run.

    python bench/bench_flow.py [--store URL] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench_sql import _commit_cost, _reset

import durable
from durable import decision, foreach, parallel, step, workflow
from durable.context import input, put_context

HERE = Path(__file__).resolve().parent


@workflow("bench_foreach")
class ForeachNoop:
    @step
    def load(self) -> None:
        put_context("xs", list(range(input()["n"])))

    @foreach("xs", concurrency=50)
    def each(self, x: int) -> int:
        return x


def _branch(pause_s: float = 0.0) -> object:
    def branch(self: object) -> None:
        if pause_s:
            time.sleep(pause_s)

    return branch


def _group(name: str, slow: int | None = None) -> type:
    """A class of 100 branches (each a @step), made in a loop; branch ``slow`` ends 0.3 s
    after the others, so that its end is the group's last on its own."""
    return type(
        name,
        (),
        {
            f"b{i:03d}": step(name=f"b{i:03d}")(_branch(0.3 if i == slow else 0.0))
            for i in range(100)
        },
    )


_hundred = _group("hundred")
_straggler = _group("straggler", slow=99)


@workflow("bench_fan_in")
class FanIn:
    hundred = parallel(_hundred)

    @step
    def after(self) -> None:
        pass


@workflow("bench_fan_in_straggler")
class FanInStraggler:
    straggler = parallel(_straggler)

    @step
    def after(self) -> None:
        pass


@workflow("bench_plain3")
class Plain3:
    @step
    def one(self) -> None:
        put_context("go", True)

    @step
    def two(self) -> None:
        pass

    @step
    def three(self) -> None:
        pass


@workflow("bench_decision3")
class Decision3:
    @step
    def one(self) -> None:
        put_context("go", True)

    @decision("three")
    def two(self) -> str | None:
        return None

    @step
    def three(self) -> None:
        pass


@workflow("bench_when3")
class When3:
    @step
    def one(self) -> None:
        put_context("go", True)

    @step(when=lambda ctx: ctx.get("go"))
    def two(self) -> None:
        pass

    @step
    def three(self) -> None:
        pass


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def foreach_run(url: str, n: int) -> tuple[float, int]:
    """Items per second and the worker's peak RSS (KiB) for one foreach of n items."""
    engine = durable.Engine(url)
    _reset(engine)
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "durable.cli",
            "--store",
            url,
            "-i",
            "bench_flow",
            "worker",
            "--concurrency",
            "16",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        peak = 0
        time.sleep(1.0)  # the worker is up (imports, LISTEN) before the clock starts
        t0 = time.perf_counter()
        wid = engine.start(ForeachNoop, {"n": n})
        done = threading.Event()
        while not done.wait(0.05):
            peak = max(peak, _rss_kb(worker.pid))
            if engine.get_execution(wid).finished:
                done.set()
        elapsed = time.perf_counter() - t0
        ex = engine.get_execution(wid)
        assert ex.status == "completed", ex.error
        assert len(ex.context["each"]) == n
        return n / elapsed, peak
    finally:
        worker.terminate()
        worker.wait(30)
        engine.close()


def fan_in(url: str, wf: type = FanIn, executions: int = 15) -> list[float]:
    """ms from the last branch's completion to the next step's start, per execution."""
    engine = durable.Engine(url)
    _reset(engine)
    gaps = []
    group = "hundred." if wf is FanIn else "straggler."
    with engine.worker(concurrency=16):
        for _ in range(executions):
            wid = engine.start(wf)
            ex = engine.wait(wid, timeout=120_000)
            steps = engine.get_execution(ex.id, include_steps=True).steps or []
            last_branch = max(s.completed_at for s in steps if s.name.startswith(group))
            after = next(s.started_at for s in steps if s.name == "after")
            gaps.append((after - last_branch).total_seconds() * 1000)
    engine.close()
    return gaps


def decisions(url: str, n: int = 200) -> dict[str, float]:
    """Median ms per three-step execution (start to completed, one after another)."""
    engine = durable.Engine(url)
    _reset(engine)
    out: dict[str, list[float]] = {"plain": [], "decision": [], "when": []}
    kinds = [("plain", Plain3), ("decision", Decision3), ("when", When3)]
    for _ in range(n):
        for name, wf in kinds:  # interleaved, so that noise hits all three alike
            t0 = time.perf_counter()
            wid = engine.start(wf)
            (row,) = engine.scheduler.claim(limit=1)
            engine.scheduler.execute(row)
            out[name].append((time.perf_counter() - t0) * 1000)
            assert row.id == wid
    engine.close()
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, object] = {}

    small, large, commits = [], [], []
    for _ in range(args.runs):
        engine = durable.Engine(args.store)
        _reset(engine)
        commits.append(_commit_cost(engine))
        engine.close()
        small.append(foreach_run(args.store, 2_000))
        large.append(foreach_run(args.store, 10_000))
    results["baseline_commit_ms_median"] = round(statistics.median(commits), 3)
    results["foreach_10k_items_per_s_median"] = round(statistics.median(r for r, _ in large))
    results["foreach_2k_items_per_s_median"] = round(statistics.median(r for r, _ in small))
    results["worker_peak_rss_mib_2k"] = round(max(p for _, p in small) / 1024, 1)
    results["worker_peak_rss_mib_10k"] = round(max(p for _, p in large) / 1024, 1)

    gaps = sorted(g for _ in range(args.runs) for g in fan_in(args.store, FanInStraggler))
    results["fan_in_ms_median"] = round(statistics.median(gaps), 2)
    results["fan_in_ms_p90"] = round(gaps[int(len(gaps) * 0.9)], 2)
    burst = sorted(g for _ in range(args.runs) for g in fan_in(args.store, FanIn))
    results["fan_in_burst_ms_median"] = round(statistics.median(burst), 2)
    results["fan_in_burst_ms_p90"] = round(burst[int(len(burst) * 0.9)], 2)

    ratios = []
    medians = []
    for _ in range(args.runs):
        m = decisions(args.store)
        medians.append(m)
        ratios.append((m["decision"] / m["plain"], m["when"] / m["plain"]))
    results["three_steps_ms_median"] = {
        k: round(statistics.median(m[k] for m in medians), 3) for k in ("plain", "decision", "when")
    }
    results["decision_over_plain"] = round(statistics.median(r[0] for r in ratios), 3)
    results["when_over_plain"] = round(statistics.median(r[1] for r in ratios), 3)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
