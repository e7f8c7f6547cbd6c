"""Crash safety and scale-out with real worker processes (system clock, real signals).

These wait on real events (a marker line in a file, a row's status) with generous
deadlines; no assertion depends on how fast the machine is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

import durable

from helpers import eventually

pytestmark = [pytest.mark.processes, pytest.mark.slow]

# Worker processes import their workflows from this folder (proc_workflows) or from
# tests/ (wait_workflows, shared with the in-process wait tests).
HERE = Path(__file__).parent
IMPORT_PATH = os.pathsep.join([str(HERE), str(HERE.parent)])
LEASE_MS = 1500


@pytest.fixture(params=["sqlite", "postgres"])
def sql_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'procs.db'}"
    url: str = request.getfixturevalue("durable_store_url_pg")
    return url


class Workers:
    """Worker processes started with the `durable worker` command."""

    def __init__(self, url: str, log: Path, module: str = "proc_workflows") -> None:
        self.url = url
        self.log = log
        self.module = module
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, concurrency: int = 4) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "PYTHONPATH": IMPORT_PATH,
            "DURABLE_PROC_LOG": str(self.log),
            "DURABLE_PROC_RELEASE": str(self.log.with_suffix(".release")),
        }
        env.pop("CI", None)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "durable.cli",
                "--store",
                self.url,
                "-i",
                self.module,
                "--lease",
                str(LEASE_MS),
                "worker",
                "--concurrency",
                str(concurrency),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.procs.append(proc)
        return proc

    def lines(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [line.split() for line in self.log.read_text().splitlines()]

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def workers(sql_url, tmp_path):
    w = Workers(sql_url, tmp_path / "steps.log")
    yield w
    w.stop_all()


def _completed_records(store, wid: str) -> Counter[str]:
    return Counter(s.name for s in store.steps(wid) if s.status == "completed")


def test_sigkill_mid_step_another_worker_finishes_once_the_lease_expires(workers, sql_url):
    import proc_workflows  # noqa: F401  (registers the workflows in this process too)

    client = durable.Engine(sql_url)
    wid = client.start("proc_crash")
    victim = workers.start()
    assert eventually(lambda: any(ln[0] == "second-start" for ln in workers.lines()), 60)
    victim.kill()  # SIGKILL in the middle of step `second`, attempt 1
    victim.wait()
    ex = client.get_execution(wid)
    assert (ex.status, ex.current_step, ex.attempt) == ("running", "second", 1)

    workers.start()
    assert eventually(lambda: client.get_execution(wid).finished, 60)
    ex = client.get_execution(wid, include_steps=True)
    assert ex.status == "completed"
    assert ex.context == {"first": 1, "second": 1, "third": 1}
    names = [ln[0] for ln in workers.lines()]
    assert names.count("first") == 1  # a step recorded as completed never runs again
    assert names.count("second-start") == 2
    assert [(s.name, s.attempt, s.status, (s.error or {}).get("type")) for s in ex.steps] == [
        ("first", 1, "completed", None),
        # the killed attempt runs again under its number, without spending the budget
        ("second", 1, "lost", "durable.errors.WorkerLost"),
        ("second", 1, "completed", None),
        ("third", 1, "completed", None),
    ]
    assert ex.steps[1].max_attempts == 3


def test_a_paused_worker_past_its_lease_cannot_write_and_the_execution_completes_once(
    workers, sql_url
):
    import proc_workflows  # noqa: F401

    client = durable.Engine(sql_url)
    wid = client.start("proc_crash")
    paused = workers.start()
    assert eventually(lambda: any(ln[0] == "second-start" for ln in workers.lines()), 60)
    paused.send_signal(signal.SIGSTOP)  # frozen mid-step, heartbeats included
    workers.start()
    assert eventually(lambda: client.get_execution(wid).finished, 60)
    paused.send_signal(signal.SIGCONT)
    workers.log.with_suffix(".release").touch()  # attempt 1 finishes and tries to commit
    paused_pid = str(paused.pid)
    assert eventually(
        lambda: (
            [ln[3] == paused_pid for ln in workers.lines() if ln[0] == "second-done"]
            == [False, True]
        ),
        60,
    )
    paused.terminate()
    _, stderr = paused.communicate(timeout=60)
    assert b"no longer claimed by this worker" in stderr  # its write was refused
    ex = client.get_execution(wid, include_steps=True)
    assert ex.status == "completed"
    assert ex.context == {"first": 1, "second": 1, "third": 1}
    assert [s.status for s in ex.steps if s.name == "second"] == ["lost", "completed"]
    assert _completed_records(client.store, wid) == {"first": 1, "second": 1, "third": 1}


def _restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )


def _listeners(url: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT count(DISTINCT client_port) FROM pg_stat_activity "
            "WHERE application_name = 'durable-listen' AND datname = current_database()"
        ).fetchone()
    return int(found[0]) if found else 0


def _finished_count(client: durable.Engine) -> int | None:
    try:
        with client.store.engine.connect() as conn:  # type: ignore[attr-defined]
            return conn.execute(
                sa.text("SELECT count(*) FROM durable_executions WHERE status = 'completed'")
            ).scalar()
    except (sa.exc.DBAPIError, durable.StoreError):
        return None  # the server is restarting


@pytest.mark.parametrize("restart", [False, True], ids=["steady", "postgres-restart"])
def test_four_worker_processes_run_500_executions_exactly_once(
    durable_store_url_pg, tmp_path, restart
):
    import proc_workflows  # noqa: F401

    url = durable_store_url_pg
    pool = Workers(url, tmp_path / "steps.log")
    client = durable.Engine(url)
    try:
        for _ in range(4):
            pool.start(concurrency=8)
        # all four are up before any work exists: each LISTENs on its own connection
        # (the client engine only starts executions, so it does not listen)
        assert eventually(lambda: _listeners(url) >= 4, 120)
        ids = [client.start("proc_three") for _ in range(500)]
        if restart:
            assert eventually(lambda: (_finished_count(client) or 0) >= 100, 120)
            _restart_postgres()
        assert eventually(lambda: _finished_count(client) == 500, 240)
    finally:
        pool.stop_all()
    assert all(p.returncode is not None for p in pool.procs)

    with client.store.engine.connect() as conn:  # type: ignore[attr-defined]
        per_step = conn.execute(
            sa.text(
                "SELECT execution_id, name, count(*) FROM durable_step_attempts "
                "WHERE status = 'completed' GROUP BY execution_id, name"
            )
        ).all()
        statuses = dict(
            conn.execute(
                sa.text("SELECT status, count(*) FROM durable_executions GROUP BY status")
            ).all()
        )
    assert statuses == {"completed": 500}
    assert len(per_step) == 1500
    assert {count for _, _, count in per_step} == {1}  # every step completion recorded once
    assert {eid for eid, _, _ in per_step} == set(ids)
    pids = {ln[3] for ln in pool.lines()}
    # the work was shared by all four processes; across a restart, a worker still backing
    # off when the others finish may have had nothing left to do
    assert len(pids) == 4 if not restart else len(pids) >= 2
    contexts = client.list_executions(limit=500)
    assert all(ex.context == {"one": True, "two": True, "three": True} for ex in contexts)
