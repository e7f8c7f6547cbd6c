"""The workflow DSL: ``@workflow`` classes whose ``@step`` methods run in written order,
``@decision`` steps that choose what runs next (a later step skips ahead, an earlier one
loops), ``when=`` conditions that skip a step, ``@parallel`` groups of branches and
``@foreach`` steps run once per item.

A workflow's shape is static: it is read from the class at definition time, so it can be
validated, listed and drawn without running anything.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import inspect
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from durable._cron import Cron
from durable._json import clone, normalise
from durable._limits import check_name
from durable._schemas import check_schema, model_schema, split_schema, validate_input
from durable._typed import is_model_class, json_form, validate_model
from durable.durations import Duration, to_ms
from durable.errors import ConfigError, InvalidDecision, InvalidInput, WorkflowNotFound
from durable.retry import Retry

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "CompensationDef",
    "StepDef",
    "WorkflowDef",
    "compensation",
    "decision",
    "foreach",
    "get_workflow",
    "may_compensate",
    "parallel",
    "plan_of",
    "registered_workflows",
    "registry_version",
    "step",
    "workflow",
]

_STEP_ATTR = "__durable_step__"
_COMPENSATION_ATTR = "__durable_compensation__"
_ONE_ATTEMPT = Retry(max_attempts=1)
_WORKFLOW_ATTR = "__durable_workflow__"

#: the default of ``@workflow(max_step_runs=)``
MAX_STEP_RUNS = 10_000
#: the defaults of ``@foreach(concurrency=, max_items=)``
FOREACH_CONCURRENCY = 10
MAX_ITEMS = 100_000
# Characters that qualify unit names ("group.step", "step[3]"): not in a step's own name.
_QUALIFIERS = ".[]"

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)

#: a ``when=`` condition: a context key that must be truthy, or a function of the context
When = Callable[[Mapping[str, Any]], Any] | str


@dataclass(frozen=True, slots=True)
class CompensationDef:
    """A compensation as declared: the method that undoes a completed step, with its own
    retry policy and timeout (ms). ``name`` is what its attempts are recorded under: the
    method's name, qualified by its group (``"enrich.undo_credit"``) when it is declared
    on a parallel group's class."""

    name: str
    fn: Callable[..., Any]
    retry: Retry | None = None
    timeout: int | None = None
    is_async: bool = False
    #: the class whose instance it is called on (a group's class, or the workflow's)
    owner: type | None = None

    def policy(self, default: Retry | None) -> Retry:
        """The retry policy in force: its own, else the workflow default, else one try."""
        return self.retry or default or _ONE_ATTEMPT


@dataclass(frozen=True, slots=True)
class StepDef:
    """A step as declared: its method, retry policy and timeout (ms); for a decision the
    steps it may choose (``targets``); the ``when`` condition that must hold for it to run.
    """

    name: str
    fn: Callable[..., Any]
    retry: Retry | None = None
    timeout: int | None = None
    is_async: bool = False
    kind: str = "step"  # "step", "decision", "parallel" or "foreach"
    targets: tuple[str, ...] = ()
    when: When | None = None
    #: the class whose instance a step method is called on (a branch: its group's class)
    owner: type | None = None
    #: a parallel group: its branches, named "group.step", in written order
    branches: tuple[StepDef, ...] = ()
    #: a branch: its group's name
    group: str | None = None
    #: parallel and foreach: the first failed unit (out of attempts) stops the others
    fail_fast: bool = True
    #: foreach: the context key holding the items, how many run at once, where results go
    items: str | None = None
    concurrency: int = FOREACH_CONCURRENCY
    into: str | None = None
    max_items: int = MAX_ITEMS
    #: the name given to ``compensate=``, and the compensation it names (resolved when
    #: the workflow is defined)
    compensate: str | None = None
    undo: CompensationDef | None = None
    #: earlier names of the step (``@step(renamed_from=...)``): executions in flight at
    #: one of them carry on at this step
    renamed_from: tuple[str, ...] = ()

    @property
    def fans_out(self) -> bool:
        """A parallel group or a foreach: the step runs as units any worker can claim."""
        return self.kind in ("parallel", "foreach")

    def unit_name(self, index: int) -> str:
        """The name a unit of this step is recorded under: ``"group.step"`` for a branch,
        ``"step[i]"`` for an item."""
        if self.kind == "parallel":
            return self.branches[index].name
        return f"{self.name}[{index}]"

    def policy(self, default: Retry | None) -> Retry:
        """The retry policy in force: the step's own, else the workflow default, else one try."""
        return self.retry or default or _ONE_ATTEMPT

    def runs_on(self, context: Mapping[str, Any]) -> bool:
        """Whether the step runs given the workflow's context (its ``when`` condition; a
        function gets a read-only copy). Raises what the condition raises."""
        if self.when is None:
            return True
        if isinstance(self.when, str):
            return bool(context.get(self.when))
        return bool(self.when(MappingProxyType(clone(dict(context)))))


