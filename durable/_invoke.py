"""Calling one step attempt, sync or async, bounded by a deadline on the engine's clock."""

from __future__ import annotations

import asyncio
import inspect
import threading
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from durable._capture import ensure_streams
from durable._runtime import OwnerCalls, StepRun, WaitSignal, current
from durable.clock import Clock


def error_info(exc: BaseException) -> dict[str, Any]:
    """An exception as stored: type, message and traceback."""
    cls = type(exc)
    name = (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
    return {
        "type": name,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


@dataclass(slots=True)
class Outcome:
    """How an attempt ended: ``error`` is None on success (``result`` is what the step
    returned); ``timed_out`` when the clock reached the deadline first (any late result is
    discarded); ``interrupted`` when the engine closed under it."""

    error: BaseException | None = None
    timed_out: bool = False
    interrupted: bool = False  # the engine shut down under the attempt
    result: Any = None


@dataclass(frozen=True, slots=True)
class _Returned:
    value: Any


#: how long a cancelled async step's cleanup may take before it is abandoned
CANCEL_GRACE = timedelta(seconds=10)

# What stops the process rather than failing the attempt: raised on in the caller's thread
# whichever thread or event loop the step ran on.
_STOPS = (KeyboardInterrupt, SystemExit)


class AsyncRunner:
    """One event loop in a daemon thread that runs every async step of an engine."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.closing = False

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                if self.closing:
                    raise RuntimeError("the engine is closed: async steps cannot start")
                loop = asyncio.new_event_loop()

                def serve() -> None:
                    loop.run_forever()
                    loop.close()

                thread = threading.Thread(target=serve, name="durable-async-steps", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def close(self, timeout: float = 10.0) -> None:
        """Cancel the async steps still running (their waiters wake), stop the loop and
        wait (up to ``timeout`` s) for its thread to end: nothing of the engine runs on
        after close() returns."""
        with self._lock:
            self.closing = True
            loop, self._loop = self._loop, None
            thread, self._thread = self._thread, None
        if loop is None:
            return

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Stop only after the tasks' done-callbacks (which wake their waiters) ran.
            loop.call_soon(loop.stop)

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


def _no_awaitable(result: Any, run: StepRun) -> None:
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise TypeError(
            f"step {run.step!r} returned an awaitable but is not an async def step "
            "(a decorator hides it?); declare it `async def` or keep __wrapped__ on the "
            "wrapper (functools.wraps)"
        )


def invoke(
    fn: Callable[[], Any],
    run: StepRun,
    *,
    is_async: bool,
    until: datetime | None,
    clock: Clock,
    runner: AsyncRunner,
) -> Outcome:
    """Run ``fn`` as the attempt ``run``.

    Without a deadline a sync step runs inline in the calling thread. With one it runs in
    its own thread while this thread waits on the clock; a sync step cannot be interrupted,
    so on timeout it is abandoned and whatever it still writes goes to a discarded
    ``StepRun``. Async steps run on the engine's loop and are cancelled on timeout.
    A KeyboardInterrupt or SystemExit from the step is raised here, in every case.
    """
    if run.cancel_requested:  # a cancel that came before the body began: it never begins
        return Outcome(error=asyncio.CancelledError())
    ensure_streams()
    if not is_async and until is None:
        token = current.set(run)
        try:
            result = fn()
            _no_awaitable(result, run)
        except _STOPS:
            raise
        except BaseException as exc:
            return Outcome(error=exc)
        finally:
            current.reset(token)
        return Outcome(result=result)

    done = threading.Event()
    box: list[BaseException | _Returned] = []
    owner = run.owner if run.owner is not None else OwnerCalls()
    owner.serving = True  # before the step starts: its waits must come to this thread

    if is_async:
        loop = runner.loop()

        def cancel_task() -> None:
            # In the loop: the task is cancelled at its current await, and the future
            # ends only when the task did (its CancelledError cleanup ran), unlike
            # future.cancel(), which marks it ended at once.
            me = holder[0] if holder else None
            if me is not None:
                me.cancel()
            else:
                future.cancel()  # not started yet: it never will

        holder: list[asyncio.Task[Any]] = []

        async def task() -> BaseException | _Returned:
            me = asyncio.current_task()
            if me is not None:
                holder.append(me)
            current.set(run)
            if run.cancel_requested:  # (came while the task was being scheduled)
                raise asyncio.CancelledError
            coro: Coroutine[Any, Any, Any] = fn()
            try:
                return _Returned(await coro)
            except (WaitSignal, *_STOPS) as signal:
                # A BaseException must not escape a task (asyncio would re-raise it in the
                # loop's thread); hand it over as the task's result instead.
                return signal

        future = asyncio.run_coroutine_threadsafe(task(), loop)

        def cancel_hook() -> None:
            loop.call_soon_threadsafe(cancel_task)
            owner.wake.set()  # (the wait below starts counting the cleanup's grace)

        with run.lock:
            run.cancel_hook = cancel_hook
            stop_now = run.cancel_requested  # (a cancel that came before the hook was set)
        if stop_now:
            cancel_hook()

        def finished(f: Any) -> None:
            if f.cancelled():
                box.append(asyncio.CancelledError())
            else:
                box.append(f.exception() or f.result())
            done.set()
            owner.wake.set()

        future.add_done_callback(finished)
    else:

        def target() -> None:
            current.set(run)
            try:
                if run.cancel_requested:  # (came while the thread was starting)
                    raise asyncio.CancelledError
                result = fn()
                _no_awaitable(result, run)
                box.append(_Returned(result))
            except BaseException as exc:
                box.append(exc)
            finally:
                done.set()
                owner.wake.set()

        threading.Thread(target=target, name=f"durable-step-{run.step}", daemon=True).start()

    # Wait for the attempt to end or time out, serving the store calls of its waits. A
    # cancelled async step gets CANCEL_GRACE to run its cleanup; one that takes longer is
    # abandoned (its future marked cancelled) so that it cannot hold the worker forever.
    grace_until: datetime | None = None
    try:
        while True:
            if is_async and run.cancel_requested and grace_until is None:
                grace_until = clock.now() + CANCEL_GRACE
            wake_at = until if grace_until is None else min(until or grace_until, grace_until)
            clock.wait_until(wake_at, owner.wake)
            owner.wake.clear()
            owner.serve()
            if done.is_set() or (until is not None and clock.now() >= until):
                break
            if grace_until is not None and clock.now() >= grace_until:
                future.cancel()
                return Outcome(error=asyncio.CancelledError())
    except BaseException:  # interrupted (Ctrl-C): abandon the attempt, pass it on
        if is_async:
            future.cancel()
        raise
    finally:
        owner.close()
    if not done.is_set() or (until is not None and clock.now() >= until):
        if is_async:
            future.cancel()
        return Outcome(timed_out=True)
    ended = box[0]
    if isinstance(ended, _Returned):
        return Outcome(result=ended.value)
    if isinstance(ended, _STOPS):
        raise ended
    if is_async and isinstance(ended, asyncio.CancelledError) and runner.closing:
        return Outcome(interrupted=True)
    return Outcome(error=ended)
