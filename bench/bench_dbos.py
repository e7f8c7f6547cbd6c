"""Latency and throughput of DBOS Transact for Python on PostgreSQL, for comparison with durable.

The workload is the one ``bench_sql.py`` runs against durable: a workflow of three no-op
steps (each does nothing and returns None), on the same PostgreSQL server.

1. Sequential latency: 30 warm-up workflows, then N workflows one after another in one
   process, each timed from ``DBOS.start_workflow`` to its result being available
   (``handle.get_result()``). Reports median, p90 and p99 in ms. The same is also measured
   for a direct call of the ``@DBOS.workflow`` function (in-process, no executor hand-off),
   reported as a secondary figure.
2. Throughput of one process: M workflows are enqueued on a DBOS queue while it is paused
   (``worker_concurrency=0``), then the queue is opened to ``worker_concurrency=10`` and the
   time until all M are SUCCESS is measured; reports workflows per second. As in
   ``bench_sql.py`` the starts are not timed; the figure including the enqueue phase is
   reported as well, and so is a queue-less variant: M direct workflow calls from a pool of
   10 threads, timed from the first call to the last completion.

A baseline is measured in the same run: one committed single-row UPDATE (BEGIN, UPDATE,
COMMIT with psycopg, on a scratch table ``bench_commit_probe``) on the same database, so
the figures can be read against what the disk and server give at that moment.

Each measurement runs ``--runs`` times, each phase against an emptied system database
(``DBOS.reset_system_database(truncate=True)``), and the median of the runs is reported.
The database is created if it does not exist. The last line printed is one JSON object.

    pip install dbos
    python bench/bench_dbos.py \\
        [--database-url postgresql://postgres@127.0.0.1:5432/dbos_bench] \\
        [--runs 3] [--n 300] [--m 2000] [--concurrency 10] [--queue-polling-interval 0.01]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from importlib.metadata import version

import psycopg
from dbos import DBOS, DBOSConfig
from sqlalchemy.engine import make_url

APP_NAME = "dbos_bench"
QUEUE_NAME = "bench_queue"
WARMUP = 30


@DBOS.step(name="bench_noop_one")
def noop_one() -> None:
    return None


@DBOS.step(name="bench_noop_two")
def noop_two() -> None:
    return None


@DBOS.step(name="bench_noop_three")
def noop_three() -> None:
    return None


@DBOS.workflow(name="bench_three_noop")
def three_noop() -> None:
    noop_one()
    noop_two()
    noop_three()


def _libpq_url(url: str, database: str | None = None) -> str:
    """The URL as psycopg takes it (no SQLAlchemy driver suffix), optionally another db."""
    u = make_url(url).set(drivername="postgresql")
    if database is not None:
        u = u.set(database=database)
    return u.render_as_string(hide_password=False)


def _ensure_database(url: str) -> None:
    name = make_url(url).database
    with psycopg.connect(_libpq_url(url, "postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def _schema_exists(url: str, schema: str = "dbos") -> bool:
    with psycopg.connect(_libpq_url(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        ).fetchone()
    return row is not None


@contextmanager
def _dbos(url: str) -> Iterator[None]:
    """A launched DBOS on an emptied system database, destroyed afterwards."""
    config: DBOSConfig = {
        "name": APP_NAME,
        "system_database_url": url,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    try:
        if _schema_exists(url):
            DBOS.reset_system_database(truncate=True)
        DBOS.launch()
        yield
    finally:
        DBOS.destroy()


def _count(conn: psycopg.Connection, status: str, queue: str | None = None) -> int:
    sql = "SELECT count(*) FROM dbos.workflow_status WHERE status = %s"
    params: tuple[str, ...] = (status,)
    if queue is not None:
        sql += " AND queue_name = %s"
        params = (status, queue)
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


def commit_cost(url: str, n: int = 200) -> float:
    """Median ms of one committed single-row update, the floor under every transition."""
    with psycopg.connect(_libpq_url(url), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_commit_probe (id int PRIMARY KEY, v int)")
        conn.execute("INSERT INTO bench_commit_probe VALUES (1, 0) ON CONFLICT DO NOTHING")
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            with conn.transaction():  # BEGIN; UPDATE; COMMIT, as a store transition does
                conn.execute("UPDATE bench_commit_probe SET v = v WHERE id = 1")
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def _percentiles(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {
        "median": statistics.median(times) * 1000,
        "p90": times[int(len(times) * 0.9)] * 1000,
        "p99": times[int(len(times) * 0.99)] * 1000,
    }


def latency(url: str, n: int) -> tuple[dict[str, float], dict[str, float]]:
    """(start_workflow -> get_result, direct call) latencies over n sequential workflows."""
    with _dbos(url):
        for _ in range(WARMUP):
            DBOS.start_workflow(three_noop).get_result()
        # Primary figure: start the workflow (status row written, run handed to DBOS's
        # executor) and wait for its result, the closest to durable's start + run-to-end.
        started = []
        for _ in range(n):
            t0 = time.perf_counter()
            DBOS.start_workflow(three_noop).get_result()
            started.append(time.perf_counter() - t0)
        # Secondary: call the workflow function directly; DBOS runs it durably in the
        # calling thread (same status row and step records, no executor hand-off).
        for _ in range(WARMUP):
            three_noop()
        direct = []
        for _ in range(n):
            t0 = time.perf_counter()
            three_noop()
            direct.append(time.perf_counter() - t0)
        with psycopg.connect(_libpq_url(url), autocommit=True) as conn:
            done = _count(conn, "SUCCESS")
        if done != 2 * (n + WARMUP):
            raise RuntimeError(f"{done} of {2 * (n + WARMUP)} workflows are SUCCESS")
    return _percentiles(started), _percentiles(direct)


def _wait_all(conn: psycopg.Connection, m: int, queue: str | None, timeout: float = 600) -> None:
    deadline = time.perf_counter() + timeout
    while (done := _count(conn, "SUCCESS", queue)) < m:
        if _count(conn, "ERROR", queue):
            raise RuntimeError("a benchmark workflow ended in ERROR")
        if time.perf_counter() > deadline:
            raise RuntimeError(f"only {done} of {m} completed")
        time.sleep(0.005)


def throughput_queue(url: str, m: int, concurrency: int, polling: float) -> tuple[float, float]:
    """(workflows/s of the run phase, workflows/s including the enqueue phase)."""
    with _dbos(url), psycopg.connect(_libpq_url(url), autocommit=True) as conn:
        # worker_concurrency=0 keeps the queue closed while the M workflows are enqueued,
        # as durable's bench starts all M before its worker runs.
        queue = DBOS.register_queue(
            QUEUE_NAME,
            worker_concurrency=0,
            polling_interval_sec=polling,
            on_conflict="always_update",
        )
        t_enqueue = time.perf_counter()
        for _ in range(m):
            queue.enqueue(three_noop)
        enqueue_s = time.perf_counter() - t_enqueue
        if _count(conn, "ENQUEUED", QUEUE_NAME) != m:
            raise RuntimeError("the queue started workflows while closed")
        t0 = time.perf_counter()
        # The queue worker reloads a registered queue's settings from the database on
        # every poll, so this takes effect within one polling interval.
        queue.set_worker_concurrency(concurrency)
        _wait_all(conn, m, QUEUE_NAME)
        run_s = time.perf_counter() - t0
    return m / run_s, m / (enqueue_s + run_s)


def throughput_threads(url: str, m: int, concurrency: int) -> float:
    """Workflows/s of m direct workflow calls from a pool of `concurrency` threads."""
    with _dbos(url), psycopg.connect(_libpq_url(url), autocommit=True) as conn:
        with ThreadPoolExecutor(concurrency, thread_name_prefix="bench") as pool:
            t0 = time.perf_counter()
            futures = [pool.submit(three_noop) for _ in range(m)]
            for f in futures:
                f.result()
            elapsed = time.perf_counter() - t0
        if (done := _count(conn, "SUCCESS")) != m:
            raise RuntimeError(f"only {done} of {m} completed")
    return m / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/dbos_bench")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n", type=int, default=300, help="sequential workflows per run")
    parser.add_argument("--m", type=int, default=2000, help="workflows for throughput")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument(
        "--queue-polling-interval",
        type=float,
        default=0.01,
        help="seconds between the queue worker's polls (DBOS default 1.0)",
    )
    args = parser.parse_args()
    url = args.database_url
    logging.getLogger("dbos").setLevel(logging.WARNING)
    _ensure_database(url)

    commit_runs: list[float] = []
    lat_runs: list[dict[str, float]] = []
    direct_runs: list[dict[str, float]] = []
    queue_runs: list[float] = []
    queue_total_runs: list[float] = []
    thread_runs: list[float] = []
    for i in range(args.runs):
        commit_runs.append(commit_cost(url))
        started, direct = latency(url, args.n)
        lat_runs.append(started)
        direct_runs.append(direct)
        run_wps, total_wps = throughput_queue(
            url, args.m, args.concurrency, args.queue_polling_interval
        )
        queue_runs.append(run_wps)
        queue_total_runs.append(total_wps)
        thread_runs.append(throughput_threads(url, args.m, args.concurrency))
        print(
            f"run {i + 1}/{args.runs}: latency median {started['median']:.2f} ms, "
            f"queue {run_wps:,.0f} wf/s, threads {thread_runs[-1]:,.0f} wf/s",
            flush=True,
        )

    keys = ("median", "p90", "p99")
    lat = {k: statistics.median(r[k] for r in lat_runs) for k in keys}
    lat_direct = {k: statistics.median(r[k] for r in direct_runs) for k in keys}
    commit_ms = statistics.median(commit_runs)
    result = {
        "engine": "dbos",
        "dbos_version": version("dbos"),
        "latency_ms": lat,
        "throughput_wps": statistics.median(queue_runs),
        "store": "postgresql",
        "commit_ms": commit_ms,
        "latency_direct_call_ms": lat_direct,
        "throughput_incl_enqueue_wps": statistics.median(queue_total_runs),
        "throughput_threads_wps": statistics.median(thread_runs),
        "concurrency": args.concurrency,
        "queue_polling_interval_sec": args.queue_polling_interval,
        "runs": args.runs,
    }
    print(f"DBOS {result['dbos_version']} on {make_url(url).render_as_string()}")
    print(f"  one committed update:                    median {commit_ms:.3f} ms")
    print(
        f"  start_workflow -> get_result (3 steps):  median {lat['median']:.2f} ms, "
        f"p90 {lat['p90']:.2f} ms, p99 {lat['p99']:.2f} ms "
        f"({lat['median'] / commit_ms:.1f} commits' worth)"
    )
    print(
        f"  direct workflow call (3 steps):          median {lat_direct['median']:.2f} ms, "
        f"p90 {lat_direct['p90']:.2f} ms, p99 {lat_direct['p99']:.2f} ms"
    )
    print(
        f"  queue, worker_concurrency {args.concurrency}, polling "
        f"{args.queue_polling_interval:g} s: {result['throughput_wps']:,.0f} three-step "
        f"workflows/s (runs: {', '.join(f'{t:,.0f}' for t in queue_runs)})"
    )
    print(
        f"    including the enqueue phase:           "
        f"{result['throughput_incl_enqueue_wps']:,.0f} workflows/s"
    )
    print(
        f"  {args.concurrency} threads calling the workflow:        "
        f"{result['throughput_threads_wps']:,.0f} workflows/s "
        f"(runs: {', '.join(f'{t:,.0f}' for t in thread_runs)})"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