@dataclass(frozen=True, slots=True)
class WorkflowDef:
    """A registered workflow: its name, options, ordered steps and its step plan.

    The plan (what runs after each step, given how it ended) is built when the class is
    defined; the executor asks it through ``next_step`` rather than counting steps.
    """

    name: str
    cls: type
    steps: tuple[StepDef, ...]
    timeout: int | None = None
    queue: str = "default"
    default_retry: Retry | None = None
    max_step_runs: int = MAX_STEP_RUNS
    #: ``@workflow(cron=...)``: the schedule workers keep stored under the workflow's name
    cron: str | None = None
    timezone: str = "UTC"
    #: ``@workflow(input=...)``: the pydantic model of the input (None: not typed by a
    #: model), and the JSON Schema the input must match (the model's, or the one given)
    input_model: type[BaseModel] | None = None
    input_schema: dict[str, Any] | None = None
    _index: Mapping[str, int] = field(init=False, repr=False, compare=False)
    _after: Mapping[str, StepDef | None] = field(init=False, repr=False, compare=False)
    _branches: Mapping[str, StepDef] = field(init=False, repr=False, compare=False)
    _shape: dict[str, Any] = field(init=False, repr=False, compare=False)
    _plan: str = field(init=False, repr=False, compare=False)
    _names: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {s.name: i for i, s in enumerate(self.steps)}
        branches = {b.name: b for s in self.steps for b in s.branches}
        object.__setattr__(self, "_branches", MappingProxyType(branches))
        after = {
            s.name: self.steps[i + 1] if i + 1 < len(self.steps) else None
            for i, s in enumerate(self.steps)
        }
        for s in self.steps:
            unknown = [t for t in s.targets if t not in index]
            if unknown:
                raise ConfigError(
                    f"workflow {self.name!r}: decision {s.name!r} names "
                    f"{', '.join(map(repr, unknown))}, which {'is' if len(unknown) == 1 else 'are'}"
                    f" not a step of the workflow (steps: {', '.join(index)})"
                )
        object.__setattr__(self, "_index", MappingProxyType(index))
        object.__setattr__(self, "_after", MappingProxyType(after))
        names: dict[str, str] = {}
        for s in (*self.steps, *branches.values()):
            olds = list(s.renamed_from)
            if s.group is not None:  # "group.step" under its own and its group's old names
                short = s.name.partition(".")[2]
                groups = (s.group, *self.step(s.group).renamed_from)
                olds = [
                    f"{g}.{old}"
                    for g in groups
                    for old in (short, *s.renamed_from)
                    if (g, old) != (s.group, short)
                ]
            for old_name in olds:
                if old_name in index or old_name in branches or old_name in names:
                    raise ConfigError(
                        f"workflow {self.name!r}: step {s.name!r} is renamed_from "
                        f"{old_name!r}, a name another step has (or had)"
                    )
                names[old_name] = s.name
        names.update({n: n for n in (*index, *branches)})
        object.__setattr__(self, "_names", MappingProxyType(names))
        shape = {
            "steps": [[s.name, s.kind] for s in self.steps],
            "branches": {s.name: [b.name for b in s.branches] for s in self.steps if s.branches},
            "compensate": {
                s.name: s.undo.name for s in (*self.steps, *branches.values()) if s.undo is not None
            },
        }
        object.__setattr__(self, "_shape", shape)
        object.__setattr__(self, "_plan", plan_of(shape))

    @property
    def plan(self) -> str:
        """A fingerprint of ``shape()``: code whose steps (names, kinds, order), branches
        or compensations differ has another plan; a changed body, retry or timeout does
        not change it."""
        return self._plan

    def same_shape(self, shape: Mapping[str, Any] | None) -> bool:
        """Whether ``shape`` (an execution's, as stored) is this code's."""
        return shape == self._shape

    @property
    def first_step(self) -> StepDef:
        """The step a new execution starts with."""
        return self.steps[0]

    def step(self, name: str) -> StepDef:
        """The named step, branch (``"group.step"``) or item (``"step[i]"``: the foreach
        step); KeyError when the workflow has none of that name."""
        i = self._index.get(name)
        if i is not None:
            return self.steps[i]
        branch = self._branches.get(name)
        if branch is not None:
            return branch
        base, bracket, rest = name.partition("[")
        if bracket and rest.endswith("]") and rest[:-1].isdigit() and base in self._index:
            sdef = self.steps[self._index[base]]
            if sdef.kind == "foreach":
                return sdef
        raise KeyError(name)

    def step_index(self, name: str) -> int:
        """Position of the named step in the written order (KeyError if unknown)."""
        return self._index[name]

    def next_step(self, current: str, outcome: Any = None) -> StepDef | None:
        """What runs after step ``current`` ended, given its ``outcome`` (what it returned);
        None when the workflow is done. Steps run in written order, except after a
        decision that chose one of its targets. (A skipped step's outcome is None.)"""
        current = self.current_name(current) or current  # (a run under an earlier name)
        if outcome is not None and self.step(current).kind == "decision":
            return self.step(self.check_decision(current, outcome))
        return self._after[current]

    def check_decision(self, current: str, outcome: Any) -> Any:
        """``outcome`` if decision ``current`` may return it (one of its targets, or
        None); else InvalidDecision saying what it may return."""
        sdef = self.step(current)
        if outcome is None or (isinstance(outcome, str) and outcome in sdef.targets):
            return outcome
        raise InvalidDecision(
            f"decision {current!r} of workflow {self.name!r} returned {outcome!r}; it may "
            f"return one of {', '.join(map(repr, sdef.targets))}, or None for the next step "
            "in order"
        )

    def shape(self) -> dict[str, Any]:
        """What an execution records of the workflow when it starts, for deploy checks:
        its steps and their kinds in order, each group's branches, and the compensation
        each step (or branch) names. (A copy: it is the caller's to keep.)"""
        return copy.deepcopy(self._shape)

    def current_name(self, name: str) -> str | None:
        """The name the step (or branch, ``"group.step"``) recorded as ``name`` has in
        this code: itself, or the step that declares it in ``renamed_from``; None when
        it is gone. An item's name (``"ship[3]"``) maps through its foreach step's."""
        found = self._names.get(name)
        if found is None:
            base, bracket, rest = name.partition("[")
            if bracket and rest.endswith("]") and rest[:-1].isdigit():
                step = self._names.get(base)
                if step is not None and self.step(step).kind == "foreach":
                    return f"{step}[{rest}"
        return found

    @property
    def compensates(self) -> bool:
        """Whether any step or branch declares a compensation (a failure or a cancel then
        runs those of the completed ones before the execution ends)."""
        return any(s.undo is not None for s in self.steps) or any(
            b.undo is not None for s in self.steps for b in s.branches
        )

    def check_input(
        self, value: Any, *, what: str | None = None, outcome: str = "nothing was started"
    ) -> Any:
        """``value`` as an execution of this workflow stores it: JSON (a pydantic model
        instance as its JSON form), matching ``@workflow(input=...)`` — validated by the
        model (and stored as the JSON form of what it gives), or by the JSON Schema.
        InvalidInput names each field that does not match, and ends with ``outcome``."""
        what = what or f"the input of workflow {self.name!r}"
        data = normalise(value, what)
        if self.input_model is not None:
            return json_form(validate_model(self.input_model, data, what, outcome), what)
        validate_input(what, data, self.input_schema, outcome)
        return data

    def load_input(self, data: Any, execution_id: str) -> Any:
        """The stored input as a step sees it: an instance of the input model (validated
        afresh, so a new one each time), else the JSON itself."""
        if self.input_model is None:
            return data
        name = self.input_model.__name__
        return validate_model(
            self.input_model,
            data,
            f"the input of execution {execution_id} (as stored when it started)",
            f"the step cannot read it: the model {name} changed since; make {name} accept "
            "what was stored",
        )

    def budget(self, sdef: StepDef) -> int:
        """How many attempts ``sdef`` gets in this workflow (a parallel group or foreach
        itself one: its units have their own)."""
        if sdef.fans_out:
            return 1
        return sdef.policy(self.default_retry).max_attempts


