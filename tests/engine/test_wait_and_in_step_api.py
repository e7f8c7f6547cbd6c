"""engine.wait() woken by the end itself (NOTIFY on PostgreSQL), and the module-level API
inside a step acting on the engine running it."""

from __future__ import annotations

import threading

import pytest

import durable
from durable import seconds, step, workflow
from durable.context import engine as running_engine
from durable.context import input, put_context, workflow_id
from durable.waits import wait_for_event

gate = threading.Event()


@pytest.fixture(autouse=True)
def _open_gate():
    gate.clear()
    yield
    gate.set()


@workflow("wait_target")
class Target:
    @step
    def work(self):
        put_context("done", input())


@workflow("wait_blocked")
class Blocked:
    @step
    def hold(self):
        put_context("got", wait_for_event("go"))


def test_wait_returns_once_a_worker_has_finished_it(engine):
    wid = engine.start(Target, 7)
    with engine.worker(concurrency=1):
        ex = engine.wait(wid, timeout=seconds(30))
    assert (ex.status, ex.context) == ("completed", {"done": 7})


def test_wait_runs_out_of_time_with_a_clear_error_and_changes_nothing(engine):
    wid = engine.start(Blocked)
    engine.drain()
    with pytest.raises(durable.ExecutionNotFinished, match="still waiting.*'hold'"):
        engine.wait(wid, timeout=50)
    assert isinstance(durable.ExecutionNotFinished("x"), TimeoutError)
    engine.send_event(wid, "go", 1)
    engine.drain()
    assert engine.wait(wid).context == {"got": 1}  # finished: returns at once


def test_wait_for_an_unknown_execution(engine):
    with pytest.raises(durable.ExecutionNotFound):
        engine.wait("no-such-id")


@pytest.mark.parametrize("durable_store_url", ["memory", "postgres"], indirect=True)
def test_wait_is_woken_by_the_end_not_by_looking_again(durable_store_url):
    # The engine that waits runs nothing; another engine on the same store (another
    # process's, as far as the store can tell) runs the execution. With the safety-net
    # re-check an hour away, only being told of the end can return in time.
    url = durable_store_url
    with durable.Engine(url, migrate=False) as waiter, durable.Engine(url, migrate=False) as runner:
        waiter.wait_recheck = 3600.0
        assert waiter.store.tells_ends
        wid = waiter.start(Target, "far")
        done: list[durable.Execution] = []
        t = threading.Thread(target=lambda: done.append(waiter.wait(wid, timeout=seconds(60))))
        t.start()
        with runner.worker(concurrency=1):
            t.join(60)
    assert done and done[0].context == {"done": "far"}


# -- the module-level API inside a step --------------------------------------------------


@workflow("in_step_api")
class InStep:
    @step
    def spawn(self):
        other = durable.start(Target, "from a step")
        put_context("other", other)
        put_context("same_engine", running_engine() is durable.default_engine())
        put_context("seen", durable.get_execution(workflow_id()).id == workflow_id())
        listed = [e.id for e in durable.list_executions(workflow="wait_target")]
        put_context("listed", other in listed)


@workflow("in_step_api_async")
class InStepAsync:
    @step
    async def spawn(self):
        put_context("other", durable.start(Target, "from an async step"))
        blocked = durable.start(Blocked)
        put_context("blocked", blocked)


def test_the_module_api_in_a_step_acts_on_the_engine_running_it(engine, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DURABLE_STORE", raising=False)
    wid = engine.start(InStep)
    engine.drain()
    ex = engine.get_execution(wid)
    assert ex.status == "completed", ex.error
    assert ex.context["same_engine"] and ex.context["seen"] and ex.context["listed"]
    assert engine.get_execution(ex.context["other"]).context == {"done": "from a step"}
    assert not (tmp_path / "durable.db").exists()  # no default engine was made


def test_in_an_async_step_too(engine, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    wid = engine.start(InStepAsync)
    engine.drain()
    ex = engine.get_execution(wid)
    assert ex.status == "completed", ex.error
    assert engine.get_execution(ex.context["other"]).status == "completed"
    assert not (tmp_path / "durable.db").exists()


def test_context_engine_outside_a_step_is_a_context_error():
    with pytest.raises(durable.ContextError, match="outside a running step"):
        running_engine()
