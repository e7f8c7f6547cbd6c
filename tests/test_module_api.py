"""durable.configure/start/get_execution/list_executions/cancel on a default engine."""

from __future__ import annotations

import pytest

import durable
import durable._default

from workflows import ORDER, OrderWorkflow


@pytest.fixture(autouse=True)
def _fresh_default():
    durable._default._engine = None
    yield
    if durable._default._engine is not None:
        durable._default._engine.close()
    durable._default._engine = None


def test_configure_then_module_level_calls(durable_clock):
    engine = durable.configure(store="memory://", clock=durable_clock)
    assert durable.default_engine() is engine
    wid = durable.start(OrderWorkflow, ORDER)
    other = durable.start(
        "process_order", ORDER, queue="high_priority", priority=10, idempotency_key="o-42"
    )
    assert durable.start(OrderWorkflow, ORDER, idempotency_key="o-42") == other
    assert durable.drain() == 2
    ex = durable.get_execution(wid, include_steps=True)
    assert ex.status == "completed"
    assert ex.context["charge_id"] == "ch_1"
    assert len(ex.steps) == 4
    assert len(durable.list_executions(workflow=OrderWorkflow, status="completed", limit=10)) == 2
    with pytest.raises(durable.InvalidState):
        durable.cancel(wid, reason="too late")
    pending = durable.start(OrderWorkflow, ORDER)
    assert durable.cancel(pending, "customer asked").status == "cancelled"


def test_default_engine_store_comes_from_durable_store(monkeypatch):
    monkeypatch.setenv("DURABLE_STORE", "memory://from-env")
    assert durable.default_engine().store_url == "memory://from-env"


def test_default_store_is_the_embedded_sqlite_file(monkeypatch):
    monkeypatch.delenv("DURABLE_STORE", raising=False)
    assert durable.engine.DEFAULT_STORE == "sqlite:///durable.db"


def test_configure_replaces_and_closes_the_previous_engine(durable_clock):
    first = durable.configure(store="memory://", clock=durable_clock)
    second = durable.configure(store="memory://", clock=durable_clock)
    assert durable.default_engine() is second is not first
