"""Headers plugins store with an execution as it is created (durable_execution_headers),
and the claim observer (durable_execution_claimed), on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import contextvars
import logging
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

import durable
from durable import Retry, compensation, foreach, parallel, step, workflow
from durable.context import put_context
from durable.plugins import hookimpl
from durable.waits import call_workflow, start_workflow
from durable_testing import TimeTravelEngine

T0 = datetime(2029, 5, 6, 7, 0, 0, tzinfo=UTC)

# what the code creating an execution is in: set by the test (the caller) and by the
# wrapper below around each attempt (a step)
where = contextvars.ContextVar[str | None]("where", default=None)


@workflow("hdr_child")
class Child:
    @step
    def only(self):
        put_context("ran", True)


@workflow("hdr_parent")
class Parent:
    @step
    def spawn(self):
        put_context("started", start_workflow(Child))

    @step
    async def spawn_async(self):
        put_context("started_async", start_workflow(Child))

    @step
    def call(self):
        put_context("called", call_workflow(Child))

    @parallel
    class both:
        @step
        def left(self):
            pass

        @step
        def right(self):
            pass

    @step
    def items(self):
        put_context("xs", [1, 2])

    @foreach("xs")
    def each(self, x):
        return x

    @step(compensate="undo")
    def booked(self):
        pass

    @step(retry=Retry(max_attempts=1))
    def fails(self):
        raise RuntimeError("no")

    @compensation
    def undo(self):
        pass


class Headers:
    """Gives each new execution a header naming how it was made and where; records the
    headers each attempt sees."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str, str | None]] = []
        self.seen: dict[tuple[str, str], dict[str, str]] = {}

    @hookimpl
    def durable_execution_headers(self, workflow, execution_id, created_by):
        self.asked.append((workflow, execution_id, created_by, where.get()))
        return {"made": f"{created_by} in {where.get()}"}

    @hookimpl(wrapper=True)
    def durable_step_call(self, call: durable.StepCall):
        self.seen[(call.execution_id, call.step)] = dict(call.headers)
        token = where.set(f"step {call.step}")
        try:
            return (yield)
        finally:
            where.reset(token)


@pytest.fixture
def only_builtins(monkeypatch):
    """As if no plugin were installed but durable's built-ins: durable-otel, when it is
    installed, adds headers of its own once a tracer provider is set (a docs page's
    example sets one)."""
    from durable import _builtins, plugins

    monkeypatch.setattr(
        plugins, "entry_point_plugins", lambda refresh=False: [("builtins", _builtins)]
    )


@pytest.fixture
def make(only_builtins, durable_store_url, durable_clock):
    engines: list[TimeTravelEngine] = []

    def make(*plugins: object) -> TimeTravelEngine:
        engine = TimeTravelEngine(
            store=durable_store_url, clock=durable_clock, migrate=False, plugins=plugins
        )
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


def test_every_way_an_execution_is_made_asks_for_its_headers_once(make, durable_clock):
    headers = Headers()
    engine = make(headers)
    token = where.set("the caller")
    try:
        wid = engine.start(Parent)
    finally:
        where.reset(token)
    ex = engine.run_until(wid)
    assert ex.status == "compensated"
    assert ex.headers == {"made": "start in the caller"}
    # the children: asked in the context of the step that started each (its thread, or
    # its task for an async step), once, although the calling step ran twice
    children = {r.id: r for r in engine.list_executions(parent=wid)}
    assert len(children) == 3
    made = {(w, c, how, at) for w, c, how, at in headers.asked if c in children}
    assert made == {
        ("hdr_child", ex.context["started"], "child", "step spawn"),
        ("hdr_child", ex.context["started_async"], "child", "step spawn_async"),
        (
            "hdr_child",
            next(iter(set(children) - {ex.context["started"], ex.context["started_async"]})),
            "child",
            "step call",
        ),
    }
    assert len(headers.asked) == 4
    for cid, child in children.items():
        assert child.headers == headers.seen[(cid, "only")]
        assert child.headers["made"].startswith("child in step ")
    # every attempt of the execution sees its headers: steps, units, compensations
    mine = {s for (eid, s), h in headers.seen.items() if h == ex.headers}
    assert {"spawn", "spawn_async", "call", "both.left", "both.right", "each[0]", "each[1]"} <= mine
    assert {"booked", "fails", "undo"} <= mine


