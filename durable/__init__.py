"""durable: durable, resumable workflows you can test with a time-travel clock."""

import logging as _logging

from durable._default import (
    cancel,
    configure,
    default_engine,
    drain,
    get_execution,
    list_executions,
    run_worker,
    start,
)
from durable.clock import Clock, SystemClock
from durable.dsl import StepDef, WorkflowDef, get_workflow, step, workflow
from durable.durations import days, hours, minutes, seconds
from durable.engine import Engine
from durable.errors import (
    ConfigError,
    ContextError,
    DurableError,
    ExecutionNotFound,
    InvalidInput,
    InvalidState,
    LeaseLost,
    SerializationError,
    StepNotFound,
    StepTimeout,
    StoreError,
    UnreadableExecution,
    WaitTimeout,
    WorkerLost,
    WorkflowNotFound,
    WorkflowTimeout,
)
from durable.hookspecs import StepCall
from durable.models import Execution, Status, StepExecution, StepStatus, Wait
from durable.plugins import hookimpl
from durable.retry import Retry
from durable.scheduler import Scheduler
from durable.waits import (
    sleep_for,
    sleep_until,
    wait_for_all_events,
    wait_for_any_event,
    wait_for_event,
    wait_for_input,
)

__version__ = "0.1.0"

# A library logs; the application decides where to (``durable worker`` logs to stderr).
_logging.getLogger("durable").addHandler(_logging.NullHandler())

__all__ = [
    "Clock",
    "ConfigError",
    "ContextError",
    "DurableError",
    "Engine",
    "Execution",
    "ExecutionNotFound",
    "InvalidInput",
    "InvalidState",
    "LeaseLost",
    "Retry",
    "Scheduler",
    "SerializationError",
    "Status",
    "StepCall",
    "StepDef",
    "StepExecution",
    "StepNotFound",
    "StepStatus",
    "StepTimeout",
    "StoreError",
    "SystemClock",
    "UnreadableExecution",
    "Wait",
    "WaitTimeout",
    "WorkerLost",
    "WorkflowDef",
    "WorkflowNotFound",
    "WorkflowTimeout",
    "__version__",
    "cancel",
    "configure",
    "days",
    "default_engine",
    "drain",
    "get_execution",
    "get_workflow",
    "hookimpl",
    "hours",
    "list_executions",
    "minutes",
    "run_worker",
    "seconds",
    "sleep_for",
    "sleep_until",
    "start",
    "step",
    "wait_for_all_events",
    "wait_for_any_event",
    "wait_for_event",
    "wait_for_input",
    "workflow",
]
