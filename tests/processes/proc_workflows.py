"""Workflows for the multi-process tests. Each step body appends a line to the file named
by DURABLE_PROC_LOG when it runs, so a test can count real executions of step bodies."""

from __future__ import annotations

import os
import threading

from durable import Retry, compensation, step, workflow
from durable.context import attempt, put_context, workflow_id


def _mark(what: str) -> None:
    line = f"{what} {workflow_id()} {attempt()} {os.getpid()}\n"
    fd = os.open(os.environ["DURABLE_PROC_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _runs(what: str) -> int:
    """How many times this execution marked ``what`` before (in any process)."""
    try:
        with open(os.environ["DURABLE_PROC_LOG"]) as f:
            return sum(1 for line in f if line.split()[:2] == [what, workflow_id()])
    except FileNotFoundError:
        return 0


_forever = threading.Event()


@workflow("proc_crash")
class Crash:
    @step
    def first(self) -> None:
        _mark("first")
        put_context("first", attempt())

    @step(retry=Retry(max_attempts=3, backoff="constant", base=0))
    def second(self) -> None:
        first_run = _runs("second-start") == 0
        _mark("second-start")
        if first_run:
            # The test kills or stops this process here; a stopped one is let go on by
            # creating the release file, and then tries to commit its stale result.
            release = os.environ.get("DURABLE_PROC_RELEASE", "")
            for _ in range(1200):
                if release and os.path.exists(release):
                    break
                _forever.wait(0.05)
        put_context("second", attempt())
        _mark("second-done")

    @step
    def third(self) -> None:
        _mark("third")
        put_context("third", attempt())


@workflow("proc_three")
class Three:
    @step(retry=Retry(max_attempts=10, backoff="constant", base=0))
    def one(self) -> None:
        _mark("one")
        put_context("one", True)

    @step(retry=Retry(max_attempts=10, backoff="constant", base=0))
    def two(self) -> None:
        _mark("two")
        put_context("two", True)

    @step(retry=Retry(max_attempts=10, backoff="constant", base=0))
    def three(self) -> None:
        _mark("three")
        put_context("three", True)


# -- units and children across processes -------------------------------------------------

from durable import call_workflow, foreach, parallel  # noqa: E402


@workflow("proc_fan")
class Fan:
    @step
    def load(self) -> None:
        put_context("xs", list(range(200)))

    @parallel
    class four:
        @step
        def a(self) -> None:
            _mark("branch-a")
            put_context("a", 1)

        @step
        def b(self) -> None:
            _mark("branch-b")
            put_context("b", 2)

        @step
        def c(self) -> None:
            _mark("branch-c")
            put_context("c", 3)

        @step
        def d(self) -> None:
            _mark("branch-d")
            put_context("d", 4)

    @foreach("xs", concurrency=20)
    def double(self, x: int) -> int:
        _mark("item")
        _forever.wait(0.005)  # a little work, so that a kill finds items in flight
        return x * 2


@workflow("proc_child")
class Child:
    @step
    def work(self) -> None:
        _mark("child")
        _forever.wait(0.01)
        put_context("n", attempt())


@workflow("proc_parent")
class Parent:
    @step
    def call_three(self) -> None:
        got = [call_workflow(Child, {"k": k})["n"] for k in range(3)]
        put_context("children", got)


@workflow("proc_saga")
class Saga:
    """Three bookings undone after the fourth step fails; the first run of each
    execution's undo_b hangs (the test SIGKILLs the worker running it)."""

    @step(compensate="undo_a")
    def a(self) -> None:
        put_context("a", True)

    @step(compensate="undo_b")
    def b(self) -> None:
        put_context("b", True)

    @step(compensate="undo_c")
    def c(self) -> None:
        put_context("c", True)

    @step
    def d(self) -> None:
        raise RuntimeError("the last step fails")

    @compensation
    def undo_c(self) -> None:
        _mark("undo_c-done")

    @compensation(retry=Retry(max_attempts=2, backoff="constant", base=0))
    def undo_b(self) -> None:
        first_run = _runs("undo_b-start") == 0
        _mark("undo_b-start")
        if first_run:
            for _ in range(1200):  # killed here
                _forever.wait(0.05)
        _mark("undo_b-done")

    @compensation
    def undo_a(self) -> None:
        _mark("undo_a-done")


@workflow("proc_tick")
class Tick:
    """Started by the cron process test's schedules, every second."""

    @step
    def tick(self):
        put_context("ran", True)
