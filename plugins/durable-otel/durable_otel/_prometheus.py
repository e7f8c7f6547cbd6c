"""``durable worker --metrics-port``: durable's metrics as Prometheus text, over HTTP."""

from __future__ import annotations

import threading

import durable
from durable_otel._telemetry import configure, current

__all__ = ["serve"]

_lock = threading.Lock()
_served: dict[tuple[str, int], str] = {}


def serve(port: int, host: str) -> str:
    """Serve durable's metrics at ``http://host:port/metrics`` from a daemon thread, for
    as long as the process lives, and return that URL (port 0: a free port, the one in
    the URL). The metrics are recorded into a meter provider of their own, read by the
    Prometheus exporter (an SDK meter provider cannot be given a reader once made, so the
    application's own provider, if any, no longer receives durable's metrics); spans go
    where they went."""
    with _lock:
        known = _served.get((host, port))
        if known is not None:
            return known
        try:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.resources import Resource
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError as exc:
            raise durable.ConfigError(
                f"serving metrics for Prometheus needs the OpenTelemetry SDK and its "
                f"Prometheus exporter ({exc}): pip install 'durable-otel[prometheus]'"
            ) from None
        registry = CollectorRegistry()
        reader = PrometheusMetricReader(registry=registry)
        try:
            server, _thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise durable.ConfigError(
                f"cannot serve metrics on {host}:{port}: {exc} (is the port taken? choose "
                "another --metrics-port)"
            ) from None
        provider = MeterProvider(
            metric_readers=[reader],
            resource=Resource.create({"service.name": "durable-worker"}),
        )
        now = current()
        configure(tracer_provider=now.tracer_provider, meter_provider=provider, enabled=now.enabled)
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{server.server_port}/metrics"
        _served[(host, port)] = url
        return url
