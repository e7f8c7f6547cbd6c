"""Workers: the claim loop, the heartbeat that keeps claims alive, and graceful stop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from durable._executor import Claim
from durable.errors import DurableError
from durable.stores.base import ExecutionRow

if TYPE_CHECKING:
    from durable.engine import Engine

log = logging.getLogger("durable.worker")

_MIN_IDLE = timedelta(milliseconds=20)


class _Failures:
    """Failures in a row of one repeated store call (renewing claims, claiming work),
    logged so that an outage is a few lines: the first failure, every 20th, and the
    recovery. An error that is not the store's (a bug) is logged every time."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.count = 0

    def failed(self, exc: Exception) -> None:
        self.count += 1
        ours = isinstance(exc, DurableError)
        if self.count == 1 or self.count % 20 == 0 or not ours:
            log.log(
                logging.WARNING if ours else logging.ERROR,
                "durable: %s failed %s (%s); trying again with backoff",
                self.what,
                "once" if self.count == 1 else f"{self.count} times in a row",
                exc,
                exc_info=not ours,
            )

    def succeeded(self) -> None:
        if self.count:
            log.info("durable: %s works again, after %d failed tries", self.what, self.count)
            self.count = 0


class Heartbeat:
    """Renews every claim the engine holds once a third of its lease has passed, so a
    claim survives a missed beat."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._claims: dict[str, Claim] = {}
        self._lock = threading.Lock()
        self._signal = threading.Event()  # claims changed, or stop
        self._stopped = False
        self._thread: threading.Thread | None = None

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
        with self._lock:
            if self._claims.get(claim.execution_id) is claim:
                del self._claims[claim.execution_id]

    def _next_beat(self) -> datetime | None:
        lease = timedelta(milliseconds=self._engine.lease_ms)
        with self._lock:
            expiries = [c.expires for c in self._claims.values() if c.expires is not None]
        return min(expiries) - lease * 2 / 3 if expiries else None

    def _loop(self) -> None:
        engine = self._engine
        failures = _Failures("renewing claims")
        while not self._stopped:
            until = self._next_beat()
            if failures.count:
                # The store is failing: try again after a pause that doubles each time, up
                # to a tenth of the lease, so a claim still gets renewed once it is back.
                pause = min(100 * 2 ** (failures.count - 1), max(engine.lease_ms // 10, 100))
                until = engine.clock.now() + timedelta(milliseconds=pause)
            engine.clock.wait_until(until, self._signal)
            self._signal.clear()
            if self._stopped:
                return
            try:
                self.beat()
            except Exception as exc:
                failures.failed(exc)
            else:
                failures.succeeded()

    def beat(self) -> None:
        """Renew every held claim that is due for renewal, now, in this thread.

        The engine calls this before it claims, so that it never takes back a claim it
        still holds because the clock jumped past the lease before the heartbeat thread
        woke (a test clock moves in jumps)."""
        engine = self._engine
        due = self._next_beat()
        now = engine.clock.now()
        if due is None or due > now:
            return
        with self._lock:
            claims = list(self._claims.values())
        lost = set(
            engine.store.heartbeat(
                [(c.execution_id, c.token) for c in claims], now=now, lease_ms=engine.lease_ms
            )
        )
        expires = now + timedelta(milliseconds=engine.lease_ms)
        for c in claims:
            if c.execution_id in lost:
                c.lost = True
                self.drop(c)
            else:
                c.expires = expires

    def stop(self, timeout: float = 10.0) -> None:
        """Stop renewing (the engine is closing) and wait for a beat in progress."""
        self._stopped = True
        self._signal.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


class Worker:
    """Claims executions from the store and runs up to ``concurrency`` of them at once."""

    def __init__(
        self,
        engine: Engine,
        *,
        queues: Sequence[str] | None,
        concurrency: int,
        poll_ms: int,
    ) -> None:
        self.engine = engine
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

    @property
    def stopping(self) -> bool:
        """True once stop() was called."""
        return self._stop.is_set()

    def wake(self) -> None:
        """Look for work now (something was started or became due)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop claiming; running executions release their claim after their current step."""
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        """Claim and run until stop() is called, then wait for the running steps to end."""
        engine = self.engine
        clock = engine.clock
        engine._add_worker(self)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="durable-worker")
        backoff_ms = 100
        failures = _Failures("claiming work")
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
            engine._remove_worker(self)
            self._finished.set()
        if self._stopped_by is not None:
            raise self._stopped_by

    def _claim_some(self, pool: ThreadPoolExecutor) -> datetime | None:
        """Claim what fits in the free slots; return when to look again (None: at once)."""
        engine = self.engine
        now = engine.clock.now()
        with self._lock:
            free = self.concurrency - self._inflight
        if free > 0:
            rows = engine._claim(self.queues, limit=free)
            if engine._refusing_claims:  # the clock check failed: look again at the poll
                return now + self.poll
            if rows:
                with self._lock:
                    self._inflight += len(rows)
                for row in rows:
                    pool.submit(self._run_one, row)
                return None
        until = now + self.poll
        if free > 0:
            due = engine.store.next_due(queues=self.queues, workflows=engine._workflow_names())
            if due is not None:
                # Due later: wake exactly then. Due already but not claimed (taken by
                # another worker meanwhile): look again soon, but never spin.
                until = min(until, due if due > now else now + _MIN_IDLE)
        return until

    def join(self, timeout: float | None = None) -> bool:
        """Wait until run() has returned; False if it is still running after timeout s."""
        return self._finished.wait(timeout)

    def _run_one(self, row: ExecutionRow) -> None:
        try:
            self.engine._execute(row, should_stop=lambda _next: self._stop.is_set())
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
