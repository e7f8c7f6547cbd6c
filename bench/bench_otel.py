"""What durable-otel costs: bench_sql.py's one-worker throughput with the plugin recording,
against the same without it, in one process.

The plugin records through the OpenTelemetry SDK as in production, into exporters that
discard: a TracerProvider with a BatchSpanProcessor (its own export thread) and a
MeterProvider with a PeriodicExportingMetricReader (every second). Three variants, run
one after another in an order that turns with each round, so that drift (the disk, the
server, the machine's other load) falls on each alike; the figure of each is the median
of its runs:

* ``without``: durable-otel not loaded at all (the entry point left out of the engine's
  plugins: what a process without the plugin installed runs);
* ``off``: loaded, but turned off (``durable_otel.configure(enabled=False)``): the hook
  calls alone;
* ``api``: loaded and on, in a process that set up no SDK (OpenTelemetry's no-op
  providers): the plugin's own code and durable's hook calls, without the SDK's work;
* ``metrics``: loaded and on, the metrics through the SDK, the spans through
  OpenTelemetry's no-op tracer provider (what the metrics alone cost);
* ``on``: loaded and recording every span and metric through the SDK;
* ``floor``: durable-otel not loaded; instead a plugin of four lines opens and ends one
  bare span per attempt through the same SDK (no attributes, no parent, no context made
  current, no metrics): the least any tracing of one span per attempt can cost, which
  bounds from below what ``on`` can reach.

The spans the executions' creation recorded (before the timing: starting is not the
worker's work) are exported before the worker starts, and every span of a run is
exported once it is over, so no run exports another's. Besides each variant's median,
each round's ``on / without`` is reported (the two ran minutes apart at most, so that
ratio shares the drift of the machine), and their median.

After the warm-up the process's heap is frozen (``gc.freeze()``), as ``durable worker``
freezes what its start-up made before it takes work; ``--no-freeze`` leaves it as it is
(a worker run by ``engine.worker()`` in a process that does not freeze).

The target: ``on`` at least 90% of ``without``.

    python bench/bench_otel.py [--store URL ...] [--runs 5] [--m 2000] [--concurrency 10]
                               [--variants without,off,api,metrics,floor,on] [--no-freeze]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import threading
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench_sql import ensure_database, throughput
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NoOpTracerProvider

import durable
import durable_otel
from durable import plugins


class DiscardSpans(SpanExporter):
    """Counts the spans it is given, and drops them."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self.count += len(spans)
        return SpanExportResult.SUCCESS


class DiscardMetrics(MetricExporter):
    """Takes each collection of metrics, and drops it."""

    def __init__(self) -> None:
        super().__init__()
        self.exports = 0

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object
    ) -> MetricExportResult:
        self.exports += 1
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        pass


class BareSpans:
    """The ``floor`` variant's plugin: one span per attempt, and nothing else."""

    def __init__(self, tracer_provider: TracerProvider) -> None:
        self.tracer = tracer_provider.get_tracer("bench_otel.floor")

    @durable.hookimpl(wrapper=True)
    def durable_step_call(self, call: durable.StepCall) -> Generator[None, Any, Any]:
        span = self.tracer.start_span("durable.step")
        try:
            return (yield)
        finally:
            span.end()


