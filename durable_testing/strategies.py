"""Hypothesis strategies for fault schedules and clock advances.

    from hypothesis import given
    from durable_testing import TimeTravelEngine
    from durable_testing.strategies import fault_schedules

    @given(fault_schedules(OrderWorkflow, budget="within"))
    def test_order_survives_any_transient_fault(schedule):
        with TimeTravelEngine() as engine:
            schedule.apply(engine)
            wid = engine.start(OrderWorkflow, ORDER)
            assert engine.run_until(wid).status == "completed"

A ``FaultSchedule`` says, per step, which errors its first attempts raise (attempt
``k`` raises the ``k``-th error; the attempt after the last error runs the real step). It
knows what the retry policies make of it: whether it stays within every step's budget,
the total backoff it costs, and the step at which it exhausts a budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from hypothesis import strategies as st

from durable.dsl import WorkflowDef, get_workflow
from durable.errors import ConfigError
from durable_testing.engine import TimeTravelEngine
from durable_testing.overrides import StepOverride

__all__ = ["FaultSchedule", "clock_advances", "errors", "fault_schedules"]

Budget = Literal["within", "beyond", "any"]

_ERROR_TYPES: tuple[type[Exception], ...] = (
    ConnectionError,
    TimeoutError,
    OSError,
    RuntimeError,
    ValueError,
)


@dataclass(frozen=True)
class FaultSchedule:
    """Per step of ``workflow``, the errors its attempts raise: attempt ``k`` raises
    ``faults[step][k - 1]``; later attempts run the real step."""

    workflow: WorkflowDef
    faults: Mapping[str, tuple[BaseException, ...]]

    def failures(self, step: str) -> int:
        """How many attempts of ``step`` fail."""
        return len(self.faults.get(step, ()))

    def exhausted_step(self) -> str | None:
        """The first step (in workflow order) that fails more often than its retry
        budget allows, where the execution fails; None if the schedule is within budget."""
        flow = [s.name for s in self.workflow.steps]
        ordered = [*flow, *(n for n in self.faults if n not in flow)]
        for name in ordered:
            if name in self.faults and self.failures(name) >= _budget(self.workflow, name):
                return name
        return None

    @property
    def within_budget(self) -> bool:
        """True when every step succeeds within its retry budget."""
        return self.exhausted_step() is None

    def backoff(self) -> timedelta:
        """The virtual time the retries cost: the sum of the backoff delays after every
        failed attempt that is retried (steps themselves take no virtual time). Raises
        for policies with jitter, whose delays are random, and for faults in branches or
        items, whose retries overlap in time."""
        flow = {s.name for s in self.workflow.steps}
        overlapping = [n for n, errs in self.faults.items() if errs and n not in flow]
        if overlapping:
            raise ConfigError(
                f"backoff() adds up delays of steps that run one after another; {overlapping} "
                "run side by side"
            )
        total = 0
        for sdef in self.workflow.steps:
            policy = sdef.policy(self.workflow.default_retry)
            if policy.jitter:
                raise ConfigError(f"step {sdef.name!r} retries with jitter: its delays are random")
            retried = min(self.failures(sdef.name), policy.max_attempts - 1)
            total += sum(policy.delay_ms(a) for a in range(1, retried + 1))
            if self.failures(sdef.name) >= policy.max_attempts:
                break
        return timedelta(milliseconds=total)

    def apply(self, engine: TimeTravelEngine) -> list[StepOverride]:
        """Install the schedule on ``engine`` as step overrides; returns them."""
        return [
            engine.override(step, workflow=self.workflow.cls, faults=list(errs))
            for step, errs in self.faults.items()
            if errs
        ]

    def __repr__(self) -> str:
        parts = [
            f"{step}: {', '.join(f'{type(e).__name__}' for e in errs)}"
            for step, errs in self.faults.items()
            if errs
        ]
        return f"FaultSchedule({self.workflow.name}: {'; '.join(parts) or 'no faults'})"


def errors(types: Sequence[type[BaseException]] = _ERROR_TYPES) -> st.SearchStrategy[BaseException]:
    """Exceptions of the given types, each with a short message naming it as injected."""
    return st.builds(
        lambda cls, n: cls(f"injected {cls.__name__} #{n}"),
        st.sampled_from(list(types)),
        st.integers(min_value=1, max_value=999),
    )


def _has_step(wdef: WorkflowDef, name: str) -> bool:
    try:
        wdef.step(name)
    except KeyError:
        return False
    return True


def _budget(wdef: WorkflowDef, name: str) -> int:
    """Attempts a step, branch or item of ``wdef`` gets."""
    sdef = wdef.step(name)
    return sdef.policy(wdef.default_retry).max_attempts if sdef.fans_out else wdef.budget(sdef)


def fault_schedules(
    workflow: Any,
    *,
    budget: Budget = "any",
    steps: Sequence[str] | None = None,
    error: st.SearchStrategy[BaseException] | None = None,
) -> st.SearchStrategy[FaultSchedule]:
    """Fault schedules for ``workflow`` (a class or name).

    ``budget="within"``: every step fails fewer times than its ``max_attempts`` (the
    execution must complete); ``"beyond"``: at least one step fails all its attempts (it
    must fail there); ``"any"``: either. ``steps`` limits faults to those steps; ``error``
    draws the exceptions (default: ``errors``).
    """
    wdef = get_workflow(workflow)
    if budget not in ("within", "beyond", "any"):
        raise ConfigError(f"budget must be 'within', 'beyond' or 'any', got {budget!r}")
    # Steps with attempts of their own: flow steps and branches (a group or a foreach
    # runs no attempt itself; its items, "step[i]", are named in ``steps``).
    runnable = [x.name for s in wdef.steps for x in (s.branches or [s]) if x.kind != "foreach"]
    names = runnable if steps is None else list(steps)
    unknown = [n for n in names if not _has_step(wdef, n)]
    if unknown:
        raise ConfigError(f"workflow {wdef.name!r} has no step(s) {sorted(unknown)}")
    budgets = {n: _budget(wdef, n) for n in names}
    error = errors() if error is None else error

    def per_step(name: str, most: int) -> st.SearchStrategy[tuple[BaseException, ...]]:
        return st.lists(error, max_size=most).map(tuple)

    if budget == "within":
        return st.fixed_dictionaries({n: per_step(n, min(budgets[n] - 1, 20)) for n in names}).map(
            lambda f: FaultSchedule(wdef, f)
        )

    def exhaust(draw: st.DrawFn) -> FaultSchedule:
        faults = {n: draw(per_step(n, min(budgets[n] + 1, 20))) for n in names}
        if budget == "beyond" and all(len(faults[n]) < budgets[n] for n in names):
            victim = draw(st.sampled_from([n for n in names if budgets[n] <= 20]))
            faults[victim] = tuple(draw(error) for _ in range(budgets[victim]))
        return FaultSchedule(wdef, faults)

    if budget == "beyond" and not any(budgets[n] <= 20 for n in names):
        raise ConfigError("budget='beyond' needs a step with max_attempts <= 20")
    return st.composite(exhaust)()


def clock_advances(
    *,
    max_step: timedelta = timedelta(minutes=10),
    min_size: int = 1,
    max_size: int = 20,
) -> st.SearchStrategy[list[timedelta]]:
    """Lists of forward clock moves (whole ms, 0 to ``max_step`` each), for tests that
    interleave running with arbitrary time travel."""
    most = int(max_step / timedelta(milliseconds=1))
    return st.lists(
        st.integers(min_value=0, max_value=most).map(lambda ms: timedelta(milliseconds=ms)),
        min_size=min_size,
        max_size=max_size,
    )
