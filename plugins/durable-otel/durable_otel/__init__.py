"""OpenTelemetry for durable: traces and metrics of workflow executions.

Installed, it is on: it registers through the ``durable`` entry point group and records
through OpenTelemetry's global tracer and meter providers (set up by the application, or
by ``opentelemetry-instrument``; without them every span and metric is a no-op).
``configure`` chooses other providers, or turns recording off.

Spans: ``durable.workflow <name>`` when an execution is created (a child of the creator's
current span, ended at once; its trace context is stored with the execution), one
``durable.step <step>`` per attempt inside the attempt (so the step's own spans are its
children), and ``durable.workflow.end <name>`` when it fails, is cancelled or is
compensated (``configure(end_spans="all")``: when it completes too). Metrics: see
``METRICS``. ``durable worker --metrics-port PORT`` serves them as Prometheus text.
"""

from __future__ import annotations

from durable_otel._plugin import DurableOtel, plugin
from durable_otel._telemetry import METRICS, SCOPE, VERSION, configure

__version__ = VERSION

__all__ = ["METRICS", "SCOPE", "DurableOtel", "__version__", "configure", "plugin"]
