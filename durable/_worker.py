"""Workers: the claim loop on the scheduler, with concurrency, idle waits and graceful stop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from durable._executor import PLAN_REFRESH
from durable.scheduler import Failures, Scheduler
from durable.stores.base import ExecutionRow

log = logging.getLogger("durable.worker")

_MIN_IDLE = timedelta(milliseconds=20)


class Worker:
    """Claims executions from the store and runs up to ``concurrency`` of them at once."""

    def __init__(
        self,
        scheduler: Scheduler,
        *,
        queues: Sequence[str] | None,
        concurrency: int,
        poll_ms: int,
    ) -> None:
        self.scheduler = scheduler
        self.queues = None if queues is None else list(queues)
        self.concurrency = concurrency
        self.poll = timedelta(milliseconds=poll_ms)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._inflight = 0
        self._lock = threading.Lock()
        self._finished = threading.Event()
        # a KeyboardInterrupt or SystemExit raised by a step: the worker stops (gracefully)
        # and run() raises it once the other running steps have ended
        self._stopped_by: BaseException | None = None

    def wake(self) -> None:
        """Look for work now (something was started or became due)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop claiming; running executions release their claim after their current step."""
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        """Claim and run until stop() is called, then wait for the running steps to end."""
        scheduler = self.scheduler
        clock = scheduler.clock
        scheduler.listen(self.wake)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="durable-worker")
        backoff_ms = 100
        failures = Failures("claiming work")
        try:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    until = self._claim_some(pool)
                except Exception as exc:
                    failures.failed(exc)
                    until = clock.now() + timedelta(milliseconds=backoff_ms)
                    backoff_ms = min(backoff_ms * 2, 30_000)  # 0.1 s doubling to 30 s
                else:
                    failures.succeeded()
                    backoff_ms = 100
                if until is not None:
                    clock.wait_until(until, self._wake)
        finally:
            pool.shutdown(wait=True)
            scheduler.unlisten(self.wake)
            self._finished.set()
        if self._stopped_by is not None:
            raise self._stopped_by

    def _claim_some(self, pool: ThreadPoolExecutor) -> datetime | None:
        """Claim what fits in the free slots; return when to look again (None: at once)."""
        scheduler = self.scheduler
        now = scheduler.clock.now()
        with self._lock:
            free = self.concurrency - self._inflight
        rows: list[ExecutionRow] = []
        if free > 0:
            rows = scheduler.claim(self.queues, limit=free)
            if scheduler.refusing_claims:  # the clock check failed: look again at the poll
                return now + self.poll
        # (this worker's code is alive, for the queues it serves: see Executor.note_plan;
        # not while it refuses claims, its clock disagreeing with the store's)
        if not scheduler.refusing_claims:
            scheduler.note_plans(self.queues)
        if rows:
            with self._lock:
                self._inflight += len(rows)
            for row in rows:
                pool.submit(self._run_one, row)
            return None
        until = now + self.poll
        if free <= 0:  # (no slot to claim into: the ticks still fire on time)
            tick = scheduler.fire_due()
            if tick is not None:
                until = min(until, tick if tick > now else now + _MIN_IDLE)
        else:
            due = scheduler.next_due(self.queues)
            if due is not None:
                # Due later: wake exactly then. Due already but not claimed (taken by
                # another worker meanwhile): look again soon, but never spin.
                until = min(until, due if due > now else now + _MIN_IDLE)
        # (however long the poll, the store hears at each PLAN_REFRESH that this worker's
        # code is alive)
        return min(until, now + PLAN_REFRESH)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until run() has returned; False if it is still running after timeout s."""
        return self._finished.wait(timeout)

    def _run_one(self, row: ExecutionRow) -> None:
        try:
            self.scheduler.execute(
                row, stop_at=lambda _next: self._stop.is_set(), interrupted=self._stop.set
            )
        except (KeyboardInterrupt, SystemExit) as stop:
            log.warning(
                "durable: a step of %s raised %s: the worker stops once its other steps end",
                row.id,
                type(stop).__name__,
            )
            with self._lock:
                self._stopped_by = self._stopped_by or stop
            self.stop()
        except Exception:
            log.exception("durable: execution %s crashed the worker loop", row.id)
        finally:
            with self._lock:
                self._inflight -= 1
            self._wake.set()
