"""Running one claimed execution: its steps in order until it ends, waits or is released.

Every state change goes through one store transition, fenced by the claim's token. The
executor keeps nothing that matters in memory: attempt numbers, the retry budget in force,
the context and the step pointer are all in the store. A transition whose commit was
interrupted (a dropped connection, a database restart) is tried again while the claim
lasts, under the same write id, so a try that did commit is recognised and not repeated.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import itertools
import json
import logging
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from durable._deploy import position_problem, unit_probes
from durable._invoke import AsyncRunner, Outcome, error_info, invoke
from durable._json import MAX_DEPTH, clone, normalise, to_json
from durable._limits import MAX_LOST_ATTEMPTS
from durable._merge import branch_writes, merge
from durable._recovery import changes
from durable._runtime import OwnerCalls, StepRun, StoreInterrupt, Suspend
from durable._saga import plan, run_compensations
from durable._starts import child_id, new_row, store_new
from durable.clock import Clock
from durable.dsl import StepDef, WorkflowDef, get_workflow, plan_of
from durable.errors import (
    ContextConflict,
    DurableError,
    ExecutionNotFound,
    InvalidDecision,
    LeaseLost,
    ParallelFailed,
    SerializationError,
    StepNotFound,
    StepTimeout,
    StoreError,
    TooManyStepRuns,
    WaitTimeout,
    WorkerLost,
    WorkflowChanged,
    WorkflowTimeout,
)
from durable.hookspecs import StepCall
from durable.models import Status, StepExecution, StepPhase, StepStatus, Wait, WaitSpec
from durable.retry import Retry
from durable.stores.base import ExecutionRow, Store, Unit, UnitOutcome, cancel_error

if TYPE_CHECKING:
    from durable.plugins import PluginHost

log = logging.getLogger("durable.executor")

T = TypeVar("T")

# Pauses between tries of a transition whose commit failed, in real seconds: the first
# try again is at once (a dropped connection is replaced by a new one), then they back off.
_COMMIT_BACKOFF = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)

# Write ids: unique per process (a random prefix) and per transition (a counter); cheaper
# than a uuid per commit, and short, so every fenced write stores little.
_WRITER = uuid.uuid4().hex[:16]
_writes = itertools.count()
_ONE_ATTEMPT = Retry(max_attempts=1)
#: how long an execution handed back to the code that started it waits before it is
#: claimable again
HAND_BACK = timedelta(seconds=5)
#: how often a process tells the store the plans of the code it runs ...
PLAN_REFRESH = timedelta(seconds=20)
#: ... and how long after the last time a plan counts as alive
PLAN_LIVE = timedelta(seconds=60)
# how many executions' input and context a worker keeps for their units (see _parent_data)
_PARENTS_KEPT = 8
# what a transition returns when a cancel met it: the execution ended, or its
# compensations start (the walk stops either way)
_STOPPED = (Status.CANCELLED, Status.COMPENSATING)
# units a join reads per page
_PAGE = 1000


def _new_writer() -> None:
    global _WRITER
    _WRITER = uuid.uuid4().hex[:16]  # a forked child must not reuse its parent's ids


os.register_at_fork(after_in_child=_new_writer)


def _write_id() -> str:
    return f"{_WRITER}{next(_writes):x}"


@dataclass(slots=True)
class Claim:
    """A claim held by this process; ``lost`` is set when a heartbeat finds it stale."""

    execution_id: str
    token: int
    expires: datetime | None = None
    lost: bool = False


@dataclass(slots=True)
class _Walk:
    """Where the executor is in one claimed execution."""

    row: ExecutionRow
    claim: Claim
    wdef: WorkflowDef
    stop_at: Callable[[str], bool]
    interrupted: Callable[[], None] | None  # told of a KeyboardInterrupt before the release
    index: int
    attempt: int
    context: dict[str, Any]
    in_flight_since: datetime | None  # the current attempt's start, while one is in flight
    begun: bool  # the claim (or this walk) began the attempt in flight; else it was lost
    visit: int  # the current step run is (execution, step, visit)
    visits: dict[str, int]  # the latest visit of each step reached
    resumed: bool  # the current step run already ran (it is resumed after a wait)
    alias: str | None = None  # the current run's recorded name, when the step was renamed

    @property
    def eid(self) -> str:
        return self.row.id

    @property
    def token(self) -> int:
        return self.row.token

    @property
    def sdef(self) -> StepDef:
        if self.row.unit is not None:
            return self.wdef.step(self.wdef.current_name(self.row.unit) or self.row.unit)
        return self.wdef.steps[self.index]

    @property
    def name(self) -> str:
        """The current step run's name: a unit's is its own ("group.step", "step[i]")."""
        if self.row.unit is not None:
            return self.row.unit
        # a step renamed (renamed_from) while this run of it was under way keeps the name
        # it began under until the run ends: its waits, children and units are under it
        return self.alias or self.sdef.name

    @property
    def policy(self) -> Retry:
        if self.row.unit is None and self.sdef.fans_out:
            return _ONE_ATTEMPT
        return self.sdef.policy(self.wdef.default_retry)

    def record(
        self,
        status: StepStatus,
        started: datetime,
        ended: datetime | None,
        error: dict[str, Any] | None = None,
        logs: list[dict[str, Any]] | None = None,
        result: Any = None,
    ) -> StepExecution:
        """The record of the current attempt."""
        return StepExecution(
            self.name,
            status,
            self.attempt,
            started,
            ended,
            error,
            list(logs or ()),
            self.index,
            self.policy.max_attempts,
            result=result,
            visit=self.visit,
        )

    def label(self) -> str:
        """The attempt, for log lines."""
        return (
            f"{self.wdef.name} {self.eid} step {self.name!r} "
            f"attempt {self.attempt}/{self.policy.max_attempts}"
        )


class Executor:
    """Runs claimed executions for one engine."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        plugins: PluginHost,
        runner: AsyncRunner,
        lease_ms: int,
    ) -> None:
        self.store = store
        self.clock = clock
        self.plugins = plugins
        self.runner = runner
        self.lease_ms = lease_ms
        # the input and context of the executions whose units ran last, shared by this
        # executor's threads (items only read them): (parent, step, visit) -> (input, ctx)
        self._parents: OrderedDict[
            tuple[Any, ...], tuple[Any, dict[str, Any], datetime, dict[str, Any] | None]
        ] = OrderedDict()
        self._parents_lock = threading.Lock()
        #: called after a child workflow was started (the scheduler wakes its workers)
        self.wake_workers: Callable[[], None] = lambda: None
        #: what durable.context.engine() gives a running step (the Engine)
        self.owner: Any = None
        # the attempts running here, by the id of the row they run (an execution's or a
        # unit's): a cancel that reaches one stops it (see cancel_runs)
        self._running: dict[str, StepRun] = {}
        # the executions and units claimed here, and those of them a cancel reached (seen
        # at the next checkpoint, even between two steps)
        self._claimed: set[str] = set()
        self._cancelled: set[str] = set()
        self._running_lock = threading.Lock()
        # (workflow, plan) -> when this process last told the store it runs that plan,
        # and whether it said so as a worker
        self._noted: dict[tuple[str, str], tuple[datetime, bool]] = {}
        #: who this process is, to the store's plans (the engine's worker id)
        self.process = ""

    # -- plans: which code started an execution (rolling deploys) -------------------------

    def note_plan(self, wdef: WorkflowDef, *, worker: bool = False) -> None:
        """Tell the store that this process runs ``wdef`` as it is now (its plan), as a
        worker or only starting executions: at most once per ``PLAN_REFRESH``, so that
        the store knows which code is alive where."""
        key, now = (wdef.name, wdef.plan), self.clock.now()
        told = self._noted.get(key)
        if (
            told is None
            or now - told[0] >= PLAN_REFRESH
            or now < told[0]
            or (worker and not told[1])
        ):
            self.store.note_plan(wdef.name, wdef.plan, process=self.process, worker=worker, now=now)
            self._noted[key] = (now, worker or (told is not None and told[1]))

    def _shape_of(self, row: ExecutionRow) -> dict[str, Any] | None:
        """The workflow shape ``row``'s execution started with (a unit's: its
        execution's, read with its input and context)."""
        return row.shape if row.unit is None else self._parent_entry(row)[3]

    def _other_code_alive(self, row: ExecutionRow, wdef: WorkflowDef) -> datetime | None:
        """When another process that has the code that started ``row`` (a plan that
        differs from this code's) was last seen, if that code should run it: a worker of
        it seen within ``PLAN_LIVE`` (a rolling deploy: each execution runs on the code
        that started it), or any process of it, when this code lacks some of its steps
        (its workers are coming; this code would skip those steps without a word).
        None when this code runs it: the same plan, a position the starting code does
        not have (other code moved it on), or code no process has run lately (its
        deploy is over: the deploy rules of ``durable check`` apply)."""
        shape = self._shape_of(row)
        if shape is None or wdef.same_shape(shape) or not _has_step(shape, row.step_name):
            return None
        by_worker, by_any = self.store.plan_seen(wdef.name, plan_of(shape), besides=self.process)
        now = self.clock.now()
        if by_worker is not None and now - by_worker <= PLAN_LIVE:
            return by_worker
        if by_any is not None and now - by_any <= PLAN_LIVE and _lacks_steps(wdef, shape):
            return by_any
        log.info(
            "durable: running %s of workflow %r, started by other code (steps %s) that no "
            "worker has run since %s, with this code (steps %s)",
            row.id,
            wdef.name,
            ", ".join(_flow_names(shape)),
            "(never seen)" if by_worker is None else by_worker.isoformat(),
            ", ".join(s.name for s in wdef.steps),
        )
        return None

    def _hand_back(
        self,
        row: ExecutionRow,
        claim: Claim,
        wdef: WorkflowDef,
        shape: Mapping[str, Any],
        seen: datetime,
    ) -> None:
        """Give back, untouched, a claim on an execution that other code (of ``shape``)
        started while that code is alive (claimable again after ``HAND_BACK``)."""
        now = self.clock.now()
        later = now + HAND_BACK
        log.warning(
            "durable: %s of workflow %r was started by other code (steps %s), which a "
            "process ran at %s; this worker's code has steps %s: handing it back for a "
            "worker with that code (claimable again at %s; once no process has run that "
            "code for %d s, any worker runs it)",
            row.id if row.unit is None else f"{row.parent_id} (its unit {row.unit!r})",
            wdef.name,
            ", ".join(_flow_names(shape)),
            seen.isoformat(),
            ", ".join(s.name for s in wdef.steps),
            later.isoformat(),
            PLAN_LIVE.total_seconds(),
        )
        eid, token, ran = row.id, row.token, not row.began
        self._commit(
            claim,
            "handing back an execution other code started",
            lambda wid: self.store.release(
                eid, token, now=now, attempt_ran=ran, run_at=later, write_id=wid
            ),
        )

    def running_ids(self) -> list[str]:
        """The ids of the executions and units claimed (and running) here now."""
        with self._running_lock:
            return list(self._claimed | set(self._running))

    def cancel_runs(self, execution_ids: set[str]) -> None:
        """A cancel was requested for these executions or units: their attempts running
        here are flagged (and an async one cancelled at its current await), and the next
        checkpoint of the others claimed here sees it."""
        with self._running_lock:
            self._cancelled |= execution_ids & self._claimed
            runs = [run for rid, run in self._running.items() if rid in execution_ids]
        for run in runs:
            if not run.cancel_requested:
                log.info(
                    "durable: cancelling step %r of %s while it runs", run.step, run.execution_id
                )
                run.request_cancel()

    # -- observers -----------------------------------------------------------------------

    def _notify(
        self,
        hook: str,
        execution_id: str,
        snapshot: Callable[[], ExecutionRow] | None = None,
        **kwargs: Any,
    ) -> None:
        """Call an observer hook (only when a plugin implements it). ``snapshot`` builds
        the execution as the transition just committed it, saving a read; without one
        the execution is read back from the store."""
        if not self.plugins.has_observers(hook):
            return
        row = snapshot() if snapshot is not None else self.store.get(execution_id)
        if row is None:
            return
        if row.unit is not None:
            # A unit is a part of its execution: its own start and end are not the
            # workflow's, and its steps are reported under the execution's id.
            if hook.startswith("durable_workflow_"):
                return
            row = dataclasses.replace(row, id=row.parent_id or row.id)
        self.plugins.notify(hook, execution=row.to_execution(), **kwargs)

    def claimed(self, row: ExecutionRow, claimed_at: datetime) -> None:
        """Tell the observers of a claim just made (``durable_execution_claimed``)."""
        self._notify(
            "durable_execution_claimed", row.id, lambda: row, claimed_at=claimed_at, due=row.due_at
        )

    # -- committing ----------------------------------------------------------------------

    def _commit(self, claim: Claim, what: str, write: Callable[[str], T]) -> T:
        """``write(write_id)``, tried again while the claim lasts when the store fails.

        Every try passes the same write id, so a try whose commit went through (only its
        reply was lost) is recognised by the store and not applied twice. LeaseLost is
        final; any other store error is retried until the lease (as last renewed) ends or
        the pauses add up to a lease, whichever is first: then it is raised, the claim
        lapses, and the next owner runs the attempt again."""
        write_id = _write_id()
        paused = 0.0
        for tries in itertools.count():
            try:
                result = write(write_id)
            except LeaseLost:
                raise
            except StoreError as exc:
                delay = _COMMIT_BACKOFF[min(tries, len(_COMMIT_BACKOFF) - 1)]
                expires = claim.expires
                over = expires is not None and (
                    self.clock.now() + timedelta(seconds=delay) >= expires
                )
                if claim.lost or over or paused + delay > self.lease_ms / 1000:
                    raise
                log.warning(
                    "durable: %s of %s did not commit (%s); trying again in %.2f s",
                    what,
                    claim.execution_id,
                    exc,
                    delay,
                )
                if delay:
                    # Real time, not the engine's clock: this waits for a database to come
                    # back, and a test clock that stands still must not stop that.
                    threading.Event().wait(delay)
                paused += delay
                continue
            if tries:
                log.info(
                    "durable: %s of %s committed after %d more tries",
                    what,
                    claim.execution_id,
                    tries,
                )
            return result
        raise AssertionError("unreachable")  # itertools.count() never ends; for mypy

    # -- the step loop -------------------------------------------------------------------

    def run(
        self,
        row: ExecutionRow,
        claim: Claim,
        stop_at: Callable[[str], bool] = lambda _: False,
        interrupted: Callable[[], None] | None = None,
    ) -> None:
        """Run ``row`` (just claimed) until it finishes, is rescheduled or is released.

        ``stop_at(next_step_name)`` is asked between steps: when true the claim is
        released rather than the next step begun (a worker shutting down gracefully, a test
        stopping at a step). A KeyboardInterrupt or SystemExit (from the step, or Ctrl-C)
        releases the claim, the attempt left in flight for the next owner to run again,
        and is raised on."""
        with self._running_lock:
            self._claimed.add(row.id)
        try:
            self._run_claimed(row, claim, stop_at, interrupted)
        finally:
            with self._running_lock:
                self._claimed.discard(row.id)
                self._cancelled.discard(row.id)

    def _run_claimed(
        self,
        row: ExecutionRow,
        claim: Claim,
        stop_at: Callable[[str], bool],
        interrupted: Callable[[], None] | None,
    ) -> None:
        try:
            self._run(row, claim, stop_at, interrupted)
        except LeaseLost as exc:
            log.warning("durable: %s; this worker stops working on it", exc)
        except StepNotFound as exc:
            log.error("durable: %s", exc)
            error = error_info(exc)
            self.store.finish(
                row.id, row.token, now=self.clock.now(), status=Status.FAILED, error=error
            )
            self._notify("durable_workflow_failed", row.id, error=error)  # (alerting hears)
        except (StoreError, ExecutionNotFound) as exc:
            # The claim stays; once its lease expires any worker resumes the execution.
            log.warning(
                "durable: the store failed while running %s (%s); any worker resumes it once "
                "its lease expires",
                row.id,
                exc,
            )
        except Exception as exc:
            # A bug must not leave the execution running forever: fail it, visibly.
            log.exception("durable: internal error while running %s", row.id)
            error = error_info(exc)
            error["type"] = f"InternalError: {error['type']}"
            try:
                self.store.finish(
                    row.id, row.token, now=self.clock.now(), status=Status.FAILED, error=error
                )
            except Exception:
                log.exception("durable: could not record the internal error of %s", row.id)

    def _run(
        self,
        row: ExecutionRow,
        claim: Claim,
        stop_at: Callable[[str], bool],
        interrupted: Callable[[], None] | None,
    ) -> None:
        wdef = get_workflow(row.workflow)
        seen = self._other_code_alive(row, wdef)
        if seen is not None:
            self._hand_back(row, claim, wdef, self._shape_of(row) or {}, seen)
            return
        if row.phase == StepPhase.COMPENSATE:
            run_compensations(self, row, claim, stop_at)
            return
        w = _Walk(
            row=row,
            claim=claim,
            wdef=wdef,
            stop_at=stop_at,
            interrupted=interrupted,
            index=_resolve_step(wdef, row, *unit_probes(self.store, row)),
            attempt=row.attempt,
            context=row.context,
            in_flight_since=row.attempt_started_at,
            begun=row.began,
            visit=row.visit,
            visits=dict(row.visits),
            resumed=row.suspended,
        )
        if row.unit is None and row.step_name and row.step_name != w.sdef.name:
            w.alias = row.step_name  # renamed since this run of it began
        first_run = w.index == 0 and w.visit == 1 and not w.visits
        if first_run and w.attempt == 1 and w.begun and not row.suspended:
            self._notify("durable_workflow_started", w.eid, lambda: row)
        while True:
            verdict = self._begin(w)
            if verdict == "skipped":
                continue
            if verdict == "stop":
                return
            run, outcome, until = self._attempt(w)
            if outcome is None or not self._settle(w, run, outcome, until):
                return

    def _begin(self, w: _Walk) -> Literal["run", "skipped", "stop"]:
        """The checkpoint before an attempt runs: a lost claim, a cancel, a lost attempt,
        the workflow deadline, a stop, too many step runs, a ``when`` that says skip.
        ``"run"`` when the attempt is to run now; ``"skipped"`` when the step was skipped
        and the walk goes on with the next; ``"stop"`` when this claim is done."""
        now = self.clock.now()
        eid, token = w.eid, w.token
        if w.claim.lost:
            raise LeaseLost(f"heartbeat found the claim on {eid} taken over")
        with self._running_lock:
            if eid in self._cancelled:  # a cancel that came since the claim
                w.row.cancel_requested = True
        if w.row.cancel_requested:
            if self._compensate(w, now, cancel_error(w.row.cancel_reason)):
                return "stop"
            self._commit(
                w.claim,
                "cancelling",
                lambda wid: self.store.finish(
                    eid, token, now=now, status=Status.CANCELLED, error=None, write_id=wid
                ),
            )
            self._notify("durable_workflow_cancelled", eid, reason=w.row.cancel_reason)
            return "stop"
        lost = None
        if w.in_flight_since is not None and not w.begun:
            lost = w.record(StepStatus.LOST, w.in_flight_since, now, _worker_lost(w.row))
        if w.row.deadline is not None and now >= w.row.deadline:
            self._timeout_workflow(w, now, lost)
            return "stop"
        if lost is not None:
            if w.row.lost_attempts >= MAX_LOST_ATTEMPTS:
                log.warning(
                    "durable: %s was lost with its worker again (%d times already): this loss "
                    "counts as a failed attempt",
                    w.label(),
                    w.row.lost_attempts,
                )
                failed = dataclasses.replace(
                    lost, status=StepStatus.FAILED, error=_worker_lost(w.row, counted=True)
                )
                self._failed(w, failed, now)
                return "stop"
            log.warning(
                "durable: recovering %s, lost with its worker (loss %d of %d that are free); "
                "running it again",
                w.label(),
                w.row.lost_attempts + 1,
                MAX_LOST_ATTEMPTS,
            )
            self._commit(
                w.claim,
                "restarting a lost attempt",
                lambda wid: self.store.restart_attempt(
                    eid, token, now=now, record=lost, write_id=wid
                ),
            )
            w.row.lost_attempts += 1
            w.in_flight_since, w.begun = now, True
        if self._too_many_runs(w, now):
            return "stop"
        if w.row.unit is None and w.sdef.fans_out:
            return "skipped" if self._fan(w, now) else "stop"
        if w.sdef.when is not None and w.attempt == 1 and not w.resumed:
            try:
                runs = w.sdef.runs_on(w.context)
            except Exception as exc:
                # A condition that raises is the step's failed attempt (retried as such).
                error = error_info(exc)
                failed = w.record(StepStatus.FAILED, now, now, error)
                self._failed(w, failed, now, final=not w.policy.retries(exc))
                return "stop"
            if not runs:
                skipped = w.record(StepStatus.SKIPPED, now, now)
                return "skipped" if self._complete(w, skipped, w.context, now) else "stop"
        if w.stop_at(w.name):
            self._commit(
                w.claim,
                "releasing",
                lambda wid: self.store.release(
                    eid, token, now=now, attempt_ran=False, write_id=wid
                ),
            )
            return "stop"
        started = w.in_flight_since
        assert started is not None
        if self.plugins.has_observers("durable_step_started"):
            self._notify(
                "durable_step_started",
                eid,
                partial(
                    dataclasses.replace,
                    w.row,
                    context=w.context,
                    step_index=w.index,
                    step_name=w.name,
                    attempt=w.attempt,
                    attempt_started_at=started,
                    visit=w.visit,
                    visits=w.visits,
                ),
                step=w.record(StepStatus.RUNNING, started, None),
            )
        return "run"

    def _attempt(self, w: _Walk) -> tuple[StepRun, Outcome | None, datetime | None]:
        """Run the current attempt; None as the outcome when the claim was released
        under it (the engine is closing)."""
        sdef = w.sdef
        started = w.in_flight_since
        assert started is not None
        unit = w.row.unit is not None
        workflow_input, workflow_context, scheduled_at = (
            self._parent_data(w.row) if unit else (w.row.input, w.context, w.row.scheduled_at)
        )
        # An item reads its execution's input and context (shared by every item this
        # worker runs, read-only: the context API copies what an item reads); anything else
        # works on a copy of its own.
        item = unit and sdef.kind == "foreach"
        run = StepRun(
            w.eid,
            w.wdef.name,
            w.name,
            w.attempt,
            workflow_input if item else clone(workflow_input),
            workflow_context if item else clone(workflow_context),
            self.clock,
            visit=w.visit,
        )
        run.scheduled_at = scheduled_at
        run.waiter = partial(self._reach_wait, run, w.claim)
        run.starter = partial(self.start_child, run)
        run.engine = self.owner
        run.owner = OwnerCalls()
        call: Callable[[], Any] = partial(_call_step, w.wdef, sdef)
        if unit:
            run.workflow_id = w.row.parent_id
            if sdef.kind == "foreach":
                run.item_index = w.row.unit_index
                run.read_only = (
                    f"the context is read-only in foreach item {w.name!r}; return the "
                    "item's result instead (it is stored in the step's list)"
                )
                call = partial(_call_item, w.wdef, sdef, clone(w.row.item))
            else:
                run.ops = {}
        if self.plugins.wraps_steps:
            # The around-step hook runs inside the attempt: on its thread for a sync step,
            # in its task on the event loop for an async one.
            step_call = StepCall(
                workflow=w.wdef.name,
                execution_id=w.row.parent_id if unit and w.row.parent_id else w.eid,
                step=w.name,
                attempt=w.attempt,
                visit=w.visit,
                is_async=sdef.is_async,
                body=call,
                headers=w.row.headers,
            )
            call = partial(
                self.plugins.call_step_async if sdef.is_async else self.plugins.call_step,
                step_call,
            )
        until = self._until(sdef, started, w.row.deadline)
        with self._running_lock:
            self._running[w.row.id] = run
        try:
            outcome = invoke(
                call, run, is_async=sdef.is_async, until=until, clock=self.clock, runner=self.runner
            )
        except (KeyboardInterrupt, SystemExit) as stop:
            run.close()
            # The process is stopping: hand the execution back with the attempt in flight;
            # its next owner runs it again (a lost attempt, not a failed one).
            log.warning(
                "durable: %s interrupted by %s; releasing it to run again",
                w.label(),
                type(stop).__name__,
            )
            if w.interrupted is not None:
                w.interrupted()
            self._release_in_flight(w)
            raise
        finally:
            with self._running_lock:
                self._running.pop(w.row.id, None)
        run.close()  # an abandoned attempt can no longer write context or add logs
        if outcome.interrupted:
            # Shutting down: hand the execution back with the attempt still marked in
            # flight, so the next owner counts it as lost at once, without a lease wait.
            self._release_in_flight(w)
            return run, None, until
        return run, outcome, until

    def _release_in_flight(self, w: _Walk) -> None:
        eid, token, now = w.eid, w.token, self.clock.now()
        self._commit(
            w.claim,
            "releasing",
            lambda wid: self.store.release(eid, token, now=now, attempt_ran=True, write_id=wid),
        )

    def _settle(self, w: _Walk, run: StepRun, outcome: Outcome, until: datetime | None) -> bool:
        """Commit how the attempt ended. True when the walk goes on to the next step in
        this claim."""
        sdef = w.sdef
        started = w.in_flight_since
        assert started is not None
        logs = list(run.logs)
        now = self.clock.now()
        error: dict[str, Any] | None = None
        if isinstance(outcome.error, StoreInterrupt):
            raise outcome.error.error  # handled by run(): lost claim or store error
        if run.cancel_requested:
            # Cancelled while it ran: whatever it did is discarded. The store, seeing the
            # cancel request, ends the execution (or starts its compensations).
            stopped = w.record(
                StepStatus.FAILED,
                started,
                now,
                {
                    "type": "Cancelled",
                    "message": "cancelled while it ran; its result was discarded",
                    "traceback": "",
                },
                logs,
            )
            eid, token = w.eid, w.token
            status = self._commit(
                w.claim,
                "discarding a cancelled attempt",
                lambda wid: self.store.fail_attempt(
                    eid, token, now=now, record=stopped, retry_at=None, error=None, write_id=wid
                ),
            )
            if status == Status.CANCELLED:
                self._notify("durable_workflow_cancelled", eid, reason=w.row.cancel_reason)
            return False
        if isinstance(outcome.error, Suspend):
            self._suspend(
                w, outcome.error, w.record(StepStatus.SUSPENDED, started, now, None, logs)
            )
            return False
        result: Any = None
        new_context: dict[str, Any] = {}
        if outcome.timed_out:
            # The attempt ended at its deadline, even when the clock jumped past it
            # (a test clock moved by hours at once): timeouts and retries count from it.
            if until is not None and until < now:
                now = until
            if w.row.deadline is not None and now >= w.row.deadline:
                failed = w.record(
                    StepStatus.FAILED, started, now, _timeout_error(w.row, w.wdef), logs
                )
                self._timeout_workflow(w, now, failed)
                return False
            error = error_info(
                StepTimeout(
                    f"step {w.name!r} attempt {w.attempt} ran past its timeout of "
                    f"{sdef.timeout} ms; its result was discarded"
                )
            )
        elif outcome.error is not None:
            error = error_info(outcome.error)
            if not w.policy.retries(outcome.error):
                self._failed(
                    w, w.record(StepStatus.FAILED, started, now, error, logs), now, final=True
                )
                return False
        elif w.row.unit is not None:
            try:
                result, new_context = self._unit_result(w, run, outcome.result)
            except SerializationError as exc:
                error = error_info(exc)
        else:
            result = self._result(w, outcome.result, logs)
            try:
                if sdef.kind == "decision":
                    w.wdef.check_decision(sdef.name, result)
                new_context = json.loads(
                    to_json(
                        run.context,
                        f"the context after step {sdef.name!r}",
                        max_depth=MAX_DEPTH + 1,  # each value may nest MAX_DEPTH levels
                    )
                )
            except (SerializationError, InvalidDecision) as exc:
                error = error_info(exc)
        if error is not None:
            self._failed(w, w.record(StepStatus.FAILED, started, now, error, logs), now)
            return False
        done = w.record(StepStatus.COMPLETED, started, now, None, logs, result)
        return self._complete(w, done, new_context, now)

    def _result(self, w: _Walk, value: Any, logs: list[dict[str, Any]]) -> Any:
        """What the attempt returned, as stored. A value that is not JSON does not fail an
        attempt that has done its work (retrying it would repeat that work): it is not
        stored, and a warning says so, in the worker's log and in the attempt's logs."""
        try:
            return normalise(value, f"the return value of step {w.name!r}")
        except SerializationError as exc:
            message = f"{exc} The attempt completed; its return value was not stored."
            log.warning("durable: %s: %s", w.label(), message)
            logs.append(
                {
                    "time": self.clock.now().isoformat(),
                    "level": "WARNING",
                    "logger": "durable.executor",
                    "message": message,
                }
            )
            return None

    def _complete(
        self, w: _Walk, done: StepExecution, new_context: dict[str, Any], now: datetime
    ) -> bool:
        eid, token, wdef = w.eid, w.token, w.wdef
        if w.row.unit is not None:
            return self._complete_unit(w, done, new_context, now)
        # (kept with the record: engine.fork and engine.retry rebuild contexts from them)
        done = dataclasses.replace(done, changes=changes(w.context, new_context))
        upcoming = wdef.next_step(done.name, done.result)
        next_step = None if upcoming is None else (wdef.step_index(upcoming.name), upcoming.name)
        # The next step run's journal key: a step reached again starts a new visit.
        visits = {**w.visits, done.name: w.visit}
        next_visit = 1
        if upcoming is not None:
            # (a step renamed since its earlier visits goes on counting from them, under
            # its new name only: no visit number is used twice, none counted twice)
            earlier = [visits.pop(old, 0) for old in upcoming.renamed_from]
            next_visit = max([visits.get(upcoming.name, 0), *earlier]) + 1
            visits[upcoming.name] = next_visit
        next_budget = 1 if upcoming is None else wdef.budget(upcoming)
        start_next = (
            upcoming is not None
            and not w.stop_at(upcoming.name)
            and not w.claim.lost
            and (w.row.deadline is None or now < w.row.deadline)
        )
        status = self._commit(
            w.claim,
            f"completing step {done.name!r}",
            lambda wid: self.store.complete_step(
                eid,
                token,
                now=now,
                record=done,
                context=new_context,
                next_step=next_step,
                start_next=start_next,
                next_max_attempts=next_budget,
                visits=visits if upcoming is not None else None,
                write_id=wid,
            ),
        )
        if status in _STOPPED:  # a cancel met here: ended, or compensations start
            if status == Status.CANCELLED:
                self._notify("durable_workflow_cancelled", eid, reason=w.row.cancel_reason)
            return False
        # (built once, for both observers of a last step)
        after = functools.cache(
            partial(
                dataclasses.replace,
                w.row,
                status=status,
                context=new_context,
                step_index=w.index if next_step is None else next_step[0],
                step_name=done.name if next_step is None else next_step[1],
                attempt=w.attempt if next_step is None else (1 if start_next else 0),
                attempt_started_at=now if start_next else None,
                completed_at=now if next_step is None else None,
                visit=w.visit if next_step is None else next_visit,
                visits=w.visits if next_step is None else visits,
            )
        )
        self._notify("durable_step_completed", eid, after, step=done)
        if status == Status.COMPLETED:
            log.debug("durable: %s %s completed", wdef.name, eid)
            self._notify("durable_workflow_completed", eid, after)
            return False
        w.context = new_context
        assert next_step is not None
        w.index, w.alias = next_step[0], None
        w.visit, w.visits = next_visit, visits
        w.resumed = False
        w.attempt = 1 if start_next else 0
        w.in_flight_since = now if start_next else None
        w.begun = start_next
        w.row.lost_attempts = 0
        return True  # not started: the next checkpoint says why (a stop, a lost claim...)

    # -- parallel groups and foreach: fork, units, join ------------------------------------

    def _fan(self, w: _Walk, now: datetime) -> bool:
        """The walk is at a parallel group or foreach: fork its units (first time) or join
        them (resumed after they ended). True when the walk goes on to the next step."""
        if not w.resumed:
            self._fork(w, now)
            return False
        return self._join(w, now)

    def _fork(self, w: _Walk, now: datetime) -> None:
        sdef, wdef = w.sdef, w.wdef
        units: Sequence[Unit]
        if sdef.kind == "parallel":
            units = [
                Unit(b.name, i, context=clone(w.context), max_attempts=wdef.budget(b))
                for i, b in enumerate(sdef.branches)
            ]
            concurrency = None
        else:
            try:
                items = _items(sdef, w.context)
            except ForeachError as exc:
                failed = w.record(StepStatus.FAILED, now, now, error_info(exc))
                self._failed(w, failed, now)
                return
            budget = sdef.policy(wdef.default_retry).max_attempts
            units = _ItemUnits(sdef, items, budget)
            concurrency = sdef.concurrency
        eid, token = w.eid, w.token
        status = self._commit(
            w.claim,
            f"starting the units of {sdef.name!r}",
            lambda wid: self.store.fork(
                eid,
                token,
                now=now,
                step=w.name,
                visit=w.visit,
                units=units,
                concurrency=concurrency,
                stops_group=sdef.fail_fast,
                write_id=wid,
            ),
        )
        if status == Status.CANCELLED:
            self._notify("durable_workflow_cancelled", eid, reason=w.row.cancel_reason)

    def _join(self, w: _Walk, now: datetime) -> bool:
        """Every unit ended (or, fail-fast, one failed): merge, or fail the execution."""
        sdef = w.sdef
        started = now
        failed: list[UnitOutcome] = []
        results: list[Any] = []  # what the units kept, in order, while none failed
        for u in self._outcomes(w.eid, w.name, w.visit):
            started = min(started, u.created_at)
            if u.status in (Status.FAILED, Status.CANCELLED):
                failed.append(u)
                results.clear()
            elif not failed:
                results.append((u.name, u.result or {}) if sdef.kind == "parallel" else u.result)
        error: dict[str, Any] | None = None
        new_context: dict[str, Any] = {}
        if failed:
            error = _group_error(sdef, failed)
        else:
            try:
                if sdef.kind == "parallel":
                    new_context = merge(w.context, results)
                else:
                    new_context = {**w.context, sdef.into or sdef.name: results}
            except ContextConflict as exc:
                error = {
                    **error_info(exc),
                    "traceback": "",
                    "key": exc.key,
                    "branches": list(exc.branches),
                }
        if error is not None:
            self._failed(w, w.record(StepStatus.FAILED, started, now, error), now)
            return False
        done = w.record(StepStatus.COMPLETED, started, now)
        return self._complete(w, done, new_context, now)

    def _outcomes(self, eid: str, step: str, visit: int) -> Iterator[UnitOutcome]:
        """Every unit of a group run, by index, read a page at a time."""
        return self.store.each_unit_outcome(eid, step, visit, page=_PAGE)

    def _parent_data(self, row: ExecutionRow) -> tuple[Any, dict[str, Any], datetime]:
        """A unit's execution's input, context (as at the fork: the execution waits at
        the group meanwhile) and scheduled_at, read once per group run while its units run
        here, and held once for all threads (a foreach's context can be as large as its
        item list)."""
        found = self._parent_entry(row)
        return found[0], found[1], found[2]

    def _parent_entry(
        self, row: ExecutionRow
    ) -> tuple[Any, dict[str, Any], datetime, dict[str, Any] | None]:
        """``_parent_data`` and the shape the execution started with."""
        key = (row.parent_id, row.group_step, row.group_visit)
        with self._parents_lock:
            cached = self._parents.get(key)
            if cached is not None:
                self._parents.move_to_end(key)
                return cached
        parent = self.store.get(row.parent_id or "")
        if parent is None:
            raise ExecutionNotFound(f"unit {row.id} belongs to no execution (purged?)")
        entry = (parent.input, parent.context, parent.scheduled_at, parent.shape)
        with self._parents_lock:
            self._parents[key] = entry
            while len(self._parents) > _PARENTS_KEPT:
                self._parents.popitem(last=False)
        return entry

    def _unit_result(self, w: _Walk, run: StepRun, value: Any) -> tuple[Any, dict[str, Any]]:
        """What a unit that returned keeps: a branch its writes (and its context), an item
        its return value. SerializationError names what is not JSON."""
        if w.sdef.kind == "foreach":
            return normalise(value, f"the result of item {w.row.unit_index} ({w.name!r})"), {}
        final = json.loads(
            to_json(run.context, f"the context after branch {w.name!r}", max_depth=MAX_DEPTH + 1)
        )
        return branch_writes(w.row.context, final, run.ops or {}), final

    def _complete_unit(
        self, w: _Walk, done: StepExecution, new_context: dict[str, Any], now: datetime
    ) -> bool:
        eid, token = w.eid, w.token
        result = done.result
        # (a branch's result is its writes, for the merge: not what its step returned)
        done = dataclasses.replace(done, result=result if w.sdef.kind == "foreach" else None)
        status = self._commit(
            w.claim,
            f"completing {w.name!r}",
            lambda wid: self.store.complete_step(
                eid,
                token,
                now=now,
                record=done,
                context=new_context,
                next_step=None,
                start_next=False,
                result=result,
                write_id=wid,
            ),
        )
        if status not in _STOPPED:
            self._notify("durable_step_completed", eid, step=done)
        return False

    # -- waits ---------------------------------------------------------------------------

    def _reach_wait(self, run: StepRun, claim: Claim, spec: WaitSpec) -> Any:
        """Called in the step by a wait: its recorded result, the timeout value, a
        WaitTimeout, or Suspend (not resolved yet)."""
        if run.closed:
            raise LeaseLost(f"step {run.step!r} attempt {run.attempt} was abandoned")
        seq = run.waits
        run.waits += 1
        owner = run.owner
        assert owner is not None
        child = spec.child
        step_context = None
        if child is not None:
            # The child's id is its call position in this step run: a resumed or retried
            # step finds the child it started and waits for that one.
            cid = child_id(run.execution_id, run.step, run.visit, f"call{seq}")
            spec = dataclasses.replace(spec, names=(cid,), child=None)
            if self.plugins.gives_headers:
                step_context = contextvars.copy_context()  # (see _start_child)

        def decide() -> Wait:
            # Deciding a wait is safe to repeat (it finds what an earlier try recorded).
            wait = self._commit(
                claim,
                f"reaching a wait of step {run.step!r}",
                lambda _wid: self.store.wait(
                    run.execution_id,
                    claim.token,
                    now=self.clock.now(),
                    step=run.step,
                    visit=run.visit,
                    seq=seq,
                    attempt=run.attempt,
                    spec=spec,
                ),
            )
            if child is not None and wait.status == "pending":
                # After the wait is recorded, so that the child's end always finds it.
                self._start_child(run, spec.names[0], child, step_context)
            return wait

        try:
            wait = owner.call(decide)
        except (StoreError, ExecutionNotFound) as exc:
            # Not the step's business: a step's `except Exception` must not turn a lost
            # claim or a database outage into its own fallback path.
            raise StoreInterrupt(exc) from exc
        if wait.status == "resolved":
            return spec.shape(wait.result)
        if wait.status == "timed_out":
            if spec.has_timeout_value:
                return clone(spec.timeout_value)
            raise WaitTimeout(
                f"step {run.step!r} waited for {spec.describe()} until "
                f"{wait.until.isoformat() if wait.until else '?'} and nothing came"
            )
        raise Suspend(spec, seq, wait.until)

    def _start_child(
        self,
        run: StepRun,
        cid: str,
        child: tuple[str, Any, str | None, int | None],
        step_context: contextvars.Context | None = None,
    ) -> str:
        """Start the child workflow ``cid`` of the running step, once (a second start
        finds it). Called on the executor's thread; ``step_context``: the context
        variables of the step's own thread or task, where the plugins are asked for the
        child's headers (so a trace span the step is in is the child's parent)."""
        name, value, queue, timeout_ms = child
        wdef = get_workflow(name)
        row = new_row(
            wdef,
            value,
            now=self.clock.now(),
            queue=wdef.queue if queue is None else queue,
            execution_id=cid,
            parent_id=run.workflow_id or run.execution_id,
            parent_step=run.step,
            timeout_ms=timeout_ms,
        )
        try:
            self.note_plan(wdef)
        except DurableError as exc:  # (bookkeeping: the child's own write says more)
            log.warning("durable: could not note the plan of %r: %s", wdef.name, exc)
        # (not for a child started already: a resumed or retried step finds it)
        if self.plugins.gives_headers and self.store.get(cid) is None:
            ask = partial(self.plugins.execution_headers, wdef.name, cid, "child")
            row.headers = ask() if step_context is None else step_context.run(ask)
        stored, created = store_new(self.store, row)
        if created:
            self.wake_workers()
        return stored.id

    def start_child(self, run: StepRun, child: tuple[str, Any, str | None, int | None]) -> str:
        """``start_workflow`` in a step: start a child at the step run's next start
        position (once) and return its id."""
        position = run.starts
        run.starts += 1
        cid = child_id(run.execution_id, run.step, run.visit, f"start{position}")
        owner = run.owner
        assert owner is not None
        step_context = contextvars.copy_context() if self.plugins.gives_headers else None
        try:
            return str(owner.call(lambda: self._start_child(run, cid, child, step_context)))
        except (StoreError, ExecutionNotFound) as exc:
            raise StoreInterrupt(exc) from exc

    def _suspend(self, w: _Walk, signal: Suspend, record: StepExecution) -> None:
        now = record.completed_at or self.clock.now()
        eid, token = w.eid, w.token
        status = self._commit(
            w.claim,
            "suspending on a wait",
            lambda wid: self.store.suspend(
                eid,
                token,
                now=now,
                record=record,
                step=w.name,
                visit=w.visit,
                seq=signal.seq,
                write_id=wid,
            ),
        )
        if status == Status.CANCELLED:
            self._notify("durable_workflow_cancelled", eid, reason=w.row.cancel_reason)
        elif status == Status.WAITING:
            timers = [t for t in (signal.until, w.row.deadline) if t is not None]
            self._notify(
                "durable_step_suspended", eid, step=record, until=min(timers, default=None)
            )

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _until(sdef: StepDef, started: datetime, deadline: datetime | None) -> datetime | None:
        until = deadline
        if sdef.timeout is not None:
            step_until = started + timedelta(milliseconds=sdef.timeout)
            until = step_until if until is None else min(until, step_until)
        return until

    def _failed(
        self, w: _Walk, record: StepExecution, now: datetime, *, final: bool = False
    ) -> None:
        """Schedule the next attempt, or (none left, or ``final``: the error is not
        retryable) fail the step: its execution, its group, or into compensations."""
        eid, token, row = w.eid, w.token, w.row
        error = record.error or {}
        if record.attempt < record.max_attempts and not final:
            retry_at = now + timedelta(milliseconds=w.policy.delay_ms(record.attempt))
            if row.deadline is not None:
                retry_at = min(retry_at, row.deadline)
            record = dataclasses.replace(record, retry_at=retry_at)
            log.warning(
                "durable: %s failed (%s: %s); retrying at %s",
                w.label(),
                error.get("type"),
                error.get("message"),
                retry_at.isoformat(),
            )
            retried = record
            status = self._commit(
                w.claim,
                "scheduling a retry",
                lambda wid: self.store.fail_attempt(
                    eid,
                    token,
                    now=now,
                    record=retried,
                    retry_at=retry_at,
                    error=None,
                    write_id=wid,
                ),
            )
            if status == Status.CANCELLED:
                self._notify("durable_workflow_cancelled", eid, reason=row.cancel_reason)
            elif status != Status.COMPENSATING:
                pending = dataclasses.replace(
                    row,
                    context=w.context,
                    visit=w.visit,
                    visits=w.visits,
                    status=Status.PENDING,
                    run_at=retry_at,
                    attempt=record.attempt,
                    step_index=record.index,
                    step_name=record.name,
                    attempt_started_at=None,
                )
                self._notify(
                    "durable_step_retrying", eid, lambda: pending, step=record, retry_at=retry_at
                )
            return
        # (a failed group's error already names the unit that failed, and its attempt)
        ended = {"step": record.name, "attempt": record.attempt, **error}
        if final:
            ended["retryable"] = False  # (why it ended with attempts left)
        if self._compensate(w, now, ended, record):
            self._notify("durable_step_failed", eid, step=record)
            return
        log.warning(
            "durable: %s failed %s (%s: %s); %s",
            w.label(),
            "with an error it does not retry" if final else "with no attempt left",
            error.get("type"),
            error.get("message"),
            "the execution failed" if w.row.unit is None else "its group ends",
        )
        status = self._commit(
            w.claim,
            "failing the execution",
            lambda wid: self.store.fail_attempt(
                eid, token, now=now, record=record, retry_at=None, error=ended, write_id=wid
            ),
        )
        if status in _STOPPED:
            if status == Status.CANCELLED:
                self._notify("durable_workflow_cancelled", eid, reason=row.cancel_reason)
            return
        self._notify("durable_step_failed", eid, step=record)
        self._notify("durable_workflow_failed", eid, error=ended)

    def _too_many_runs(self, w: _Walk, now: datetime) -> bool:
        """Fail the execution when the step run about to begin is one more than the
        workflow allows (every visit of every step counts); True when it did."""
        runs = sum({**w.visits, w.name: w.visit}.values())
        limit = w.wdef.max_step_runs
        if runs <= limit:
            return False
        exc = TooManyStepRuns(
            f"execution {w.eid} of workflow {w.wdef.name!r} was about to begin step run "
            f"{runs} (step {w.name!r}, visit {w.visit}), past its max_step_runs of "
            f"{limit}: a loop whose way out is never taken? If it is meant to run this "
            "long, raise @workflow(max_step_runs=...)"
        )
        error = {**error_info(exc), "traceback": "", "step": w.name}
        log.warning("durable: %s", exc)
        if self._compensate(w, now, error):
            return True
        self._commit(
            w.claim,
            "failing the execution (too many step runs)",
            lambda wid: self.store.finish(
                w.eid, w.token, now=now, status=Status.FAILED, error=error, write_id=wid
            ),
        )
        self._notify("durable_workflow_failed", w.eid, error=error)
        return True

    def _compensate(
        self,
        w: _Walk,
        now: datetime,
        error: dict[str, Any],
        record: StepExecution | None = None,
    ) -> bool:
        """The execution is about to fail (or be cancelled): when completed steps declare
        compensations, it enters its compensate phase instead (any worker then runs them,
        newest first) and True is returned."""
        if w.row.unit is not None or not w.wdef.compensates:
            return False
        if not plan(w.wdef, self.store.steps(w.eid)):
            return False
        eid, token = w.eid, w.token
        log.warning(
            "durable: %s %s %s (%s); the compensations of its completed steps run",
            w.wdef.name,
            eid,
            "was cancelled" if error.get("type") == "Cancelled" else "failed",
            error.get("message"),
        )
        self._commit(
            w.claim,
            "starting compensations",
            lambda wid: self.store.compensate(
                eid, token, now=now, error=error, record=record, write_id=wid
            ),
        )
        return True

    def _timeout_workflow(self, w: _Walk, now: datetime, record: StepExecution | None) -> None:
        eid, token = w.eid, w.token
        error = _timeout_error(w.row, w.wdef)
        if self._compensate(w, now, error, record):
            log.warning(
                "durable: %s %s ran past its workflow timeout; its compensations run",
                w.wdef.name,
                eid,
            )
            if record is not None:
                self._notify("durable_step_failed", eid, step=record)
            return
        log.warning("durable: %s %s ran past its workflow timeout; it failed", w.wdef.name, eid)
        self._commit(
            w.claim,
            "failing the execution (workflow timeout)",
            lambda wid: self.store.finish(
                eid,
                token,
                now=now,
                status=Status.FAILED,
                error=error,
                record=record,
                write_id=wid,
            ),
        )
        if record is not None:
            self._notify("durable_step_failed", eid, step=record)
        self._notify("durable_workflow_failed", eid, error=error)


