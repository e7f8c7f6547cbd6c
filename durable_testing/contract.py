"""The store contract: tests any ``durable`` store must pass, for store plugin authors.

Subclass ``StoreContract`` in your test suite and give it a ``store`` fixture that
returns a fresh, empty, migrated store (and closes it afterwards)::

    import pytest
    from durable_testing.contract import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self, tmp_path):
            store = MyStore(f"mystore://{tmp_path}")
            yield store
            store.close()

``CompareWithMemory`` is a hypothesis state machine that runs random sequences of
operations on your store and on durable's memory store side by side and checks that they
agree; run it with ``compare_with_memory``.

All times are passed in explicitly (``now``), far from the wall clock, so a store that
compares with its database's own clock instead of ``now`` fails here.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from durable.errors import ExecutionNotFound, InvalidState, LeaseLost
from durable.models import (
    FINISHED,
    CatchUp,
    Overlap,
    Schedule,
    Status,
    StepExecution,
    StepPhase,
    StepStatus,
    Wait,
    WaitKind,
    WaitMode,
    WaitSpec,
)
from durable.stores.base import ExecutionRow, Fire, Store, Unit, cancel_error, unit_id

__all__ = ["T0", "StoreContract", "compare_with_memory", "new_row"]  # + CompareWithMemory

# Far from the wall clock on purpose: a store must compare with the `now` it is given.
T0 = datetime(2031, 3, 4, 5, 6, 7, 123000, tzinfo=UTC)
WF = "contract_wf"


def _ms(n: int) -> timedelta:
    return timedelta(milliseconds=n)


def new_row(
    *,
    at: datetime = T0,
    run_at: datetime | None = None,
    workflow: str = WF,
    queue: str = "default",
    priority: int = 0,
    key: str | None = None,
    timeout_ms: int | None = None,
    input: Any = None,
    id: str | None = None,
    parent_id: str | None = None,
    headers: dict[str, str] | None = None,
    parent_step: str | None = None,
) -> ExecutionRow:
    """A new pending execution row as the engine would create it (``parent_id`` and
    ``parent_step``: a child workflow's; ``headers``: what plugins store with it)."""
    return ExecutionRow(
        id=id or str(uuid.uuid4()),
        workflow=workflow,
        status=Status.PENDING,
        queue=queue,
        priority=priority,
        input=input,
        context={},
        created_at=at,
        scheduled_at=run_at or at,
        run_at=run_at or at,
        timeout_ms=timeout_ms,
        idempotency_key=key,
        step_name="first",
        parent_id=parent_id,
        headers=dict(headers or {}),
        parent_step=parent_step,
    )


# headers as a tracing plugin stores them (and one that is not ASCII)
HEADERS = {
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "note": "café ✓",
}


def _record(
    name: str, attempt: int, status: StepStatus, start: datetime, **kw: Any
) -> StepExecution:
    return StepExecution(name, status, attempt, start, start + _ms(5), **kw)


def _claim(
    store: Store,
    now: datetime,
    *,
    limit: int = 10,
    queues: list[str] | None = None,
    workflows: list[str] | None = None,
    lease_ms: int = 30_000,
) -> list[ExecutionRow]:
    return store.claim(
        queues=queues,
        workflows=workflows or [WF],
        worker_id="w1",
        now=now,
        lease_ms=lease_ms,
        limit=limit,
    )


class StoreContract:
    """Every behaviour the engine relies on. Provide a ``store`` fixture."""

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        raise NotImplementedError("give your StoreContract subclass a `store` fixture")

    # -- create and read -----------------------------------------------------------------

    def test_create_then_get(self, store: Store) -> None:
        row = new_row(input={"order": {"id": 7, "items": [1, 2]}}, priority=3)
        _, created = store.create(row)
        assert created
        got = store.get(row.id)
        assert got is not None
        assert (got.id, got.workflow, got.status, got.priority, got.input) == (
            row.id,
            WF,
            Status.PENDING,
            3,
            {"order": {"id": 7, "items": [1, 2]}},
        )
        assert (got.created_at, got.scheduled_at, got.run_at) == (T0, T0, T0)
        assert got.created_at.tzinfo is not None
        assert (got.attempt, got.token, got.context) == (0, 0, {})
        assert store.get("no-such-id") is None
        assert store.steps(row.id) == []

    def test_idempotency_key_inserts_nothing_the_second_time(self, store: Store) -> None:
        first, created = store.create(new_row(key="k-1"))
        again, created_again = store.create(new_row(key="k-1", input="other"))
        assert created and not created_again
        assert again.id == first.id
        assert store.get(first.id).input is None  # type: ignore[union-attr]
        assert len(store.list_executions(workflows=None, statuses=None, queues=None, limit=10)) == 1

    def test_list_filters_order_and_limit(self, store: Store) -> None:
        ids = []
        for i in range(5):
            row = new_row(
                at=T0 + _ms(i), queue="a" if i % 2 else "b", workflow=WF if i < 4 else "other"
            )
            store.create(row)
            ids.append(row.id)
        everything = store.list_executions(workflows=None, statuses=None, queues=None, limit=10)
        assert [r.id for r in everything] == ids[::-1]  # newest first
        assert [
            r.id for r in store.list_executions(workflows=None, statuses=None, queues=None, limit=2)
        ] == ids[:2:-1][:2]
        assert {
            r.id
            for r in store.list_executions(
                workflows=["other"], statuses=None, queues=None, limit=10
            )
        } == {ids[4]}
        assert {
            r.id
            for r in store.list_executions(workflows=None, statuses=None, queues=["a"], limit=10)
        } == {ids[1], ids[3]}
        assert (
            store.list_executions(workflows=None, statuses=[Status.RUNNING], queues=None, limit=10)
            == []
        )

    def test_same_created_at_lists_in_creation_order(self, store: Store) -> None:
        ids = []
        for _ in range(4):
            row = new_row()
            store.create(row)
            ids.append(row.id)
        rows = store.list_executions(workflows=None, statuses=None, queues=None, limit=10)
        assert [r.id for r in rows] == ids[::-1]

    def test_pages_follow_one_another_by_keyset_under_every_filter(self, store: Store) -> None:
        ids = []
        for i in range(7):
            # (pairs created in the same millisecond: seq orders them)
            row = new_row(at=T0 + _ms(i // 2), workflow=WF if i % 3 else "other")
            store.create(row)
            ids.append(row.id)
        filters: list[dict[str, Any]] = [
            {"workflows": None, "statuses": None},
            {"workflows": [WF], "statuses": None},
            {"workflows": None, "statuses": [Status.PENDING]},
            {"workflows": None, "statuses": [Status.PENDING, Status.COMPENSATING]},
        ]
        for f in filters:
            whole = store.list_executions(**f, queues=None, limit=100)
            paged: list[str] = []
            before = None
            while page := store.list_executions(**f, queues=None, limit=2, before=before):
                paged += [r.id for r in page]
                before = (page[-1].created_at, page[-1].seq)
            assert paged == [r.id for r in whole], f
        assert (
            len(store.list_executions(workflows=None, statuses=None, queues=None, limit=100)) == 7
        )

    # -- finding one ---------------------------------------------------------------------

    def test_an_execution_is_found_by_its_idempotency_key(self, store: Store) -> None:
        keyed, _ = store.create(new_row(key="order-7"))
        store.create(new_row(at=T0 + _ms(1)))
        found = store.get_by_key("order-7")
        assert found is not None and found.id == keyed.id
        assert store.get_by_key("order-8") is None

    # -- headers -------------------------------------------------------------------------

    def test_a_child_keeps_the_step_run_that_started_it(self, store: Store) -> None:
        parent, _ = store.create(new_row())
        child = new_row(at=T0 + _ms(1), parent_id=parent.id, parent_step="fan[3]")
        stored, _ = store.create(child)
        assert stored.parent_step == "fan[3]"
        got = store.get(child.id)
        assert got is not None and got.to_execution().parent_step == "fan[3]"
        assert store.get(parent.id).parent_step is None  # type: ignore[union-attr]
        (listed,) = store.list_executions(
            workflows=None, statuses=None, queues=None, limit=10, parent=parent.id
        )
        assert listed.parent_step == "fan[3]"
        claimed = {r.id: r.parent_step for r in _claim(store, T0 + _ms(5))}
        assert claimed == {parent.id: None, child.id: "fan[3]"}

    def test_headers_are_stored_with_an_execution_and_read_back_everywhere(
        self, store: Store
    ) -> None:
        row, bare = new_row(headers=HEADERS), new_row(at=T0 + _ms(1))
        stored, _ = store.create(row)
        store.create(bare)
        assert stored.headers == HEADERS
        assert store.get(row.id).headers == HEADERS  # type: ignore[union-attr]
        assert store.get(bare.id).headers == {}  # type: ignore[union-attr]
        listed = store.list_executions(workflows=None, statuses=None, queues=None, limit=10)
        assert [r.headers for r in listed] == [{}, HEADERS]
        assert store.get(row.id).to_execution().headers == HEADERS  # type: ignore[union-attr]
        claimed = {r.id: r.headers for r in _claim(store, T0 + _ms(5))}
        assert claimed == {row.id: HEADERS, bare.id: {}}

    def test_headers_never_change_through_a_retry_and_a_rerun(self, store: Store) -> None:
        c = self._claimed(store, headers=HEADERS)
        rec = _record("first", 1, StepStatus.FAILED, T0)
        store.fail_attempt(
            c.id, c.token, now=T0 + _ms(5), record=rec, retry_at=T0 + _ms(6), error=None
        )
        (again,) = _claim(store, T0 + _ms(6))
        assert again.headers == HEADERS
        rec2 = _record("first", 2, StepStatus.FAILED, T0 + _ms(6))
        store.fail_attempt(
            c.id, again.token, now=T0 + _ms(9), record=rec2, retry_at=None, error={"type": "E"}
        )
        got = store.retry_execution(
            c.id,
            now=T0 + _ms(10),
            step_index=0,
            step_name="first",
            visit=2,
            visits={"first": 2},
            context={},
            max_attempts=1,
        )
        assert got.headers == HEADERS
        assert store.get(c.id).headers == HEADERS  # type: ignore[union-attr]

    def test_units_share_their_executions_headers(self, store: Store) -> None:
        c = self._forked(store, 3, headers=HEADERS)
        assert [u.headers for u in store.units(c.id, "first", 1)] == [HEADERS] * 3
        assert [r.headers for r in self._claim_units(store, T0)] == [HEADERS] * 3

    def test_executions_a_fire_makes_keep_their_headers(self, store: Store) -> None:
        for name, overlap in (("a", "allow"), ("b", "buffer_one")):
            s = store.put_schedule(self._schedule(name, overlap=overlap), now=T0)
            assert s is not None
            row = new_row(at=s.next_tick, headers={**HEADERS, "schedule": name})
            row.origin = {"schedule": name}
            fire = Fire(name, s.next_tick, s.next_tick + _ms(3_600_000), (row,), 0, s.overlap)
            (made,) = store.fire_schedules([fire], now=s.next_tick)
            assert store.get(made).headers == {**HEADERS, "schedule": name}  # type: ignore[union-attr]

    # -- claims --------------------------------------------------------------------------

    def test_claim_tells_since_when_each_row_was_due(self, store: Store) -> None:
        early, late = new_row(run_at=T0 - _ms(40)), new_row(at=T0 + _ms(1))
        store.create(early)
        store.create(late)
        due = {r.id: r.due_at for r in _claim(store, T0 + _ms(10), lease_ms=1000)}
        assert due == {early.id: T0 - _ms(40), late.id: T0 + _ms(1)}
        # a claim taken over once its lease expired: due since the expiry
        (taken,) = _claim(store, T0 + _ms(2000), limit=1)
        assert taken.id == early.id and taken.due_at == T0 + _ms(1010)
        # a sleep that ended: due since its end
        c, _ = self._suspended(store, WaitSpec(kind=WaitKind.SLEEP, for_ms=500), at=T0 + _ms(3000))
        (woken,) = [r for r in _claim(store, T0 + _ms(9000)) if r.id == c.id]
        assert woken.due_at == T0 + _ms(3500)

    def test_claim_takes_due_rows_by_priority_schedule_and_creation(self, store: Store) -> None:
        rows = {
            "low": new_row(at=T0, priority=0),
            "high": new_row(at=T0 + _ms(1), priority=9),
            "mid_late": new_row(at=T0 + _ms(2), run_at=T0 - _ms(1), priority=5),
            "mid_early": new_row(at=T0 + _ms(3), run_at=T0 - _ms(2), priority=5),
            "future": new_row(at=T0 + _ms(4), run_at=T0 + _ms(1000), priority=99),
        }
        for r in rows.values():
            store.create(r)
        by_id = {r.id: name for name, r in rows.items()}
        first = _claim(store, T0 + _ms(10), limit=3)
        assert [by_id[r.id] for r in first] == ["high", "mid_early", "mid_late"]
        assert [by_id[r.id] for r in _claim(store, T0 + _ms(10))] == ["low"]
        assert _claim(store, T0 + _ms(999)) == []  # not 1 ms early
        assert [by_id[r.id] for r in _claim(store, T0 + _ms(1000))] == ["future"]

    def test_claim_uses_the_given_now_not_a_clock(self, store: Store) -> None:
        store.create(new_row(run_at=T0 + timedelta(days=1)))
        assert _claim(store, T0) == []  # the wall clock is years before T0 anyway
        assert len(_claim(store, T0 + timedelta(days=1))) == 1

    def test_times_far_in_the_past_and_future_round_trip_and_order(self, store: Store) -> None:
        early = datetime(999, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
        late = datetime(9000, 1, 1, tzinfo=UTC)
        a, b = new_row(run_at=early), new_row(run_at=late)
        store.create(a)
        store.create(b)
        got = store.get(a.id)
        assert got is not None and got.run_at == early
        assert store.next_due(queues=None, workflows=None) == early
        assert [r.id for r in _claim(store, T0)] == [a.id]
        # by then a's lease has long expired too; the earlier schedule comes first
        assert [r.id for r in _claim(store, late)] == [a.id, b.id]

    def test_claim_filters_queues_and_workflows(self, store: Store) -> None:
        a = new_row(queue="a")
        b = new_row(queue="b", workflow="other")
        store.create(a)
        store.create(b)
        assert _claim(store, T0, queues=["b"]) == []  # b's workflow is not asked for
        assert [r.id for r in _claim(store, T0, queues=["a", "b"])] == [a.id]
        assert [r.id for r in _claim(store, T0, workflows=["other"])] == [b.id]

    def test_claim_sets_the_lease_token_start_deadline_and_begins_the_attempt(
        self, store: Store
    ) -> None:
        row = new_row(timeout_ms=60_000)
        store.create(row)
        (claimed,) = _claim(store, T0 + _ms(7), lease_ms=30_000)
        assert claimed.status == Status.RUNNING
        assert claimed.token == 1
        assert claimed.worker_id == "w1"
        assert claimed.lease_expires_at == T0 + _ms(30_007)
        assert claimed.started_at == T0 + _ms(7)
        assert claimed.deadline == T0 + _ms(60_007)
        assert (claimed.attempt, claimed.attempt_started_at, claimed.began) == (
            1,
            T0 + _ms(7),
            True,
        )
        stored = store.get(row.id)
        assert stored is not None
        assert (stored.token, stored.attempt, stored.deadline) == (1, 1, T0 + _ms(60_007))

    def test_an_expired_lease_is_claimable_and_its_attempt_is_left_in_flight(
        self, store: Store
    ) -> None:
        row = new_row(timeout_ms=60_000)
        store.create(row)
        (first,) = _claim(store, T0, lease_ms=1000)
        assert _claim(store, T0 + _ms(999)) == []
        assert store.next_due(queues=None, workflows=None) == T0 + _ms(1000)
        (second,) = _claim(store, T0 + _ms(1000))
        assert second.token == first.token + 1
        assert (second.attempt, second.attempt_started_at, second.began) == (1, T0, False)
        assert second.started_at == T0 and second.deadline == T0 + _ms(60_000)  # kept

    def test_heartbeat_renews_live_claims_and_reports_lost_ones(self, store: Store) -> None:
        a, b = new_row(), new_row()
        store.create(a)
        store.create(b)
        ca, cb = _claim(store, T0, lease_ms=1000)
        lost = store.heartbeat(
            [(ca.id, ca.token), (cb.id, cb.token + 5)], now=T0 + _ms(900), lease_ms=1000
        )
        assert lost == [cb.id]
        assert store.get(ca.id).lease_expires_at == T0 + _ms(1900)  # type: ignore[union-attr]
        assert store.heartbeat([], now=T0, lease_ms=1000) == []

    # -- fenced transitions --------------------------------------------------------------

    def _claimed(self, store: Store, **kw: Any) -> ExecutionRow:
        row = new_row(**kw)
        store.create(row)
        (claimed,) = _claim(store, T0)
        return claimed

    def test_complete_step_commits_record_context_and_pointer_together(self, store: Store) -> None:
        c = self._claimed(store)
        rec = _record(
            "first", 1, StepStatus.COMPLETED, T0, index=0, max_attempts=3, logs=[{"message": "hi"}]
        )
        status = store.complete_step(
            c.id,
            c.token,
            now=T0 + _ms(5),
            record=rec,
            context={"a": [1, {"b": None}]},
            next_step=(1, "second"),
            start_next=True,
        )
        assert status == Status.RUNNING
        got = store.get(c.id)
        assert got is not None
        assert (got.context, got.step_index, got.step_name) == (
            {"a": [1, {"b": None}]},
            1,
            "second",
        )
        assert (got.attempt, got.attempt_started_at) == (1, T0 + _ms(5))
        assert store.steps(c.id) == [rec]

        last = _record("second", 1, StepStatus.COMPLETED, T0 + _ms(5), index=1)
        assert (
            store.complete_step(
                c.id,
                c.token,
                now=T0 + _ms(10),
                record=last,
                context={"done": True},
                next_step=None,
                start_next=False,
            )
            == Status.COMPLETED
        )
        got = store.get(c.id)
        assert got is not None
        assert (got.status, got.completed_at, got.context) == (
            Status.COMPLETED,
            T0 + _ms(10),
            {"done": True},
        )
        assert got.lease_expires_at is None and got.attempt_started_at is None
        assert store.next_due(queues=None, workflows=None) is None
        assert _claim(store, T0 + timedelta(days=9)) == []

    def test_a_step_reached_again_starts_a_new_visit_afresh(self, store: Store) -> None:
        """(execution, step, visit) keys each step run: a step reached again (a loop) gets
        new attempts from 1, and its waits are not the earlier visit's."""
        c = self._claimed(store)
        spec = WaitSpec(kind=WaitKind.EVENT, names=("go",))
        store.send_event(c.id, "go", "first time", now=T0)
        w = store.wait(c.id, c.token, now=T0, step="first", visit=1, seq=0, attempt=1, spec=spec)
        assert (w.status, w.result, w.visit) == (
            "resolved",
            {"name": "go", "payload": "first time"},
            1,
        )
        done = _record("first", 1, StepStatus.COMPLETED, T0, index=0)
        store.complete_step(
            c.id,
            c.token,
            now=T0 + _ms(5),
            record=done,
            context={},
            next_step=(1, "second"),
            start_next=True,
            visits={"first": 1, "second": 1},
        )
        second = _record("second", 1, StepStatus.COMPLETED, T0 + _ms(5), index=1)
        # the plan goes back to "first": its second visit
        store.complete_step(
            c.id,
            c.token,
            now=T0 + _ms(10),
            record=second,
            context={},
            next_step=(0, "first"),
            start_next=True,
            visits={"first": 2, "second": 1},
        )
        got = store.get(c.id)
        assert got is not None
        assert (got.step_name, got.visit, got.attempt) == ("first", 2, 1)
        assert got.visits == {"first": 2, "second": 1}
        assert got.to_execution().current_visit == 2
        # the wait at the same place in the new visit is new: nothing to replay
        again = store.wait(
            c.id, c.token, now=T0 + _ms(10), step="first", visit=2, seq=0, attempt=1, spec=spec
        )
        assert (again.status, again.visit, again.created_at) == ("pending", 2, T0 + _ms(10))
        rec = _record("first", 1, StepStatus.SUSPENDED, T0 + _ms(10), index=0, visit=2)
        assert (
            store.suspend(c.id, c.token, now=T0 + _ms(10), record=rec, step="first", visit=2, seq=0)
            == Status.WAITING
        )
        assert store.send_event(c.id, "go", "second time", now=T0 + _ms(11)) is True
        (resumed,) = _claim(store, T0 + _ms(11))
        assert (resumed.step_name, resumed.visit, resumed.attempt) == ("first", 2, 1)
        w2 = store.wait(
            c.id,
            resumed.token,
            now=T0 + _ms(11),
            step="first",
            visit=2,
            seq=0,
            attempt=1,
            spec=spec,
        )
        assert (w2.status, w2.result) == ("resolved", {"name": "go", "payload": "second time"})
        waits = store.waits(execution_id=c.id, pending_only=False)
        assert [(x.step, x.visit, x.seq, x.status) for x in waits] == [
            ("first", 1, 0, "resolved"),
            ("first", 2, 0, "resolved"),
        ]
        assert [(s.name, s.visit, s.attempt) for s in store.steps(c.id)] == [
            ("first", 1, 1),
            ("second", 1, 1),
            ("first", 2, 1),
        ]

    def test_complete_step_without_starting_the_next(self, store: Store) -> None:
        c = self._claimed(store)
        rec = _record("first", 1, StepStatus.COMPLETED, T0)
        store.complete_step(
            c.id, c.token, now=T0, record=rec, context={}, next_step=(1, "second"), start_next=False
        )
        got = store.get(c.id)
        assert got is not None
        assert (got.attempt, got.attempt_started_at) == (0, None)

    def test_fail_attempt_with_a_retry_releases_the_claim(self, store: Store) -> None:
        c = self._claimed(store)
        err = {"type": "ValueError", "message": "no"}
        rec = _record("first", 1, StepStatus.FAILED, T0, error=err, retry_at=T0 + _ms(2000))
        assert (
            store.fail_attempt(
                c.id, c.token, now=T0, record=rec, retry_at=T0 + _ms(2000), error=None
            )
            == Status.PENDING
        )
        got = store.get(c.id)
        assert got is not None
        assert (got.status, got.run_at, got.attempt, got.attempt_started_at) == (
            Status.PENDING,
            T0 + _ms(2000),
            1,
            None,
        )
        assert store.steps(c.id) == [rec]
        assert _claim(store, T0 + _ms(1999)) == []
        (again,) = _claim(store, T0 + _ms(2000))
        assert (again.attempt, again.began) == (2, True)

    def test_fail_attempt_without_a_retry_fails_the_execution(self, store: Store) -> None:
        c = self._claimed(store)
        err = {"type": "ValueError", "message": "no", "step": "first", "attempt": 1}
        rec = _record("first", 1, StepStatus.FAILED, T0, error=err)
        assert (
            store.fail_attempt(c.id, c.token, now=T0 + _ms(3), record=rec, retry_at=None, error=err)
            == Status.FAILED
        )
        got = store.get(c.id)
        assert got is not None
        assert (got.status, got.error, got.completed_at) == (Status.FAILED, err, T0 + _ms(3))

    def test_finish_and_release(self, store: Store) -> None:
        c = self._claimed(store)
        store.release(c.id, c.token, now=T0 + _ms(1), attempt_ran=False)
        got = store.get(c.id)
        assert got is not None
        assert (got.status, got.attempt, got.attempt_started_at, got.run_at) == (
            Status.PENDING,
            0,
            None,
            T0 + _ms(1),
        )
        (c2,) = _claim(store, T0 + _ms(1))
        store.release(c2.id, c2.token, now=T0 + _ms(2), attempt_ran=True)
        (c3,) = _claim(store, T0 + _ms(2))
        assert (c3.attempt, c3.began) == (1, False)  # the attempt that ran is in flight
        rec = _record("first", 1, StepStatus.FAILED, T0, error={"type": "WorkflowTimeout"})
        store.finish(
            c3.id,
            c3.token,
            now=T0 + _ms(9),
            status=Status.FAILED,
            error={"type": "WorkflowTimeout"},
            record=rec,
        )
        got = store.get(c3.id)
        assert got is not None
        assert (got.status, got.error) == (Status.FAILED, {"type": "WorkflowTimeout"})
        assert store.steps(c3.id) == [rec]

    def test_release_with_a_run_at_is_claimable_only_then(self, store: Store) -> None:
        c = self._claimed(store)
        later = T0 + _ms(1000)
        store.release(c.id, c.token, now=T0 + _ms(1), attempt_ran=False, run_at=later)
        got = store.get(c.id)
        assert got is not None and (got.status, got.run_at) == (Status.PENDING, later)
        assert store.next_due(queues=None, workflows=None) == later
        assert _claim(store, later - _ms(1)) == []
        assert [r.id for r in _claim(store, later)] == [c.id]

    def test_every_write_for_a_claim_is_fenced(self, store: Store) -> None:
        row = new_row()
        store.create(row)
        (old,) = _claim(store, T0, lease_ms=1000)
        (new,) = _claim(store, T0 + _ms(1000))
        rec = _record("first", 1, StepStatus.COMPLETED, T0)
        writes: list[Callable[[], object]] = [
            lambda: store.complete_step(
                row.id, old.token, now=T0, record=rec, context={}, next_step=None, start_next=False
            ),
            lambda: store.fail_attempt(
                row.id, old.token, now=T0, record=rec, retry_at=None, error={"type": "x"}
            ),
            lambda: store.finish(row.id, old.token, now=T0, status=Status.FAILED, error=None),
            lambda: store.release(row.id, old.token, now=T0, attempt_ran=False),
            lambda: store.restart_attempt(
                row.id, old.token, now=T0, record=_record("first", 1, StepStatus.LOST, T0)
            ),
        ]
        for write in writes:
            with pytest.raises(LeaseLost):
                write()
        got = store.get(row.id)
        assert got is not None
        assert (got.status, got.token) == (Status.RUNNING, new.token)
        assert store.steps(row.id) == []
        with pytest.raises((LeaseLost, ExecutionNotFound)):
            store.release("no-such-id", 1, now=T0, attempt_ran=False)

    # -- write ids, lost attempts, budgets, results --------------------------------------

    def test_a_transition_retried_with_its_write_id_is_applied_once(self, store: Store) -> None:
        """A commit whose reply was lost is retried with the same write id: the store
        finds its own write, applies nothing more and answers as the first try did."""
        rec = _record("first", 1, StepStatus.COMPLETED, T0, result={"r": 1})
        c = self._claimed(store)
        for _ in range(2):
            status = store.complete_step(
                c.id,
                c.token,
                now=T0 + _ms(5),
                record=rec,
                context={"a": 1},
                next_step=(1, "second"),
                start_next=True,
                next_max_attempts=4,
                write_id="w-complete",
            )
            assert status == Status.RUNNING
        got = store.get(c.id)
        assert got is not None
        assert (got.step_name, got.attempt, got.max_attempts) == ("second", 1, 4)
        assert store.steps(c.id) == [rec]
        failed = _record("second", 1, StepStatus.FAILED, T0 + _ms(5), error={"type": "E"})
        for _ in range(2):  # the second try finds the row pending: it was its own write
            status = store.fail_attempt(
                c.id,
                c.token,
                now=T0 + _ms(6),
                record=failed,
                retry_at=T0 + _ms(100),
                error=None,
                write_id="w-retry",
            )
            assert status == Status.PENDING
        assert store.steps(c.id) == [rec, failed]
        (c2,) = _claim(store, T0 + _ms(100))
        for _ in range(2):
            store.release(c2.id, c2.token, now=T0 + _ms(101), attempt_ran=False, write_id="w-rel")
        got = store.get(c2.id)
        assert got is not None
        assert (got.status, got.attempt) == (Status.PENDING, 1)
        (c3,) = _claim(store, T0 + _ms(102))
        for _ in range(2):
            store.finish(
                c3.id, c3.token, now=T0 + _ms(103), status=Status.FAILED, error={"type": "T"},
                record=failed, write_id="w-end",
            )  # fmt: skip
        got = store.get(c3.id)
        assert got is not None
        assert (got.status, got.error) == (Status.FAILED, {"type": "T"})
        assert store.steps(c3.id) == [rec, failed, failed]
        # A different write id with the old token is a lost claim, as always.
        with pytest.raises(LeaseLost):
            store.finish(c3.id, c3.token, now=T0, status=Status.FAILED, error=None, write_id="x")

    def test_a_retried_write_after_a_takeover_is_a_lost_claim_not_done(self, store: Store) -> None:
        """Its first try committed and kept the claim; the lease then expired and another
        worker took over. The old owner must stop (LeaseLost), not carry on as if done."""
        store.create(new_row())
        (c,) = _claim(store, T0, lease_ms=1000)
        rec = _record("first", 1, StepStatus.COMPLETED, T0)

        def complete() -> Status:
            return store.complete_step(
                c.id, c.token, now=T0, record=rec, context={}, next_step=(1, "second"),
                start_next=True, write_id="w-taken",
            )  # fmt: skip

        assert complete() == Status.RUNNING
        (other,) = _claim(store, T0 + _ms(1000))
        assert other.token == c.token + 1
        with pytest.raises(LeaseLost):
            complete()

    def test_suspend_and_restart_retried_with_their_write_id_apply_once(self, store: Store) -> None:
        c = self._claimed(store)
        lost = _record("first", 1, StepStatus.LOST, T0, error={"type": "WorkerLost"})
        for _ in range(2):
            store.restart_attempt(c.id, c.token, now=T0 + _ms(7), record=lost, write_id="w-r")
        got = store.get(c.id)
        assert got is not None
        assert (got.attempt, got.lost_attempts, got.attempt_started_at) == (1, 1, T0 + _ms(7))
        assert store.steps(c.id) == [lost]
        store.wait(
            c.id, c.token, now=T0, step="first", visit=1, seq=0, attempt=1,
            spec=WaitSpec(kind=WaitKind.SLEEP, for_ms=1000),
        )  # fmt: skip
        rec = _record("first", 1, StepStatus.SUSPENDED, T0)
        for _ in range(2):
            status = store.suspend(
                c.id, c.token, now=T0, record=rec, step="first", visit=1, seq=0, write_id="w-s"
            )
            assert status == Status.WAITING
        assert store.steps(c.id) == [lost, rec]

    def test_a_lost_attempt_is_restarted_under_its_number_and_counted_per_step_run(
        self, store: Store
    ) -> None:
        store.create(new_row())
        (c,) = _claim(store, T0, lease_ms=1000)
        assert (c.attempt, c.lost_attempts) == (1, 0)
        (again,) = _claim(store, T0 + _ms(1000))  # the first owner is gone
        assert (again.began, again.attempt) == (False, 1)
        lost = _record("first", 1, StepStatus.LOST, T0, error={"type": "WorkerLost"})
        store.restart_attempt(again.id, again.token, now=T0 + _ms(1000), record=lost)
        got = store.get(c.id)
        assert got is not None
        assert (got.attempt, got.lost_attempts) == (1, 1)
        assert (got.attempt_started_at, got.status) == (T0 + _ms(1000), Status.RUNNING)
        # a retry keeps the count (same step run) and the record's budget...
        failed = _record("first", 1, StepStatus.FAILED, T0, max_attempts=5)
        store.fail_attempt(
            c.id, again.token, now=T0 + _ms(1001), record=failed, retry_at=T0 + _ms(1001),
            error=None,
        )  # fmt: skip
        (third,) = _claim(store, T0 + _ms(1001))
        assert (third.attempt, third.lost_attempts, third.max_attempts) == (2, 1, 5)
        # ...and the next step starts a new step run: no losses, its own budget
        done = _record("first", 2, StepStatus.COMPLETED, T0, result=[1, "two", None])
        store.complete_step(
            c.id, third.token, now=T0 + _ms(1002), record=done, context={},
            next_step=(1, "second"), start_next=True, next_max_attempts=7,
        )  # fmt: skip
        got = store.get(c.id)
        assert got is not None
        assert (got.step_name, got.lost_attempts, got.max_attempts) == ("second", 0, 7)
        assert [s.result for s in store.steps(c.id)] == [None, None, [1, "two", None]]

    def test_create_keeps_the_first_steps_budget(self, store: Store) -> None:
        row = new_row()
        row.max_attempts = 6
        store.create(row)
        got = store.get(row.id)
        assert got is not None
        assert (got.max_attempts, got.lost_attempts, got.last_write) == (6, 0, None)

    # -- cancel --------------------------------------------------------------------------

    def test_cancel_pending_and_expired_running_at_once(self, store: Store) -> None:
        pending = new_row()
        store.create(pending)
        got = store.request_cancel(pending.id, now=T0 + _ms(1), reason="asked")
        assert (got.status, got.cancel_reason, got.completed_at) == (
            Status.CANCELLED,
            "asked",
            T0 + _ms(1),
        )
        c = self._claimed(store)
        got = store.request_cancel(c.id, now=T0 + _ms(30_000), reason=None)  # lease expired
        assert got.status == Status.CANCELLED
        with pytest.raises(InvalidState):
            store.request_cancel(c.id, now=T0, reason=None)
        with pytest.raises(ExecutionNotFound):
            store.request_cancel("no-such-id", now=T0, reason=None)

    def test_cancel_running_is_seen_at_the_next_checkpoint(self, store: Store) -> None:
        c = self._claimed(store)
        got = store.request_cancel(c.id, now=T0 + _ms(1), reason="operator")
        assert (got.status, got.cancel_requested) == (Status.RUNNING, True)
        rec = _record("first", 1, StepStatus.COMPLETED, T0)
        assert (
            store.complete_step(
                c.id,
                c.token,
                now=T0 + _ms(2),
                record=rec,
                context={"discarded": True},
                next_step=(1, "second"),
                start_next=True,
            )
            == Status.CANCELLED
        )
        final = store.get(c.id)
        assert final is not None
        assert (final.status, final.context) == (Status.CANCELLED, {})
        assert [s.status for s in store.steps(c.id)] == [StepStatus.CANCELLED]

    # -- sagas: the compensate phase ----------------------------------------------------

    def test_compensate_enters_the_phase_keeping_the_failure_and_the_record(
        self, store: Store
    ) -> None:
        c = self._claimed(store)
        failed = _record("first", 1, StepStatus.FAILED, T0, error={"type": "E", "message": "m"})
        failure = {"type": "E", "message": "m", "step": "first"}
        assert (
            store.compensate(c.id, c.token, now=T0 + _ms(5), error=failure, record=failed)
            == Status.PENDING
        )
        got = store.get(c.id)
        assert got is not None
        assert (got.status, got.public_status, got.phase, got.error) == (
            Status.PENDING,
            Status.COMPENSATING,
            StepPhase.COMPENSATE,
            failure,
        )
        assert (got.attempt, got.attempt_started_at, got.run_at, got.lease_expires_at) == (
            0,
            None,
            T0 + _ms(5),
            None,
        )
        assert got.to_execution().status == Status.COMPENSATING
        assert [s.status for s in store.steps(c.id)] == [StepStatus.FAILED]
        with pytest.raises(LeaseLost):  # the claim was given back
            store.compensate(c.id, c.token, now=T0 + _ms(6), error=failure)
        # claimed again: a compensation's attempt begins; its records say what it undoes
        (again,) = _claim(store, T0 + _ms(6))
        assert (again.phase, again.attempt, again.began) == (StepPhase.COMPENSATE, 1, True)
        undo = StepExecution(
            "refund",
            StepStatus.COMPLETED,
            1,
            T0 + _ms(6),
            T0 + _ms(7),
            phase=StepPhase.COMPENSATE,
            compensates="first",
        )
        store.complete_step(
            again.id,
            again.token,
            now=T0 + _ms(7),
            record=undo,
            context={"undone": True},
            next_step=(0, "first"),
            start_next=False,
            visits={"first": 1},
        )
        store.finish(
            again.id, again.token, now=T0 + _ms(8), status=Status.COMPENSATED, error=failure
        )
        final = store.get(c.id)
        assert final is not None
        assert (final.status, final.public_status, final.context, final.error) == (
            Status.COMPENSATED,
            Status.COMPENSATED,
            {"undone": True},
            failure,
        )
        kept = store.steps(c.id)[-1]
        assert (kept.name, kept.phase, kept.compensates) == (
            "refund",
            StepPhase.COMPENSATE,
            "first",
        )

    def test_listing_by_status_reads_the_compensate_phase_as_compensating(
        self, store: Store
    ) -> None:
        c = self._claimed(store)
        other = new_row(at=T0 + _ms(1))
        store.create(other)
        store.compensate(c.id, c.token, now=T0 + _ms(5), error={"type": "E", "message": "m"})

        def listed(*statuses: Status) -> list[str]:
            return [
                r.id
                for r in store.list_executions(
                    workflows=None, statuses=list(statuses), queues=None, limit=10
                )
            ]

        assert listed(Status.COMPENSATING) == [c.id]
        assert listed(Status.PENDING) == [other.id]  # the row is pending, but compensating
        assert listed(Status.PENDING, Status.COMPENSATING) == [other.id, c.id]

    def test_a_cancel_of_a_workflow_that_compensates_enters_the_phase(self, store: Store) -> None:
        waiting = new_row()
        store.create(waiting)
        got = store.request_cancel(
            waiting.id, now=T0 + _ms(1), reason="asked", compensates=lambda wf: wf == WF
        )
        assert (got.status, got.phase, got.cancel_reason, got.cancel_requested) == (
            Status.PENDING,
            StepPhase.COMPENSATE,
            "asked",
            False,
        )
        assert got.public_status == Status.COMPENSATING and got.run_at == T0 + _ms(1)
        assert got.error == cancel_error("asked")
        with pytest.raises(InvalidState, match="compensating"):
            store.request_cancel(waiting.id, now=T0 + _ms(2), reason=None)

    def test_a_cancel_marked_to_compensate_enters_the_phase_at_the_checkpoint(
        self, store: Store
    ) -> None:
        c = self._claimed(store)
        got = store.request_cancel(c.id, now=T0 + _ms(1), reason="stop", compensates=lambda _: True)
        assert (got.status, got.cancel_requested, got.phase) == (
            Status.RUNNING,
            True,
            StepPhase.COMPENSATE,
        )
        rec = _record("first", 1, StepStatus.COMPLETED, T0)
        status = store.complete_step(
            c.id,
            c.token,
            now=T0 + _ms(2),
            record=rec,
            context={"discarded": True},
            next_step=(1, "second"),
            start_next=True,
        )
        assert status == Status.COMPENSATING
        final = store.get(c.id)
        assert final is not None
        assert (final.status, final.phase, final.context, final.cancel_requested) == (
            Status.PENDING,
            StepPhase.COMPENSATE,
            {},
            False,
        )
        assert final.error == cancel_error("stop")
        assert [s.status for s in store.steps(c.id)] == [StepStatus.CANCELLED]

    def test_cancel_requested_among_names_those_with_a_cancel_requested(self, store: Store) -> None:
        c = self._claimed(store)
        other = new_row()
        store.create(other)
        assert store.cancel_requested_among([c.id, other.id, "no-such-id"]) == set()
        store.request_cancel(c.id, now=T0 + _ms(1), reason=None)  # running: requested
        assert store.cancel_requested_among([c.id, other.id]) == {c.id}
        assert store.cancel_requested_among([]) == set()

    # -- recovery ------------------------------------------------------------------------

    def test_retry_execution_puts_an_ended_execution_back_at_a_step(self, store: Store) -> None:
        c = self._claimed(store, timeout_ms=60_000)
        rec = _record("first", 1, StepStatus.FAILED, T0)
        store.fail_attempt(
            c.id, c.token, now=T0 + _ms(5), record=rec, retry_at=None, error={"type": "E"}
        )
        later = T0 + _ms(10)
        got = store.retry_execution(
            c.id,
            now=later,
            step_index=0,
            step_name="first",
            visit=2,
            visits={"first": 2},
            context={"k": 1},
            max_attempts=4,
        )
        assert (got.status, got.phase, got.run_at, got.completed_at, got.error) == (
            Status.PENDING,
            StepPhase.RUN,
            later,
            None,
            None,
        )
        assert (got.step_name, got.visit, got.visits, got.context, got.max_attempts) == (
            "first",
            2,
            {"first": 2},
            {"k": 1},
            4,
        )
        assert (got.attempt, got.deadline, got.cancel_requested) == (0, None, False)
        (again,) = _claim(store, later)
        assert (again.attempt, again.visit, again.began) == (1, 2, True)
        assert again.deadline == later + _ms(60_000)  # a fresh workflow timeout
        with pytest.raises(InvalidState, match="only a failed, cancelled or compensated"):
            store.retry_execution(
                c.id,
                now=later,
                step_index=0,
                step_name="first",
                visit=3,
                visits={},
                context={},
                max_attempts=1,
            )
        with pytest.raises(ExecutionNotFound):
            store.retry_execution(
                "no-such-id",
                now=later,
                step_index=0,
                step_name="first",
                visit=1,
                visits={},
                context={},
                max_attempts=1,
            )

    def test_a_record_keeps_the_changes_and_a_row_its_origin(self, store: Store) -> None:
        row = new_row()
        row.origin = {"forked_from": "x", "step": "first", "context": {"a": 1}}
        store.create(row)
        got = store.get(row.id)
        assert got is not None and got.origin == row.origin
        assert got.to_execution().forked_from == "x"
        (c,) = _claim(store, T0)
        rec = dataclasses.replace(
            _record("first", 1, StepStatus.COMPLETED, T0),
            changes={"set": {"b": 2}, "deleted": ["a"]},
        )
        store.complete_step(
            c.id, c.token, now=T0, record=rec, context={"b": 2}, next_step=None, start_next=False
        )
        assert store.steps(c.id)[-1].changes == {"set": {"b": 2}, "deleted": ["a"]}

    # -- waits ---------------------------------------------------------------------------

    def _suspended(
        self, store: Store, spec: WaitSpec, at: datetime = T0
    ) -> tuple[ExecutionRow, Wait]:
        c = self._claimed(store)
        w = store.wait(c.id, c.token, now=at, step="first", visit=1, seq=0, attempt=1, spec=spec)
        assert w.status == "pending"
        rec = _record("first", 1, StepStatus.SUSPENDED, at)
        store.suspend(c.id, c.token, now=at, record=rec, step="first", visit=1, seq=0)
        return c, w

    def test_a_sleep_suspends_without_a_claim_and_resumes_the_same_attempt(
        self, store: Store
    ) -> None:
        c, w = self._suspended(store, WaitSpec(kind=WaitKind.SLEEP, for_ms=60_000))
        assert (w.kind, w.until, w.step, w.seq) == ("sleep", T0 + _ms(60_000), "first", 0)
        got = store.get(c.id)
        assert got is not None
        assert (got.status, got.run_at, got.worker_id, got.lease_expires_at, got.suspended) == (
            Status.WAITING,
            T0 + _ms(60_000),
            None,
            None,
            True,
        )
        assert store.next_due(queues=None, workflows=None) == T0 + _ms(60_000)
        assert [x.execution_id for x in store.waits()] == [c.id]
        assert _claim(store, T0 + _ms(59_999)) == []
        (again,) = _claim(store, T0 + _ms(60_000))
        assert (again.attempt, again.began) == (1, True)  # resumed, not a new attempt
        # the resumed run finds the sleep over, at its recorded place
        w2 = store.wait(
            c.id,
            again.token,
            now=T0 + _ms(60_000),
            step="first",
            visit=1,
            seq=0,
            attempt=1,
            spec=WaitSpec(kind=WaitKind.SLEEP, for_ms=60_000),
        )
        assert (w2.status, w2.until) == ("resolved", T0 + _ms(60_000))
        store.release(c.id, again.token, now=T0 + _ms(60_001), attempt_ran=False)
        (third,) = _claim(store, T0 + _ms(60_001))
        assert third.attempt == 1  # taking back a resumed run keeps its attempt number
        rec = _record("first", 1, StepStatus.COMPLETED, T0 + _ms(60_001))
        store.complete_step(
            c.id,
            third.token,
            now=T0 + _ms(60_002),
            record=rec,
            context={},
            next_step=None,
            start_next=False,
        )
        got = store.get(c.id)
        assert got is not None and (got.status, got.suspended) == (Status.COMPLETED, False)
        assert store.waits() == []
        assert [s.status for s in store.steps(c.id)] == [
            StepStatus.SUSPENDED,
            StepStatus.COMPLETED,
        ]

    def test_events_are_kept_until_consumed_in_order(self, store: Store) -> None:
        c = self._claimed(store)
        assert store.send_event(c.id, "paid", {"n": 1}, now=T0) is False  # running: kept
        store.send_event(c.id, "paid", {"n": 2}, now=T0)
        spec = WaitSpec(kind=WaitKind.EVENT, names=("paid",))
        w = store.wait(c.id, c.token, now=T0, step="first", visit=1, seq=0, attempt=1, spec=spec)
        assert (w.status, w.result) == ("resolved", {"name": "paid", "payload": {"n": 1}})
        w = store.wait(c.id, c.token, now=T0, step="first", visit=1, seq=0, attempt=1, spec=spec)
        assert w.result == {"name": "paid", "payload": {"n": 1}}  # memoised, not re-consumed
        w = store.wait(c.id, c.token, now=T0, step="first", visit=1, seq=1, attempt=1, spec=spec)
        assert w.result == {"name": "paid", "payload": {"n": 2}}
        w = store.wait(c.id, c.token, now=T0, step="first", visit=1, seq=2, attempt=1, spec=spec)
        assert w.status == "pending"

    def test_an_event_wakes_a_waiting_execution_and_all_waits_for_every_name(
        self, store: Store
    ) -> None:
        spec = WaitSpec(kind=WaitKind.EVENT, names=("a", "b"), mode=WaitMode.ALL, for_ms=1000)
        c, _ = self._suspended(store, spec)
        assert store.send_event(c.id, "a", 1, now=T0 + _ms(1)) is False  # b still missing
        got = store.get(c.id)
        assert got is not None and got.status == Status.WAITING
        assert store.send_event(c.id, "b", 2, now=T0 + _ms(2)) is True
        got = store.get(c.id)
        assert got is not None and (got.status, got.run_at) == (Status.PENDING, T0 + _ms(2))
        (again,) = _claim(store, T0 + _ms(2))
        w = store.wait(
            c.id, again.token, now=T0 + _ms(2), step="first", visit=1, seq=0, attempt=1, spec=spec
        )
        assert (w.status, w.result) == ("resolved", {"a": 1, "b": 2})

    def test_a_suspend_that_can_resolve_makes_the_execution_pending(self, store: Store) -> None:
        c = self._claimed(store)
        spec = WaitSpec(kind=WaitKind.EVENT, names=("x",))
        w = store.wait(c.id, c.token, now=T0, step="first", visit=1, seq=0, attempt=1, spec=spec)
        assert w.status == "pending"
        store.send_event(c.id, "x", "raced", now=T0 + _ms(1))  # between wait and suspend
        rec = _record("first", 1, StepStatus.SUSPENDED, T0)
        status = store.suspend(
            c.id, c.token, now=T0 + _ms(2), record=rec, step="first", visit=1, seq=0
        )
        assert status == Status.PENDING

    def test_inputs_resolve_only_a_pending_wait(self, store: Store) -> None:
        spec = WaitSpec(kind=WaitKind.INPUT, names=("ok",), for_ms=1000, prompt="sure?", schema={})
        c, w = self._suspended(store, spec)
        assert (w.prompt, w.schema, w.workflow) == ("sure?", {}, WF)

        def refuse(schema: Any) -> None:
            assert schema == {}  # the schema of the wait being resolved
            raise InvalidState("refused by the caller's check")

        with pytest.raises(InvalidState, match="refused"):
            store.provide_input(c.id, "ok", {"bad": True}, now=T0 + _ms(1), validate=refuse)
        assert [x.status for x in store.waits(execution_id=c.id)] == ["pending"]  # nothing kept
        with pytest.raises(InvalidState, match="stopped waiting for the input 'ok'"):
            store.provide_input(c.id, "ok", {"late": True}, now=T0 + _ms(1001))
        with pytest.raises(InvalidState, match="not waiting for an input named 'nope'"):
            store.provide_input(c.id, "nope", 1, now=T0)
        # what validate returns is what is stored (the model's form of the data)
        store.provide_input(
            c.id, "ok", {"yes": 1}, now=T0 + _ms(5), validate=lambda schema: {"yes": True}
        )
        got = store.get(c.id)
        assert got is not None and got.status == Status.PENDING
        with pytest.raises(InvalidState):
            store.provide_input(c.id, "ok", {"again": True}, now=T0 + _ms(6))
        (again,) = _claim(store, T0 + _ms(6))
        w = store.wait(
            c.id,
            again.token,
            now=T0 + _ms(9_999),
            step="first",
            visit=1,
            seq=0,
            attempt=1,
            spec=spec,
        )
        assert (w.status, w.result) == ("resolved", {"yes": True})
        with pytest.raises(ExecutionNotFound):
            store.provide_input("no-such-id", "ok", 1, now=T0)
        with pytest.raises(ExecutionNotFound):
            store.send_event("no-such-id", "ok", 1, now=T0)

    def test_a_wait_times_out_and_a_new_attempt_waits_afresh(self, store: Store) -> None:
        spec = WaitSpec(kind=WaitKind.EVENT, names=("x",), for_ms=1000)
        c, _ = self._suspended(store, spec)
        (again,) = _claim(store, T0 + _ms(1000))
        w = store.wait(
            c.id,
            again.token,
            now=T0 + _ms(1000),
            step="first",
            visit=1,
            seq=0,
            attempt=1,
            spec=spec,
        )
        assert w.status == "timed_out"
        rec = _record("first", 1, StepStatus.FAILED, T0 + _ms(1000))
        store.fail_attempt(
            c.id, again.token, now=T0 + _ms(1000), record=rec, retry_at=T0 + _ms(1500), error=None
        )
        (third,) = _claim(store, T0 + _ms(1500))
        assert third.attempt == 2
        w = store.wait(
            c.id,
            third.token,
            now=T0 + _ms(1500),
            step="first",
            visit=1,
            seq=0,
            attempt=2,
            spec=spec,
        )
        assert (w.status, w.until) == ("pending", T0 + _ms(2500))

    def test_wait_and_suspend_are_fenced_and_finished_executions_take_nothing(
        self, store: Store
    ) -> None:
        row = new_row()
        store.create(row)
        (old,) = _claim(store, T0, lease_ms=1000)
        (new,) = _claim(store, T0 + _ms(1000))
        spec = WaitSpec(kind=WaitKind.SLEEP, for_ms=5)
        with pytest.raises(LeaseLost):
            store.wait(
                row.id, old.token, now=T0, step="first", visit=1, seq=0, attempt=1, spec=spec
            )
        store.wait(row.id, new.token, now=T0, step="first", visit=1, seq=0, attempt=1, spec=spec)
        rec = _record("first", 1, StepStatus.SUSPENDED, T0)
        with pytest.raises(LeaseLost):
            store.suspend(row.id, old.token, now=T0, record=rec, step="first", visit=1, seq=0)
        store.finish(row.id, new.token, now=T0 + _ms(1), status=Status.CANCELLED, error=None)
        with pytest.raises(InvalidState):
            store.send_event(row.id, "x", 1, now=T0 + _ms(2))
        with pytest.raises(InvalidState):
            store.provide_input(row.id, "x", 1, now=T0 + _ms(2))
        assert store.waits() == []

    def test_cancel_a_waiting_execution_at_once(self, store: Store) -> None:
        c, _ = self._suspended(store, WaitSpec(kind=WaitKind.EVENT, names=("x",)))
        got = store.request_cancel(c.id, now=T0 + _ms(1), reason=None)
        assert (got.status, got.suspended) == (Status.CANCELLED, False)
        assert _claim(store, T0 + _ms(10**9)) == []

    # -- schedules (cron) -----------------------------------------------------------------

    def _schedule(self, name: str = "s", overlap: str = "allow", **kw: Any) -> Schedule:
        return Schedule(
            name=name,
            workflow=WF,
            cron="0 * * * *",
            timezone="UTC",
            input={"region": "eu"},
            catch_up=CatchUp.LATEST,
            overlap=Overlap(overlap),
            paused=False,
            next_tick=T0 + _ms(3_600_000),
            created_at=T0,
            updated_at=T0,
            **kw,
        )

    def _fire(self, store: Store, s: Schedule, ticks: int = 1) -> list[str]:
        rows = []
        for i in range(ticks):
            row = new_row(at=s.next_tick, run_at=s.next_tick + _ms(i))
            row.origin = {"schedule": s.name}
            rows.append(row)
        fire = Fire(s.name, s.next_tick, s.next_tick + _ms(3_600_000), tuple(rows), 0, s.overlap)
        return store.fire_schedules([fire], now=s.next_tick)

    def test_a_schedule_is_stored_and_kept_by_name(self, store: Store) -> None:
        first = store.put_schedule(self._schedule(), now=T0)
        assert first is not None and first == self._schedule()
        assert store.get_schedule("s") == first and store.list_schedules() == [first]
        assert store.next_tick(workflows=[WF]) == first.next_tick
        assert store.next_tick(workflows=["other"]) is None
        # the same cron again: the next tick stays; another cron: it is the given one
        again = store.put_schedule(
            dataclasses.replace(first, input=2, next_tick=T0 + _ms(9)), now=T0 + _ms(1)
        )
        assert again is not None
        assert (again.input, again.next_tick, again.updated_at) == (
            2,
            first.next_tick,
            T0 + _ms(1),
        )
        changed = dataclasses.replace(first, cron="30 * * * *", next_tick=T0 + _ms(9))
        # a changed cron applies only while the next tick is the one the caller read
        assert store.put_schedule(changed, now=T0, expected=T0) is None
        moved = store.put_schedule(changed, now=T0, expected=first.next_tick)
        assert moved is not None and moved.next_tick == T0 + _ms(9)
        assert store.pause_schedule("s", paused=False, next_tick=T0, now=T0) is None  # running
        paused = store.pause_schedule("s", paused=True, next_tick=T0 + _ms(5), now=T0)
        assert paused is not None and paused.paused and paused.next_tick == moved.next_tick
        assert store.next_tick(workflows=None) is None
        assert store.due_schedules(now=T0 + _ms(10), workflows=[WF], limit=10) == []
        assert store.pause_schedule("none", paused=True, next_tick=T0, now=T0) is None
        assert store.delete_schedule("s", now=T0) and not store.delete_schedule("s", now=T0)
        assert store.get_schedule("s") is None

    def test_a_tick_fires_once_whoever_fires_it(self, store: Store) -> None:
        s = store.put_schedule(self._schedule(), now=T0)
        assert s is not None
        assert store.due_schedules(now=s.next_tick - _ms(1), workflows=[WF], limit=10) == []
        assert store.due_schedules(now=s.next_tick, workflows=[WF], limit=10) == [s]
        made = self._fire(store, s)
        assert len(made) == 1 and self._fire(store, s) == []  # the second fire: a no-op
        ex = store.get(made[0])
        assert ex is not None and (ex.origin, ex.input) == ({"schedule": "s"}, None)
        after = store.get_schedule("s")
        assert after is not None
        assert (after.next_tick, after.last_tick, after.last_execution_id) == (
            s.next_tick + _ms(3_600_000),
            s.next_tick,
            made[0],
        )

    def test_overlap_buffer_one_lets_the_buffered_in_when_the_latest_ends(
        self, store: Store
    ) -> None:
        made = store.put_schedule(self._schedule(overlap="buffer_one"), now=T0)
        assert made is not None
        (first,) = self._fire(store, made)
        read = store.get_schedule("s")
        assert read is not None
        (second,) = self._fire(store, read, ticks=2)  # one buffered, the other let go
        s = store.get_schedule("s")
        assert s is not None and (s.buffered_id, s.missed, s.last_execution_id) == (
            second,
            1,
            first,
        )
        buffered = store.get(second)
        assert buffered is not None and (buffered.status, buffered.run_at) == (
            Status.PENDING,
            None,
        )
        (claimed,) = _claim(store, s.next_tick)
        assert claimed.id == first  # the buffered one is not claimable
        store.finish(first, claimed.token, now=s.next_tick, status=Status.COMPLETED, error=None)
        released = store.get(second)
        assert released is not None and released.run_at == s.next_tick
        after = store.get_schedule("s")
        assert after is not None and (after.last_execution_id, after.buffered_id) == (
            second,
            None,
        )

    # -- retention -----------------------------------------------------------------------

    def test_purge_deletes_finished_executions_oldest_first_with_their_records(
        self, store: Store
    ) -> None:
        ids = []
        for i in range(3):
            c = self._claimed(store)
            rec = _record("first", 1, StepStatus.COMPLETED, T0)
            store.complete_step(
                c.id,
                c.token,
                now=T0 + _ms(10 * (3 - i)),
                record=rec,
                context={},
                next_step=None,
                start_next=False,
            )
            ids.append(c.id)
        live = self._claimed(store)  # running: never purged
        waiting, _ = self._suspended(store, WaitSpec(kind=WaitKind.EVENT, names=("x",)))
        store.send_event(waiting.id, "x", 1, now=T0 + _ms(1))
        assert store.purge(finished_before=T0 + _ms(10), workflows=None, limit=10) == []
        # finished at +30, +20, +10: the oldest first, as many as the limit
        assert store.purge(finished_before=T0 + _ms(31), workflows=None, limit=2) == [
            ids[2],
            ids[1],
        ]
        assert store.purge(finished_before=T0 + _ms(31), workflows=["other"], limit=5) == []
        assert store.purge(finished_before=T0 + _ms(31), workflows=[WF], limit=5) == [ids[0]]
        for eid in ids:
            assert store.get(eid) is None
            assert store.steps(eid) == []
        assert store.get(live.id) is not None
        assert store.get(waiting.id) is not None

    # -- units: parallel groups and foreach ----------------------------------------------

    def _forked(
        self,
        store: Store,
        n: int,
        *,
        concurrency: int | None = None,
        stops: bool = False,
        items: bool = True,
        **kw: Any,
    ) -> ExecutionRow:
        """A claimed execution that reached a group (its step "first") and forked ``n`` units
        (items ``{"n": i}``, or branches with a context of their own), at T0."""
        c = self._claimed(store, **kw)
        units = [
            Unit(f"first[{i}]", i, item={"n": i}, max_attempts=2)
            if items
            else Unit(f"first.b{i}", i, context={"branch": i}, max_attempts=2)
            for i in range(n)
        ]
        status = store.fork(
            c.id,
            c.token,
            now=T0,
            step="first",
            visit=1,
            units=units,
            concurrency=concurrency,
            stops_group=stops,
        )
        assert status == (Status.WAITING if n else Status.PENDING)
        return c

    def _claim_units(self, store: Store, now: datetime, limit: int = 10) -> list[ExecutionRow]:
        claimed = _claim(store, now, limit=limit)
        assert all(r.unit is not None for r in claimed), [r.id for r in claimed]
        return claimed

    def _end_unit(
        self, store: Store, u: ExecutionRow, now: datetime, *, fail: bool = False
    ) -> Status:
        name = u.step_name or ""
        if fail:
            err = {"type": "E", "message": "no"}
            rec = _record(name, u.attempt, StepStatus.FAILED, now, error=err)
            return store.fail_attempt(u.id, u.token, now=now, record=rec, retry_at=None, error=err)
        rec = _record(name, u.attempt, StepStatus.COMPLETED, now, result=u.item)
        return store.complete_step(
            u.id,
            u.token,
            now=now,
            record=rec,
            context={},
            next_step=None,
            start_next=False,
            result=u.item,
        )

    def test_fork_inserts_the_units_and_the_execution_waits_for_them(self, store: Store) -> None:
        c = self._forked(store, 3, items=False, timeout_ms=60_000)
        got = store.get(c.id)
        assert got is not None
        assert (got.status, got.open_units, got.suspended, got.worker_id) == (
            Status.WAITING,
            3,
            True,
            None,
        )
        assert got.run_at == got.deadline == T0 + _ms(60_000)  # its timer: the deadline
        units = store.units(c.id, "first", 1)
        assert [u.id for u in units] == [unit_id(c.id, "first", 1, i) for i in range(3)]
        u = units[1]
        assert (u.status, u.workflow, u.queue, u.priority, u.input, u.attempt) == (
            Status.PENDING,
            WF,
            "default",
            0,
            None,
            0,
        )
        assert (u.parent_id, u.unit, u.step_name, u.group_step, u.group_visit) == (
            c.id,
            "first.b1",
            "first.b1",
            "first",
            1,
        )
        assert (u.unit_index, u.context, u.max_attempts, u.run_at) == (1, {"branch": 1}, 2, T0)
        assert (u.scheduled_at, u.deadline, u.stops_group) == (T0, T0 + _ms(60_000), False)
        assert store.get(u.id) is not None
        assert store.units(c.id, "first", 2) == [] and store.units(c.id, "other", 1) == []
        # units are not executions of their own: never listed, never purged alone
        listed = store.list_executions(workflows=None, statuses=None, queues=None, limit=10)
        assert [r.id for r in listed] == [c.id]
        for status in Status:
            assert c.id not in {
                r.id
                for r in store.list_executions(
                    workflows=[WF], statuses=[status], queues=["default"], limit=10
                )
                if r.unit is not None
            }
        # any worker claims them, like executions
        claimed = self._claim_units(store, T0)
        assert [r.id for r in claimed] == [u.id for u in units]
        assert [(r.attempt, r.began, r.token) for r in claimed] == [(1, True, 1)] * 3

    def test_own_steps_are_the_executions_attempts_without_its_units(self, store: Store) -> None:
        c = self._claimed(store)
        zero = _record("zero", 1, StepStatus.COMPLETED, T0, index=0)
        store.complete_step(
            c.id,
            c.token,
            now=T0 + _ms(1),
            record=zero,
            context={},
            next_step=(1, "first"),
            start_next=True,
        )
        units = [Unit(f"first[{i}]", i, item=i) for i in range(2)]
        store.fork(
            c.id,
            c.token,
            now=T0 + _ms(2),
            step="first",
            visit=1,
            units=units,
            concurrency=None,
            stops_group=False,
        )
        u0, u1 = self._claim_units(store, T0 + _ms(3))
        self._end_unit(store, u1, T0 + _ms(4))
        self._end_unit(store, u0, T0 + _ms(5), fail=True)  # (the group ends: it goes on)
        (again,) = _claim(store, T0 + _ms(6))
        assert again.id == c.id
        first = _record("first", again.attempt, StepStatus.COMPLETED, T0 + _ms(6), index=1)
        store.complete_step(
            c.id,
            again.token,
            now=T0 + _ms(7),
            record=first,
            context={},
            next_step=None,
            start_next=False,
        )
        assert store.own_steps(c.id) == [zero, first]  # in the order they started
        every = store.steps(c.id)  # (its units' too)
        assert [s.name for s in every if s.name in ("zero", "first")] == ["zero", "first"]
        assert sorted(s.name for s in every if "[" in s.name) == ["first[0]", "first[1]"]
        assert [(s.name, s.status) for s in store.own_steps(u0.id)] == [
            ("first[0]", StepStatus.FAILED)
        ]
        assert store.own_steps("no-such-execution") == []

    def test_unit_states_count_how_each_unit_of_a_group_run_stands(self, store: Store) -> None:
        c = self._forked(store, 4, concurrency=3)
        u0, u1, u2 = self._claim_units(store, T0)
        self._end_unit(store, u0, T0 + _ms(1))  # (lets the parked u3 in, not begun)
        err = {"type": "E", "message": "once"}
        retry_at = T0 + _ms(1000)
        rec = _record(u1.step_name or "", 1, StepStatus.FAILED, T0, error=err, retry_at=retry_at)
        store.fail_attempt(
            u1.id, u1.token, now=T0 + _ms(2), record=rec, retry_at=retry_at, error=err
        )
        name = u2.step_name or ""
        spec = WaitSpec(kind=WaitKind.EVENT, names=("go",))
        store.wait(u2.id, u2.token, now=T0, step=name, visit=1, seq=0, attempt=1, spec=spec)
        rec = _record(name, 1, StepStatus.SUSPENDED, T0)
        store.suspend(u2.id, u2.token, now=T0 + _ms(3), record=rec, step=name, visit=1, seq=0)
        assert store.unit_states(c.id, "first", 1) == {
            "completed": 1,
            "retrying": 1,
            "waiting": 1,
            "pending": 1,
        }
        again = self._claim_units(store, retry_at)  # u1's retry and u3
        assert sorted(u.id for u in again) == sorted([u1.id, unit_id(c.id, "first", 1, 3)])
        u3 = next(u for u in again if u.id != u1.id)
        self._end_unit(store, u3, retry_at, fail=True)
        assert store.unit_states(c.id, "first", 1) == {
            "completed": 1,
            "running": 1,
            "waiting": 1,
            "failed": 1,
        }
        assert store.unit_states(c.id, "first", 2) == {} == store.unit_states("nope", "first", 1)

    def test_fork_without_units_lets_the_execution_go_on_at_once(self, store: Store) -> None:
        c = self._forked(store, 0)
        got = store.get(c.id)
        assert got is not None and (got.status, got.run_at, got.open_units) == (
            Status.PENDING,
            T0,
            0,
        )
        assert store.units(c.id, "first", 1) == []

    def test_fork_is_fenced_and_applied_once(self, store: Store) -> None:
        c = self._claimed(store)
        units = [Unit(f"first[{i}]", i, item=i) for i in range(2)]
        with pytest.raises(LeaseLost):
            store.fork(
                c.id,
                c.token - 1,
                now=T0,
                step="first",
                visit=1,
                units=units,
                concurrency=None,
                stops_group=False,
            )
        assert store.units(c.id, "first", 1) == []
        for _ in range(2):  # a retried commit, with its write id
            status = store.fork(
                c.id,
                c.token,
                now=T0,
                step="first",
                visit=1,
                units=units,
                concurrency=None,
                stops_group=False,
                write_id="fork-1",
            )
            assert status == Status.WAITING
        assert len(store.units(c.id, "first", 1)) == 2
        assert store.get(c.id).open_units == 2  # type: ignore[union-attr]
        with pytest.raises(LeaseLost):  # the execution waits: its claim is over
            store.fork(
                c.id,
                c.token,
                now=T0,
                step="first",
                visit=1,
                units=units,
                concurrency=None,
                stops_group=False,
            )

    def test_the_last_unit_to_end_lets_the_execution_go_on(self, store: Store) -> None:
        c = self._forked(store, 3)
        a, b, d = self._claim_units(store, T0)
        assert self._end_unit(store, b, T0 + _ms(1)) == Status.COMPLETED
        got = store.get(c.id)
        assert got is not None and (got.status, got.open_units) == (Status.WAITING, 2)
        # a retry is not an end
        err = {"type": "E", "message": "again"}
        rec = _record("first[0]", 1, StepStatus.FAILED, T0 + _ms(2), error=err)
        store.fail_attempt(
            a.id, a.token, now=T0 + _ms(2), record=rec, retry_at=T0 + _ms(5), error=err
        )
        assert store.get(c.id).open_units == 2  # type: ignore[union-attr]
        # nor is a release
        store.release(d.id, d.token, now=T0 + _ms(2), attempt_ran=False)
        assert store.get(c.id).open_units == 2  # type: ignore[union-attr]
        a2, d2 = self._claim_units(store, T0 + _ms(5))
        assert (a2.id, a2.attempt, d2.id) == (a.id, 2, d.id)
        self._end_unit(store, a2, T0 + _ms(6), fail=True)  # a failure ends it too
        got = store.get(c.id)
        assert got is not None and (got.status, got.open_units) == (Status.WAITING, 1)
        assert _claim(store, T0 + _ms(7)) == []
        self._end_unit(store, d2, T0 + _ms(8))
        got = store.get(c.id)
        assert got is not None
        assert (got.status, got.run_at, got.open_units) == (Status.PENDING, T0 + _ms(8), 0)
        assert store.next_due(queues=None, workflows=None) == T0 + _ms(8)
        units = store.units(c.id, "first", 1)
        assert [(u.status, u.result) for u in units] == [
            (Status.FAILED, None),
            (Status.COMPLETED, {"n": 1}),
            (Status.COMPLETED, {"n": 2}),
        ]
        assert units[1].completed_at == T0 + _ms(1)
        # the execution's steps hold its units' attempts, in the order they started
        assert [(s.name, s.status) for s in store.steps(c.id)] == [
            ("first[1]", StepStatus.COMPLETED),
            ("first[0]", StepStatus.FAILED),
            ("first[0]", StepStatus.FAILED),
            ("first[2]", StepStatus.COMPLETED),
        ]
        (resumed,) = _claim(store, T0 + _ms(8))
        assert (resumed.id, resumed.attempt, resumed.began) == (c.id, 1, True)

    def test_parked_units_are_let_in_one_per_unit_ended_lowest_index_first(
        self, store: Store
    ) -> None:
        c = self._forked(store, 5, concurrency=2)
        units = store.units(c.id, "first", 1)
        assert [u.run_at for u in units] == [T0, T0, None, None, None]
        # parked units are never claimed, and are not due
        assert store.next_due(queues=None, workflows=None) == T0
        first = self._claim_units(store, T0 + _ms(10**6))
        assert [u.unit_index for u in first] == [0, 1]
        assert store.next_due(queues=None, workflows=None) == T0 + _ms(10**6 + 30_000)
        assert _claim(store, T0 + _ms(10**6)) == []
        self._end_unit(store, first[1], T0 + _ms(1))
        assert [u.run_at for u in store.units(c.id, "first", 1)][2:] == [T0 + _ms(1), None, None]
        self._end_unit(store, first[0], T0 + _ms(2), fail=True)  # not fail-fast: goes on
        assert [u.run_at for u in store.units(c.id, "first", 1)][2:] == [
            T0 + _ms(1),
            T0 + _ms(2),
            None,
        ]
        got = store.get(c.id)
        assert got is not None and (got.status, got.open_units) == (Status.WAITING, 3)
        second = self._claim_units(store, T0 + _ms(2))
        assert [u.unit_index for u in second] == [2, 3]
        for n, u in enumerate(second):
            self._end_unit(store, u, T0 + _ms(3 + n))
        (last,) = self._claim_units(store, T0 + _ms(4))
        assert last.unit_index == 4
        self._end_unit(store, last, T0 + _ms(5))
        got = store.get(c.id)
        assert got is not None and (got.status, got.open_units) == (Status.PENDING, 0)

    def test_a_stopping_failure_ends_the_group_and_cancels_the_rest(self, store: Store) -> None:
        c = self._forked(store, 4, concurrency=3, stops=True)
        a, b, d = self._claim_units(store, T0)
        store.release(d.id, d.token, now=T0 + _ms(1), attempt_ran=False)  # pending again
        assert self._end_unit(store, a, T0 + _ms(2), fail=True) == Status.FAILED
        got = store.get(c.id)
        assert got is not None
        assert (got.status, got.run_at) == (Status.PENDING, T0 + _ms(2))
        units = store.units(c.id, "first", 1)
        # running with a live lease: at its next checkpoint; the others at once
        assert [(u.status, u.cancel_requested) for u in units] == [
            (Status.FAILED, False),
            (Status.RUNNING, True),
            (Status.CANCELLED, True),
            (Status.CANCELLED, True),
        ]
        assert [u.completed_at for u in units[2:]] == [T0 + _ms(2)] * 2
        assert units[1].cancel_reason == units[2].cancel_reason
        assert units[1].cancel_reason and "first[0]" in units[1].cancel_reason
        # the running one's result is discarded; the execution, already let go, is untouched
        assert self._end_unit(store, b, T0 + _ms(3)) == Status.CANCELLED
        again = store.get(c.id)
        assert again is not None and (again.status, again.open_units, again.run_at) == (
            got.status,
            got.open_units,
            got.run_at,
        )
        (resumed,) = _claim(store, T0 + _ms(3))
        assert resumed.id == c.id

    def test_a_large_group_resumes_its_execution_at_its_last_unit_only(self, store: Store) -> None:
        # more units than a SQL store splits a group's count over (GROUP_SHARDS), ended
        # out of order, some failing: the execution waits until the very last one, and
        # never more than `concurrency` units are let in at once
        c = self._forked(store, 150, concurrency=7)
        now, ended = T0, 0
        while ended < 150:
            now += _ms(1)
            got = store.get(c.id)
            assert got is not None and got.status == Status.WAITING, ended
            let_in = [
                u
                for u in store.units(c.id, "first", 1)
                if u.status not in FINISHED
                and not (u.status == Status.PENDING and u.run_at is None)  # parked
            ]
            assert len(let_in) == min(7, 150 - ended)
            batch = self._claim_units(store, now, limit=3)
            assert batch
            for u in reversed(batch):
                self._end_unit(store, u, now, fail=u.unit_index % 5 == 0)
                ended += 1
        got = store.get(c.id)
        assert got is not None and (got.status, got.run_at, got.open_units) == (
            Status.PENDING,
            now,
            0,
        )
        units = store.units(c.id, "first", 1)
        assert [u.status for u in units] == [
            Status.FAILED if i % 5 == 0 else Status.COMPLETED for i in range(150)
        ]

    def test_a_fork_of_thousands_of_units_stores_each_and_reads_back_a_page_at_a_time(
        self, store: Store
    ) -> None:
        # a SQL store inserts units a batch at a time: every unit is there once, with its
        # own item, the first `concurrency` by index let in; the outcomes come in pages
        c = self._forked(store, 2_500, concurrency=3)
        units = store.units(c.id, "first", 1)
        assert [(u.unit_index, u.unit, u.item) for u in units] == [
            (i, f"first[{i}]", {"n": i}) for i in range(2_500)
        ]
        assert [u.unit_index for u in units if u.run_at is not None] == [0, 1, 2]
        pages, after = [], -1
        while page := store.unit_outcomes(c.id, "first", 1, after=after, limit=1_000):
            pages.append([u.index for u in page])
            after = page[-1].index
        assert pages == [
            list(range(0, 1_000)),
            list(range(1_000, 2_000)),
            list(range(2_000, 2_500)),
        ]
        every = store.unit_outcomes(c.id, "first", 1)  # no limit: all of them
        assert [u.index for u in every] == list(range(2_500))
        assert all(u.status == Status.PENDING for u in every)

    def test_no_parked_unit_is_let_in_once_the_execution_left_the_group(self, store: Store) -> None:
        # the execution ran out of time at the group (its deadline claim failed it): a unit
        # ending later lets nothing in, or each parked item would run only to time out
        c = self._forked(store, 3, concurrency=1, timeout_ms=60_000)
        (u0,) = self._claim_units(store, T0, limit=1)
        deadline = T0 + _ms(60_000)
        got = store.get(c.id)
        assert got is not None and got.run_at == deadline
        (at_deadline,) = _claim(store, deadline, limit=1)
        assert at_deadline.id == c.id
        err = {"type": "WorkflowTimeout", "message": "out of time"}
        store.finish(c.id, at_deadline.token, now=deadline, status=Status.FAILED, error=err)
        assert self._end_unit(store, u0, deadline) == Status.COMPLETED
        units = store.units(c.id, "first", 1)
        assert [(u.status, u.run_at) for u in units[1:]] == [(Status.PENDING, None)] * 2
        assert _claim(store, deadline + _ms(1)) == []

    def test_a_unit_cancelled_on_its_own_counts_as_ended(self, store: Store) -> None:
        c = self._forked(store, 3, concurrency=1)
        _, u1, _ = store.units(c.id, "first", 1)
        store.request_cancel(u1.id, now=T0 + _ms(1), reason="not this one")  # parked
        got = store.get(c.id)
        assert got is not None and (got.status, got.open_units) == (Status.WAITING, 2)
        units = store.units(c.id, "first", 1)
        assert [(u.status, u.run_at) for u in units] == [
            (Status.PENDING, T0),
            (Status.CANCELLED, None),
            # not let in yet: the one place (concurrency=1) is still the first unit's
            (Status.PENDING, None),
        ]
        (first,) = self._claim_units(store, T0 + _ms(2))
        self._end_unit(store, first, T0 + _ms(3))
        *_, last = store.units(c.id, "first", 1)
        assert (last.status, last.run_at) == (Status.PENDING, T0 + _ms(3))  # now it is

    def test_a_stopping_group_stops_at_a_cancelled_unit(self, store: Store) -> None:
        c = self._forked(store, 2, stops=True)
        u0, _ = store.units(c.id, "first", 1)
        store.request_cancel(u0.id, now=T0 + _ms(1), reason=None)
        got = store.get(c.id)
        assert got is not None and got.status == Status.PENDING
        assert [u.status for u in store.units(c.id, "first", 1)] == [Status.CANCELLED] * 2

    def test_cancel_cascades_to_the_units(self, store: Store) -> None:
        c = self._forked(store, 4, concurrency=3)
        first, _, third = self._claim_units(store, T0)
        store.release(third.id, third.token, now=T0, attempt_ran=False)
        # second's lease runs out: nobody runs it any more
        store.heartbeat([(first.id, first.token)], now=T0 + _ms(29_000), lease_ms=30_000)
        got = store.request_cancel(c.id, now=T0 + _ms(30_000), reason="stop")
        assert (got.status, got.cancel_reason) == (Status.CANCELLED, "stop")
        units = store.units(c.id, "first", 1)
        assert [(u.status, u.cancel_requested, u.cancel_reason) for u in units] == [
            (Status.RUNNING, True, "stop"),  # its lease is live: at its next checkpoint
            (Status.CANCELLED, True, "stop"),
            (Status.CANCELLED, True, "stop"),
            (Status.CANCELLED, True, "stop"),  # parked
        ]
        assert units[1].attempt_started_at is None
        assert self._end_unit(store, first, T0 + _ms(30_001)) == Status.CANCELLED
        assert _claim(store, T0 + _ms(10**9)) == []
        assert store.next_due(queues=None, workflows=None) is None

    def test_a_units_waits_take_its_executions_events(self, store: Store) -> None:
        c = self._forked(store, 2, items=False)
        u0, u1 = self._claim_units(store, T0)
        spec = WaitSpec(kind=WaitKind.EVENT, names=("go",))
        suspended = []
        for n, u in enumerate((u1, u0)):  # u1 waits first
            at = T0 + _ms(1 + n)
            w = store.wait(
                u.id, u.token, now=at, step=u.step_name or "", visit=1, seq=0, attempt=1, spec=spec
            )
            assert w.status == "pending"
            rec = _record(u.step_name or "", 1, StepStatus.SUSPENDED, at)
            status = store.suspend(
                u.id, u.token, now=at, record=rec, step=u.step_name or "", visit=1, seq=0
            )
            assert status == Status.WAITING
            suspended.append(u.id)
        # the execution's waits include its units'; the units are listed nowhere else
        assert [w.execution_id for w in store.waits(execution_id=c.id)] == suspended
        assert store.waits(execution_id=u0.id)[0].execution_id == u0.id
        # an event sent to the execution goes to the first waiter, oldest wait first
        assert store.send_event(c.id, "go", 1, now=T0 + _ms(3)) is True
        got = {u.id: u for u in store.units(c.id, "first", 1)}
        assert (got[u1.id].status, got[u1.id].run_at) == (Status.PENDING, T0 + _ms(3))
        assert got[u0.id].status == Status.WAITING
        assert store.send_event(c.id, "go", 2, now=T0 + _ms(4)) is True
        assert store.get(u0.id).status == Status.PENDING  # type: ignore[union-attr]
        resumed = {r.id: r for r in self._claim_units(store, T0 + _ms(4))}
        for uid, payload in ((u1.id, 1), (u0.id, 2)):
            r = resumed[uid]
            w = store.wait(
                uid,
                r.token,
                now=T0 + _ms(5),
                step=r.step_name or "",
                visit=1,
                seq=0,
                attempt=1,
                spec=spec,
            )
            assert (w.status, w.result) == ("resolved", {"name": "go", "payload": payload})
        # an event nobody waits for stays with the execution, for a unit's next wait
        store.send_event(c.id, "go", 3, now=T0 + _ms(6))
        r = resumed[u0.id]
        w = store.wait(
            u0.id,
            r.token,
            now=T0 + _ms(7),
            step=r.step_name or "",
            visit=1,
            seq=1,
            attempt=1,
            spec=spec,
        )
        assert w.result == {"name": "go", "payload": 3}

    def test_recent_waits_are_the_newest_of_an_execution_and_its_units(self, store: Store) -> None:
        c = self._claimed(store)
        for i in range(3):  # three waits that resolve at once (their event came first)
            store.send_event(c.id, f"e{i}", i, now=T0 + _ms(i))
            spec = WaitSpec(kind=WaitKind.EVENT, names=(f"e{i}",))
            w = store.wait(
                c.id, c.token, now=T0 + _ms(i), step="first", visit=1, seq=i, attempt=1, spec=spec
            )
            assert w.status == "resolved"
        store.fork(
            c.id,
            c.token,
            now=T0 + _ms(5),
            step="second",
            visit=1,
            units=[Unit("second[0]", 0, item=0)],
            concurrency=None,
            stops_group=False,
        )
        (u,) = self._claim_units(store, T0 + _ms(6))
        spec = WaitSpec(kind=WaitKind.EVENT, names=("never",))
        store.wait(
            u.id, u.token, now=T0 + _ms(7), step="second[0]", visit=1, seq=0, attempt=1, spec=spec
        )
        newest, total = store.recent_waits(c.id, limit=2)
        assert total == 4
        assert [(w.execution_id, w.step, w.seq, w.status) for w in newest] == [
            (u.id, "second[0]", 0, "pending"),
            (c.id, "first", 2, "resolved"),
        ]
        every, total = store.recent_waits(c.id, limit=10)
        assert total == 4 and [w.seq for w in every if w.execution_id == c.id] == [2, 1, 0]
        assert every[-1].result == {"name": "e0", "payload": 0}
        assert store.recent_waits("no-such-execution", limit=5) == ([], 0)

    def test_an_input_reaches_the_unit_that_waits_for_it(self, store: Store) -> None:
        c = self._forked(store, 2)
        _, u1 = self._claim_units(store, T0)
        spec = WaitSpec(kind=WaitKind.INPUT, names=("approve",), prompt="ok?")
        name = u1.step_name or ""
        store.wait(u1.id, u1.token, now=T0, step=name, visit=1, seq=0, attempt=1, spec=spec)
        rec = _record(name, 1, StepStatus.SUSPENDED, T0)
        store.suspend(u1.id, u1.token, now=T0, record=rec, step=name, visit=1, seq=0)
        with pytest.raises(InvalidState):
            store.provide_input(c.id, "other", 1, now=T0 + _ms(1))
        store.provide_input(c.id, "approve", {"yes": True}, now=T0 + _ms(1))
        got = store.get(u1.id)
        assert got is not None and (got.status, got.run_at) == (Status.PENDING, T0 + _ms(1))
        (w,) = store.waits(execution_id=c.id, pending_only=False)
        assert (w.execution_id, w.status, w.result) == (u1.id, "resolved", {"yes": True})
        with pytest.raises(InvalidState):  # resolved: nobody waits for it any more
            store.provide_input(c.id, "approve", 2, now=T0 + _ms(2))

    def test_purge_takes_the_units_with_their_execution(self, store: Store) -> None:
        c = self._forked(store, 2)
        for u in self._claim_units(store, T0):
            self._end_unit(store, u, T0 + _ms(1))
        (resumed,) = _claim(store, T0 + _ms(1))
        rec = _record("first", 1, StepStatus.COMPLETED, T0 + _ms(1))
        store.complete_step(
            resumed.id,
            resumed.token,
            now=T0 + _ms(2),
            record=rec,
            context={},
            next_step=None,
            start_next=False,
        )
        unit_ids = [u.id for u in store.units(c.id, "first", 1)]
        # finished units are never purged alone, only with their execution
        assert store.purge(finished_before=T0 + _ms(2), workflows=None, limit=10) == []
        assert store.purge(finished_before=T0 + _ms(3), workflows=None, limit=10) == [c.id]
        assert store.units(c.id, "first", 1) == []
        for uid in unit_ids:
            assert store.get(uid) is None and store.steps(uid) == []
        assert store.steps(c.id) == []

    # -- plans (optional: a store that keeps none answers None) ------------------------

    def test_a_plan_keeps_who_ran_it_last_and_when(self, store: Store) -> None:
        store.note_plan("plans_w", "p1", process="a", worker=True, now=T0)
        if store.plan_seen("plans_w", "p1", besides="z") == (None, None):
            return  # this store keeps no plans
        assert store.plan_seen("plans_w", "p1", besides="z") == (T0, T0)
        assert store.plan_seen("plans_w", "p1", besides="a") == (None, None)  # (itself)
        store.note_plan("plans_w", "p1", process="b", worker=False, now=T0 + _ms(5))
        store.note_plan("plans_w", "p1", process="a", worker=False, now=T0 + _ms(2))
        store.note_plan("plans_w", "p1", process="a", worker=False, now=T0 + _ms(1))
        store.note_plan("plans_other", "p1", process="c", worker=True, now=T0 + _ms(9))
        # a: last seen at 2 ms (never moved back), a worker once; b: 5 ms, never a worker
        assert store.plan_seen("plans_w", "p1", besides="z") == (T0 + _ms(2), T0 + _ms(5))
        assert store.plan_seen("plans_w", "p1", besides="b") == (T0 + _ms(2), T0 + _ms(2))
        assert store.plan_seen("plans_w", "p2", besides="z") == (None, None)
        # a process not heard of for a day is forgotten as others note
        store.note_plan("plans_w", "p1", process="c", worker=True, now=T0 + timedelta(days=2))
        assert store.plan_seen("plans_w", "p1", besides="c") == (None, None)


# -- comparison with the memory store ---------------------------------------------------


def compare_with_memory(make_store: Callable[[], Store], *, max_examples: int = 25) -> None:
    """Run ``CompareWithMemory`` against stores made by ``make_store`` (each must
    be fresh and empty)."""
    from hypothesis import HealthCheck, settings
    from hypothesis.stateful import run_state_machine_as_test

    machine = type("Compare", (_machine(),), {"make_store": staticmethod(make_store)})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def _build_machine() -> type:
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

    from durable.stores.memory import MemoryStore

    def observable(r: ExecutionRow | None) -> tuple[Any, ...] | None:
        if r is None:
            return None
        # A finished row's attempt_started_at means nothing (the memory store's fail-fast
        # cascade leaves it on the units it cancels; the SQL stores clear it).
        in_flight = None if r.status in FINISHED else r.attempt_started_at
        return (
            r.id,
            r.status,
            r.queue,
            r.priority,
            r.run_at,
            r.started_at,
            r.completed_at,
            r.deadline,
            r.step_index,
            r.step_name,
            r.attempt,
            in_flight,
            r.error,
            r.token,
            r.lease_expires_at,
            r.cancel_requested,
            r.context,
            r.input,
            r.suspended,
            r.lost_attempts,
            r.max_attempts,
            r.parent_id,
            r.unit,
            r.group_step,
            r.group_visit,
            r.unit_index,
            r.stops_group,
            r.item,
            r.result,
            r.open_units,  # (groups here are small: a unit per count row on SQL stores)
            r.phase,
        )

    def wait_view(w: Wait) -> tuple[Any, ...]:
        return (
            w.execution_id,
            w.step,
            w.seq,
            w.kind,
            w.names,
            w.mode,
            w.until,
            w.status,
            w.result,
            w.resolved_at,
        )

    specs = st.one_of(
        st.builds(lambda ms: WaitSpec(kind=WaitKind.SLEEP, for_ms=ms), st.integers(0, 4000)),
        st.builds(
            lambda names, mode, ms: WaitSpec(
                kind=WaitKind.EVENT, names=names, mode=mode, for_ms=ms
            ),
            st.sampled_from([("x",), ("y",), ("x", "y")]),
            st.sampled_from([WaitMode.ANY, WaitMode.ALL]),
            st.none() | st.integers(1, 4000),
        ),
        st.builds(
            lambda ms, has: WaitSpec(
                kind=WaitKind.INPUT, names=("ok",), for_ms=ms, has_timeout_value=has
            ),
            st.none() | st.integers(1, 4000),
            st.booleans(),
        ),
    )

    class Machine(RuleBasedStateMachine):
        make_store: Callable[[], Store]

        def __init__(self) -> None:
            super().__init__()
            self.model = MemoryStore()
            self.subject = self.make_store()
            self.now = T0
            self.ids: list[str] = []
            self.claims: dict[str, int] = {}
            self.reached: set[tuple[str, str, int, int]] = set()  # (id, step, visit, seq)
            self.groups: set[tuple[str, str, int]] = set()  # forked (id, step, visit)
            self.made = 0
            self.forks = 0
            self.children: list[str] = []  # executions made as some execution's child

        def next_id(self) -> str:
            # Ids in creation order, not random: hypothesis replays draws from sorted ids.
            self.made += 1
            return f"cmp-{self.made:04d}"

        def teardown(self) -> None:
            self.subject.close()

        def both(self, fn: Callable[[Store], Any]) -> Any:
            outcomes = []
            for store in (self.model, self.subject):
                try:
                    outcomes.append(("ok", fn(store)))
                except (LeaseLost, InvalidState, ExecutionNotFound) as exc:
                    outcomes.append(("error", type(exc).__name__))
            assert outcomes[0][0] == outcomes[1][0], outcomes
            if outcomes[0][0] == "error":
                assert outcomes[0][1] == outcomes[1][1], outcomes
            return outcomes

        @rule(
            priority=st.integers(0, 3),
            delay=st.integers(0, 3000),
            queue=st.sampled_from(["a", "b"]),
            key=st.none() | st.sampled_from(["k1", "k2"]),
            timeout=st.none() | st.integers(1000, 20_000),
        )
        def create(
            self, priority: int, delay: int, queue: str, key: str | None, timeout: int | None
        ) -> None:
            row = new_row(
                id=self.next_id(),
                at=self.now,
                run_at=self.now + _ms(delay),
                priority=priority,
                queue=queue,
                key=key,
                timeout_ms=timeout,
            )
            (_, (m, mc)), (_, (s, sc)) = self.both(lambda st_: st_.create(row))
            assert (m.id, mc) == (s.id, sc)
            if mc:
                self.ids.append(row.id)

        @rule()
        def start_and_claim(self) -> None:
            """A due start claimed at once: keeps live claims around for the wait rules."""
            row = new_row(id=self.next_id(), at=self.now)
            self.both(lambda st_: st_.create(row))
            self.ids.append(row.id)
            self.claim(1, None)

        @rule(ms=st.integers(0, 5000))
        def advance(self, ms: int) -> None:
            self.now += _ms(ms)

        @rule(limit=st.integers(1, 4), queues=st.sampled_from([None, ["a"], ["b"]]))
        def claim(self, limit: int, queues: list[str] | None) -> None:
            (_, m), (_, s) = self.both(
                lambda st_: st_.claim(
                    queues=queues,
                    workflows=[WF],
                    worker_id="w",
                    now=self.now,
                    lease_ms=10_000,
                    limit=limit,
                )
            )
            assert [observable(r) for r in m] == [observable(r) for r in s]
            assert [r.began for r in m] == [r.began for r in s]
            for r in m:
                self.claims[r.id] = r.token

        @precondition(lambda self: self.claims)
        @rule(data=st.data(), last=st.booleans(), stale=st.booleans(), twice=st.booleans())
        def complete(self, data: Any, last: bool, stale: bool, twice: bool) -> None:
            eid = data.draw(st.sampled_from(sorted(self.claims)))
            token = self.claims[eid] - (1 if stale else 0)
            rec = _record("first", 1, StepStatus.COMPLETED, self.now, result={"n": 1})
            write_id = f"w{self.made}-{len(self.reached)}-{self.now.timestamp()}"
            for _ in range(2 if twice else 1):  # twice: a retried commit
                self.both(
                    lambda st_: st_.complete_step(
                        eid,
                        token,
                        now=self.now,
                        record=rec,
                        context={"n": len(self.ids)},
                        next_step=None if last else (1, "second"),
                        start_next=not last,
                        next_max_attempts=2,
                        result={"from": eid} if last else None,
                        write_id=write_id,
                    )
                )

        @precondition(lambda self: self.claims)
        @rule(data=st.data())
        def restart(self, data: Any) -> None:
            eid = data.draw(st.sampled_from(sorted(self.claims)))
            rec = _record("first", 1, StepStatus.LOST, self.now, error={"type": "WorkerLost"})
            self.both(
                lambda st_: st_.restart_attempt(eid, self.claims[eid], now=self.now, record=rec)
            )

        @precondition(lambda self: self.claims)
        @rule(data=st.data(), retry=st.none() | st.integers(0, 4000))
        def fail(self, data: Any, retry: int | None) -> None:
            eid = data.draw(st.sampled_from(sorted(self.claims)))
            err = {"type": "E", "message": "x"}
            rec = _record("first", 1, StepStatus.FAILED, self.now, error=err)
            retry_at = None if retry is None else self.now + _ms(retry)
            self.both(
                lambda st_: st_.fail_attempt(
                    eid, self.claims[eid], now=self.now, record=rec, retry_at=retry_at, error=err
                )
            )

        @precondition(lambda self: self.claims)
        @rule(data=st.data(), ran=st.booleans())
        def release(self, data: Any, ran: bool) -> None:
            eid = data.draw(st.sampled_from(sorted(self.claims)))
            self.both(lambda st_: st_.release(eid, self.claims[eid], now=self.now, attempt_ran=ran))

        @precondition(lambda self: self.ids)
        @rule(data=st.data())
        def cancel(self, data: Any) -> None:
            eid = data.draw(st.sampled_from(self.ids))
            saga = data.draw(st.booleans())
            outcomes = self.both(
                lambda st_: st_.request_cancel(
                    eid, now=self.now, reason="r", compensates=lambda _: saga
                )
            )
            if outcomes[0][0] == "ok":
                assert observable(outcomes[0][1]) == observable(outcomes[1][1])

        @precondition(lambda self: self.claims)
        @rule(data=st.data(), failed=st.booleans())
        def compensate(self, data: Any, failed: bool) -> None:
            eid = data.draw(st.sampled_from(sorted(self.claims)))
            rec = StepExecution("x", StepStatus.FAILED, 1, self.now, self.now) if failed else None
            self.both(
                lambda st_: st_.compensate(
                    eid, self.claims[eid], now=self.now, error={"type": "E"}, record=rec
                )
            )

        @precondition(lambda self: self.ids)
        @rule(data=st.data(), visit=st.integers(1, 3))
        def retry_ended(self, data: Any, visit: int) -> None:
            eid = data.draw(st.sampled_from(self.ids))
            outcomes = self.both(
                lambda st_: st_.retry_execution(
                    eid,
                    now=self.now,
                    step_index=0,
                    step_name="first",
                    visit=visit,
                    visits={"first": visit},
                    context={"retried": visit},
                    max_attempts=2,
                )
            )
            if outcomes[0][0] == "ok":
                assert observable(outcomes[0][1]) == observable(outcomes[1][1])

        @precondition(lambda self: self.claims)
        @rule()
        def heartbeat(self) -> None:
            claims = sorted(self.claims.items())
            (_, m), (_, s) = self.both(
                lambda st_: st_.heartbeat(claims, now=self.now, lease_ms=10_000)
            )
            assert sorted(m) == sorted(s)

        def live(self) -> list[str]:
            """Claims still held (most rules may also use stale ones, to test fencing)."""
            out = []
            for eid, token in sorted(self.claims.items()):
                row = self.model.get(eid)
                if row is not None and row.status == Status.RUNNING and row.token == token:
                    out.append(eid)
            return out

        @precondition(lambda self: self.live())
        @rule(data=st.data(), spec=specs, seq=st.integers(0, 2))
        def wait(self, data: Any, spec: WaitSpec, seq: int) -> None:
            eid = data.draw(st.sampled_from(self.live()))
            row = self.model.get(eid)
            assert row is not None
            step, visit = row.step_name or "first", row.visit  # its current step run
            outcomes = self.both(
                lambda st_: st_.wait(
                    eid,
                    self.claims[eid],
                    now=self.now,
                    step=step,
                    visit=visit,
                    seq=seq,
                    attempt=row.attempt,
                    spec=spec,
                )
            )
            if outcomes[0][0] == "ok":
                assert wait_view(outcomes[0][1]) == wait_view(outcomes[1][1])
                self.reached.add((eid, step, visit, seq))

        @precondition(lambda self: any(r[0] in self.live() for r in self.reached))
        @rule(data=st.data())
        def suspend(self, data: Any) -> None:
            live = self.live()
            eid, step, visit, seq = data.draw(
                st.sampled_from(sorted(r for r in self.reached if r[0] in live))
            )
            rec = _record(step, 1, StepStatus.SUSPENDED, self.now)
            self.both(
                lambda st_: st_.suspend(
                    eid, self.claims[eid], now=self.now, record=rec, step=step, visit=visit, seq=seq
                )
            )

        @precondition(lambda self: self.live())
        @rule(
            data=st.data(),
            n=st.integers(0, 4),
            concurrency=st.none() | st.integers(1, 2),
            stops=st.booleans(),
            items=st.booleans(),
            twice=st.booleans(),
        )
        def fork(
            self,
            data: Any,
            n: int,
            concurrency: int | None,
            stops: bool,
            items: bool,
            twice: bool,
        ) -> None:
            """The claimed execution reached a group at its current step: its units."""
            eid = data.draw(st.sampled_from(self.live()))
            row = self.model.get(eid)
            assert row is not None
            step, visit = row.step_name or "first", row.visit
            units = [
                Unit(f"{step}[{i}]", i, item={"i": i}, max_attempts=2)
                if items
                else Unit(f"{step}.b{i}", i, context={"b": i, "n": len(self.ids)})
                for i in range(n)
            ]
            self.forks += 1
            write_id = f"fork-{self.forks}"
            for _ in range(2 if twice else 1):  # twice: a retried commit
                self.both(
                    lambda st_: st_.fork(
                        eid,
                        self.claims[eid],
                        now=self.now,
                        step=step,
                        visit=visit,
                        units=units,
                        concurrency=concurrency,
                        stops_group=stops,
                        write_id=write_id,
                    )
                )
            self.groups.add((eid, step, visit))
            for u in units:
                uid = unit_id(eid, step, visit, u.index)
                if uid not in self.ids:
                    self.ids.append(uid)

        @precondition(lambda self: self.ids)
        @rule(data=st.data())
        def create_child(self, data: Any) -> None:
            """A child of an execution, as call_workflow starts one."""
            parent = data.draw(st.sampled_from(self.ids))
            row = new_row(id=self.next_id(), at=self.now, parent_id=parent)
            self.both(lambda st_: st_.create(row))
            self.ids.append(row.id)
            self.children.append(row.id)

        @precondition(lambda self: self.live() and self.children)
        @rule(data=st.data(), seq=st.integers(0, 2))
        def wait_for_child(self, data: Any, seq: int) -> None:
            """A live execution waits for a child's end (resolved by the end of the child
            when the waiter is the child's parent or a unit of it)."""
            child = data.draw(st.sampled_from(self.children))
            spec = WaitSpec(kind=WaitKind.CHILD, names=(child,))
            self.wait(data, spec, seq)

        @precondition(lambda self: self.ids)
        @rule(limit=st.integers(1, 3))
        def purge(self, limit: int) -> None:
            (_, m), (_, s) = self.both(
                lambda st_: st_.purge(finished_before=self.now, workflows=None, limit=limit)
            )
            assert m == s

        @precondition(lambda self: self.ids)
        @rule(data=st.data(), name=st.sampled_from(["x", "y"]), payload=st.integers(0, 9))
        def send(self, data: Any, name: str, payload: int) -> None:
            eid = data.draw(st.sampled_from(self.live() or self.ids))
            self.both(lambda st_: st_.send_event(eid, name, payload, now=self.now))

        @precondition(lambda self: self.ids)
        @rule(data=st.data(), payload=st.integers(0, 9))
        def provide(self, data: Any, payload: int) -> None:
            eid = data.draw(st.sampled_from(self.ids))
            self.both(lambda st_: st_.provide_input(eid, "ok", payload, now=self.now))

        @invariant()
        def same_waits(self) -> None:
            for pending_only in (True, False):
                m = [wait_view(w) for w in self.model.waits(pending_only=pending_only)]
                s_ = [wait_view(w) for w in self.subject.waits(pending_only=pending_only)]
                assert sorted(m, key=repr) == sorted(s_, key=repr)

        @invariant()
        def same_rows(self) -> None:
            for eid in self.ids:
                assert observable(self.model.get(eid)) == observable(self.subject.get(eid))
                assert self.model.steps(eid) == self.subject.steps(eid)
                # (waits begun at the same time: in any order, as in same_waits)
                m_waits = [wait_view(w) for w in self.model.waits(execution_id=eid)]
                s_waits = [wait_view(w) for w in self.subject.waits(execution_id=eid)]
                assert sorted(m_waits, key=repr) == sorted(s_waits, key=repr)
            for eid, step, visit in sorted(self.groups):
                m_units = [observable(u) for u in self.model.units(eid, step, visit)]
                assert m_units == [observable(u) for u in self.subject.units(eid, step, visit)]
            for parent in (None, *self.ids[:3]):
                listed = [
                    [
                        r.id
                        for r in st_.list_executions(
                            workflows=None, statuses=None, queues=None, limit=500, parent=parent
                        )
                    ]
                    for st_ in (self.model, self.subject)
                ]
                assert listed[0] == listed[1]
            for queues in (None, ["a"]):
                assert self.model.next_due(queues=queues, workflows=[WF]) == self.subject.next_due(
                    queues=queues, workflows=[WF]
                )

    return Machine


_built: list[type] = []


def _machine() -> type:
    if not _built:
        _built.append(_build_machine())
    return _built[0]


def __getattr__(name: str) -> Any:
    # Built lazily so importing the contract does not require hypothesis.
    if name == "CompareWithMemory":
        return _machine()
    raise AttributeError(name)
