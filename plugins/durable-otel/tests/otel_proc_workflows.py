"""What `durable worker -i otel_proc_workflows` imports in the process tests: the workflow
they run and, when DURABLE_OTEL_SPANS names a file, a tracer provider that writes every
span to it as it ends (a JSON object a line), as an application sets one up."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from durable import step, workflow
from durable.context import put_context

TRACER = trace.get_tracer("durable-otel-tests.worker")


class FileSpanExporter(SpanExporter):
    """Appends each span to a file: its ids, parent, name, attributes and status."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.lock, open(self.path, "a", encoding="utf-8") as out:
            for s in spans:
                assert s.context is not None
                record = {
                    "name": s.name,
                    "trace_id": f"{s.context.trace_id:032x}",
                    "span_id": f"{s.context.span_id:016x}",
                    "parent_id": None if s.parent is None else f"{s.parent.span_id:016x}",
                    "attributes": dict(s.attributes or {}),
                    "status": s.status.status_code.name,
                    "service": (s.resource.attributes or {}).get("service.name"),
                }
                out.write(json.dumps(record) + "\n")
        return SpanExportResult.SUCCESS


_path = os.environ.get("DURABLE_OTEL_SPANS")
if _path:
    _provider = TracerProvider(resource=Resource.create({"service.name": "test-worker"}))
    _provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(_path)))
    trace.set_tracer_provider(_provider)


@workflow("otel_proc")
class Proc:
    @step
    def work(self):
        with TRACER.start_as_current_span("worker.work"):
            put_context("pid", os.getpid())

    @step
    async def finish(self):
        with TRACER.start_as_current_span("worker.finish"):
            await asyncio.sleep(0)
            put_context("done", True)
