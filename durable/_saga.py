"""Sagas: which compensations an execution that failed or was cancelled owes (its plan,
read from its attempt records), and running them, newest first, each with its own
attempts, before the execution ends compensated (or failed, naming those that failed).

The plan is never stored: it is what the records say is left. A compensation's attempts
are recorded with ``phase`` compensate and ``compensates`` naming the step run it undoes,
so a run already compensated (or whose compensation ran out of attempts) is never run
again, whichever worker picks the execution up after a crash.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from durable._deploy import problems
from durable._invoke import error_info, invoke
from durable._json import MAX_DEPTH, clone, to_json
from durable._limits import MAX_LOST_ATTEMPTS
from durable._merge import merge
from durable._recovery import changes, context_after, rewound_at
from durable._runtime import OwnerCalls, StepRun, StoreInterrupt
from durable.dsl import CompensationDef, WorkflowDef, get_workflow
from durable.errors import (
    CompensationFailed,
    ContextError,
    InvalidState,
    LeaseLost,
    SerializationError,
    StepTimeout,
    WorkflowChanged,
)
from durable.hookspecs import StepCall
from durable.models import FINISHED, Status, StepExecution, StepPhase, StepStatus, Undoing
from durable.retry import Retry
from durable.stores.base import ExecutionRow, cancel_error

if TYPE_CHECKING:
    from durable._executor import Claim, Executor

__all__ = ["Undo", "plan", "run_compensations"]

log = logging.getLogger("durable.executor")

#: how long compensations wait before looking again for a group's units still running
UNITS_POLL = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class Undo:
    """One compensation owed: ``comp`` undoes the completed step run ``(run, visit)``."""

    comp: CompensationDef
    run: str  # the step run it undoes: "charge", "enrich.credit"
    visit: int
    index: int  # the step's position (as its records carry it)


def _ended(r: StepExecution) -> bool:
    """A compensation's attempt after which it is not run again."""
    return r.status == StepStatus.COMPLETED or (
        r.status == StepStatus.FAILED and r.retry_at is None
    )


def plan(wdef: WorkflowDef, records: list[StepExecution]) -> list[Undo]:
    """The compensations still owed, newest completed step run first: one for each
    completed run (loop visits and parallel branches included) of a step that declares
    one, less those already completed or out of attempts."""
    done = {
        (r.compensates, r.visit) for r in records if r.phase == StepPhase.COMPENSATE and _ended(r)
    }
    owed: list[tuple[datetime, int, Undo]] = []
    for position, r in enumerate(records):
        if r.phase != StepPhase.RUN or r.status != StepStatus.COMPLETED:
            continue
        try:
            sdef = wdef.step(wdef.current_name(r.name) or r.name)  # (renamed since)
        except KeyError:
            log.warning(
                "durable: workflow %r has no step %r any more: its completed run is not "
                "compensated",
                wdef.name,
                r.name,
            )
            continue
        if sdef.kind != "step" or sdef.undo is None or (r.name, r.visit) in done:
            continue
        assert r.completed_at is not None
        owed.append((r.completed_at, position, Undo(sdef.undo, r.name, r.visit, r.index)))
    owed.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return [u for _, _, u in owed]


def failed_compensations(records: list[StepExecution]) -> list[StepExecution]:
    """The compensations that ran out of attempts (their last attempt's record each)."""
    return [
        r
        for r in records
        if r.phase == StepPhase.COMPENSATE and r.status == StepStatus.FAILED and r.retry_at is None
    ]


def _no_waits(what: str) -> Callable[..., Any]:
    def refuse(*_: Any) -> Any:
        raise ContextError(
            f"{what} in a compensation: a compensation runs to its end without waiting "
            "(do the waiting in a step, or start a separate workflow)"
        )

    return refuse


def _call(cdef: CompensationDef) -> Any:
    # The instance is made inside the attempt, so a failing __init__ is a failed attempt.
    assert cdef.owner is not None
    return cdef.fn(cdef.owner())


@dataclass(slots=True)
class _Saga:
    """Where the compensation walk is in one claimed execution."""

    ex: Executor
    row: ExecutionRow
    claim: Claim
    wdef: WorkflowDef
    stop_at: Callable[[str], bool]
    attempt: int
    in_flight_since: datetime | None
    begun: bool
    context: dict[str, Any]

    @property
    def failure(self) -> dict[str, Any]:
        return self.row.error or {}

    def policy(self, undo: Undo) -> Retry:
        return undo.comp.policy(self.wdef.default_retry)

    def record(
        self,
        undo: Undo,
        status: StepStatus,
        started: datetime,
        ended: datetime | None,
        error: dict[str, Any] | None = None,
        logs: list[dict[str, Any]] | None = None,
        retry_at: datetime | None = None,
    ) -> StepExecution:
        return StepExecution(
            undo.comp.name,
            status,
            self.attempt,
            started,
            ended,
            error,
            list(logs or ()),
            undo.index,
            self.policy(undo).max_attempts,
            retry_at=retry_at,
            visit=undo.visit,
            phase=StepPhase.COMPENSATE,
            compensates=undo.run,
        )

    def label(self, undo: Undo) -> str:
        return (
            f"{self.wdef.name} {self.row.id} compensation {undo.comp.name!r} of "
            f"{undo.run!r} attempt {self.attempt}/{self.policy(undo).max_attempts}"
        )


