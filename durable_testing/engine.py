"""TimeTravelEngine: an Engine with the helpers a test needs to drive time and steps."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from durable.durations import Duration, to_ms
from durable.engine import DEFAULT_LEASE, Engine
from durable.errors import ConfigError
from durable.models import FINISHED, Execution, Status
from durable.stores.base import Store
from durable_testing.clock import TimeTravelClock
from durable_testing.history import History
from durable_testing.overrides import (
    UNSET,
    ErrorSpec,
    StepOverride,
    StepOverrides,
    resolve_step,
)

__all__ = ["ExecutionStuck", "TimeTravelEngine"]

_MAX_CLAIMS = 100_000


class ExecutionStuck(AssertionError):
    """``run_until`` could not reach what it was asked to: nothing more is scheduled, the
    execution ended elsewhere, or the virtual time limit passed. The message holds the
    execution's history."""


def _statuses(status: str | Iterable[str]) -> frozenset[Status]:
    names = [status] if isinstance(status, str) else list(status)
    try:
        return frozenset(Status(s) for s in names)
    except ValueError:
        raise ConfigError(
            f"unknown status in {status!r}; statuses are {[s.value for s in Status]}"
        ) from None


class TimeTravelEngine(Engine):
    """An ``Engine`` on a ``TimeTravelClock``, with test helpers.

    ``advance_to_next()`` moves the clock to the next due work; ``run_until(wid, ...)``
    runs and travels until an execution reaches a status or a step; ``run_all()`` until
    nothing is scheduled; ``override(step, ...)`` changes what a step does for this engine;
    ``history(wid)`` is the execution's attempts for assertions. The ``durable_engine``
    fixture is one of these. ``clock=None`` makes a clock (closed with the engine).
    """

    clock: TimeTravelClock

    def __init__(
        self,
        store: str | Store | None = "memory://",
        clock: TimeTravelClock | None = None,
        lease: Duration = DEFAULT_LEASE,
        migrate: bool = True,
        *,
        plugins: Sequence[object] = (),
        worker_id: str | None = None,
    ) -> None:
        if clock is not None and not isinstance(clock, TimeTravelClock):
            raise ConfigError(
                f"TimeTravelEngine needs a TimeTravelClock, got {type(clock).__name__}"
            )
        self._owns_clock = clock is None
        self._overrides = StepOverrides()
        super().__init__(
            store,
            clock or TimeTravelClock(),
            lease,
            migrate,
            plugins=[*plugins, self._overrides],
            worker_id=worker_id,
        )

    # -- time ----------------------------------------------------------------------------

    def advance_to_next(self, queues: Sequence[str] | None = None) -> datetime | None:
        """Move the clock to when the next scheduled work (a start, a retry, a lease
        expiry, a schedule's tick) falls due, if that is later than now; return the
        clock's time, or None (and leave the clock) when nothing is scheduled."""
        due = self.next_due(queues)
        if due is None:
            return None
        if due > self.clock.now():
            self.clock.set(due)
        return self.clock.now()

    def run_all(
        self, queues: Sequence[str] | None = None, *, within: Duration | None = None
    ) -> int:
        """Drain and travel until nothing more is scheduled; return how many claims ran.

        ``within`` (ms or timedelta) bounds the virtual time travelled; work due later is
        left and ``ExecutionStuck`` is raised. Schedules' ticks never run out: they
        are travelled to only ``within`` a bound (and the ticks after it are left, no
        error)."""
        limit = self._limit(within)
        ran = 0
        for _ in range(_MAX_CLAIMS):
            ran += self.drain(queues)
            work = self.store.next_due(queues=queues, workflows=None)
            due = work if limit is None else self.next_due(queues)
            if due is None:
                return ran
            if due <= self.clock.now():
                raise ExecutionStuck(self._cannot_claim(due))
            if limit is not None and due > limit:
                if work is None:
                    return ran  # (only ticks are left, after the bound)
                raise ExecutionStuck(
                    f"work is still scheduled at {due.isoformat()}, after the limit "
                    f"within={within!r} (until {limit.isoformat()})"
                )
            self.clock.set(due)
        raise ExecutionStuck(f"run_all() made {_MAX_CLAIMS} claims without running out of work")

    def wait(self, execution_id: str, timeout: Duration | None = None) -> Execution:
        """``Engine.wait <durable.Engine.wait>`` for tests, where time moves only when
        the test moves it.

        With no worker running on this engine nobody else would run the execution, so it
        is run here as ``run_until`` does (the clock moved to each timer; ``timeout``
        is not used): code under test that waits for an execution returns at once in
        real time, or raises ``ExecutionStuck`` with the history when the execution
        cannot finish (it waits for an event nobody sends). With a worker running
        (``engine.worker()``), it waits for that worker as ``Engine.wait`` does."""
        if self.workers_running:
            return super().wait(execution_id, timeout)
        return self.run_until(execution_id)

    def run_until(
        self,
        execution_id: str,
        status: str | Iterable[str] | None = None,
        *,
        step: str | None = None,
        within: Duration | None = None,
        queues: Sequence[str] | None = None,
    ) -> Execution:
        """Run work and move the clock to each next due time until the execution reaches
        ``status`` (one or several) or is about to run ``step``; with neither, until it
        finishes. Returns the execution then.

        Stopping at a step leaves the execution pending at that step, its earlier steps
        done, so a test can look at it (or send it something) before the step runs.
        Raises ``ExecutionStuck`` (an AssertionError with the history) when that
        cannot happen: nothing more is scheduled, the execution finished otherwise, or
        ``within`` (virtual ms or timedelta from now) passed.
        """
        want = _statuses(status) if status is not None else None
        if want is None and step is None:
            want = frozenset(FINISHED)
        limit = self._limit(within)

        def reached(ex: Execution) -> bool:
            if want is not None and ex.status in want:
                return True
            return (
                step is not None
                and ex.current_step == step
                and ex.status in (Status.PENDING, Status.WAITING)
            )

        def stop_before(row_id: str) -> Callable[[str], bool]:
            if step is None or row_id != execution_id:
                return lambda _next: False
            return lambda next_step: next_step == step

        goal = " or ".join(
            ([f"status {'/'.join(sorted(want))}"] if want else [])
            + ([f"step {step!r}"] if step else [])
        )
        for _ in range(_MAX_CLAIMS):
            ex = self.get_execution(execution_id)
            if reached(ex):
                return ex
            if ex.finished:
                raise ExecutionStuck(
                    f"execution ended as {ex.status} before reaching {goal}\n"
                    + self.history(execution_id).format()
                )
            rows = self.scheduler.claim(queues, limit=1)
            if rows:
                self.scheduler.execute(rows[0], stop_at=stop_before(rows[0].id))
                continue
            due = self.next_due(queues)
            if due is None:
                raise ExecutionStuck(
                    f"nothing more is scheduled and the execution has not reached {goal} "
                    f"({self._state(ex)})\n" + self.history(execution_id).format()
                )
            if due <= self.clock.now():
                raise ExecutionStuck(f"{self._cannot_claim(due)} ({self._state(ex)})")
            if limit is not None and due > limit:
                raise ExecutionStuck(
                    f"{goal} not reached within {within!r}: the next work is due at "
                    f"{due.isoformat()} ({self._state(ex)})\n" + self.history(execution_id).format()
                )
            self.clock.set(due)
        raise ExecutionStuck(
            f"{_MAX_CLAIMS} claims without reaching {goal}\n" + self.history(execution_id).format()
        )

    def _state(self, ex: Execution) -> str:
        """Where the execution is, said so that a test author knows what to do next."""
        step = f"step {ex.current_step!r}"
        if ex.status == Status.PENDING:
            due = f", due at {ex.run_at.isoformat()}" if ex.run_at else ""
            return f"it is pending at {step}{due}"
        if ex.status == Status.RUNNING:
            return f"it is running {step}, claimed by another engine or worker"
        if ex.status != Status.WAITING:
            return f"it is {ex.status.value}"
        waits = self.list_waits(ex.id)
        parts = []
        for w in waits:
            until = f" until {w.until.isoformat()}" if w.until else " (no timeout)"
            names = ", ".join(map(repr, w.names))
            if w.kind == "sleep":
                parts.append(f"a sleep{until}")
            elif w.kind == "input":
                parts.append(f"the input {names}{until}: give it with provide_input()")
            else:
                several = f"{w.mode} of the events" if len(w.names) > 1 else "the event"
                parts.append(f"{several} {names}{until}: send it with send_event()")
        if not parts:
            wake = f"; it wakes at {ex.run_at.isoformat()}" if ex.run_at else ""
            parts.append(f"a wait whose record was not found{wake}")
        return f"it is waiting in {step}, for " + "; ".join(parts)

    def _limit(self, within: Duration | None) -> datetime | None:
        if within is None:
            return None
        return self.clock.now() + timedelta(milliseconds=to_ms(within, what="within="))

    def _cannot_claim(self, due: datetime) -> str:
        return (
            f"work was due at {due.isoformat()} but this engine claimed none of it: is the "
            f"workflow's module imported in this test (registered: {self.scheduler.workflows()})?"
        )

    # -- steps ---------------------------------------------------------------------------

    def override(
        self,
        step: str | Callable[..., Any],
        *,
        workflow: Any = None,
        fail: int | None = None,
        error: ErrorSpec | None = None,
        faults: Sequence[ErrorSpec | None] | None = None,
        returns: Any = UNSET,
        context: Mapping[str, Any] | None = None,
        takes: Duration | None = None,
    ) -> StepOverride:
        """Change what ``step`` (a name or the ``@step`` method) does on this engine.

        ``fail=N``: its first N attempts raise ``error`` (an exception or its class;
        default ``InjectedFault``); ``error`` alone: every attempt
        raises it. ``faults=[err_or_None, ...]``: attempt k raises ``faults[k-1]``.
        ``returns=`` / ``context={...}``: the step's body is not run; it returns that value
        / puts those context keys. ``takes=`` (ms or timedelta): each attempt takes that
        much virtual time, so step timeouts and the workflow deadline apply.
        Attempts still count, retry and time out as for the real step. The override lasts
        until ``.remove()``, the end of its ``with`` block, or the engine's close.
        ``workflow=`` is needed only when the step name is in several workflows.
        """
        wdef, name = resolve_step(step, workflow)
        ov = StepOverride.build(
            wdef,
            name,
            fail=fail,
            error=error,
            faults=faults,
            returns=returns,
            context=context,
            takes=takes,
            clock=self.clock,
        )
        self._overrides.add(ov)
        return ov

    def history(self, execution_id: str) -> History:
        """Every step attempt of the execution, for assertions (see ``History``)."""
        return History(self.get_execution(execution_id, include_steps=True))

    def close(self, timeout: float | None = 30.0) -> None:
        self._overrides.clear()
        super().close(timeout)
        if self._owns_clock:
            self.clock.close()
