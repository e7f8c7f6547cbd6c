"""Exceptions raised by durable.

The tree::

    DurableError
    ├── ConfigError          (also ValueError) bad options at definition or call time
    ├── SerializationError   (also TypeError)  a context or input value that is not JSON
    ├── ContextError         (also RuntimeError) context API used outside a running step
    ├── WorkflowNotFound     (also LookupError) no workflow registered under a name
    │   └── StepNotFound     a stored execution is at a step the deployed workflow lacks
    ├── ExecutionNotFound    (also LookupError) no execution with an id
    ├── InvalidState         an operation that the execution's status does not allow
    ├── StoreError           the store failed or is unreachable
    │   └── LeaseLost        a worker's claim was taken over; it may write nothing more
    ├── StepTimeout          (also TimeoutError) a step attempt ran past its timeout
    └── WorkflowTimeout      (also TimeoutError) an execution ran past its workflow timeout
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ContextError",
    "DurableError",
    "ExecutionNotFound",
    "InvalidInput",
    "InvalidState",
    "LeaseLost",
    "SerializationError",
    "StepNotFound",
    "StepTimeout",
    "StoreError",
    "WaitTimeout",
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


class ExecutionNotFound(DurableError, LookupError):
    """No execution has the given id."""


class InvalidState(DurableError):
    """The execution's status does not allow the operation (e.g. cancel after it finished)."""


class StoreError(DurableError):
    """The store failed or cannot be reached."""


class LeaseLost(StoreError):
    """The claim's fencing token is stale: another worker owns the execution now."""


class StepTimeout(DurableError, TimeoutError):
    """A step attempt ran longer than its ``timeout``; its result was discarded."""


class WorkflowTimeout(DurableError, TimeoutError):
    """An execution ran longer than its workflow ``timeout``."""


class WaitTimeout(DurableError, TimeoutError):
    """A wait (for an event or an input) timed out and gave no ``timeout_value``: the
    attempt fails and the step's retry rules apply."""


class InvalidInput(DurableError, ValueError):
    """Data given to ``provide_input`` does not match the input's JSON Schema (nothing was
    stored)."""
