"""start(): queues, priority, scheduled_at, idempotency keys; list_executions filters."""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from decimal import Decimal

import pytest

import durable
from durable import minutes, step, workflow

from workflows import ORDER, MixedWorkflow, OrderWorkflow, RecordWorkflow


@pytest.fixture(autouse=True)
def _reset_ran():
    RecordWorkflow.ran.clear()


def test_higher_priority_runs_first_then_earlier_scheduled_then_earlier_start(
    engine, durable_clock
):
    now = durable_clock.now()
    engine.start(RecordWorkflow, {"name": "low"}, priority=0)
    engine.start(RecordWorkflow, {"name": "high"}, priority=10)
    engine.start(
        RecordWorkflow, {"name": "mid-late"}, priority=5, scheduled_at=now - timedelta(seconds=1)
    )
    engine.start(
        RecordWorkflow, {"name": "mid-early"}, priority=5, scheduled_at=now - timedelta(seconds=2)
    )
    engine.start(RecordWorkflow, {"name": "low-2"}, priority=0)
    engine.drain()
    assert RecordWorkflow.ran == ["high", "mid-early", "mid-late", "low", "low-2"]


def test_scheduled_at_waits_for_its_time(engine, durable_clock):
    at = durable_clock.now() + timedelta(minutes=10)
    wid = engine.start(RecordWorkflow, {"name": "later"}, scheduled_at=at)
    assert engine.drain() == 0
    assert engine.get_execution(wid).status == "pending"
    assert engine.next_due() == at
    durable_clock.advance(minutes(10) - 1)
    assert engine.drain() == 0
    durable_clock.advance(1)
    assert engine.drain() == 1
    assert engine.get_execution(wid).status == "completed"


def test_naive_scheduled_at_is_utc(engine, durable_clock):
    naive = (durable_clock.now() + timedelta(hours=1)).replace(tzinfo=None)
    wid = engine.start(RecordWorkflow, {"name": "x"}, scheduled_at=naive)
    assert engine.get_execution(wid).scheduled_at == naive.replace(tzinfo=UTC)


def test_queues_are_separate(engine):
    a = engine.start(RecordWorkflow, {"name": "a"}, queue="high_priority")
    b = engine.start(RecordWorkflow, {"name": "b"})
    assert engine.get_execution(b).queue == "default"
    assert engine.drain(queues=["high_priority"]) == 1
    assert engine.get_execution(a).status == "completed"
    assert engine.get_execution(b).status == "pending"
    assert engine.drain(queues=["default"]) == 1


def test_idempotency_key_returns_the_existing_execution(engine):
    first = engine.start(OrderWorkflow, ORDER, idempotency_key="o-42")
    again = engine.start(OrderWorkflow, json.loads(json.dumps(ORDER)), idempotency_key="o-42")
    assert again == first
    assert len(engine.list_executions(workflow=OrderWorkflow)) == 1
    engine.drain()
    assert engine.start(OrderWorkflow, ORDER, idempotency_key="o-42") == first
    assert engine.get_execution(first).context["order_id"] == 123


@pytest.mark.parametrize(
    "other",
    [
        {"order": {"id": 999, "items": []}},
        {"order": {"id": 123.0, "items": [{"price": 90.0}, {"price": 9.99}]}},  # 123 != 123.0
        None,
    ],
)
def test_an_idempotency_key_reused_with_another_input_names_the_execution(engine, other):
    first = engine.start(OrderWorkflow, ORDER, idempotency_key="o-42")
    with pytest.raises(durable.InvalidState, match=f"already used by execution {first}") as err:
        engine.start(OrderWorkflow, other, idempotency_key="o-42")
    assert "another input" in str(err.value)
    assert [e.id for e in engine.list_executions()] == [first]  # nothing was started


def test_an_idempotency_key_reused_by_another_workflow_is_refused(engine):
    first = engine.start(OrderWorkflow, ORDER, idempotency_key="o-42")
    with pytest.raises(durable.InvalidState, match="another workflow"):
        engine.start(MixedWorkflow, ORDER, idempotency_key="o-42")
    assert [e.id for e in engine.list_executions()] == [first]


