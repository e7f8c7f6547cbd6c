"""Running one claimed execution: its steps in order until it ends, waits or is released.

Every state change goes through one store transition, fenced by the claim's token. The
executor keeps nothing that matters in memory: attempt numbers, the retry budget in force,
the context and the step pointer are all in the store.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from durable._invoke import AsyncRunner, invoke
from durable._json import clone, to_json
from durable._runtime import OwnerCalls, StepRun
from durable.clock import Clock
from durable.dsl import StepDef, WorkflowDef, get_workflow
from durable.errors import (
    ExecutionNotFound,
    LeaseLost,
    SerializationError,
    StepNotFound,
    StepTimeout,
    StoreError,
    WaitTimeout,
    WorkflowTimeout,
)
from durable.models import Status, StepExecution, StepStatus, Wait
from durable.retry import Retry
from durable.stores.base import ExecutionRow, Store
from durable.waits import StoreInterrupt, Suspend, WaitSpec

if TYPE_CHECKING:
    from durable.plugins import PluginHost

log = logging.getLogger("durable.executor")

StepAround = Callable[[StepDef, Callable[[], Any]], Any]


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
class Claim:
    """A claim held by this process; ``lost`` is set when a heartbeat finds it stale."""

    execution_id: str
    token: int
    expires: datetime | None = None
    lost: bool = False


class Executor:
    """Runs claimed executions for one engine."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        plugins: PluginHost,
        runner: AsyncRunner,
    ) -> None:
        self.store = store
        self.clock = clock
        self.plugins = plugins
        self.runner = runner
        # (workflow, step) -> around(sdef, call): runs in the attempt instead of ``call()``.
        # The seam durable_testing's step overrides use; empty in production.
        self.overrides: dict[tuple[str, str], StepAround] = {}

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
        if row is not None:
            self.plugins.notify(hook, execution=row.to_execution(), **kwargs)

    # -- the step loop -------------------------------------------------------------------

    def run(
        self, row: ExecutionRow, claim: Claim, should_stop: Callable[[str], bool] = lambda _: False
    ) -> None:
        """Run ``row`` (just claimed) until it finishes, is rescheduled or is released.

        ``should_stop(next_step_name)`` is asked between steps: when true the claim is
        released rather than the next step begun (a worker shutting down gracefully, a test
        stopping at a step)."""
        try:
            self._run(row, claim, should_stop)
        except LeaseLost as exc:
            log.warning("durable: %s; this worker stops working on it", exc)
        except StepNotFound as exc:
            log.error("durable: %s", exc)
            self.store.finish(
                row.id, row.token, now=self.clock.now(), status=Status.FAILED, error=error_info(exc)
            )
        except StoreError as exc:
            # The claim stays; once its lease expires any worker resumes the execution.
            log.warning(
                "durable: store error while running %s (%r); it resumes after its lease expires",
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

    def _run(self, row: ExecutionRow, claim: Claim, should_stop: Callable[[str], bool]) -> None:
        wdef = get_workflow(row.workflow)
        eid, token = row.id, row.token
        context = row.context
        index = _resolve_step(wdef, row)
        attempt = row.attempt
        in_flight_since = row.attempt_started_at
        # began: the claim began this attempt for us; otherwise one in flight was lost
        begun = row.began

        if index == 0 and attempt == 1 and begun and not row.suspended:
            self._notify("durable_workflow_started", eid, lambda: row)

        while True:
            now = self.clock.now()
            sdef = wdef.steps[index]
            policy = sdef.policy(wdef.default_retry)

            def record(
                status: StepStatus,
                started: datetime,
                ended: datetime | None,
                error: dict[str, Any] | None = None,
                logs: list[dict[str, Any]] | None = None,
                *,
                sdef: StepDef = sdef,
                index: int = index,
                attempt: int = attempt,
                max_attempts: int = policy.max_attempts,
            ) -> StepExecution:
                return StepExecution(
                    sdef.name,
                    status,
                    attempt,
                    started,
                    ended,
                    error,
                    list(logs or ()),
                    index,
                    max_attempts,
                )

            if claim.lost:
                raise LeaseLost(f"heartbeat found the claim on {eid} taken over")
            if row.cancel_requested:
                self.store.finish(eid, token, now=now, status=Status.CANCELLED, error=None)
                self._notify("durable_workflow_cancelled", eid, reason=row.cancel_reason)
                return
            lost = None
            if in_flight_since is not None and not begun:
                lost = record(StepStatus.FAILED, in_flight_since, now, _worker_lost())
            if row.deadline is not None and now >= row.deadline:
                self._timeout_workflow(eid, token, now, lost)
                return
            if lost is not None:
                self._failed(row, sdef, lost, policy, now)
                return
            if should_stop(sdef.name):
                self.store.release(eid, token, now=now, attempt_ran=False)
                return

            started = in_flight_since
            assert started is not None
            if self.plugins.has_observers("durable_step_started"):
                running = record(StepStatus.RUNNING, started, None, attempt=attempt)
                self._notify(
                    "durable_step_started",
                    eid,
                    partial(
                        dataclasses.replace,
                        row,
                        context=context,
                        step_index=index,
                        step_name=sdef.name,
                        attempt=attempt,
                        attempt_started_at=started,
                    ),
                    step=running,
                )

            run = StepRun(
                eid,
                wdef.name,
                sdef.name,
                attempt,
                clone(row.input),
                clone(context),
                self.clock,
            )
            run.waiter = partial(self._reach_wait, run, token)
            run.owner = OwnerCalls()
            call: Callable[[], Any] = partial(_call_step, wdef, sdef)
            around = self.overrides.get((wdef.name, sdef.name)) if self.overrides else None
            if around is not None:
                call = partial(around, sdef, call)
            until = self._until(sdef, started, row.deadline)
            outcome = invoke(
                call,
                run,
                is_async=sdef.is_async,
                until=until,
                clock=self.clock,
                runner=self.runner,
            )
            run.closed = True  # an abandoned attempt can no longer add logs
            if outcome.interrupted:
                # Shutting down: hand the execution back with the attempt still marked in
                # flight, so the next owner counts it as lost at once, without a lease wait.
                self.store.release(eid, token, now=self.clock.now(), attempt_ran=True)
                return
            logs = list(run.logs)
            now = self.clock.now()
            error: dict[str, Any] | None = None
            if isinstance(outcome.error, StoreInterrupt):
                raise outcome.error.error  # handled by run(): lost claim or store error
            if isinstance(outcome.error, Suspend):
                self._suspend(
                    row, sdef, outcome.error, record(StepStatus.SUSPENDED, started, now, None, logs)
                )
                return
            if outcome.timed_out:
                # The attempt ended at its deadline, even when the clock jumped past it
                # (a test clock moved by hours at once): timeouts and retries count from it.
                if until is not None and until < now:
                    now = until
                if row.deadline is not None and now >= row.deadline:
                    failed = record(
                        StepStatus.FAILED,
                        started,
                        now,
                        _timeout_error(row, wdef),
                        logs,
                        attempt=attempt,
                    )
                    self._timeout_workflow(eid, token, now, failed)
                    return
                error = error_info(
                    StepTimeout(
                        f"step {sdef.name!r} attempt {attempt} ran past its timeout of "
                        f"{sdef.timeout} ms; its result was discarded"
                    )
                )
            elif outcome.error is not None:
                error = error_info(outcome.error)
            else:
                try:
                    new_context = json.loads(
                        to_json(run.context, f"the context after step {sdef.name!r}")
                    )
                except SerializationError as exc:
                    error = error_info(exc)
            if error is not None:
                failed = record(StepStatus.FAILED, started, now, error, logs, attempt=attempt)
                self._failed(row, sdef, failed, policy, now)
                return

            done = record(StepStatus.COMPLETED, started, now, None, logs, attempt=attempt)
            last = index + 1 >= len(wdef.steps)
            next_step = None if last else (index + 1, wdef.steps[index + 1].name)
            start_next = (
                not last
                and not should_stop(wdef.steps[index + 1].name)
                and not claim.lost
                and (row.deadline is None or now < row.deadline)
            )
            status = self.store.complete_step(
                eid,
                token,
                now=now,
                record=done,
                context=new_context,
                next_step=next_step,
                start_next=start_next,
            )
            if status == Status.CANCELLED:
                self._notify("durable_workflow_cancelled", eid, reason=row.cancel_reason)
                return
            after = partial(
                dataclasses.replace,
                row,
                status=status,
                context=new_context,
                step_index=index if next_step is None else next_step[0],
                step_name=sdef.name if next_step is None else next_step[1],
                attempt=attempt if next_step is None else (1 if start_next else 0),
                attempt_started_at=now if start_next else None,
                completed_at=now if next_step is None else None,
            )
            self._notify("durable_step_completed", eid, after, step=done)
            if status == Status.COMPLETED:
                self._notify("durable_workflow_completed", eid, after)
                return
            context = new_context
            index += 1
            attempt = 1 if start_next else 0
            in_flight_since = now if start_next else None
            begun = start_next

    # -- waits ---------------------------------------------------------------------------

    def _reach_wait(self, run: StepRun, token: int, spec: WaitSpec) -> Any:
        """Called in the step by a wait: its recorded result, the timeout value, a
        WaitTimeout, or Suspend (not resolved yet)."""
        if run.closed:
            raise LeaseLost(f"step {run.step!r} attempt {run.attempt} was abandoned")
        seq = run.waits
        run.waits += 1
        owner = run.owner
        assert owner is not None

        def decide() -> Wait:
            return self.store.wait(
                run.execution_id,
                token,
                now=self.clock.now(),
                step=run.step,
                seq=seq,
                attempt=run.attempt,
                spec=spec,
            )

        try:
            wait = owner.call(decide)
        except (StoreError, ExecutionNotFound) as exc:
            # Not the step's business: a step's `except Exception` must not turn a lost
            # claim or a database hiccup into its own fallback path.
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

    def _suspend(
        self, row: ExecutionRow, sdef: StepDef, signal: Suspend, record: StepExecution
    ) -> None:
        now = record.completed_at or self.clock.now()
        status = self.store.suspend(
            row.id, row.token, now=now, record=record, step=sdef.name, seq=signal.seq
        )
        if status == Status.CANCELLED:
            self._notify("durable_workflow_cancelled", row.id, reason=row.cancel_reason)
        elif status == Status.WAITING:
            timers = [t for t in (signal.until, row.deadline) if t is not None]
            self._notify(
                "durable_step_suspended", row.id, step=record, until=min(timers, default=None)
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
        self,
        row: ExecutionRow,
        sdef: StepDef,
        record: StepExecution,
        policy: Retry,
        now: datetime,
    ) -> None:
        eid, token = row.id, row.token
        if record.attempt < policy.max_attempts:
            retry_at = now + timedelta(milliseconds=policy.delay_ms(record.attempt))
            if row.deadline is not None:
                retry_at = min(retry_at, row.deadline)
            record = dataclasses.replace(record, retry_at=retry_at)
            status = self.store.fail_attempt(
                eid, token, now=now, record=record, retry_at=retry_at, error=None
            )
            if status == Status.CANCELLED:
                self._notify("durable_workflow_cancelled", eid, reason=row.cancel_reason)
            else:
                pending = dataclasses.replace(
                    row,
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
        assert record.error is not None
        error = {**record.error, "step": sdef.name, "attempt": record.attempt}
        status = self.store.fail_attempt(
            eid, token, now=now, record=record, retry_at=None, error=error
        )
        if status == Status.CANCELLED:
            self._notify("durable_workflow_cancelled", eid, reason=row.cancel_reason)
            return
        self._notify("durable_step_failed", eid, step=record)
        self._notify("durable_workflow_failed", eid, error=error)

    def _timeout_workflow(
        self, eid: str, token: int, now: datetime, record: StepExecution | None
    ) -> None:
        row = self.store.get(eid)
        assert row is not None
        wdef = get_workflow(row.workflow)
        error = _timeout_error(row, wdef)
        self.store.finish(eid, token, now=now, status=Status.FAILED, error=error, record=record)
        if record is not None:
            self._notify("durable_step_failed", eid, step=record)
        self._notify("durable_workflow_failed", eid, error=error)


def _call_step(wdef: WorkflowDef, sdef: StepDef) -> Any:
    # The instance is made inside the attempt, so a failing __init__ is a failed attempt.
    return sdef.fn(wdef.cls())


def _resolve_step(wdef: WorkflowDef, row: ExecutionRow) -> int:
    """The current step's index, found by its stored name: a redeploy may have added,
    removed or moved steps, and the stored name is what was running."""
    if row.step_name is None:
        return row.step_index
    try:
        return wdef.step_index(row.step_name)
    except KeyError:
        raise StepNotFound(
            f"execution {row.id} is at step {row.step_name!r}, which workflow "
            f"{wdef.name!r} no longer has (steps now: {[s.name for s in wdef.steps]}); "
            "deploy code that still has that step to resume it"
        ) from None


def _worker_lost() -> dict[str, Any]:
    return {
        "type": "WorkerLost",
        "message": "the worker running this attempt stopped renewing its lease "
        "(crashed, killed or partitioned); the attempt counts as failed",
        "traceback": "",
    }


def _timeout_error(row: ExecutionRow, wdef: WorkflowDef) -> dict[str, Any]:
    exc = WorkflowTimeout(
        f"workflow {wdef.name!r} ran past its timeout of {wdef.timeout} ms "
        f"(deadline {row.deadline.isoformat() if row.deadline else '?'})"
    )
    info = error_info(exc)
    info["traceback"] = ""
    return info
