"""The scheduler: claims due executions and runs them. The one seam that workers,
``Engine.drain()`` and the test kit go through.

It owns what running needs besides the store: the heartbeat that keeps this process's
claims alive, the check that this process's clock agrees with the store's, the executor
and the event loop of async steps, and the listeners to wake when work may have become
claimable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from durable._executor import PLAN_REFRESH, Claim, Executor
from durable._invoke import AsyncRunner
from durable._ticks import Ticker
from durable.clock import Clock, SystemClock
from durable.dsl import WorkflowDef, registered_workflows
from durable.durations import seconds
from durable.errors import DurableError
from durable.plugins import PluginHost
from durable.stores.base import ExecutionRow, Store

__all__ = ["Failures", "Heartbeat", "Scheduler", "StopAt"]

log = logging.getLogger("durable.scheduler")
_worker_log = logging.getLogger("durable.worker")  # where claim and heartbeat trouble is told

MAX_SKEW_MS = seconds(5)

StopAt = Callable[[str], bool]
"""Asked with the name of the step about to begin: True releases the claim instead."""


def _never(_step: str) -> bool:
    return False


class Failures:
    """Failures in a row of one repeated store call (renewing claims, claiming work),
    logged so that an outage is a few lines: the first failure, every 20th, and the
    recovery. An error that is not the store's (a bug) is logged every time."""

    def __init__(self, what: str, logger: logging.Logger = _worker_log) -> None:
        self.what = what
        self.count = 0
        self._log = logger

    def failed(self, exc: Exception) -> None:
        """Count a failure and log it when it is worth a line."""
        self.count += 1
        ours = isinstance(exc, DurableError)
        if self.count == 1 or self.count % 20 == 0 or not ours:
            self._log.log(
                logging.WARNING if ours else logging.ERROR,
                "durable: %s failed %s (%s); trying again with backoff",
                self.what,
                "once" if self.count == 1 else f"{self.count} times in a row",
                exc,
                exc_info=not ours,
            )

    def succeeded(self) -> None:
        """The call worked: log the recovery once, reset the count."""
        if self.count:
            self._log.info("durable: %s works again, after %d failed tries", self.what, self.count)
            self.count = 0


