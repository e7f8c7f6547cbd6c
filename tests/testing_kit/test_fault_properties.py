"""Property tests with durable_testing.strategies: any fault schedule within the retry budget
ends as the fault-free run does, after exactly the backoff it costs; beyond the budget the
execution fails at the exhausted step and no later step runs. Clock moves of any size
never run a retry early."""

from __future__ import annotations

import itertools
import re
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable import Retry, get_workflow, step, workflow
from durable.context import get_context, input, put_context
from durable_testing import TimeTravelEngine
from durable_testing.strategies import FaultSchedule, clock_advances, errors, fault_schedules

from helpers import examples

PROPERTY = settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@workflow("prop_pipeline", max_retries=2)
class Pipeline:
    """Four steps with four retry policies; the context depends on the input only."""

    @step
    def load(self) -> None:  # the workflow default: 3 attempts, exponential
        put_context("items", list(range(input()["n"])))

    @step(retry=Retry(max_attempts=4, backoff="linear", base=3))
    def price(self) -> None:
        put_context("total", sum(i * 10 for i in get_context("items")))

    @step(retry=Retry(max_attempts=5, backoff="exponential", base=3, max_backoff=20_000))
    def charge(self) -> None:
        put_context("charged", get_context("total"))

    @step(retry={"max_attempts": 2, "backoff": "constant", "base": 60})
    def notify(self) -> None:
        put_context("notified", True)


ORDER = {"n": 4}
PIPELINE = get_workflow(Pipeline)
STEPS = [s.name for s in PIPELINE.steps]
BUDGET = {s.name: s.policy(PIPELINE.default_retry).max_attempts for s in PIPELINE.steps}


@pytest.fixture(scope="module")
def fault_free_context() -> dict:
    with TimeTravelEngine() as engine:
        wid = engine.start(Pipeline, ORDER)
        ex = engine.run_until(wid)
        assert ex.status == "completed"
        return ex.context


@pytest.fixture(params=["memory", "sqlite"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return request.param


def _store(kind: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    if kind == "memory":
        return "memory://"
    return f"sqlite:///{tmp_path_factory.mktemp('prop') / 'p.db'}"


@PROPERTY
@given(schedule=fault_schedules(Pipeline, budget="within"))
def test_within_the_budget_it_completes_like_the_fault_free_run(
    schedule: FaultSchedule, fault_free_context: dict, store_kind: str, tmp_path_factory
) -> None:
    assert schedule.within_budget
    with TimeTravelEngine(_store(store_kind, tmp_path_factory)) as engine:
        schedule.apply(engine)
        start = engine.clock.now()
        wid = engine.start(Pipeline, ORDER)
        ex = engine.run_until(wid)
        assert ex.status == "completed", engine.history(wid)
        assert ex.context == fault_free_context
        assert ex.completed_at - start == schedule.backoff()
        h = engine.history(wid)
        assert h.ran == STEPS
        for name in STEPS:
            assert len(h.attempts(name)) == schedule.failures(name) + 1


@PROPERTY
@given(schedule=fault_schedules(Pipeline, budget="beyond"))
def test_beyond_the_budget_it_fails_at_that_step_and_nothing_later_runs(
    schedule: FaultSchedule, store_kind: str, tmp_path_factory
) -> None:
    victim = schedule.exhausted_step()
    assert victim is not None
    later = STEPS[STEPS.index(victim) + 1 :]
    with TimeTravelEngine(_store(store_kind, tmp_path_factory)) as engine:
        schedule.apply(engine)
        start = engine.clock.now()
        wid = engine.start(Pipeline, ORDER)
        ex = engine.run_until(wid)
        assert ex.status == "failed"
        budget = BUDGET[victim]
        last_error = schedule.faults[victim][budget - 1]
        assert ex.error["step"] == victim
        assert ex.error["message"] == str(last_error)
        h = engine.history(wid)
        assert not set(h.tried) & set(later)
        assert len(h.attempts(victim)) == budget
        assert ex.completed_at - start == schedule.backoff()


@PROPERTY
@given(
    schedule=fault_schedules(Pipeline, budget="within", error=errors([ConnectionError])),
    moves=clock_advances(max_step=timedelta(seconds=30)),
)
def test_clock_moves_of_any_size_never_run_a_retry_early(
    schedule: FaultSchedule, moves: list[timedelta]
) -> None:
    with TimeTravelEngine() as engine:
        schedule.apply(engine)
        wid = engine.start(Pipeline, ORDER)
        for move in moves:
            engine.drain()
            engine.clock.advance(move)
        engine.run_until(wid)
        attempts = list(engine.history(wid))
        for before, after in itertools.pairwise(attempts):
            if before.retry_at is not None:
                assert after.step == before.step
                assert after.at >= before.retry_at  # never early


def test_the_strategies_check_their_arguments() -> None:
    from durable import ConfigError

    with pytest.raises(ConfigError, match="budget must be"):
        fault_schedules(Pipeline, budget="some")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="has no step"):
        fault_schedules(Pipeline, steps=["nope"])


@given(drawn=st.lists(errors([ConnectionError, TimeoutError]), min_size=1))
def test_errors_draws_exceptions_of_the_given_types_named_as_injected(
    drawn: list[BaseException],
) -> None:
    for error in drawn:
        assert type(error) in (ConnectionError, TimeoutError)
        assert re.fullmatch(rf"injected {type(error).__name__} #\d+", str(error))
