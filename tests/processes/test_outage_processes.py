"""Store outages with real worker processes: a PostgreSQL restart under load, a full disk
under SQLite, a database that refuses connections, and what the workers log meanwhile.

Every wait here is for a real event (a marker line, a row's status, a log line) with a
generous deadline; the only timed windows are the ones that measure how much a worker
logs or reconnects during an outage, and those assert an upper bound that a slower
machine can only make smaller.
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import durable

from helpers import eventually

# All slow (real outages, real time); all but the heartbeat test start worker processes.
pytestmark = pytest.mark.slow

HERE = Path(__file__).parent  # outage_workflows, which the workers import
LEASE_MS = 1500
PID = os.getpid()  # in every file and database name: two runs at once never meet

# The worker's logging format (durable/cli.py): "%(asctime)s %(levelname)s %(name)s: ..."
LOG_LINE = re.compile(
    r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"durable(\.[a-z_.]+)?: "
)


def _within(seconds: float, predicate: Callable[[], bool], every: float = 0.1) -> bool:
    """Poll ``predicate`` (a database query, say) until it holds, for up to ``seconds`` of
    real time. Unlike helpers.eventually, the deadline does not stretch with the time each
    call of the predicate takes."""
    deadline = time.monotonic() + seconds
    pause = threading.Event()
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        pause.wait(every)
    return True


def _env(log: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "DURABLE_OUTAGE_LOG": str(log)}
    env.pop("CI", None)
    return env


def _worker_args(url: str, concurrency: int, lease_ms: int = LEASE_MS) -> list[str]:
    return [
        "--store",
        url,
        "-i",
        "outage_workflows",
        "--lease",
        str(lease_ms),
        "worker",
        "--concurrency",
        str(concurrency),
    ]


class Workers:
    """`durable worker` processes whose stderr goes to a file each (never to a pipe that
    nobody reads, which would stop a worker that logs a lot during an outage)."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url = url
        self.folder = folder
        self.log = folder / f"steps-{PID}.log"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stderr_files: list[Path] = []

    def start(self, concurrency: int = 4) -> subprocess.Popen[bytes]:
        err = self.folder / f"worker-{PID}-{len(self.procs)}.err"
        with open(err, "wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "durable.cli", *_worker_args(self.url, concurrency)],
                env=_env(self.log),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.procs.append(proc)
        self.stderr_files.append(err)
        return proc

    def stderr(self, i: int) -> str:
        return self.stderr_files[i].read_text(errors="replace")

    def marks(self) -> list[list[str]]:
        """The step bodies' marker lines: what, execution id, attempt, pid."""
        if not self.log.exists():
            return []
        return [line.split() for line in self.log.read_text().splitlines()]

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# -- 1. a PostgreSQL restart under load, steps without retries ---------------------------


def _restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )


def _query(url: str, sql: str) -> list[tuple[Any, ...]] | None:
    """Rows of ``sql`` on a new connection; None while the server is restarting."""
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(sql).fetchall()  # type: ignore[arg-type]
    except psycopg.Error:
        return None


def _completed(url: str) -> int:
    rows = _query(url, "SELECT count(*) FROM durable_executions WHERE status = 'completed'")
    return int(rows[0][0]) if rows else 0


def _listeners(url: str) -> int:
    rows = _query(
        url,
        "SELECT count(DISTINCT client_port) FROM pg_stat_activity "
        "WHERE application_name = 'durable-listen' AND datname = current_database()",
    )
    return int(rows[0][0]) if rows else 0


def _ended(url: str) -> int:
    """How many executions have ended, whichever way (a failed one must be seen)."""
    rows = _query(
        url,
        "SELECT count(*) FROM durable_executions "
        "WHERE status IN ('completed', 'failed', 'cancelled')",
    )
    return int(rows[0][0]) if rows else 0


def _statuses(url: str) -> dict[str, int]:
    rows = _query(url, "SELECT status, count(*) FROM durable_executions GROUP BY status")
    return {str(status): int(n) for status, n in rows or []}


