"""The dashboard's server time with 1,000,000 executions in PostgreSQL.

Measures, in this process, the median time the dashboard's ASGI app (``create_app``)
takes to answer:

(a) the executions page, first page (``GET /executions``);
(b) filtered pages: by workflow, by status, by both (also a rare pair, and one nothing
    matches), by queue (also one nothing matches), a page deep in the keyset paging (the 200th, reached by following the
    pages' own ``Older`` links, unfiltered and by status) and a page whose cursor sits
    in the middle of the table;
(c) an execution whose foreach ran 10,000 items (``GET /executions/{id}``, its units
    paged 50 at a time), its live part (``/executions/{id}/live``, as polled) and the
    next page of its units (the page's own ``Next 50 units`` link), and its last page;
    the execution page's size in bytes is printed too (its context holds the 10,000
    items and their results).

Targets: (a) and (b) at most 100 ms median, (c) at most 200 ms median (the worst figure
of each group counts); the exit status is 1 when one fails.

Each request goes through Starlette's TestClient (the app in-process: no socket, no
server) and is timed with ``time.perf_counter`` after a warm-up; the client's own cost is
measured too, on an app with one empty route, and printed: about a millisecond, small
against the figures. Every response is checked (status, rows shown), so a fast error
cannot pass for a fast page.

The database: the store's schema (migrated by the engine), a few real executions of each
bench workflow (their rows are the templates of the bulk rows: same input, context, shape
and visits), one real execution whose foreach ran 10,000 items through a worker, then
``--executions`` rows bulk-inserted with ``INSERT ... SELECT generate_series`` in batches
(five workflows of different weights; completed, failed, cancelled and waiting; created
over 30 days, older first; every execution of the approval workflow with its wait row),
then VACUUM ANALYZE. A database that already holds what the arguments ask for is reused
(``--fresh`` drops it and builds it again), so a rerun takes a minute, a first run a few.

    python bench/bench_dashboard.py [--url postgresql://...] [--executions 1000000]
        [--items 10000] [--runs 15] [--deep 200] [--fresh]
"""

from __future__ import annotations

import argparse
import html
import re
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import durable
from durable import foreach, step, workflow
from durable.context import input, put_context, wait_for_input
from durable.dashboard import create_app
from durable_testing.sandbox import DATA_TABLES

sys.path.insert(0, str(Path(__file__).parent))
from bench_sql import ensure_database

PAGE_TARGET_MS = 100.0
EXECUTION_TARGET_MS = 200.0
FOREACH_KEY = "bench-dashboard-foreach"
META = "bench_dashboard_meta"  # what a finished build made (its own table, not the store's)


# -- the workflows -----------------------------------------------------------------------------


@workflow("bench_dash_order")
class Order:
    @step
    def reserve(self) -> None:
        put_context("order", input())
        put_context("reserved", {"warehouse": "north-2", "lines": 3})

    @step
    def charge(self) -> None:
        put_context("charge", {"id": "ch_3PkLq2bX9sTn", "amount": 4_990, "currency": "EUR"})

    @step
    def ship(self) -> None:
        put_context("shipment", {"carrier": "dhl", "tracking": "JD014600006281234567"})


@workflow("bench_dash_email")
class Email:
    @step
    def send(self) -> None:
        put_context("message_id", "<20260301.4711@mail.example.com>")


@workflow("bench_dash_approval")
class Approval:
    @step
    def ask(self) -> None:
        put_context("answer", wait_for_input("approval", prompt="Approve the refund?"))

    @step
    def apply(self) -> None:
        put_context("applied", True)


@workflow("bench_dash_sync")
class Sync:
    @step
    def fetch(self) -> None:
        put_context("fetched", {"since": "2026-03-01T00:00:00Z", "records": 412})

    @step
    def store(self) -> None:
        put_context("stored", 412)


@workflow("bench_dash_report")
class Report:
    @step
    def build(self) -> None:
        put_context("report", {"rows": 18_204, "url": "s3://reports/2026/03/daily.csv"})