def _call_step(wdef: WorkflowDef, sdef: StepDef) -> Any:
    # The instance is made inside the attempt, so a failing __init__ is a failed attempt.
    return sdef.fn((sdef.owner or wdef.cls)())


def _call_item(wdef: WorkflowDef, sdef: StepDef, item: Any) -> Any:
    return sdef.fn(wdef.cls(), item)


def _resolve_step(
    wdef: WorkflowDef,
    row: ExecutionRow,
    has_units: Callable[[], bool] | None = None,
    open_units: Callable[[], list[str]] | None = None,
) -> int:
    """The current step's index, found by its stored name (or the step renamed from it):
    a redeploy may have added, removed or moved steps, and the stored name is what was
    running. WorkflowChanged when the loaded code cannot continue it there."""
    if row.step_name is None:
        return row.step_index
    problem = position_problem(row, wdef, has_units, open_units)
    if problem is not None:
        where = row.id if row.unit is None else f"{row.parent_id} (its unit {row.unit!r})"
        raise WorkflowChanged(
            f"execution {where} of workflow {wdef.name!r} cannot go on: {problem}; nothing "
            f"was deleted: deploy code that can continue it, then "
            f"engine.retry(..., from_step=...) (steps now: "
            f"{', '.join(s.name for s in wdef.steps)})"
        )
    name = row.group_step if row.unit is not None else row.step_name
    return wdef.step_index(wdef.current_name(name or "") or "")