@overload
def step(fn: F, /) -> F: ...
@overload
def step(
    *,
    retry: Retry | Mapping[str, Any] | None = None,
    timeout: Duration | None = None,
    name: str | None = None,
    when: When | None = None,
    compensate: str | None = None,
    renamed_from: str | tuple[str, ...] | None = None,
) -> Callable[[F], F]: ...


def step(
    fn: F | None = None,
    /,
    *,
    retry: Retry | Mapping[str, Any] | None = None,
    timeout: Duration | None = None,
    name: str | None = None,
    when: When | None = None,
    compensate: str | None = None,
    renamed_from: str | tuple[str, ...] | None = None,
) -> F | Callable[[F], F]:
    """Mark a method of a ``@workflow`` class as a step. Works bare or with options.

    ``retry``: a ``Retry`` or a dict of its keys. ``timeout``: ms or timedelta; an
    attempt that runs longer counts as failed and its result is discarded. ``when``: the
    step runs only if this holds when it comes up — a context key that must be truthy
    (a missing key is falsy), or a function given the context as a read-only mapping;
    otherwise it is recorded as ``skipped`` and the next step comes up. ``compensate``:
    the name of the ``compensation`` that undoes the step once it completed, run if
    the execution later fails or is cancelled (checked when the workflow is defined).
    ``renamed_from``: the step's earlier name (or names): executions in flight at it carry
    on at this step after a deploy that renamed it.
    """
    if compensate is not None:
        check_name(compensate, "@step(compensate=...)")
    mark = _marker(
        "@step",
        "step",
        retry=retry,
        timeout=timeout,
        name=name,
        when=when,
        compensate=compensate,
        renamed_from=renamed_from,
    )
    if fn is not None:
        return mark(fn)
    return mark