@workflow("bench_dash_fanout")
class Fanout:
    @step
    def load(self) -> None:
        put_context("xs", list(range(input())))

    @foreach("xs", concurrency=50)
    def each(self, x: int) -> int:
        return x * 2


#: the bulk rows' workflows, with how many in a hundred are of each
WEIGHTS = {
    "bench_dash_order": 40,
    "bench_dash_email": 25,
    "bench_dash_approval": 15,
    "bench_dash_sync": 15,
    "bench_dash_report": 5,
}
SAMPLES = {
    "bench_dash_order": {"sku": "A-1042", "qty": 2, "customer": "c_81723"},
    "bench_dash_email": {"to": "someone@example.com", "template": "receipt"},
    "bench_dash_approval": {"refund": 120, "order": "o_55120"},
    "bench_dash_sync": {"source": "crm", "cursor": "2026-03-01"},
    "bench_dash_report": {"day": "2026-03-01"},
}
ERROR = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/shop/payments.py", line 88, in charge\n'
    "    response.raise_for_status()\n"
    "httpx.HTTPStatusError: Server error '502 Bad Gateway' for url "
    "'https://payments.example.com/v1/charges'\n"
)


# -- building the database ---------------------------------------------------------------------


def _run(engine: durable.Engine) -> None:
    while engine.drain():
        pass


def _templates(engine: durable.Engine) -> dict[str, str]:
    """One real execution of each bulk workflow, run to its end (the approval one also
    left waiting): workflow (or "waiting") -> id."""
    ids = {}
    for name, sample in SAMPLES.items():
        ids[name] = engine.start(name, sample)
    _run(engine)
    engine.provide_input(ids["bench_dash_approval"], "approval", {"approved": True})
    ids["waiting"] = engine.start("bench_dash_approval", SAMPLES["bench_dash_approval"])
    _run(engine)
    return ids


def _foreach(engine: durable.Engine, items: int) -> str:
    t0 = time.perf_counter()
    eid = engine.start(Fanout, items, idempotency_key=FOREACH_KEY)
    with engine.worker(concurrency=8):
        ex = engine.wait(eid, timeout=timedelta(hours=1))
    assert ex.status == "completed", ex.status
    print(f"ran the foreach of {items:,} items in {time.perf_counter() - t0:.1f} s", flush=True)
    return eid


_BULK = """
WITH src AS (
    SELECT g,
           %(start)s::timestamptz + (g::bigint * %(spacing_ms)s + abs(hashint4(g)) %% 1000)
               * interval '1 millisecond' AS at,
           abs(hashint4(g * 31 + 7)) %% 100 AS wpick,
           abs(hashint4(g * 17 + 3)) %% 1000 AS spick
    FROM generate_series(%(lo)s::int, %(hi)s::int) g
), picked AS (
    SELECT s.g, s.at, w.workflow,
           CASE WHEN w.workflow = 'bench_dash_approval' THEN
                    CASE WHEN s.spick < 850 THEN 'completed' WHEN s.spick < 950 THEN 'waiting'
                         WHEN s.spick < 980 THEN 'failed' ELSE 'cancelled' END
                ELSE CASE WHEN s.spick < 930 THEN 'completed' WHEN s.spick < 980 THEN 'failed'
                          ELSE 'cancelled' END
           END AS status
    FROM src s JOIN bench_weights w ON s.wpick >= w.lo AND s.wpick < w.hi
)
INSERT INTO durable_executions (
    id, workflow, status, queue, priority, input, context, created_at, scheduled_at,
    run_at, started_at, completed_at, step_index, step_name, attempt, attempt_started_at,
    error, token, cancel_requested, cancel_reason, claimable_at, suspended, max_attempts,
    step_visit, visits, phase, shape
)
SELECT
    md5('bench' || p.g)::uuid::text, p.workflow, p.status,
    CASE WHEN p.g %% 10 = 0 THEN 'priority' ELSE 'default' END, 0, t.input,
    CASE WHEN p.status = 'completed' THEN t.context ELSE w.context END,
    p.at, p.at, p.at, p.at + interval '4 milliseconds',
    CASE WHEN p.status = 'waiting' THEN NULL
         ELSE p.at + (40 + abs(hashint4(p.g)) %% 3000) * interval '1 millisecond' END,
    CASE WHEN p.status = 'completed' THEN t.step_index ELSE w.step_index END,
    CASE WHEN p.status = 'completed' THEN t.step_name ELSE w.step_name END,
    1, CASE WHEN p.status = 'waiting' THEN p.at + interval '4 milliseconds' END,
    CASE WHEN p.status = 'failed' THEN %(error)s END, 3, p.status = 'cancelled',
    CASE WHEN p.status = 'cancelled' THEN 'cancelled by an operator' END, NULL,
    p.status = 'waiting', 1, 1,
    CASE WHEN p.status = 'completed' THEN t.visits ELSE w.visits END, 'run', t.shape
FROM picked p
JOIN bench_rows t ON t.workflow = p.workflow AND t.kind = 'completed'
JOIN bench_rows w ON w.workflow = p.workflow
    AND w.kind = CASE WHEN p.workflow = 'bench_dash_approval' THEN 'waiting' ELSE 'completed' END
"""

