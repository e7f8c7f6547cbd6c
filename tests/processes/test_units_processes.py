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


def test_a_worker_killed_during_a_compensation_another_finishes_each_once(
    pg_workers, durable_store_url_pg
):
    import proc_workflows  # noqa: F401

    client = durable.Engine(durable_store_url_pg)
    ids = [client.start("proc_saga") for _ in range(4)]
    procs = [pg_workers.start(concurrency=4) for _ in range(2)]
    # every execution's undo_b is in its first run (which hangs): kill the workers there
    assert eventually(lambda: _marks(pg_workers, "undo_b-start") >= 4, 120)
    assert all(client.get_execution(w).status == "compensating" for w in ids)
    hanging = {int(ln[3]) for ln in pg_workers.lines() if ln[0] == "undo_b-start"}
    for p in procs:
        if p.pid in hanging:
            p.kill()
            p.wait()
    pg_workers.start(concurrency=4)
    assert eventually(lambda: all(client.get_execution(w).finished for w in ids), 240)
    for wid in ids:
        ex = client.get_execution(wid, include_steps=True)
        assert ex.status == "compensated", ex.error
        assert ex.error is not None and ex.error["message"] == "the last step fails"
        done = Counter(
            s.name for s in ex.steps if s.phase == "compensate" and s.status == "completed"
        )
        assert done == {"undo_c": 1, "undo_b": 1, "undo_a": 1}
        order = [s.name for s in ex.steps if s.phase == "compensate" and s.status == "completed"]
        assert order == ["undo_c", "undo_b", "undo_a"]
        lost = [s for s in ex.steps if s.name == "undo_b" and s.status == "lost"]
        assert len(lost) == 1  # the killed run, run again without spending its budget
    for what in ("undo_c-done", "undo_b-done", "undo_a-done"):
        assert _marks(pg_workers, what) == 4  # each body completed once per execution
