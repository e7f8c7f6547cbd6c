"""How an attempt ends, whatever a step does: BaseExceptions, return values, and context
writes from threads the step started."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from decimal import Decimal

import pytest

import durable
from durable import Retry, minutes, step, workflow
from durable.context import attempt, put_context

box: dict[str, object] = {}


@pytest.fixture(autouse=True)
def _clear():
    box.clear()
    yield
    box.clear()


class Halt(BaseException):
    """A BaseException of the application's own (not a stop of the process)."""


def _stop(kind: str) -> None:
    box["runs"] = int(box.get("runs", 0)) + 1  # type: ignore[call-overload]
    if box["runs"] > 1:  # the run after the interruption completes
        put_context("done", attempt())
        return
    if kind == "keyboard":
        raise KeyboardInterrupt
    sys.exit(4)


@workflow("outcome_stop_inline")
class StopInline:
    @step
    def work(self) -> None:
        _stop(box["kind"])  # type: ignore[arg-type]


@workflow("outcome_stop_thread")
class StopThread:
    @step(timeout=minutes(5))  # runs in a thread of its own
    def work(self) -> None:
        _stop(box["kind"])  # type: ignore[arg-type]


@workflow("outcome_stop_async")
class StopAsync:
    @step
    async def work(self) -> None:
        await asyncio.sleep(0)
        _stop(box["kind"])  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["keyboard", "exit"])
@pytest.mark.parametrize(
    "flow", [StopInline, StopThread, StopAsync], ids=["inline", "thread", "async"]
)
def test_keyboard_interrupt_and_system_exit_stop_the_process_after_releasing_the_claim(
    durable_engine, kind, flow
):
    """The same with and without a step timeout, sync or async: the claim is released at
    once with the attempt in flight, the stop is raised to the caller, and the attempt
    runs again (as a lost one, its budget untouched) on the next claim."""
    box["kind"] = kind
    wid = durable_engine.start(flow)
    raised = KeyboardInterrupt if kind == "keyboard" else SystemExit
    with pytest.raises(raised):
        durable_engine.drain()
    ex = durable_engine.get_execution(wid)
    assert (ex.status, ex.error, ex.run_at) == ("pending", None, durable_engine.clock.now())
    assert durable_engine.drain() == 1  # at once: no lease to wait for
    ex = durable_engine.get_execution(wid, include_steps=True)
    assert ex.status == "completed"
    assert ex.context == {"done": 1}
    assert [(s.attempt, s.status) for s in ex.steps] == [(1, "lost"), (1, "completed")]


@workflow("outcome_own_base_exception")
class OwnBaseException:
    @step(retry=Retry(max_attempts=2, backoff="constant", base=1))
    def work(self) -> None:
        if attempt() == 1:
            raise Halt("the application's own BaseException")
        put_context("done", attempt())


@workflow("outcome_own_base_exception_thread")
class OwnBaseExceptionThread:
    @step(timeout=minutes(1), retry=Retry(max_attempts=2, backoff="constant", base=1))
    def work(self) -> None:
        if attempt() == 1:
            raise Halt("the application's own BaseException")
        put_context("done", attempt())


@pytest.mark.parametrize("flow", [OwnBaseException, OwnBaseExceptionThread])
def test_other_base_exceptions_fail_the_attempt_at_once(durable_engine, flow):
    wid = durable_engine.start(flow)
    ex = durable_engine.run_until(wid)
    assert (ex.status, ex.context) == ("completed", {"done": 2})
    assert durable_engine.history(wid).errors == [("work", 1, "test_outcomes.Halt")]


def test_a_step_stopping_a_worker_stops_it_gracefully_and_run_worker_raises(durable_engine):
    box["kind"] = "exit"
    wid = durable_engine.start(StopInline)
    with pytest.raises(SystemExit) as stopped:
        durable_engine.run_worker(concurrency=2)
    assert stopped.value.code == 4
    assert durable_engine.get_execution(wid).status == "pending"
    assert durable_engine.run_until(wid).context == {"done": 1}


