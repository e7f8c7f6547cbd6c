"""Versioned schema migrations, applied in order, each in its own transaction.

A migration is history: it never changes once released. Each builds the tables as they were
at its version, so ``schema.py`` (the current shape) can move on without rewriting the past;
a test checks that applying every migration gives exactly ``schema.py``'s tables.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa

from durable.errors import StoreError
from durable.stores.sql.schema import BigInt, UTCDateTime
from durable.stores.sql.schema import migrations as migrations_table

__all__ = ["MIGRATIONS", "applied_version", "upgrade"]


def _v1_initial(conn: sa.Connection) -> None:
    """Executions, step attempts, and the basic lookups."""
    md = sa.MetaData()
    sa.Table(
        "durable_executions",
        md,
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
    )
    sa.Table(
        "durable_step_attempts",
        md,
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
    )
    md.create_all(conn)


def _v2_claim_index(conn: sa.Connection) -> None:
    """``claimable_at`` with a partial index of live rows, and listing indexes, so claims
    and listings cost the same however many finished executions the table holds."""
    ex = sa.table(
        "durable_executions",
        sa.column("status"),
        sa.column("run_at"),
        sa.column("lease_expires_at"),
        sa.column("claimable_at"),
    )
    conn.execute(
        sa.text(
            "ALTER TABLE durable_executions ADD COLUMN claimable_at "
            + UTCDateTime().compile(dialect=conn.dialect)
        )
    )
    conn.execute(
        sa.update(ex).values(
            claimable_at=sa.case(
                (ex.c.status == "pending", ex.c.run_at),
                (ex.c.status == "running", ex.c.lease_expires_at),
                else_=None,
            )
        )
    )
    md = sa.MetaData()
    t = sa.Table(
        "durable_executions",
        md,
        sa.Column("seq", BigInt),
        sa.Column("workflow", sa.String(200)),
        sa.Column("status", sa.String(20)),
        sa.Column("created_at", UTCDateTime),
        sa.Column("claimable_at", UTCDateTime),
    )
    indexes = [
        sa.Index(
            "durable_executions_claim",
            t.c.claimable_at,
            postgresql_where=t.c.claimable_at.isnot(None),
            sqlite_where=t.c.claimable_at.isnot(None),
        ),
        sa.Index("durable_executions_created", t.c.created_at, t.c.seq),
        sa.Index("durable_executions_status_created", t.c.status, t.c.created_at, t.c.seq),
        sa.Index("durable_executions_workflow_created", t.c.workflow, t.c.created_at, t.c.seq),
    ]
    for index in indexes:
        index.create(conn)


def _v3_waits(conn: sa.Connection) -> None:
    """Waits: the suspended flag, the waits steps reached, and the events inbox."""
    false = "FALSE" if conn.dialect.name == "postgresql" else "0"
    conn.execute(
        sa.text(
            f"ALTER TABLE durable_executions ADD COLUMN suspended BOOLEAN NOT NULL DEFAULT {false}"
        )
    )
    md = sa.MetaData()
    waits = sa.Table(
        "durable_waits",
        md,
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
        sa.UniqueConstraint("execution_id", "step", "wait_seq", name="durable_waits_position"),
    )
    sa.Index("durable_waits_status", waits.c.status, waits.c.kind, waits.c.created_at)
    events = sa.Table(
        "durable_events",
        md,
        sa.Column("seq", BigInt, primary_key=True, autoincrement=True),
        sa.Column("execution_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("sent_at", UTCDateTime, nullable=False),
        sa.Column("consumed_at", UTCDateTime),
    )
    sa.Index("durable_events_execution", events.c.execution_id, events.c.seq)
    md.create_all(conn)


def _v4_finished_index(conn: sa.Connection) -> None:
    """Retention: finished executions by completion time (a partial index: no live rows)."""
    md = sa.MetaData()
    t = sa.Table(
        "durable_executions",
        md,
        sa.Column("seq", BigInt),
        sa.Column("completed_at", UTCDateTime),
    )
    sa.Index(
        "durable_executions_finished",
        t.c.completed_at,
        t.c.seq,
        postgresql_where=t.c.completed_at.isnot(None),
        sqlite_where=t.c.completed_at.isnot(None),
    ).create(conn)


def _v5_write_ids(conn: sa.Connection) -> None:
    """Commits that recognise themselves when retried, lost attempts counted per step run,
    the retry budget of the current step, and each attempt's return value."""
    for column in (
        "last_write VARCHAR(64)",
        "lost_attempts INTEGER NOT NULL DEFAULT 0",
        "max_attempts INTEGER NOT NULL DEFAULT 1",
    ):
        conn.execute(sa.text(f"ALTER TABLE durable_executions ADD COLUMN {column}"))
    conn.execute(sa.text("ALTER TABLE durable_step_attempts ADD COLUMN result TEXT"))
    # Executions in flight: the budget of their current step, as its last attempt recorded
    # it (a step with no attempt recorded yet keeps 1 until its next record or step).
    conn.execute(
        sa.text(
            "UPDATE durable_executions SET max_attempts = (SELECT a.max_attempts "
            "FROM durable_step_attempts a WHERE a.execution_id = durable_executions.id "
            "AND a.name = durable_executions.step_name ORDER BY a.seq DESC LIMIT 1) "
            "WHERE completed_at IS NULL AND EXISTS (SELECT 1 FROM durable_step_attempts a "
            "WHERE a.execution_id = durable_executions.id "
            "AND a.name = durable_executions.step_name)"
        )
    )


