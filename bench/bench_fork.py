"""The cost of a fork and of its fan-in with 10,000 units, on PostgreSQL and SQLite.

Measures (median of ``--repeat`` runs): ``fork`` of ``--units`` units into a claimed
execution (the set-based insert of every unit and the parent made to wait, one
transaction), and then, with ``--concurrency`` units claimable at a time, the time to
claim and complete every unit (each completion counts the parent down and activates the
next parked unit, so a per-unit cost that grows with the group shows here), per unit.

    python bench/bench_fork.py [--pg postgresql://...] [--units 10000] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg

import durable
from durable.models import StepExecution, StepStatus
from durable.stores.base import ExecutionRow, Store, Unit

WF = "bench_fork_wf"


def _fresh_pg(admin: str) -> str:
    db = f"durable_bench_fork_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    return admin.rsplit("/", 1)[0] + "/" + db


def _drop_pg(admin: str, url: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def _claimed_parent(store: Store, now: datetime, queue: str) -> ExecutionRow:
    row = ExecutionRow(
        id=str(uuid.uuid4()),
        workflow=WF,
        status=durable.Status.PENDING,
        queue=queue,
        priority=0,
        input=None,
        context={},
        created_at=now,
        scheduled_at=now,
        run_at=now,
        step_name="each",
    )
    store.create(row)
    (claimed,) = store.claim(
        queues=[queue], workflows=[WF], worker_id="b", now=now, lease_ms=600_000, limit=1
    )
    return claimed


def run(store: Store, units: int, concurrency: int, repeat: int) -> dict[str, float]:
    forks, per_unit = [], []
    now = datetime(2031, 1, 1, tzinfo=UTC)
    for n in range(repeat):
        now += timedelta(hours=1)
        queue = f"bench{n}"
        parent = _claimed_parent(store, now, queue)
        items = [Unit(f"each[{i}]", i, item={"n": i, "pad": "x" * 40}) for i in range(units)]
        t0 = time.perf_counter()
        store.fork(
            parent.id,
            parent.token,
            now=now,
            step="each",
            visit=1,
            units=items,
            concurrency=concurrency,
            stops_group=False,
        )
        forks.append(time.perf_counter() - t0)
        done = 0
        t0 = time.perf_counter()
        while done < units:
            got = store.claim(
                queues=[queue],
                workflows=[WF],
                worker_id="b",
                now=now,
                lease_ms=600_000,
                limit=concurrency,
            )
            assert got and all(r.unit is not None for r in got)
            for r in got:
                rec = StepExecution(r.step_name or "", StepStatus.COMPLETED, 1, now, now)
                store.complete_step(
                    r.id,
                    r.token,
                    now=now,
                    record=rec,
                    context={},
                    next_step=None,
                    start_next=False,
                    result=r.item,
                )
                done += 1
        per_unit.append((time.perf_counter() - t0) / max(done, 1))
        assert done == units, (done, units)
        assert store.get(parent.id).status == durable.Status.PENDING  # type: ignore[union-attr]
    return {
        f"fork of {units} units (ms)": statistics.median(forks) * 1000,
        "claim + complete, per unit (ms)": statistics.median(per_unit) * 1000,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--units", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--only", choices=["sqlite", "postgres"])
    a = p.parse_args()
    if a.only != "postgres":
        with tempfile.TemporaryDirectory() as d:
            engine = durable.Engine(f"sqlite:///{d}/bench.db")
            print("sqlite  ", run(engine.store, a.units, a.concurrency, a.repeat))
            engine.close()
    if a.only != "sqlite":
        url = _fresh_pg(a.pg)
        try:
            engine = durable.Engine(url)
            print("postgres", run(engine.store, a.units, a.concurrency, a.repeat))
            engine.close()
        finally:
            _drop_pg(a.pg, url)


if __name__ == "__main__":
    main()
