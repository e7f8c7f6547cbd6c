"""Retries: exact formulas, scheduled in the store, driven by the time-travel clock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

import durable
from durable import Retry, seconds, step, workflow
from durable.context import attempt, input, put_context
from durable.retry import MAX_DELAY_MS


def test_delay_formulas():
    exp = Retry(max_attempts=5, backoff="exponential", base=2)
    assert [exp.delay_ms(n) for n in (1, 2, 3, 4)] == [2000, 4000, 8000, 16000]
    lin = Retry(max_attempts=5, backoff="linear", base=2)
    assert [lin.delay_ms(n) for n in (1, 2, 3)] == [2000, 4000, 6000]
    const = Retry(max_attempts=5, backoff="constant", base=3)
    assert [const.delay_ms(n) for n in (1, 2, 3)] == [3000, 3000, 3000]
    capped = Retry(max_attempts=9, backoff="exponential", base=2, max_backoff=seconds(5))
    assert [capped.delay_ms(n) for n in (1, 2, 3, 4)] == [2000, 4000, 5000, 5000]
    assert Retry().delay_ms(1) == 2000  # exponential, base 2 by default
    assert Retry(max_backoff=timedelta(seconds=3)).max_backoff == 3000


@given(
    attempt_no=st.integers(1, 30),
    base=st.integers(1, 5),
    cap=st.none() | st.integers(1, 10**7),
)
def test_jitter_stays_within_half_and_full_delay(attempt_no, base, cap):
    plain = Retry(max_attempts=50, base=base, max_backoff=cap)
    jittered = Retry(max_attempts=50, base=base, max_backoff=cap, jitter=True)
    full = plain.delay_ms(attempt_no)
    assert full / 2 - 1 <= jittered.delay_ms(attempt_no) <= full


@pytest.mark.parametrize(
    "bad",
    [
        {"max_attempts": 0},
        {"max_attempts": 1.5},
        {"backoff": "fibonacci"},
        {"base": -1},
        {"max_backoff": -5},
        {"max_backoff": "1m"},
        {"jitter": "yes"},
    ],
)
def test_bad_retry_options_are_config_errors_at_definition(bad):
    with pytest.raises(durable.ConfigError):
        Retry(**bad)
    with pytest.raises(durable.ConfigError):

        @workflow(f"bad_retry_{sorted(bad)}")
        class Bad:
            @step(retry=bad)
            def s(self) -> None: ...


def test_unknown_retry_dict_key():
    with pytest.raises(durable.ConfigError, match="unknown retry option.*max_tries"):
        Retry.coerce({"max_tries": 3})


STRATEGIES = {
    "exponential": (Retry(max_attempts=4, backoff="exponential", base=2), [2000, 4000, 8000]),
    "linear": (Retry(max_attempts=4, backoff="linear", base=2), [2000, 4000, 6000]),
    "constant": (Retry(max_attempts=4, backoff="constant", base=3), [3000, 3000, 3000]),
    "capped": (
        Retry(max_attempts=4, backoff="exponential", base=3, max_backoff=seconds(20)),
        [3000, 9000, 20000],
    ),
}


def _flaky(name: str, policy: Retry) -> type:
    @workflow(f"flaky_{name}")
    class Flaky:
        @step(retry=policy)
        def call_api(self) -> None:
            if attempt() <= input()["fail"]:
                raise ConnectionError(f"attempt {attempt()} refused")
            put_context("succeeded_on", attempt())

    return Flaky


FLAKY = {name: _flaky(name, policy) for name, (policy, _) in STRATEGIES.items()}


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_attempt_runs_exactly_when_due_not_1ms_before(engine, durable_clock, strategy):
    _, delays = STRATEGIES[strategy]
    wid = engine.start(FLAKY[strategy], {"fail": 3})
    engine.drain()
    for n, delay in enumerate(delays, start=1):
        ex = engine.get_execution(wid, include_steps=True)
        assert ex.status == "pending"
        assert ex.attempt == n
        assert ex.run_at == durable_clock.now() + timedelta(milliseconds=delay)
        assert ex.steps[-1].retry_at == ex.run_at
        assert engine.next_due() == ex.run_at

        durable_clock.advance(delay - 1)
        assert engine.drain() == 0, f"attempt {n + 1} ran 1 ms early"
        assert engine.get_execution(wid).attempt == n

        durable_clock.advance(1)
        assert engine.drain() == 1
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.status == "completed"
    assert ex.context == {"succeeded_on": 4}
    assert [(s.attempt, s.status) for s in ex.steps] == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
        (4, "completed"),
    ]
    assert all(s.max_attempts == 4 for s in ex.steps)


def test_out_of_attempts_fails_the_execution_with_the_step_error(engine, durable_clock, recorder):
    wid = engine.start(FLAKY["constant"], {"fail": 99})
    engine.drain()
    for _ in range(3):
        durable_clock.advance(seconds(3))
        engine.drain()
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.status == "failed"
    assert ex.error["type"] == "ConnectionError"
    assert ex.error["message"] == "attempt 4 refused"
    assert (ex.error["step"], ex.error["attempt"]) == ("call_api", 4)
    assert "Traceback" in ex.error["traceback"]
    assert len(ex.steps) == 4
    assert ex.steps[-1].retry_at is None
    assert recorder.hooks(wid)[-2:] == ["step_failed", "failed"]
    assert engine.next_due() is None


def test_attempts_and_budget_live_in_the_store_not_the_engine(engine, durable_clock):
    """A second engine (another worker process) continues the retry schedule."""
    first = durable.Engine(engine.store, clock=durable_clock)
    wid = first.start(FLAKY["linear"], {"fail": 2})
    first.drain()
    del first
    second = durable.Engine(engine.store, clock=durable_clock)
    ex = second.get_execution(wid, include_steps=True)
    assert (ex.attempt, ex.steps[-1].max_attempts) == (1, 4)
    durable_clock.advance(seconds(2))
    second.drain()
    durable_clock.advance(seconds(4))
    second.drain()
    ex = second.get_execution(wid)
    assert ex.status == "completed"
    assert ex.context == {"succeeded_on": 3}


@workflow("max_retries_default", max_retries=2)
class DefaultBudget:
    @step
    def inherits(self) -> None:
        raise RuntimeError(f"fail {attempt()}")

    @step(retry={"max_attempts": 1})
    def own_policy(self) -> None: ...


def test_workflow_max_retries_is_the_default_budget(engine, durable_clock):
    wid = engine.start(DefaultBudget)
    engine.drain()
    durable_clock.advance(seconds(2))
    engine.drain()
    durable_clock.advance(seconds(4))
    engine.drain()
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.status == "failed"
    assert [s.attempt for s in ex.steps] == [1, 2, 3]  # 1 try + 2 retries


@workflow("no_retry_by_default")
class NoRetry:
    @step
    def once(self) -> None:
        raise ValueError("no")


def test_steps_without_retry_get_one_attempt(engine):
    wid = engine.start(NoRetry)
    engine.drain()
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.status == "failed"
    assert len(ex.steps) == 1


def test_huge_backoffs_are_capped_instead_of_overflowing():
    policy = Retry(max_attempts=100, backoff="exponential", base=2.5)
    assert policy.delay_ms(2000) == MAX_DELAY_MS
    assert Retry(max_attempts=100, backoff="exponential", base=2).delay_ms(99) == MAX_DELAY_MS


@workflow("retry_overflow")
class Overflow:
    @step(retry=Retry(max_attempts=60, backoff="exponential"))
    def s(self) -> None:
        raise RuntimeError("always")


def test_an_execution_with_a_huge_backoff_is_rescheduled_not_stuck(engine, durable_clock):
    wid = engine.start(Overflow)
    engine.drain()
    for _ in range(39):
        durable_clock.set(engine.next_due())
        engine.drain()
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.status == "pending"
    assert ex.attempt == 40
    last = ex.steps[-1]
    assert last.retry_at - last.completed_at == timedelta(milliseconds=MAX_DELAY_MS)