def run_compensations(
    ex: Executor,
    row: ExecutionRow,
    claim: Claim,
    stop_at: Callable[[str], bool],
) -> None:
    """Run the claimed execution's compensate phase until it ends, is rescheduled (a
    retry's backoff) or is released."""
    wdef = get_workflow(row.workflow)
    store, eid, token = ex.store, row.id, row.token
    if row.cancel_requested:
        # Marked by a cancel while its flow ran; the flow's worker stopped before it met
        # the mark. Enter the phase now (what was in flight is discarded), then run it.
        now = ex.clock.now()
        ex._commit(
            claim,
            "starting compensations",
            lambda wid: store.compensate(
                eid, token, now=now, error=cancel_error(row.cancel_reason), write_id=wid
            ),
        )
        return
    s = _Saga(
        ex=ex,
        row=row,
        claim=claim,
        wdef=wdef,
        stop_at=stop_at,
        attempt=row.attempt,
        in_flight_since=row.attempt_started_at,
        begun=row.began,
        context=row.context,
    )
    if _units_still_running(ex, row, wdef):
        # A cancel (or a fail-fast failure) ended the group while some of its units still
        # run under a live claim; they stop at their next checkpoint. Compensating now
        # would undo the steps before the group while a branch still acts: look again.
        later = ex.clock.now() + UNITS_POLL
        ex._commit(
            claim,
            "waiting for a group's running units",
            lambda wid: store.release(
                eid, token, now=ex.clock.now(), attempt_ran=False, run_at=later, write_id=wid
            ),
        )
        return
    records = store.steps(eid)
    gone = problems(row, wdef, records)
    if gone:
        raise WorkflowChanged(
            f"execution {eid} of workflow {wdef.name!r} cannot go on with its "
            f"compensations: {gone[0].change}; nothing was deleted: deploy code that has it"
        )
    todo = plan(wdef, records)
    while todo:
        undo, more = todo[0], len(todo) > 1
        verdict = _begin(s, undo, more)
        if verdict == "stop" or (verdict == "run" and _attempt(s, undo, more) is None):
            return
        todo = todo[1:]
    _finish(s)


def _undoing(s: _Saga, undo: Undo) -> Undoing:
    """What ``undo`` undoes, with the context as that step run left it (rebuilt from
    the records' changes; a branch's from its unit's writes)."""
    store, eid = s.ex.store, s.row.id
    records = store.steps(eid)
    position = max(
        i
        for i, r in enumerate(records)
        if r.phase == StepPhase.RUN
        and r.status == StepStatus.COMPLETED
        and (r.name, r.visit) == (undo.run, undo.visit)
    )
    try:
        context: dict[str, Any] | None = context_after(eid, s.row.origin, records, position)
    except InvalidState:
        return Undoing(undo.run, undo.visit, None)
    group, dot, _ = undo.run.partition(".")
    if dot and context is not None:
        for u in store.each_unit_outcome(eid, group, undo.visit):
            if u.name == undo.run and isinstance(u.result, dict):
                context = merge(context, [(u.name, u.result)])
    return Undoing(undo.run, undo.visit, context)


def _units_still_running(ex: Executor, row: ExecutionRow, wdef: WorkflowDef) -> bool:
    """Whether the group run the flow stopped at has a unit that has not ended."""
    if row.step_name is None:
        return False
    try:
        kind = wdef.step(wdef.current_name(row.step_name) or row.step_name).kind
    except KeyError:
        return False
    if kind not in ("parallel", "foreach"):
        return False
    units = ex.store.each_unit_outcome(row.id, row.step_name, row.visit)
    return any(u.status not in FINISHED for u in units)