def test_a_fork_asks_and_a_retry_keeps_the_headers(make):
    headers = Headers()
    engine = make(headers)
    wid = engine.start(Parent)
    engine.run_until(wid)
    asked = len(headers.asked)
    token = where.set("an operator")
    try:
        fid = engine.fork(wid, "booked")
    finally:
        where.reset(token)
    assert headers.asked[asked:] == [("hdr_parent", fid, "fork", "an operator")]
    assert engine.get_execution(fid).headers == {"made": "fork in an operator"}
    engine.retry(wid, from_step="booked")
    assert engine.get_execution(wid).headers == {"made": "start in None"}
    assert len(headers.asked) == asked + 1


def test_a_schedule_asks_for_each_execution_it_fires(make, durable_clock):
    durable_clock.set(T0)
    headers = Headers()
    engine = make(headers)
    engine.schedule(Child, "*/5 * * * *", name="every5", catch_up="all")
    durable_clock.advance(timedelta(minutes=16))
    engine.drain()
    fired = [e for e in engine.list_executions(workflow=Child) if e.schedule == "every5"]
    assert len(fired) == 3
    assert sorted(c for _, c, how, _ in headers.asked if how == "schedule") == sorted(
        e.id for e in fired
    )
    assert {e.headers["made"] for e in fired} == {"schedule in None"}


def test_answers_are_merged_and_a_bad_one_is_left_out(make, caplog):
    class First:
        @hookimpl(tryfirst=True)
        def durable_execution_headers(self, execution_id):  # (a subset of the arguments)
            return {"a": "first", "id": execution_id}

    class Second:
        @hookimpl
        def durable_execution_headers(self, workflow):
            return {"a": "second", "b": workflow}

    class Raises:
        @hookimpl
        def durable_execution_headers(self):
            raise RuntimeError("plugin bug")

    class NotText:
        @hookimpl
        def durable_execution_headers(self):
            return {"n": 1}

    class Huge:
        @hookimpl
        def durable_execution_headers(self):
            return {"h": "x" * 5000}

    engine = make(Second(), First(), Raises(), NotText(), Huge())
    with caplog.at_level(logging.ERROR, logger="durable.plugins"):
        wid = engine.start(Child)
    assert engine.get_execution(wid).headers == {"a": "first", "id": wid, "b": "hdr_child"}
    assert engine.run_until(wid).status == "completed"
    text = caplog.text
    assert "durable_execution_headers failed" in text and "plugin bug" in text
    assert "with the item 'n': int" in text
    assert "5001 characters of headers, more than the 4096 kept" in text


def test_without_a_plugin_no_headers_are_stored(make):
    engine = make()
    assert not engine.plugins.gives_headers
    wid = engine.start(Child)
    assert engine.run_until(wid).headers == {}


class Claims:
    def __init__(self) -> None:
        self.claims: list[tuple[str, str | None, timedelta]] = []

    @hookimpl
    def durable_execution_claimed(self, execution, claimed_at, due):
        self.claims.append((execution.id, execution.current_step, claimed_at - due))


def test_each_claim_tells_how_long_its_work_waited(make, durable_clock):
    durable_clock.set(T0)
    claims = Claims()
    engine = make(claims)
    late = engine.start(Child, scheduled_at=T0 + timedelta(seconds=5))
    now = engine.start(Child)
    durable_clock.advance(timedelta(seconds=7))
    engine.drain()
    assert sorted(claims.claims) == sorted(
        [(late, "only", timedelta(seconds=2)), (now, "only", timedelta(seconds=7))]
    )


@workflow("hdr_units")
class Units:
    @parallel
    class pair:
        @step
        def a(self):
            pass

        @step
        def b(self):
            pass


def test_a_units_claim_is_told_under_its_execution(make, durable_clock):
    durable_clock.set(T0)
    claims = Claims()
    engine = make(claims)
    wid = engine.start(Units)
    assert engine.run_until(wid).status == "completed"
    assert [c[:2] for c in claims.claims] == [
        (wid, "pair"),
        (wid, "pair.a"),
        (wid, "pair.b"),
        (wid, "pair"),
    ]
    assert all(lag == timedelta(0) for *_, lag in claims.claims)


def test_worker_metrics_port_without_a_plugin_exits_2(only_builtins, tmp_path):
    from durable.cli import main

    result = CliRunner().invoke(
        main,
        ["--store", f"sqlite:///{tmp_path / 'm.db'}", "worker", "--metrics-port", "9464"],
    )
    assert result.exit_code == 2, result.output
    assert "pip install durable-otel" in result.output