def _worker_lost(row: ExecutionRow, *, counted: bool = False) -> dict[str, Any]:
    if counted:
        rule = (
            f"it was lost {row.lost_attempts + 1} times in a row, more than the "
            f"{MAX_LOST_ATTEMPTS} that run again for free: this loss counts as a failed attempt"
        )
    else:
        rule = "the attempt runs again without spending the step's retry budget"
    info = error_info(
        WorkerLost(
            "the worker running this attempt stopped before it ended (killed, stopped, paused "
            f"past its lease, or cut off from the store); {rule}"
        )
    )
    info["traceback"] = ""
    return info


def _timeout_error(row: ExecutionRow, wdef: WorkflowDef) -> dict[str, Any]:
    exc = WorkflowTimeout(
        f"workflow {wdef.name!r} ran past its timeout of {wdef.timeout} ms "
        f"(deadline {row.deadline.isoformat() if row.deadline else '?'})"
    )
    info = error_info(exc)
    info["traceback"] = ""
    return info


class ForeachError(DurableError):
    """A foreach's items are not a JSON list, or too many."""


def _items(sdef: StepDef, context: dict[str, Any]) -> list[Any]:
    key = sdef.items or ""
    if key not in context:
        raise ForeachError(
            f"foreach {sdef.name!r} runs over context[{key!r}], which is not set; put the "
            "list there in an earlier step"
        )
    items = context[key]
    if not isinstance(items, list):
        raise ForeachError(
            f"foreach {sdef.name!r} runs over context[{key!r}], which holds "
            f"{type(items).__name__} {_short(items)}, not a list"
        )
    if len(items) > sdef.max_items:
        raise ForeachError(
            f"foreach {sdef.name!r}: context[{key!r}] holds {len(items)} items, more than its "
            f"max_items of {sdef.max_items}; split the work or raise @foreach(max_items=...)"
        )
    return items