def _v6_journal_key(conn: sa.Connection) -> None:
    """The journal key: each step run is (execution, step, visit). The row's pointer,
    every attempt and every wait carry the visit (1 for all that exists: no loops yet),
    the row keeps the latest visit of each step reached, attempts their phase, and waits
    are unique per visit, so a step reached again never finds an earlier visit's waits."""
    for table, column in (
        ("durable_executions", "step_visit INTEGER NOT NULL DEFAULT 1"),
        ("durable_executions", "visits TEXT"),
        ("durable_step_attempts", "visit INTEGER NOT NULL DEFAULT 1"),
        ("durable_step_attempts", "phase VARCHAR(20) NOT NULL DEFAULT 'run'"),
    ):
        conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column}"))
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("ALTER TABLE durable_waits ADD COLUMN visit INTEGER NOT NULL DEFAULT 1")
        )
        conn.execute(sa.text("ALTER TABLE durable_waits DROP CONSTRAINT durable_waits_position"))
        conn.execute(
            sa.text(
                "ALTER TABLE durable_waits ADD CONSTRAINT durable_waits_position "
                "UNIQUE (execution_id, step, visit, wait_seq)"
            )
        )
        return
    # SQLite cannot drop a table's constraint: rebuild the table under the new key.
    md = sa.MetaData()
    new = sa.Table(
        "durable_waits_v6",
        md,
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
        sa.Column("visit", sa.Integer, nullable=False, server_default="1"),
        sa.UniqueConstraint(
            "execution_id", "step", "visit", "wait_seq", name="durable_waits_position"
        ),
    )
    new.create(conn)
    kept = ", ".join(c.name for c in new.columns if c.name != "visit")
    conn.execute(
        sa.text(f"INSERT INTO durable_waits_v6 ({kept}, visit) SELECT {kept}, 1 FROM durable_waits")
    )
    conn.execute(sa.text("DROP TABLE durable_waits"))
    conn.execute(sa.text("ALTER TABLE durable_waits_v6 RENAME TO durable_waits"))
    conn.execute(
        sa.text("CREATE INDEX durable_waits_status ON durable_waits (status, kind, created_at)")
    )


