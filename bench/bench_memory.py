"""Step transitions per second on the memory store, in one process.

A step transition is one step attempt run and committed (its record, the context and the
step pointer in one store transition). Runs several rounds and reports the median; a
baseline round of plain Python calls made the same number of times is reported alongside,
so the figure can be read against this machine's speed at the moment.

    python bench/bench_memory.py [--executions 2000] [--steps 10] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import durable
from durable import step, workflow
from durable.context import increment_context


def _make(steps: int) -> type:
    namespace = {}
    for i in range(steps):

        def body(self: object) -> None:
            increment_context("n")

        body.__name__ = f"s{i}"
        namespace[f"s{i}"] = step(body)
    return workflow(f"bench_{steps}_steps")(type(f"Bench{steps}", (), namespace))


def _round(executions: int, wf: type) -> tuple[float, int]:
    engine = durable.Engine("memory://")
    for _ in range(executions):
        engine.start(wf)
    t0 = time.perf_counter()
    engine.drain()
    elapsed = time.perf_counter() - t0
    done = engine.list_executions(status="completed", limit=10_000)
    engine.close()
    assert len(done) == executions
    return elapsed, sum(ex.context["n"] for ex in done)


def _baseline(calls: int) -> float:
    def body(ctx: dict[str, int]) -> None:
        ctx["n"] = ctx.get("n", 0) + 1

    ctx: dict[str, int] = {}
    t0 = time.perf_counter()
    for _ in range(calls):
        body(ctx)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    wf = _make(args.steps)
    _round(100, wf)  # warm up
    rates, baselines = [], []
    for _ in range(args.rounds):
        elapsed, transitions = _round(args.executions, wf)
        rates.append(transitions / elapsed)
        baselines.append(transitions / _baseline(transitions))
    med = statistics.median(rates)
    print(f"memory store: {args.executions} executions x {args.steps} steps, {args.rounds} rounds")
    print(f"  step transitions/s: median {med:,.0f} (min {min(rates):,.0f}, max {max(rates):,.0f})")
    print(f"  workflows/s:        median {med / args.steps:,.0f}")
    print(
        f"  plain-call baseline: median {statistics.median(baselines):,.0f} calls/s "
        f"(engine costs {statistics.median(baselines) / med:,.0f}x a plain call)"
    )
    print(f"  target 20,000 transitions/s: {'met' if med >= 20_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
