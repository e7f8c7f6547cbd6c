"""Regressions found in review: each test pins a bug that once existed."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from datetime import timedelta

import pytest

import durable
from durable import Retry, minutes, seconds, step, workflow
from durable.context import append_context, attempt, increment_context, input, put_context
from durable.dsl import get_workflow
from durable.retry import MAX_DELAY_MS
from durable.stores.base import ExecutionRow
from durable.stores.memory import MemoryStore

from helpers import eventually

gate = threading.Event()
box: dict[str, object] = {}


@pytest.fixture(autouse=True)
def _reset():
    gate.clear()
    box.clear()
    yield
    gate.set()


@workflow("reg_long_step")
class LongStep:
    @step(timeout=minutes(5))
    def work(self) -> None:
        append_context("runs", attempt())
        box.setdefault("runs", []).append(attempt())  # type: ignore[union-attr]
        gate.wait(10)


def test_a_clock_jump_past_the_lease_does_not_make_the_engine_steal_its_own_claim(
    engine, durable_clock, recorder
):
    wid = engine.start(LongStep)
    with engine.worker(concurrency=2, poll_interval=seconds(1)):
        assert eventually(lambda: box.get("runs") == [1])
        durable_clock.advance(minutes(1))  # past the 30 s lease, within the step timeout
        # let the worker loop and the heartbeat both see the jump
        durable_clock.advance(1)
        assert eventually(lambda: engine.store.get(wid).lease_expires_at > durable_clock.now())
        gate.set()
        assert recorder.wait_done(1)
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.status == "completed"
    assert box["runs"] == [1]
    assert [(s.attempt, s.status) for s in ex.steps] == [(1, "completed")]


@workflow("reg_input_mutation")
class MutatesInput:
    @step(retry=Retry(max_attempts=2, backoff="constant", base=0))
    def a(self) -> None:
        input()["items"].append(f"attempt {attempt()}")
        if attempt() == 1:
            raise RuntimeError("fail after mutating the input")

    @step
    def b(self) -> None:
        put_context("seen", input()["items"])


def test_input_is_read_only_per_attempt(engine):
    wid = engine.start(MutatesInput, {"items": []})
    engine.drain()
    ex = engine.get_execution(wid)
    assert ex.status == "completed"
    assert ex.input == {"items": []}
    assert ex.context == {"seen": []}


def test_huge_backoffs_are_capped_instead_of_overflowing():
    policy = Retry(max_attempts=100, backoff="exponential", base=2.5)
    assert policy.delay_ms(2000) == MAX_DELAY_MS
    assert Retry(max_attempts=100, backoff="exponential", base=2).delay_ms(99) == MAX_DELAY_MS


@workflow("reg_overflow")
class Overflow:
    @step(retry=Retry(max_attempts=60, backoff="exponential"))
    def s(self) -> None:
        raise RuntimeError("always")


def test_an_execution_with_a_huge_backoff_is_rescheduled_not_stuck(engine, durable_clock):
    wid = engine.start(Overflow)
    engine.drain()
    for _ in range(39):
        durable_clock.set(engine.next_due())
        engine.drain()
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.status == "pending"
    assert ex.attempt == 40
    last = ex.steps[-1]
    assert last.retry_at - last.completed_at == timedelta(milliseconds=MAX_DELAY_MS)


def _versioned(*names: str) -> type:
    """The same workflow class, as two deploys define it (same module and qualname)."""

    def body(self: object) -> None:
        append_context("ran", step_name[0])

    step_name = ["?"]
    ns = {}
    for name in names:

        def run(self: object, name: str = name) -> None:
            append_context("ran", name)
            if name == "b" and attempt() == 1:
                raise RuntimeError("b fails once")

        run.__name__ = name
        ns[name] = step(retry=Retry(max_attempts=2, backoff="constant", base=1))(run)
    return workflow("reg_redeploy")(type("Redeployed", (), ns))


def test_the_step_pointer_survives_a_redeploy_that_adds_a_step(engine, durable_clock):
    _versioned("a", "b", "c")
    wid = engine.start("reg_redeploy")
    engine.drain()  # a completes, b fails once and waits for its retry
    assert engine.get_execution(wid).current_step == "b"
    v2 = _versioned("audit", "a", "b", "c")
    assert [s.name for s in get_workflow(v2).steps] == ["audit", "a", "b", "c"]
    durable_clock.advance(seconds(1))
    engine.drain()
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.status == "completed"
    assert ex.context == {"ran": ["a", "b", "c"]}  # a did not run again, audit never ran


def test_a_redeploy_that_removes_the_current_step_fails_clearly(engine, durable_clock):
    _versioned("a", "b", "c")
    wid = engine.start("reg_redeploy")
    engine.drain()
    _versioned("a", "c")
    durable_clock.advance(seconds(1))
    engine.drain()
    ex = engine.get_execution(wid)
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.StepNotFound"
    assert "at step 'b', which workflow 'reg_redeploy' no longer has" in ex.error["message"]
    assert ex.context == {"ran": ["a"]}  # nothing already stored was lost


@workflow("reg_bad_init")
class NeedsArgs:
    def __init__(self, required: int) -> None:
        self.required = required

    @step
    def s(self) -> None: ...


def test_a_workflow_class_that_cannot_be_built_fails_the_attempt(engine):
    wid = engine.start(NeedsArgs)
    engine.drain()
    ex = engine.get_execution(wid)
    assert ex.status == "failed"
    assert ex.error["type"] == "TypeError"


class FlakyNextDue(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    def next_due(self, *, queues, workflows):
        if self.failures:
            self.failures -= 1
            raise durable.StoreError("database restarting")
        return super().next_due(queues=queues, workflows=workflows)


def test_a_store_error_in_the_idle_loop_does_not_kill_the_worker(durable_clock, recorder):
    store = FlakyNextDue()
    eng = durable.Engine(store, clock=durable_clock, plugins=[recorder])
    with eng.worker(concurrency=1):
        assert eventually(lambda: store.failures == 0)
        durable_clock.advance(seconds(1))  # past the worker's backoff
        wid = eng.start(MutatesInput, {"items": []})
        assert recorder.wait_done(1)
    assert eng.get_execution(wid).status == "completed"


def test_next_due_ignores_workflows_this_worker_cannot_run(engine, durable_clock):
    now = durable_clock.now()
    engine.store.create(
        ExecutionRow(
            id="ghost",
            workflow="not_deployed_here",
            status=durable.Status.PENDING,
            queue="default",
            priority=0,
            input=None,
            context={},
            created_at=now,
            scheduled_at=now,
            run_at=now,
        )
    )
    assert engine.store.next_due(queues=None, workflows=None) == now
    assert engine.store.next_due(queues=None, workflows=["process_order"]) is None
    assert engine.drain() == 0  # and nothing claims it


started = threading.Event()


@workflow("reg_async_forever")
class AsyncForever:
    @step
    async def s(self) -> None:
        started.set()
        await asyncio.Event().wait()


def test_close_returns_with_an_async_step_in_flight(durable_store_url):
    started.clear()
    eng = durable.Engine(durable_store_url)
    thread = threading.Thread(target=eng.run_worker, daemon=True)
    thread.start()
    wid = eng.start(AsyncForever)
    assert started.wait(10)
    eng.close(timeout=0.1)  # the step never ends by itself: its task is cancelled
    thread.join(10)
    assert not thread.is_alive()
    ex = eng.get_execution(wid)  # (a closed engine can still read)
    assert ex.status == "pending"  # handed back, resumable at once


@workflow("reg_abandoned_logs")
class AbandonedLogs:
    @step(timeout=minutes(1))
    def s(self) -> None:
        logger = logging.getLogger("reg")
        logger.warning("before timeout")
        box["clock"].advance(minutes(2))  # type: ignore[attr-defined]
        gate.wait(10)
        logger.warning("abandoned thread still logging")
        box["logged_late"] = True


def test_an_abandoned_attempt_cannot_change_its_stored_record(engine, durable_clock):
    box["clock"] = durable_clock
    wid = engine.start(AbandonedLogs)
    engine.drain()
    gate.set()
    assert eventually(lambda: box.get("logged_late") is True)
    logs = engine.get_execution(wid, include_steps=True).steps[0].logs
    assert [entry["message"] for entry in logs] == ["before timeout"]


def _wrapped(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


def _hidden(fn):
    def wrapper(*args, **kwargs):  # no functools.wraps: the coroutine is hidden
        return fn(*args, **kwargs)

    return wrapper


@workflow("reg_wrapped_async")
class WrappedAsync:
    @step
    @_wrapped
    async def s(self) -> None:
        await asyncio.sleep(0)
        put_context("ran", True)


@workflow("reg_hidden_async")
class HiddenAsync:
    @step
    @_hidden
    async def s(self) -> None:
        put_context("ran", True)


def test_async_steps_behind_decorators(engine):
    ok = engine.start(WrappedAsync)
    hidden = engine.start(HiddenAsync)
    engine.drain()
    assert engine.get_execution(ok).context == {"ran": True}
    ex = engine.get_execution(hidden)
    assert ex.status == "failed"
    assert "returned an awaitable but is not an async def step" in ex.error["message"]


@workflow("reg_bad_keys")
class BadKeys:
    @step
    def s(self) -> None:
        for bad in ({1: "a", "1": "b"}, {"ok": {None: 1}}):
            try:
                put_context("m", bad)
            except durable.SerializationError as exc:
                append_context("errors", str(exc))
        try:
            increment_context("n", float("inf"))
        except durable.SerializationError as exc:
            append_context("errors", str(exc))


def test_non_str_keys_and_infinities_are_refused_at_the_call(engine):
    wid = engine.start(BadKeys)
    engine.drain()
    ctx = engine.get_execution(wid).context
    assert "m" not in ctx and "n" not in ctx
    assert "key 1 at top level is int, not str" in ctx["errors"][0]
    assert "key None" in ctx["errors"][1]
    assert "context key 'n'" in ctx["errors"][2]


def test_a_claim_with_an_earlier_now_never_takes_a_row_not_yet_due():
    store = MemoryStore()
    t = durable.Engine(store).clock.now()
    for rid, queue, due in (("a", "qa", t), ("b", "qb", t + timedelta(minutes=30))):
        store.create(
            ExecutionRow(
                id=rid,
                workflow="w",
                status=durable.Status.PENDING,
                queue=queue,
                priority=0,
                input=None,
                context={},
                created_at=t,
                scheduled_at=due,
                run_at=due,
            )
        )
    common = {"workflows": ["w"], "worker_id": "x", "lease_ms": 1000, "limit": 5}
    assert [r.id for r in store.claim(queues=["qa"], now=t + timedelta(hours=1), **common)] == ["a"]
    assert store.claim(queues=["qb"], now=t, **common) == []
    later = t + timedelta(minutes=30)
    assert [r.id for r in store.claim(queues=["qb"], now=later, **common)] == ["b"]