def decision(
    *targets: str,
    retry: Retry | Mapping[str, Any] | None = None,
    timeout: Duration | None = None,
    name: str | None = None,
    when: When | None = None,
    renamed_from: str | tuple[str, ...] | None = None,
) -> Callable[[F], F]:
    """Mark a method as a decision step: it returns one of ``targets`` (step names) to
    run next, or None for the next step in written order. An earlier target loops back
    (the step starts a new visit), a later one skips ahead. Anything else fails the
    attempt with ``InvalidDecision``. Targets are checked when the class is
    defined. Other options as for ``step``."""
    if targets and callable(targets[0]) and not isinstance(targets[0], str):
        raise ConfigError(
            '@decision needs the steps it may choose, e.g. @decision("review", "pack"); '
            "it was used bare"
        )
    if not targets:
        raise ConfigError(
            "@decision() names no targets: give the steps it may choose, e.g. "
            '@decision("review", "pack") (return None from it for the next step in order)'
        )
    for t in targets:
        if not isinstance(t, str):
            raise ConfigError(f"@decision targets are step names (str), got {t!r}")
    if len(set(targets)) != len(targets):
        raise ConfigError(f"@decision{targets!r} names a target twice")
    return _marker(
        "@decision",
        "decision",
        retry=retry,
        timeout=timeout,
        name=name,
        when=when,
        targets=tuple(targets),
        renamed_from=renamed_from,
    )


def _earlier_names(renamed_from: str | tuple[str, ...] | None, label: str) -> tuple[str, ...]:
    olds = (renamed_from,) if isinstance(renamed_from, str) else tuple(renamed_from or ())
    for old in olds:
        _step_name(old, f"{label}(renamed_from=...)")
    return olds


def _marker(
    label: str,
    kind: str,
    *,
    retry: Retry | Mapping[str, Any] | None,
    timeout: Duration | None,
    name: str | None,
    when: When | None,
    targets: tuple[str, ...] = (),
    compensate: str | None = None,
    renamed_from: str | tuple[str, ...] | None = None,
) -> Callable[[F], F]:
    policy = Retry.coerce(retry)
    olds = _earlier_names(renamed_from, label)
    timeout_ms = None if timeout is None else to_ms(timeout, what="step timeout", allow_zero=False)
    if when is not None and not callable(when) and not (isinstance(when, str) and when):
        raise ConfigError(
            f"{label}(when=...) takes a context key (a non-empty str) or a function of the "
            f"context, got {when!r}"
        )

    def mark(f: F) -> F:
        if not callable(f):
            raise ConfigError(f"{label} decorates a method, got {type(f).__name__}")
        sdef = StepDef(
            name=_step_name(name or f.__name__, label),
            fn=f,
            retry=policy,
            timeout=timeout_ms,
            is_async=inspect.iscoroutinefunction(inspect.unwrap(f)),
            kind=kind,
            targets=targets,
            when=when,
            compensate=compensate,
            renamed_from=olds,
        )
        if getattr(f, _COMPENSATION_ATTR, None) is not None:
            raise ConfigError(
                f"{f.__name__} is marked both {label} and @compensation; a compensation is "
                "not part of the flow: give it a method of its own"
            )
        setattr(f, _STEP_ATTR, sdef)
        return f

    return mark


@overload
def compensation(fn: F, /) -> F: ...
@overload
def compensation(
    *,
    retry: Retry | Mapping[str, Any] | None = None,
    timeout: Duration | None = None,
    name: str | None = None,
) -> Callable[[F], F]: ...