_WAITS = """
INSERT INTO durable_waits (
    execution_id, step, wait_seq, attempt, kind, names, mode, until_at, status,
    created_at, prompt, input_schema, result, resolved_at, visit
)
SELECT e.id, w.step, w.wait_seq, 1, w.kind, w.names, w.mode, NULL,
       CASE WHEN e.status = 'completed' THEN 'resolved' ELSE 'pending' END,
       e.created_at + interval '5 milliseconds', w.prompt, w.input_schema,
       CASE WHEN e.status = 'completed' THEN w.result END,
       CASE WHEN e.status = 'completed' THEN e.completed_at END, 1
FROM durable_executions e
CROSS JOIN (SELECT * FROM durable_waits WHERE execution_id = %(template)s) w
WHERE e.workflow = 'bench_dash_approval' AND e.unit IS NULL
  AND NOT EXISTS (SELECT 1 FROM durable_waits x WHERE x.execution_id = e.id)
"""


def _build(url: str, engine: durable.Engine, n: int, items: int) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {META}")
        conn.execute(f"TRUNCATE {', '.join(DATA_TABLES)}")
    templates = _templates(engine)
    foreach_id = _foreach(engine, items)
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE bench_weights (workflow text, lo int, hi int)")
        lo = 0
        for name, weight in WEIGHTS.items():
            conn.execute("INSERT INTO bench_weights VALUES (%s, %s, %s)", (name, lo, lo + weight))
            lo += weight
        conn.execute(
            "CREATE TEMP TABLE bench_rows AS SELECT workflow, 'completed' AS kind, input, "
            "context, step_index, step_name, visits, shape FROM durable_executions "
            "WHERE id = ANY(%s)",
            ([templates[name] for name in WEIGHTS],),
        )
        conn.execute(
            "INSERT INTO bench_rows SELECT workflow, 'waiting', input, context, step_index, "
            "step_name, visits, shape FROM durable_executions WHERE id = %s",
            (templates["waiting"],),
        )
        # Created over the 30 days before the real executions, oldest first (seq grows
        # with created_at, as it does when executions are started).
        start = datetime.now(UTC) - timedelta(days=30)
        spacing_ms = int(timedelta(days=30).total_seconds() * 1000 / n) - 1
        batch = 100_000
        for lo in range(1, n + 1, batch):
            hi = min(n, lo + batch - 1)
            conn.execute(
                _BULK,
                {"start": start, "spacing_ms": spacing_ms, "lo": lo, "hi": hi, "error": ERROR},
            )
            print(f"  inserted {hi:,} executions ({time.perf_counter() - t0:.0f} s)", flush=True)
        conn.execute(_WAITS, {"template": templates["bench_dash_approval"]})
        conn.execute("VACUUM ANALYZE")
        conn.execute(f"CREATE TABLE {META} (executions int, items int, foreach_id text)")
        conn.execute(f"INSERT INTO {META} VALUES (%s, %s, %s)", (n, items, foreach_id))
    print(f"bulk insert, waits and VACUUM ANALYZE: {time.perf_counter() - t0:.0f} s", flush=True)
    return foreach_id