@pytest.mark.processes
def test_600_executions_without_retries_survive_a_postgres_restart(durable_store_url_pg, tmp_path):
    import outage_workflows  # noqa: F401  (registers the workflows in this process too)

    url = durable_store_url_pg
    pool = Workers(url, tmp_path)
    client = durable.Engine(url)
    try:
        for _ in range(4):
            pool.start(concurrency=8)
        # all four are up (each LISTENs on a connection of its own) before any work exists,
        # so the restart hits four running workers, not one still starting
        assert _within(120, lambda: _listeners(url) >= 4), [pool.stderr(i) for i in range(4)]
        # All 600 fall due at once, after they all exist (inserting them takes a moment,
        # and the workers would otherwise finish them as fast as they come): so the
        # restart, once 100 are done, meets the others queued and in flight.
        due = datetime.now(UTC) + timedelta(seconds=5)
        ids = [client.start("outage_three", scheduled_at=due) for _ in range(600)]
        assert _within(300, lambda: _completed(url) >= 100, every=0.02)
        _restart_postgres()
        assert _within(600, lambda: _ended(url) == 600, every=0.5), _statuses(url)
        # every worker rode the restart out
        assert [p.poll() for p in pool.procs] == [None] * 4, [pool.stderr(i) for i in range(4)]
    finally:
        pool.stop_all()
        client.close()

    statuses = _statuses(url)
    failed = _query(
        url, "SELECT id, error::text FROM durable_executions WHERE status <> 'completed' LIMIT 5"
    )
    assert statuses == {"completed": 600}, failed  # none failed (WorkerLost, say)

    attempts = _query(
        url,
        "SELECT execution_id, name, status, count(*) FROM durable_step_attempts "
        "GROUP BY execution_id, name, status",
    )
    assert attempts is not None
    by_status: dict[str, Counter[tuple[str, str]]] = {}
    for eid, name, status, count in attempts:
        by_status.setdefault(status, Counter())[(eid, name)] += count
    completed = by_status.get("completed", Counter())
    lost = by_status.get("lost", Counter())
    # every step's completion recorded exactly once, for every execution
    assert len(completed) == 1800
    assert set(completed.values()) == {1}
    assert {eid for eid, _ in completed} == set(ids)
    assert set(by_status) <= {"completed", "lost"}, by_status.keys()  # no failed attempt

    # a step body runs again only for an attempt recorded as lost: never more than
    # 1 + (its lost attempts) times, and at least once
    runs = Counter((ln[1], ln[0]) for ln in pool.marks())
    assert set(runs) == set(completed)
    too_many = {key: (n, lost[key]) for key, n in runs.items() if n > 1 + lost[key]}
    assert too_many == {}
    contexts = _query(url, "SELECT context FROM durable_executions") or []
    assert len(contexts) == 600
    assert all(_json(c) == {"one": True, "two": True, "three": True} for (c,) in contexts)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# -- 2. a full disk under SQLite ---------------------------------------------------------


