"""Step and workflow timeouts, enforced and driven by the clock."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import timedelta

import pytest

import durable
from durable import Retry, hours, minutes, seconds, step, workflow
from durable.context import attempt, input, put_context

from helpers import eventually

release = threading.Event()


@pytest.fixture(autouse=True)
def _release_abandoned_steps():
    release.clear()
    yield
    release.set()


@workflow("slow_step_real_time")
class SlowReal:
    @step(timeout=100)
    def hangs(self) -> None:
        put_context("late", True)
        release.wait(10)


def test_step_timeout_with_a_short_real_timeout(durable_store_url):
    with durable.Engine(durable_store_url) as eng:  # system clock: a real 100 ms timeout
        wid = eng.start(SlowReal)
        eng.drain()
        ex = eng.get_execution(wid, include_steps=True)
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.StepTimeout"
    assert "ran past its timeout of 100 ms" in ex.error["message"]
    assert "late" not in ex.context  # the late result is discarded
    assert ex.steps[0].status == "failed"


# The clock is a module global so steps can move it, as real work would take time.
clock_box: dict[str, object] = {}


@workflow("slow_step_virtual")
class SlowVirtual:
    @step(timeout=minutes(5), retry=Retry(max_attempts=2, backoff="constant", base=1))
    def crunch(self) -> None:
        took = input()["takes_ms"][attempt() - 1]
        put_context("result", attempt())
        clock_box["clock"].advance(took)  # type: ignore[attr-defined]


def test_timed_out_attempt_is_a_failed_attempt_and_its_result_is_discarded(engine, durable_clock):
    clock_box["clock"] = durable_clock
    start = durable_clock.now()
    wid = engine.start(SlowVirtual, {"takes_ms": [minutes(6), minutes(1)]})
    engine.drain()
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.steps[0].error["type"] == "durable.errors.StepTimeout"
    # The attempt ended at its timeout, though the step moved the clock past it; the retry
    # counts from there (+5 min +1 s), so it was already due when the step returned.
    assert ex.steps[0].duration_ms == minutes(5)
    assert ex.steps[0].retry_at == start + timedelta(minutes=5, seconds=1)
    assert ex.steps[1].started_at == start + timedelta(minutes=6)
    assert ex.status == "completed"
    assert ex.context == {"result": 2}  # attempt 1's late result was discarded


def test_step_at_exactly_its_timeout_has_timed_out(engine, durable_clock):
    clock_box["clock"] = durable_clock
    wid = engine.start(SlowVirtual, {"takes_ms": [minutes(5), minutes(5) - 1]})
    engine.drain()
    durable_clock.advance(seconds(1))
    engine.drain()
    ex = engine.get_execution(wid, include_steps=True)
    assert [s.status for s in ex.steps] == ["failed", "completed"]


@workflow("blocked_step_virtual")
class BlockedVirtual:
    @step(timeout=minutes(5))
    def blocked(self) -> None:
        put_context("late", True)
        clock_box["clock"].advance(minutes(5))  # type: ignore[attr-defined]
        release.wait(10)  # still blocked when the clock passes the timeout


def test_a_blocked_step_is_abandoned_when_the_clock_passes_its_timeout(engine, durable_clock):
    clock_box["clock"] = durable_clock
    wid = engine.start(BlockedVirtual)
    engine.drain()  # returns although the step's thread still blocks
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.StepTimeout"
    assert ex.context == {}


@workflow("blocked_async_step")
class BlockedAsync:
    @step(timeout=minutes(1))
    async def waits(self) -> None:
        put_context("late", True)
        clock_box["clock"].advance(minutes(2))  # type: ignore[attr-defined]
        await asyncio.sleep(10)


def test_async_step_timeout_cancels_the_task(engine, durable_clock):
    clock_box["clock"] = durable_clock
    wid = engine.start(BlockedAsync)
    engine.drain()
    ex = engine.get_execution(wid)
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.StepTimeout"


@workflow("wf_timeout", timeout=hours(2))
class TwoHours:
    @step(retry=Retry(max_attempts=10, backoff="constant", base=3600))
    def keeps_failing(self) -> None:
        raise RuntimeError("upstream down")

    @step
    def never(self) -> None:
        put_context("reached", True)


def test_workflow_past_its_timeout_fails_with_a_timeout_error(engine, durable_clock, recorder):
    start = durable_clock.now()
    wid = engine.start(TwoHours)
    engine.drain()
    ex = engine.get_execution(wid)
    assert ex.deadline == start + timedelta(hours=2)
    durable_clock.advance(hours(1))
    engine.drain()  # attempt 2 fails; attempt 3 would be at 2h, the deadline
    ex = engine.get_execution(wid)
    assert ex.status == "pending"
    assert ex.run_at == ex.deadline

    durable_clock.advance(hours(1) - 1)
    engine.drain()
    assert engine.get_execution(wid).status == "pending"
    durable_clock.advance(1)
    engine.drain()
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.WorkflowTimeout"
    assert "ran past its timeout of 7200000 ms" in ex.error["message"]
    assert ex.completed_at == start + timedelta(hours=2)
    assert len(ex.steps) == 2
    assert "reached" not in ex.context
    assert recorder.hooks(wid)[-1] == "failed"


@workflow("wf_timeout_in_step", timeout=minutes(10))
class TimeoutInsideStep:
    @step
    def long(self) -> None:
        put_context("late", True)
        clock_box["clock"].advance(minutes(11))  # type: ignore[attr-defined]


def test_workflow_timeout_reached_inside_a_step(engine, durable_clock):
    clock_box["clock"] = durable_clock
    wid = engine.start(TimeoutInsideStep)
    engine.drain()
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.WorkflowTimeout"
    assert ex.steps[0].error["type"] == "durable.errors.WorkflowTimeout"
    assert ex.context == {}


def test_workflow_timeout_counts_from_the_first_start_not_from_scheduling(engine, durable_clock):
    wid = engine.start(TwoHours, scheduled_at=durable_clock.now() + timedelta(hours=5))
    durable_clock.advance(hours(5))
    engine.drain()
    ex = engine.get_execution(wid)
    assert ex.deadline == durable_clock.now() + timedelta(hours=2)


def test_bad_timeouts_are_config_errors():
    with pytest.raises(durable.ConfigError, match="step timeout must be > 0"):
        step(timeout=0)
    with pytest.raises(durable.ConfigError, match="workflow timeout"):
        workflow("bad_timeout", timeout="2h")


@workflow("timeouts_abandoned_logs")
class AbandonedLogs:
    @step(timeout=minutes(1))
    def s(self) -> None:
        logger = logging.getLogger("timeouts")
        logger.warning("before timeout")
        clock_box["clock"].advance(minutes(2))  # type: ignore[attr-defined]
        release.wait(10)
        logger.warning("abandoned thread still logging")
        clock_box["logged_late"] = True


def test_an_abandoned_attempt_cannot_change_its_stored_record(engine, durable_clock):
    clock_box["clock"] = durable_clock
    clock_box.pop("logged_late", None)
    wid = engine.start(AbandonedLogs)
    engine.drain()
    release.set()
    assert eventually(lambda: clock_box.get("logged_late") is True)
    logs = engine.get_execution(wid, include_steps=True).steps[0].logs
    assert [entry["message"] for entry in logs] == ["before timeout"]
