"""Cancel: at once when nothing runs, at the next checkpoint when a step runs."""

from __future__ import annotations

from datetime import timedelta

import pytest

import durable
from durable import Retry, seconds, step, workflow
from durable.context import put_context, workflow_id

from workflows import ORDER, OrderWorkflow, RecordWorkflow

engines: dict[str, durable.Engine] = {}


def test_cancel_pending_is_immediate(engine, recorder, durable_clock):
    wid = engine.start(OrderWorkflow, ORDER)
    ex = engine.cancel(wid, reason="customer asked")
    assert ex.status == "cancelled"
    assert ex.cancel_reason == "customer asked"
    assert ex.completed_at == durable_clock.now()
    assert engine.drain() == 0
    assert engine.get_execution(wid).status == "cancelled"
    assert recorder.hooks(wid) == ["cancelled"]


@pytest.mark.parametrize(
    ("reason", "problem"),
    [("bad\x00input", "NUL characters"), ("bad\ud800input", "lone surrogates")],
)
def test_a_cancel_reason_no_store_can_keep_is_refused_the_same_on_every_store(
    engine, reason, problem
):
    # PostgreSQL refuses NUL in text and neither driver encodes a lone surrogate: every
    # store refuses both at the call, and the execution is left as it was.
    wid = engine.start(OrderWorkflow, ORDER)
    with pytest.raises(durable.ConfigError, match=f"a cancel reason must not contain {problem}"):
        engine.cancel(wid, reason=reason)
    assert engine.get_execution(wid).status == "pending"
    assert engine.cancel(wid, reason="line one\nline two").cancel_reason == "line one\nline two"


def test_cancel_scheduled_is_immediate(engine, durable_clock):
    wid = engine.start(
        RecordWorkflow, {"name": "x"}, scheduled_at=durable_clock.now() + timedelta(days=1)
    )
    assert engine.cancel(wid).status == "cancelled"
    durable_clock.advance(timedelta(days=2))
    assert engine.drain() == 0


@workflow("cancel_retrying")
class Retrying:
    @step(retry=Retry(max_attempts=5, backoff="constant", base=60))
    def fails(self) -> None:
        raise RuntimeError("down")


def test_cancel_while_a_retry_is_scheduled_is_immediate(engine, durable_clock):
    wid = engine.start(Retrying)
    engine.drain()
    assert engine.get_execution(wid).status == "pending"
    assert engine.cancel(wid).status == "cancelled"
    durable_clock.advance(seconds(60))
    assert engine.drain() == 0
    assert len(engine.get_execution(wid, include_steps=True).steps) == 1


@workflow("cancel_fails_at_once")
class FailsAtOnce:
    @step
    def fails(self) -> None:
        raise RuntimeError("broken")


@pytest.mark.parametrize("final", ["completed", "failed", "cancelled"])
def test_cancel_finished_raises_invalid_state(engine, final):
    wid = engine.start(FailsAtOnce if final == "failed" else OrderWorkflow, ORDER)
    if final == "cancelled":
        engine.cancel(wid)
    else:
        engine.drain()
    assert engine.get_execution(wid).status == final
    before = engine.get_execution(wid, include_steps=True)
    with pytest.raises(durable.InvalidState, match=f"already finished with status {before.status}"):
        engine.cancel(wid, reason="too late")
    after = engine.get_execution(wid, include_steps=True)
    assert after == before  # nothing already stored is lost or changed


@workflow("cancel_mid_step")
class CancelledMidStep:
    @step
    def first(self) -> None:
        put_context("first", True)

    @step
    def second(self) -> None:
        # Another process cancels while this step runs.
        engines["current"].cancel(workflow_id(), reason="operator")
        put_context("second", True)

    @step
    def third(self) -> None:
        put_context("third", True)


def test_cancel_running_stops_at_the_next_checkpoint_and_discards_the_step(engine, recorder):
    engines["current"] = engine
    wid = engine.start(CancelledMidStep)
    engine.drain()
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.status == "cancelled"
    assert ex.cancel_reason == "operator"
    assert ex.context == {"first": True}  # second's writes were discarded
    assert [(s.name, s.status) for s in ex.steps] == [
        ("first", "completed"),
        ("second", "cancelled"),
    ]
    assert recorder.hooks(wid)[-1] == "cancelled"
    with pytest.raises(durable.InvalidState):
        engine.cancel(wid)
