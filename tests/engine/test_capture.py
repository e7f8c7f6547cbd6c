"""What an attempt prints and logs is stored with it: sync and async steps, the threads a
step starts, bounded per attempt, never mixed between steps running at once."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import durable
from durable import Retry, step, workflow
from durable._kept import ENTRY_OVERHEAD
from durable._limits import CAPTURE_LIMIT
from durable.cli import format_execution
from durable.context import input

log = logging.getLogger("shop.capture")


@workflow("prints_and_logs")
class PrintsAndLogs:
    @step(retry=Retry(max_attempts=2, backoff="constant", base=1))
    def talk(self) -> None:
        print("charging order", input()["order"])
        log.warning("card %s", "visa")
        print("oops", file=sys.stderr)
        sys.stdout.write("no newline")
        sys.stdout.write(" yet\n")
        if durable.context.attempt() == 1:
            raise RuntimeError("declined")


def test_stdout_stderr_and_records_are_kept_in_order_per_attempt(engine, durable_clock, capsys):
    wid = engine.start(PrintsAndLogs, {"order": 7})
    engine.drain()
    durable_clock.advance(1000)
    engine.drain()
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.status == "completed"
    first, second = ex.steps
    assert first.stdout == "charging order 7\nno newline yet\n"
    assert first.stderr == "oops\n"
    assert first.output == "charging order 7\noops\nno newline yet\n"
    assert [(e.get("stream"), e.get("level")) for e in first.logs] == [
        ("stdout", None),
        (None, "WARNING"),
        ("stderr", None),
        ("stdout", None),
    ]
    assert [r["message"] for r in first.records] == ["card visa"]
    assert second.stdout == first.stdout  # each attempt keeps its own
    # The output still reaches the streams it was written to.
    seen = capsys.readouterr()
    assert seen.out.count("charging order 7") == 2
    assert seen.err.count("oops") == 2
    # durable show prints it, a line per printed line.
    shown = format_execution(ex)
    assert "out | charging order 7" in shown
    assert "err | oops" in shown
    assert "log WARNING card visa" in shown


def test_the_test_kit_history_shows_the_output(durable_engine):
    wid = durable_engine.start(PrintsAndLogs, {"order": 8})
    durable_engine.run_all()
    history = durable_engine.history(wid)
    first = history.attempts("talk")[0]
    assert first.stdout == "charging order 8\nno newline yet\n"
    assert first.stderr == "oops\n"
    assert first.logs == ("card visa",)
    assert "out: charging order 8" in history.format()
    assert "err: oops" in history.format()


@workflow("async_prints")
class AsyncPrints:
    @step
    async def talk(self) -> None:
        print("before await")
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: print("in the loop's executor"))
        await asyncio.to_thread(print, "in to_thread")
        print("after", file=sys.stderr)


def test_an_async_step_and_the_threads_it_uses(engine):
    wid = engine.start(AsyncPrints)
    engine.drain()
    s = engine.get_execution(wid, include_steps=True).steps[0]
    assert s.stdout == "before await\nin the loop's executor\nin to_thread\n"
    assert s.stderr == "after\n"


@workflow("threads_print")
class ThreadsPrint:
    @step
    def fan_out(self) -> None:
        def work(n: int) -> int:
            print(f"thread {n}")
            logging.getLogger("shop.worker").warning("worker %d", n)
            return n

        t = threading.Thread(target=work, args=(1,))
        t.start()
        t.join()
        with ThreadPoolExecutor(max_workers=1) as pool:
            assert pool.submit(work, 2).result() == 2
        durable.context.put_context("from_thread", True)


def test_threads_a_step_starts_are_part_of_it(engine):
    wid = engine.start(ThreadsPrint)
    engine.drain()
    s = engine.get_execution(wid, include_steps=True).steps[0]
    assert s.stdout == "thread 1\nthread 2\n"
    assert [r["message"] for r in s.records] == ["worker 1", "worker 2"]


def test_threads_and_pools_outside_steps_are_left_alone(engine):
    engine.start(ThreadsPrint)  # (installs the capture)
    seen: list[object] = []

    def look() -> None:
        seen.append(durable._runtime.current.get())

    t = threading.Thread(target=look)
    t.start()
    t.join()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(look).result()
    assert seen == [None, None]


@workflow("floods")
class Floods:
    @step
    def flood(self) -> None:
        chunk = "é" * 1000 + "\n"  # 2,001 bytes of UTF-8
        for n in range(50):
            print(f"{n:02d}" + chunk, end="")
        print("the end", file=sys.stderr)
        for i in range(2000):
            log.warning("record %d %s", i, "x" * 60)


def test_an_attempt_keeps_the_head_and_tail_of_each_and_marks_the_cut(engine):
    wid = engine.start(Floods)
    engine.drain()
    s = engine.get_execution(wid, include_steps=True).steps[0]
    printed = [e for e in s.logs if e.get("stream") == "stdout"]
    kept = sum(len(e["text"].encode()) for e in printed)
    cut = {e["cut"]: e for e in s.logs if "cut" in e}
    assert set(cut) == {"stdout", "logs"}  # stderr's one line has a budget of its own
    assert kept + cut["stdout"]["dropped"] in range(50 * 2003 - 2, 50 * 2003 + 1)
    assert CAPTURE_LIMIT - 4 * ENTRY_OVERHEAD <= kept <= CAPTURE_LIMIT
    # the first lines and the last are there, the mark between them
    assert s.stdout.startswith("00éé")
    assert s.stdout.endswith("49" + "é" * 1000 + "\n")
    assert f"\n[{cut['stdout']['dropped']} bytes of stdout were dropped here: " in s.stdout
    assert s.stderr == "the end\n"
    assert "dropped here" not in s.stderr
    records = [e for e in s.records if "level" in e]
    assert sum(ENTRY_OVERHEAD + len(r["message"].encode()) for r in records) <= CAPTURE_LIMIT
    assert cut["logs"]["dropped"] == 2000 - len(records)
    assert records[0]["message"].startswith("record 0 ")
    assert records[-1]["message"].startswith("record 1999 ")
    assert cut["logs"] in s.records
    assert "cut [" in format_execution(engine.get_execution(wid, include_steps=True))


BARRIER = threading.Barrier(2, timeout=30)


@workflow("side_by_side")
class SideBySide:
    @step
    def talk(self) -> None:
        me = input()
        print(f"{me} one")
        BARRIER.wait()  # both steps are running now
        helper = threading.Thread(target=lambda: print(f"{me} from my thread"))
        helper.start()
        helper.join()
        BARRIER.wait()
        print(f"{me} two", file=sys.stderr)


def test_steps_running_at_the_same_time_do_not_mix(engine):
    BARRIER.reset()
    a, b = engine.start(SideBySide, "A"), engine.start(SideBySide, "B")
    with engine.worker(concurrency=2):
        done = [engine.wait(i, timeout=30_000) for i in (a, b)]
    assert [d.status for d in done] == ["completed", "completed"]
    for eid, me in ((a, "A"), (b, "B")):
        s = engine.get_execution(eid, include_steps=True).steps[0]
        assert s.stdout == f"{me} one\n{me} from my thread\n"
        assert s.stderr == f"{me} two\n"


began, release, printed_late = threading.Event(), threading.Event(), threading.Event()


@workflow("late_thread")
class LateThread:
    @step(timeout=1000, retry=Retry(max_attempts=1))
    def slow(self) -> None:
        print("started")
        began.set()
        release.wait(30)
        print("after the attempt ended")
        printed_late.set()


def test_an_abandoned_attempt_adds_nothing_after_its_end(engine, durable_clock):
    for e in (began, release, printed_late):
        e.clear()
    wid = engine.start(LateThread)
    drain = threading.Thread(target=engine.drain)
    drain.start()
    assert began.wait(30)  # the attempt runs in a thread of its own, bounded by the clock
    durable_clock.advance(2000)
    drain.join(30)
    release.set()
    assert printed_late.wait(30)
    first = engine.get_execution(wid, include_steps=True).steps[0]
    assert first.error is not None
    assert "ran past its timeout" in first.error["message"]
    assert first.stdout == "started\n"


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_a_replaced_stream_is_teed_again_at_the_next_attempt(engine, stream, monkeypatch):
    import io

    replacement = io.StringIO()
    monkeypatch.setattr(sys, stream, replacement)
    wid = engine.start(PrintsAndLogs, {"order": 1})
    engine.drain()
    s = engine.get_execution(wid, include_steps=True).steps[0]
    assert (s.stdout if stream == "stdout" else s.stderr) in replacement.getvalue()
    assert getattr(s, stream)


@workflow("many_tiny_entries")
class ManyTinyEntries:
    @step
    def chatter(self) -> None:
        for _ in range(20_000):
            log.warning("")
            print("x", end="")
            print("y", end="", file=sys.stderr)


def test_empty_records_and_alternating_streams_are_bounded_too(engine):
    wid = engine.start(ManyTinyEntries)
    engine.drain()
    s = engine.get_execution(wid, include_steps=True).steps[0]
    records = [e for e in s.logs if "level" in e]
    printed = [e for e in s.logs if "stream" in e]
    assert len(records) <= CAPTURE_LIMIT // ENTRY_OVERHEAD
    assert len(printed) <= 2 * CAPTURE_LIMIT // ENTRY_OVERHEAD
    assert {e["cut"] for e in s.logs if "cut" in e} == {"logs", "stdout", "stderr"}
    assert s.stdout.endswith("x") and s.stderr.endswith("y")  # the latest writes are kept


def test_a_stream_wrapped_around_the_tee_is_not_kept_twice(engine, monkeypatch):
    engine.start(PrintsAndLogs, {"order": 0})
    engine.drain()  # the tees are in place

    class Stamp:
        def __init__(self, inner):
            self.inner = inner

        def write(self, text):
            return self.inner.write(text)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    monkeypatch.setattr(sys, "stdout", Stamp(sys.stdout))  # a tee is put around it next
    wid = engine.start(PrintsAndLogs, {"order": 5})
    engine.drain()
    s = engine.get_execution(wid, include_steps=True).steps[0]
    assert s.stdout == "charging order 5\nno newline yet\n"


class OwnHandler(logging.Handler):
    """A handler outside the logging module, writing records out itself."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"[own] {record.getMessage()}", file=sys.stderr)


