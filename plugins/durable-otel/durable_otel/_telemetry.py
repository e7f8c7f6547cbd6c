"""The tracer and the metric instruments the plugin records with, and ``configure()``."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace

__all__ = [
    "METRICS",
    "SCOPE",
    "Telemetry",
    "configure",
    "current",
]

SCOPE = "durable"
"""The instrumentation scope of every span and metric the plugin records."""

VERSION = "0.1.0"

# Buckets in seconds, from a fast step's few milliseconds to an hour in a queue (the
# SDK's default buckets are made for milliseconds).
SECONDS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)

METRICS = {
    "durable.executions.started": "executions that began to run (their first claim), by "
    "durable.workflow",
    "durable.executions.finished": "executions that ended, by durable.workflow and "
    "durable.status (completed, failed, cancelled, compensated)",
    "durable.step.duration": "how long step attempts took (seconds, on the engine's "
    "clock), by durable.workflow, durable.step and durable.outcome (completed, retrying, "
    "failed, suspended)",
    "durable.step.retries": "failed attempts that were scheduled to run again, by "
    "durable.workflow and durable.step",
    "durable.queue.lag": "how long work waited to be claimed once it was due (seconds), by "
    "durable.workflow and durable.queue",
}
"""Every metric the plugin records, and what it counts."""

_CONTEXTS_KEPT = 1024


@dataclass(frozen=True, slots=True)
class Telemetry:
    """What the plugin records with: one tracer, the instruments of :data:`METRICS`."""

    enabled: bool
    tracer_provider: trace.TracerProvider | None  # (None: the global one)
    meter_provider: metrics.MeterProvider | None
    tracer: trace.Tracer
    started: metrics.Counter
    finished: metrics.Counter
    step_duration: metrics.Histogram
    retries: metrics.Counter
    queue_lag: metrics.Histogram

    @classmethod
    def make(
        cls,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        *,
        enabled: bool = True,
    ) -> Telemetry:
        """From these providers (None: OpenTelemetry's global ones, as they are set now
        or later)."""
        tracer = trace.get_tracer(SCOPE, VERSION, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, VERSION, meter_provider=meter_provider)
        described = METRICS
        return cls(
            enabled=enabled,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            tracer=tracer,
            started=meter.create_counter(
                "durable.executions.started",
                unit="{execution}",
                description=described["durable.executions.started"],
            ),
            finished=meter.create_counter(
                "durable.executions.finished",
                unit="{execution}",
                description=described["durable.executions.finished"],
            ),
            step_duration=meter.create_histogram(
                "durable.step.duration",
                unit="s",
                description=described["durable.step.duration"],
                explicit_bucket_boundaries_advisory=SECONDS,
            ),
            retries=meter.create_counter(
                "durable.step.retries",
                unit="{retry}",
                description=described["durable.step.retries"],
            ),
            queue_lag=meter.create_histogram(
                "durable.queue.lag",
                unit="s",
                description=described["durable.queue.lag"],
                explicit_bucket_boundaries_advisory=SECONDS,
            ),
        )


_lock = threading.Lock()
_current = Telemetry.make()


def current() -> Telemetry:
    """The telemetry in force."""
    return _current


def configure(
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    enabled: bool = True,
) -> None:
    """Choose where durable's spans and metrics go: these providers instead of
    OpenTelemetry's global ones (None: the global one), for every engine of this process.
    ``enabled=False`` stops recording (the hooks return at once); ``configure()`` with no
    arguments goes back to the global providers."""
    global _current
    made = Telemetry.make(tracer_provider, meter_provider, enabled=enabled)
    with _lock:
        _current = made


# -- trace context carried in an execution's headers ---------------------------------------

_contexts: OrderedDict[tuple[tuple[str, str], ...], otel_context.Context] = OrderedDict()
_contexts_lock = threading.Lock()


def parent_context(headers: Mapping[str, str]) -> otel_context.Context | None:
    """The context the headers carry (their trace's execution span, and any baggage),
    extracted through the global propagator; None when they carry none. The steps of one
    execution carry the same headers again and again: the contexts of the latest ones are
    kept (a Context never changes)."""
    if not headers:
        return None
    key = tuple(sorted(headers.items()))
    with _contexts_lock:
        found = _contexts.get(key)
        if found is not None:
            _contexts.move_to_end(key)
            return found
    extracted = propagate.extract(headers)
    if not trace.get_current_span(extracted).get_span_context().is_valid:
        return None
    with _contexts_lock:
        _contexts[key] = extracted
        while len(_contexts) > _CONTEXTS_KEPT:
            _contexts.popitem(last=False)
    return extracted