class _ItemUnits(Sequence[Unit]):
    """A foreach's units, made one at a time as the store reads them: a fork of 10,000
    items holds the items list (already in the context), not a Unit per item as well."""

    def __init__(self, sdef: StepDef, items: list[Any], budget: int) -> None:
        self._sdef, self._items, self._budget = sdef, items, budget

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, i: int) -> Unit: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Unit]: ...
    def __getitem__(self, i: int | slice) -> Unit | Sequence[Unit]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"unit index {i} out of range")
        item = self._items[i]
        return Unit(self._sdef.unit_name(i), i, item=item, max_attempts=self._budget)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _group_error(sdef: StepDef, failed: list[UnitOutcome]) -> dict[str, Any]:
    """The execution's error when units of ``sdef`` failed."""
    real = [u for u in failed if u.status == Status.FAILED] or failed
    first = min(real, key=lambda u: (u.completed_at or datetime.max.replace(tzinfo=UTC), u.index))
    if sdef.fail_fast:
        error = first.error or {
            "type": "Cancelled",
            "message": f"{first.name} was cancelled, which fails its group",
            "traceback": "",
        }
        return {**error, "step": first.name}
    failures = {u.name: u.error or {"type": "cancelled", "message": ""} for u in real}
    listed = "; ".join(
        f"{name}: {e.get('type')}: {e.get('message')}" for name, e in failures.items()
    )
    exc = ParallelFailed(
        f"{len(failures)} of the units of {sdef.name!r} failed: {listed}", failures
    )
    return {**error_info(exc), "traceback": "", "step": sdef.name, "failures": failures}


def _flow_names(shape: Mapping[str, Any]) -> list[str]:
    """The steps of a workflow shape, in order."""
    return [step for step, _ in shape.get("steps", [])]


def _step_names(shape: Mapping[str, Any]) -> list[str]:
    """The steps and the branches (``"group.step"``) of a workflow shape."""
    branches = shape.get("branches", {}).values()
    return [*_flow_names(shape), *(b for names in branches for b in names)]


def _has_step(shape: Mapping[str, Any], name: str | None) -> bool:
    """Whether code of ``shape`` has the step (or branch, or foreach item's step) an
    execution is at, by the name it is recorded under."""
    if name is None:
        return True
    names = set(_step_names(shape))
    return name in names or name.partition("[")[0] in names


def _lacks_steps(wdef: WorkflowDef, shape: Mapping[str, Any]) -> bool:
    """Whether ``shape`` has a step (or branch) that ``wdef``'s code has under no name."""
    return any(wdef.current_name(name) is None for name in _step_names(shape))
