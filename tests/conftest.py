from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import durable

pytest_plugins = ["pytester"]


class Recorder:
    """An observer plugin: records every lifecycle hook call, and can signal a count."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.lock = threading.Lock()
        self.finished = threading.Condition(self.lock)
        self.done_ids: set[str] = set()

    def _add(self, hook: str, execution: durable.Execution, extra: Any = None) -> None:
        with self.lock:
            self.calls.append((hook, execution.id, extra))
            if hook in ("completed", "failed", "cancelled"):
                self.done_ids.add(execution.id)
                self.finished.notify_all()

    def wait_done(self, n: int, timeout: float = 30.0) -> bool:
        """Block until n executions ended (an event, not a sleep); False on timeout."""
        with self.lock:
            return self.finished.wait_for(lambda: len(self.done_ids) >= n, timeout)

    def hooks(self, execution_id: str | None = None) -> list[str]:
        return [h for h, eid, _ in self.calls if execution_id in (None, eid)]

    @durable.hookimpl
    def durable_workflow_started(self, execution: durable.Execution) -> None:
        self._add("started", execution)

    @durable.hookimpl
    def durable_workflow_completed(self, execution: durable.Execution) -> None:
        self._add("completed", execution)

    @durable.hookimpl
    def durable_workflow_failed(self, execution: durable.Execution, error: dict[str, Any]) -> None:
        self._add("failed", execution, error["type"])

    @durable.hookimpl
    def durable_workflow_cancelled(self, execution: durable.Execution, reason: str | None) -> None:
        self._add("cancelled", execution, reason)

    @durable.hookimpl
    def durable_step_started(
        self, execution: durable.Execution, step: durable.StepExecution
    ) -> None:
        self._add("step_started", execution, (step.name, step.attempt))

    @durable.hookimpl
    def durable_step_completed(
        self, execution: durable.Execution, step: durable.StepExecution
    ) -> None:
        self._add("step_completed", execution, (step.name, step.attempt))

    @durable.hookimpl
    def durable_step_retrying(
        self, execution: durable.Execution, step: durable.StepExecution, retry_at: Any
    ) -> None:
        self._add("step_retrying", execution, (step.name, step.attempt, retry_at))

    @durable.hookimpl
    def durable_step_failed(
        self, execution: durable.Execution, step: durable.StepExecution
    ) -> None:
        self._add("step_failed", execution, (step.name, step.attempt))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def engine(
    durable_clock: Any, durable_store_url: str, recorder: Recorder
) -> Iterator[durable.Engine]:
    """Like durable_engine, with the recorder observing."""
    eng = durable.Engine(store=durable_store_url, clock=durable_clock, plugins=[recorder])
    try:
        yield eng
    finally:
        eng.close()
