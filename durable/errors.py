"""Exceptions raised by durable.

The tree::

    DurableError
    ├── ConfigError          (also ValueError) bad options at definition or call time
    ├── SerializationError   (also TypeError)  a context or input value that is not JSON
    ├── ContextError         (also RuntimeError) context API used outside a running step
    ├── WorkflowNotFound     (also LookupError) no workflow registered under a name
    │   └── StepNotFound     a stored execution is at a step the deployed workflow lacks
    ├── ExecutionNotFound    (also LookupError) no execution with an id
    ├── ExecutionNotFinished (also TimeoutError) engine.wait() ran out of time
    ├── InvalidState         an operation that the execution's status does not allow
    ├── StoreError           the store failed or is unreachable
    │   ├── LeaseLost        a worker's claim was taken over; it may write nothing more
    │   └── UnreadableExecution  a stored execution this process cannot decode
    ├── StepTimeout          (also TimeoutError) a step attempt ran past its timeout
    ├── WorkflowTimeout      (also TimeoutError) an execution ran past its workflow timeout
    ├── WaitTimeout          (also TimeoutError) a wait timed out without a timeout_value
    ├── InvalidInput         (also ValueError) data does not match its schema or model
    ├── InvalidDecision      (also ValueError) a @decision returned no declared target
    ├── TooManyStepRuns      an execution ran more step runs than its max_step_runs
    ├── ContextConflict      two parallel branches set the same context key
    ├── ParallelFailed       branches or items of a fail_fast=False group failed
    ├── ChildWorkflowFailed  a child workflow called with call_workflow did not complete
    └── WorkerLost           recorded, never raised: an attempt's worker stopped renewing
                             its lease (killed, paused, cut off); the attempt runs again
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ChildWorkflowFailed",
    "CompensationFailed",
    "ConfigError",
    "ContextConflict",
    "ContextError",
    "DurableError",
    "ExecutionNotFinished",
    "ExecutionNotFound",
    "InvalidDecision",
    "InvalidInput",
    "InvalidState",
    "LeaseLost",
    "NonRetryableError",
    "ParallelFailed",
    "ScheduleNotFound",
    "SerializationError",
    "StepNotFound",
    "StepTimeout",
    "StoreError",
    "TooManyStepRuns",
    "UnreadableExecution",
    "WaitTimeout",
    "WorkerLost",
    "WorkflowChanged",
    "WorkflowNotFound",
    "WorkflowTimeout",
]


class DurableError(Exception):
    """Base class of every error durable raises."""


class ConfigError(DurableError, ValueError):
    """An option is invalid: bad retry options, durations, cron, store URLs, priorities."""


class SerializationError(DurableError, TypeError):
    """A value given as context or input cannot be stored as JSON."""


class ContextError(DurableError, RuntimeError):
    """The context API was called outside a running step."""


class WorkflowNotFound(DurableError, LookupError):
    """No workflow is registered under the given name."""


class StepNotFound(WorkflowNotFound):
    """An execution is at a step that the deployed workflow no longer has."""


class WorkflowChanged(StepNotFound):
    """The deployed code cannot continue an execution in flight: the step (or group, or
    branch) it is at is gone, or changed kind, since it started. The worker that meets it
    fails it with this error, deleting nothing; deploy a fix (or mark a rename with
    ``@step(renamed_from=...)``) and resume it with ``engine.retry(id, from_step=...)``."""


class ExecutionNotFound(DurableError, LookupError):
    """No execution has the given id."""


class ScheduleNotFound(DurableError, LookupError):
    """No schedule has the given name."""


class ExecutionNotFinished(DurableError, TimeoutError):
    """``engine.wait(..., timeout=)`` ran out of time before the execution finished (it
    goes on; nothing was changed)."""


class InvalidState(DurableError):
    """The execution's status does not allow the operation (e.g. cancel after it finished)."""


class StoreError(DurableError):
    """The store failed or cannot be reached."""


class LeaseLost(StoreError):
    """The claim's fencing token is stale: another worker owns the execution now."""


