"""The Engine: starts, queries and cancels executions, and runs them (drain or workers)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Self

from durable._capture import install_capture
from durable._cron import Cron
from durable._deploy import DeployProblem, unit_probes
from durable._deploy import problems as deploy_problems
from durable._json import normalise
from durable._limits import (
    MAX_KEY_LENGTH,
    check_int32,
    check_name,
    check_text,
    check_time,
    storable,
)
from durable._recovery import context_before, latest_visit
from durable._schemas import check_data, split_schema
from durable._starts import new_row
from durable._text import redact_url
from durable._worker import Worker
from durable.clock import Clock
from durable.dsl import WorkflowDef, get_workflow, may_compensate, registered_workflows
from durable.durations import Duration, seconds, to_ms
from durable.errors import (
    ConfigError,
    ExecutionNotFinished,
    ExecutionNotFound,
    InvalidState,
    ScheduleNotFound,
    SerializationError,
    StepNotFound,
    WorkflowNotFound,
)
from durable.models import (
    CatchUp,
    Execution,
    Overlap,
    Schedule,
    Status,
    StepExecution,
    StepPhase,
    StepStatus,
    Wait,
    WaitKind,
)
from durable.plugins import PluginHost
from durable.scheduler import Scheduler
from durable.stores.base import ExecutionRow, Store, not_retryable_error

log = logging.getLogger("durable.engine")

_CHECK_PAGE = 500  # executions read per page by check_deploy


__all__ = ["DEFAULT_STORE", "Engine"]

DEFAULT_STORE = "sqlite:///durable.db"
DEFAULT_LEASE = seconds(30)
DEFAULT_POLL = seconds(1)

WorkflowRef = str | type | WorkflowDef


class Engine:
    """A workflow engine on one store and one clock.

    ``store``: a URL (``memory://``, ``sqlite:///path``, ``postgresql://...``, or any scheme
    a plugin registers) or a ``Store``; None means ``DURABLE_STORE`` or
    ``sqlite:///durable.db``. ``clock``: None for the system clock, a registered clock name,
    or a clock object (such as ``durable_testing.TimeTravelClock``). ``lease``: how long a
    claim lasts without a heartbeat. ``migrate``: create or upgrade the schema on first use.
    ``plugins``: extra plugin objects for this engine only (observers, stores, clocks).
    """

    #: seconds between the looks ``wait`` takes although nothing told it of an end: a
    #: safety net where the store tells of every end (memory, PostgreSQL) ...
    wait_recheck: float = 5.0
    #: ... and how it notices one where the store cannot tell (SQLite)
    wait_poll: float = 0.2

    def __init__(
        self,
        store: str | Store | None = None,
        clock: Clock | str | None = None,
        lease: Duration = DEFAULT_LEASE,
        migrate: bool = True,
        *,
        plugins: Sequence[object] = (),
        worker_id: str | None = None,
    ) -> None:
        self.plugins = PluginHost(plugins)
        self.lease_ms = to_ms(lease, what="lease", allow_zero=False)
        if clock is None or isinstance(clock, str):
            self.clock: Clock = self.plugins.make_clock(clock or "system")
        elif isinstance(clock, Clock):
            self.clock = clock
        else:
            raise ConfigError(
                f"clock must be None, a clock name or an object with now() and wait_until(), "
                f"got {type(clock).__name__}"
            )
        if store is None:
            store = os.environ.get("DURABLE_STORE") or DEFAULT_STORE
        if isinstance(store, str):
            self.store_url: str | None = store
            self.store: Store = self.plugins.make_store(store)
        elif isinstance(store, Store):
            self.store_url = None
            self.store = store
        else:
            raise ConfigError(f"store must be a URL or a Store, got {type(store).__name__}")
        if migrate:
            self.store.migrate(self.clock.now())
        self.store.check_schema()
        self.worker_id = check_name(
            worker_id or f"{socket.gethostname()[:160]}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            "worker_id",
        )
        self.scheduler = Scheduler(
            self.store,
            self.clock,
            self.plugins,
            lease_ms=self.lease_ms,
            worker_id=self.worker_id,
            store_label=self.store_label,
            owner=self,
        )
        self._workers: list[Worker] = []
        self._workers_lock = threading.Lock()
        install_capture()

    def __repr__(self) -> str:
        return f"Engine(store={self.store_label}, clock={self.clock!r})"

    @property
    def store_label(self) -> str:
        """The store, for messages and logs: its URL without a password."""
        return redact_url(self.store_url) if self.store_url else repr(self.store)

    # -- starting ------------------------------------------------------------------------

    def start(
        self,
        workflow: WorkflowRef,
        input: Any = None,
        *,
        queue: str | None = None,
        priority: int = 0,
        scheduled_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Start ``workflow`` (a class or registered name) with ``input``; return its id.

        ``input`` is JSON, or a pydantic model instance (stored as its JSON form). A
        workflow declared with ``@workflow(input=Model or schema)`` validates it first:
        InvalidInput names each field that does not match, and nothing is started.

        Higher ``priority`` runs first within a queue. ``scheduled_at`` delays the start
        (naive datetimes are UTC). An ``idempotency_key`` already used with the same
        workflow and input returns the existing execution's id and starts nothing; with
        another input (or workflow) it raises InvalidState naming that execution.
        """
        wdef = get_workflow(workflow)
        value = wdef.check_input(input)
        queue = wdef.queue if queue is None else queue
        check_name(queue, "queue")
        check_int32(priority, "priority (higher runs first)")
        if idempotency_key is not None:
            check_name(idempotency_key, "idempotency_key", MAX_KEY_LENGTH)
        now = self.clock.now()
        when = now if scheduled_at is None else check_time(scheduled_at, "scheduled_at")
        row = new_row(
            wdef,
            value,
            now=now,
            queue=queue,
            priority=priority,
            scheduled_at=when,
            idempotency_key=idempotency_key,
        )
        if self.plugins.gives_headers:  # (in the caller's thread: its trace context)
            row.headers = self.plugins.execution_headers(wdef.name, row.id, "start")
        self.scheduler.note_plan(wdef)
        stored, created = self.store.create(row)
        if not created and (
            stored.workflow != wdef.name or _canonical(stored.input) != _canonical(value)
        ):
            same = "input" if stored.workflow == wdef.name else "workflow"
            raise InvalidState(
                f"idempotency key {idempotency_key!r} was already used by execution "
                f"{stored.id} (workflow {stored.workflow!r}, {stored.status.value}) with "
                f"another {same}; reuse a key only to repeat the same start, or use a new "
                "key (nothing was started)"
            )
        if created:
            self._wake_workers()
        return stored.id

    # -- querying ------------------------------------------------------------------------

    def _id(self, execution_id: object) -> str:
        """An execution id as every store can look it up: a str (else ConfigError); one no
        store could hold is no execution's id (ExecutionNotFound), the same everywhere."""
        if not isinstance(execution_id, str):
            raise ConfigError(
                f"an execution id is a str (as start() returns), got {type(execution_id).__name__}"
            )
        if not storable(execution_id):
            raise ExecutionNotFound(f"no execution with id {execution_id!r} in {self.store_label}")
        return execution_id

    def get_execution(self, execution_id: str, include_steps: bool = False) -> Execution:
        """The execution with this id; with ``include_steps`` every step attempt too."""
        row = self.store.get(self._id(execution_id))
        if row is None:
            raise ExecutionNotFound(f"no execution with id {execution_id!r} in {self.store_label}")
        steps: list[StepExecution] | None = None
        if include_steps:
            steps = self.store.steps(execution_id)
            if row.status == Status.RUNNING and row.attempt_started_at is not None:
                steps.append(
                    StepExecution(
                        name=row.step_name or "?",
                        status=StepStatus.RUNNING,
                        attempt=row.attempt,
                        started_at=row.attempt_started_at,
                        index=row.step_index,
                        max_attempts=self._budget(row),
                        visit=row.visit,
                    )
                )
        return row.to_execution(steps)

    @staticmethod
    def _budget(row: ExecutionRow) -> int:
        """The retry budget of the execution's current step: the deployed code's when its
        workflow is imported here (the executor applies that one), else as stored."""
        wdef = registered_workflows().get(row.workflow)
        if wdef is not None and row.step_name is not None:
            try:
                return wdef.budget(wdef.step(row.step_name))
            except KeyError:
                return row.max_attempts
        return row.max_attempts

    def list_executions(
        self,
        workflow: WorkflowRef | Sequence[WorkflowRef] | None = None,
        status: str | Status | Sequence[str | Status] | None = None,
        queue: str | Sequence[str] | None = None,
        limit: int = 100,
        parent: str | None = None,
    ) -> list[Execution]:
        """Executions matching every filter given, newest first, at most ``limit``;
        ``parent``: the child workflows that execution started."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ConfigError(f"limit must be an int from 1 to 10000, got {limit!r}")
        workflows = None
        if workflow is not None:
            refs = [workflow] if isinstance(workflow, str | type | WorkflowDef) else workflow
            workflows = [_workflow_name(w) for w in refs]
        statuses = None
        if status is not None:
            raw = [status] if isinstance(status, str) else list(status)
            statuses = [_status(s) for s in raw]
        queues = None if queue is None else _queues([queue] if isinstance(queue, str) else queue)
        if parent is not None:
            parent = self._id(parent)
        rows = self.store.list_executions(
            workflows=workflows, statuses=statuses, queues=queues, limit=limit, parent=parent
        )
        return [r.to_execution() for r in rows]

    @property
    def workers_running(self) -> int:
        """How many workers this engine runs now (``run_worker`` or ``worker()``)."""
        with self._workers_lock:
            return len(self._workers)

    def wait(self, execution_id: str, timeout: Duration | None = None) -> Execution:
        """Block until the execution has finished (completed, failed, cancelled, or
        compensated), and return it.

        Something else must run it meanwhile: a worker, here or in another process. The
        waiting is woken by the end itself — in this process, or from any process by
        PostgreSQL's NOTIFY — and looks again every few seconds as a safety net (on SQLite,
        which cannot tell other processes, every 200 ms). ``timeout`` (ms or timedelta of
        real time; None: no limit) raises ``ExecutionNotFinished``,
        changing nothing. ExecutionNotFound for an unknown id."""
        limit = None if timeout is None else to_ms(timeout, what="wait() timeout")
        execution_id = self._id(execution_id)
        ended = threading.Event()

        def heard(eid: str | None) -> None:
            if eid is None or eid == execution_id:
                ended.set()

        every = self.wait_recheck if self.store.tells_ends else self.wait_poll
        # Real time, measured by a timer rather than by reading a clock: the engine reads
        # time only through its clock plugin, and a test clock must not end this wait.
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            ended.set()

        timer = None
        if limit is not None:
            timer = threading.Timer(limit / 1000, expire)
            timer.daemon = True
            timer.start()
        self.store.subscribe_ended(heard)
        try:
            while True:
                ex = self.get_execution(execution_id)
                if ex.finished:
                    return ex
                if expired.is_set():
                    raise ExecutionNotFinished(
                        f"execution {execution_id} is still {ex.status.value} (at step "
                        f"{ex.current_step!r}) after waiting {limit} ms; it goes on: wait "
                        "again or look later"
                    )
                ended.wait(every)
                ended.clear()
        finally:
            self.store.unsubscribe_ended(heard)
            if timer is not None:
                timer.cancel()

    def next_due(self, queues: Sequence[str] | None = None) -> datetime | None:
        """When the next scheduled work (a start, a retry, a lease expiry, a schedule's
        tick) falls due."""
        due = self.store.next_due(queues=queues, workflows=None)
        tick = self.store.next_tick(workflows=self.scheduler.workflows())
        return due if tick is None or (due is not None and due <= tick) else tick

    # -- schedules (cron) ------------------------------------------------------------------

    def schedule(
        self,
        workflow: WorkflowRef,
        cron: str,
        *,
        name: str | None = None,
        timezone: str = "UTC",
        input: Any = None,
        catch_up: str = "latest",
        overlap: str = "allow",
    ) -> Schedule:
        """Start ``workflow`` with ``input`` at every tick of ``cron`` in ``timezone`` (an
        IANA name), under ``name`` (default: the workflow's name); return the schedule as
        stored. Scheduling the same name again updates it (its next tick moves only if the
        cron or the time zone changed), so this can run at every deploy.

        Exactly one execution per tick, whatever the number of workers; its
        ``scheduled_at`` is the tick (``durable.context.scheduled_at()``). The first tick
        is the first after now: earlier ones are not missed ticks. ``catch_up``, for ticks
        no worker fired in time: ``"latest"`` one execution for the most recent,
        ``"all"`` one each (the most recent 100 at most), ``"skip"`` none (a tick up to a
        minute late still fires). ``overlap``, when the previous tick's execution is
        unfinished: ``"allow"``, ``"skip"``, ``"buffer_one"`` (start when it ends; at most
        one waits) or ``"cancel_previous"``. A wall time skipped by a daylight saving
        change fires once at the first instant after the gap; one that happens twice fires
        once, the first time. ConfigError names a bad expression, zone or policy (nothing
        is stored)."""
        wdef = get_workflow(workflow)
        parsed = Cron(cron, timezone)
        name = wdef.name if name is None else name
        check_name(name, "schedule name")
        catch = _policy(CatchUp, catch_up, "catch_up")
        over = _policy(Overlap, overlap, "overlap")
        value = wdef.check_input(input, what="the schedule's input", outcome="nothing was stored")
        declares = registered_workflows().get(name)
        for _ in range(10):  # (again while a worker fires a tick under the change)
            existing = self.store.get_schedule(name)
            if (existing is not None and existing.declared) or (
                declares is not None and declares.cron is not None
            ):
                raise ConfigError(
                    f"schedule {name!r} is the one @workflow({name!r}, cron=...) declares; "
                    "give this one another name= (or change the decorator)"
                )
            now = self.clock.now()
            stored = self.store.put_schedule(
                Schedule(
                    name=name,
                    workflow=wdef.name,
                    cron=parsed.expression,
                    timezone=parsed.timezone,
                    input=value,
                    catch_up=catch,
                    overlap=over,
                    paused=False,
                    next_tick=parsed.next_after(now),
                    created_at=now,
                    updated_at=now,
                ),
                now=now,
                expected=None if existing is None else existing.next_tick,
            )
            if stored is not None:
                self._schedules_changed()
                return stored
        raise InvalidState(f"schedule {name!r} kept changing while it was updated; try again")

    def unschedule(self, name: str) -> None:
        """Remove the schedule ``name`` (ScheduleNotFound if there is none). Executions it
        started go on; one buffered by ``overlap="buffer_one"``, never started, is
        cancelled."""
        if not self.store.delete_schedule(name, now=self.clock.now(), compensates=may_compensate):
            raise self._no_schedule(name)
        self._schedules_changed()

    def list_schedules(self) -> list[Schedule]:
        """Every stored schedule, by name."""
        return self.store.list_schedules()

    def store_declared_schedules(self) -> list[Schedule]:
        """Store the schedules ``@workflow(cron=...)`` declares in the workflows imported
        here, and remove those a workflow here no longer declares; return them. A worker
        does this when it starts (and again when more workflows are imported); a test
        that drives a declared schedule without a worker calls it."""
        self.scheduler.ticker.declares = True
        self.scheduler.ticker.sync_declared()
        names = {w.name for w in registered_workflows().values() if w.cron is not None}
        try:
            stored = self.store.list_schedules()
        except NotImplementedError:  # (a store that keeps none: the worker logged it)
            return []
        return [s for s in stored if s.declared and s.name in names]

    def get_schedule(self, name: str) -> Schedule:
        """The schedule ``name`` (ScheduleNotFound if there is none)."""
        found = self.store.get_schedule(name)
        if found is None:
            raise self._no_schedule(name)
        return found

    def pause_schedule(self, name: str) -> Schedule:
        """Stop firing ``name`` until ``resume_schedule``."""
        now = self.clock.now()
        found = self.store.pause_schedule(name, paused=True, next_tick=now, now=now)
        if found is None:
            raise self._no_schedule(name)
        self._schedules_changed()
        return found

    def resume_schedule(self, name: str) -> Schedule:
        """Fire ``name`` again from its next tick after now (the ticks while it was paused
        are not made up for). One that is not paused is left as it is."""
        current = self.get_schedule(name)
        if not current.paused:
            return current
        now = self.clock.now()
        nxt = Cron(current.cron, current.timezone).next_after(now)
        found = self.store.pause_schedule(name, paused=False, next_tick=nxt, now=now)
        self._schedules_changed()
        return found if found is not None else self.get_schedule(name)

    def _no_schedule(self, name: str) -> ScheduleNotFound:
        known = [s.name for s in self.store.list_schedules()]
        return ScheduleNotFound(
            f"no schedule named {name!r} in {self.store_label} (schedules: "
            f"{', '.join(known) or 'none'})"
        )

    def _schedules_changed(self) -> None:
        self.scheduler.ticker.changed()
        self._wake_workers()

    # -- events, inputs and waits ----------------------------------------------------------

    def send_event(self, execution_id: str, name: str, payload: Any = None) -> None:
        """Send the event ``name`` (with a JSON ``payload``) to an execution.

        A step waiting for it resumes; an event sent before the execution waits for it is
        kept, in order, for the first wait that asks for that name. Raises
        ExecutionNotFound, or InvalidState when the execution finished."""
        check_name(name, "event name")
        value = normalise(payload, f"the payload of event {name!r}")
        execution_id = self._id(execution_id)
        if self.store.send_event(execution_id, name, value, now=self.clock.now()):
            self._wake_workers()

    def provide_input(self, execution_id: str, name: str, data: Any) -> None:
        """Provide the input ``name`` that a step of the execution waits for.

        ``data`` must be JSON (a pydantic model instance is taken as its JSON form) and
        match the input's schema, else InvalidInput and nothing is stored. An input whose
        wait gave a pydantic model is validated with that model when its module is
        imported in this process, else with the model's JSON Schema as stored. Raises
        InvalidState when no step waits for that input (never asked, already provided,
        timed out or finished), ExecutionNotFound for an unknown id."""
        check_name(name, "input name")
        value = normalise(data, f"the data of input {name!r}")
        execution_id = self._id(execution_id)

        def validate(schema: dict[str, Any] | None) -> Any:
            return check_data(f"input {name!r}", value, schema)

        # Checked against the schema of the wait being resolved, in its transaction: a
        # step that reaches its wait_for_input meanwhile cannot slip past the check.
        self.store.provide_input(execution_id, name, value, now=self.clock.now(), validate=validate)
        self._wake_workers()

    def list_pending_inputs(
        self, workflow: WorkflowRef | None = None, limit: int = 100
    ) -> list[Wait]:
        """Inputs steps are waiting for, oldest first: execution, step, name, prompt,
        schema (and the pydantic model it was made from) and until when (the timeout)."""
        waits = self.store.waits(
            kind="input",
            workflow=None if workflow is None else _workflow_name(workflow),
            open_at=self.clock.now(),  # one that timed out is no longer open
            limit=limit,
        )
        return [_shown(w) for w in waits]

    def list_waits(
        self,
        execution_id: str | None = None,
        *,
        kind: WaitKind | str | None = None,
        limit: int = 100,
    ) -> list[Wait]:
        """What waiting executions wait for and until when: every pending wait (sleeps,
        events, inputs, child workflows), oldest first; ``kind`` filters (a
        ``WaitKind`` or its value). An execution's list includes its
        units' waits."""
        if kind is not None:
            try:
                kind = WaitKind(kind)
            except ValueError:
                known = ", ".join(k.value for k in WaitKind)
                raise ConfigError(f"kind must be one of {known}, got {kind!r}") from None
        if execution_id is not None:
            try:
                execution_id = self._id(execution_id)
            except ExecutionNotFound:
                return []  # (as for any id no execution has)
        return [
            _shown(w) for w in self.store.waits(execution_id=execution_id, kind=kind, limit=limit)
        ]

    # -- retention -----------------------------------------------------------------------

    def purge(
        self,
        older_than: Duration,
        *,
        workflow: WorkflowRef | None = None,
        batch: int = 1000,
    ) -> int:
        """Delete executions that finished more than ``older_than`` (ms or timedelta) ago,
        with their attempts, waits and events; return how many. Unfinished executions are
        never touched. Deletes in transactions of ``batch`` executions, oldest first."""
        age = to_ms(older_than, what="older_than")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigError(f"batch must be an int >= 1, got {batch!r}")
        before = self.clock.now() - timedelta(milliseconds=age)
        workflows = None if workflow is None else [_workflow_name(workflow)]
        total = 0
        while True:
            ids = self.store.purge(finished_before=before, workflows=workflows, limit=batch)
            total += len(ids)
            if len(ids) < batch:
                return total

    # -- controlling ---------------------------------------------------------------------

    def cancel(self, execution_id: str, reason: str | None = None) -> Execution:
        """Cancel an execution.

        Pending or waiting: cancelled at once. Running: it stops at its next checkpoint
        and the running step's result is discarded. Finished, or running its
        compensations: raises InvalidState. Its units and unfinished children are
        cancelled with it.

        When the workflow declares compensations (``@step(compensate=...)``) the execution
        is not ended at once: it becomes ``compensating`` and a worker runs the
        compensations of its completed steps (none completed: it ends ``cancelled``). A
        workflow this process has not imported counts as one that may compensate, so that
        no compensation is skipped: a worker that knows it decides.
        """
        reason = check_text(reason, "a cancel reason")
        row = self.store.request_cancel(
            self._id(execution_id),
            now=self.clock.now(),
            reason=reason,
            compensates=may_compensate,
        )
        self.scheduler.check_cancels()  # a step of it running here stops now
        self._wake_workers()  # (its compensations, or its children's, are work now)
        if row.status == Status.CANCELLED and self.plugins.has_observers(
            "durable_workflow_cancelled"
        ):
            self.plugins.notify(
                "durable_workflow_cancelled", execution=row.to_execution(), reason=reason
            )
        return row.to_execution()

    # -- recovering ----------------------------------------------------------------------

    def _flow_step(self, wdef: WorkflowDef, step: object, what: str) -> str:
        """``step`` (or the step renamed from it) as a step of the workflow's own flow (not
        a branch or an item), else StepNotFound naming the steps there are."""
        if isinstance(step, str):
            step = wdef.current_name(step) or step
        names = [s.name for s in wdef.steps]
        if not isinstance(step, str) or step not in names:
            raise StepNotFound(
                f"{what}: workflow {wdef.name!r} has no step {step!r} in its flow (steps: "
                f"{', '.join(names)}); a branch or an item is run again with its group"
            )
        return step

    def retry(self, execution_id: str, from_step: str | None = None) -> Execution:
        """Run a ``failed``, ``cancelled`` or ``compensated`` execution again from the step
        that failed (or ``from_step``), as a new visit of that step.

        Steps completed before it are not run again; the context is rebuilt as it was just
        before that step last ran (what each completed step changed is recorded), so
        compensations' writes and later steps' are gone. The execution becomes ``pending``
        with a fresh workflow timeout from its next claim. Other statuses: InvalidState;
        a step the workflow does not have: StepNotFound.
        """
        eid = self._id(execution_id)
        row = self.store.get(eid)
        if row is None:
            raise ExecutionNotFound(f"no execution with id {eid!r} in {self.store_label}")
        if row.unit is not None or row.status not in (
            Status.FAILED,
            Status.CANCELLED,
            Status.COMPENSATED,
        ):
            raise not_retryable_error(row)
        wdef = get_workflow(row.workflow)
        if from_step is None and wdef.current_name(row.step_name or "") is None:
            raise StepNotFound(
                f"execution {eid} stopped at step {row.step_name!r}, which workflow "
                f"{wdef.name!r} no longer has; give from_step (steps: "
                f"{', '.join(s.name for s in wdef.steps)})"
            )
        wanted = from_step or row.step_name or ""
        target = self._flow_step(wdef, wanted, f"retry of {eid}")
        olds = wdef.step(target).renamed_from  # (its runs may be recorded under them)
        records = self.store.steps(eid)
        try:
            context = _context_before(row, wdef, target, records)
        except InvalidState:
            if from_step is not None:
                raise
            # Recorded before the changes were (schema 10): the stored context is what
            # the execution had when it stopped there.
            context = row.context
        # (a group stopped before its join recorded nothing: its visit is the row's)
        at_target = row.step_name in (target, *olds)
        visit = max(latest_visit(records, target, olds), row.visit if at_target else 0) + 1
        rewinds = [*(row.origin or {}).get("rewinds", []), [len(records), context]]
        updated = self.store.retry_execution(
            eid,
            now=self.clock.now(),
            step_index=wdef.step_index(target),
            step_name=target,
            visit=visit,
            visits={
                **{k: v for k, v in row.visits.items() if k not in olds},
                target: visit,
            },
            context=context,
            max_attempts=wdef.budget(wdef.step(target)),
            origin={**(row.origin or {}), "rewinds": rewinds},
        )
        log.info("durable: %s %s retried from step %r (visit %d)", wdef.name, eid, target, visit)
        self._wake_workers()
        return updated.to_execution()

    def fork(self, execution_id: str, from_step: str, context: dict[str, Any] | None = None) -> str:
        """Start a new execution of the same workflow and input at ``from_step``, with the
        context as it was just before that step last ran in ``execution_id``, updated
        with ``context``; return its id. The execution forked from is left as it is (any
        status). The new one records where it came from (``Execution.forked_from``).
        """
        eid = self._id(execution_id)
        row = self.store.get(eid)
        if row is None or row.unit is not None:
            raise ExecutionNotFound(f"no execution with id {eid!r} in {self.store_label}")
        wdef = get_workflow(row.workflow)
        target = self._flow_step(wdef, from_step, f"fork of {eid}")
        start_context = _context_before(row, wdef, target, self.store.steps(eid))
        if context is not None:
            if not isinstance(context, dict):
                raise SerializationError(
                    f"fork(context=...) takes a dict of context keys to set, got "
                    f"{type(context).__name__}"
                )
            start_context.update(normalise(context, "the fork's context"))
        new = new_row(wdef, row.input, now=self.clock.now(), queue=row.queue, priority=row.priority)
        new.step_index, new.step_name = wdef.step_index(target), target
        new.max_attempts = wdef.budget(wdef.step(target))
        new.context = start_context
        new.origin = {"forked_from": eid, "step": target, "context": start_context}
        if self.plugins.gives_headers:
            new.headers = self.plugins.execution_headers(wdef.name, new.id, "fork")
        self.scheduler.note_plan(wdef)
        stored, _ = self.store.create(new)
        log.info("durable: %s %s forked from %s at step %r", wdef.name, stored.id, eid, target)
        self._wake_workers()
        return stored.id

    def check_deploy(self, *, limit: int | None = None) -> list[DeployProblem]:
        """The unfinished executions that the code loaded in this process cannot continue:
        their workflow is not defined here, the step (or group, or branch) they are at is
        gone or changed kind since their run of it began, or a compensation they are
        running is gone. Every unfinished execution is looked at (a page at a time;
        ``limit``: at most that many, newest first). Run it in CI before a deploy
        (``durable check``); an empty list means every one can go on."""
        unfinished = [Status.PENDING, Status.RUNNING, Status.WAITING, Status.COMPENSATING]
        found: list[DeployProblem] = []
        seen, before = 0, None
        while limit is None or seen < limit:
            page = _CHECK_PAGE if limit is None else min(_CHECK_PAGE, limit - seen)
            rows = self.store.list_executions(
                workflows=None, statuses=unfinished, queues=None, limit=page, before=before
            )
            if not rows:
                break
            seen += len(rows)
            before = (rows[-1].created_at, rows[-1].seq)
            for row in rows:
                try:
                    wdef: WorkflowDef | None = get_workflow(row.workflow)
                except WorkflowNotFound:
                    wdef = None
                records = self.store.steps(row.id) if row.phase == StepPhase.COMPENSATE else None
                found.extend(deploy_problems(row, wdef, records, *unit_probes(self.store, row)))
        return found

    # -- running -------------------------------------------------------------------------

    def max_clock_skew_ms(self) -> int:
        """How far this engine's clock may be from the store's before it stops claiming:
        the smaller of 5 s and a third of the lease (a clock off by more than that could
        take over live claims of other workers, or let them take over its own)."""
        return self.scheduler.max_clock_skew_ms()

    def drain(self, queues: Sequence[str] | None = None) -> int:
        """Run everything runnable now, in this thread, then return how many claims ran.

        Work that falls due later (a retry's backoff, a scheduled start) is left for a later
        ``drain()`` or a worker: advance a test clock to reach it.
        """
        return self.scheduler.run_due(_queues(queues))

    def run_worker(
        self,
        queues: Sequence[str] | None = None,
        concurrency: int = 10,
        *,
        poll_interval: Duration = DEFAULT_POLL,
        on_ready: Callable[[], Any] | None = None,
    ) -> None:
        """Run a worker in this thread until it is stopped (SIGINT or SIGTERM in the main
        thread, or ``engine.close()``). ``queues=None`` takes work from every queue.
        ``on_ready`` is called once a signal would stop the worker cleanly (the CLI says
        it started then, so that a supervisor reading that line may stop it at once)."""
        worker = self._make_worker(queues, concurrency, poll_interval)
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: worker.stop())
        try:
            if on_ready is not None:
                on_ready()
            worker.run()
        finally:
            self._forget_worker(worker)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextlib.contextmanager
    def worker(
        self,
        queues: Sequence[str] | None = None,
        concurrency: int = 10,
        *,
        poll_interval: Duration = DEFAULT_POLL,
    ) -> Iterator[Worker]:
        """Run a worker in a background thread for the duration of the ``with`` block."""
        worker = self._make_worker(queues, concurrency, poll_interval)
        thread = threading.Thread(target=worker.run, name="durable-worker-loop", daemon=True)
        thread.start()
        try:
            yield worker
        finally:
            worker.stop()
            thread.join()
            self._forget_worker(worker)

    def _make_worker(
        self, queues: Sequence[str] | None, concurrency: int, poll_interval: Duration
    ) -> Worker:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigError(f"concurrency must be an int >= 1, got {concurrency!r}")
        poll_ms = to_ms(poll_interval, what="poll_interval", allow_zero=False)
        # (the worker stores the schedules its workflows declare as it starts claiming)
        self.scheduler.ticker.declares = True
        worker = Worker(
            self.scheduler, queues=_queues(queues), concurrency=concurrency, poll_ms=poll_ms
        )
        with self._workers_lock:
            self._workers.append(worker)  # for close() to stop
        return worker

    def _forget_worker(self, worker: Worker) -> None:
        with self._workers_lock:
            if worker in self._workers:
                self._workers.remove(worker)

    def _wake_workers(self) -> None:
        self.scheduler.wake()

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop this engine's workers, wait up to ``timeout`` seconds for their running
        steps to end, then stop the heartbeat and async steps and close the store."""
        with self._workers_lock:
            workers = list(self._workers)
        for w in workers:
            w.stop()
        for w in workers:
            if not w.join(timeout):
                log.warning(
                    "durable: a worker still runs a step after %s s; closing anyway "
                    "(its execution resumes elsewhere when the lease expires)",
                    timeout,
                )
        self.scheduler.close()
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _policy(kind: Any, value: object, what: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(
            f"{what}={value!r} is not a policy; use one of {', '.join(repr(k.value) for k in kind)}"
        ) from None


def _queues(queues: Sequence[str] | None) -> list[str] | None:
    """Queue names to take work from, checked (None: every queue)."""
    if queues is None:
        return None
    if isinstance(queues, str):
        raise ConfigError(f"queues takes a list of queue names, got the str {queues!r}")
    return [check_name(q, "queue") for q in queues]


def _shown(wait: Wait) -> Wait:
    """A wait as the API shows it: an input's schema made from a pydantic model is the
    model's JSON Schema, and ``model`` names the model."""
    schema, model = split_schema(wait.schema)
    return wait if model is None else dataclasses.replace(wait, schema=schema, model=model)


def _canonical(value: Any) -> str:
    """A JSON value as text that is equal exactly when the values are (1 and 1.0 and True
    differ; key order does not matter)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _workflow_name(ref: WorkflowRef) -> str:
    if isinstance(ref, str):
        return check_name(ref, "workflow name")
    return get_workflow(ref).name


def _status(value: str | Status) -> Status:
    try:
        return Status(value)
    except ValueError:
        raise ConfigError(
            f"unknown status {value!r}; use one of {', '.join(s.value for s in Status)}"
        ) from None


def _context_before(
    row: ExecutionRow, wdef: WorkflowDef, target: str, records: list[StepExecution]
) -> dict[str, Any]:
    """The context of ``row`` just before step ``target`` (runs under its earlier names
    count; its own current step that has not run yet starts from the context as it stands)."""
    return context_before(
        row.id,
        row.origin,
        records,
        target,
        current=(row.step_name or "", row.visit),
        aliases=wdef.step(target).renamed_from,
    )