def _v7_units_and_children(conn: sa.Connection) -> None:
    """Units (parallel branches, foreach items) and child workflows: rows that belong to
    an execution (parent_id), the unit's name and place, what it gave back, and the count
    of units an execution waits for. Nothing existing is a unit or a child."""
    false = "FALSE" if conn.dialect.name == "postgresql" else "0"
    for column in (
        "parent_id VARCHAR(64)",
        "unit VARCHAR(200)",
        "group_step VARCHAR(200)",
        "group_visit INTEGER NOT NULL DEFAULT 0",
        "unit_index INTEGER NOT NULL DEFAULT 0",
        f"stops_group BOOLEAN NOT NULL DEFAULT {false}",
        "item TEXT",
        "result TEXT",
        "open_units INTEGER NOT NULL DEFAULT 0",
        "next_unit INTEGER NOT NULL DEFAULT 0",
    ):
        conn.execute(sa.text(f"ALTER TABLE durable_executions ADD COLUMN {column}"))
    conn.execute(
        sa.text(
            "CREATE INDEX durable_executions_parent ON durable_executions "
            "(parent_id, group_step, group_visit, unit_index) WHERE parent_id IS NOT NULL"
        )
    )
    # An event sent to an execution looks for its units suspended on a wait.
    conn.execute(
        sa.text(
            "CREATE INDEX durable_executions_waiting_units ON durable_executions "
            "(parent_id, seq) WHERE unit IS NOT NULL AND status = 'waiting'"
        )
    )


def _v8_group_counts(conn: sa.Connection) -> None:
    """A group's count of open units split over up to 64 rows (units ending at the same
    time no longer all wait for their execution's row), an index of parked units (the
    next one let in is the lowest parked), no next_unit, and listing indexes without
    units. Groups in flight are counted from their unfinished units."""
    sa.Table(
        "durable_group_counts",
        sa.MetaData(),
        sa.Column("parent_id", sa.String(64), primary_key=True),
        sa.Column("group_step", sa.String(200), primary_key=True),
        sa.Column("group_visit", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("open_units", sa.Integer, nullable=False),
    ).create(conn)
    conn.execute(
        sa.text(
            "CREATE INDEX durable_executions_parked ON durable_executions "
            "(parent_id, group_step, group_visit, unit_index) "
            "WHERE unit IS NOT NULL AND status = 'pending' AND claimable_at IS NULL"
        )
    )
    # The groups executions wait at now: their unfinished units, counted by shard (64 is
    # the store's GROUP_SHARDS, fixed at this version).
    conn.execute(
        sa.text(
            "INSERT INTO durable_group_counts "
            "(parent_id, group_step, group_visit, shard, open_units) "
            "SELECT u.parent_id, u.group_step, u.group_visit, u.unit_index % 64, count(*) "
            "FROM durable_executions u JOIN durable_executions p ON p.id = u.parent_id "
            "WHERE u.unit IS NOT NULL AND u.status IN ('pending', 'running', 'waiting') "
            "AND p.status = 'waiting' AND p.step_name = u.group_step "
            "AND p.step_visit = u.group_visit "
            "GROUP BY u.parent_id, u.group_step, u.group_visit, u.unit_index % 64"
        )
    )
    conn.execute(
        sa.text(
            "UPDATE durable_executions SET open_units = ("
            "SELECT count(*) FROM durable_group_counts c WHERE c.parent_id = "
            "durable_executions.id AND c.group_step = durable_executions.step_name "
            "AND c.group_visit = durable_executions.step_visit) "
            "WHERE open_units > 0"
        )
    )
    conn.execute(sa.text("ALTER TABLE durable_executions DROP COLUMN next_unit"))
    # Listings and retention skip units (filtered out there already): a unit's row, updated
    # several times in its short life, no longer adds entries to those indexes.
    for name, columns, where in (
        ("durable_executions_created", "created_at, seq", "unit IS NULL"),
        ("durable_executions_status_created", "status, created_at, seq", "unit IS NULL"),
        ("durable_executions_workflow_created", "workflow, created_at, seq", "unit IS NULL"),
        (
            "durable_executions_finished",
            "completed_at, seq",
            "completed_at IS NOT NULL AND unit IS NULL",
        ),
    ):
        conn.execute(sa.text(f"DROP INDEX {name}"))
        conn.execute(
            sa.text(f"CREATE INDEX {name} ON durable_executions ({columns}) WHERE {where}")
        )


def _v9_sagas(conn: sa.Connection) -> None:
    """Sagas: an execution's phase (its flow, or its compensations after a failure or a
    cancel), the step run a compensation's attempt undoes, and an index of the executions
    compensating."""
    for table, column in (
        ("durable_executions", "phase VARCHAR(20) NOT NULL DEFAULT 'run'"),
        ("durable_step_attempts", "compensates VARCHAR(200)"),
    ):
        conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column}"))
    conn.execute(
        sa.text(
            "CREATE INDEX durable_executions_compensating ON durable_executions "
            "(created_at, seq) "
            "WHERE phase = 'compensate' AND completed_at IS NULL AND unit IS NULL"
        )
    )


