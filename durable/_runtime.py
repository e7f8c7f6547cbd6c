"""The state of the step attempt running in this thread or task."""

from __future__ import annotations

import logging
import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from durable.clock import Clock


@dataclass(slots=True)
class StepRun:
    """One attempt's working state: writes go to ``context`` and are committed on success."""

    execution_id: str
    workflow: str
    step: str
    attempt: int
    input: Any
    context: dict[str, Any]
    clock: Clock
    logs: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False  # set when the attempt ended; an abandoned thread logs no more


current: ContextVar[StepRun | None] = ContextVar("durable_step_run", default=None)


class _StepLogHandler(logging.Handler):
    """Stores each logging record emitted inside a step with that step's attempt."""

    def emit(self, record: logging.LogRecord) -> None:
        run = current.get()
        if run is None or run.closed:
            return
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not fail the step
            message = str(record.msg)
        entry: dict[str, Any] = {
            "time": run.clock.now().isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        if record.exc_info and record.exc_info[1] is not None:
            entry["exception"] = repr(record.exc_info[1])
        run.logs.append(entry)


_handler: _StepLogHandler | None = None
_handler_lock = threading.Lock()


def install_log_capture() -> None:
    """Attach the step log handler to the root logger once per process."""
    global _handler
    with _handler_lock:
        if _handler is None:
            _handler = _StepLogHandler(level=logging.NOTSET)
            logging.getLogger().addHandler(_handler)
