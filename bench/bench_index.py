"""Claims and listings cost the same with 1,000,000 finished executions in the table.

Measures, on PostgreSQL, the median latency of: a claim of 10 due executions, listing
running executions, listing one workflow's newest 100, and next_due, first with only live
rows, then after bulk-inserting ``--finished`` completed executions (and ANALYZE). Prints
both, their ratio, and the plans PostgreSQL chose for the claim and the listing.

    python bench/bench_index.py [--url postgresql://...] [--finished 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg

import durable
from durable import step, workflow
from durable.durations import MAX_DURATION_MS


@workflow("bench_index_wf")
class Noop:
    @step
    def only(self) -> None:
        pass


def _median_ms(fn: Callable[[], object], n: int = 200) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def measure(engine: durable.Engine) -> dict[str, float]:
    store = engine.store
    now = datetime.now(UTC)
    names = ["bench_index_wf"]

    def claim_and_release() -> None:
        rows = store.claim(
            queues=None, workflows=names, worker_id="bench", now=now, lease_ms=30_000, limit=10
        )
        assert len(rows) == 10
        for r in rows:
            store.release(r.id, r.token, now=now, attempt_ran=False)

    return {
        "claim 10 (+ release)": _median_ms(claim_and_release, 50),
        "list running": _median_ms(lambda: engine.list_executions(status="running")),
        "list workflow newest 100": _median_ms(
            lambda: engine.list_executions(workflow="bench_index_wf", limit=100)
        ),
        "next_due": _median_ms(engine.next_due),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/durable_index")
    parser.add_argument("--finished", type=int, default=1_000_000)
    args = parser.parse_args()
    admin = args.url.rsplit("/", 1)[0] + "/postgres"
    name = args.url.rsplit("/", 1)[1]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    engine = durable.Engine(args.url)
    past = datetime.now(UTC) - timedelta(minutes=1)
    for _ in range(200):  # live rows: due now
        engine.start(Noop, scheduled_at=past)
    for _ in range(50):  # live rows: running (claimed by a worker elsewhere)
        engine.start(Noop, scheduled_at=past, queue="elsewhere")
    engine.store.claim(
        queues=["elsewhere"],
        workflows=["bench_index_wf"],
        worker_id="x",
        now=datetime.now(UTC),
        lease_ms=3_600_000,
        limit=50,
    )
    before = measure(engine)

    t0 = time.perf_counter()
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO durable_executions (id, workflow, status, queue, priority, input, "
            "context, created_at, scheduled_at, step_index, step_name, attempt, token, "
            "cancel_requested, completed_at) "
            "SELECT 'done-' || g, 'bench_index_wf', 'completed', 'default', 0, 'null', '{}', "
            "%(t)s - g * interval '1 second', %(t)s - g * interval '1 second', 0, 'only', 1, "
            "1, FALSE, %(t)s - g * interval '1 second' FROM generate_series(1, %(n)s) g",
            {"t": past, "n": args.finished},
        )
        conn.execute("ANALYZE durable_executions")
        count = conn.execute("SELECT count(*) FROM durable_executions").fetchone()
        # The store's own statements, with the parameters it binds (a worker's claim, a
        # listing of running executions): what the engine really runs, not a copy of it.
        store = engine.store
        now = datetime.now(UTC)
        claim = {
            "now": now,
            "expires": now + timedelta(seconds=30),
            "worker": "bench",
            "limit": 10,
            "workflows": ["bench_index_wf"],
            "queues": None,
            "max_timeout_ms": MAX_DURATION_MS,
        }
        listing = {"status": "running", "workflows": None, "queues": None, "limit": 100}
        plans = {
            "claim": conn.execute(
                "EXPLAIN " + store.SQL["claim"],  # type: ignore[attr-defined]
                claim,
            ).fetchall(),
            "list running": conn.execute(
                "EXPLAIN " + store.SQL["list_by_status"],  # type: ignore[attr-defined]
                listing,
            ).fetchall(),
        }
    print(
        f"inserted {args.finished:,} finished executions in {time.perf_counter() - t0:.1f} s"
        f"; table now holds {count[0] if count else '?':,} rows"
    )
    after = measure(engine)
    print(f"{'operation':<28}{'live rows only':>16}{'+ finished':>14}{'ratio':>8}")
    for key in before:
        print(
            f"{key:<28}{before[key]:>13.3f} ms{after[key]:>11.3f} ms"
            f"{after[key] / before[key]:>8.2f}"
        )
    for what, plan in plans.items():
        print(f"plan for {what}:")
        for (line,) in plan:
            print(f"  {line}")
    engine.close()


if __name__ == "__main__":
    main()