def _v10_step_changes(conn: sa.Connection) -> None:
    """What each completed step run changed in the context (so a fork or a retry from an
    earlier step rebuilds the context before it), and where a forked execution came from.
    Runs recorded before this version have none: a rebuild that needs them says so."""
    for table, column in (
        ("durable_step_attempts", "changes TEXT"),
        ("durable_executions", "origin TEXT"),
    ):
        conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column}"))


def _v11_shapes(conn: sa.Connection) -> None:
    """Each execution's workflow shape at start (for engine.check_deploy). Executions that
    started before this version have none: the check compares what it can without it."""
    conn.execute(sa.text("ALTER TABLE durable_executions ADD COLUMN shape TEXT"))


def _v12_schedules(conn: sa.Connection) -> None:
    """Cron schedules (an execution a schedule started names it in its origin)."""
    md = sa.MetaData()
    table = sa.Table(
        "durable_schedules",
        md,
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
    sa.Index("durable_schedules_due", table.c.next_tick, table.c.name)
    md.create_all(conn)


def _v13_headers(conn: sa.Connection) -> None:
    """The headers plugins store with an execution when it is created (a trace context,
    so its spans join the trace that started it). Executions made before have none."""
    conn.execute(sa.text("ALTER TABLE durable_executions ADD COLUMN headers TEXT"))


def _v14_parent_step(conn: sa.Connection) -> None:
    """A child workflow's step run in its parent that started it (the graph joins them by
    it). Children started before have none."""
    conn.execute(sa.text("ALTER TABLE durable_executions ADD COLUMN parent_step TEXT"))


def _v15_dashboard_lookups(conn: sa.Connection) -> None:
    """Lookups the dashboard makes, each by an index whatever the table holds: one
    workflow's executions of one status, newest first; an execution's child workflows,
    newest first (an index of children only, not units); and its units' waits (each wait
    of a unit names the unit's execution; the waits already there are filled in)."""
    conn.execute(
        sa.text(
            "CREATE INDEX durable_executions_workflow_status_created ON durable_executions "
            "(workflow, status, created_at, seq) WHERE unit IS NULL"
        )
    )
    conn.execute(
        sa.text(
            "CREATE INDEX durable_executions_children ON durable_executions "
            "(parent_id, created_at, seq) WHERE parent_id IS NOT NULL AND unit IS NULL"
        )
    )
    conn.execute(sa.text("ALTER TABLE durable_waits ADD COLUMN parent_id VARCHAR(64)"))
    conn.execute(
        sa.text(
            "UPDATE durable_waits SET parent_id = (SELECT e.parent_id FROM durable_executions e "
            "WHERE e.id = durable_waits.execution_id) "
            "WHERE execution_id IN (SELECT id FROM durable_executions WHERE unit IS NOT NULL)"
        )
    )
    conn.execute(
        sa.text(
            "CREATE INDEX durable_waits_parent ON durable_waits (parent_id) "
            "WHERE parent_id IS NOT NULL"
        )
    )
    if conn.dialect.name == "postgresql":
        # Statistics of the new column now (mostly NULL): without them the planner guesses
        # that an execution's waits are many and scans the table instead of the indexes.
        conn.execute(sa.text("ANALYZE durable_waits"))


def _v16_queue_index(conn: sa.Connection) -> None:
    """One queue's executions, newest first, by an index: a queue filter walked the
    created index, all of it for a queue that nothing is on (the dashboard's queue box)."""
    conn.execute(
        sa.text(
            "CREATE INDEX durable_executions_queue_created ON durable_executions "
            "(queue, created_at, seq) WHERE unit IS NULL"
        )
    )


def _v17_plans(conn: sa.Connection) -> None:
    """The plans (shape fingerprints) of each workflow's code that each process runs,
    and when it last said so, whether the process is a worker: while a worker with the
    code that started an execution is alive, other code hands the execution back to it
    (a rolling deploy) rather than walk its own steps (and skip those it lacks)."""
    md = sa.MetaData()
    table = sa.Table(
        "durable_plans",
        md,
        sa.Column("workflow", sa.String(200), primary_key=True),
        sa.Column("plan", sa.String(64), primary_key=True),
        sa.Column("process", sa.String(255), primary_key=True),
        sa.Column("worker", sa.Boolean, nullable=False),
        sa.Column("last_seen_at", UTCDateTime, nullable=False),
    )
    table.create(conn)


MIGRATIONS: list[tuple[int, str, Callable[[sa.Connection], None]]] = [
    (1, "initial", _v1_initial),
    (2, "claim_index", _v2_claim_index),
    (3, "waits", _v3_waits),
    (4, "finished_index", _v4_finished_index),
    (5, "write_ids", _v5_write_ids),
    (6, "journal_key", _v6_journal_key),
    (7, "units_and_children", _v7_units_and_children),
    (8, "group_counts", _v8_group_counts),
    (9, "sagas", _v9_sagas),
    (10, "step_changes", _v10_step_changes),
    (11, "shapes", _v11_shapes),
    (12, "schedules", _v12_schedules),
    (13, "headers", _v13_headers),
    (14, "parent_step", _v14_parent_step),
    (15, "dashboard_lookups", _v15_dashboard_lookups),
    (16, "queue_index", _v16_queue_index),
    (17, "plans", _v17_plans),
]


def applied_version(engine: sa.Engine) -> int:
    """The highest migration applied to the database (0 for an empty one)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(migrations_table.name):
            return 0
        return conn.execute(sa.select(sa.func.max(migrations_table.c.version))).scalar() or 0


def upgrade(engine: sa.Engine, *, now: datetime, target: int | None = None) -> list[int]:
    """Apply the migrations not yet applied (up to ``target``); return their versions.

    Safe with many processes at once: on PostgreSQL an advisory lock serialises them, on
    SQLite the write lock does.
    """
    done: list[int] = []
    target = MIGRATIONS[-1][0] if target is None else target
    with engine.connect().execution_options(durable_write=True) as conn:
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(727001)"))
            migrations_table.create(conn, checkfirst=True)
            newest = conn.execute(sa.select(sa.func.max(migrations_table.c.version))).scalar()
        if newest is not None and newest > MIGRATIONS[-1][0]:
            raise StoreError(
                f"the database holds schema version {newest}, newer than this durable knows "
                f"({MIGRATIONS[-1][0]}); upgrade durable-engine instead of migrating"
            )
        for version, name, apply in MIGRATIONS:
            if version > target:
                break
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(727001)"))
                have = conn.execute(
                    sa.select(migrations_table.c.version).where(
                        migrations_table.c.version == version
                    )
                ).first()
                if have is not None:
                    continue
                try:
                    apply(conn)
                except sa.exc.DBAPIError as exc:
                    raise StoreError(
                        f"migration {version} ({name}) failed and was rolled back: {exc}"
                    ) from exc
                conn.execute(
                    sa.insert(migrations_table).values(version=version, name=name, applied_at=now)
                )
                done.append(version)
    return done
