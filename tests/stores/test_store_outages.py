"""PostgreSQL going away under a running step: a killed connection, a commit whose reply
is lost, an outage shorter and longer than the lease; and workers whose clock disagrees
with the server's. Real faults on the real server: connections are killed with
pg_terminate_backend, kept out with ALLOW_CONNECTIONS, and replies dropped by a TCP proxy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import durable
from durable import Retry, seconds, step, workflow
from durable.context import attempt, put_context, wait_for_event

from conftest import PG_ADMIN

box: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _clear():
    box.clear()
    yield
    box.clear()


def _admin(sql: str, *params: object) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql, params)  # type: ignore[arg-type]


def _database(url: str) -> str:
    return url.rsplit("/", 1)[1]


# The store keeps the application_name a URL sets: it tells this run's victim engine's
# connections apart from every other connection to the server.
VICTIM = f"durable-victim-{os.getpid()}"


def _victim(url: str) -> str:
    """``url`` for the engine whose connections _kill_connections() terminates."""
    return f"{url}{'&' if '?' in url else '?'}application_name={VICTIM}"


def _kill_connections(url: str) -> None:
    """Terminate, from another connection, every connection the victim engine has open
    to the database of ``url``: the next statement on each fails. (Its one in use is the
    executor's, that of the thread running the inline step: nothing else of it runs.)"""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        (killed,) = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = %s",
            (VICTIM, _database(url)),
        ).fetchone()
    assert killed >= 1, "the victim engine had no connection open"


@workflow("outage_blip")
class Blip:
    @step
    def work(self) -> None:
        box["during"]()
        put_context("done", attempt())


@workflow("outage_blip_wait")
class BlipWait:
    @step
    def work(self) -> None:
        box["during"]()
        put_context("got", wait_for_event("go"))


@pytest.fixture
def pg_engine(durable_store_url_pg, durable_clock) -> Iterator[durable.Engine]:
    engine = durable.Engine(_victim(durable_store_url_pg), clock=durable_clock)
    yield engine
    engine.close()


def test_a_killed_connection_under_a_step_is_not_a_lost_attempt(
    pg_engine, durable_store_url_pg, caplog
):
    """The step's completion finds its connection dead, is tried again on a new one at
    once, and commits: no lost attempt, no failure, the step ran once."""
    box["during"] = lambda: _kill_connections(durable_store_url_pg)
    wid = pg_engine.start(Blip)  # one attempt only: a lost attempt would have failed it
    assert pg_engine.drain() == 1
    ex = pg_engine.get_execution(wid, include_steps=True)
    assert (ex.status, ex.context) == ("completed", {"done": 1})
    assert [(s.attempt, s.status) for s in ex.steps] == [(1, "completed")]
    assert "completing step 'work' of" in caplog.text and "did not commit" in caplog.text


def test_a_killed_connection_while_a_wait_is_decided_is_retried(pg_engine, durable_store_url_pg):
    box["during"] = lambda: _kill_connections(durable_store_url_pg)
    wid = pg_engine.start(BlipWait)
    pg_engine.drain()
    assert pg_engine.get_execution(wid).status == "waiting"
    box["during"] = lambda: None
    pg_engine.send_event(wid, "go", 5)
    pg_engine.drain()
    ex = pg_engine.get_execution(wid, include_steps=True)
    assert (ex.status, ex.context) == ("completed", {"got": 5})
    assert [s.status for s in ex.steps] == ["suspended", "completed"]