def _begin(s: _Saga, undo: Undo, more: bool) -> Literal["run", "next", "stop"]:
    """The checkpoint before a compensation's attempt: a lost claim, a lost attempt, a
    stop. ``"run"``: the attempt is to run now; ``"next"``: this compensation ended here
    (lost too often: out of attempts) and the walk goes on; ``"stop"``: this claim is
    done."""
    ex, eid, token = s.ex, s.row.id, s.row.token
    now = ex.clock.now()
    if s.claim.lost:
        raise LeaseLost(f"heartbeat found the claim on {eid} taken over")
    if s.in_flight_since is not None and not s.begun:
        lost = s.record(undo, StepStatus.LOST, s.in_flight_since, now, _lost_error())
        if s.row.lost_attempts >= MAX_LOST_ATTEMPTS:
            failed = dataclasses.replace(lost, status=StepStatus.FAILED)
            return "stop" if _failed_attempt(s, undo, failed, now, more=more) is None else "next"
        log.warning("durable: recovering %s, lost with its worker; running it again", s.label(undo))
        ex._commit(
            s.claim,
            "restarting a lost compensation",
            lambda wid: ex.store.restart_attempt(eid, token, now=now, record=lost, write_id=wid),
        )
        s.row.lost_attempts += 1
        s.in_flight_since, s.begun = now, True
    if s.in_flight_since is None or s.stop_at(undo.comp.name):
        ex._commit(
            s.claim,
            "releasing",
            lambda wid: ex.store.release(eid, token, now=now, attempt_ran=False, write_id=wid),
        )
        return "stop"
    return "run"


def _attempt(s: _Saga, undo: Undo, more: bool) -> bool | None:
    """Run one attempt of ``undo`` and commit how it ended. True when the walk goes on to
    the next compensation in this claim; None when this claim is done."""
    ex, cdef = s.ex, undo.comp
    started = s.in_flight_since
    assert started is not None
    run = StepRun(
        s.row.id,
        s.wdef.name,
        cdef.name,
        s.attempt,
        clone(s.row.input),
        clone(s.context),
        ex.clock,
        visit=undo.visit,
    )
    run.failure = dict(s.failure)
    run.compensates = undo.run
    run.undoing = functools.cache(lambda: _undoing(s, undo))
    run.waiter = _no_waits("a wait (or call_workflow)")
    run.starter = _no_waits("start_workflow")
    run.engine = ex.owner
    run.owner = OwnerCalls()
    call: Callable[[], Any] = lambda: _call(cdef)  # noqa: E731
    if ex.plugins.wraps_steps:
        step_call = StepCall(
            workflow=s.wdef.name,
            execution_id=s.row.id,
            step=cdef.name,
            attempt=s.attempt,
            visit=undo.visit,
            is_async=cdef.is_async,
            body=call,
            headers=s.row.headers,
        )
        wrap = ex.plugins.call_step_async if cdef.is_async else ex.plugins.call_step
        call = lambda: wrap(step_call)  # noqa: E731
    if ex.plugins.has_observers("durable_step_started"):
        ex._notify(
            "durable_step_started", s.row.id, step=s.record(undo, StepStatus.RUNNING, started, None)
        )
    until = None if cdef.timeout is None else started + timedelta(milliseconds=cdef.timeout)
    try:
        outcome = invoke(
            call, run, is_async=cdef.is_async, until=until, clock=ex.clock, runner=ex.runner
        )
    except (KeyboardInterrupt, SystemExit):
        run.close()
        _release_in_flight(s)
        raise
    run.close()
    if outcome.interrupted:
        _release_in_flight(s)
        return None
    if isinstance(outcome.error, StoreInterrupt):
        raise outcome.error.error
    logs = list(run.logs)
    now = ex.clock.now()
    error: dict[str, Any] | None = None
    retries = True
    new_context: dict[str, Any] = {}
    if outcome.timed_out:
        if until is not None and until < now:
            now = until
        error = error_info(
            StepTimeout(
                f"compensation {cdef.name!r} attempt {s.attempt} ran past its timeout of "
                f"{cdef.timeout} ms; its result was discarded"
            )
        )
    elif outcome.error is not None:
        error = error_info(outcome.error)
        retries = s.policy(undo).retries(outcome.error)
    else:
        try:
            new_context = json.loads(
                to_json(
                    run.context,
                    f"the context after compensation {cdef.name!r}",
                    max_depth=MAX_DEPTH + 1,
                )
            )
        except SerializationError as exc:
            error = error_info(exc)
    if error is not None:
        failed = s.record(undo, StepStatus.FAILED, started, now, error, logs)
        return _failed_attempt(s, undo, failed, now, more=more, final=not retries)
    done = s.record(undo, StepStatus.COMPLETED, started, now, None, logs)
    return _next(s, undo, done, new_context, now, more=more)