def compensation(
    fn: F | None = None,
    /,
    *,
    retry: Retry | Mapping[str, Any] | None = None,
    timeout: Duration | None = None,
    name: str | None = None,
) -> F | Callable[[F], F]:
    """Mark a method as a compensation: it undoes a completed step that names it with
    ``@step(compensate="name")``, and is not part of the flow. When an execution fails
    (a step out of retries, the workflow timeout, a failed group) or is cancelled, the
    compensations of its completed steps run, newest first, each with its own ``retry``
    and ``timeout``, seeing the context as it was at the failure and
    ``durable.context.failure()``. Works bare or with options."""
    policy = Retry.coerce(retry)
    timeout_ms = (
        None if timeout is None else to_ms(timeout, what="compensation timeout", allow_zero=False)
    )

    def mark(f: F) -> F:
        if not callable(f):
            raise ConfigError(f"@compensation decorates a method, got {type(f).__name__}")
        if getattr(f, _STEP_ATTR, None) is not None:
            raise ConfigError(
                f"{f.__name__} is marked both @step and @compensation; a compensation is "
                "not part of the flow: give it a method of its own"
            )
        cdef = CompensationDef(
            name=_step_name(name or f.__name__, "@compensation"),
            fn=f,
            retry=policy,
            timeout=timeout_ms,
            is_async=inspect.iscoroutinefunction(inspect.unwrap(f)),
        )
        setattr(f, _COMPENSATION_ATTR, cdef)
        return f

    if fn is not None:
        return mark(fn)
    return mark


def _step_name(value: object, label: str) -> str:
    name = check_name(value, f"{label} name")
    if any(c in name for c in _QUALIFIERS):
        raise ConfigError(
            f"{label} name {name!r} contains one of {_QUALIFIERS!r}, which name branches "
            '("group.step") and items ("step[3]"); choose another name'
        )
    return name


def parallel(
    cls: C | None = None,
    /,
    *,
    fail_fast: bool = True,
    name: str | None = None,
    renamed_from: str | tuple[str, ...] | None = None,
) -> Any:
    """Mark a class nested in a ``@workflow`` class as a parallel group: each of its
    ``@step`` methods is a branch, recorded as ``"group.step"``, claimed by any worker.

    Branches start from a copy of the context at the fork; when all have ended their
    writes are merged into the workflow's context in branch order (a key set by two
    branches is a ``ContextConflict``; ``append_context`` items are
    concatenated and ``increment_context`` amounts summed). ``fail_fast=True``: the first
    branch out of attempts stops the others and fails the execution with its error;
    ``fail_fast=False``: every branch ends, then ``ParallelFailed`` lists
    the failures. ``renamed_from`` as for ``step`` (its branches follow the group's
    rename)."""
    if not isinstance(fail_fast, bool):
        raise ConfigError(f"@parallel(fail_fast=...) takes True or False, got {fail_fast!r}")
    olds = _earlier_names(renamed_from, "@parallel")

    def mark(group: C) -> C:
        if not isinstance(group, type):
            raise ConfigError(
                f"@parallel decorates a class nested in the workflow class (its @step "
                f"methods are the branches), got {type(group).__name__}"
            )
        setattr(
            group,
            _STEP_ATTR,
            StepDef(
                name=_step_name(name or group.__name__, "@parallel"),
                fn=group,
                kind="parallel",
                fail_fast=fail_fast,
                owner=group,
                renamed_from=olds,
            ),
        )
        return group

    if cls is not None:
        return mark(cls)
    return mark