def test_an_outage_shorter_than_the_lease_is_waited_out(pg_engine, durable_store_url_pg):
    """The database refuses connections for a moment: the completion is tried again with
    backoff until it is back (well within the lease), and commits once."""
    db = _database(durable_store_url_pg)

    def outage() -> None:
        _admin(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS false')
        _kill_connections(durable_store_url_pg)
        threading.Timer(
            0.4, lambda: _admin(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS true')
        ).start()

    box["during"] = outage
    try:
        wid = pg_engine.start(Blip)
        assert pg_engine.drain() == 1
    finally:
        _admin(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS true')
    ex = pg_engine.get_execution(wid, include_steps=True)
    assert (ex.status, ex.context) == ("completed", {"done": 1})
    assert [s.status for s in ex.steps] == ["completed"]


def test_an_outage_longer_than_the_lease_loses_the_attempt_which_runs_again_for_free(
    durable_store_url_pg, durable_clock, caplog
):
    db = _database(durable_store_url_pg)
    engine = durable.Engine(_victim(durable_store_url_pg), clock=durable_clock, lease=seconds(1))

    def outage() -> None:
        if attempt() == 1 and "out" not in box:
            box["out"] = True
            _admin(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS false')
            _kill_connections(durable_store_url_pg)

    box["during"] = outage
    try:
        wid = engine.start(Blip)
        (row,) = engine.scheduler.claim(None, limit=1)
        # The completion is tried again until its pauses add up to the lease, then left.
        engine.scheduler.execute(row)
    finally:
        _admin(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS true')
    assert "resumes it once its lease expires" in caplog.text
    assert engine.get_execution(wid).status == "running"  # nothing committed
    durable_clock.advance(seconds(1))
    assert engine.drain() == 1
    ex = engine.get_execution(wid, include_steps=True)
    assert (ex.status, ex.context) == ("completed", {"done": 1})
    # the attempt lost to the outage ran again without spending the one-attempt budget
    assert [(s.attempt, s.status) for s in ex.steps] == [(1, "lost"), (1, "completed")]
    engine.close()


# -- a commit whose reply is lost ------------------------------------------------------


class ReplyDropper:
    """A TCP proxy in front of PostgreSQL. Armed, it lets the next request through, waits
    for the server's reply, and closes the client's connection without passing the reply
    on: the server committed, the client saw its connection die."""

    def __init__(self, port: int = 5432) -> None:
        self.target = ("127.0.0.1", port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.armed = threading.Event()
        self.dropped = threading.Event()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, replies: bool) -> None:
        try:
            while data := src.recv(65536):
                if replies and self.armed.is_set():
                    self.armed.clear()
                    dst.shutdown(socket.SHUT_RDWR)  # the reply never reaches the client
                    self.dropped.set()
                    return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self._closed = True
        self.server.close()


def test_a_commit_whose_reply_was_lost_is_recognised_and_not_applied_twice(
    durable_store_url_pg, durable_clock, caplog
):
    caplog.set_level(logging.INFO, logger="durable.executor")
    proxy = ReplyDropper()
    url = durable_store_url_pg.replace(":5432/", f":{proxy.port}/")
    engine = durable.Engine(url, clock=durable_clock)
    try:
        box["during"] = proxy.armed.set  # the next request is the step's completion
        wid = engine.start(Blip)
        assert engine.drain() == 1
        assert proxy.dropped.is_set()
        ex = engine.get_execution(wid, include_steps=True)
        assert (ex.status, ex.context) == ("completed", {"done": 1})
        # One record: the retry found its own write id on the row, committed before.
        assert [(s.name, s.status) for s in ex.steps] == [("work", "completed")]
        assert "committed after 1 more tries" in caplog.text
    finally:
        engine.close()
        proxy.close()


@workflow("outage_retry_reply")
class RetryReply:
    @step(retry=Retry(max_attempts=3, backoff="constant", base=1))
    def work(self) -> None:
        if attempt() == 1:
            box["during"]()
            raise ValueError("first attempt fails")
        put_context("done", attempt())


def test_a_retry_scheduled_under_a_lost_reply_is_scheduled_once(
    durable_store_url_pg, durable_clock
):
    proxy = ReplyDropper()
    url = durable_store_url_pg.replace(":5432/", f":{proxy.port}/")
    engine = durable.Engine(url, clock=durable_clock)
    try:
        box["during"] = proxy.armed.set
        wid = engine.start(RetryReply)
        engine.drain()
        assert proxy.dropped.is_set()
        ex = engine.get_execution(wid, include_steps=True)
        assert ex.status == "pending"
        assert [(s.attempt, s.status) for s in ex.steps] == [(1, "failed")]  # recorded once
        durable_clock.advance(seconds(1))
        assert engine.drain() == 1
        ex = engine.get_execution(wid, include_steps=True)
        assert (ex.status, ex.context) == ("completed", {"done": 2})
        assert [(s.attempt, s.status) for s in ex.steps] == [(1, "failed"), (2, "completed")]
    finally:
        engine.close()
        proxy.close()


# -- clocks --------------------------------------------------------------------------------


class SkewedClock(durable.SystemClock):
    """The system clock, off by a fixed amount: a worker whose NTP is broken."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


@workflow("outage_clock")
class ClockFlow:
    @step
    def work(self) -> None:
        put_context("done", True)


@pytest.mark.parametrize(
    ("offset", "direction"),
    [(timedelta(seconds=60), "ahead of"), (-timedelta(seconds=60), "behind")],
)
def test_a_worker_whose_clock_is_off_claims_nothing_and_says_why(
    durable_store_url_pg, caplog, offset, direction
):
    good = durable.Engine(durable_store_url_pg)
    skewed = durable.Engine(durable_store_url_pg, clock=SkewedClock(offset))
    try:
        wid = good.start(ClockFlow, scheduled_at=datetime.now(UTC) - timedelta(minutes=5))
        assert skewed.drain() == 0
        assert f"clock is 60.0 s {direction} the store's" in caplog.text
        assert "it claims no work" in caplog.text and "NTP" in caplog.text
        assert skewed.drain() == 0  # still refusing (checked again every 5 s)
        assert good.get_execution(wid).status == "pending"
        assert good.drain() == 1
        assert good.get_execution(wid).status == "completed"
    finally:
        good.close()
        skewed.close()


def test_a_clock_stepped_back_after_a_check_is_checked_again_at_once(durable_store_url_pg):
    clock = SkewedClock(timedelta(0))
    good = durable.Engine(durable_store_url_pg)
    engine = durable.Engine(durable_store_url_pg, clock=clock, migrate=False)
    try:
        assert engine.drain() == 0  # the first check: the clocks agree
        clock.offset = -timedelta(hours=1)  # a VM resumed, a manual date change...
        wid = good.start(ClockFlow, scheduled_at=datetime.now(UTC) - timedelta(hours=2))
        assert engine.drain() == 0  # not an hour later: now
        assert engine.get_execution(wid).status == "pending"
    finally:
        good.close()
        engine.close()


def test_a_small_difference_is_tolerated_and_the_limit_is_stated(durable_store_url_pg):
    engine = durable.Engine(durable_store_url_pg, clock=SkewedClock(timedelta(seconds=1)))
    try:
        assert engine.max_clock_skew_ms() == 5000  # min(5 s, lease / 3) at the 30 s lease
        wid = engine.start(ClockFlow)
        assert engine.drain() == 1
        assert engine.get_execution(wid).status == "completed"
    finally:
        engine.close()
    short = durable.Engine(durable_store_url_pg, lease=seconds(3), migrate=False)
    assert short.max_clock_skew_ms() == 1000
    short.close()


def test_test_clocks_are_exempt(durable_store_url_pg, durable_clock):
    durable_clock.advance(timedelta(days=3))  # far from the server's clock, on purpose
    engine = durable.Engine(durable_store_url_pg, clock=durable_clock)
    try:
        wid = engine.start(ClockFlow)
        assert engine.drain() == 1
        assert engine.get_execution(wid).status == "completed"
    finally:
        engine.close()