class _StderrReader:
    """Reads a process's stderr in a thread, line by line, as it is written."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        assert proc.stderr is not None
        self._pipe = proc.stderr
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for raw in self._pipe:
            with self._lock:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def count(self) -> int:
        with self._lock:
            return len(self.lines)

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


# how SQLite reports a write past RLIMIT_FSIZE: a short write, then EFBIG
FULL = re.compile(r"disk I/O error|database or disk is full")


@pytest.mark.processes
def test_a_worker_on_a_full_disk_logs_a_bounded_number_of_lines_and_recovers(tmp_path):
    import outage_workflows  # noqa: F401

    db = tmp_path / f"full-{PID}.db"
    url = f"sqlite:///{db}"
    steps_log = tmp_path / f"steps-{PID}.log"
    release = tmp_path / f"release-{PID}"
    client = durable.Engine(url)  # migrated here, with no limit
    wid = client.start("outage_hold", {"release": str(release), "log": str(steps_log)})
    # Room for the worker's claim (a few pages in the write-ahead log) and then some
    # heartbeats; past it every write fails, as on a full disk. A file-size limit counts
    # from offset 0, and the log may start over from 0 or go on after what is there.
    wal = Path(f"{db}-wal")
    limit = 64 * 1024 + (wal.stat().st_size if wal.exists() else 0)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, outage_workflows; "
            "outage_workflows.run_with_fsize_limit(int(sys.argv[1]), sys.argv[2:])",
            str(limit),
            *_worker_args(url, concurrency=2),
        ],
        env=_env(steps_log),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    reader = _StderrReader(proc)
    lifted = False
    try:
        assert eventually(
            lambda: steps_log.exists() and "hold-start" in steps_log.read_text(), 120
        ), reader.text()
        # the heartbeats fill the room left; then every write fails
        assert _within(120, lambda: FULL.search(reader.text()) is not None), reader.text()
        before = reader.count()
        threading.Event().wait(3.0)  # the measured window: 3 s of real time
        during = reader.count() - before
        # Before the heartbeat backed off, a worker wrote 14,422 warnings in 3 s here.
        assert during < 60, reader.text()
        assert proc.poll() is None  # the worker rode it out

        resource.prlimit(
            proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        )
        lifted = True
        release.touch()
        assert _within(120, lambda: client.get_execution(wid).finished), reader.text()
    finally:
        release.touch()
        try:
            if not lifted and proc.poll() is None:
                resource.prlimit(
                    proc.pid,
                    resource.RLIMIT_FSIZE,
                    (resource.RLIM_INFINITY, resource.RLIM_INFINITY),
                )
        finally:
            proc.terminate()  # a graceful stop: it waits for the released step to end
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            reader.join(10)

    text = reader.text()
    ex = client.get_execution(wid, include_steps=True)
    client.close()
    assert ex.status == "completed", text
    assert ex.context == {"held": 1}
    # nobody else could take the claim: the one attempt ran once and completed
    assert [(s.name, s.attempt, s.status) for s in ex.steps] == [("hold", 1, "completed")]
    assert [ln.split()[0] for ln in steps_log.read_text().splitlines()] == [
        "hold-start",
        "hold-done",
    ]


# -- 3. heartbeats against a database that refuses connections ---------------------------


@pytest.fixture
def own_pg_db(postgres_url: str) -> Iterator[tuple[str, str]]:
    """A fresh database of its own (its name has this process's id): (admin URL, URL)."""
    import psycopg

    base = postgres_url.rsplit("/", 1)[0]
    admin = f"{base}/postgres"
    name = f"durable_outage_{PID}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield admin, f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _about_heartbeat(message: str) -> bool:
    return "renewing" in message or "heartbeat" in message


def test_heartbeats_back_off_while_the_database_refuses_connections(own_pg_db, tmp_path, caplog):
    import outage_workflows  # noqa: F401
    import psycopg

    admin, url = own_pg_db
    name = url.rsplit("/", 1)[1]
    lease_ms = 6000
    release = tmp_path / f"release-{PID}"
    steps_log = tmp_path / f"steps-{PID}.log"
    engine = durable.Engine(url, lease=lease_ms)
    caplog.set_level(logging.WARNING, logger="durable")

    def lease_expires() -> Any:
        rows = _query(url, f"SELECT lease_expires_at FROM durable_executions WHERE id = '{wid}'")
        return rows[0][0] if rows else None

    def worker_warnings() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "durable.worker" and r.levelno >= logging.WARNING
        ]

    wid = engine.start("outage_hold", {"release": str(release), "log": str(steps_log)})
    terminate = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    )
    pause = threading.Event()
    try:
        with psycopg.connect(admin, autocommit=True) as adm, engine.worker(concurrency=2):
            try:
                assert eventually(
                    lambda: steps_log.exists() and "hold-start" in steps_log.read_text(), 60
                )
                # Go down just after a renewal: the next one is due a third of the lease
                # later (2 s), inside the outage, and the lease (6 s) outlasts the outage.
                first = lease_expires()
                assert _within(60, lambda: lease_expires() != first, every=0.02)
                adm.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false")
                began = time.monotonic()
                warned_before = len(worker_warnings())
                connects_before = engine.store.connect_attempts  # type: ignore[attr-defined]
                # cut every connection to it, again and again for those opened meanwhile
                while time.monotonic() - began < 3.0:
                    adm.execute(terminate)
                    pause.wait(0.05)
                warned = worker_warnings()[warned_before:]
                tries = engine.store.connect_attempts - connects_before  # type: ignore[attr-defined]
                # Stay down until the heartbeat has failed at least once (normally it has,
                # at 2 s), so that the window above did measure a heartbeat on a dead store.
                assert _within(
                    60,
                    lambda: (
                        adm.execute(terminate) is not None
                        and any(_about_heartbeat(m) for m in worker_warnings()[warned_before:])
                    ),
                    every=0.05,
                ), worker_warnings()
            finally:
                adm.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")
                release.touch()  # else leaving the block would wait for the step

            # Why these bounds cannot flake: after each failed try the heartbeat pauses
            # 100, 200, 400 ms, then a tenth of the lease (600 ms), and logs only its first
            # failure and every 20th; the claim loop pauses 100, 200, 400, 800, 1600 ms
            # and logs each; nothing else in this engine touches the store while its one
            # step blocks. So in 3 s the heartbeat tries at most 8 times and logs at most
            # once, and the claim loop tries at most 6 times: a slower machine makes fewer
            # tries, never more. Before the backoff: a tight loop, ~189 reconnects/s.
            renewing = [m for m in warned if _about_heartbeat(m)]
            assert len(renewing) <= 2, warned
            assert len(warned) <= 12, warned
            assert tries <= 30, (tries, warned)

            assert _within(120, lambda: engine.get_execution(wid).finished)
        ex = engine.get_execution(wid, include_steps=True)
    finally:
        release.touch()
        engine.close()

    assert ex.status == "completed"
    # the outage was shorter than the lease: the claim held, no attempt was lost
    assert [(s.name, s.attempt, s.status) for s in ex.steps] == [("hold", 1, "completed")]
    assert [ln.split()[0] for ln in steps_log.read_text().splitlines()] == [
        "hold-start",
        "hold-done",
    ]


