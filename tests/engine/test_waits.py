"""Waits (sleep, events, input) on memory, SQLite and Postgres, driven by the test clock."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

import durable
from durable import minutes
from wait_workflows import (
    Approval,
    AsyncWaiter,
    Deadline,
    EventWaiter,
    Several,
    Sleepy,
    Swallow,
    Timeouts,
    TwoInARow,
    TwoWaitsOneStep,
    Until,
    ran,
)

from helpers import eventually

MIN = timedelta(minutes=1)


def statuses(engine, wid):
    return [(a.step, a.attempt, a.status) for a in engine.history(wid)]


# -- sleep -----------------------------------------------------------------------------------


def test_sleep_waits_without_a_worker_and_wakes_exactly_when_due(durable_engine, durable_clock):
    start = durable_clock.now()
    wid = durable_engine.start(Sleepy)
    durable_engine.drain()
    ex = durable_engine.get_execution(wid)
    assert ex.status == "waiting"
    assert ex.current_step == "nap"
    assert ex.context == {"before": True}  # the suspended run's writes are not kept
    (wait,) = durable_engine.list_waits()
    assert (wait.execution_id, wait.kind, wait.step, wait.until) == (
        wid,
        "sleep",
        "nap",
        start + 10 * MIN,
    )
    assert durable_engine.next_due() == start + 10 * MIN

    durable_clock.advance(minutes(10) - 1)
    assert durable_engine.drain() == 0
    durable_clock.advance(1)
    assert durable_engine.drain() == 1
    ex = durable_engine.get_execution(wid)
    assert ex.status == "completed"
    assert ex.context == {"before": True, "napping": True, "woke": True, "after": True}
    assert statuses(durable_engine, wid) == [
        ("before", 1, "completed"),
        ("nap", 1, "suspended"),
        ("nap", 1, "completed"),  # the same attempt resumed: no retry budget spent
        ("after", 1, "completed"),
    ]
    assert durable_engine.history(wid).attempts("nap")[1].at == 10 * MIN
    assert durable_engine.list_waits() == []


def test_code_before_a_wait_runs_again_on_resume(durable_engine):
    wid = durable_engine.start(Sleepy)
    durable_engine.run_until(wid)
    assert [what for w, what in ran if w == wid] == ["nap body", "nap body"]


def test_a_waiting_execution_holds_no_worker(durable_engine, durable_clock):
    sleeper = durable_engine.start(Sleepy, {"nap_ms": minutes(60)})
    durable_engine.drain()
    row = durable_engine.store.get(sleeper)
    assert (row.status, row.worker_id, row.lease_expires_at) == ("waiting", None, None)
    others = [durable_engine.start(EventWaiter) for _ in range(3)]
    for wid in others:
        durable_engine.send_event(wid, "payment", {"amount": 5})
    with durable_engine.worker(concurrency=1):  # one slot; the sleeper does not take it
        assert eventually(
            lambda: all(durable_engine.get_execution(w).status == "completed" for w in others)
        )
    assert durable_engine.get_execution(sleeper).status == "waiting"


def test_sleep_until_a_past_instant_does_not_wait(durable_engine, durable_clock):
    wid = durable_engine.start(Until, {"until": (durable_clock.now() - MIN).isoformat()})
    durable_engine.drain()
    assert durable_engine.get_execution(wid).status == "completed"
    assert [a.status for a in durable_engine.history(wid)] == ["completed"]
    later = durable_engine.start(Until, {"until": (durable_clock.now() + 5 * MIN).isoformat()})
    assert durable_engine.run_until(later).completed_at == durable_clock.now()
    assert durable_engine.history(later).finished_after == 5 * MIN


def test_two_waits_in_one_step_resume_in_order(durable_engine, durable_clock):
    wid = durable_engine.start(TwoWaitsOneStep)
    durable_engine.drain()
    durable_engine.advance_to_next()
    durable_engine.drain()  # the sleep is over; now it waits for "go"
    assert durable_engine.get_execution(wid).status == "waiting"
    assert [w.kind for w in durable_engine.list_waits(wid)] == ["event"]
    durable_engine.send_event(wid, "go", 42)
    durable_engine.drain()
    ex = durable_engine.get_execution(wid)
    assert ex.context == {"trail": ["slept", "got event"], "event": 42}
    assert [what for w, what in ran if w == wid] == ["both body"] * 3


def test_a_step_that_catches_exception_does_not_swallow_a_wait(durable_engine):
    wid = durable_engine.start(Swallow)
    ex = durable_engine.run_until(wid)
    assert ex.context == {"woke": 1}  # the first run's write was discarded, not caught


# -- events ----------------------------------------------------------------------------------


def test_an_event_wakes_the_waiting_step(durable_engine, durable_clock):
    wid = durable_engine.start(EventWaiter)
    durable_engine.drain()
    assert durable_engine.get_execution(wid).status == "waiting"
    # no timeout on the wait: only the event wakes it, or the workflow's 24 h deadline
    assert durable_engine.next_due() == durable_engine.get_execution(wid).deadline
    durable_engine.send_event(wid, "payment", {"amount": 99.99})
    assert durable_engine.get_execution(wid).status == "pending"
    durable_engine.drain()
    ex = durable_engine.get_execution(wid)
    assert ex.status == "completed"
    assert ex.context["payment"] == {"amount": 99.99}


def test_an_event_sent_before_the_wait_is_kept(durable_engine):
    wid = durable_engine.start(EventWaiter)
    durable_engine.send_event(wid, "payment", {"early": True})  # still pending
    durable_engine.drain()
    ex = durable_engine.get_execution(wid)
    assert ex.status == "completed"
    assert ex.context["payment"] == {"early": True}
    assert "suspended" not in [a.status for a in durable_engine.history(wid)]


def test_each_event_is_consumed_once_in_order(durable_engine):
    wid = durable_engine.start(TwoInARow)
    durable_engine.send_event(wid, "tick", 1)
    durable_engine.send_event(wid, "tick", 2)
    durable_engine.send_event(wid, "tick", 3)
    durable_engine.drain()
    assert durable_engine.get_execution(wid).context == {"first": 1, "second": 2}


def test_send_event_errors(durable_engine):
    with pytest.raises(durable.ExecutionNotFound):
        durable_engine.send_event("no-such-id", "payment", {})
    wid = durable_engine.start(EventWaiter)
    with pytest.raises(durable.SerializationError):
        durable_engine.send_event(wid, "payment", {"bad": object()})
    with pytest.raises(durable.ConfigError, match="event name must be a non-empty str"):
        durable_engine.send_event(wid, "", {})
    durable_engine.send_event(wid, "payment", 1)
    durable_engine.run_until(wid)
    with pytest.raises(durable.InvalidState, match="already finished with status completed"):
        durable_engine.send_event(wid, "payment", 2)


def test_wait_for_any_of_several_events(durable_engine):
    wid = durable_engine.start(Several)
    durable_engine.drain()
    durable_engine.send_event(wid, "rejected", {"why": "stock"})
    durable_engine.drain()
    ex = durable_engine.get_execution(wid)
    assert ex.context == {"decision": ["rejected", {"why": "stock"}]}
    assert ex.status == "waiting"  # now on all_of


def test_wait_for_all_of_several_events_wakes_only_when_all_arrived(durable_engine):
    wid = durable_engine.start(Several)
    durable_engine.send_event(wid, "approved", True)
    durable_engine.drain()  # any_of done; all_of waits for docs and payment
    durable_engine.send_event(wid, "payment", 10)
    assert durable_engine.get_execution(wid).status == "waiting"  # no needless re-run
    durable_engine.send_event(wid, "docs", ["id.pdf"])
    assert durable_engine.get_execution(wid).status == "pending"
    durable_engine.drain()
    ex = durable_engine.get_execution(wid)
    assert ex.context["all"] == {"docs": ["id.pdf"], "payment": 10}
    assert [a.status for a in durable_engine.history(wid).attempts("all_of")] == [
        "suspended",
        "completed",
    ]


# -- timeouts --------------------------------------------------------------------------------


def test_a_timeout_value_lets_the_step_go_on_at_exactly_the_timeout(durable_engine, durable_clock):
    start = durable_clock.now()
    wid = durable_engine.start(Timeouts)
    durable_engine.drain()
    durable_clock.advance(minutes(5) - 1)
    assert durable_engine.drain() == 0
    durable_clock.advance(1)
    durable_engine.drain()
    ex = durable_engine.get_execution(wid)
    assert ex.context == {"got": "none"}
    assert durable_engine.history(wid).attempts("with_value")[-1].completed_at == start + 5 * MIN


def test_a_timeout_without_value_fails_the_attempt_and_the_retry_waits_afresh(
    durable_engine, durable_clock
):
    start = durable_clock.now()
    wid = durable_engine.start(Timeouts)
    durable_engine.send_event(wid, "maybe", "yes")
    durable_engine.drain()  # with_value got its event; without_value waits 5 min
    durable_engine.advance_to_next()
    durable_engine.drain()  # timed out: attempt 1 fails; retry in 60 s
    h = durable_engine.history(wid).attempts("without_value")
    assert [(a.attempt, a.status, a.error_type) for a in h] == [
        (1, "suspended", None),
        (1, "failed", "durable.errors.WaitTimeout"),
    ]
    assert h[1].completed_at == start + 5 * MIN
    durable_engine.advance_to_next()
    durable_engine.drain()  # attempt 2 waits again, for a fresh 5 minutes
    (wait,) = durable_engine.list_waits(wid)
    assert wait.until == start + 5 * MIN + timedelta(seconds=60) + 5 * MIN
    durable_engine.send_event(wid, "must", "here")
    ex = durable_engine.run_until(wid)
    assert ex.context == {"got": "yes", "strict": "here", "attempt": 2}


def test_an_event_at_the_timeout_instant_wins_and_resolves_once(durable_engine, durable_clock):
    wid = durable_engine.start(Timeouts)
    durable_engine.drain()
    durable_clock.advance(minutes(5))
    durable_engine.send_event(wid, "maybe", "just in time")
    durable_engine.drain()
    assert durable_engine.get_execution(wid).context["got"] == "just in time"


def test_the_workflow_deadline_ends_a_wait_without_timeout(durable_engine, durable_clock):
    start = durable_clock.now()
    wid = durable_engine.start(Deadline)
    durable_engine.drain()
    assert durable_engine.next_due() == start + timedelta(hours=1)
    ex = durable_engine.run_until(wid)
    assert ex.error["type"] == "durable.errors.WorkflowTimeout"
    assert ex.completed_at == start + timedelta(hours=1)


# -- input -----------------------------------------------------------------------------------


def test_input_is_listed_validated_and_resumes_the_step(durable_engine, durable_clock):
    start = durable_clock.now()
    wid = durable_engine.start(Approval)
    durable_engine.drain()
    (pending,) = durable_engine.list_pending_inputs()
    assert (pending.execution_id, pending.workflow, pending.step, pending.names) == (
        wid,
        "wait_input",
        "ask",
        ("approval",),
    )
    assert pending.prompt == "Approve the refund?"
    assert pending.schema["required"] == ["approved", "by"]
    assert pending.until == start + timedelta(hours=48)

    with pytest.raises(durable.InvalidInput, match=r"at approved: 'yes' is not of type 'boolean'"):
        durable_engine.provide_input(wid, "approval", {"approved": "yes", "by": "ann"})
    with pytest.raises(durable.InvalidInput, match="'by' is a required property"):
        durable_engine.provide_input(wid, "approval", {"approved": True})
    assert durable_engine.get_execution(wid).status == "waiting"  # nothing stored
    assert len(durable_engine.list_pending_inputs()) == 1

    durable_engine.provide_input(wid, "approval", {"approved": True, "by": "ann"})
    assert durable_engine.list_pending_inputs() == []
    with pytest.raises(durable.InvalidState, match="not waiting for an input named 'approval'"):
        durable_engine.provide_input(wid, "approval", {"approved": False, "by": "bob"})
    durable_engine.drain()
    assert durable_engine.get_execution(wid).context == {
        "decision": {"approved": True, "by": "ann"}
    }


def test_input_nobody_waits_for_is_invalid_state(durable_engine):
    with pytest.raises(durable.ExecutionNotFound):
        durable_engine.provide_input("no-such-id", "approval", {})
    wid = durable_engine.start(Approval)
    with pytest.raises(durable.InvalidState, match="not waiting for an input named 'approval'"):
        durable_engine.provide_input(wid, "approval", {"approved": True, "by": "x"})  # too early
    durable_engine.drain()
    with pytest.raises(durable.InvalidState, match="it waits for: 'approval'"):
        durable_engine.provide_input(wid, "other", {})


def test_input_timeout_goes_on_with_the_timeout_value(durable_engine, durable_clock):
    wid = durable_engine.start(Approval)
    ex = durable_engine.run_until(wid)
    assert ex.context == {"decision": {"approved": False, "by": "timeout"}}
    assert durable_engine.history(wid).finished_after == timedelta(hours=48)
    with pytest.raises(durable.InvalidState):
        durable_engine.provide_input(wid, "approval", {"approved": True, "by": "late"})


# -- cancel, async, observers ------------------------------------------------------------------


def test_cancel_a_waiting_execution_at_once(durable_engine):
    wid = durable_engine.start(EventWaiter)
    durable_engine.drain()
    assert durable_engine.cancel(wid, reason="no payment").status == "cancelled"
    assert durable_engine.list_waits() == []
    with pytest.raises(durable.InvalidState):
        durable_engine.send_event(wid, "payment", 1)


def test_an_async_step_with_a_timeout_can_wait(durable_engine):
    wid = durable_engine.start(AsyncWaiter)
    durable_engine.drain()
    assert durable_engine.get_execution(wid).status == "waiting"
    durable_engine.send_event(wid, "ping", "pong")
    durable_engine.drain()
    assert durable_engine.get_execution(wid).context == {"got": "pong"}


def test_observers_hear_of_a_suspension(durable_clock, durable_store_url, recorder):
    with durable.Engine(durable_store_url, clock=durable_clock, plugins=[recorder]) as eng:
        wid = eng.start(EventWaiter)
        eng.drain()
        eng.send_event(wid, "payment", 1)
        eng.drain()
    hooks = recorder.hooks(wid)
    assert hooks.index("step_suspended") < hooks.index("completed")
    (suspended,) = [x for h, _, x in recorder.calls if h == "step_suspended"]
    assert suspended[:2] == ("wait_payment", 1)
    assert suspended[2] == eng.get_execution(wid).deadline  # no wait timeout: the deadline


def test_waits_are_called_in_steps_only():
    with pytest.raises(durable.ContextError, match=r"sleep_for\(\) was called outside"):
        durable.sleep_for(1000)
    with pytest.raises(durable.ContextError):
        durable.wait_for_event("x")


# -- races -------------------------------------------------------------------------------------


def test_two_engines_racing_to_resume_run_the_step_once(durable_engine, durable_store_url):
    wids = [durable_engine.start(EventWaiter) for _ in range(10)]
    durable_engine.drain()
    for wid in wids:
        durable_engine.send_event(wid, "payment", wid)
    other = durable.Engine(durable_store_url, clock=durable_engine.clock, migrate=False)
    barrier = threading.Barrier(2)

    def drain(engine: durable.Engine) -> None:
        barrier.wait()
        engine.drain()

    threads = [threading.Thread(target=drain, args=(e,)) for e in (durable_engine, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    for wid in wids:
        ex = durable_engine.get_execution(wid)
        assert ex.context["payment"] == wid
        assert [a.status for a in durable_engine.history(wid).attempts("wait_payment")] == [
            "suspended",
            "completed",
        ]


# -- the operator's view -----------------------------------------------------------------------


def test_cli_lists_waits_sends_events_and_provides_input(tmp_path):
    from click.testing import CliRunner

    from durable.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    run = CliRunner().invoke

    def cli(*args: str) -> str:
        result = run(main, ["--store", url, "-i", "wait_workflows", *args])
        assert result.exit_code == 0, result.output
        return result.output

    event_wid = cli("start", "wait_event").strip()
    input_wid = cli("start", "wait_input").strip()
    with durable.Engine(url) as eng:
        eng.drain()
    listing = cli("waits")
    assert f"{event_wid}  wait_event" in listing
    assert "event payment" in listing and "no timeout" in listing
    assert "input approval (Approve the refund?)" in listing and "until " in listing
    assert "input approval" in cli("waits", "--kind", "input")
    assert "event payment" not in cli("waits", "--kind", "input")
    shown = cli("show", input_wid)
    assert "waiting    in step ask, wakes at" in shown
    assert "waits for" in shown

    bad = run(
        main,
        [
            "--store",
            url,
            "-i",
            "wait_workflows",
            "provide-input",
            input_wid,
            "approval",
            "--data",
            '{"approved": "yes"}',
        ],
    )
    assert bad.exit_code == 1 and "does not match its schema" in bad.output
    assert "input 'approval' provided" in cli(
        "provide-input", input_wid, "approval", "--data", '{"approved": true, "by": "ops"}'
    )
    assert "event 'payment' sent" in cli("send-event", event_wid, "payment", "--payload", "5")
    with durable.Engine(url) as eng:
        eng.drain()
        assert eng.get_execution(event_wid).context["payment"] == 5
        assert eng.get_execution(input_wid).context["decision"]["by"] == "ops"
    assert "nothing is waiting" in cli("waits")
    gone = run(main, ["--store", url, "send-event", event_wid, "payment"])
    assert gone.exit_code == 1 and "already finished" in gone.output


# -- late answers, store failures, interruptions, async waits and threads --------------------


def test_an_input_after_the_timeout_is_refused_even_before_a_worker_looked(
    durable_engine, durable_clock
):
    wid = durable_engine.start(Approval)
    durable_engine.drain()
    durable_clock.advance(timedelta(hours=48))
    assert len(durable_engine.list_pending_inputs()) == 1  # at the instant: still open
    durable_clock.advance(1)
    assert durable_engine.list_pending_inputs() == []
    with pytest.raises(durable.InvalidState, match="stopped waiting for the input 'approval'"):
        durable_engine.provide_input(wid, "approval", {"approved": True, "by": "late"})
    ex = durable_engine.run_until(wid)
    assert ex.context["decision"] == {"approved": False, "by": "timeout"}


def test_an_event_sent_after_the_timeout_does_not_resolve_the_wait(durable_engine, durable_clock):
    wid = durable_engine.start(Timeouts)
    durable_engine.drain()
    durable_clock.advance(minutes(60))  # no worker looked at the 5-minute timeout yet
    durable_engine.send_event(wid, "maybe", "55 minutes late")
    durable_engine.drain()
    assert durable_engine.get_execution(wid).context["got"] == "none"


def test_workflow_started_is_reported_once_across_resumes(
    durable_clock, durable_store_url, recorder
):
    with durable.Engine(durable_store_url, clock=durable_clock, plugins=[recorder]) as eng:
        wid = eng.start(Approval)
        eng.drain()
        eng.provide_input(wid, "approval", {"approved": True, "by": "ann"})
        eng.drain()
    assert recorder.hooks(wid).count("started") == 1


def test_wait_for_any_event_of_one_name_still_returns_a_pair(durable_engine):
    from wait_workflows import AnyOfOne

    wid = durable_engine.start(AnyOfOne)
    durable_engine.send_event(wid, "approved", {"by": "ann"})
    assert durable_engine.run_until(wid).context == {"got": ["approved", {"by": "ann"}]}


def test_a_store_failure_inside_a_wait_is_retried_and_never_reaches_the_steps_except(
    durable_engine, durable_clock, monkeypatch, caplog
):
    from wait_workflows import Fallback

    real = durable_engine.store.wait
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise durable.StoreError("connection reset by peer")
        return real(*args, **kwargs)

    monkeypatch.setattr(durable_engine.store, "wait", flaky)
    wid = durable_engine.start(Fallback)
    durable_engine.drain()
    ex = durable_engine.get_execution(wid)
    assert ex.status == "waiting"  # the wait was decided on the second try, at once
    assert "fallback" not in ex.context
    assert "did not commit (connection reset by peer); trying again" in caplog.text
    durable_engine.send_event(wid, "go", 1)
    ex = durable_engine.run_until(wid)
    assert ex.context == {"got": 1}
    assert durable_engine.history(wid).errors == []


def test_a_retry_waits_afresh_after_a_timeout_value(durable_engine, durable_clock):
    from wait_workflows import StrictValue

    start = durable_clock.now()
    wid = durable_engine.start(StrictValue)
    durable_engine.drain()
    durable_engine.advance_to_next()
    durable_engine.drain()  # timed out with None; the step raised; retry in 10 s
    durable_engine.advance_to_next()
    durable_engine.drain()  # attempt 2 waits again (not the recorded timeout at once)
    assert durable_engine.get_execution(wid).status == "waiting"
    (wait,) = durable_engine.list_waits(wid)
    assert wait.until == start + timedelta(minutes=1, seconds=10) + MIN
    durable_engine.send_event(wid, "go", "second time lucky")
    assert durable_engine.run_until(wid).context == {"got": "second time lucky"}


@pytest.mark.parametrize("durable_store_url", ["sqlite", "postgres"], indirect=True)
def test_waits_in_step_threads_use_the_executors_connection(durable_engine, durable_clock):
    # (SQL stores only: the memory store has no connections to count)
    from wait_workflows import AsyncWaiter

    store = durable_engine.store
    ids = [durable_engine.start(AsyncWaiter) for _ in range(5)]  # async, with a timeout
    opened = store.connect_attempts
    durable_engine.drain()
    for wid in ids:
        durable_engine.send_event(wid, "ping", wid)
    durable_engine.drain()
    assert all(durable_engine.get_execution(w).context == {"got": w} for w in ids)
    assert store.connect_attempts == opened  # the waits ran on the drain thread's connection


def test_async_steps_await_their_waits(durable_engine, durable_clock):
    from wait_workflows import AioWaiter

    wid = durable_engine.start(AioWaiter)
    durable_engine.drain()
    assert [w.kind for w in durable_engine.list_waits(wid)] == ["sleep"]
    durable_engine.advance_to_next()
    durable_engine.drain()
    durable_engine.send_event(wid, "ping", "pong")
    durable_engine.drain()
    with pytest.raises(durable.InvalidInput):
        durable_engine.provide_input(wid, "ok", "yes")
    durable_engine.provide_input(wid, "ok", True)
    assert durable_engine.run_until(wid).context == {"got": ["pong", True]}
    assert [a.status for a in durable_engine.history(wid)] == [
        "suspended",
        "suspended",
        "suspended",
        "completed",
    ]


def test_ctrl_c_while_a_wait_is_decided_reaches_the_caller_not_the_step(
    durable_engine, monkeypatch
):
    from wait_workflows import AsyncWaiter, TimeoutSync

    real = durable_engine.store.wait
    seen: set[str] = set()

    def interrupted(execution_id, *args, **kwargs):
        if execution_id not in seen:  # the first wait each execution reaches
            seen.add(execution_id)
            raise KeyboardInterrupt
        return real(execution_id, *args, **kwargs)

    monkeypatch.setattr(durable_engine.store, "wait", interrupted)
    sync_wid = durable_engine.start(TimeoutSync, priority=2)
    async_wid = durable_engine.start(AsyncWaiter, priority=1)
    with pytest.raises(KeyboardInterrupt):
        durable_engine.drain()  # interrupted in the sync step's wait
    ex = durable_engine.get_execution(sync_wid)
    # not failed with the interruption: released at once, the attempt left in flight
    assert (ex.status, ex.error) == ("pending", None)
    with pytest.raises(KeyboardInterrupt):
        # the sync step runs again (a lost attempt) and waits; then the async step's
        # wait is interrupted
        durable_engine.drain()
    assert durable_engine.get_execution(sync_wid).status == "waiting"
    ex = durable_engine.get_execution(async_wid)
    assert (ex.status, ex.error) == ("pending", None)
    monkeypatch.setattr(durable_engine.store, "wait", real)
    # The interrupted attempts count as lost (as any attempt its worker dropped) and run
    # again, not as failed by a KeyboardInterrupt of their own.
    durable_engine.send_event(sync_wid, "go", 1)
    durable_engine.send_event(async_wid, "ping", 2)
    for wid in (sync_wid, async_wid):
        assert durable_engine.run_until(wid).status == "completed"
        history = durable_engine.history(wid)
        assert history.errors == []
        assert [attempt for _, attempt in history.lost] == [1]
    fresh = durable_engine.start(AsyncWaiter)  # the async steps' event loop is alive
    durable_engine.send_event(fresh, "ping", 3)
    assert durable_engine.run_until(fresh).context == {"got": 3}


def test_aio_waits_run_one_at_a_time(durable_engine):
    from wait_workflows import AioGather

    wid = durable_engine.start(AioGather)
    ex = durable_engine.run_until(wid)
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.ContextError"
    assert "one at a time" in ex.error["message"]


def test_an_inline_step_can_wait_from_a_helper_thread(durable_engine):
    from wait_workflows import HelperThread

    wid = durable_engine.start(HelperThread)
    assert durable_engine.run_until(wid, within=timedelta(minutes=2)).context == {"woke": True}


# -- schemas never reach outside themselves ---------------------------------------------------


@durable.workflow("wait_schema_ref")
class SchemaRef:
    @durable.step
    def ask(self) -> None:
        durable.wait_for_input("ok", schema={"$ref": "file:///etc/passwd"})


def test_a_schema_that_refers_outside_itself_is_refused_when_the_wait_is_made(durable_engine):
    wid = durable_engine.start(SchemaRef)
    ex = durable_engine.run_until(wid)
    assert ex.status == "failed"  # at once, with a clear error; nothing was read
    assert ex.error["type"] == "durable.errors.ConfigError"
    assert "refers outside itself ('file:///etc/passwd')" in ex.error["message"]
    assert "#/$defs/name" in ex.error["message"]


@durable.workflow("wait_schema_defs")
class SchemaDefs:
    @durable.step
    def ask(self) -> None:
        schema = {"$defs": {"yes": {"const": True}}, "$ref": "#/$defs/yes"}
        durable.context.put_context("ok", durable.wait_for_input("ok", schema=schema))


def test_local_references_work(durable_engine):
    wid = durable_engine.start(SchemaDefs)
    durable_engine.run_until(wid, "waiting")
    with pytest.raises(durable.InvalidInput, match="True was expected"):
        durable_engine.provide_input(wid, "ok", False)
    durable_engine.provide_input(wid, "ok", True)
    assert durable_engine.run_until(wid).context == {"ok": True}


def test_a_stored_schema_with_an_outside_reference_is_never_fetched(tmp_path, durable_clock):
    import json

    import sqlalchemy as sa

    # The engine refuses such a schema when the wait is made (above); one already stored
    # (by an older version, or by hand) is the store's, rewritten here as another writer.
    # Fetched, this schema would accept 5; never fetched, the check cannot pass.
    target = tmp_path / "schema.json"
    target.write_text('{"type": "integer"}')
    url = f"sqlite:///{tmp_path / 'schemas.db'}"
    with durable.Engine(url, clock=durable_clock) as engine:
        wid = engine.start(SchemaDefs)
        engine.drain()
        for ref in (target.as_uri(), "http://127.0.0.1:9/schema.json"):
            with engine.store.sa_engine().begin() as conn:
                conn.execute(
                    sa.text("UPDATE durable_waits SET input_schema = :s WHERE execution_id = :id"),
                    {"s": json.dumps({"$ref": ref}), "id": wid},
                )
            with pytest.raises(
                durable.InvalidInput, match="does not resolve within it.*never fetch"
            ):
                engine.provide_input(wid, "ok", 5)
        assert engine.get_execution(wid).status == "waiting"  # nothing was stored


@durable.workflow("wait_schema_dangling")
class SchemaDangling:
    @durable.step
    def ask(self) -> None:
        durable.wait_for_input("ok", schema={"$ref": "#/$defs/missing"})


def test_a_schema_reference_to_a_part_it_lacks_is_refused_when_the_wait_is_made(
    durable_engine,
):
    wid = durable_engine.start(SchemaDangling)
    ex = durable_engine.run_until(wid)
    assert ex.status == "failed"
    assert "refers to '#/$defs/missing', which is not in the schema" in ex.error["message"]
