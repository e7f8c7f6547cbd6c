"""The tracer and the metric instruments the plugin records with, and ``configure()``."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
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
    "durable.step.duration": "how long step attempts ran (seconds, as their spans), by "
    "durable.workflow, durable.step and durable.outcome (completed: returned, failed: "
    "raised, suspended: reached a wait)",
    "durable.step.retries": "failed attempts that were scheduled to run again, by "
    "durable.workflow and durable.step",
    "durable.queue.lag": "how long work waited to be claimed once it was due (seconds), by "
    "durable.workflow and durable.queue",
}
"""Every metric the plugin records, and what it counts."""

END_SPANS = ("unsuccessful", "all")
"""The choices of ``configure``'s ``end_spans``."""

_CONTEXTS_KEPT = 1024
_DEFERRED_KEPT = 1024
_lock = threading.Lock()


class Tally:
    """Counts by attribute values, kept here and reported to the meter when it collects
    (the callback of an ObservableCounter): counting is a dict update under a lock, not a
    measurement through the SDK each time."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, ...], int] = {}

    def add(self, *values: str) -> None:
        """Count one for these values of ``names``."""
        with self._lock:
            self._counts[values] = self._counts.get(values, 0) + 1

    def observe(self, _options: metrics.CallbackOptions) -> list[metrics.Observation]:
        """The totals so far, as observations of a cumulative counter."""
        with self._lock:
            counts = list(self._counts.items())
        return [
            metrics.Observation(n, dict(zip(self.names, key, strict=True))) for key, n in counts
        ]


class Deferred:
    """A histogram whose measurements are kept here and handed to the SDK in batches:
    when the meter collects (``flush`` is a callback of an observable counter, run before
    the SDK reads its histograms), or once ``_DEFERRED_KEPT`` are waiting. A step then
    pays a deque append instead of a measurement through the SDK (whose attribute
    cleaning, hashing and locking cost several times more in a busy worker than in a
    batch). Values, counts, sums and buckets are the same; only the moment the SDK sees
    them moves, within the collection interval."""

    def __init__(self, histogram: metrics.Histogram, names: tuple[str, ...]) -> None:
        self.histogram = histogram
        self.names = names
        self._waiting: deque[tuple[float, tuple[str, ...]]] = deque()
        self._attributes: dict[tuple[str, ...], dict[str, str]] = {}

    def record(self, value: float, *values: str) -> None:
        """Measure ``value`` for these values of ``names`` (thread-safe: a deque's append
        and popleft are atomic)."""
        self._waiting.append((value, values))
        if len(self._waiting) >= _DEFERRED_KEPT:
            self.flush()

    def flush(
        self, _options: metrics.CallbackOptions | None = None
    ) -> Iterable[metrics.Observation]:
        """Hand every waiting measurement to the histogram (as a callback: observes
        nothing itself)."""
        pop, record, attributes = self._waiting.popleft, self.histogram.record, self._attributes
        while True:
            try:
                value, key = pop()
            except IndexError:
                return ()
            found = attributes.get(key)
            if found is None:
                if len(attributes) >= _CONTEXTS_KEPT:  # (step names made at run time)
                    attributes.clear()
                found = attributes[key] = dict(zip(self.names, key, strict=True))
            record(value, found)


@dataclass(frozen=True, slots=True)
class Instruments:
    """The instruments of ``METRICS`` on one meter provider (made once for each: an
    instrument made again under the same name would be a duplicate)."""

    started: Tally
    finished: Tally
    retries: Tally
    step_duration: Deferred
    queue_lag: Deferred

    @classmethod
    def make(cls, meter_provider: metrics.MeterProvider | None) -> Instruments:
        meter = metrics.get_meter(SCOPE, VERSION, meter_provider=meter_provider)
        made = cls(
            started=Tally(("durable.workflow",)),
            finished=Tally(("durable.workflow", "durable.status")),
            retries=Tally(("durable.workflow", "durable.step")),
            step_duration=Deferred(
                meter.create_histogram(
                    "durable.step.duration",
                    unit="s",
                    description=METRICS["durable.step.duration"],
                    explicit_bucket_boundaries_advisory=SECONDS,
                ),
                ("durable.workflow", "durable.step", "durable.outcome"),
            ),
            queue_lag=Deferred(
                meter.create_histogram(
                    "durable.queue.lag",
                    unit="s",
                    description=METRICS["durable.queue.lag"],
                    explicit_bucket_boundaries_advisory=SECONDS,
                ),
                ("durable.workflow", "durable.queue"),
            ),
        )
        # (the histograms' waiting measurements are handed over by the first counter's
        # callbacks: the SDK runs every callback of a collection before it reads)
        flush: list[metrics.CallbackT] = [made.step_duration.flush, made.queue_lag.flush]
        counters: tuple[tuple[str, str, list[metrics.CallbackT]], ...] = (
            ("durable.executions.started", "{execution}", [*flush, made.started.observe]),
            ("durable.executions.finished", "{execution}", [made.finished.observe]),
            ("durable.step.retries", "{retry}", [made.retries.observe]),
        )
        for name, unit, callbacks in counters:
            meter.create_observable_counter(
                name, callbacks=callbacks, unit=unit, description=METRICS[name]
            )
        return made


_instruments: dict[metrics.MeterProvider | None, Instruments] = {}


@dataclass(frozen=True, slots=True)
class Telemetry:
    """What the plugin records with: one tracer, and the instruments of ``METRICS``."""

    enabled: bool
    end_spans: str  # "all", or "unsuccessful" (not for completed executions)
    tracer_provider: trace.TracerProvider | None  # (None: the global one)
    meter_provider: metrics.MeterProvider | None
    tracer: trace.Tracer
    instruments: Instruments

    @classmethod
    def make(
        cls,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        *,
        enabled: bool = True,
        end_spans: str = "unsuccessful",
    ) -> Telemetry:
        """From these providers (None: OpenTelemetry's global ones, as they are set now
        or later)."""
        if end_spans not in END_SPANS:
            raise ValueError(
                f"end_spans must be one of {', '.join(map(repr, END_SPANS))}, got {end_spans!r}"
            )
        with _lock:
            instruments = _instruments.get(meter_provider)
            if instruments is None:
                instruments = _instruments[meter_provider] = Instruments.make(meter_provider)
        return cls(
            enabled=enabled,
            end_spans=end_spans,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            tracer=trace.get_tracer(SCOPE, VERSION, tracer_provider=tracer_provider),
            instruments=instruments,
        )


_current = Telemetry.make()


def current() -> Telemetry:
    """The telemetry in force."""
    return _current


def configure(
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    enabled: bool = True,
    end_spans: str = "unsuccessful",
) -> None:
    """Choose where durable's spans and metrics go: these providers instead of
    OpenTelemetry's global ones (None: the global one), for every engine of this process.
    ``enabled=False`` stops recording (the hooks return at once); ``configure()`` with no
    arguments goes back to the defaults.

    ``end_spans``: which ended executions get a ``durable.workflow.end`` span:
    ``"unsuccessful"`` (the default: failed, cancelled and compensated ones, whose end no
    step span shows) or ``"all"`` (completed ones too, one span more per execution)."""
    global _current
    _current = Telemetry.make(tracer_provider, meter_provider, enabled=enabled, end_spans=end_spans)


# -- trace context carried in an execution's headers ---------------------------------------

_contexts: dict[tuple[tuple[str, str], ...], otel_context.Context] = {}


def parent_context(headers: Mapping[str, str]) -> otel_context.Context | None:
    """The context the headers carry (their trace's execution span, and any baggage),
    extracted through the global propagator; None when they carry none. Every attempt of
    an execution carries the same headers: the contexts extracted last are kept (a
    Context never changes), up to a thousand, then forgotten all at once."""
    if not headers:
        return None
    key = tuple(headers.items())
    found = _contexts.get(key)
    if found is not None:
        return found
    extracted = propagate.extract(headers)
    if not trace.get_current_span(extracted).get_span_context().is_valid:
        return None
    if len(_contexts) >= _CONTEXTS_KEPT:
        _contexts.clear()
    _contexts[key] = extracted
    return extracted