# -- 4. what a worker logs, through `logging` --------------------------------------------


@pytest.mark.processes
def test_worker_processes_log_failures_retries_and_recoveries(tmp_path):
    import outage_workflows  # noqa: F401

    url = f"sqlite:///{tmp_path / f'logs-{PID}.db'}"
    pool = Workers(url, tmp_path)
    release = tmp_path / f"release-{PID}"
    client = durable.Engine(url)
    try:
        held = client.start("outage_hold", {"release": str(release)})
        victim = pool.start(concurrency=2)
        assert eventually(lambda: any(m[0] == "hold-start" for m in pool.marks()), 60)
        victim.kill()  # SIGKILL in the middle of the step
        victim.wait()
        flaky = client.start("outage_flaky")
        release.touch()  # the step's next run goes straight through
        pool.start(concurrency=2)
        assert _within(
            120,
            lambda: client.get_execution(held).finished and client.get_execution(flaky).finished,
        )
    finally:
        release.touch()
        pool.stop_all()
    assert pool.procs[0].returncode == -signal.SIGKILL
    assert pool.procs[1].returncode == 0

    held_ex = client.get_execution(held, include_steps=True)
    flaky_ex = client.get_execution(flaky, include_steps=True)
    client.close()
    assert held_ex.status == "completed"
    assert [s.status for s in held_ex.steps] == ["lost", "completed"]
    assert flaky_ex.status == "completed"
    assert [(s.attempt, s.status) for s in flaky_ex.steps] == [(1, "failed"), (2, "completed")]

    first, second = pool.stderr(0), pool.stderr(1)
    for text in (first, second):
        # everything a worker writes to stderr goes through the durable.* loggers
        lines = text.splitlines()
        assert lines, text
        assert all(LOG_LINE.match(line) for line in lines), text
    start = re.compile(
        r"^\S+ \S+ INFO durable\.cli: worker \S+ on sqlite:///\S+, queues all, concurrency 2$",
        re.M,
    )
    assert start.search(first), first
    assert start.search(second), second
    failed = re.compile(
        r"^\S+ \S+ WARNING durable\.executor: durable: outage_flaky "
        + re.escape(flaky)
        + r" step 'flaky' attempt 1/3 failed \(RuntimeError: the first try of flaky fails on "
        r"purpose\); retrying at \S+$",
        re.M,
    )
    assert failed.search(second), second
    recovering = re.compile(
        r"^\S+ \S+ WARNING durable\.executor: durable: recovering outage_hold "
        + re.escape(held)
        + r" step 'hold' attempt 1/1, lost with its worker \(loss 1 of 3 that are free\); "
        r"running it again$",
        re.M,
    )
    assert recovering.search(second), second
    # the line of a stopped worker, once it has been stopped gracefully
    assert re.search(r"INFO durable\.cli: worker \S+ stopped$", second, re.M), second


# -- 5. a worker started while the database is unavailable -------------------------------


@pytest.mark.processes
def test_a_worker_started_while_the_database_refuses_connections_waits_for_it(own_pg_db, tmp_path):
    import outage_workflows  # noqa: F401
    import psycopg

    admin, url = own_pg_db
    name = url.rsplit("/", 1)[1]
    durable.Engine(url).close()  # migrated before the outage
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false")
    workers = Workers(url, tmp_path)
    try:
        proc = workers.start(concurrency=2)
        # The worker does not exit: it says it cannot use the store yet and tries again.
        assert _within(60, lambda: "cannot use the store yet" in workers.stderr(0))
        assert proc.poll() is None
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")
        client = durable.Engine(url)
        wid = client.start("outage_three")
        assert _within(120, lambda: client.get_execution(wid).status == "completed")
        client.close()
        assert proc.poll() is None
        assert re.search(r"INFO durable\.cli: worker \S+ on postgresql://", workers.stderr(0))
    finally:
        workers.stop_all()
