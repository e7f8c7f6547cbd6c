"""The state of the step attempt running in this thread or task."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from durable._kept import Kept

if TYPE_CHECKING:
    from durable.clock import Clock
    from durable.models import WaitSpec


class OwnerCalls:
    """Runs functions for a step on the thread that runs its attempt (the executor's).

    A step with a timeout runs in a thread of its own, an async step on the engine's event
    loop; a wait they reach needs the store, and doing that from the executor's thread
    keeps it on that thread's connection instead of opening one per step thread.
    """

    def __init__(self) -> None:
        self.owner = threading.get_ident()
        self.wake = threading.Event()  # set when a call is queued
        self._lock = threading.Lock()
        self._queue: list[tuple[Callable[[], Any], Future[Any]]] = []
        self._closed = False
        self.serving = False  # set while invoke() serves; an inline step's owner never does

    def call(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on the owner's thread; here and now when on it already, or when the
        owner is not serving (it is busy running an inline step that made this call)."""
        if threading.get_ident() == self.owner or not self.serving:
            return fn()
        done: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise _abandoned()
            self._queue.append((fn, done))
        self.wake.set()
        return done.result()

    def serve(self) -> None:
        """Run the queued calls (on the owner's thread)."""
        with self._lock:
            batch, self._queue = self._queue, []
        for i, (fn, done) in enumerate(batch):
            try:
                result = fn()
            except (KeyboardInterrupt, SystemExit):
                # The owner's own interruption (Ctrl-C in drain()): not the step's to
                # handle. Fail what is queued and let it reach the owner's caller.
                for _, rest in batch[i:]:
                    rest.set_exception(_abandoned())
                raise
            except BaseException as exc:
                done.set_exception(exc)
            else:
                done.set_result(result)

    def close(self) -> None:
        """No more calls: the attempt ended (or was abandoned); queued ones fail."""
        with self._lock:
            self._closed = True
            batch, self._queue = self._queue, []
        for _, done in batch:
            done.set_exception(_abandoned())


def _abandoned() -> Exception:
    from durable.errors import LeaseLost

    return LeaseLost("the step's attempt ended (timed out or abandoned); it can wait no more")


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
    visit: int = 1  # which visit of the step this attempt belongs to
    scheduled_at: datetime | None = None  # the execution's (a schedule's tick)
    # what the attempt logged and printed (add_log, add_output), within bounds
    kept: Kept = field(default_factory=Kept)
    closed: bool = False  # set when the attempt ended; an abandoned thread logs no more
    # resolves a wait the step reached (set by the executor): spec -> result, or raises
    waiter: Callable[[Any], Any] | None = None
    waits: int = 0  # waits reached so far in this run: the next one's position
    # starts a child workflow (set by the executor): (workflow, input, queue, timeout) -> id
    starter: Callable[[Any], str] | None = None
    starts: int = 0  # children started so far by start_workflow in this run
    owner: OwnerCalls | None = None  # the executor's thread, for store calls from the step
    aio_wait: bool = False  # a durable.aio wait is in flight (one at a time per run)
    # a parallel branch: what it wrote, per key (see durable._merge), for the merge
    ops: dict[str, tuple[Any, ...]] | None = None
    # a foreach item: its position, and why the context may not be written
    item_index: int | None = None
    read_only: str | None = None
    # a unit runs under an id of its own; workflow_id() gives its execution's
    workflow_id: str | None = None
    engine: Any = None  # the engine running the step (durable.context.engine())
    # a compensation: the failure that started its execution's compensations, and the
    # step run it undoes (durable.context.failure())
    failure: dict[str, Any] | None = None
    compensates: str | None = None
    undoing: Callable[[], Any] | None = None  # (durable.context.compensating(), read lazily)
    # set when a cancel of the execution reached this attempt while it ran (a sync step
    # may look: durable.context.cancel_requested()); cancel_hook stops an async one at its
    # current await
    cancel_requested: bool = False
    cancel_hook: Callable[[], Any] | None = None

    def request_cancel(self) -> None:
        """A cancel reached the running attempt: flag it, and stop it if it can be."""
        with self.lock:
            self.cancel_requested = True
            hook = self.cancel_hook
        if hook is not None:
            hook()

    # context writes and close() take it, so a write from a thread the step started either
    # lands before the executor reads the context or raises: it never vanishes
    lock: threading.RLock = field(default_factory=threading.RLock)

    def add_log(self, entry: dict[str, Any]) -> None:
        """Keep a logging record (``{"time", "level", "logger", "message"}``), within the
        attempt's bounds (durable._kept)."""
        with self.lock:
            if not self.closed:
                self.kept.record(entry, entry.get("time") or self.clock.now().isoformat())

    def add_output(self, stream: str, text: str) -> None:
        """Keep text written to ``stream`` ("stdout" or "stderr"), within the attempt's
        bounds (durable._kept)."""
        with self.lock:
            if not self.closed:
                self.kept.write(stream, text, self._now)

    def _now(self) -> str:
        return self.clock.now().isoformat()

    @property
    def logs(self) -> list[dict[str, Any]]:
        """What the attempt logged and printed, in order, each cut marked where it was."""
        with self.lock:
            return self.kept.entries()

    def close(self) -> None:
        """The attempt ended: later context writes raise, and logs and output are no
        longer kept."""
        with self.lock:
            self.closed = True


current: ContextVar[StepRun | None] = ContextVar("durable_step_run", default=None)


class WaitSignal(BaseException):
    """What a wait raises through the step's code to the executor (``durable.WaitSignal``):
    the step suspends on a wait that is not resolved yet. A BaseException, so that a
    step's ``except Exception`` does not swallow it; a ``durable_step_call`` wrapper sees
    it at its ``yield`` and should let it pass without counting it as an error."""


class Suspend(WaitSignal):
    """Raised by a wait that is not resolved yet: the executor suspends the step."""

    def __init__(self, spec: WaitSpec, seq: int, until: datetime | None) -> None:
        super().__init__(f"waiting for {spec.describe()}")
        self.spec = spec
        self.seq = seq
        self.until = until


class StoreInterrupt(WaitSignal):
    """The store failed (or the claim was lost) while a wait was decided: the executor
    handles ``error`` as it handles any store failure, outside the step's code."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error
