"""Firing the ticks of stored schedules: any worker may, and each tick fires once.

A worker reads the schedules that are due and, for each, works out which ticks to fire
(the catch-up policy) and its next tick; the store then applies all of it in one
transaction, each schedule only if its next tick is still the one read (another worker
fired it otherwise). So whatever the number of workers, a tick has one execution.

Workers also keep the schedules that ``@workflow(cron=...)`` declares stored, in step
with the code they run (an engine that only starts executions, or drains, does not).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from durable._cron import Cron
from durable._starts import new_row
from durable.clock import Clock
from durable.dsl import WorkflowDef, may_compensate, registered_workflows, registry_version
from durable.errors import ConfigError, DurableError
from durable.models import CatchUp, Overlap, Schedule
from durable.stores.base import ExecutionRow, Fire, Store

__all__ = ["Ticker"]

log = logging.getLogger("durable.schedules")

_BATCH = 500  # due schedules read and fired per transaction
# how long a worker trusts the earliest next tick it read (another process may have made
# an earlier one, on a store that cannot tell it)
_REREAD = timedelta(seconds=1)
_AGAIN = timedelta(milliseconds=10)
# per store (its label): grows at each schedule change made in this process, so that the
# other engines here on the same store read their next tick again at once
_EPOCHS: dict[str, int] = {}
_EPOCHS_LOCK = threading.Lock()
_SYNC_AGAIN = timedelta(seconds=5)  # a declared schedule that could not be stored


class Ticker:
    """The schedules' side of a scheduler: when the next tick is, and firing due ticks."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        workflows: Callable[[], list[str]],
        wake: Callable[[], None],
        key: str = "",
        headers: Callable[[str, str, str], dict[str, str]] | None = None,
    ) -> None:
        self.key = key
        # asked for the headers of each execution a fire makes (None: no plugin gives any)
        self._headers = headers
        self._epoch = -1
        self._sync_again_at: datetime | None = None
        self.store = store
        self.clock = clock
        self._workflows = workflows
        self._wake = wake
        self._lock = threading.Lock()
        self._next: datetime | None = None
        self._read_at: datetime | None = None
        self._synced = -1  # the registry version whose declared schedules were stored
        self._crons: dict[tuple[str, str], Cron] = {}  # parsed, by expression and zone
        # set once this engine runs a worker (or is asked to): only then does it store the
        # schedules its workflows declare
        self.declares = False

    def changed(self, *, elsewhere: bool = False) -> None:
        """A schedule changed here: read the next tick again. ``elsewhere``: work may have
        changed in another process (a wake-up, which most often means new executions):
        read it again too, but at most every ``_AGAIN`` (wake-ups come in floods)."""
        if not elsewhere:
            with _EPOCHS_LOCK:
                _EPOCHS[self.key] = _EPOCHS.get(self.key, 0) + 1
        with self._lock:
            if not elsewhere or self._read_at is None or self._read_at + _AGAIN <= self.clock.now():
                self._read_at = None

    def next_tick(self) -> datetime | None:
        """When the earliest schedule of this process's workflows is next due."""
        self.sync_declared()
        now = self.clock.now()
        with _EPOCHS_LOCK:
            epoch = _EPOCHS.get(self.key, 0)
        with self._lock:
            read_at = self._read_at
            fresh = epoch == self._epoch
            if fresh and read_at is not None and read_at <= now < read_at + _REREAD:
                return self._next
        found = self.store.next_tick(workflows=self._workflows())
        with self._lock:
            self._next, self._read_at, self._epoch = found, now, epoch
        return found

    def fire_due(self) -> datetime | None:
        """Fire every tick due now; return when the next one is due (None: no schedule)."""
        due_at = self.next_tick()
        now = self.clock.now()
        if due_at is None or due_at > now:
            return due_at
        workflows = self._workflows()
        plans: dict[tuple[str, str, datetime, str], tuple[list[datetime], int, datetime]] = {}
        while True:
            due = self.store.due_schedules(now=now, workflows=workflows, limit=_BATCH)
            fires = [f for f in (self._fire(s, now, plans) for s in due) if f is not None]
            made = self.store.fire_schedules(fires, now=now, compensates=may_compensate)
            if made:
                log.debug("durable: schedules started %d execution(s)", len(made))
                self._wake()
            if len(due) < _BATCH:
                break
        self.changed()
        return self.next_tick()

    def _cron(self, expression: str, timezone: str) -> Cron:
        key = (expression, timezone)
        found = self._crons.get(key)
        if found is None:
            found = Cron(expression, timezone)
            if len(self._crons) >= 1000:
                self._crons.clear()
            self._crons[key] = found
        return found

    def _fire(
        self,
        s: Schedule,
        now: datetime,
        plans: dict[tuple[str, str, datetime, str], tuple[list[datetime], int, datetime]],
    ) -> Fire | None:
        wdef = registered_workflows().get(s.workflow)
        if wdef is None:  # (unregistered since it was read)
            return None
        # (schedules of one cron and zone due at one tick fire alike: worked out once)
        key = (s.cron, s.timezone, s.next_tick, s.catch_up.value)
        plan = plans.get(key)
        if plan is None:
            try:
                cron = self._cron(s.cron, s.timezone)
            except ConfigError as exc:  # stored by a version that took what this does not
                # (paused, or every worker would look at it again and again)
                self.store.pause_schedule(s.name, paused=True, next_tick=now, now=now)
                log.error(
                    "durable: schedule %r cannot fire here (%s); it is paused: fix it with "
                    "engine.schedule(), then resume it",
                    s.name,
                    exc,
                )
                return None
            ticks, missed = cron.due(s.next_tick, now, s.catch_up)
            plan = plans[key] = (ticks, missed, cron.next_after(now))
        ticks, missed, next_tick = plan
        if missed:
            log.warning(
                "durable: schedule %r let %s missed tick(s) go (catch_up=%r)",
                s.name,
                f"{missed}+" if missed >= 1000 else missed,
                s.catch_up.value,
            )
        rows = tuple(_row(wdef, s, tick, now) for tick in ticks)
        if self._headers is not None:
            for row in rows:  # (their ids are known before the fire's one transaction)
                row.headers = self._headers(wdef.name, row.id, "schedule")
        return Fire(s.name, s.next_tick, next_tick, rows, missed, s.overlap)

    # -- declared schedules ------------------------------------------------------------------

    def sync_declared(self) -> None:
        """Store the schedules ``@workflow(cron=...)`` declares in the workflows registered
        here (once per registration), and remove those their workflow no longer declares.
        One that cannot be stored now (the store out, a tick fired under a changed cron)
        is tried again at the next look; the others are stored regardless."""
        if not self.declares:
            return
        version = registry_version()
        now = self.clock.now()
        with self._lock:
            if self._synced == version:
                return
            again = self._sync_again_at
            if again is not None and now < again:
                return
            self._synced = version
        done = False
        try:
            done = self._sync(registered_workflows())
        finally:
            with self._lock:
                if not done:
                    self._synced, self._sync_again_at = -1, now + _SYNC_AGAIN
                else:
                    self._sync_again_at = None
        self.changed()

    def _sync(self, workflows: dict[str, WorkflowDef]) -> bool:
        try:
            stored = {s.name: s for s in self.store.list_schedules()}
        except NotImplementedError as exc:  # a store plugin that keeps no schedules
            declaring = sorted(w.name for w in workflows.values() if w.cron is not None)
            if declaring:
                log.error("durable: %s; the crons of %s are not stored", exc, declaring)
            return True
        now = self.clock.now()
        done = True
        for wdef in workflows.values():
            old = stored.get(wdef.name)
            try:
                if wdef.cron is None:
                    if old is not None and old.declared and old.workflow == wdef.name:
                        self.store.delete_schedule(old.name, now=now, compensates=may_compensate)
                        log.info("durable: workflow %r declares no cron any more", wdef.name)
                    continue
                if old is not None and not old.declared:
                    log.warning(
                        "durable: @workflow(%r, cron=...) is not stored: a schedule made by "
                        "engine.schedule() has that name",
                        wdef.name,
                    )
                    continue
                expected = None if old is None else old.next_tick
                if self.store.put_schedule(declared(wdef, now), now=now, expected=expected) is None:
                    done = False  # (a tick fired under the change meanwhile: again later)
            except (DurableError, ValueError) as exc:
                log.error(
                    "durable: cannot store the schedule @workflow(%r) declares: %s", wdef.name, exc
                )
                done = False
        return done


def declared(wdef: WorkflowDef, now: datetime) -> Schedule:
    """The schedule ``@workflow(cron=...)`` declares, as stored when made now."""
    assert wdef.cron is not None
    cron = Cron(wdef.cron, wdef.timezone)
    return Schedule(
        name=wdef.name,
        workflow=wdef.name,
        cron=cron.expression,
        timezone=cron.timezone,
        input=None,
        catch_up=CatchUp.LATEST,
        overlap=Overlap.ALLOW,
        paused=False,
        next_tick=cron.next_after(now),
        created_at=now,
        updated_at=now,
        declared=True,
    )


def _row(wdef: WorkflowDef, s: Schedule, tick: datetime, now: datetime) -> ExecutionRow:
    row = new_row(wdef, s.input, now=now, queue=wdef.queue, scheduled_at=tick)
    row.origin = {"schedule": s.name}
    return row
