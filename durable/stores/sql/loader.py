"""The SQL statements of each dialect, read once from ``queries/<dialect>.sql``.

A file is a list of named blocks::

    -- name: get
    -- One execution by id.
    SELECT * FROM durable_executions WHERE id = :id;

A block holds one statement, several (each ending with ``;`` at the end of a line, run in
order), or none where a dialect has nothing to do (SQLite has no server clock). Whole-line
``--`` comments and indentation are left out of the statements. Every dialect defines
exactly the names in ``NAMES``: a missing or unknown block is an error when the file
is loaded.
"""

from __future__ import annotations

import re
from importlib import resources

__all__ = ["NAMES", "Queries", "QueryFileError", "from_text", "load", "parse"]

#: every block a dialect file defines (and the store uses)
NAMES = frozenset(
    {
        # the plans of workflows in use (rolling deploys)
        "plan_note",
        "plan_get",
        # schedules (cron)
        "schedule_put",
        "schedule_get",
        "schedule_list",
        "schedule_delete",
        "schedule_pause",
        "schedule_next_tick",
        "schedules_due",
        "schedule_latest",
        "schedule_latest_by_id",
        "schedule_advance",
        "schedules_advance",
        "schedule_runs_insert",
        "schedule_fired",
        "schedule_release",
        "release_buffered",
        "wake_compensating",
        # schema and clock
        "has_migrations",
        "schema_version",
        "server_time",
        "notify",
        "listen",
        "notify_done",
        "notify_cancel",
        "cancel_requested_among",
        # starting and reading
        "create",
        "by_key",
        "get",
        "get_for_update",
        "live",
        "steps",
        "own_steps",
        "list",
        "list_by_status",
        "list_by_statuses",
        "list_by_workflow",
        "list_by_workflow_status",
        "list_by_queue",
        "list_children",
        "list_compensating",
        "next_due",
        # claims and transitions
        "claim",
        "set_deadline",
        "heartbeat",
        "insert_attempt",
        "complete_next",
        "finish_run",
        "finish_alone",
        "retry",
        "restart",
        "end",
        "release",
        "suspend",
        "wake",
        "compensate",
        "cancel_compensate",
        "retry_execution",
        "cancel",
        # waits and events
        "wait_get",
        "wait_insert",
        "wait_renew",
        "wait_set",
        "wait_suspended_on",
        "waits_pending",
        "waits_all",
        "waits_of",
        "waits_recent",
        "inbox",
        "consume",
        "event_insert",
        # units and children
        "unit_insert",
        "fork_wait",
        "units",
        "unit_outcomes",
        "unit_states",
        "ended_row",
        "group_counts_insert",
        "shard_count_down",
        "group_count_down",
        "group_activate",
        "group_parked",
        "group_activate_wait",
        "cancel_units",
        "live_children",
        "waiting_units",
        "child_wait",
        "units_of",
        # retention
        "purge_pick",
        "purge",
    }
)

_HEADER = re.compile(r"--\s*name:\s*(\S+)\s*$")
_END = re.compile(r";\s*$", re.MULTILINE)


class QueryFileError(Exception):
    """A query file that does not define exactly the blocks the store needs."""


class Queries:
    """The named statements of one dialect.

    ``queries[name]`` is the statement of a one-statement block; ``steps`` gives every
    statement of a block (none, one or several).
    """

    def __init__(self, source: str, blocks: dict[str, tuple[str, ...]]) -> None:
        self.source = source
        self._steps = blocks
        self._one = {name: sql[0] for name, sql in blocks.items() if len(sql) == 1}

    def __getitem__(self, name: str) -> str:
        try:
            return self._one[name]
        except KeyError:
            if name in self._steps:
                raise KeyError(f"{self.source}: block {name!r} is not one statement") from None
            raise KeyError(f"{self.source}: no block {name!r}") from None

    def steps(self, name: str) -> tuple[str, ...]:
        """The statements of block ``name``, in order."""
        try:
            return self._steps[name]
        except KeyError:
            raise KeyError(f"{self.source}: no block {name!r}") from None

    def names(self) -> frozenset[str]:
        """The names of the blocks."""
        return frozenset(self._steps)


def parse(text: str, source: str = "<sql>") -> dict[str, tuple[str, ...]]:
    """The blocks of a query file: name -> its statements."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line.strip())
        if header:
            name = header.group(1)
            if name in blocks:
                raise QueryFileError(f"{source}:{number}: block {name!r} is defined twice")
            current = blocks[name] = []
        elif line.strip().startswith("--") or not line.strip():
            continue
        elif current is None:
            raise QueryFileError(f"{source}:{number}: SQL before the first '-- name:' header")
        else:
            # without its indentation: statements stay short enough for the driver to
            # cache their parsing (psycopg: under 4 KiB)
            current.append(line.strip())
    out = {}
    for name, lines in blocks.items():
        body = "\n".join(lines)
        if body and not body.endswith(";"):
            raise QueryFileError(f"{source}: block {name!r} does not end with ';'")
        out[name] = tuple(s.strip() for s in _END.split(body) if s.strip())
    return out


def from_text(text: str, source: str) -> Queries:
    """The statements of a query file's text, which must define exactly NAMES."""
    blocks = parse(text, source)
    missing = sorted(NAMES - blocks.keys())
    if missing:
        raise QueryFileError(f"{source} has no block named {', '.join(missing)}")
    unknown = sorted(blocks.keys() - NAMES)
    if unknown:
        raise QueryFileError(f"{source} has blocks the store does not use: {', '.join(unknown)}")
    return Queries(source, blocks)


def load(dialect: str) -> Queries:
    """The statements of ``dialect`` (``sqlite`` or ``postgres``), from the package."""
    source = f"{dialect}.sql"
    path = resources.files("durable.stores.sql").joinpath("queries", source)
    return from_text(path.read_text(encoding="utf-8"), source)
