"""Fixtures: OpenTelemetry's SDK recording into memory, and stores of every kind.

Spans go through the global tracer provider (set once for the session, as an application
sets it): an SDK provider whose SimpleSpanProcessor hands each span to an
InMemorySpanExporter as it ends. Metrics go to a meter provider of each test's own, read
by an InMemoryMetricReader (``durable_otel.configure(meter_provider=...)``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import durable_otel
from durable_testing import TimeTravelClock, TimeTravelEngine
from durable_testing.sandbox import StoreSandbox, open_sandbox

PG_ADMIN = os.environ.get("DURABLE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
STORES = ["memory", "sqlite", "postgres"]

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="session")
def tracer_provider() -> TracerProvider:
    """The process's global tracer provider, exporting into memory."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)
    assert trace.get_tracer_provider() is provider, "a global tracer provider was set already"
    return provider


@pytest.fixture
def spans(tracer_provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    """The spans ended during the test (``spans.get_finished_spans()``)."""
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


@pytest.fixture
def metric_reader() -> Iterator[InMemoryMetricReader]:
    """The metrics durable records during the test."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    durable_otel.configure(meter_provider=provider)
    try:
        yield reader
    finally:
        durable_otel.configure()
        provider.shutdown()


@pytest.fixture(scope="session")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, StoreSandbox]]:
    made: dict[str, StoreSandbox] = {}
    yield made
    for sandbox in made.values():
        sandbox.close()


def _postgres_reachable() -> None:
    import psycopg

    try:
        psycopg.connect(PG_ADMIN, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is unreachable at {PG_ADMIN} and CI=true: {exc}")
        pytest.skip(f"PostgreSQL is unreachable at {PG_ADMIN}: {exc}")


@pytest.fixture
def sandbox_of(
    sandboxes: dict[str, StoreSandbox], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], StoreSandbox]:
    """The session's sandbox of a kind of store: ``for_test()`` is an empty store."""

    def get(kind: str) -> StoreSandbox:
        if kind not in sandboxes:
            if kind == "postgres":
                _postgres_reachable()
            url = {"memory": "memory://", "sqlite": "sqlite:///otel.db", "postgres": PG_ADMIN}
            label = f"otel_{os.getpid()}"
            sandboxes[kind] = open_sandbox(url[kind], tmp_path_factory.getbasetemp(), label)
        return sandboxes[kind]

    return get


@pytest.fixture(params=STORES)
def store_url(
    request: pytest.FixtureRequest, sandbox_of: Callable[[str], StoreSandbox]
) -> Iterator[str]:
    """An empty store of each kind: memory, a SQLite file, PostgreSQL."""
    sandbox = sandbox_of(request.param)
    url = sandbox.for_test()
    try:
        yield url
    finally:
        sandbox.after_test(url)


@pytest.fixture
def engine(store_url: str, durable_clock: TimeTravelClock) -> Iterator[TimeTravelEngine]:
    """A TimeTravelEngine on the test's clock and an empty store (the plugin is on: it is
    installed, so every engine loads it through the entry point group)."""
    made = TimeTravelEngine(store=store_url, clock=durable_clock, migrate=False)
    try:
        yield made
    finally:
        made.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "postgres" in callspec.params.values():
            item.add_marker(pytest.mark.postgres)
