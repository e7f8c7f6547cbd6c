"""The hook implementations: spans for executions and step attempts, and the metrics.

An execution outlives the process that starts it, and each of its attempts may run in
another worker process, so no span stays open across them. When an execution is created
(``durable_execution_headers``) its span ``durable.workflow <name>`` is opened as a child
of the creator's current span and ended at once, and its W3C trace context is stored
with the execution. Each attempt's span ``durable.step <step>`` is opened inside the
attempt (``durable_step_call``) as a child of it, so spans the step's code opens are the
attempt's children; and when the execution fails, is cancelled or is compensated (or, with
``configure(end_spans="all")``, completes), a short ``durable.workflow.end <name>`` span,
child of the execution span too, records how.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Generator, Mapping
from datetime import datetime
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode

import durable
from durable_otel._telemetry import current, parent_context

__all__ = ["DurableOtel", "plugin"]

log = logging.getLogger("durable_otel")

_ITEM = re.compile(r"\[\d+\]$")


def _metric_step(name: str) -> str:
    """A step's name as a metric attribute: a foreach's items (``ship[17]``) count under
    their step (``ship[]``), so a list of 10,000 items makes one series, not 10,000."""
    return _ITEM.sub("[]", name)


def _record_error(span: trace.Span, error: Mapping[str, Any] | None) -> None:
    """A stored error (``{"type", "message", "traceback"}``) as the span's exception
    event, named and shaped as OpenTelemetry's ``record_exception`` would."""
    if not error:
        return
    span.add_event(
        "exception",
        {
            "exception.type": str(error.get("type", "")),
            "exception.message": str(error.get("message", "")),
            "exception.stacktrace": str(error.get("traceback", "")),
        },
    )


class DurableOtel:
    """durable's OpenTelemetry plugin (registered through the ``durable`` entry point
    group as ``plugin``). Where it records is ``durable_otel.configure``'s choice:
    OpenTelemetry's global providers unless told otherwise."""

    # -- the execution's span, as it is created -------------------------------------------

    @durable.hookimpl
    def durable_execution_headers(
        self, workflow: str, execution_id: str, created_by: str
    ) -> dict[str, str] | None:
        t = current()
        if not t.enabled:
            return None
        span = t.tracer.start_span(
            f"durable.workflow {workflow}",
            kind=SpanKind.PRODUCER,
            attributes={
                "durable.workflow": workflow,
                "durable.execution_id": execution_id,
                "durable.created_by": created_by,
            },
        )
        span.end()
        if not span.get_span_context().is_valid:  # no tracing set up: nothing to carry
            return None
        headers: dict[str, str] = {}
        propagate.inject(headers, context=trace.set_span_in_context(span))
        return headers or None

    # -- each attempt's span, inside the attempt ------------------------------------------

    @durable.hookimpl(wrapper=True)
    def durable_step_call(self, call: durable.StepCall) -> Generator[None, Any, Any]:
        t = current()
        if not t.enabled:
            return (yield)
        try:
            parent = parent_context(call.headers)
            span = t.tracer.start_span(
                f"durable.step {call.step}",
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes={
                    "durable.workflow": call.workflow,
                    "durable.execution_id": call.execution_id,
                    "durable.step": call.step,
                    "durable.attempt": call.attempt,
                    "durable.visit": call.visit,
                },
            )
            token = otel_context.attach(trace.set_span_in_context(span, parent))
        except Exception:  # tracing must never fail a step
            log.exception("durable-otel: could not open the span of step %r", call.step)
            return (yield)
        outcome = "failed"
        # (the wall clock, as the span's own times: under durable_testing's time-travel
        # clock, which moves it, a test sees the travelled time)
        began = time.time_ns()
        try:
            result = yield
            outcome = "completed"
            return result
        except durable.WaitSignal:
            # not an error: the step reached a wait and suspends (it runs again, under
            # the same attempt number, when the wait resolves)
            outcome = "suspended"
            span.set_attribute("durable.suspended", True)
            raise
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            took = (time.time_ns() - began) / 1e9
            otel_context.detach(token)
            span.end()
            t.instruments.step_duration.record(
                took,
                call.workflow,
                _metric_step(call.step) if call.step.endswith("]") else call.step,
                outcome,
            )

    # -- the execution's end --------------------------------------------------------------

    def _ended(
        self,
        execution: durable.Execution,
        status: str,
        error: Mapping[str, Any] | None = None,
        reason: str | None = None,
    ) -> None:
        t = current()
        if not t.enabled:
            return
        t.instruments.finished.add(execution.workflow, status)
        if status == "completed" and t.end_spans != "all":
            return  # (its last step's span shows its end)
        parent = parent_context(execution.headers)
        if parent is None:  # created without a trace (or before tracing was set up)
            return
        attributes: dict[str, str | int] = {
            "durable.workflow": execution.workflow,
            "durable.execution_id": execution.id,
            "durable.status": status,
        }
        if reason is not None:
            attributes["durable.cancel_reason"] = reason
        if error and error.get("step") is not None:
            attributes["durable.step"] = str(error["step"])
        span = t.tracer.start_span(
            f"durable.workflow.end {execution.workflow}",
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        )
        _record_error(span, error)
        if status == "failed":
            message = f"{(error or {}).get('type')}: {(error or {}).get('message')}"
            span.set_status(StatusCode.ERROR, message)
        span.end()

    @durable.hookimpl
    def durable_workflow_completed(self, execution: durable.Execution) -> None:
        self._ended(execution, "completed")

    @durable.hookimpl
    def durable_workflow_failed(self, execution: durable.Execution, error: dict[str, Any]) -> None:
        self._ended(execution, "failed", error)

    @durable.hookimpl
    def durable_workflow_cancelled(self, execution: durable.Execution, reason: str | None) -> None:
        self._ended(execution, "cancelled", reason=reason)

    @durable.hookimpl
    def durable_workflow_compensated(self, execution: durable.Execution) -> None:
        # (the failure that started the compensations, for the record; the saga itself
        # ended as it should, so the span is not an error)
        self._ended(execution, "compensated", execution.error)

    # -- metrics --------------------------------------------------------------------------

    @durable.hookimpl
    def durable_execution_claimed(
        self, execution: durable.Execution, claimed_at: datetime, due: datetime | None
    ) -> None:
        t = current()
        if not t.enabled:
            return
        # The first claim of an execution sets its started_at: it begins to run (told
        # here rather than by durable_workflow_started, one hook call less per execution).
        # A unit's claim is told under its execution's id, which is its parent_id.
        if execution.started_at == claimed_at and execution.id != execution.parent_id:
            t.instruments.started.add(execution.workflow)
        if due is not None:
            lag = max((claimed_at - due).total_seconds(), 0.0)
            t.instruments.queue_lag.record(lag, execution.workflow, execution.queue)

    @durable.hookimpl
    def durable_step_retrying(
        self, execution: durable.Execution, step: durable.StepExecution, retry_at: datetime
    ) -> None:
        t = current()
        if t.enabled:
            t.instruments.retries.add(execution.workflow, _metric_step(step.name))

    # -- Prometheus -----------------------------------------------------------------------

    @durable.hookimpl
    def durable_serve_metrics(self, port: int, host: str) -> str:
        from durable_otel._prometheus import serve

        return serve(port, host)


plugin = DurableOtel()
"""The plugin object the ``durable`` entry point names (``durable_otel:plugin``)."""
