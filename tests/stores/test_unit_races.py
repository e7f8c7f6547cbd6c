"""Races between a unit's waits and events sent to its execution, on PostgreSQL (SQLite
serialises every write, the memory store holds one lock)."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg

import durable
from durable.models import Status, StepExecution, StepStatus, WaitKind, WaitSpec
from durable.stores.base import Unit
from durable_testing.contract import T0, WF, new_row


def _unit_at_a_wait(store):
    """A claimed execution forked into one unit; the unit, claimed, at a pending event wait."""
    store.create(new_row())
    (parent,) = store.claim(
        queues=None, workflows=[WF], worker_id="w", now=T0, lease_ms=60_000, limit=1
    )
    store.fork(
        parent.id,
        parent.token,
        now=T0,
        step="first",
        visit=1,
        units=[Unit("first.a", 0, context={})],
        concurrency=None,
        stops_group=False,
    )
    (unit,) = store.claim(
        queues=None, workflows=[WF], worker_id="w", now=T0, lease_ms=60_000, limit=1
    )
    spec = WaitSpec(kind=WaitKind.EVENT, names=("go",))
    w = store.wait(
        unit.id, unit.token, now=T0, step="first.a", visit=1, seq=0, attempt=1, spec=spec
    )
    assert w.status == "pending"
    return parent, unit


def test_an_event_sent_while_a_unit_suspends_wakes_it(sandbox_of, postgres_url):
    # send_event locks the execution's row, stores the event and wakes the units it finds
    # waiting. A unit suspending meanwhile is not waiting yet; its suspend must wait for
    # that lock and then find the event, or it would sleep with its event in the inbox.
    sandbox = sandbox_of("postgres")
    url = sandbox.for_test()
    store = durable.Engine(url, migrate=False).store
    try:
        parent, unit = _unit_at_a_wait(store)
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn) as sender:  # send_event, held open at its commit
            sender.execute(
                "SELECT status FROM durable_executions WHERE id = %s FOR UPDATE", [parent.id]
            )
            sender.execute(
                "INSERT INTO durable_events (execution_id, name, payload, sent_at) "
                "VALUES (%s, 'go', '1', %s)",
                [parent.id, T0 + timedelta(milliseconds=1)],
            )
            result: list[Status] = []
            rec = StepExecution("first.a", StepStatus.SUSPENDED, 1, T0, T0)
            suspending = threading.Thread(
                target=lambda: result.append(
                    store.suspend(
                        unit.id,
                        unit.token,
                        now=T0 + timedelta(milliseconds=2),
                        record=rec,
                        step="first.a",
                        visit=1,
                        seq=0,
                    )
                )
            )
            suspending.start()
            suspending.join(0.5)
            assert suspending.is_alive(), "the unit's suspend did not wait for the send"
            sender.commit()
        suspending.join(10)
        assert result == [Status.PENDING]  # it found the event: resumes at once
        (w,) = store.waits(execution_id=parent.id, pending_only=False)
        assert (w.status, w.result) == ("resolved", {"name": "go", "payload": 1})
    finally:
        store.close()
        sandbox.after_test(url)


def _blocked_on_a_lock(conn: psycopg.Connection, timeout_s: float = 10.0) -> bool:
    """Whether another session of the database waits for a row lock (looked at until
    one does, or timeout_s)."""
    done = threading.Event()
    for _ in range(int(timeout_s / 0.01)):
        (waiting,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        ).fetchone()
        if waiting:
            return True
        done.wait(0.01)
    return False


def _foreach_of_two_one_at_a_time(store):
    """A claimed execution forked into two items at concurrency 1: the second parked."""
    store.create(new_row())
    (parent,) = store.claim(
        queues=None, workflows=[WF], worker_id="w", now=T0, lease_ms=60_000, limit=1
    )
    store.fork(
        parent.id,
        parent.token,
        now=T0,
        step="first",
        visit=1,
        units=[Unit(f"first[{i}]", i, item=i) for i in range(2)],
        concurrency=1,
        stops_group=False,
    )
    return parent


def test_a_parked_unit_locked_for_a_moment_by_a_reader_is_still_let_in(sandbox_of):
    # send_event or provide_input aimed at a parked unit's id locks its row and changes
    # nothing. A unit ending meanwhile must still let that unit in once the lock is gone
    # (skipping it would lose the group's place for good: nothing else lets it in).
    sandbox = sandbox_of("postgres")
    url = sandbox.for_test()
    store = durable.Engine(url, migrate=False).store
    try:
        parent = _foreach_of_two_one_at_a_time(store)
        (first,) = store.claim(
            queues=None, workflows=[WF], worker_id="w", now=T0, lease_ms=60_000, limit=1
        )
        parked = store.units(parent.id, "first", 1)[1]
        assert (parked.status, parked.run_at) == (Status.PENDING, None)
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as watcher, psycopg.connect(dsn) as reader:
            reader.execute(
                "SELECT status FROM durable_executions WHERE id = %s FOR UPDATE", [parked.id]
            )
            now = T0 + timedelta(milliseconds=1)
            rec = StepExecution("first[0]", StepStatus.COMPLETED, 1, now, now)
            ended: list[Status] = []
            ending = threading.Thread(
                target=lambda: ended.append(
                    store.complete_step(
                        first.id,
                        first.token,
                        now=now,
                        record=rec,
                        context={},
                        next_step=None,
                        start_next=False,
                        result=0,
                    )
                )
            )
            ending.start()
            assert _blocked_on_a_lock(watcher), "the end did not wait for the parked unit"
            reader.rollback()
            ending.join(10)
        assert ended == [Status.COMPLETED]
        let_in = store.units(parent.id, "first", 1)[1]
        assert (let_in.status, let_in.run_at) == (Status.PENDING, now)
        (claimed,) = store.claim(
            queues=None, workflows=[WF], worker_id="w", now=now, lease_ms=60_000, limit=1
        )
        assert claimed.id == parked.id
    finally:
        store.close()
        sandbox.after_test(url)


def test_a_unit_failed_as_unreadable_at_its_claim_still_lets_the_next_one_in(sandbox_of):
    # a claimed unit this process cannot read is failed at once; its end owes the group a
    # place even when the parked unit is locked by a reader at that moment
    sandbox = sandbox_of("postgres")
    url = sandbox.for_test()
    store = durable.Engine(url, migrate=False).store
    try:
        parent = _foreach_of_two_one_at_a_time(store)
        u0, u1 = store.units(parent.id, "first", 1)
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as watcher, psycopg.connect(dsn) as reader:
            deep = '{"a":' * 5000 + "1" + "}" * 5000  # past what Python can decode
            watcher.execute("UPDATE durable_executions SET item = %s WHERE id = %s", [deep, u0.id])
            reader.execute(
                "SELECT status FROM durable_executions WHERE id = %s FOR UPDATE", [u1.id]
            )
            now = T0 + timedelta(milliseconds=1)
            claimed: list[list[str]] = []
            claiming = threading.Thread(
                target=lambda: claimed.append(
                    [
                        r.id
                        for r in store.claim(
                            queues=None,
                            workflows=[WF],
                            worker_id="w",
                            now=now,
                            lease_ms=60_000,
                            limit=10,
                        )
                    ]
                )
            )
            claiming.start()
            assert _blocked_on_a_lock(watcher), "the failed unit's end did not wait to let in"
            reader.rollback()
            claiming.join(10)
        assert store.get(u0.id).status == Status.FAILED  # type: ignore[union-attr]
        assert claimed == [[u1.id]]  # let in, and taken by the same claim
        assert store.get(u1.id).status == Status.RUNNING  # type: ignore[union-attr]
    finally:
        store.close()
        sandbox.after_test(url)