@contextmanager
def without_the_plugin(instead: object | None = None) -> Iterator[None]:
    """Engines made in the block do not load durable-otel (as if it were not installed),
    but ``instead``, if given, in its place."""
    real = plugins.entry_point_plugins

    def others(*, refresh: bool = False) -> list[tuple[str, object]]:
        kept = [(n, p) for n, p in real(refresh=refresh) if p is not durable_otel.plugin]
        return kept if instead is None else [*kept, ("bench_otel_floor", instead)]

    plugins.entry_point_plugins = others  # type: ignore[assignment]
    try:
        yield
    finally:
        plugins.entry_point_plugins = real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--store",
        action="append",
        default=None,
        help="store URL (repeatable; default: Postgres at 127.0.0.1 and a temporary SQLite file)",
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of each variant")
    parser.add_argument("--m", type=int, default=2000, help="executions per run")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument(
        "--variants",
        default="without,off,api,on",
        help="comma-separated, among without, off, api, metrics, floor, on (without and on "
        "are needed)",
    )
    parser.add_argument(
        "--no-freeze",
        action="store_true",
        help="do not freeze the heap after the warm-up (durable worker does)",
    )
    args = parser.parse_args()
    variants = args.variants.split(",")
    if (
        not {"without", "on"}
        <= set(variants)
        <= {"without", "off", "api", "metrics", "floor", "on"}
    ):
        parser.error("--variants takes without and on, and optionally off, api, metrics, floor")
    tmp = Path(tempfile.mkdtemp())
    stores = args.store or [
        "postgresql://postgres@127.0.0.1:5432/durable_bench",
        f"sqlite:///{tmp / 'bench.db'}",
    ]
    spans = DiscardSpans()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(spans))
    metrics = DiscardMetrics()
    meter_provider = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(metrics, export_interval_millis=1000)]
    )

    no_tracer, no_meter = NoOpTracerProvider(), NoOpMeterProvider()
    floor = BareSpans(tracer_provider)

    def run(url: str, variant: str) -> float:
        if variant == "api":
            durable_otel.configure(tracer_provider=no_tracer, meter_provider=no_meter)
        elif variant == "metrics":
            durable_otel.configure(tracer_provider=no_tracer, meter_provider=meter_provider)
        else:
            durable_otel.configure(
                tracer_provider=tracer_provider,
                meter_provider=meter_provider,
                enabled=variant == "on",
            )
        flush = tracer_provider.force_flush
        try:
            if variant in ("without", "floor"):
                with without_the_plugin(floor if variant == "floor" else None):
                    return throughput(url, args.m, args.concurrency, before=flush)
            return throughput(url, args.m, args.concurrency, before=flush)
        finally:
            flush()

    results = []
    for url in stores:
        ensure_database(url)
        runs: dict[str, list[float]] = {v: [] for v in variants}
        run(url, "on")  # warm up (imports, connections, the SDK's first spans)
        tracer_provider.force_flush()
        if not args.no_freeze:
            gc.collect()
            gc.freeze()
        on_spans = 0
        k = len(variants)
        for i in range(args.runs):
            order = variants[i % k :] + variants[: i % k]
            if i % 2:
                order.reverse()
            for variant in order:
                before = spans.count
                runs[variant].append(run(url, variant))
                if variant == "on":
                    on_spans += spans.count - before
        # (the spans of the executions' creation are counted too: one per execution)
        per_execution = on_spans / (args.runs * args.m)
        median = {v: statistics.median(r) for v, r in runs.items()}
        paired = [on / without for on, without in zip(runs["on"], runs["without"], strict=True)]
        result = {
            "store": url.split("://")[0],
            "executions": args.m,
            "concurrency": args.concurrency,
            "frozen": not args.no_freeze,
            "throughput_wps": median,
            "runs": runs,
            "on_vs_without": median["on"] / median["without"],
            "on_vs_without_paired": paired,
            "on_vs_without_paired_median": statistics.median(paired),
            "spans_per_execution": per_execution,
        }
        for other in ("off", "api", "metrics", "floor"):
            if other in median:
                result[f"{other}_vs_without"] = median[other] / median["without"]
        results.append(result)
        print(url)
        for v in variants:
            shown = ", ".join(f"{t:,.0f}" for t in runs[v])
            print(f"  {v:<8} {median[v]:8,.0f} three-step workflows/s (runs: {shown})")
        print(
            f"  on / without: {result['on_vs_without']:.1%} (of the medians), "
            f"{result['on_vs_without_paired_median']:.1%} (median of the rounds': "
            + ", ".join(f"{r:.1%}" for r in paired)
            + ")"
        )
        for other in ("off", "api", "metrics", "floor"):
            if other in median:
                print(f"  {other} / without: {result[f'{other}_vs_without']:.1%}")
        print(f"  {per_execution:.1f} spans exported per execution while on")
    durable_otel.configure()
    tracer_provider.shutdown()
    meter_provider.shutdown()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
