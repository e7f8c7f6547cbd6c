"""Spans: one trace from the caller's span through the execution's span to every attempt,
on memory, SQLite and PostgreSQL, driven by the time-travel clock."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode

import durable_otel
from durable import Retry, compensation, foreach, parallel, seconds, step, workflow
from durable.context import attempt, put_context
from durable.waits import call_workflow, start_workflow, wait_for_event

TRACER = trace.get_tracer("durable-otel-tests")


@workflow("otel_order")
class Order:
    @step
    def validate(self):
        with TRACER.start_as_current_span("validate.rules"):
            put_context("valid", True)

    @step(retry=Retry(max_attempts=3, backoff="constant", base=1))
    def charge(self):
        if attempt() == 1:
            raise RuntimeError("card declined")
        put_context("charged", True)

    @step
    def approve(self):
        put_context("approved_by", wait_for_event("approved"))

    @step(timeout=seconds(30))  # (a step with a timeout runs in a thread of its own)
    def pack(self):
        with TRACER.start_as_current_span("pack.box"):
            put_context("packed", True)

    @step
    async def ship(self):
        with TRACER.start_as_current_span("carrier.label"):
            await asyncio.sleep(0)
            put_context("shipped", True)


@workflow("otel_broken")
class Broken:
    @step
    def boom(self):
        raise ValueError("bad input")


@workflow("otel_child")
class Child:
    @step
    def only(self):
        with TRACER.start_as_current_span("child.work"):
            put_context("ran", True)


@workflow("otel_parent")
class Parent:
    @step
    def spawn(self):
        put_context("started", start_workflow(Child))

    @step
    async def call(self):
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
        put_context("xs", [1, 2, 3])

    @foreach("xs")
    def each(self, x):
        return x * 2


@workflow("otel_tenant")
class Tenant:
    @step
    def read(self):
        put_context("tenant", baggage.get_baggage("tenant"))


@workflow("otel_saga")
class Saga:
    @step(compensate="refund")
    def charge(self):
        pass

    @step
    def fail(self):
        raise RuntimeError("out of stock")

    @compensation
    def refund(self):
        pass


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def one(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    (found,) = named(spans, name)
    return found


def attempts(spans: Sequence[ReadableSpan], execution_id: str) -> list[ReadableSpan]:
    """The attempt spans of an execution, in the order they ended."""
    return [
        s
        for s in spans
        if s.name.startswith("durable.step ")
        and (s.attributes or {}).get("durable.execution_id") == execution_id
    ]


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def test_a_workflow_with_a_retry_a_wait_and_its_own_spans_is_one_trace(engine, spans):
    with TRACER.start_as_current_span("caller") as caller:
        wid = engine.start(Order)
    engine.run_until(wid, "waiting")
    engine.send_event(wid, "approved", "ann")
    assert engine.run_until(wid).status == "completed"
    done = spans.get_finished_spans()
    trace_id = caller.get_span_context().trace_id
    assert {s.context.trace_id for s in done} == {trace_id}  # one trace

    execution = one(done, "durable.workflow otel_order")
    assert parent_id(execution) == caller.get_span_context().span_id
    assert execution.kind == SpanKind.PRODUCER
    assert dict(execution.attributes or {}) == {
        "durable.workflow": "otel_order",
        "durable.execution_id": wid,
        "durable.created_by": "start",
    }
    runs = attempts(done, wid)
    assert [(s.attributes["durable.step"], s.attributes["durable.attempt"]) for s in runs] == [
        ("validate", 1),
        ("charge", 1),
        ("charge", 2),
        ("approve", 1),  # suspended at the wait ...
        ("approve", 1),  # ... and resumed, under the same attempt number
        ("pack", 1),
        ("ship", 1),
    ]
    for s in runs:
        assert parent_id(s) == span_id(execution)
        assert s.kind == SpanKind.CONSUMER
        assert s.attributes["durable.workflow"] == "otel_order"
        assert s.attributes["durable.visit"] == 1
    # the failed attempt: an error, with the exception recorded
    failed = runs[1]
    assert failed.status.status_code == StatusCode.ERROR
    (event,) = failed.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "RuntimeError"
    assert event.attributes["exception.message"] == "card declined"
    # the wait: not an error, only marked suspended
    suspended = runs[3]
    assert suspended.status.status_code == StatusCode.UNSET
    assert suspended.attributes["durable.suspended"] is True and not suspended.events
    for s in (runs[0], runs[2], runs[4], runs[5], runs[6]):
        assert s.status.status_code == StatusCode.UNSET and not s.events
    # spans the steps opened (sync, sync in a thread of its own, async) are their children
    assert parent_id(one(done, "validate.rules")) == span_id(runs[0])
    assert parent_id(one(done, "pack.box")) == span_id(runs[5])
    assert parent_id(one(done, "carrier.label")) == span_id(runs[6])
    # completed: its last step's span shows its end, and no end span is added
    assert named(done, "durable.workflow.end otel_order") == []


def test_end_spans_all_gives_completed_executions_their_end_span(engine, spans):
    durable_otel.configure(end_spans="all")
    try:
        with TRACER.start_as_current_span("caller"):
            wid = engine.start(Tenant)
        assert engine.run_until(wid).status == "completed"
    finally:
        durable_otel.configure()
    done = spans.get_finished_spans()
    execution = one(done, "durable.workflow otel_tenant")
    end = one(done, "durable.workflow.end otel_tenant")
    assert parent_id(end) == span_id(execution)
    assert end.attributes["durable.status"] == "completed"
    assert end.attributes["durable.execution_id"] == wid
    assert end.status.status_code == StatusCode.UNSET and not end.events


def test_end_spans_refuses_a_choice_it_does_not_know():
    with pytest.raises(ValueError, match="end_spans must be one of 'unsuccessful', 'all'"):
        durable_otel.configure(end_spans="completed")


def test_a_failed_execution_ends_with_its_error_recorded(engine, spans):
    wid = engine.start(Broken)  # (no span is current: the execution's starts a trace)
    assert engine.run_until(wid).status == "failed"
    done = spans.get_finished_spans()
    execution = one(done, "durable.workflow otel_broken")
    assert execution.parent is None
    (run,) = attempts(done, wid)
    assert run.status.status_code == StatusCode.ERROR
    assert run.status.description == "ValueError: bad input"
    end = one(done, "durable.workflow.end otel_broken")
    assert parent_id(end) == span_id(execution)
    assert end.context.trace_id == execution.context.trace_id
    assert (end.attributes["durable.status"], end.attributes["durable.step"]) == ("failed", "boom")
    assert end.status.status_code == StatusCode.ERROR
    (event,) = end.events
    assert event.name == "exception"
    assert (event.attributes["exception.type"], event.attributes["exception.message"]) == (
        "ValueError",
        "bad input",
    )
    assert "Traceback" in event.attributes["exception.stacktrace"]


def test_children_units_and_items_join_the_trace_under_their_parents(engine, spans):
    with TRACER.start_as_current_span("caller"):
        wid = engine.start(Parent)
    ex = engine.run_until(wid)
    assert ex.status == "completed"
    done = spans.get_finished_spans()
    assert len({s.context.trace_id for s in done}) == 1
    execution = next(
        s
        for s in named(done, "durable.workflow otel_parent")
        if s.attributes["durable.execution_id"] == wid
    )
    runs = {s.attributes["durable.step"]: s for s in attempts(done, wid)}
    # units and items are attempts of the execution, under its span
    assert {"both.left", "both.right", "each[0]", "each[1]", "each[2]"} <= set(runs)
    assert all(parent_id(s) == span_id(execution) for s in runs.values())
    # each child's execution span is a child of the attempt that started it (async too)
    children = {
        s.attributes["durable.execution_id"]: s for s in named(done, "durable.workflow otel_child")
    }
    assert set(children) == {c.id for c in engine.list_executions(parent=wid)}
    assert len(children) == 2
    started = children[ex.context["started"]]
    assert parent_id(started) == span_id(runs["spawn"])
    assert started.attributes["durable.created_by"] == "child"
    called = next(s for cid, s in children.items() if cid != ex.context["started"])
    call_runs = [s for s in attempts(done, wid) if s.attributes["durable.step"] == "call"]
    assert parent_id(called) == span_id(call_runs[0])  # (the run that started it)
    for cid, child in children.items():
        (run,) = attempts(done, cid)
        assert parent_id(run) == span_id(child)
        work = next(s for s in named(done, "child.work") if parent_id(s) == span_id(run))
        assert work.context.trace_id == execution.context.trace_id


def test_a_compensated_and_a_cancelled_execution_say_so_at_their_end(engine, spans):
    saga = engine.start(Saga)
    assert engine.run_until(saga).status == "compensated"
    pending = engine.start(Broken)
    engine.cancel(pending, reason="customer asked")
    done = spans.get_finished_spans()
    end = one(done, "durable.workflow.end otel_saga")
    assert end.attributes["durable.status"] == "compensated"
    assert end.status.status_code == StatusCode.UNSET  # the saga did what it should
    assert end.events[0].attributes["exception.message"] == "out of stock"  # (why it ran)
    assert {s.attributes["durable.step"] for s in attempts(done, saga)} == {
        "charge",
        "fail",
        "refund",
    }
    cancelled = one(done, "durable.workflow.end otel_broken")
    assert (
        cancelled.attributes["durable.status"],
        cancelled.attributes["durable.cancel_reason"],
    ) == (
        "cancelled",
        "customer asked",
    )


def test_baggage_at_start_reaches_the_steps(engine, spans):
    token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        with TRACER.start_as_current_span("caller"):
            wid = engine.start(Tenant)
    finally:
        otel_context.detach(token)
    assert engine.get_execution(wid).headers["baggage"] == "tenant=acme"
    assert engine.run_until(wid).context == {"tenant": "acme"}


def test_without_a_tracer_nothing_is_stored_and_nothing_recorded(engine, spans):
    durable_otel.configure(tracer_provider=NoOpTracerProvider())
    try:
        wid = engine.start(Order)
        assert engine.get_execution(wid).headers == {}
        engine.run_until(wid, "waiting")
    finally:
        durable_otel.configure()
    assert [s for s in spans.get_finished_spans() if s.name.startswith("durable.")] == []


def test_turned_off_it_records_nothing(engine, spans):
    durable_otel.configure(enabled=False)
    try:
        with TRACER.start_as_current_span("caller"):
            wid = engine.start(Broken)
        assert engine.get_execution(wid).headers == {}
        assert engine.run_until(wid).status == "failed"
    finally:
        durable_otel.configure()
    assert [s.name for s in spans.get_finished_spans()] == ["caller"]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_executions_attempts_after_its_headers_were_stored_elsewhere_still_join(
    store_url, durable_clock, spans, kind
):
    """Two engines on one store (as two processes would be): the one that starts knows
    nothing of the one that runs, but the stored trace context."""
    from durable_testing import TimeTravelEngine

    step_name = "validate" if kind == "sync" else "ship"
    with TimeTravelEngine(store=store_url, clock=durable_clock, migrate=False) as starter:
        with TRACER.start_as_current_span("caller") as caller:
            wid = starter.start(Order)
    with TimeTravelEngine(store=store_url, clock=durable_clock, migrate=False) as runner:
        runner.run_until(wid, "waiting")
        runner.send_event(wid, "approved", "bo")
        runner.run_until(wid)
    done = spans.get_finished_spans()
    execution = one(done, "durable.workflow otel_order")
    run = next(s for s in attempts(done, wid) if s.attributes["durable.step"] == step_name)
    assert run.context.trace_id == caller.get_span_context().trace_id
    assert parent_id(run) == span_id(execution)


def test_an_unsampled_trace_is_carried_but_not_recorded(engine):
    """A sampler that leaves the trace out: its context still travels (so a downstream
    decision stays the same), and no span of it is recorded."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    durable_otel.configure(tracer_provider=provider)
    try:
        wid = engine.start(Broken)
        flags = engine.get_execution(wid).headers["traceparent"].rsplit("-", 1)[1]
        assert int(flags, 16) & 1 == 0  # the trace is carried, marked not sampled
        assert engine.run_until(wid).status == "failed"
    finally:
        durable_otel.configure()
    assert exporter.get_finished_spans() == ()