def test_list_executions_filters_and_limit(engine):
    orders = [engine.start(OrderWorkflow, ORDER) for _ in range(3)]
    mixed = engine.start(MixedWorkflow, queue="other")
    engine.drain(queues=["other"])
    assert {e.id for e in engine.list_executions(workflow=OrderWorkflow)} == set(orders)
    assert {e.id for e in engine.list_executions(workflow="process_order")} == set(orders)
    assert [e.id for e in engine.list_executions(status="completed")] == [mixed]
    assert len(engine.list_executions(status=["pending", "completed"])) == 4
    assert engine.list_executions(status="running") == []
    assert [e.id for e in engine.list_executions(queue="other")] == [mixed]
    # one workflow and one status: by the pair
    pair = engine.list_executions(workflow=MixedWorkflow, status="completed")
    assert [e.id for e in pair] == [mixed]
    assert engine.list_executions(workflow=OrderWorkflow, status="completed") == []
    pending = engine.list_executions(workflow=OrderWorkflow, status="pending", limit=2)
    assert [e.id for e in pending] == [orders[2], orders[1]]
    assert engine.list_executions(workflow=MixedWorkflow, status="completed", queue="x") == []
    limited = engine.list_executions(limit=2)
    assert len(limited) == 2
    assert [e.id for e in limited] == [mixed, orders[2]]  # newest first


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"priority": -1}, r"priority \(higher runs first\) must be between 0 and 2147483647"),
        ({"priority": 2**31}, "must be between 0 and 2147483647"),
        ({"priority": 1.5}, "priority .* must be an int"),
        ({"priority": True}, "priority .* must be an int"),
        ({"queue": ""}, "queue must be a non-empty str"),
        ({"queue": "q" * 201}, "queue is 201 characters long; at most 200 fit"),
        ({"queue": "a\x00b"}, "queue must not contain NUL"),
        ({"idempotency_key": ""}, "idempotency_key must be a non-empty str"),
        ({"idempotency_key": "k" * 501}, "at most 500 fit"),
        ({"scheduled_at": "tomorrow"}, "scheduled_at must be a datetime"),
    ],
)
def test_bad_start_options_are_config_errors(engine, kwargs, message):
    with pytest.raises(durable.ConfigError, match=message):
        engine.start(OrderWorkflow, ORDER, **kwargs)
    assert engine.list_executions() == []


def test_unknown_workflow_and_execution(engine):
    with pytest.raises(durable.WorkflowNotFound, match="no workflow named 'nope'"):
        engine.start("nope")
    with pytest.raises(durable.WorkflowNotFound, match="did you mean 'process_order'"):
        engine.start("process_ordr")
    with pytest.raises(durable.WorkflowNotFound, match="decorate it with @workflow"):
        engine.start(dict)
    with pytest.raises(durable.ExecutionNotFound, match="no execution with id 'missing'"):
        engine.get_execution("missing")
    with pytest.raises(durable.ExecutionNotFound):
        engine.cancel("missing")


def test_list_executions_rejects_bad_filters(engine):
    with pytest.raises(durable.ConfigError, match="unknown status 'done'.*completed"):
        engine.list_executions(status="done")
    with pytest.raises(durable.ConfigError, match="limit"):
        engine.list_executions(limit=0)


def test_non_json_input_is_rejected_and_nothing_stored(engine):
    with pytest.raises(durable.SerializationError, match=r"input.*\['amount'\] is decimal.Decimal"):
        engine.start(OrderWorkflow, {"amount": Decimal("9.99")})
    assert engine.list_executions() == []


def test_store_url_errors(durable_clock):
    with pytest.raises(durable.ConfigError, match="store must be a URL like"):
        durable.Engine(store="nonsense", clock=durable_clock)
    with pytest.raises(durable.ConfigError, match="no store is registered for scheme 'nosuch'"):
        durable.Engine(store="nosuch://x", clock=durable_clock)


def test_named_memory_stores_are_shared_between_engines(durable_clock):
    a = durable.Engine("memory://shared-test", clock=durable_clock)
    b = durable.Engine("memory://shared-test", clock=durable_clock)
    wid = a.start(RecordWorkflow, {"name": "shared"})
    assert b.drain() == 1
    assert a.get_execution(wid).status == "completed"


def test_names_and_budgets_beyond_what_a_store_keeps_are_config_errors():
    with pytest.raises(durable.ConfigError, match="@workflow name is 201 characters long"):
        workflow("w" * 201)
    with pytest.raises(durable.ConfigError, match="@step name must not contain NUL"):
        step(name="a\x00b")(lambda self: None)
    with pytest.raises(durable.ConfigError, match="max_attempts must be between 1 and 2147483647"):
        durable.Retry(max_attempts=2**31)
