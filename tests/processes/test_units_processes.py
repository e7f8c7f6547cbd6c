"""Parallel branches, foreach items and child workflows across real worker processes on
PostgreSQL, with one worker SIGKILLed mid-run: everything completes, each unit's
completion is recorded once, results in order."""

from __future__ import annotations

from collections import Counter

import pytest
from test_crash_and_scale_out import Workers

import durable

from helpers import eventually

pytestmark = [pytest.mark.processes, pytest.mark.slow]


@pytest.fixture
def pg_workers(durable_store_url_pg, tmp_path):
    w = Workers(durable_store_url_pg, tmp_path / "steps.log")
    yield w
    w.stop_all()


def _marks(workers: Workers, what: str) -> int:
    return sum(1 for ln in workers.lines() if ln and ln[0] == what)


def test_groups_and_items_on_four_workers_one_killed(pg_workers, durable_store_url_pg):
    import proc_workflows  # noqa: F401

    client = durable.Engine(durable_store_url_pg)
    ids = [client.start("proc_fan") for _ in range(10)]
    procs = [pg_workers.start(concurrency=4) for _ in range(4)]
    assert eventually(lambda: _marks(pg_workers, "item") >= 300, 120)
    procs[0].kill()  # SIGKILL with items in flight
    procs[0].wait()
    assert eventually(lambda: all(client.get_execution(w).finished for w in ids), 240)
    for wid in ids:
        ex = client.get_execution(wid, include_steps=True)
        assert ex.status == "completed", ex.error
        assert ex.context["double"] == [x * 2 for x in range(200)]  # in item order
        assert (ex.context["a"], ex.context["b"], ex.context["c"], ex.context["d"]) == (1, 2, 3, 4)
        done = Counter(s.name for s in ex.steps if s.status == "completed")
        assert all(done[f"double[{i}]"] == 1 for i in range(200)), done
        assert all(done[f"four.{b}"] == 1 for b in "abcd")
    assert _marks(pg_workers, "item") >= 2000  # (at least once: a killed item runs again)


def test_twenty_parents_each_calling_three_children_one_worker_killed(
    pg_workers, durable_store_url_pg
):
    import proc_workflows  # noqa: F401

    client = durable.Engine(durable_store_url_pg)
    ids = [client.start("proc_parent") for _ in range(20)]
    procs = [pg_workers.start(concurrency=4) for _ in range(4)]
    assert eventually(lambda: _marks(pg_workers, "child") >= 20, 120)
    procs[1].kill()
    procs[1].wait()
    assert eventually(lambda: all(client.get_execution(w).finished for w in ids), 240)
    for wid in ids:
        ex = client.get_execution(wid)
        assert ex.status == "completed", ex.error
        assert len(ex.context["children"]) == 3
        children = client.list_executions(parent=wid)
        assert len(children) == 3  # each call started its child once
        assert all(c.status == "completed" and c.parent_id == wid for c in children)
