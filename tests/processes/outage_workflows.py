"""Workflows for the store-outage tests (tests/processes/test_outage_processes.py).

Each step body appends a line ``<what> <execution id> <attempt> <pid>`` to a log file when
it runs (the file named by the input's ``log``, else by DURABLE_OUTAGE_LOG), so a test can
count real executions of step bodies across processes.

``run_with_fsize_limit`` runs the ``durable`` command with the file-size limit capped, the
way a full disk looks to SQLite (see the full-disk test).
"""

from __future__ import annotations

import os
import resource
import signal
import threading
from collections.abc import Sequence

from durable import Retry, step, workflow
from durable.context import attempt, input, put_context, workflow_id


def _log_path() -> str:
    given = input()
    if isinstance(given, dict) and given.get("log"):
        return str(given["log"])
    return os.environ["DURABLE_OUTAGE_LOG"]


def _mark(what: str) -> None:
    line = f"{what} {workflow_id()} {attempt()} {os.getpid()}\n"
    fd = os.open(_log_path(), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _runs(what: str) -> int:
    """How many times this execution marked ``what`` before (in any process)."""
    try:
        with open(_log_path()) as f:
            return sum(1 for line in f if line.split()[:2] == [what, workflow_id()])
    except FileNotFoundError:
        return 0


_never = threading.Event()


def _wait_for_file(path: str, seconds: float = 600.0) -> None:
    """Block until ``path`` exists; a bounded wait, so that a broken test cannot leave a
    step (and the worker that waits for it to end) running forever."""
    for _ in range(int(seconds / 0.05)):
        if os.path.exists(path):
            return
        _never.wait(0.05)
    raise TimeoutError(f"{path} was not created within {seconds} s")


@workflow("outage_three")
class OutageThree:
    """Three steps with no retry policy: one attempt each. Only a lost attempt (its
    worker killed or cut off from the store) may run a body again, for free."""

    @step
    def one(self) -> None:
        _mark("one")
        put_context("one", True)

    @step
    def two(self) -> None:
        _mark("two")
        put_context("two", True)

    @step
    def three(self) -> None:
        _mark("three")
        put_context("three", True)


@workflow("outage_hold")
class OutageHold:
    """One long step: it marks ``hold-start``, blocks until the input's ``release`` file
    exists, then marks ``hold-done``. No retry policy."""

    @step
    def hold(self) -> None:
        _mark("hold-start")
        _wait_for_file(str(input()["release"]))
        put_context("held", attempt())
        _mark("hold-done")


@workflow("outage_flaky")
class OutageFlaky:
    """A step that fails on its first run and succeeds on the next (retried at once)."""

    @step(retry=Retry(max_attempts=3, backoff="constant", base=0))
    def flaky(self) -> None:
        first_run = _runs("flaky") == 0
        _mark("flaky")
        if first_run:
            raise RuntimeError("the first try of flaky fails on purpose")
        put_context("flaky", attempt())


def run_with_fsize_limit(limit: int, args: Sequence[str]) -> None:
    """Run ``durable <args>`` in this process with RLIMIT_FSIZE capped at ``limit`` bytes.

    SIGXFSZ is ignored, so a write past the limit fails with EFBIG (a short write up to
    the limit first) instead of killing the process: SQLite reports "database or disk is
    full" (or a disk I/O error), as on a full disk. Another process may lift the limit
    later with prlimit(2)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    from durable.cli import main

    main(list(args), prog_name="durable")