def _reusable(url: str, n: int, items: int) -> str | None:
    """The foreach execution's id, when the database holds what a build with these
    arguments made."""
    with psycopg.connect(url, autocommit=True) as conn:
        if not conn.execute("SELECT to_regclass(%s)", (META,)).fetchone()[0]:  # type: ignore[index]
            return None
        row = conn.execute(f"SELECT executions, items, foreach_id FROM {META}").fetchone()
    if row is None or (row[0], row[1]) != (n, items):
        return None
    return str(row[2])


# -- measuring ---------------------------------------------------------------------------------


def _median_ms(call: Callable[[], object], runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def _client_overhead_ms(runs: int) -> float:
    """What the test client itself costs a request: an app with one empty route."""
    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("ok"))])
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        return _median_ms(lambda: client.get("/"), runs * 4)


def _link(page: str, pattern: str) -> str:
    found = re.search(pattern, page)
    assert found, f"no link matching {pattern!r} on the page"
    return html.unescape(found[1])


def _older(page: str) -> str:
    return _link(page, r'href="([^"]+)" id="next-page"')


def _middle_cursor(url: str) -> str:
    """The keyset cursor of the execution in the middle of the list (by created_at)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT created_at, seq FROM durable_executions WHERE unit IS NULL "
            "ORDER BY created_at DESC, seq DESC OFFSET (SELECT count(*) / 2 FROM "
            "durable_executions WHERE unit IS NULL) LIMIT 1"
        ).fetchone()
    assert row is not None
    return f"{row[0].astimezone(UTC).isoformat()}|{row[1]}"


def measure(
    client: TestClient, url: str, foreach_id: str, items: int, runs: int, deep: int
) -> list[tuple[str, str, float]]:
    """(target group, what, median ms) of every figure."""

    def page(
        path: str, marker: str = "<td><a href=", rows: int = 50, answer: int = 200, **params: str
    ) -> Callable[[], object]:
        """A GET checked: status ``answer``, with (at least) ``rows`` rows (each has
        ``marker``); with none, the page says that nothing matches."""

        def call() -> object:
            r = client.get(path, params=params or None)
            assert r.status_code == answer, (path, params, r.status_code, r.text[:500])
            shown = r.text.count(marker)
            assert shown >= rows, (path, params, shown)
            assert rows or "No executions match." in r.text, (path, params)
            return r

        return call

    out: list[tuple[str, str, float]] = []

    def add(group: str, what: str, call: Callable[[], object]) -> None:
        ms = _median_ms(call, runs)
        out.append((group, what, ms))
        print(f"  {what:<52}{ms:>9.1f} ms", flush=True)

    add("a", "GET /executions (first page)", page("/executions"))
    add("b", "  workflow=bench_dash_order", page("/executions", workflow="bench_dash_order"))
    add("b", "  workflow=bench_dash_report (5%)", page("/executions", workflow="bench_dash_report"))
    add("b", "  status=failed", page("/executions", status="failed"))
    add("b", "  status=waiting", page("/executions", status="waiting"))
    add(
        "b",
        "  workflow=bench_dash_report&status=failed",
        page("/executions", workflow="bench_dash_report", status="failed"),
    )
    # a workflow with one execution (completed), by a status most executions have, and
    # by one it has none of: found without walking all the completed (or failed) ones
    add(
        "b",
        "  workflow=bench_dash_fanout&status=completed (1)",
        page("/executions", rows=1, workflow="bench_dash_fanout", status="completed"),
    )
    add(
        "b",
        "  workflow=bench_dash_fanout&status=failed (none)",
        page("/executions", rows=0, workflow="bench_dash_fanout", status="failed"),
    )
    # by queue: one in ten executions is on "priority"; none is on "nowhere" (a queue
    # filter that matches nothing must not walk the whole table to say so)
    add("b", "  queue=priority (10%)", page("/executions", queue="priority"))
    add("b", "  queue=nowhere (none)", page("/executions", rows=0, queue="nowhere"))
    # the deep page (the 200th), reached the way a reader gets there: each page's Older link
    path = "/executions"
    for _ in range(deep - 1):
        path = _older(client.get(path).text)
    add("b", f"  page {deep} (followed Older links)", page(path))
    path = "/executions?status=failed"
    for _ in range(deep - 1):
        path = _older(client.get(path).text)
    add("b", f"  status=failed, page {deep}", page(path))
    add("b", "  cursor in the middle of the list", page("/executions", before=_middle_cursor(url)))

    ex = f"executions/{foreach_id}"
    first = client.get(f"/{ex}")
    assert first.status_code == 200, first.text[:500]
    more = _link(first.text, r'class="more" href="([^"]+)"')
    assert "after=49" in more, more
    unit = "&amp;index="  # a unit's row links to its attempts
    last = more.replace("after=49", f"after={items - 51}")
    add("c", f"GET /executions/{{id}} (foreach of {items:,} items)", page(f"/{ex}", unit))
    size = len(first.content)
    print(f"  {'  its size (bytes of HTML)':<52}{size:>9,} B", flush=True)
    # (the execution is final: its live part answers 286, which stops htmx polling; only
    # a page opened while it ran polls it)
    live = page(f"/{ex}/live", unit, answer=286)
    add("c", "  /executions/{id}/live (polled, full answer)", live)
    add("c", "  next units page (after=49)", page(more, unit))
    add("c", f"  last units page (after={items - 51})", page(last, unit))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/durable_bench_dash")
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=15, help="timed requests per figure")
    parser.add_argument("--deep", type=int, default=200, help="the deep page's number")
    parser.add_argument("--fresh", action="store_true", help="drop the database and build it again")
    args = parser.parse_args()
    if args.fresh:  # a new database: its schema from this code's migrations, too
        admin, name = args.url.rsplit("/", 1)
        with psycopg.connect(f"{admin}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    ensure_database(args.url)
    engine = durable.Engine(args.url)  # (migrates the schema: a reused database too)
    found = None if args.fresh else _reusable(args.url, args.executions, args.items)
    if found is None:
        print(f"building: {args.executions:,} executions and a foreach of {args.items:,} items")
        foreach_id = _build(args.url, engine, args.executions, args.items)
    else:
        foreach_id = found
        print(f"reusing the database: {args.executions:,} executions, foreach {foreach_id}")
    with psycopg.connect(args.url) as conn:
        total = conn.execute("SELECT count(*) FROM durable_executions").fetchone()
    print(f"durable_executions holds {total[0] if total else 0:,} rows (units included)")
    print(f"test client overhead (empty route): {_client_overhead_ms(args.runs):.2f} ms median")
    print(f"median server time of {args.runs} requests each, after 3 warm-up requests:")
    with TestClient(create_app(engine), base_url="http://127.0.0.1:8765") as client:
        figures = measure(client, args.url, foreach_id, args.items, args.runs, args.deep)
    engine.close()
    targets = {"a": PAGE_TARGET_MS, "b": PAGE_TARGET_MS, "c": EXECUTION_TARGET_MS}
    names = {"a": "(a) executions page", "b": "(b) filtered and deep pages", "c": "(c) execution"}
    ok = True
    for group, target in targets.items():
        worst = max(ms for g, _, ms in figures if g == group)
        holds = worst <= target
        ok = ok and holds
        print(
            f"{names[group]}: worst median {worst:.1f} ms, target <= {target:.0f} ms: "
            f"{'holds' if holds else 'FAILS'}"
        )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
