"""Metrics: what the counters and histograms hold after a workflow ran on the time-travel
clock (so every duration and lag is exact), on memory, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from durable import Retry, foreach, seconds, step, workflow
from durable.context import put_context
from durable.waits import sleep_for

T0 = datetime(2030, 2, 3, 4, 0, 0, tzinfo=UTC)


@workflow("otel_metered", queue="reports")
class Metered:
    @step
    def fetch(self):
        put_context("xs", [1, 2, 3])

    @step(retry=Retry(max_attempts=2, backoff="constant", base=1))
    def flaky(self):
        pass

    @step
    def nap(self):
        sleep_for(seconds(5))

    @foreach("xs")
    def each(self, x):
        return x


@workflow("otel_metered_broken")
class MeteredBroken:
    @step
    def boom(self):
        raise ValueError("no")


def points(reader: InMemoryMetricReader) -> dict[str, dict[frozenset[tuple[str, Any]], Any]]:
    """Each metric's data points by their attributes: a counter's value, a histogram's
    (count, sum)."""
    out: dict[str, dict[frozenset[tuple[str, Any]], Any]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            if scope.scope.name != "durable":
                continue
            for metric in scope.metrics:
                found = out.setdefault(metric.name, {})
                for p in metric.data.data_points:
                    key = frozenset((p.attributes or {}).items())
                    found[key] = (
                        (p.count, round(p.sum, 6)) if isinstance(p, HistogramDataPoint) else p.value
                    )
    return out


def attrs(**kw: str) -> frozenset[tuple[str, Any]]:
    return frozenset((f"durable.{k}", v) for k, v in kw.items())


def test_counters_durations_retries_and_queue_lag(engine, durable_clock, metric_reader):
    durable_clock.set(T0)
    engine.override(Metered.flaky, fail=1)
    wid = engine.start(Metered, scheduled_at=T0 + timedelta(seconds=5))
    durable_clock.advance(timedelta(seconds=7))  # claimed 2 s after it was due
    assert engine.run_until(wid).status == "completed"
    broken = engine.start(MeteredBroken)
    assert engine.run_until(broken).status == "failed"
    engine.cancel(engine.start(MeteredBroken), reason="not needed")

    got = points(metric_reader)
    assert got["durable.executions.started"] == {
        attrs(workflow="otel_metered"): 1,
        attrs(workflow="otel_metered_broken"): 1,
    }
    assert got["durable.executions.finished"] == {
        attrs(workflow="otel_metered", status="completed"): 1,
        attrs(workflow="otel_metered_broken", status="failed"): 1,
        attrs(workflow="otel_metered_broken", status="cancelled"): 1,
    }
    assert got["durable.step.retries"] == {attrs(workflow="otel_metered", step="flaky"): 1}
    wf = "otel_metered"
    # attempts by outcome (how long each ran is wall time, as its span's: counted here)
    durations = got["durable.step.duration"]
    assert {k: count for k, (count, _) in durations.items()} == {
        attrs(workflow=wf, step="fetch", outcome="completed"): 1,
        attrs(workflow=wf, step="flaky", outcome="failed"): 1,
        attrs(workflow=wf, step="flaky", outcome="completed"): 1,
        attrs(workflow=wf, step="nap", outcome="suspended"): 1,
        attrs(workflow=wf, step="nap", outcome="completed"): 1,
        # a foreach's items count under their step, however many there are
        attrs(workflow=wf, step="each[]", outcome="completed"): 3,
        attrs(workflow="otel_metered_broken", step="boom", outcome="failed"): 1,
    }
    assert all(0 <= took < 5 for _, took in durations.values())
    # claims: the start (2 s late), the retry, the sleep's end, three items, the join;
    # each on time but the first (the clock travels to exactly when work is due)
    lag = got["durable.queue.lag"]
    assert lag[attrs(workflow=wf, queue="reports")] == (7, 2.0)
    assert lag[attrs(workflow="otel_metered_broken", queue="default")] == (1, 0.0)


def test_the_histograms_use_buckets_made_for_seconds(engine, durable_clock, metric_reader):
    engine.run_until(engine.start(Metered))
    data = metric_reader.get_metrics_data()
    assert data is not None
    (duration,) = (
        m
        for r in data.resource_metrics
        for s in r.scope_metrics
        for m in s.metrics
        if m.name == "durable.step.duration"
    )
    assert duration.unit == "s"
    point = next(p for p in duration.data.data_points if p.attributes["durable.step"] == "fetch")
    assert point.explicit_bounds[:3] == (0.001, 0.005, 0.01)


def test_histogram_values_reach_every_reader_once_however_they_are_handed_over(
    monkeypatch,
):
    """Step durations and queue lag wait in the process and are handed to the SDK in a
    batch: when a reader collects, or once the batch is full. Either way each value is
    counted once, by every reader of the provider, with nothing lost in between."""
    from opentelemetry.sdk.metrics import MeterProvider

    import durable_otel
    from durable_otel import _telemetry

    monkeypatch.setattr(_telemetry, "_DEFERRED_KEPT", 10)
    first, second = InMemoryMetricReader(), InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[first, second])
    durable_otel.configure(meter_provider=provider)
    try:
        lag = _telemetry.current().instruments.queue_lag
        for _ in range(3):
            lag.record(0.5, "w", "q")
        assert points(first)["durable.queue.lag"] == {attrs(workflow="w", queue="q"): (3, 1.5)}
        for _ in range(25):  # more than a batch holds: two batches handed over unasked
            lag.record(1.0, "w", "q")
        assert len(lag._waiting) == 5
        # the second reader sees all 28 (the 3 the first reader's collection handed over
        # went to both), the first the 25 since, on top of its 3: cumulative, both 28
        assert points(second)["durable.queue.lag"] == {attrs(workflow="w", queue="q"): (28, 26.5)}
        assert points(first)["durable.queue.lag"] == {attrs(workflow="w", queue="q"): (28, 26.5)}
        assert not lag._waiting
    finally:
        durable_otel.configure()
        provider.shutdown()
