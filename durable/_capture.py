"""What a step attempt logs and prints is kept with the attempt.

Three things make that work, each installed once per process and inert outside a step:

* a log record factory stores every logging record made while a step runs (the
  application's logging configuration, and Python's last-resort output, stay as they were);
* ``sys.stdout`` and ``sys.stderr`` become tees that still write where they wrote before,
  and also give the text to the attempt running in the writing thread or task;
* a thread a step starts (``threading.Thread``, and work it submits to a
  ``ThreadPoolExecutor``, hence ``loop.run_in_executor``) runs as part of that step, as
  ``asyncio`` tasks already do: its logs and output are the step's, and so are its
  ``durable.context`` calls.

Steps running at the same time in one process never mix: the attempt is found through the
``current`` context variable, which each thread and task has its own value of. Output
written to a file descriptor directly (a subprocess, a C library) is not seen.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import thread as _pool_thread
from typing import Any, TextIO

from durable._runtime import StepRun, current

__all__ = ["ensure_streams", "install_capture"]


def _entry(run: StepRun, record: logging.LogRecord) -> dict[str, Any]:
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
    return entry


class _Teeing(threading.local):
    active = False  # a tee is writing on: an inner tee keeps nothing
    handling = False  # a logging handler is writing a record out: the record is kept


_teeing = _Teeing()


class _Tee:
    """``sys.stdout`` or ``sys.stderr``: writes go on to the stream it replaced, and the
    running attempt (if any) keeps a copy. Everything else is the wrapped stream's."""

    def __init__(self, stream: TextIO, name: str) -> None:
        self._durable_stream = stream
        self._durable_name = name

    def write(self, text: str) -> int:
        run = current.get()
        if run is None or run.closed or _teeing.active or _teeing.handling:
            return self._durable_stream.write(text)
        if isinstance(text, str) and text:
            run.add_output(self._durable_name, text)
        # A stream an application wrapped around a tee, and a tee put around it again,
        # write through two tees: only the outer one keeps the text.
        _teeing.active = True
        try:
            return self._durable_stream.write(text)
        finally:
            _teeing.active = False

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._durable_stream, name)


_lock = threading.Lock()
_installed = False


def ensure_streams() -> None:
    """Put the tees back in ``sys.stdout``/``sys.stderr`` if something replaced them since
    (pytest swaps them at each test phase); called as each attempt begins."""
    if type(sys.stdout) is _Tee and type(sys.stderr) is _Tee:
        return
    with _lock:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if stream is not None and type(stream) is not _Tee:
                setattr(sys, name, _Tee(stream, name))


def _bind_thread(start: Callable[[threading.Thread], None]) -> Callable[[threading.Thread], None]:
    def start_in_step(self: threading.Thread) -> None:
        run = current.get()
        # A pool's worker thread serves whoever submits next: its tasks carry their own.
        if run is not None and getattr(self, "_target", None) is not _pool_thread._worker:
            body = self.run

            def run_as_step() -> None:
                current.set(run)
                body()

            self.run = run_as_step  # type: ignore[method-assign]
        start(self)

    return start_in_step


def _bind_task(submit: Callable[..., Future[Any]]) -> Callable[..., Future[Any]]:
    def submit_in_step(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        run = current.get()
        if run is None:
            return submit(self, fn, *args, **kwargs)

        def as_step() -> Any:
            token = current.set(run)
            try:
                return fn(*args, **kwargs)
            finally:
                current.reset(token)

        return submit(self, as_step)

    return submit_in_step


def _handling(handle: Callable[..., Any]) -> Callable[..., Any]:
    """A handler (of any kind, from any module) writing a record out to stdout or stderr:
    the record is kept already, its text is not kept again as output."""

    def handle_record(self: Any, record: logging.LogRecord) -> Any:
        if _teeing.handling:
            return handle(self, record)
        _teeing.handling = True
        try:
            return handle(self, record)
        finally:
            _teeing.handling = False

    return handle_record


def install_capture() -> None:
    """Install the log record factory and the thread hand-over (once)."""
    global _installed
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            run = current.get()
            if run is not None and not run.closed:
                run.add_log(_entry(run, record))
            return record

        logging.setLogRecordFactory(factory)
        # (callHandlers covers handlers that override handle(); handle() covers a
        # QueueListener's thread, which calls its handlers directly)
        logging.Logger.callHandlers = _handling(logging.Logger.callHandlers)  # type: ignore[method-assign]
        logging.Handler.handle = _handling(logging.Handler.handle)  # type: ignore[method-assign]
        threading.Thread.start = _bind_thread(threading.Thread.start)  # type: ignore[method-assign,assignment]
        ThreadPoolExecutor.submit = _bind_task(ThreadPoolExecutor.submit)  # type: ignore[method-assign]
        _installed = True
    # (the tees go in at the first attempt, ensure_streams: a process that only starts
    # executions keeps its streams as they are)