class Heartbeat:
    """Renews every claim this process holds once a third of its lease has passed, so a
    claim survives a missed beat."""

    def __init__(self, store: Store, clock: Clock, lease_ms: int) -> None:
        self._store = store
        self._clock = clock
        self._lease = timedelta(milliseconds=lease_ms)
        self._claims: dict[str, Claim] = {}
        self._lock = threading.Lock()
        # held while a beat writes, so that drop() can wait for one in flight (reentrant:
        # a beat drops the claims it finds lost)
        self._beating = threading.RLock()
        self._signal = threading.Event()  # claims changed, or stop
        self._stopped = False
        self._thread: threading.Thread | None = None
        #: called after each beat that renewed claims (the scheduler looks for cancels of
        #: the steps it runs: within one beat where the store does not tell of cancels)
        self.after_beat: Callable[[], None] = lambda: None

    def hold(self, row: ExecutionRow) -> Claim:
        """Keep ``row``'s claim alive until drop()."""
        claim = Claim(row.id, row.token, expires=row.lease_expires_at)
        with self._lock:
            self._claims[row.id] = claim
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(
                    target=self._loop, name="durable-heartbeat", daemon=True
                )
                self._thread.start()
        self._signal.set()
        return claim

    def drop(self, claim: Claim) -> None:
        """Stop renewing ``claim``; return once no beat is writing it any more.

        Waiting out a beat in flight matters on PostgreSQL: its UPDATE of the row (which
        finds the claim gone and changes nothing) still locks the row for a moment, and a
        claim right after, with SKIP LOCKED, would pass over an execution that is due."""
        with self._lock:
            if self._claims.get(claim.execution_id) is claim:
                del self._claims[claim.execution_id]
        with self._beating:
            pass

    def _next_beat(self) -> datetime | None:
        with self._lock:
            expiries = [c.expires for c in self._claims.values() if c.expires is not None]
        return min(expiries) - self._lease * 2 / 3 if expiries else None

    def _loop(self) -> None:
        failures = Failures("renewing claims")
        lease_ms = self._lease // timedelta(milliseconds=1)
        while not self._stopped:
            until = self._next_beat()
            if failures.count:
                # The store is failing: try again after a pause that doubles each time, up
                # to a tenth of the lease, so a claim still gets renewed once it is back.
                pause = min(100 * 2 ** (failures.count - 1), max(lease_ms // 10, 100))
                until = self._clock.now() + timedelta(milliseconds=pause)
            self._clock.wait_until(until, self._signal)
            self._signal.clear()
            if self._stopped:
                return
            try:
                renewed = self.beat()
            except Exception as exc:
                failures.failed(exc)
            else:
                failures.succeeded()
                if renewed:
                    self.after_beat()

    def beat(self) -> bool:
        """Renew every held claim that is due for renewal, now, in this thread; True when
        some were.

        The scheduler calls this before it claims, so that it never takes back a claim it
        still holds because the clock jumped past the lease before the heartbeat thread
        woke (a test clock moves in jumps)."""
        with self._beating:
            due = self._next_beat()
            now = self._clock.now()
            if due is None or due > now:
                return False
            with self._lock:
                claims = list(self._claims.values())
            lease_ms = self._lease // timedelta(milliseconds=1)
            lost = set(
                self._store.heartbeat(
                    [(c.execution_id, c.token) for c in claims], now=now, lease_ms=lease_ms
                )
            )
            expires = now + self._lease
            for c in claims:
                if c.execution_id in lost:
                    c.lost = True
                    self.drop(c)
                else:
                    c.expires = expires
            return True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop renewing (closing, or a test playing a paused process) and wait for a beat
        in progress."""
        self._stopped = True
        self._signal.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


class Scheduler:
    """Claims due executions from a store and runs them, for one engine.

    ``claim()`` takes up to ``limit`` due executions (after renewing this process's
    claims and checking its clock against the store's); ``execute()`` runs one claimed
    execution in the calling thread until it ends, waits, is rescheduled or is released;
    ``run_due()`` does both until nothing is due. Workers, ``Engine.drain()`` and
    ``durable_testing``'s ``run_until`` are built on these.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        plugins: PluginHost,
        *,
        lease_ms: int,
        worker_id: str,
        store_label: str | None = None,
        owner: Any = None,
    ) -> None:
        self.store = store
        self.store_label = store_label or repr(store)
        self.clock = clock
        self.plugins = plugins
        self.lease_ms = lease_ms
        self.worker_id = worker_id
        self.heartbeat = Heartbeat(store, clock, lease_ms)
        self._runner = AsyncRunner()
        self._executor = Executor(store, clock, plugins, self._runner, lease_ms)
        self._plans_due: datetime | None = None  # when a worker notes its plans again
        self._executor.process = worker_id
        self._listeners: list[Callable[[], None]] = []
        self._listeners_lock = threading.Lock()
        self._subscribed = False
        self._executor.wake_workers = self.wake
        self._executor.owner = owner
        self.ticker = Ticker(
            store,
            clock,
            self.workflows,
            self.wake,
            self.store_label,
            plugins.execution_headers if plugins.gives_headers else None,
        )
        self.heartbeat.after_beat = self.check_cancels
        # Clock skew: checked against the store's clock (PostgreSQL) for real clocks only.
        self._checks_skew = isinstance(clock, SystemClock) or bool(
            getattr(clock, "wall_clock", False)
        )
        self._skew_checked_at: datetime | None = None
        self._refusing = False

    # -- what runs -----------------------------------------------------------------------

    @staticmethod
    def workflows() -> list[str]:
        """The workflows this process can run: those registered (imported) here."""
        return list(registered_workflows())

    def note_plan(self, wdef: WorkflowDef) -> None:
        """Tell the store that this process runs ``wdef`` as it is now (see
        ``Executor.note_plan``): before it creates an execution of it. A store that
        fails here is logged: the execution's own write says whether the store works."""
        try:
            self._executor.note_plan(wdef)
        except DurableError as exc:
            log.warning("durable: could not note the plan of %r: %s", wdef.name, exc)

    def note_plans(self, queues: Sequence[str] | None = None) -> None:
        """``note_plan`` as a worker for every workflow this process can run whose queue
        is among ``queues`` (None: all): a worker does it at each turn, cheap but every
        ``PLAN_REFRESH``. A store that fails is logged, not raised: the next turn tries
        again."""
        now = self.clock.now()
        if self._plans_due is not None and self._plans_due > now >= self._plans_due - PLAN_REFRESH:
            return
        self._plans_due = now + PLAN_REFRESH
        for wdef in registered_workflows().values():
            if queues is not None and wdef.queue not in queues:
                continue
            try:
                self._executor.note_plan(wdef, worker=True)
            except Exception as exc:  # (bookkeeping: never the worker loop's end)
                log.warning("durable: could not note the plan of %r: %s", wdef.name, exc)
                self._plans_due = now  # (try again at the next turn)
                return

    def next_due(self, queues: Sequence[str] | None = None) -> datetime | None:
        """When the next work this process can run (a start, a retry, a timer, a lease
        expiry) falls due, in the given queues (None: all)."""
        due = self.store.next_due(queues=queues, workflows=self.workflows())
        tick = self.ticker.next_tick()
        return due if tick is None or (due is not None and due <= tick) else tick

    def fire_due(self) -> datetime | None:
        """Start the executions of the schedules' ticks due now (each tick once, whatever
        the number of workers); return when the next tick is due."""
        if not self._clock_agrees():
            return None
        return self.ticker.fire_due()

    # -- claiming and running --------------------------------------------------------------

    @property
    def refusing_claims(self) -> bool:
        """True while this process's clock is too far from the store's to claim safely."""
        return self._refusing

    def claim(self, queues: Sequence[str] | None = None, *, limit: int = 1) -> list[ExecutionRow]:
        """Claim up to ``limit`` executions that are due now, highest priority first.

        Renews this process's own claims first, and claims nothing while the clocks
        disagree (see ``max_clock_skew_ms``)."""
        self.heartbeat.beat()
        if not self._clock_agrees():
            return []
        self.ticker.fire_due()
        now = self.clock.now()
        rows = self.store.claim(
            queues=queues,
            workflows=self.workflows(),
            worker_id=self.worker_id,
            now=now,
            lease_ms=self.lease_ms,
            limit=limit,
        )
        for row in rows:
            row.claimed_at = now  # (told to the observers as each one runs: see execute)
        return rows

    def execute(
        self,
        row: ExecutionRow,
        *,
        stop_at: StopAt = _never,
        interrupted: Callable[[], None] | None = None,
    ) -> None:
        """Run the claimed execution ``row`` in this thread, its claim kept alive by the
        heartbeat, until it finishes, waits, is rescheduled or is released.

        ``stop_at(step)`` is asked before each step begins; when it says True the claim is
        released and the execution left pending at that step (a worker stopping, a test
        stopping before a step). ``interrupted()`` is called when a step raised
        KeyboardInterrupt or SystemExit, before the claim is given back (a worker stops
        claiming first, so that it does not take the execution again)."""
        claim = self.heartbeat.hold(row)
        try:
            if row.claimed_at is not None and self.plugins.has_observers(
                "durable_execution_claimed"
            ):
                # (here, in the thread that runs it: a worker that claimed a batch hands
                # each row out without waiting for the observers of the others)
                self._executor.claimed(row, row.claimed_at)
            self._executor.run(row, claim, stop_at, interrupted)
        finally:
            self.heartbeat.drop(claim)

    def run_due(self, queues: Sequence[str] | None = None) -> int:
        """Claim and run, one at a time in this thread, until nothing is due now; return
        how many claims ran."""
        ran = 0
        while True:
            rows = self.claim(queues, limit=1)
            if not rows:
                return ran
            self.execute(rows[0])
            ran += 1

    # -- waking ----------------------------------------------------------------------------

    def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever work may have become claimable: started or woken
        through this engine, or (when the store tells) by another process."""
        with self._listeners_lock:
            self._listeners.append(callback)
            # Only workers need to hear of work made by other processes; an engine that only
            # starts and drains (a test, a web handler) keeps no listening connection.
            if not self._subscribed:
                self._subscribed = True
                self.store.subscribe(self.wake)
                self.store.subscribe_cancels(self.check_cancels)

    def check_cancels(self) -> None:
        """Look whether a cancel reached any attempt running here (told by the store, at
        each heartbeat, and after a cancel through this engine), and stop those."""
        ids = self._executor.running_ids()
        if not ids:
            return
        try:
            found = self.store.cancel_requested_among(ids)
        except Exception as exc:  # the next beat looks again
            _worker_log.warning("durable: could not look for cancels (%r)", exc)
            return
        if found:
            self._executor.cancel_runs(found)

    def unlisten(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback``."""
        with self._listeners_lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def wake(self) -> None:
        """Tell the listeners that work may have become claimable (a schedule too: the
        next tick is read again)."""
        self.ticker.changed(elsewhere=True)
        with self._listeners_lock:
            listeners = list(self._listeners)
        for callback in listeners:
            callback()

    # -- clocks ----------------------------------------------------------------------------

    def max_clock_skew_ms(self) -> int:
        """How far this process's clock may be from the store's before it stops claiming:
        the smaller of 5 s and a third of the lease (a clock off by more than that could
        take over live claims of other workers, or let them take over its own)."""
        return min(MAX_SKEW_MS, self.lease_ms // 3)

    def _clock_agrees(self) -> bool:
        """False while this process's clock is too far from the store's (checked at the
        first claim, then every minute; every 5 s while it disagrees)."""
        if not self._checks_skew:
            return True
        now = self.clock.now()
        recheck = timedelta(seconds=5 if self._refusing else 60)
        # (a clock stepped back since the last check makes the difference negative: check)
        last = self._skew_checked_at
        if last is not None and timedelta(0) <= now - last < recheck:
            return not self._refusing
        before = now
        server = self.store.server_time()
        after = self.clock.now()
        self._skew_checked_at = after
        if server is None:  # the store has no clock of its own: nothing to compare
            self._checks_skew = False
            return True
        skew_ms = ((before + (after - before) / 2) - server) / timedelta(milliseconds=1)
        allowed = self.max_clock_skew_ms() + (after - before) / timedelta(milliseconds=2)
        refusing = abs(skew_ms) > allowed
        if refusing:
            log.error(
                "durable: this worker's clock is %.1f s %s the store's (%s); it claims no "
                "work while they differ by more than %.1f s, or it could take over live "
                "claims. Keep clocks synchronised (NTP); it checks again in 5 s",
                abs(skew_ms) / 1000,
                "ahead of" if skew_ms > 0 else "behind",
                self.store_label,
                self.max_clock_skew_ms() / 1000,
            )
        elif self._refusing:
            log.warning("durable: the clocks agree again (%.3f s apart); claiming", skew_ms / 1000)
        self._refusing = refusing
        return not refusing

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the heartbeat and the async steps' event loop."""
        self.heartbeat.stop()
        self._runner.close()
