"""Waits across real worker processes on Postgres (system clock): every woken execution is
resumed by exactly one worker, and sends, inputs, timers and timeouts that race each other
resolve once."""

from __future__ import annotations

import random
import time
from collections import Counter

import psycopg
import pytest
from test_crash_and_scale_out import Workers

import durable
from wait_workflows import EventWaiter, RaceInput, RealNap

from helpers import eventually

pytestmark = [pytest.mark.processes, pytest.mark.slow]


def test_four_workers_resume_each_wait_exactly_once(durable_store_url_pg, tmp_path):
    url = durable_store_url_pg
    pool = Workers(url, tmp_path / "unused.log", module="wait_workflows")
    client = durable.Engine(url)
    rng = random.Random(7)
    try:
        for _ in range(4):
            pool.start(concurrency=8)
        events = [client.start(EventWaiter) for _ in range(200)]
        naps = [client.start(RealNap, {"nap_ms": rng.randint(50, 1500)}) for _ in range(100)]
        # Send while the workers are busy: some events arrive before their wait, some
        # while the step runs, some after it suspended.
        for i, wid in enumerate(events):
            client.send_event(wid, "payment", {"n": i})
        inputs = [client.start(RaceInput, {"timeout_ms": rng.randint(200, 800)}) for _ in range(60)]
        provided: dict[str, bool] = {}
        # Each input is offered no earlier than a random moment around its timeout, so
        # some arrive in time and some race the timer or come after it.
        t0 = time.monotonic()
        not_before = {wid: t0 + rng.uniform(0.0, 1.2) for wid in inputs}

        def try_inputs() -> bool:
            for wid in inputs:
                if wid in provided or time.monotonic() < not_before[wid]:
                    continue
                try:
                    client.provide_input(wid, "ok", f"yes {wid}")
                    provided[wid] = True
                except durable.InvalidState:
                    if client.get_execution(wid).finished:  # it timed out first
                        provided[wid] = False
                    # else: the step has not reached its wait yet; offer again
            return len(provided) == len(inputs)

        everyone = events + naps + inputs
        assert eventually(try_inputs, 120)
        assert eventually(lambda: all(client.get_execution(w).finished for w in everyone), 120), (
            Counter(client.get_execution(w).status for w in everyone)
        )
    finally:
        pool.stop_all()
    try:
        for i, wid in enumerate(events):
            ex = client.get_execution(wid, include_steps=True)
            assert ex.status == "completed"
            assert ex.context["payment"] == {"n": i}
            done = [s for s in ex.steps if s.name == "wait_payment" and s.status == "completed"]
            assert len(done) == 1
        for wid in naps:
            assert client.get_execution(wid).context == {"woke": True}
        for wid in inputs:
            ex = client.get_execution(wid, include_steps=True)
            expected = f"yes {wid}" if provided[wid] else "timed out"
            assert ex.context == {"decision": expected}  # accepted input is never lost
            assert [s.status for s in ex.steps].count("completed") == 1
        assert {provided[w] for w in inputs} == {True, False}  # both sides of the race ran
        with psycopg.connect(url) as conn:
            (unconsumed,) = conn.execute(
                "SELECT count(*) FROM durable_events WHERE consumed_at IS NULL"
            ).fetchone()
            (total,) = conn.execute("SELECT count(*) FROM durable_events").fetchone()
        assert (unconsumed, total) == (0, len(events))
    finally:
        client.close()