def foreach(
    key: str,
    *,
    concurrency: int = FOREACH_CONCURRENCY,
    into: str | None = None,
    retry: Retry | Mapping[str, Any] | None = None,
    timeout: Duration | None = None,
    fail_fast: bool = True,
    max_items: int = MAX_ITEMS,
    name: str | None = None,
    renamed_from: str | tuple[str, ...] | None = None,
) -> Callable[[F], F]:
    """Mark a method ``(self, item)`` as run once per item of the list in
    ``context[key]``, read when the step comes up. Each item is a unit any worker can
    claim, with its own attempts (``retry``, ``timeout``), recorded as ``"step[i]"``; at
    most ``concurrency`` run at once across all workers. The return values are stored, in
    item order, into ``context[into]`` (default: the step's name). Inside an item the
    context is read-only (return the result instead); ``durable.context.item_index()``
    gives its position. ``fail_fast`` as for ``parallel``; more than ``max_items``
    items fail the step."""
    check_name(key, "@foreach key")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"@foreach(concurrency=...) must be an int >= 1, got {concurrency!r}")
    if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
        raise ConfigError(f"@foreach(max_items=...) must be an int >= 1, got {max_items!r}")
    if into is not None:
        check_name(into, "@foreach into")
    if not isinstance(fail_fast, bool):
        raise ConfigError(f"@foreach(fail_fast=...) takes True or False, got {fail_fast!r}")
    base = _marker(
        "@foreach",
        "foreach",
        retry=retry,
        timeout=timeout,
        name=name,
        when=None,
        renamed_from=renamed_from,
    )

    def mark(f: F) -> F:
        marked = base(f)
        params = [
            p
            for p in inspect.signature(inspect.unwrap(f)).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if len(params) < 2:
            raise ConfigError(
                f"@foreach({key!r}) method {f.__name__} takes no item: write it as "
                f"`def {f.__name__}(self, item)`"
            )
        sdef: StepDef = getattr(marked, _STEP_ATTR)
        setattr(
            marked,
            _STEP_ATTR,
            dataclasses.replace(
                sdef,
                items=key,
                concurrency=concurrency,
                into=into,
                fail_fast=fail_fast,
                max_items=max_items,
            ),
        )
        return marked

    return mark


def _compensations_of(
    workflow_name: str, cls: type, group: str | None
) -> dict[str, CompensationDef]:
    """The compensations declared on a workflow class (through its bases) or on a group's
    class (``group``: its name, which qualifies theirs), by their own names."""
    by_attr: dict[str, CompensationDef] = {}
    for klass in reversed(cls.__mro__) if group is None else (cls,):
        for attr_name, attr in vars(klass).items():
            cdef = getattr(attr, _COMPENSATION_ATTR, None)
            if isinstance(cdef, CompensationDef):
                by_attr[attr_name] = cdef
            elif attr_name in by_attr:
                del by_attr[attr_name]
    out: dict[str, CompensationDef] = {}
    for cdef in by_attr.values():
        if cdef.name in out:
            raise ConfigError(
                f"workflow {workflow_name!r} has two compensations named {cdef.name!r}"
                + ("" if group is None else f" in parallel group {group!r}")
            )
        recorded = cdef.name if group is None else f"{group}.{cdef.name}"
        out[cdef.name] = dataclasses.replace(cdef, name=recorded, owner=cls)
    return out


def _resolve_undo(
    workflow_name: str,
    sdef: StepDef,
    comps: Mapping[str, CompensationDef],
    local: Mapping[str, CompensationDef] | None = None,
) -> StepDef:
    """``sdef`` with the compensation its ``compensate=`` names (a branch: its group's
    first, then the workflow's); ConfigError naming what exists when there is none."""
    if sdef.compensate is None:
        return sdef
    undo = (local or {}).get(sdef.compensate) or comps.get(sdef.compensate)
    if undo is None:
        known = sorted({*comps, *(local or {})})
        where = "its group's class or the workflow class" if local is not None else "the workflow"
        raise ConfigError(
            f"workflow {workflow_name!r}: step {sdef.name!r} has compensate="
            f"{sdef.compensate!r}, but {where} has no @compensation of that name "
            f"(compensations: {', '.join(known) if known else 'none'})"
        )
    return dataclasses.replace(sdef, undo=undo)


def _branches_of(
    workflow_name: str, group: StepDef, comps: Mapping[str, CompensationDef]
) -> tuple[StepDef, ...]:
    """The branches of a parallel group, checked and named ``"group.step"``, each with
    the compensation it names (on the group's class, else on the workflow's)."""
    assert group.owner is not None
    local = _compensations_of(workflow_name, group.owner, group.name)
    found: dict[str, StepDef] = {}
    for attr_name, attr in vars(group.owner).items():
        sdef = getattr(attr, _STEP_ATTR, None)
        if not isinstance(sdef, StepDef):
            continue
        where = f"workflow {workflow_name!r}, parallel group {group.name!r}"
        if sdef.kind != "step":
            raise ConfigError(
                f"{where}: {attr_name} is a {sdef.kind}; a branch is a @step (put "
                "decisions, groups and foreach steps in the workflow's own flow)"
            )
        if sdef.when is not None:
            raise ConfigError(
                f"{where}: branch {sdef.name!r} has when=...; every branch of a group runs "
                "(decide before the group, or return early from the branch)"
            )
        if sdef.name in found:
            raise ConfigError(f"{where} has two branches named {sdef.name!r}")
        found[sdef.name] = _resolve_undo(
            workflow_name,
            dataclasses.replace(
                sdef, name=f"{group.name}.{sdef.name}", group=group.name, owner=group.owner
            ),
            comps,
            local,
        )
    if not found:
        raise ConfigError(
            f"workflow {workflow_name!r}: parallel group {group.name!r} has no @step "
            "methods; each @step in the group's class is a branch"
        )
    return tuple(found.values())


_registry: dict[str, WorkflowDef] = {}
_registry_lock = threading.Lock()
_registry_version = 0  # grows at each registration (workers re-read declared schedules)


def workflow(
    name: str,
    *,
    timeout: Duration | None = None,
    max_retries: int | None = None,
    queue: str = "default",
    max_step_runs: int = MAX_STEP_RUNS,
    cron: str | None = None,
    timezone: str = "UTC",
    input: type | dict[str, Any] | None = None,
) -> Callable[[C], C]:
    """Declare a workflow class and register it under ``name``.

    ``timeout`` (ms or timedelta) bounds the whole execution from its first start.
    ``max_retries`` is the retry budget of steps that set no ``retry``: that many retries
    after the first attempt, with exponential backoff. ``queue`` is the default queue.
    ``max_step_runs`` bounds the step runs (every visit of every step, skipped ones
    included) of one execution: past it the execution fails with
    ``TooManyStepRuns``, so a loop that never ends stops.
    ``cron`` (with ``timezone``, an IANA name) starts it at every tick: the schedule is
    stored under the workflow's name when an engine runs a worker (see
    ``Engine.schedule <durable.Engine.schedule>`` for the rules); a bad expression or
    an unknown zone is a ConfigError here.
    ``input``: what the input must be — a pydantic model class (``start()`` validates
    with it and stores the JSON form; ``durable.context.input()`` returns an instance) or
    a JSON Schema dict; data that does not match raises InvalidInput at the start, and
    nothing is started.
    """
    check_name(name, "@workflow name")
    input_model, input_schema = _input_type(name, input)
    if cron is not None or timezone != "UTC":
        if cron is None:
            raise ConfigError(f"@workflow({name!r}, timezone=...) is for cron=: give cron too")
        Cron(cron, timezone)  # (raises ConfigError naming what is wrong)
    timeout_ms = (
        None if timeout is None else to_ms(timeout, what="workflow timeout", allow_zero=False)
    )
    if max_retries is not None and (
        isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0
    ):
        raise ConfigError(f"max_retries must be an int >= 0, got {max_retries!r}")
    if isinstance(max_step_runs, bool) or not isinstance(max_step_runs, int) or max_step_runs < 1:
        raise ConfigError(f"max_step_runs must be an int >= 1, got {max_step_runs!r}")
    check_name(queue, "queue")

    def register(cls: C) -> C:
        if not isinstance(cls, type):
            raise ConfigError(f"@workflow decorates a class, got {type(cls).__name__}")
        # By attribute: a subclass that redefines a step method replaces it in place.
        by_attr: dict[str, StepDef] = {}
        for klass in reversed(cls.__mro__):
            for attr_name, attr in vars(klass).items():
                sdef = getattr(attr, _STEP_ATTR, None)
                if isinstance(sdef, StepDef):
                    by_attr[attr_name] = sdef
                elif attr_name in by_attr:
                    del by_attr[attr_name]  # overridden by a plain attribute
        if not by_attr:
            raise ConfigError(f"workflow {name!r} ({cls.__qualname__}) has no @step methods")
        comps = _compensations_of(name, cls, None)
        found: dict[str, StepDef] = {}
        for attr_name, sdef in by_attr.items():
            if sdef.name in found:
                other = next(a for a, d in by_attr.items() if d is found[sdef.name])
                raise ConfigError(
                    f"workflow {name!r} ({cls.__qualname__}) has two steps named "
                    f"{sdef.name!r}: the methods {other} and {attr_name}; give one of them "
                    "another name (@step(name=...))"
                )
            found[sdef.name] = (
                dataclasses.replace(sdef, branches=_branches_of(name, sdef, comps))
                if sdef.kind == "parallel"
                else _resolve_undo(name, sdef, comps)
            )
        clash = sorted(set(comps) & set(found))
        if clash:
            raise ConfigError(
                f"workflow {name!r} ({cls.__qualname__}) uses the name {clash[0]!r} for a "
                "step and a compensation; give one of them another name (name=...)"
            )
        default_retry = (
            Retry(max_attempts=max_retries + 1, backoff="exponential")
            if max_retries is not None
            else None
        )
        wdef = WorkflowDef(
            name=name,
            cls=cls,
            steps=tuple(found.values()),
            timeout=timeout_ms,
            queue=queue,
            default_retry=default_retry,
            max_step_runs=max_step_runs,
            cron=cron,
            timezone=timezone,
            input_model=input_model,
            input_schema=input_schema,
        )
        if cron is not None and (input_model is not None or input_schema is not None):
            try:
                wdef.check_input(None)
            except InvalidInput as exc:
                raise ConfigError(
                    f"workflow {name!r} declares cron= and input=, but each tick starts it "
                    "with no input (None), which does not match ("
                    + "; ".join(f"at {path}: {why}" for path, why in exc.problems)
                    + "); drop cron= and schedule it with engine.schedule(..., input=...)"
                ) from None
        global _registry_version
        with _registry_lock:
            prior = _registry.get(name)
            if prior is not None and prior.cls is not cls:
                _check_redefinition(name, prior, wdef)
            _registry[name] = wdef
            _registry_version += 1
        setattr(cls, _WORKFLOW_ATTR, wdef)
        return cls

    return register


def _input_type(name: str, value: object) -> tuple[type[BaseModel] | None, dict[str, Any] | None]:
    """``@workflow(input=...)`` as (model, JSON Schema); ConfigError for anything else."""
    what = f"@workflow({name!r}, input=...)"
    if value is None:
        return None, None
    if is_model_class(value):
        model = cast("type[BaseModel]", value)
        schema, _ = split_schema(model_schema(model, what))
        return model, schema
    if isinstance(value, type):
        raise ConfigError(
            f"{what} takes a pydantic model class (a subclass of pydantic.BaseModel, "
            f"pydantic 2) or a JSON Schema dict; {value.__qualname__} is not one"
        )
    check_schema(value, f"{what} schema")
    return None, cast("dict[str, Any]", value)


def _origin(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _defined_at(wdef: WorkflowDef) -> tuple[str, int]:
    """Where the class's steps are written: its source file and first step line."""
    codes = [getattr(inspect.unwrap(s.fn), "__code__", None) for s in wdef.steps]
    found = [(c.co_filename, c.co_firstlineno) for c in codes if c is not None]
    return min(found) if found else ("?", 0)


def _check_redefinition(name: str, prior: WorkflowDef, new: WorkflowDef) -> None:
    """A workflow name may be registered again only by the same definition run again: a
    module reloaded, a class made by a function called again (a test, a notebook cell).
    Another class, or a second class of the same name written elsewhere in the same file,
    would silently replace the first."""
    if _origin(prior.cls) != _origin(new.cls):
        raise ConfigError(
            f"workflow name {name!r} is already registered by {_origin(prior.cls)}; "
            f"{_origin(new.cls)} needs another name"
        )
    (file_a, line_a), (file_b, line_b) = _defined_at(prior), _defined_at(new)
    if file_a == file_b and line_a != line_b:
        raise ConfigError(
            f"workflow name {name!r}: {file_b} defines {new.cls.__qualname__} twice (steps "
            f"from line {line_a} and from line {line_b}); the second would silently replace "
            "the first. Remove or rename one (after editing a module, restart the process "
            "rather than reloading it)"
        )


def get_workflow(ref: str | type | WorkflowDef) -> WorkflowDef:
    """Resolve a workflow class, name or definition to its definition."""
    if isinstance(ref, WorkflowDef):
        return ref
    if isinstance(ref, type):
        wdef = getattr(ref, _WORKFLOW_ATTR, None)
        if not isinstance(wdef, WorkflowDef):
            raise WorkflowNotFound(
                f'{ref.__qualname__} is not a workflow: decorate it with @workflow("name")'
            )
        return wdef
    if isinstance(ref, str):
        with _registry_lock:
            wdef = _registry.get(ref)
            known = sorted(_registry)
        if wdef is None:
            close = difflib.get_close_matches(ref, known, n=3)
            if close:
                hint = f"did you mean {' or '.join(map(repr, close))}?"
            elif known:
                more = f" and {len(known) - 10} more" if len(known) > 10 else ""
                hint = f"registered: {', '.join(known[:10])}{more}"
            else:
                hint = "none is registered"
            raise WorkflowNotFound(
                f"no workflow named {ref!r}; {hint} (import the module that defines it)"
            )
        return wdef
    raise WorkflowNotFound(f"expected a workflow class or name, got {type(ref).__name__}")


def may_compensate(workflow: str) -> bool:
    """Whether a cancel of an execution of ``workflow`` must leave it to its
    compensations (not registered here: assume it may have some, so none is skipped)."""
    with _registry_lock:
        wdef = _registry.get(workflow)
    return True if wdef is None else wdef.compensates


def registry_version() -> int:
    """A number that grows whenever a workflow is registered (or registered again)."""
    with _registry_lock:
        return _registry_version


def plan_of(shape: Mapping[str, Any]) -> str:
    """The fingerprint of a workflow shape (``WorkflowDef.shape()``, or one an execution
    stored): 16 hex digits of the SHA-256 of its canonical JSON."""
    text = json.dumps(shape, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def registered_workflows() -> dict[str, WorkflowDef]:
    """A copy of the registry: name to definition."""
    with _registry_lock:
        return dict(_registry)
