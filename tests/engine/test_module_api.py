"""durable.configure/start/get_execution/list_executions/cancel on a default engine."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import durable

from workflows import ORDER, OrderWorkflow


def test_configure_then_module_level_calls(durable_clock):
    with durable.configure(store="memory://", clock=durable_clock) as engine:
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
        assert (
            len(durable.list_executions(workflow=OrderWorkflow, status="completed", limit=10)) == 2
        )
        with pytest.raises(durable.InvalidState):
            durable.cancel(wid, reason="too late")
        pending = durable.start(OrderWorkflow, ORDER)
        assert durable.cancel(pending, "customer asked").status == "cancelled"


def test_default_engine_store_comes_from_durable_store():
    # On first use, in a process that has not configured one (this one may have).
    env = {**os.environ, "DURABLE_STORE": "memory://from-env"}
    out = subprocess.run(
        [sys.executable, "-c", "import durable; print(durable.default_engine().store_url)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip() == "memory://from-env"


def test_default_store_is_the_embedded_sqlite_file(monkeypatch):
    monkeypatch.delenv("DURABLE_STORE", raising=False)
    assert durable.engine.DEFAULT_STORE == "sqlite:///durable.db"


def test_configure_replaces_and_closes_the_previous_engine(durable_clock):
    first = durable.configure(store="memory://", clock=durable_clock)
    with durable.configure(store="memory://", clock=durable_clock) as second:
        assert durable.default_engine() is second is not first
