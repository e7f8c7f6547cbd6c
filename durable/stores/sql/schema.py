"""The current schema (what every migration together produces) and its column types."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

__all__ = [
    "GROUP_SHARDS",
    "SCHEMA_VERSION",
    "UTCDateTime",
    "attempts",
    "events",
    "executions",
    "group_counts",
    "metadata",
    "migrations",
    "waits",
]

SCHEMA_VERSION = 17

#: how many rows hold a group's count of open units (v8): a unit counts in the row
#: ``unit_index % GROUP_SHARDS``. Fixed, as stored counts depend on it.
GROUP_SHARDS = 64


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in; aware UTC datetimes out, on every dialect.

    SQLite keeps fixed-width ISO text (so comparisons in SQL order correctly); PostgreSQL
    keeps ``timestamptz``.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the store; use aware UTC")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

executions = sa.Table(
    "durable_executions",
    metadata,
    sa.Column("seq", BigInt, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("workflow", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("queue", sa.String(200), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("input", sa.Text, nullable=False),
    sa.Column("context", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("scheduled_at", UTCDateTime, nullable=False),
    sa.Column("run_at", UTCDateTime),
    sa.Column("timeout_ms", BigInt),
    sa.Column("idempotency_key", sa.String(500), unique=True),
    sa.Column("started_at", UTCDateTime),
    sa.Column("completed_at", UTCDateTime),
    sa.Column("deadline", UTCDateTime),
    sa.Column("step_index", sa.Integer, nullable=False),
    sa.Column("step_name", sa.String(200)),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("attempt_started_at", UTCDateTime),
    sa.Column("error", sa.Text),
    sa.Column("token", BigInt, nullable=False),
    sa.Column("worker_id", sa.String(200)),
    sa.Column("lease_expires_at", UTCDateTime),
    sa.Column("cancel_requested", sa.Boolean, nullable=False),
    sa.Column("cancel_reason", sa.Text),
    # v2: when the row next becomes claimable (run_at if pending, lease expiry if running,
    # NULL once finished); the partial index on it holds only live rows.
    sa.Column("claimable_at", UTCDateTime),
    # v3: the current step was suspended by a wait; the next claim resumes its attempt
    sa.Column("suspended", sa.Boolean, nullable=False, server_default=sa.false()),
    # v5: the write id of the last fenced transition (a retried commit recognises itself),
    # the attempts of the current step run lost with their worker, and its retry budget
    sa.Column("last_write", sa.String(64)),
    sa.Column("lost_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="1"),
    # v6: the journal key of the current step run is (id, step_name, step_visit); visits
    # holds the latest visit of every step reached (JSON object; NULL: none left yet)
    sa.Column("step_visit", sa.Integer, nullable=False, server_default="1"),
    sa.Column("visits", sa.Text),
    # v7: units (a parallel group's branches, a foreach's items) and child workflows.
    # parent_id: the execution that started a child, or that a unit is part of; unit: the
    # unit's name ("group.step", "step[i]"); group_step/group_visit: the step run a unit
    # belongs to; item, result: a unit's item and what it gave back (JSON); open_units:
    # while an execution waits at a group, how many of the group's count rows
    # (group_counts, v8) still count open units
    sa.Column("parent_id", sa.String(64)),
    sa.Column("unit", sa.String(200)),
    sa.Column("group_step", sa.String(200)),
    sa.Column("group_visit", sa.Integer, nullable=False, server_default="0"),
    sa.Column("unit_index", sa.Integer, nullable=False, server_default="0"),
    sa.Column("stops_group", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("item", sa.Text),
    sa.Column("result", sa.Text),
    sa.Column("open_units", sa.Integer, nullable=False, server_default="0"),
    # v9: what the execution runs: its flow ("run") or, after it failed or was cancelled,
    # the compensations of its completed steps ("compensate": its status reads compensating
    # until it ends)
    sa.Column("phase", sa.String(20), nullable=False, server_default="run"),
    # v10: an execution made by engine.fork: where it came from and the context it started
    # with (JSON: {"forked_from", "step", "context"})
    sa.Column("origin", sa.Text),
    # v11: the workflow's shape when the execution started (JSON: its steps and kinds,
    # branches and compensations), which a deploy check compares with the code
    sa.Column("shape", sa.Text),
    # v13: the string headers plugins stored with the execution when it was created (JSON
    # object, e.g. a W3C traceparent; NULL: none), shared by its units
    sa.Column("headers", sa.Text),
    # v14: a child workflow's step run in its parent that started it (the step's name, a
    # unit's own: "group.step", "step[i]"; NULL: not a child, or started before v14)
    sa.Column("parent_step", sa.Text),
)

sa.Index(
    "durable_executions_claim",
    executions.c.claimable_at,
    postgresql_where=executions.c.claimable_at.isnot(None),
    sqlite_where=executions.c.claimable_at.isnot(None),
)
# listings (v8: of executions only; a unit's row, updated several times in its short
# life, costs no entry in them)
_listed = executions.c.unit.is_(None)
sa.Index(
    "durable_executions_created",
    executions.c.created_at,
    executions.c.seq,
    postgresql_where=_listed,
    sqlite_where=_listed,
)
# an execution's children and units: a group's units in order, parked ones first found
sa.Index(
    "durable_executions_parent",
    executions.c.parent_id,
    executions.c.group_step,
    executions.c.group_visit,
    executions.c.unit_index,
    postgresql_where=executions.c.parent_id.isnot(None),
    sqlite_where=executions.c.parent_id.isnot(None),
)
# v8: a group's parked units (beyond a foreach's concurrency), the lowest index first
_parked = sa.and_(
    executions.c.unit.isnot(None),
    executions.c.status == sa.literal_column("'pending'"),
    executions.c.claimable_at.is_(None),
)
sa.Index(
    "durable_executions_parked",
    executions.c.parent_id,
    executions.c.group_step,
    executions.c.group_visit,
    executions.c.unit_index,
    postgresql_where=_parked,
    sqlite_where=_parked,
)
# an execution's units suspended on a wait (an event sent to the execution may be theirs)
_waiting_unit = sa.and_(
    executions.c.unit.isnot(None), executions.c.status == sa.literal_column("'waiting'")
)
sa.Index(
    "durable_executions_waiting_units",
    executions.c.parent_id,
    executions.c.seq,
    postgresql_where=_waiting_unit,
    sqlite_where=_waiting_unit,
)
sa.Index(
    "durable_executions_status_created",
    executions.c.status,
    executions.c.created_at,
    executions.c.seq,
    postgresql_where=_listed,
    sqlite_where=_listed,
)
# v9: executions running their compensations (rare: listed by status "compensating")
_compensating = sa.and_(
    executions.c.phase == sa.literal_column("'compensate'"),
    executions.c.completed_at.is_(None),
    executions.c.unit.is_(None),
)
sa.Index(
    "durable_executions_compensating",
    executions.c.created_at,
    executions.c.seq,
    postgresql_where=_compensating,
    sqlite_where=_compensating,
)
sa.Index(
    "durable_executions_workflow_created",
    executions.c.workflow,
    executions.c.created_at,
    executions.c.seq,
    postgresql_where=_listed,
    sqlite_where=_listed,
)
# v15: one workflow's executions of one status (either index alone walks all of the
# other's rows when the pair is rare: a rare workflow's completed executions)
sa.Index(
    "durable_executions_workflow_status_created",
    executions.c.workflow,
    executions.c.status,
    executions.c.created_at,
    executions.c.seq,
    postgresql_where=_listed,
    sqlite_where=_listed,
)
# v16: one queue's executions, newest first (a queue filter walked the created index,
# all of it for a queue nothing is on)
sa.Index(
    "durable_executions_queue_created",
    executions.c.queue,
    executions.c.created_at,
    executions.c.seq,
    postgresql_where=_listed,
    sqlite_where=_listed,
)
# v15: an execution's child workflows, newest first (not its units: the parent index
# would walk all of a foreach's items to find none)
_child = sa.and_(executions.c.parent_id.isnot(None), executions.c.unit.is_(None))
sa.Index(
    "durable_executions_children",
    executions.c.parent_id,
    executions.c.created_at,
    executions.c.seq,
    postgresql_where=_child,
    sqlite_where=_child,
)

attempts = sa.Table(
    "durable_step_attempts",
    metadata,
    sa.Column("seq", BigInt, primary_key=True, autoincrement=True),
    sa.Column("execution_id", sa.String(64), nullable=False, index=True),
    sa.Column("step_index", sa.Integer, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("completed_at", UTCDateTime),
    sa.Column("error", sa.Text),
    sa.Column("logs", sa.Text, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("retry_at", UTCDateTime),
    sa.Column("result", sa.Text),  # v5: what a completed attempt returned (JSON)
    # v6: the step run (visit) the attempt belongs to, and what it ran for
    sa.Column("visit", sa.Integer, nullable=False, server_default="1"),
    sa.Column("phase", sa.String(20), nullable=False, server_default="run"),
    # v9: a compensation's attempt: the step run it undoes ("charge", "enrich.credit")
    sa.Column("compensates", sa.String(200)),
    # v10: what a completed step run changed in the context (JSON: {"set", "deleted"})
    sa.Column("changes", sa.Text),
)

# v4: finished executions by when they finished, for retention (live rows are not in it;
# v8: nor units, purged with their execution)
_finished = sa.and_(executions.c.completed_at.isnot(None), executions.c.unit.is_(None))
sa.Index(
    "durable_executions_finished",
    executions.c.completed_at,
    executions.c.seq,
    postgresql_where=_finished,
    sqlite_where=_finished,
)

# v3: every wait a step reached, by position in the step run (its result is memoised there)
waits = sa.Table(
    "durable_waits",
    metadata,
    sa.Column("seq", BigInt, primary_key=True, autoincrement=True),
    sa.Column("execution_id", sa.String(64), nullable=False),
    sa.Column("step", sa.String(200), nullable=False),
    sa.Column("wait_seq", sa.Integer, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("names", sa.Text, nullable=False),
    sa.Column("mode", sa.String(10), nullable=False),
    sa.Column("until_at", UTCDateTime),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("prompt", sa.Text),
    sa.Column("input_schema", sa.Text),
    sa.Column("result", sa.Text),
    sa.Column("resolved_at", UTCDateTime),
    # v6: waits are placed by step run: (execution, step, visit, position)
    sa.Column("visit", sa.Integer, nullable=False, server_default="1"),
    # v15: a unit's wait: the execution the unit is part of (NULL: an execution's own
    # wait), so an execution's waits and its units' are two index lookups
    sa.Column("parent_id", sa.String(64)),
    sa.UniqueConstraint("execution_id", "step", "visit", "wait_seq", name="durable_waits_position"),
)
sa.Index("durable_waits_status", waits.c.status, waits.c.kind, waits.c.created_at)
_unit_wait = waits.c.parent_id.isnot(None)
sa.Index(
    "durable_waits_parent",
    waits.c.parent_id,
    postgresql_where=_unit_wait,
    sqlite_where=_unit_wait,
)

# v3: events sent to executions, kept until a wait consumes them
events = sa.Table(
    "durable_events",
    metadata,
    sa.Column("seq", BigInt, primary_key=True, autoincrement=True),
    sa.Column("execution_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("sent_at", UTCDateTime, nullable=False),
    sa.Column("consumed_at", UTCDateTime),
)
sa.Index("durable_events_execution", events.c.execution_id, events.c.seq)

# v8: a group run's count of open units, split over up to GROUP_SHARDS rows so that
# units ending at the same time update different rows; only the end that empties a row
# touches the execution's (its open_units), and the last of those resumes it
group_counts = sa.Table(
    "durable_group_counts",
    metadata,
    sa.Column("parent_id", sa.String(64), primary_key=True),
    sa.Column("group_step", sa.String(200), primary_key=True),
    sa.Column("group_visit", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("open_units", sa.Integer, nullable=False),
)

# v12: cron schedules; next_tick is the next tick to fire (a fire applies only if it is
# still the one read, so each tick fires once whatever the number of workers)
schedules = sa.Table(
    "durable_schedules",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("workflow", sa.String(200), nullable=False),
    sa.Column("cron", sa.String(200), nullable=False),
    sa.Column("timezone", sa.String(100), nullable=False),
    sa.Column("input", sa.Text, nullable=False),
    sa.Column("catch_up", sa.String(20), nullable=False),
    sa.Column("overlap", sa.String(20), nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False),
    sa.Column("declared", sa.Boolean, nullable=False),
    sa.Column("next_tick", UTCDateTime, nullable=False),
    sa.Column("last_tick", UTCDateTime),
    sa.Column("last_execution_id", sa.String(64)),
    sa.Column("buffered_id", sa.String(64)),
    sa.Column("missed", BigInt, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)
sa.Index("durable_schedules_due", schedules.c.next_tick, schedules.c.name)

plans = sa.Table(
    "durable_plans",
    metadata,
    sa.Column("workflow", sa.String(200), primary_key=True),
    sa.Column("plan", sa.String(64), primary_key=True),
    sa.Column("process", sa.String(255), primary_key=True),
    sa.Column("worker", sa.Boolean, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
)

migrations = sa.Table(
    "durable_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)
