"""Deploy safety: whether the loaded code can continue an execution in flight, from the
workflow shape the execution recorded when it started and the position it is at."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from durable.dsl import WorkflowDef
from durable.models import FINISHED, StepExecution, StepPhase, StepStatus
from durable.stores.base import ExecutionRow, Store

__all__ = ["DeployProblem", "position_problem", "problems", "unit_probes"]


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
    row: ExecutionRow,
    wdef: WorkflowDef,
    has_units: Callable[[], bool] | None = None,
    open_units: Callable[[], list[str]] | None = None,
) -> str | None:
    """What stops the loaded code from continuing ``row`` (an execution, or a unit of one)
    where it is, or None: its step is gone, or changed kind since its run began; a unit's
    group or branch is gone. ``has_units()`` says whether the current step run forked
    units (it began as a group), asked only when the kind differs from the shape the
    execution recorded (or it recorded none: started before schema version 11).
    ``open_units()`` names the current group run's units that have not ended: a branch
    removed since is a problem only while its unit still has to run (one that ended is
    merged from what it kept). Without them, the recorded shape decides."""
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
    groups = ("parallel", "foreach")
    if was != now:
        # The run may have begun under newer code than the shape recorded at the start
        # (or none was recorded): whether it forked units tells which kind it began as.
        began_as_group = (
            has_units() if has_units is not None else None if was is None else was in groups
        )
        if began_as_group is not None and began_as_group != (now in groups):
            if was is None:
                was = "group" if began_as_group else "step"
            return f"step {name!r} was a {was} when its run began and is a {now} now"
    if now == "parallel":
        if open_units is not None:
            missing = [u for u in open_units() if wdef.current_name(u) is None]
        else:
            recorded = (row.shape or {}).get("branches", {}).get(name) or []
            missing = [b for b in recorded if wdef.current_name(b) is None]
        if missing:
            return f"branch {missing[0]!r} of group {name!r} is gone and its unit has not ended"
    return None


def unit_probes(
    store: Store, row: ExecutionRow
) -> tuple[Callable[[], bool], Callable[[], list[str]]]:
    """``has_units`` and ``open_units`` for ``position_problem``, read from ``store``
    when asked."""
    name = row.step_name or ""

    def has_units() -> bool:
        return bool(store.unit_outcomes(row.id, name, row.visit, limit=1))

    def open_units() -> list[str]:
        units = store.each_unit_outcome(row.id, name, row.visit)
        return [u.name for u in units if u.status not in FINISHED]

    return has_units, open_units


def problems(
    row: ExecutionRow,
    wdef: WorkflowDef | None,
    records: list[StepExecution] | None = None,
    has_units: Callable[[], bool] | None = None,
    open_units: Callable[[], list[str]] | None = None,
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
        position = position_problem(row, wdef, has_units, open_units)
        if position is not None:
            found.append(problem(position))
    else:
        # Running its compensations: each completed step that declared one when the
        # execution started must still declare one (under any name: a compensation may be
        # renamed), whatever the step is called now.
        declared = {
            wdef.current_name(step) or step: comp
            for step, comp in (row.shape or {}).get("compensate", {}).items()
        }
        seen: set[str] = set()
        for r in records or []:
            if r.phase != StepPhase.RUN or r.status != StepStatus.COMPLETED:
                continue
            current = wdef.current_name(r.name)
            key = current or r.name
            if key in seen or key not in declared:
                continue
            seen.add(key)
            undo = None if current is None else wdef.step(current).undo
            if undo is None:
                found.append(problem(f"compensation {declared[key]!r} of step {r.name!r} is gone"))
    return found