def _failed_attempt(
    s: _Saga, undo: Undo, record: StepExecution, now: datetime, *, more: bool, final: bool = False
) -> bool | None:
    ex, eid, token = s.ex, s.row.id, s.row.token
    error = record.error or {}
    policy = s.policy(undo)
    if record.attempt < policy.max_attempts and not final:
        retry_at = now + timedelta(milliseconds=policy.delay_ms(record.attempt))
        retried = dataclasses.replace(record, retry_at=retry_at)
        log.warning(
            "durable: %s failed (%s: %s); retrying at %s",
            s.label(undo),
            error.get("type"),
            error.get("message"),
            retry_at.isoformat(),
        )
        ex._commit(
            s.claim,
            "scheduling a compensation's retry",
            lambda wid: ex.store.fail_attempt(
                eid, token, now=now, record=retried, retry_at=retry_at, error=None, write_id=wid
            ),
        )
        ex._notify("durable_step_retrying", eid, step=retried, retry_at=retry_at)
        return None
    log.error(
        "durable: %s failed %s (%s: %s); the other compensations still run",
        s.label(undo),
        "with an error it does not retry" if final else "with no attempt left",
        error.get("type"),
        error.get("message"),
    )
    ex._notify("durable_step_failed", eid, step=record)
    return _next(s, undo, record, s.context, now, more=more)


def _next(
    s: _Saga,
    undo: Undo,
    record: StepExecution,
    context: dict[str, Any],
    now: datetime,
    *,
    more: bool,
) -> bool | None:
    """Commit a compensation's end (completed, or out of attempts) with the context, and
    begin the next one's first attempt in the same transaction when there is one."""
    ex, eid, token, row = s.ex, s.row.id, s.row.token, s.row
    name = row.step_name or s.wdef.steps[row.step_index].name
    record = dataclasses.replace(record, changes=changes(s.context, context))
    start_next = more and not s.claim.lost
    ex._commit(
        s.claim,
        f"recording compensation {undo.comp.name!r}",
        lambda wid: ex.store.complete_step(
            eid,
            token,
            now=now,
            record=record,
            context=context,
            next_step=(row.step_index, name),
            start_next=start_next,
            next_max_attempts=1,  # (each compensation's attempt carries its own budget)
            visits={**row.visits, name: row.visit},
            write_id=wid,
        ),
    )
    if record.status == StepStatus.COMPLETED:
        ex._notify("durable_step_completed", eid, step=record)
    s.context = context
    s.row.lost_attempts = 0
    if not more:
        return True
    s.attempt = 1 if start_next else 0
    s.in_flight_since = now if start_next else None
    s.begun = start_next
    return True


def _finish(s: _Saga) -> None:
    """Nothing is owed any more: end the execution, compensated (or cancelled or failed
    when nothing was compensated), or failed naming each compensation out of attempts."""
    ex, eid, token = s.ex, s.row.id, s.row.token
    now = ex.clock.now()
    # (this round's records: a retry after earlier compensations started a new one)
    records = ex.store.steps(eid)[rewound_at(s.row.origin) :]
    ran = [r for r in records if r.phase == StepPhase.COMPENSATE]
    failed = failed_compensations(records)
    failure = s.failure
    error: dict[str, Any] | None
    if failed:
        status = Status.FAILED
        failures = [
            {
                "compensation": r.name,
                "compensates": r.compensates,
                "visit": r.visit,
                "error": r.error or {},
            }
            for r in failed
        ]
        listed = "; ".join(
            f"{r.name} (of {r.compensates}): {(r.error or {}).get('type')}: "
            f"{(r.error or {}).get('message')}"
            for r in failed
        )
        exc = CompensationFailed(
            f"{len(failures)} compensation(s) ran out of attempts: {listed}", failures, failure
        )
        error = {**error_info(exc), "failures": failures, "cause": failure}
    elif ran:
        status, error = Status.COMPENSATED, failure
    elif failure.get("type") == "Cancelled":
        status, error = Status.CANCELLED, None
    else:
        status, error = Status.FAILED, failure
    log.warning("durable: %s %s compensations done; it ended %s", s.wdef.name, eid, status.value)
    ex._commit(
        s.claim,
        "ending after its compensations",
        lambda wid: ex.store.finish(eid, token, now=now, status=status, error=error, write_id=wid),
    )
    if status == Status.CANCELLED:
        ex._notify("durable_workflow_cancelled", eid, reason=s.row.cancel_reason)
    elif status == Status.FAILED:
        ex._notify("durable_workflow_failed", eid, error=error)
    else:
        ex._notify("durable_workflow_compensated", eid)


def _release_in_flight(s: _Saga) -> None:
    ex, eid, token, now = s.ex, s.row.id, s.row.token, s.ex.clock.now()
    ex._commit(
        s.claim,
        "releasing",
        lambda wid: ex.store.release(eid, token, now=now, attempt_ran=True, write_id=wid),
    )


def _lost_error() -> dict[str, Any]:
    return {
        "type": "WorkerLost",
        "message": "the worker running this compensation stopped before it ended",
        "traceback": "",
    }
