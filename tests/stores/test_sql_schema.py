"""Migrations: the migrated schema is schema.py's, and upgrades keep the data."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

import durable
from durable.plugins import PluginHost
from durable.stores.sql import migrations
from durable.stores.sql.schema import SCHEMA_VERSION, metadata
from durable.stores.sql.sqlite import open_sqlite

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _open(url: str):
    return PluginHost().make_store(url)


def _predicate(index: dict) -> str | None:
    """A partial index's WHERE, spelled the same however it was written (a partial index
    that lost a term would still be used, and hold rows it should not)."""
    options = index.get("dialect_options", {})
    where = options.get("postgresql_where", options.get("sqlite_where"))
    if where is None:
        return None
    text = str(where).lower().replace("durable_executions.", "").replace("::text", "")
    return "".join(c for c in text if c not in " ()\n")


def _shape(engine: sa.Engine) -> dict:
    insp = sa.inspect(engine)
    shape = {}
    for table in sorted(insp.get_table_names()):
        cols = {
            c["name"]: (str(c["type"]).split("(")[0], c["nullable"])
            for c in insp.get_columns(table)
        }
        indexes = {
            i["name"]: (tuple(i["column_names"]), _predicate(i)) for i in insp.get_indexes(table)
        }
        uniques = sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table))
        shape[table] = (cols, indexes, uniques)
    return shape


def test_migrations_build_exactly_the_current_schema(blank_url, tmp_path):
    store = _open(blank_url)
    assert migrations.applied_version(store.engine) == 0
    assert store.migrate(T0) == list(range(1, SCHEMA_VERSION + 1))
    assert migrations.applied_version(store.engine) == SCHEMA_VERSION
    assert store.migrate(T0) == []  # idempotent

    reference = open_sqlite(f"sqlite:///{tmp_path / 'reference.db'}").engine
    if store.engine.dialect.name == "postgresql":
        reference = sa.create_engine(
            blank_url.replace("durable_blank", "durable_reference").replace(
                "postgresql://", "postgresql+psycopg://"
            )
        )
        import psycopg

        admin = blank_url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS durable_reference_{os.getpid()} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE durable_reference_{os.getpid()}")
    metadata.create_all(reference)
    assert _shape(store.engine) == _shape(reference)
    reference.dispose()
    store.close()


def test_upgrade_from_the_first_version_keeps_and_backfills_data(blank_url):
    store = _open(blank_url)
    migrations.upgrade(store.engine, now=T0, target=1)
    v1 = sa.table(
        "durable_executions",
        *(
            sa.column(c)
            for c in (
                "id",
                "workflow",
                "status",
                "queue",
                "priority",
                "input",
                "context",
                "created_at",
                "scheduled_at",
                "run_at",
                "step_index",
                "step_name",
                "attempt",
                "token",
                "cancel_requested",
                "lease_expires_at",
                "completed_at",
            )
        ),
    )
    base = {
        "workflow": "process_order",
        "queue": "default",
        "priority": 0,
        "input": "{}",
        "context": '{"kept": true}',
        "step_index": 0,
        "step_name": "validate",
        "attempt": 0,
        "token": 0,
        "cancel_requested": False,
        "run_at": None,
        "lease_expires_at": None,
        "completed_at": None,
    }
    iso = (
        (lambda d: d.replace(tzinfo=None))
        if store.engine.dialect.name == "sqlite"
        else (lambda d: d)
    )
    rows = [
        {
            **base,
            "id": "pending-1",
            "status": "pending",
            "created_at": iso(T0),
            "scheduled_at": iso(T0),
            "run_at": iso(T0 + timedelta(minutes=5)),
        },
        {
            **base,
            "id": "running-1",
            "status": "running",
            "created_at": iso(T0),
            "scheduled_at": iso(T0),
            "lease_expires_at": iso(T0 + timedelta(seconds=30)),
            "token": 1,
        },
        {
            **base,
            "id": "done-1",
            "status": "completed",
            "created_at": iso(T0),
            "scheduled_at": iso(T0),
            "completed_at": iso(T0),
        },
    ]
    with store.engine.begin() as conn:
        conn.execute(sa.insert(v1), rows)
    assert store.migrate(T0) == list(range(2, SCHEMA_VERSION + 1))

    assert store.get("done-1").context == {"kept": True}
    assert store.next_due(queues=None, workflows=None) == T0 + timedelta(seconds=30)
    claimed = store.claim(
        queues=None,
        workflows=["process_order"],
        worker_id="w",
        now=T0 + timedelta(minutes=5),
        lease_ms=1000,
        limit=10,
    )
    assert sorted(r.id for r in claimed) == ["pending-1", "running-1"]
    # v5's columns are backfilled: no lost attempts yet, a budget of one, no write id
    assert {(r.lost_attempts, r.max_attempts, r.last_write) for r in claimed} == {(0, 1, None)}
    store.close()


def test_upgrade_from_version_4_keeps_runs_in_flight_recoverable(blank_url):
    """A v4 database with an attempt in flight (its worker gone) and recorded attempts:
    after the upgrade the lost attempt runs again for free and the history reads back."""
    from durable.models import StepExecution, StepStatus

    store = _open(blank_url)
    migrations.upgrade(store.engine, now=T0, target=4)
    meta = sa.MetaData()
    ex = sa.Table("durable_executions", meta, autoload_with=store.engine)
    att = sa.Table("durable_step_attempts", meta, autoload_with=store.engine)
    sqlite = store.engine.dialect.name == "sqlite"
    at = (lambda d: d.replace(tzinfo=None)) if sqlite else (lambda d: d)
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(ex).values(
                id="in-flight",
                workflow="process_order",
                status="running",
                queue="default",
                priority=0,
                input="{}",
                context='{"kept": true}',
                created_at=at(T0),
                scheduled_at=at(T0),
                claimable_at=at(T0 + timedelta(seconds=30)),
                lease_expires_at=at(T0 + timedelta(seconds=30)),
                step_index=1,
                step_name="calculate_total",
                attempt=1,
                attempt_started_at=at(T0),
                token=1,
                worker_id="gone",
                cancel_requested=False,
                suspended=False,
            )
        )
        conn.execute(
            sa.insert(att),
            [
                {
                    "execution_id": "in-flight",
                    "step_index": 0,
                    "name": "validate",
                    "attempt": 1,
                    "status": "completed",
                    "started_at": at(T0),
                    "completed_at": at(T0),
                    "logs": "[]",
                    "max_attempts": 1,
                },
                {  # the current step failed once, with a budget of 4
                    "execution_id": "in-flight",
                    "step_index": 1,
                    "name": "calculate_total",
                    "attempt": 1,
                    "status": "failed",
                    "started_at": at(T0),
                    "completed_at": at(T0),
                    "logs": "[]",
                    "max_attempts": 4,
                },
            ],
        )
    assert store.migrate(T0) == list(range(5, SCHEMA_VERSION + 1))
    steps = store.steps("in-flight")
    assert [(s.name, s.result) for s in steps] == [("validate", None), ("calculate_total", None)]
    assert store.get("in-flight").max_attempts == 4  # backfilled from the step's last record
    (row,) = store.claim(
        queues=None,
        workflows=["process_order"],
        worker_id="w",
        now=T0 + timedelta(seconds=31),
        lease_ms=30_000,
        limit=1,
    )
    assert (row.began, row.lost_attempts, row.context) == (False, 0, {"kept": True})
    now = T0 + timedelta(seconds=31)
    lost = StepExecution("calculate_total", StepStatus.LOST, 1, T0, now, index=1)
    store.restart_attempt("in-flight", row.token, now=now, record=lost)
    again = store.get("in-flight")
    assert (again.attempt, again.lost_attempts, again.attempt_started_at) == (1, 1, now)
    assert [s.status for s in store.steps("in-flight")] == ["completed", "failed", "lost"]
    store.close()


def test_migrate_command(tmp_path):
    from click.testing import CliRunner

    from durable.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    first = CliRunner().invoke(main, ["--store", url, "migrate"])
    assert first.exit_code == 0, first.output
    assert "applied migration(s) 1, 2, 3, 4, 5" in first.output
    again = CliRunner().invoke(main, ["--store", url, "migrate"])
    assert "already up to date" in again.output


def test_an_engine_refuses_a_schema_it_was_not_written_for(blank_url):
    with pytest.raises(
        durable.StoreError, match=rf"schema version 0; this durable needs {SCHEMA_VERSION}.*migrate"
    ):
        durable.Engine(blank_url, migrate=False)
    store = _open(blank_url)
    migrations.upgrade(store.engine, now=T0, target=1)
    with pytest.raises(
        durable.StoreError, match=f"schema version 1; this durable needs {SCHEMA_VERSION}"
    ):
        durable.Engine(blank_url, migrate=False)
    durable.Engine(blank_url).close()  # migrate=True upgrades, then the check passes
    durable.Engine(blank_url, migrate=False).close()

    # A newer durable migrated this database: refuse to run on it and to "migrate" it.
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(migrations.migrations_table).values(
                version=SCHEMA_VERSION + 1, name="from_the_future", applied_at=T0
            )
        )
    with pytest.raises(durable.StoreError, match="newer than this durable knows"):
        durable.Engine(blank_url, migrate=False)
    with pytest.raises(durable.StoreError, match="upgrade durable-engine"):
        store.migrate(T0)
    store.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://host/x.db", "three slashes"),
        ("sqlite:///", "names no file"),
        ("sqlite:///x.db?journal=off", "unknown sqlite option"),
        ("sqlite:////no/such/folder/x.db", "folder of the SQLite file does not exist"),
        ("postgresql://postgres@127.0.0.1:5432", "names no database"),
    ],
)
def test_malformed_store_urls(url, message):
    with pytest.raises(durable.ConfigError, match=message):
        durable.Engine(url)


def test_a_database_that_is_down_is_a_clear_store_error():
    with pytest.raises(durable.StoreError, match="127.0.0.1:1"):
        durable.Engine("postgresql://postgres@127.0.0.1:1/nothing")
