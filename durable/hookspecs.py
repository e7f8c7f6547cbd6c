"""The plugin API: every hook a ``durable`` plugin can implement.

Plugins are found through the ``durable`` entry point group (built-in stores and the
system clock register the same way) or passed as ``Engine(plugins=[...])``. Implement a hook
with ``durable.plugins.hookimpl``. Registration hooks are called once per engine with a
registry to add to. Observer hooks are called after the transition they report was
committed, in the worker that made it, at least once; an exception in an observer is logged
and never fails the workflow; observers must be plain functions (``wrapper=True`` is
refused when the engine is built). ``durable_step_call`` is the one around hook: its
implementations must be ``wrapper=True`` generators. ``durable_execution_headers`` is
asked, as an execution is created, for headers to store with it (a trace context);
``durable_serve_metrics`` serves a worker's metrics (``durable worker --metrics-port``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from durable.models import Execution, StepExecution
    from durable.plugins import ClockRegistry, StoreRegistry

hookspec = pluggy.HookspecMarker("durable")

WRAPPER_HOOKS = frozenset({"durable_step_call"})
"""Hooks whose implementations wrap something (``wrapper=True``); every other hook is a
registration or an observer and takes plain implementations only."""


@dataclass(slots=True)
class StepCall:
    """One step attempt about to run, as ``durable_step_call`` wrappers see it.

    ``(execution_id, step, visit)`` is the step run it belongs to (``visit`` counts the
    times the execution reached the step); ``attempt`` counts from 1 in each visit. A
    unit's attempt (a parallel branch, a foreach item) has its execution's id and the
    unit's name as ``step`` (``"group.step"``, ``"step[i]"``), as observers see it.

    ``body`` runs the step: it returns the step's value (for an ``async def`` step, the
    coroutine to await). A wrapper may replace ``body`` before it yields, to run something
    else in the step's place (``durable_testing``'s step overrides do).

    ``headers`` are the execution's, as ``durable_execution_headers`` stored them when
    it was created (a parallel branch or foreach item sees its execution's).
    """

    workflow: str
    execution_id: str
    step: str
    attempt: int
    visit: int
    is_async: bool
    body: Callable[[], Any]
    headers: Mapping[str, str] = field(default_factory=dict)


@hookspec(firstresult=True)
def durable_step_call(call: StepCall) -> Any:
    """Wrap each step attempt: implement it as ``@hookimpl(wrapper=True)`` generator,
    ``result = yield`` runs the attempt (raising what it raised), and what the wrapper
    returns is the step's result:

        @hookimpl(wrapper=True)
        def durable_step_call(call):
            with tracer.start_as_current_span(call.step):
                return (yield)

    Called inside the attempt, on its thread (a sync step) or in its task on the engine's
    event loop (an async step, whose wrappers' code after ``yield`` runs once the step's
    coroutine has finished), so context variables a wrapper sets are seen by the step.
    A wrapper that raises before it yields fails the attempt with that error. A step that
    reaches a wait not yet resolved suspends: the wrapper sees ``durable.WaitSignal``
    thrown at its ``yield`` and should let it pass (it is not an error; the step runs
    again when the wait resolves).
    """


@hookspec
def durable_execution_headers(
    workflow: str, execution_id: str, created_by: str
) -> dict[str, str] | None:
    """An execution of ``workflow`` with id ``execution_id`` is about to be created: return
    string headers to store with it (a W3C ``traceparent``, say), or None.

    Called in the thread that creates it, before its row is written, so the caller's
    context (its current trace span) is the one in force. ``created_by`` says how:
    ``"start"`` (``engine.start``, in the caller's thread), ``"child"`` (a child workflow
    started from a step, in the step's context), ``"fork"`` (``engine.fork``) or
    ``"schedule"`` (a schedule's tick, in the worker that fires it, once per execution of
    the fire, before the fire's one transaction). The id may end up unused: an
    idempotent start that finds the execution its key already started, a tick another
    worker fired first or that the schedule's ``overlap`` lets go.

    Every implementation is called and their answers are merged (a key two of them give
    keeps the answer of the one called first). One that raises, or answers anything but a
    dict of str to str (at most 4096 characters in all), is logged and left out: a start
    never fails for it. The headers never change after (``engine.retry`` keeps them); the
    execution's units share them; they are ``Execution.headers`` and ``StepCall.headers``.
    """


@hookspec
def durable_register_stores(registry: StoreRegistry) -> None:
    """Add store factories by URL scheme: ``registry.add("myscheme", factory)``.

    ``factory(url)`` gets the full store URL and returns a ``durable.stores.Store``.
    Called when an engine resolves its store URL.
    """


@hookspec
def durable_register_clocks(registry: ClockRegistry) -> None:
    """Add clock factories by name: ``registry.add("system", SystemClock)``.

    ``Engine(clock="name")`` builds that clock; ``clock=None`` means ``"system"``.
    """


@hookspec(firstresult=True)
def durable_serve_metrics(port: int, host: str) -> str | None:
    """Serve this process's metrics for scraping on ``host``:``port``, in the background,
    for as long as the process lives (``durable worker --metrics-port PORT``); return where
    (a URL, for the worker's log). The first answer that is not None wins; with no plugin
    answering, ``durable worker --metrics-port`` exits with status 2 (``pip install
    durable-otel`` provides one, serving Prometheus text)."""


@hookspec
def durable_execution_claimed(
    execution: Execution, claimed_at: datetime, due: datetime | None
) -> None:
    """A worker (or ``drain()``) claimed the execution at ``claimed_at``; it had been due
    since ``due`` (its start's ``scheduled_at``, the end of a retry's backoff or of a wait,
    or the expiry of a lost worker's lease), so ``claimed_at - due`` is how long it waited
    in its queue. Called after the claim committed, in the thread that then runs the
    execution, before it runs; for a claimed unit (a parallel branch, a foreach item)
    ``execution.id`` is its execution's and ``execution.current_step`` the unit's name."""


@hookspec
def durable_workflow_started(execution: Execution) -> None:
    """An execution was claimed for the first time and is about to run its first step."""


@hookspec
def durable_workflow_completed(execution: Execution) -> None:
    """An execution completed its last step."""


@hookspec
def durable_workflow_failed(execution: Execution, error: dict[str, Any]) -> None:
    """An execution failed: a step ran out of attempts, or the workflow timed out."""


@hookspec
def durable_workflow_compensated(execution: Execution) -> None:
    """An execution that failed or was cancelled ran the compensations of its completed
    steps, all of them successfully (``execution.error`` is the failure that started
    them)."""


@hookspec
def durable_workflow_cancelled(execution: Execution, reason: str | None) -> None:
    """An execution was cancelled (at once, or at a running step's checkpoint)."""


@hookspec
def durable_step_started(execution: Execution, step: StepExecution) -> None:
    """A step attempt was recorded as started and is about to run."""


@hookspec
def durable_step_completed(execution: Execution, step: StepExecution) -> None:
    """A step attempt completed and its context writes were committed; also a step its
    ``when=`` condition skipped (``step.status == "skipped"``, no attempt ran)."""


@hookspec
def durable_step_retrying(execution: Execution, step: StepExecution, retry_at: datetime) -> None:
    """A step attempt failed and the next attempt is scheduled for ``retry_at``."""


@hookspec
def durable_step_suspended(
    execution: Execution, step: StepExecution, until: datetime | None
) -> None:
    """A step reached a wait that is not resolved: the execution is ``waiting`` (until
    ``until`` at the latest, or until an event or input wakes it)."""


@hookspec
def durable_step_failed(execution: Execution, step: StepExecution) -> None:
    """A step attempt failed with no attempt left, with an error it does not retry
    (``Retry(non_retryable=...)``, ``NonRetryableError``), or past the workflow timeout."""