class NonRetryableError(DurableError):
    """Raised by a step (or a subclass of it) to fail the attempt with no retry, whatever
    attempts its ``Retry`` has left: a declined card, an invalid address, an error that
    another try cannot mend. ``raise NonRetryableError("card declined") from exc`` keeps
    the cause in the stored traceback. For exceptions you do not raise yourself, list
    their types in ``Retry(non_retryable=...)``."""


class StepTimeout(DurableError, TimeoutError):
    """A step attempt ran longer than its ``timeout``; its result was discarded."""


class WorkflowTimeout(DurableError, TimeoutError):
    """An execution ran longer than its workflow ``timeout``."""


class WaitTimeout(DurableError, TimeoutError):
    """A wait (for an event or an input) timed out and gave no ``timeout_value``: the
    attempt fails and the step's retry rules apply."""


class InvalidInput(DurableError, ValueError):
    """Data does not match what it must (nothing was stored or started): data given to
    ``provide_input``, its input's JSON Schema or model; a workflow's input, its
    ``@workflow(input=...)``. ``problems`` lists each ``(path, message)``: where
    (``"items/0/price"``, ``"(root)"`` for the whole value) and what was wrong there."""

    def __init__(self, message: str, problems: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.problems: list[tuple[str, str]] = list(problems)


class InvalidDecision(DurableError, ValueError):
    """A ``@decision`` step returned something other than one of its declared targets or
    None; the attempt fails (and is retried like any failed attempt)."""


class TooManyStepRuns(DurableError):
    """An execution reached more step runs than its workflow's ``max_step_runs``: most
    likely a loop whose way out is never taken. The execution fails with this error."""


class ContextConflict(DurableError):
    """Two branches of a parallel group set the same context key (only appends and
    increments merge); the group fails. ``key`` and ``branches`` name them."""

    def __init__(self, message: str, key: str = "", branches: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.key = key
        self.branches = branches


class ParallelFailed(DurableError):
    """Units of a ``fail_fast=False`` parallel group or foreach failed; ``failures`` maps
    each failed unit's name to its stored error (type, message, traceback)."""

    def __init__(self, message: str, failures: dict[str, dict] | None = None) -> None:  # type: ignore[type-arg]
        super().__init__(message)
        self.failures = dict(failures or {})


class CompensationFailed(DurableError):
    """Compensations of a failed or cancelled execution ran out of attempts (the others
    still ran): ``failures`` lists each as ``{"compensation", "compensates", "visit",
    "error"}``; ``cause`` is the failure that started the compensations."""

    def __init__(
        self,
        message: str,
        failures: list[dict] | None = None,  # type: ignore[type-arg]
        cause: dict | None = None,  # type: ignore[type-arg]
    ) -> None:
        super().__init__(message)
        self.failures = list(failures or [])
        self.cause = cause


class ChildWorkflowFailed(DurableError):
    """A child workflow started by ``call_workflow`` ended without completing: ``child_id``,
    its ``status`` (failed or cancelled) and its stored ``error`` (type, message,
    traceback; None when cancelled)."""

    def __init__(
        self,
        message: str,
        child_id: str = "",
        status: str = "",
        error: dict | None = None,  # type: ignore[type-arg]
    ) -> None:
        super().__init__(message)
        self.child_id = child_id
        self.status = status
        self.error = error


class UnreadableExecution(StoreError):
    """The store holds an execution this process cannot decode (a value nested past
    Python's recursion limit, a date past the year 9999, text that is not JSON). A worker
    that claims one fails it with this error, so that the other executions run; what is
    stored is kept as it was."""


class WorkerLost(DurableError):
    """Recorded for an attempt whose worker stopped renewing its lease (killed, paused,
    cut off from the store) or stopped in the middle of it. Never raised to callers: the
    attempt runs again, without spending the step's retry budget, up to
    ``MAX_LOST_ATTEMPTS`` times in a row; after that a loss counts as a failed
    attempt."""
