"""Upgrading from every earlier schema version, with data in it, to the journal key (v6)
and units and children (v7).

Each case builds a database at version N with what that version could hold (an execution
suspended on a wait that already resolved, its attempts, an unconsumed event), upgrades it,
and checks that nothing was lost, that what exists became visit 1 of its step, and that the
execution resumes: its recorded wait is replayed to visit 1, and a step reached again
starts afresh.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from durable.models import StepExecution, StepStatus, WaitKind, WaitSpec
from durable.plugins import PluginHost
from durable.stores.sql import migrations
from durable.stores.sql.schema import SCHEMA_VERSION

T0 = datetime(2025, 1, 1, tzinfo=UTC)
WF = "upgrade_flow"


def _insert(conn: sa.Connection, table: sa.Table, values: dict[str, Any]) -> None:
    """Insert the values this version's table has columns for."""
    conn.execute(sa.insert(table).values({k: v for k, v in values.items() if k in table.c}))


def _build(engine: sa.Engine, version: int) -> None:
    """What a database at ``version`` holds: a waiting execution at its second step, whose
    wait (from v3) already resolved, two attempt records, and an unconsumed event."""
    sqlite = engine.dialect.name == "sqlite"
    at = (lambda d: d.replace(tzinfo=None)) if sqlite else (lambda d: d)
    meta = sa.MetaData()
    meta.reflect(engine)
    tables = meta.tables
    waiting = version >= 3  # before waits, a pending retry stands for "work in flight"
    with engine.begin() as conn:
        _insert(
            conn,
            tables["durable_executions"],
            {
                "id": "old-1",
                "workflow": WF,
                "status": "waiting" if waiting else "pending",
                "queue": "default",
                "priority": 0,
                "input": '{"n": 1}',
                "context": '{"kept": true}',
                "created_at": at(T0),
                "scheduled_at": at(T0),
                "run_at": at(T0 + timedelta(seconds=1)),
                "claimable_at": at(T0 + timedelta(seconds=1)),
                "started_at": at(T0),
                "step_index": 1,
                "step_name": "second",
                "attempt": 1,
                "token": 1,
                "cancel_requested": False,
                "suspended": waiting,
                "max_attempts": 3,
            },
        )
        for name, index, status in (("first", 0, "completed"), ("second", 1, "suspended")):
            _insert(
                conn,
                tables["durable_step_attempts"],
                {
                    "execution_id": "old-1",
                    "step_index": index,
                    "name": name,
                    "attempt": 1,
                    "status": status if waiting else "completed",
                    "started_at": at(T0),
                    "completed_at": at(T0),
                    "logs": "[]",
                    "max_attempts": 3 if index else 1,
                },
            )
        if waiting:
            _insert(
                conn,
                tables["durable_waits"],
                {
                    "execution_id": "old-1",
                    "step": "second",
                    "wait_seq": 0,
                    "attempt": 1,
                    "kind": "event",
                    "names": '["go"]',
                    "mode": "any",
                    "status": "resolved",
                    "created_at": at(T0),
                    "result": '{"name": "go", "payload": 7}',
                    "resolved_at": at(T0),
                },
            )
            _insert(
                conn,
                tables["durable_events"],
                {
                    "execution_id": "old-1",
                    "name": "later",
                    "payload": '"kept"',
                    "sent_at": at(T0),
                },
            )


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION))
def test_an_upgrade_from_each_version_keeps_the_data_as_visit_1(blank_url, version):
    store = PluginHost().make_store(blank_url)
    try:
        migrations.upgrade(store.engine, now=T0, target=version)
        _build(store.engine, version)
        assert store.migrate(T0) == list(range(version + 1, SCHEMA_VERSION + 1))

        row = store.get("old-1")
        assert row is not None
        assert (row.context, row.input, row.step_name, row.visit, row.visits) == (
            {"kept": True},
            {"n": 1},
            "second",
            1,
            {},
        )
        # (v7) what existed is neither a unit nor a child, and is listed as before
        assert (row.parent_id, row.unit, row.open_units, row.result) == (None, None, 0, None)
        listed = store.list_executions(workflows=None, statuses=None, queues=None, limit=10)
        assert [r.id for r in listed] == ["old-1"]
        steps = store.steps("old-1")
        assert [(s.name, s.visit, s.phase) for s in steps] == [
            ("first", 1, "run"),
            ("second", 1, "run"),
        ]
        now = T0 + timedelta(seconds=1)
        (claimed,) = store.claim(
            queues=None, workflows=[WF], worker_id="w", now=now, lease_ms=30_000, limit=1
        )
        spec = WaitSpec(kind=WaitKind.EVENT, names=("go",))
        got = store.wait(
            "old-1", claimed.token, now=now, step="second", visit=1, seq=0, attempt=1, spec=spec
        )
        if version >= 3:  # the old wait is visit 1's: replayed as it was recorded
            assert (got.status, got.result, got.visit) == (
                "resolved",
                {"name": "go", "payload": 7},
                1,
            )
            later = store.waits(execution_id="old-1", pending_only=False)
            assert [(w.step, w.visit, w.seq) for w in later] == [("second", 1, 0)]
        else:
            assert (got.status, got.visit) == ("pending", 1)
        # the flow comes back to "second": a new visit, whose wait is new
        done = StepExecution("second", StepStatus.COMPLETED, 1, now, now, index=1)
        store.complete_step(
            "old-1",
            claimed.token,
            now=now,
            record=done,
            context={"kept": True},
            next_step=(1, "second"),
            start_next=True,
            visits={"second": 2},
        )
        again = store.get("old-1")
        assert again is not None
        assert (again.visit, again.attempt, again.visits) == (2, 1, {"second": 2})
        fresh = store.wait(
            "old-1", claimed.token, now=now, step="second", visit=2, seq=0, attempt=1, spec=spec
        )
        assert (fresh.status, fresh.visit) == ("pending", 2)
    finally:
        store.close()