# -- return values ---------------------------------------------------------------------


@workflow("outcome_results")
class Results:
    @step
    def plain(self) -> dict[str, object]:
        return {"charged": 42, "items": ("a", "b")}  # a tuple reads back as a list

    @step(timeout=minutes(1))
    def threaded(self) -> int:
        return 7

    @step
    async def awaited(self) -> str:
        await asyncio.sleep(0)
        return "ok"

    @step
    def nothing(self) -> None:
        put_context("x", 1)


def test_return_values_are_stored_with_the_attempt(durable_engine):
    wid = durable_engine.start(Results)
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed"
    steps = durable_engine.get_execution(wid, include_steps=True).steps
    assert [(s.name, s.result) for s in steps] == [
        ("plain", {"charged": 42, "items": ["a", "b"]}),
        ("threaded", 7),
        ("awaited", "ok"),
        ("nothing", None),
    ]
    assert [a.result for a in durable_engine.history(wid)][:1] == [
        {"charged": 42, "items": ["a", "b"]}
    ]
    assert "-> {'charged': 42" in durable_engine.history(wid).format()


@workflow("outcome_bad_result")
class BadResult:
    @step
    def money(self) -> Decimal:
        return Decimal("9.99")


def test_a_return_value_that_is_not_json_does_not_fail_an_attempt_that_did_its_work(
    durable_engine, caplog
):
    # Failing it would run the step (and its side effects) again for a value that is only
    # informative: it is not stored, and a warning says so, in the log and the attempt.
    wid = durable_engine.start(BadResult)
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed"
    (attempt_,) = durable_engine.get_execution(wid, include_steps=True).steps
    assert (attempt_.status, attempt_.result) == ("completed", None)
    (warning,) = attempt_.logs
    assert warning["level"] == "WARNING"
    assert "the return value of step 'money'" in warning["message"]
    assert "decimal.Decimal" in warning["message"]
    assert "its return value was not stored" in warning["message"]
    assert "its return value was not stored" in caplog.text


# -- context writes from threads -----------------------------------------------------------

go = threading.Event()


@workflow("outcome_late_writer")
class LateWriter:
    @step
    def spawn(self) -> None:
        go.clear()
        ctx = contextvars.copy_context()  # the thread sees the attempt (as to_thread does)

        def late() -> None:
            go.wait(10)
            try:
                put_context("late", True)
            except durable.ContextError as exc:
                box["error"] = exc

        def early() -> None:
            put_context("early", True)

        helper = threading.Thread(target=ctx.run, args=(early,))
        helper.start()
        helper.join()  # joined before the step returns: its write is kept
        box["thread"] = threading.Thread(target=ctx.run, args=(late,))
        box["thread"].start()  # type: ignore[attr-defined]


@workflow("outcome_reader_and_writer")
class ReaderAndWriter:
    @step
    def both(self) -> None:
        ctx = contextvars.copy_context()

        def writer() -> None:
            for i in range(3000):
                put_context(f"k{i}", i)

        helper = threading.Thread(target=ctx.run, args=(writer,))
        helper.start()
        seen = 0
        while helper.is_alive():  # reading while the helper writes must never break
            seen = max(seen, len(durable.context.context()))
            durable.context.get_context("k1")
        helper.join()
        put_context("seen_some", seen >= 0)


def test_reading_the_context_while_a_helper_thread_writes_it_is_safe(durable_engine):
    wid = durable_engine.start(ReaderAndWriter)
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed", ex.error
    assert len(ex.context) == 3001


def test_a_context_write_after_the_step_returned_raises_instead_of_vanishing(durable_engine):
    wid = durable_engine.start(LateWriter)
    assert durable_engine.run_until(wid).status == "completed"
    go.set()
    box["thread"].join(10)  # type: ignore[attr-defined]
    error = box["error"]
    assert isinstance(error, durable.ContextError)
    assert "after step 'spawn' attempt 1 ended" in str(error)
    assert "join it" in str(error)
    assert durable_engine.get_execution(wid).context == {"early": True}
