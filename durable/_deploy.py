"""Deploy safety: whether the loaded code can continue an execution in flight, from the
workflow shape the execution recorded when it started and the position it is at."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from durable.dsl import WorkflowDef
from durable.models import StepExecution, StepPhase, StepStatus
from durable.stores.base import ExecutionRow

__all__ = ["DeployProblem", "position_problem", "problems"]


@dataclass(frozen=True, slots=True)
class DeployProblem:
    """An unfinished execution the loaded code cannot continue: ``step`` is where it is,
    ``change`` what changed there."""

    execution_id: str
    workflow: str
    step: str | None
    change: str

    def __str__(self) -> str:
        return f"{self.execution_id}  {self.workflow}  at {self.step}: {self.change}"


def _recorded_kind(row: ExecutionRow, name: str) -> str | None:
    for step, kind in (row.shape or {}).get("steps", []):
        if step == name:
            return str(kind)
    return None


def _begun(row: ExecutionRow) -> bool:
    """Whether the current step run is under way: suspended in a wait, or at a group
    waiting for its units. Resuming it needs the kind it began as; any other attempt
    (a first, a retry) starts afresh under the code of the moment."""
    return row.suspended


def _gone(name: str) -> str:
    return f"step {name!r} is gone (restore it, or give its new name @step(renamed_from={name!r}))"


def position_problem(
    row: ExecutionRow, wdef: WorkflowDef, has_units: Callable[[], bool] | None = None
) -> str | None:
    """What stops the loaded code from continuing ``row`` (an execution, or a unit of one)
    where it is, or None: its step is gone, or changed kind since the execution started;
    a unit's group or branch is gone. ``has_units()`` says whether the current step run
    forked units (it began as a group), asked only when the kind differs."""
    if row.unit is not None:
        group = row.group_step or ""
        current_group = wdef.current_name(group)
        if current_group is None:
            return _gone(group)
        if wdef.step(current_group).kind not in ("parallel", "foreach"):
            return f"step {group!r} was a group and is a {wdef.step(current_group).kind} now"
        if wdef.current_name(row.unit) is None:
            return f"branch {row.unit!r} is gone (restore it, or mark its rename)"
        return None
    name = row.step_name
    if name is None:
        return None
    current = wdef.current_name(name)
    if current is None:
        return _gone(name)
    if not _begun(row):
        return None  # (it starts afresh under this code, whatever the step is now)
    was, now = _recorded_kind(row, name), wdef.step(current).kind
    if was is not None and was != now:
        groups = ("parallel", "foreach")
        # The run may have begun under newer code than the shape recorded at the start:
        # whether it forked units tells which kind it began as.
        began_as_group = has_units() if has_units is not None else was in groups
        if began_as_group != (now in groups):
            return f"step {name!r} was a {was} when the execution started and is a {now} now"
    branches = (row.shape or {}).get("branches", {}).get(name)
    if branches and now == "parallel":
        missing = [b for b in branches if wdef.current_name(b) is None]
        if missing:
            return f"branch {missing[0]!r} of group {name!r} is gone"
    return None


def problems(
    row: ExecutionRow,
    wdef: WorkflowDef | None,
    records: list[StepExecution] | None = None,
    has_units: Callable[[], bool] | None = None,
) -> list[DeployProblem]:
    """Why the loaded code cannot continue the unfinished execution ``row`` (none: it
    can). ``wdef`` is its workflow in the loaded code (None: not defined there);
    ``records`` its attempts (needed for one running its compensations: only those of
    completed steps count)."""

    def problem(change: str) -> DeployProblem:
        return DeployProblem(row.id, row.workflow, row.step_name, change)

    if wdef is None:
        return [problem(f"workflow {row.workflow!r} is not defined in the loaded code")]
    found = []
    if row.phase == StepPhase.RUN:
        position = position_problem(row, wdef, has_units)
        if position is not None:
            found.append(problem(position))
    else:
        # Running its compensations: that of each completed step must still be there.
        completed = {
            r.name
            for r in records or []
            if r.phase == StepPhase.RUN and r.status == StepStatus.COMPLETED
        }
        for step, comp in (row.shape or {}).get("compensate", {}).items():
            if step not in completed:
                continue
            current = wdef.current_name(step)
            undo = None if current is None else wdef.step(current).undo
            if undo is None or undo.name != comp:
                found.append(problem(f"compensation {comp!r} of step {step!r} is gone"))
    return found