def _unit_values(parent: str, index: int, status: str, run_at: datetime | None) -> dict[str, Any]:
    return {
        "id": f"{parent}-u{index}",
        "workflow": WF,
        "status": status,
        "queue": "default",
        "priority": 0,
        "input": "null",
        "context": "{}",
        "created_at": T0,
        "scheduled_at": T0,
        "run_at": run_at,
        "claimable_at": run_at,
        "completed_at": T0 if status == "completed" else None,
        "step_index": 0,
        "step_name": f"each[{index}]",
        "attempt": 1 if status == "completed" else 0,
        "token": 1 if status == "completed" else 0,
        "cancel_requested": False,
        "max_attempts": 1,
        "parent_id": parent,
        "unit": f"each[{index}]",
        "group_step": "each",
        "group_visit": 1,
        "unit_index": index,
        "item": str(index),
        "result": str(index) if status == "completed" else None,
    }


def test_a_group_in_flight_at_v7_is_counted_and_fans_in_once_after_the_upgrade(blank_url):
    """v8 splits a group's count over rows and lets in the lowest parked unit: a foreach
    in flight when the database is upgraded goes on and resumes its execution once."""
    store = PluginHost().make_store(blank_url)
    sqlite = store.engine.dialect.name == "sqlite"
    at = (lambda d: d if d is None else d.replace(tzinfo=None)) if sqlite else (lambda d: d)
    try:
        migrations.upgrade(store.engine, now=T0, target=7)
        meta = sa.MetaData()
        meta.reflect(store.engine)
        ex = meta.tables["durable_executions"]
        with store.engine.begin() as conn:
            # waiting at visit 1 of "each": unit 0 done, 1 and 2 let in, 3 and 4 parked
            parent = {
                **_unit_values("p", 0, "waiting", T0 + timedelta(hours=1)),
                "id": "p",
                "input": "{}",
                "step_name": "each",
                "step_visit": 1,
                "suspended": True,
                "started_at": T0,
                "parent_id": None,
                "unit": None,
                "group_step": None,
                "group_visit": 0,
                "item": None,
                "open_units": 4,
                "next_unit": 3,
            }
            for values in (
                parent,
                _unit_values("p", 0, "completed", None),
                _unit_values("p", 1, "pending", T0),
                _unit_values("p", 2, "pending", T0),
                _unit_values("p", 3, "pending", None),
                _unit_values("p", 4, "pending", None),
            ):
                _insert(
                    conn,
                    ex,
                    {k: at(v) if isinstance(v, datetime) else v for k, v in values.items()},
                )
        assert store.migrate(T0) == list(range(8, SCHEMA_VERSION + 1))
        got = store.get("p")
        assert got is not None and (got.status, got.open_units) == ("waiting", 4)

        now = T0 + timedelta(seconds=1)
        ended = []
        while True:
            claimed = store.claim(
                queues=None, workflows=[WF], worker_id="w", now=now, lease_ms=30_000, limit=10
            )
            assert claimed
            if any(c.id == "p" for c in claimed):  # resumed, once all its units ended
                assert (len(claimed), sorted(ended)) == (1, [1, 2, 3, 4])
                break
            for c in claimed:
                rec = StepExecution(c.step_name or "", StepStatus.COMPLETED, 1, now, now)
                store.complete_step(
                    c.id,
                    c.token,
                    now=now,
                    record=rec,
                    context={},
                    next_step=None,
                    start_next=False,
                    result=c.item,
                )
                ended.append(c.unit_index)
                got = store.get("p")
                assert got is not None
                assert got.status == ("pending" if len(ended) == 4 else "waiting")
        assert ended[:2] == [1, 2]  # the parked ones were let in after
        units = store.units("p", "each", 1)
        assert [(u.status, u.result) for u in units] == [("completed", i) for i in range(5)]
    finally:
        store.close()


