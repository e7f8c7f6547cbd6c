"""Step overrides: change what a named step does in one test, without editing the workflow.

An override runs inside the step's attempt (so ``durable.context`` works in it, the attempt
is recorded, and retries, timeouts and budgets apply as for the real step). It can make
chosen attempts fail, replace the step's body with a return value or context values, and
make the attempt take virtual time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from durable import context as ctx
from durable.dsl import StepDef, WorkflowDef, get_workflow, registered_workflows
from durable.durations import Duration, to_ms
from durable.errors import ConfigError
from durable.hookspecs import StepCall
from durable.plugins import hookimpl

if TYPE_CHECKING:
    from durable_testing.clock import TimeTravelClock

__all__ = ["InjectedFault", "StepOverride", "StepOverrides", "resolve_step"]

UNSET: Any = object()

ErrorSpec = BaseException | type[BaseException]


class InjectedFault(Exception):
    """The error an override raises when it is told to fail without being given one."""


def resolve_step(step: str | Callable[..., Any], workflow: Any = None) -> tuple[WorkflowDef, str]:
    """The workflow and step name that ``step`` (a step name or an ``@step`` method) and
    ``workflow`` (a class or name; needed only when the step name is in several) mean."""
    method: StepDef | None = None
    if callable(step) and not isinstance(step, str):
        method = getattr(step, "__durable_step__", None)
        if not isinstance(method, StepDef):
            raise ConfigError(f"{step!r} is not an @step method; pass the step or its name")
        name = method.name
    elif isinstance(step, str) and step:
        name = step
    else:
        raise ConfigError(f"step must be a step name or an @step method, got {step!r}")
    if method is not None and workflow is None:
        # The method says which workflow it belongs to, whatever other workflows have a
        # step of the same name.
        mine = [
            (w, s.name)
            for w in registered_workflows().values()
            for s in _all_steps(w)
            if s.fn is method.fn
        ]
        if len(mine) == 1:
            return mine[0]
        if len(mine) > 1:  # a step of a base class that several workflows inherit
            raise ConfigError(
                f"the step {name!r} is in several workflows "
                f"({', '.join(sorted(w.name for w, _ in mine))}); pass workflow= to choose one"
            )
    if workflow is not None:
        wdef = get_workflow(workflow)
        if not _has(wdef, name):
            raise ConfigError(
                f"workflow {wdef.name!r} has no step {name!r}; "
                f"its steps are {[s.name for s in _all_steps(wdef)]}"
            )
        return wdef, name
    owners = [w for w in registered_workflows().values() if _has(w, name)]
    if not owners:
        raise ConfigError(f"no registered workflow has a step named {name!r}")
    if len(owners) > 1:
        raise ConfigError(
            f"the step name {name!r} is in several workflows "
            f"({', '.join(sorted(w.name for w in owners))}); pass workflow= to choose one"
        )
    return owners[0], name


def _all_steps(wdef: WorkflowDef) -> list[StepDef]:
    """The workflow's steps and its parallel groups' branches."""
    return [x for s in wdef.steps for x in (s, *s.branches)]


def _has(wdef: WorkflowDef, name: str) -> bool:
    """Whether ``name`` is a step, a branch ("group.step") or an item ("step[i]") of it."""
    try:
        wdef.step(name)
    except KeyError:
        return False
    return True


def _make_error(spec: ErrorSpec | None, step: str, attempt: int) -> BaseException:
    if spec is None:
        return InjectedFault(f"injected failure of step {step!r}, attempt {attempt}")
    if isinstance(spec, type):
        return spec(f"injected failure of step {step!r}, attempt {attempt}")
    return spec


@dataclass(eq=False)
class StepOverride:
    """What one step does instead, while the override is in force.

    ``faults[k]`` is the error attempt ``k + 1`` raises (None: that attempt is not failed);
    ``always`` fails every attempt with ``always_error``. ``returns`` and ``context`` replace
    the step's body; ``takes_ms`` is the virtual time each attempt takes (the clock moves by
    it when the body is done, so a step timeout or the workflow deadline applies).
    ``calls`` lists ``(execution_id, attempt)`` of every attempt the override saw.
    """

    workflow: str
    step: str
    faults: tuple[ErrorSpec | None, ...] = ()
    always: bool = False
    always_error: ErrorSpec | None = None
    returns: Any = UNSET
    context: Mapping[str, Any] | None = None
    takes_ms: int | None = None
    clock: TimeTravelClock | None = None
    calls: list[tuple[str, int]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _remove: Callable[[], None] | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        wdef: WorkflowDef,
        step: str,
        *,
        fail: int | None,
        error: ErrorSpec | None,
        faults: Sequence[ErrorSpec | None] | None,
        returns: Any,
        context: Mapping[str, Any] | None,
        takes: Duration | None,
        clock: TimeTravelClock | None,
    ) -> StepOverride:
        """Check the options and make the override."""
        if fail is not None and (isinstance(fail, bool) or not isinstance(fail, int) or fail < 0):
            raise ConfigError(f"fail= takes how many attempts fail (an int >= 0), got {fail!r}")
        if faults is not None and fail is not None:
            raise ConfigError("give fail= (and error=) or faults=, not both")
        for spec in [error, *(faults or ())]:
            if spec is not None and not (
                isinstance(spec, BaseException)
                or (isinstance(spec, type) and issubclass(spec, BaseException))
            ):
                raise ConfigError(
                    f"an injected error must be an exception or its class, got {spec!r}"
                )
        if context is not None and not isinstance(context, Mapping):
            raise ConfigError(f"context= takes a dict of values to put, got {context!r}")
        takes_ms = None if takes is None else to_ms(takes, what="takes=")
        if takes_ms and clock is None:
            raise ConfigError("takes= needs the engine's clock to be a TimeTravelClock")
        always = fail is None and faults is None and error is not None
        planned: tuple[ErrorSpec | None, ...] = (
            tuple(faults) if faults is not None else (error or InjectedFault,) * (fail or 0)
        )
        return cls(
            workflow=wdef.name,
            step=step,
            faults=planned,
            always=always,
            always_error=error,
            returns=returns,
            context=dict(context) if context is not None else None,
            takes_ms=takes_ms,
            clock=clock,
        )

    @property
    def replaces_body(self) -> bool:
        """True when the real step does not run (``returns`` or ``context`` was given)."""
        return self.returns is not UNSET or self.context is not None

    def _before(self) -> None:
        attempt = ctx.attempt()
        with self._lock:
            self.calls.append((ctx.workflow_id(), attempt))
        if self.always:
            raise _make_error(self.always_error, self.step, attempt)
        if attempt <= len(self.faults) and self.faults[attempt - 1] is not None:
            raise _make_error(self.faults[attempt - 1], self.step, attempt)

    def _replacement(self) -> Any:
        if self.context is not None:
            for key, value in self.context.items():
                ctx.put_context(key, value)
        return None if self.returns is UNSET else self.returns

    def _after(self) -> None:
        if self.takes_ms and self.clock is not None:
            self.clock.advance(self.takes_ms)

    def wrap(self, call: StepCall) -> Generator[None, Any, Any]:
        """The around-step wrapper for one attempt of the overridden step."""
        self._before()
        if self.replaces_body:
            if call.is_async:

                async def replaced() -> Any:
                    return self._replacement()

                call.body = replaced
            else:
                call.body = self._replacement
        result = yield
        self._after()
        return result

    @property
    def attempts(self) -> list[int]:
        """Attempt numbers the override saw, in order."""
        with self._lock:
            return [a for _, a in self.calls]

    def remove(self) -> None:
        """Stop overriding; the real step runs again."""
        if self._remove is not None:
            self._remove()
            self._remove = None

    def __enter__(self) -> StepOverride:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class StepOverrides:
    """The plugin one engine's overrides live in: it wraps each step attempt
    (``durable_step_call``) and applies the override of that step, if there is one."""

    def __init__(self) -> None:
        self._by_step: dict[tuple[str, str], StepOverride] = {}
        self._lock = threading.Lock()

    def add(self, override: StepOverride) -> None:
        """Put ``override`` in force (ConfigError if its step already has one)."""
        key = (override.workflow, override.step)
        with self._lock:
            if key in self._by_step:
                raise ConfigError(
                    f"step {override.step!r} of {override.workflow!r} is already overridden "
                    "on this engine; remove() that override first, or give all options in "
                    "one call"
                )
            self._by_step[key] = override

        def remove() -> None:
            with self._lock:
                if self._by_step.get(key) is override:
                    del self._by_step[key]

        override._remove = remove

    def clear(self) -> None:
        """Remove every override."""
        with self._lock:
            self._by_step.clear()

    # Innermost: what an override injects (a fault, a replaced body, virtual time) is seen
    # by every other wrapper (a tracer) as the step's own doing.
    @hookimpl(wrapper=True, trylast=True)
    def durable_step_call(self, call: StepCall) -> Generator[None, Any, Any]:
        with self._lock:
            override = self._by_step.get((call.workflow, call.step))
            if override is None and call.step.endswith("]"):
                # "ship" overrides every item of foreach ship; "ship[3]" only that one
                base = call.step.partition("[")[0]
                override = self._by_step.get((call.workflow, base))
        if override is None:
            return (yield)
        return (yield from override.wrap(call))
