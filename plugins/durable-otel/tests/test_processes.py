"""Across processes: a trace started in this process continues in a `durable worker`
process (its spans carry this trace's id, under this process's execution span), and
`durable worker --metrics-port` serves durable's metrics as Prometheus text."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace

import durable
from durable import seconds

HERE = Path(__file__).parent
TRACER = trace.get_tracer("durable-otel-tests")

pytestmark = pytest.mark.processes


class Worker:
    """A `durable worker` process on a store, stopped (SIGTERM, as an operator would)
    at the end."""

    def __init__(self, url: str, tmp: Path, *args: str, env: dict[str, str] | None = None):
        self.log = tmp / "worker.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "durable.cli",
                "--store",
                url,
                "-i",
                "otel_proc_workflows",
                "worker",
                "--concurrency",
                "2",
                *args,
            ],
            cwd=tmp,
            env={**os.environ, "PYTHONPATH": str(HERE), **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("w"),
        )

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.log.read_text()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    made: list[Worker] = []
    yield made
    for w in made:
        w.stop()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_worker_process_continues_the_callers_trace(kind, sandbox_of, spans, tmp_path, workers):
    import otel_proc_workflows  # noqa: F401  (the workflow, registered here too)

    sandbox = sandbox_of(kind)
    url = sandbox.for_test()
    spans_file = tmp_path / "worker-spans.jsonl"
    try:
        with durable.Engine(url) as client:
            with TRACER.start_as_current_span("caller") as caller:
                wid = client.start("otel_proc")
            worker = Worker(url, tmp_path, env={"DURABLE_OTEL_SPANS": str(spans_file)})
            workers.append(worker)
            ex = client.wait(wid, timeout=seconds(60))
        log = worker.stop()  # (every span is written by the time it has stopped)
        assert worker.proc.returncode == 0, log
    finally:
        sandbox.after_test(url)
    assert ex.status == "completed", ex.error
    assert ex.context["pid"] == worker.proc.pid  # (the worker process ran it)

    here = spans.get_finished_spans()
    execution = next(s for s in here if s.name == "durable.workflow otel_proc")
    trace_id = f"{caller.get_span_context().trace_id:032x}"
    assert f"{execution.context.trace_id:032x}" == trace_id
    assert execution.parent.span_id == caller.get_span_context().span_id
    exec_id = f"{execution.context.span_id:016x}"

    there = [json.loads(line) for line in spans_file.read_text().splitlines()]
    assert {s["trace_id"] for s in there} == {trace_id}  # one trace, two processes
    assert {s["service"] for s in there} == {"test-worker"}
    by_name = {s["name"]: s for s in there}
    assert set(by_name) == {
        "durable.step work",
        "durable.step finish",
        "worker.work",
        "worker.finish",
    }  # (no end span: a completed execution's end is its last step's; see end_spans)
    for name in ("durable.step work", "durable.step finish"):
        assert by_name[name]["parent_id"] == exec_id, name
        assert by_name[name]["attributes"]["durable.execution_id"] == wid
    assert by_name["worker.work"]["parent_id"] == by_name["durable.step work"]["span_id"]
    assert by_name["worker.finish"]["parent_id"] == by_name["durable.step finish"]["span_id"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _scrape(url: str, until: Any, deadline: float = 30.0) -> str:
    """The metrics page once ``until(text)`` holds, polling until the deadline (the
    worker starts, then serves; its metrics follow the executions it runs)."""
    gate = threading.Event()
    waited, text = 0.0, ""
    while waited < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                text = reply.read().decode()
            if until(text):
                return text
        except (urllib.error.URLError, ConnectionError):
            pass
        gate.wait(0.05)
        waited += 0.05
    raise AssertionError(f"{url} never showed what was expected; last:\n{text}")


def test_worker_metrics_port_serves_prometheus_text(sandbox_of, tmp_path, workers):
    import otel_proc_workflows  # noqa: F401

    sandbox = sandbox_of("sqlite")
    url = sandbox.for_test()
    port = _free_port()
    try:
        worker = Worker(url, tmp_path, "--metrics-port", str(port))
        workers.append(worker)
        with durable.Engine(url) as client:
            ids = [client.start("otel_proc") for _ in range(3)]
            for wid in ids:
                assert client.wait(wid, timeout=seconds(60)).status == "completed"
        finished = "durable_executions_finished_total{"
        text = _scrape(
            f"http://127.0.0.1:{port}/metrics",
            lambda t: any(
                line.startswith(finished)
                and 'durable_status="completed"' in line
                and line.endswith(" 3.0")
                for line in t.splitlines()
            ),
        )
        log = worker.stop()
    finally:
        sandbox.after_test(url)
    assert f"worker metrics served at http://127.0.0.1:{port}/metrics" in log
    lines = text.splitlines()

    def value(prefix: str, *labels: str) -> float:
        (line,) = [
            ln for ln in lines if ln.startswith(prefix + "{") and all(lb in ln for lb in labels)
        ]
        return float(line.rsplit(" ", 1)[1])

    wf = 'durable_workflow="otel_proc"'
    assert value("durable_executions_started_total", wf) == 3.0
    assert value("durable_executions_finished_total", wf, 'durable_status="completed"') == 3.0
    assert (
        value(
            "durable_step_duration_seconds_count",
            wf,
            'durable_step="work"',
            'durable_outcome="completed"',
        )
        == 3.0
    )
    assert value("durable_queue_lag_seconds_count", wf, 'durable_queue="default"') >= 3.0
    assert "# TYPE durable_step_duration_seconds histogram" in text
    assert "# TYPE durable_queue_lag_seconds histogram" in text