def test_v15_finds_the_waits_of_units_recorded_before_it_and_lists_children_only(blank_url):
    """v15 names each unit's wait's execution (filled in for the waits already there) and
    lists an execution's child workflows by an index of its own: after the upgrade an
    execution's waits include its units' recorded before, and its children are listed
    without its units."""
    store = PluginHost().make_store(blank_url)
    sqlite = store.engine.dialect.name == "sqlite"
    at = (lambda d: d if d is None else d.replace(tzinfo=None)) if sqlite else (lambda d: d)
    try:
        migrations.upgrade(store.engine, now=T0, target=14)
        meta = sa.MetaData()
        meta.reflect(store.engine)
        ex, waits = meta.tables["durable_executions"], meta.tables["durable_waits"]
        parent = {
            **_unit_values("p", 0, "waiting", None),
            "id": "p",
            "step_name": "each",
            "parent_id": None,
            "unit": None,
            "group_step": None,
            "group_visit": 0,
            "item": None,
        }
        child = {**parent, "id": "c", "parent_id": "p", "created_at": T0 + timedelta(seconds=1)}
        wait = {
            "attempt": 1,
            "kind": "event",
            "names": '["go"]',
            "mode": "any",
            "visit": 1,
            "wait_seq": 0,
        }
        with store.engine.begin() as conn:
            for values in (parent, child, _unit_values("p", 0, "waiting", None)):
                _insert(
                    conn,
                    ex,
                    {k: at(v) if isinstance(v, datetime) else v for k, v in values.items()},
                )
            _insert(
                conn,
                waits,
                {
                    **wait,
                    "execution_id": "p",
                    "step": "first",
                    "status": "resolved",
                    "created_at": at(T0),
                },
            )
            _insert(
                conn,
                waits,
                {
                    **wait,
                    "execution_id": "p-u0",
                    "step": "each[0]",
                    "status": "pending",
                    "created_at": at(T0 + timedelta(seconds=2)),
                },
            )
        assert store.migrate(T0) == list(range(15, SCHEMA_VERSION + 1))
        every = store.waits(execution_id="p", pending_only=False)
        assert [(w.execution_id, w.step) for w in every] == [("p", "first"), ("p-u0", "each[0]")]
        assert [w.execution_id for w in store.waits(execution_id="p")] == ["p-u0"]
        assert store.waits(execution_id="c", pending_only=False) == []
        children = store.list_executions(
            workflows=None, statuses=None, queues=None, limit=10, parent="p"
        )
        assert [r.id for r in children] == ["c"]
    finally:
        store.close()


def test_v16_lists_one_queue_by_an_index_of_its_own(blank_url):
    """A v15 database upgraded to v16 keeps its executions and lists one queue's by the
    queue index: a queue nothing is on is found empty without walking the table."""
    store = PluginHost().make_store(blank_url)
    sqlite = store.engine.dialect.name == "sqlite"
    at = (lambda d: d.replace(tzinfo=None)) if sqlite else (lambda d: d)
    try:
        migrations.upgrade(store.engine, now=T0, target=15)
        meta = sa.MetaData()
        meta.reflect(store.engine)
        with store.engine.begin() as conn:
            for i, queue in enumerate(["default", "priority", "default"]):
                values = {
                    **_unit_values("p", i, "completed", None),
                    "id": f"e{i}",
                    "queue": queue,
                    "parent_id": None,
                    "unit": None,
                    "group_step": None,
                    "group_visit": 0,
                    "item": None,
                    "created_at": T0 + timedelta(seconds=i),
                }
                _insert(
                    conn,
                    meta.tables["durable_executions"],
                    {k: at(v) if isinstance(v, datetime) else v for k, v in values.items()},
                )
        assert store.migrate(T0) == list(range(16, SCHEMA_VERSION + 1))

        def listed(queue: str) -> list[str]:
            found = store.list_executions(workflows=None, statuses=None, queues=[queue], limit=5)
            return [r.id for r in found]

        assert listed("default") == ["e2", "e0"] and listed("priority") == ["e1"]
        assert listed("nowhere") == []
        sql = store.SQL["list_by_queue"]
        params = {
            "queue": "nowhere",
            "parent": None,
            "before_at": store._ts(T0 + timedelta(days=1)),
            "before_seq": 2**62,
            "limit": 51,
        }
        with store.engine.connect() as conn:
            if sqlite:
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).all()
            else:  # (the table is tiny: without this a scan of it is as cheap)
                conn.exec_driver_sql("SET enable_seqscan = off")
                rows = conn.exec_driver_sql("EXPLAIN " + sql, params).all()
        plan = " ".join(str(r[-1]) for r in rows)
        assert "durable_executions_queue_created" in plan, plan
        assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan  # in index order
    finally:
        store.close()


def test_v17_keeps_plans_from_the_upgrade_on(blank_url):
    """A v16 database upgraded to v17 knows no plan yet (an execution started before
    reads as started by code no process runs: any worker runs it), and keeps them from
    then on."""
    store = PluginHost().make_store(blank_url)
    try:
        migrations.upgrade(store.engine, now=T0, target=16)
        assert store.migrate(T0) == [17]
        assert store.plan_seen("w", "p", besides="me") == (None, None)
        at = T0 + timedelta(seconds=1)
        store.note_plan("w", "p", process="other", worker=True, now=at)
        assert store.plan_seen("w", "p", besides="me") == (at, at)
    finally:
        store.close()
