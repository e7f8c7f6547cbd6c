"""durable: durable, resumable workflows you can test with a time-travel clock.

Define a workflow as a class of ``@step`` methods (with ``workflow``, ``step``,
``Retry`` and the flow decorators), run it with an ``Engine`` on a store (SQLite by
default, PostgreSQL for many workers, memory for tests), and read what happened from the
``Execution`` and ``StepExecution`` it returns. Inside a step, ``durable.context`` reads
and writes the execution's context and waits (``durable.aio`` has the waits as awaitables,
for ``async def`` steps); ``durable_testing`` is the test kit.
"""

# Importing ``durable`` is cheap: the errors are imported at once, every other public name
# when it is first used (``durable.Engine``, ``from durable import step``), so that the
# ``durable`` command and the pytest plugin, which import this package first, pay only for
# what they use. Type checkers see the real imports below.

import importlib as _importlib
import logging as _logging
import typing as _typing

from durable.errors import (
    ChildWorkflowFailed,
    CompensationFailed,
    ConfigError,
    ContextConflict,
    ContextError,
    DurableError,
    ExecutionNotFinished,
    ExecutionNotFound,
    InvalidDecision,
    InvalidInput,
    InvalidState,
    LeaseLost,
    NonRetryableError,
    ParallelFailed,
    ScheduleNotFound,
    SerializationError,
    StepNotFound,
    StepTimeout,
    StoreError,
    TooManyStepRuns,
    UnreadableExecution,
    WaitTimeout,
    WorkerLost,
    WorkflowChanged,
    WorkflowNotFound,
    WorkflowTimeout,
)

if _typing.TYPE_CHECKING:
    from durable._default import (
        cancel,
        configure,
        default_engine,
        drain,
        get_execution,
        list_executions,
        provide_input,
        run_worker,
        send_event,
        start,
        wait,
    )
    from durable._deploy import DeployProblem
    from durable._runtime import WaitSignal
    from durable.clock import Clock, SystemClock
    from durable.dsl import (
        StepDef,
        WorkflowDef,
        compensation,
        decision,
        foreach,
        get_workflow,
        parallel,
        step,
        workflow,
    )
    from durable.durations import Duration, days, hours, minutes, seconds
    from durable.engine import Engine
    from durable.graphs import graph
    from durable.hookspecs import StepCall
    from durable.models import (
        CatchUp,
        Execution,
        Overlap,
        Schedule,
        Status,
        StepExecution,
        StepPhase,
        StepStatus,
        Undoing,
        Wait,
        WaitKind,
        WaitMode,
        WaitStatus,
    )
    from durable.plugins import hookimpl
    from durable.retry import Retry
    from durable.scheduler import Scheduler
    from durable.waits import (
        call_workflow,
        sleep_for,
        sleep_until,
        start_workflow,
        wait_for_all_events,
        wait_for_any_event,
        wait_for_event,
        wait_for_input,
    )

__version__ = "0.1.0"

# A library logs; the application decides where to (``durable worker`` logs to stderr).
_logging.getLogger("durable").addHandler(_logging.NullHandler())

# The module of each name imported on first use; the same names as the imports above.
_LAZY = {
    "durable._default": (
        "cancel",
        "configure",
        "default_engine",
        "drain",
        "get_execution",
        "list_executions",
        "provide_input",
        "run_worker",
        "send_event",
        "start",
        "wait",
    ),
    "durable._runtime": ("WaitSignal",),
    "durable.clock": ("Clock", "SystemClock"),
    "durable.dsl": (
        "StepDef",
        "WorkflowDef",
        "compensation",
        "decision",
        "foreach",
        "get_workflow",
        "parallel",
        "step",
        "workflow",
    ),
    "durable.durations": ("Duration", "days", "hours", "minutes", "seconds"),
    "durable.engine": ("Engine",),
    "durable.hookspecs": ("StepCall",),
    "durable.graphs": ("graph",),
    "durable._deploy": ("DeployProblem",),
    "durable.models": (
        "CatchUp",
        "Execution",
        "Overlap",
        "Schedule",
        "Status",
        "StepExecution",
        "StepPhase",
        "StepStatus",
        "Undoing",
        "Wait",
        "WaitKind",
        "WaitMode",
        "WaitStatus",
    ),
    "durable.plugins": ("hookimpl",),
    "durable.retry": ("Retry",),
    "durable.scheduler": ("Scheduler",),
    "durable.waits": (
        "call_workflow",
        "sleep_for",
        "sleep_until",
        "wait_for_all_events",
        "wait_for_any_event",
        "wait_for_event",
        "start_workflow",
        "wait_for_input",
    ),
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}


if not _typing.TYPE_CHECKING:  # type checkers see the imports above, and no catch-all

    def __getattr__(name: str) -> object:
        """A public name, imported from its module on first use; else a submodule
        (``durable.durations``), as when this package imported them all."""
        module = _MODULE_OF.get(name)
        if module is not None:
            value = getattr(_importlib.import_module(module), name)
            globals()[name] = value
            return value
        if not name.startswith("__"):
            try:
                return _importlib.import_module(f"{__name__}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{__name__}.{name}":
                    raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "CatchUp",
    "ChildWorkflowFailed",
    "Clock",
    "CompensationFailed",
    "ConfigError",
    "ContextConflict",
    "ContextError",
    "DeployProblem",
    "DurableError",
    "Duration",
    "Engine",
    "Execution",
    "ExecutionNotFinished",
    "ExecutionNotFound",
    "InvalidDecision",
    "InvalidInput",
    "InvalidState",
    "LeaseLost",
    "NonRetryableError",
    "Overlap",
    "ParallelFailed",
    "Retry",
    "Schedule",
    "ScheduleNotFound",
    "Scheduler",
    "SerializationError",
    "Status",
    "StepCall",
    "StepDef",
    "StepExecution",
    "StepNotFound",
    "StepPhase",
    "StepStatus",
    "StepTimeout",
    "StoreError",
    "SystemClock",
    "TooManyStepRuns",
    "Undoing",
    "UnreadableExecution",
    "Wait",
    "WaitKind",
    "WaitMode",
    "WaitSignal",
    "WaitStatus",
    "WaitTimeout",
    "WorkerLost",
    "WorkflowChanged",
    "WorkflowDef",
    "WorkflowNotFound",
    "WorkflowTimeout",
    "__version__",
    "call_workflow",
    "cancel",
    "compensation",
    "configure",
    "days",
    "decision",
    "default_engine",
    "drain",
    "foreach",
    "get_execution",
    "get_workflow",
    "graph",
    "hookimpl",
    "hours",
    "list_executions",
    "minutes",
    "parallel",
    "provide_input",
    "run_worker",
    "seconds",
    "send_event",
    "sleep_for",
    "sleep_until",
    "start",
    "start_workflow",
    "step",
    "wait",
    "wait_for_all_events",
    "wait_for_any_event",
    "wait_for_event",
    "wait_for_input",
    "workflow",
]
