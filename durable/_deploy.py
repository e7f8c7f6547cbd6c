"""Deploy safety: whether the loaded code can continue an execution in flight, from the
workflow shape the execution recorded when it started and the position it is at."""

from __future__ import annotations

from dataclasses import dataclass

from durable.dsl import WorkflowDef
from durable.models import StepPhase
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


def _gone(name: str) -> str:
    return f"step {name!r} is gone (restore it, or give its new name @step(renamed_from={name!r}))"


def position_problem(row: ExecutionRow, wdef: WorkflowDef) -> str | None:
    """What stops the loaded code from continuing ``row`` (an execution, or a unit of one)
    where it is, or None: its step is gone, or changed kind since the execution started;
    a unit's group or branch is gone."""
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
    was, now = _recorded_kind(row, name), wdef.step(current).kind
    if was is not None and was != now:
        return f"step {name!r} was a {was} when the execution started and is a {now} now"
    branches = (row.shape or {}).get("branches", {}).get(name)
    if branches and now == "parallel":
        missing = [b for b in branches if wdef.current_name(b) is None]
        if missing:
            return f"branch {missing[0]!r} of group {name!r} is gone"
    return None


def problems(row: ExecutionRow, wdef: WorkflowDef | None) -> list[DeployProblem]:
    """Why the loaded code cannot continue the unfinished execution ``row`` (none: it
    can). ``wdef`` is its workflow in the loaded code (None: not defined there)."""

    def problem(change: str) -> DeployProblem:
        return DeployProblem(row.id, row.workflow, row.step_name, change)

    if wdef is None:
        return [problem(f"workflow {row.workflow!r} is not defined in the loaded code")]
    found = []
    if row.phase == StepPhase.RUN:
        position = position_problem(row, wdef)
        if position is not None:
            found.append(problem(position))
    else:
        # Running its compensations: each recorded compensation must still be there.
        for step, comp in (row.shape or {}).get("compensate", {}).items():
            current = wdef.current_name(step)
            undo = None if current is None else wdef.step(current).undo
            if undo is None or undo.name != comp:
                found.append(problem(f"compensation {comp!r} of step {step!r} is gone"))
    return found
