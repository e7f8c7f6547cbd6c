"""The plugin API: every hook a ``durable`` plugin can implement.

Plugins are found through the ``durable`` entry point group (built-in stores and the
system clock register the same way) or passed as ``Engine(plugins=[...])``. Implement a hook
with :data:`durable.plugins.hookimpl`. Registration hooks are called once per engine with a
registry to add to. Observer hooks are called after the transition they report was
committed, in the worker that made it, at least once; an exception in an observer is logged
and never fails the workflow. No hook here is ``firstresult``: every implementation runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from durable.models import Execution, StepExecution
    from durable.plugins import ClockRegistry, StoreRegistry

hookspec = pluggy.HookspecMarker("durable")


@hookspec
def durable_register_stores(registry: StoreRegistry) -> None:
    """Add store factories by URL scheme: ``registry.add("myscheme", factory)``.

    ``factory(url)`` gets the full store URL and returns a :class:`durable.stores.Store`.
    Called when an engine resolves its store URL.
    """


@hookspec
def durable_register_clocks(registry: ClockRegistry) -> None:
    """Add clock factories by name: ``registry.add("system", SystemClock)``.

    ``Engine(clock="name")`` builds that clock; ``clock=None`` means ``"system"``.
    """


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
def durable_workflow_cancelled(execution: Execution, reason: str | None) -> None:
    """An execution was cancelled (at once, or at a running step's checkpoint)."""


@hookspec
def durable_step_started(execution: Execution, step: StepExecution) -> None:
    """A step attempt was recorded as started and is about to run."""


@hookspec
def durable_step_completed(execution: Execution, step: StepExecution) -> None:
    """A step attempt completed and its context writes were committed."""


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
    """A step attempt failed with no attempt left (or past the workflow timeout)."""