@workflow("own_handler")
class WithOwnHandler:
    @step
    def talk(self) -> None:
        log.warning("kept once")
        print("printed")


def test_a_handler_from_any_module_is_not_kept_twice(engine):
    handler = OwnHandler()
    log.addHandler(handler)
    try:
        wid = engine.start(WithOwnHandler)
        engine.drain()
    finally:
        log.removeHandler(handler)
    s = engine.get_execution(wid, include_steps=True).steps[0]
    assert [r["message"] for r in s.records] == ["kept once"]
    assert s.stderr == ""  # the handler's rendering of the record is not output
    assert s.stdout == "printed\n"


went_on, ended = threading.Event(), threading.Event()
late: dict[str, object] = {}


@workflow("outliving_thread")
class OutlivingThread:
    @step
    def begin(self) -> None:
        def background() -> None:
            print("from the thread, while the step runs")
            ended.wait(30)
            print("from the thread, after the step")
            try:
                durable.context.put_context("late", True)
            except Exception as exc:
                late["error"] = exc
            went_on.set()

        threading.Thread(target=background, daemon=True).start()

    @step
    def after(self) -> None:
        ended.set()
        assert went_on.wait(30)
        print("the next step")


def test_a_thread_outliving_its_step_belongs_to_it_no_more(engine):
    went_on.clear()
    ended.clear()
    wid = engine.start(OutlivingThread)
    engine.drain()
    begin, after = engine.get_execution(wid, include_steps=True).steps
    assert after.stdout == "the next step\n"  # not the other step's thread's
    assert "after the step" not in begin.stdout
    assert "put_context() was called after step 'begin' attempt 1 ended" in str(late["error"])
    assert engine.get_execution(wid).context.get("late") is None


@workflow("queue_listener")
class WithQueueListener:
    @step
    def talk(self) -> None:
        import logging.handlers
        import queue

        q: queue.Queue = queue.Queue()
        listener = logging.handlers.QueueListener(q, OwnHandler())
        handler = logging.handlers.QueueHandler(q)
        listener.start()  # its thread calls the handler's handle() itself
        log.addHandler(handler)
        try:
            log.warning("through the queue")
        finally:
            log.removeHandler(handler)
            listener.stop()
        print("printed")


def test_a_queue_listeners_handler_is_not_kept_twice(engine):
    wid = engine.start(WithQueueListener)
    engine.drain()
    s = engine.get_execution(wid, include_steps=True).steps[0]
    assert [r["message"] for r in s.records] == ["through the queue"]
    assert s.stderr == "" and s.stdout == "printed\n"
