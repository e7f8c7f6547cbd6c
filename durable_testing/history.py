"""An execution's history, for assertions that read well when they fail."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, overload

from durable.models import Execution, StepExecution

__all__ = ["Attempt", "History", "StepNames"]


def _offset(at: datetime | None, origin: datetime) -> str:
    if at is None:
        return "-"
    ms = round((at - origin).total_seconds() * 1000)
    return f"+{_fmt_ms(ms)}"


def _fmt_ms(ms: int) -> str:
    if ms < 1000:
        return f"{ms}ms"
    if ms % 1000 == 0 and ms < 60_000:
        return f"{ms // 1000}s"
    return str(timedelta(milliseconds=ms))


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of one step, with times relative to the execution's start.

    ``at`` and ``ended`` are virtual offsets from the execution's ``created_at``;
    ``started_at``/``completed_at`` are the absolute (clock) instants. ``result`` is what a
    completed attempt returned. A ``lost`` run (its worker was lost) is followed by a run
    of the same attempt number. ``visit`` is which visit of the step the attempt belongs to
    (1 unless a loop came back to the step: each visit counts its attempts from 1).
    ``phase`` is ``"compensate"`` for a compensation's attempt (``step`` is then the
    compensation's name and ``compensates`` the step run it undoes), else ``"run"``.
    ``logs`` are the messages the attempt logged; ``stdout``, ``stderr`` and ``output``
    (both, interleaved) what it printed, from its own thread or task and the threads it
    started: of each stream the first and the last 32 KiB (a line marks what was dropped
    between them).
    """

    step: str
    attempt: int
    status: str
    at: timedelta
    ended: timedelta | None
    started_at: datetime
    completed_at: datetime | None
    error_type: str | None
    error_message: str | None
    logs: tuple[str, ...]
    retry_at: timedelta | None
    result: Any = None
    visit: int = 1
    phase: str = "run"
    compensates: str | None = None
    stdout: str = ""
    stderr: str = ""
    output: str = ""

    @property
    def duration(self) -> timedelta | None:
        """Virtual time the attempt took."""
        return None if self.ended is None else self.ended - self.at

    @property
    def failed(self) -> bool:
        """The attempt failed (it counts against the step's retry budget)."""
        return self.status == "failed"

    @property
    def lost(self) -> bool:
        """The run was lost with its worker; the same attempt ran again."""
        return self.status == "lost"

    @classmethod
    def of(cls, record: StepExecution, origin: datetime) -> Attempt:
        error = record.error or {}
        return cls(
            step=record.name,
            attempt=record.attempt,
            status=str(record.status),
            at=record.started_at - origin,
            ended=None if record.completed_at is None else record.completed_at - origin,
            started_at=record.started_at,
            completed_at=record.completed_at,
            error_type=error.get("type"),
            error_message=error.get("message"),
            logs=tuple(str(r.get("message", "")) for r in record.records),
            retry_at=None if record.retry_at is None else record.retry_at - origin,
            result=record.result,
            visit=record.visit,
            phase=str(record.phase),
            compensates=record.compensates,
            stdout=record.stdout,
            stderr=record.stderr,
            output=record.output,
        )


class StepNames(list[str]):
    """A list of step names that remembers the history it came from, so that a failing
    ``assert history.ran == [...]`` prints the whole history (see the pytest plugin)."""

    history: History

    def __init__(self, names: Sequence[str], history: History) -> None:
        super().__init__(names)
        self.history = history


class History(Sequence[Attempt]):
    """Every step attempt of one execution, in the order they started.

    ``ran``: names of the steps that completed, in order; ``tried``: the step name of every
    attempt. ``attempts(step)``: that step's attempts. ``str(history)`` is a table with
    virtual times relative to the execution's start.
    """

    def __init__(self, execution: Execution) -> None:
        if execution.steps is None:
            raise ValueError("History needs get_execution(..., include_steps=True)")
        self.execution = execution
        origin = execution.created_at
        self._attempts = tuple(Attempt.of(r, origin) for r in execution.steps)

    @overload
    def __getitem__(self, index: int) -> Attempt: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Attempt]: ...
    def __getitem__(self, index: int | slice) -> Attempt | Sequence[Attempt]:
        return self._attempts[index]

    def __len__(self) -> int:
        return len(self._attempts)

    def __iter__(self) -> Iterator[Attempt]:
        return iter(self._attempts)

    @property
    def ran(self) -> StepNames:
        """Names of the steps that completed, in order."""
        return StepNames([a.step for a in self._attempts if a.status == "completed"], self)

    @property
    def compensations(self) -> StepNames:
        """Names of the compensations that completed, in the order they ran (newest
        completed step's first)."""
        return StepNames(
            [a.step for a in self._attempts if a.phase == "compensate" and a.status == "completed"],
            self,
        )

    @property
    def tried(self) -> StepNames:
        """The step name of every attempt, in order (a step retried twice appears 3 times)."""
        return StepNames([a.step for a in self._attempts], self)

    def attempts(self, step: str) -> list[Attempt]:
        """The attempts of ``step``, in order."""
        return [a for a in self._attempts if a.step == step]

    @property
    def errors(self) -> list[tuple[str, int, str | None]]:
        """``(step, attempt, error type)`` of every failed attempt."""
        return [(a.step, a.attempt, a.error_type) for a in self._attempts if a.failed]

    @property
    def lost(self) -> list[tuple[str, int]]:
        """``(step, attempt)`` of every run lost with its worker (run again for free)."""
        return [(a.step, a.attempt) for a in self._attempts if a.lost]

    @property
    def finished_after(self) -> timedelta | None:
        """Virtual time from the start to the execution's end (None while it runs)."""
        ex = self.execution
        return None if ex.completed_at is None else ex.completed_at - ex.created_at

    def format(self) -> str:
        """The history as a table (virtual times relative to the execution's start)."""
        ex = self.execution
        origin = ex.created_at
        head = (
            f"execution {ex.id} of {ex.workflow}: {ex.status}"
            + (
                f" after {_fmt_ms(round(self.finished_after.total_seconds() * 1000))}"
                if self.finished_after is not None
                else ""
            )
            + (f", error {ex.error.get('type')}: {ex.error.get('message')}" if ex.error else "")
        )
        lines = [head]
        if not self._attempts:
            lines.append("  (no step attempts)")
        for a in self._attempts:
            line = (
                f"  {_offset(a.started_at, origin):>10} .. {_offset(a.completed_at, origin):<10} "
                f"{a.step}{f' (visit {a.visit})' if a.visit > 1 else ''} #{a.attempt} {a.status}"
            )
            if a.compensates is not None:
                line += f" [compensates {a.compensates}]"
            if a.error_type:
                line += f": {a.error_type}: {a.error_message}"
            if a.retry_at is not None:
                line += f" (retry at +{_fmt_ms(round(a.retry_at.total_seconds() * 1000))})"
            if a.result is not None:
                shown = repr(a.result)
                line += f" -> {shown if len(shown) <= 60 else shown[:57] + '...'}"
            lines.append(line)
            lines.extend(f"      log: {m}" for m in a.logs)
            lines.extend(f"      out: {line}" for line in a.stdout.splitlines())
            lines.extend(f"      err: {line}" for line in a.stderr.splitlines())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()

    def __repr__(self) -> str:
        return f"<History\n{self.format()}\n>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, History):
            return self._attempts == other._attempts
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def explain(value: Any) -> list[str]:
    """Lines that show the history behind ``value``, for pytest's assertion output."""
    history = value.history if isinstance(value, StepNames) else value
    if not isinstance(history, History):
        return []
    return ["", "durable history:", *history.format().splitlines()]
