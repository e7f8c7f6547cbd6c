"""The ``durable`` command line: what it prints about stored data and store URLs.

Most commands run in this process through click's CliRunner (``color=True``, so click does
not strip escape sequences as it does for a pipe: the output is what a terminal would get).
The worker's start line and the console script's import path need a real process.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

import durable
from durable import Retry, step, workflow
from durable.cli import main
from durable.context import attempt, put_context, wait_for_any_event, wait_for_input

from helpers import eventually, run_due

PASSWORD = "s3cret-pw"
# A process that imports this module (for its workflows) needs its folder, and tests/
# for the helpers it imports.
HERE = Path(__file__).parent
IMPORT_PATH = os.pathsep.join([str(HERE), str(HERE.parent)])

# -- workflows ---------------------------------------------------------------------------------


@workflow("cli_escapes")
class Escapes:
    """Stored text full of terminal escape sequences: a log, a context value, a result and
    an error message."""

    @step
    def noisy(self) -> str:
        logging.getLogger("x").warning("\x1b]0;pwned\x07 hi")
        put_context("term", "\x1b[1mbold")
        return "\x1b[4munder"

    @step
    def explode(self) -> None:
        raise ValueError("\x1b[31mboom\x1b[0m")


@workflow("cli_prompt")
class Prompt:
    @step
    def ask(self) -> Any:
        return wait_for_input("go", prompt="\x1b[5mblink")


@workflow("cli_either")
class Either:
    @step
    def pick(self) -> Any:
        return wait_for_any_event(["yes", "no"])


@workflow("cli_budget")
class Budget:
    @step(retry=Retry(max_attempts=3))
    def charge(self) -> dict[str, int]:
        return {"charged": 42}


HOLD_ENTERED = threading.Event()
HOLD_RELEASE = threading.Event()


@workflow("cli_hold")
class Hold:
    @step
    def first(self) -> int:
        return 1

    @step(retry=Retry(max_attempts=4))
    def held(self) -> None:
        HOLD_ENTERED.set()
        assert HOLD_RELEASE.wait(30), "the test never released the step"


LONG = "a_really_long_step_name_that_is_longer_than_twenty_two_chars"


@workflow("cli_columns")
class Columns:
    @step
    def pay(self) -> dict[str, int]:
        return {"charged": 42}

    @step(name=LONG, retry=Retry(max_attempts=3, backoff="constant", base=1000))
    def flaky(self) -> None:
        if attempt() == 1:
            raise ConnectionError("card network down")


@workflow("cli_plain")
class Plain:
    @step
    def one(self) -> int:
        return 1


# -- helpers -----------------------------------------------------------------------------------


def cli(*args: str) -> Result:
    """Run ``durable ARGS`` here, as a terminal would see it (no ANSI stripping)."""
    return CliRunner().invoke(main, list(args), color=True)


def ok(*args: str) -> str:
    result = cli(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def sqlite_url(tmp_path: Path, name: str = "x.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def with_password(url: str) -> str:
    """The session's Postgres URL with a password in it (trust auth accepts any)."""
    assert url.startswith("postgresql://postgres@"), url
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@", 1)


def assert_no_controls(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text, repr(text)


def forge_names(engine: durable.Engine, wid: str) -> None:
    """Store a workflow and step name with escape sequences, as another writer (an older
    version, a manual SQL fix) could: the engine itself refuses such names."""
    with engine.store.sa_engine().begin() as conn:  # type: ignore[attr-defined]
        conn.execute(
            sa.text("UPDATE durable_executions SET workflow = :w, step_name = :s WHERE id = :id"),
            {"w": "cli_\x1b[31mforged", "s": "st\x1b]0;title\x07ep", "id": wid},
        )


# -- 1. stored control characters never reach the terminal -------------------------------------


def _escapes_fixture(engine: durable.Engine) -> tuple[str, str, str]:
    """A failed execution (error, log, context, result, input with escapes), one waiting on
    an input with an escaped prompt, and one cancelled with an escaped reason whose stored
    workflow and step names hold escapes too."""
    failed = engine.start(Escapes, {"who": "\x1b[7minput"})
    waiting = engine.start(Prompt)
    cancelled = engine.start(Prompt)
    engine.drain()
    engine.cancel(cancelled, "\x1b[2J wiped")
    forge_names(engine, cancelled)
    assert engine.get_execution(failed).status == "failed"
    assert engine.get_execution(waiting).status == "waiting"
    return failed, waiting, cancelled


def _check_escapes_cli(url: str, failed: str, waiting: str, cancelled: str) -> None:
    shown = ok("--store", url, "show", failed)
    assert_no_controls(shown)
    assert "error      ValueError: \\x1b[31mboom\\x1b[0m" in shown
    assert "ValueError: \\x1b[31mboom\\x1b[0m" in shown.split("  steps", 1)[1]  # step note
    assert "log WARNING \\x1b]0;pwned\\x07 hi" in shown
    assert '"term": "\\u001b[1mbold"' in shown  # context: JSON escapes it
    assert '"who": "\\u001b[7minput"' in shown  # input
    assert '-> "\\u001b[4munder"' in shown  # the noisy step's result

    shown = ok("--store", url, "show", waiting)
    assert_no_controls(shown)
    assert "input go (\\x1b[5mblink)" in shown

    shown = ok("--store", url, "show", cancelled)
    assert_no_controls(shown)
    assert "reason     \\x1b[2J wiped" in shown
    assert "workflow   cli_\\x1b[31mforged" in shown

    listing = ok("--store", url, "list")
    assert_no_controls(listing)
    assert f"{cancelled}  cli_\\x1b[31mforged" in listing
    assert "st\\x1b]0;title\\x07ep" in listing
    assert f"{failed}  cli_escapes" in listing

    waits = ok("--store", url, "waits")
    assert_no_controls(waits)
    assert f"{waiting}  cli_prompt" in waits
    assert "input go (\\x1b[5mblink)" in waits


def test_stored_escape_sequences_are_shown_escaped(tmp_path, durable_clock):
    url = sqlite_url(tmp_path)
    with durable.Engine(url, clock=durable_clock) as engine:
        ids = _escapes_fixture(engine)
    _check_escapes_cli(url, *ids)
    # The bytes a real process writes (importing this module for its workflows).
    env = {**os.environ, "PYTHONPATH": IMPORT_PATH}
    env.pop("DURABLE_STORE", None)
    run = subprocess.run(
        [sys.executable, "-m", "durable.cli", "--store", url, "-i", "test_cli", "show", ids[0]],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert b"\x1b" not in run.stdout and b"\x07" not in run.stdout, run.stdout
    assert b"ValueError: \\x1b[31mboom\\x1b[0m" in run.stdout
    assert b"log WARNING \\x1b]0;pwned\\x07 hi" in run.stdout


def test_stored_escape_sequences_are_shown_escaped_on_postgres(durable_store_url_pg, durable_clock):
    with durable.Engine(durable_store_url_pg, clock=durable_clock) as engine:
        ids = _escapes_fixture(engine)
    _check_escapes_cli(durable_store_url_pg, *ids)


def test_forged_wait_fields_are_escaped_in_waits_and_show(tmp_path, durable_clock):
    """Every stored field of a wait is stored text: a workflow name, step, event names or
    mode written by another writer is escaped in `waits` and `show` alike."""
    url = sqlite_url(tmp_path)
    with durable.Engine(url, clock=durable_clock) as engine:
        wid = engine.start(Either)
        engine.drain()
        assert engine.get_execution(wid).status == "waiting"
        forge_names(engine, wid)
        with engine.store.sa_engine().begin() as conn:  # type: ignore[attr-defined]
            conn.execute(
                sa.text(
                    "UPDATE durable_waits SET mode = :m, step = :s, names = :n "
                    "WHERE execution_id = :id"
                ),
                {
                    "m": "any\x1b[2J",
                    "s": "pi\x1b[8mck",
                    "n": '["yes", "n\\u001b[5mo"]',
                    "id": wid,
                },
            )
    waits = ok("--store", url, "waits")
    shown = ok("--store", url, "show", wid)
    for text in (waits, shown):
        assert "step pi\\x1b[8mck" in text, text
        assert "of events yes, n\\x1b[5mo" in text, text
        assert_no_controls(text)
        assert "any\\x1b[2J of events" in text, text
    assert f"{wid}  cli_\\x1b[31mforged" in waits


# -- 2. passwords are never printed -------------------------------------------------------------


def test_migrate_and_errors_hide_the_password(postgres_url):
    url = with_password(postgres_url)
    migrated = cli("--store", url, "migrate")
    assert migrated.exit_code == 0, migrated.output
    assert "already up to date" in migrated.output
    assert PASSWORD not in migrated.output and "postgres:***@" in migrated.output

    missing = cli("--store", url, "show", "no-such-execution")
    assert missing.exit_code == 1
    assert "no execution with id 'no-such-execution'" in missing.output
    assert PASSWORD not in missing.output and "postgres:***@" in missing.output

    down = cli("--store", f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/x", "list")
    assert down.exit_code == 1
    assert down.output.startswith("Error: ")
    assert PASSWORD not in down.output and "postgres:***@127.0.0.1:1/x" in down.output

    in_query = cli("--store", f"postgresql://postgres@127.0.0.1:1/x?password={PASSWORD}", "list")
    assert in_query.exit_code == 1
    assert PASSWORD not in in_query.output and "password=***" in in_query.output


def test_a_stray_percent_in_the_password_is_not_echoed(postgres_url):
    """A password with a '%' that is not URL-encoded: the driver's complaint about it must
    not quote it."""
    url = with_password(postgres_url).replace(PASSWORD, PASSWORD + "%zz", 1)
    result = cli("--store", url, "list")
    assert "s3cret" not in result.output, result.output
    assert "postgres:***@" in result.output


def test_a_malformed_store_url_is_an_error_not_a_traceback():
    """A URL the drivers cannot parse (a port that is not a number) is the command's error,
    like any other bad store URL, and does not show the password."""
    result = cli("--store", f"postgresql://postgres:{PASSWORD}@127.0.0.1:notaport/x", "list")
    assert PASSWORD not in result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1 and result.output.startswith("Error: ")


class Lines:
    """Collects a stream's lines in a thread, so the test can wait for one with a deadline."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            with self._lock:
                self.lines.append(raw.decode("utf-8", "replace"))

    def find(self, *words: str) -> str | None:
        with self._lock:
            return next((ln for ln in self.lines if all(w in ln for w in words)), None)

    def text(self) -> str:
        self._thread.join(10)
        with self._lock:
            return "".join(self.lines)


NO_OP_FLOWS = """
from durable import step, workflow


@workflow("cli_no_op")
class NoOp:
    @step
    def one(self):
        pass
"""


@pytest.mark.processes
@pytest.mark.slow
def test_worker_start_line_hides_the_password(postgres_url, tmp_path):
    url = with_password(postgres_url)
    (tmp_path / "pw_flows.py").write_text(NO_OP_FLOWS)
    env = {**os.environ}
    env.pop("DURABLE_STORE", None)
    proc = subprocess.Popen(
        [
            *[sys.executable, "-m", "durable.cli", "--store", url, "-i", "pw_flows"],
            *["worker", "--concurrency", "2"],
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        err = Lines(proc.stderr)
        started = eventually(lambda: err.find("worker", "concurrency") is not None, timeout=30)
        assert started, err.text() if proc.poll() is not None else "no start line in 30 s"
        line = err.find("worker", "concurrency")
        assert line is not None and "postgres:***@" in line and "concurrency 2" in line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = err.text()
    assert PASSWORD not in output
    assert "postgres:***@" in output
    assert err.find("worker", "stopped") is not None, output


# -- 3. a %-escaped SQLite path names one file --------------------------------------------------


def test_a_percent_escaped_sqlite_path_names_one_file(tmp_path, durable_clock):
    url = f"sqlite:///{tmp_path}/a%20b.db"
    migrated = ok("--store", url, "migrate")
    assert "applied migration(s)" in migrated
    assert (tmp_path / "a b.db").is_file()
    assert not (tmp_path / "a%20b.db").exists()
    with durable.Engine(url, clock=durable_clock) as engine:
        wid = engine.start(Plain)
    listing = ok("--store", url, "list")
    assert f"{wid}  cli_plain" in listing
    assert "already up to date" in ok("--store", url, "migrate")
    assert sorted(p.name for p in tmp_path.iterdir() if "%" in p.name) == []


# -- 4. --import finds a module in the working directory ----------------------------------------

CWD_FLOWS = """
from durable import step, workflow


@workflow("cli_cwd_flow")
class CwdFlow:
    @step
    def one(self):
        return 1
"""


def _console_script() -> Path:
    script = Path(sys.executable).with_name("durable")
    assert script.is_file(), f"the durable console script is not installed at {script}"
    return script


def _run_script(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    env.pop("PYTHONPATH", None)
    env.pop("DURABLE_STORE", None)
    return subprocess.run(
        [str(_console_script()), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_import_finds_a_module_in_the_working_directory(tmp_path):
    (tmp_path / "cwd_flows.py").write_text(CWD_FLOWS)
    run = _run_script(
        tmp_path, "--store", "sqlite:///flows.db", "-i", "cwd_flows", "start", "cli_cwd_flow"
    )
    assert run.returncode == 0, run.stderr
    wid = run.stdout.strip()
    assert len(wid) == 36 and wid.count("-") == 4, run.stdout
    assert (tmp_path / "flows.db").is_file()  # the relative path is the working directory's
    with durable.Engine(sqlite_url(tmp_path, "flows.db")) as engine:
        assert engine.get_execution(wid).workflow == "cli_cwd_flow"


FROZEN_FLOWS = """
import gc

from durable import step, workflow
from durable.context import put_context


@workflow("cli_frozen")
class Frozen:
    @step
    def look(self):
        put_context("frozen", gc.get_freeze_count())
"""


@pytest.mark.processes
def test_a_worker_process_freezes_what_start_up_made(tmp_path):
    """`durable worker` moves the start-up heap out of the collector's way (gc.freeze)."""
    (tmp_path / "frozen_flows.py").write_text(FROZEN_FLOWS)
    url = sqlite_url(tmp_path, "frozen.db")
    run = _run_script(tmp_path, "--store", url, "-i", "frozen_flows", "start", "cli_frozen")
    assert run.returncode == 0, run.stderr
    wid = run.stdout.strip()
    env = {**os.environ}
    env.pop("PYTHONPATH", None)
    env.pop("DURABLE_STORE", None)
    args = ["--store", url, "-i", "frozen_flows", "worker", "--concurrency", "1"]
    proc = subprocess.Popen(
        [str(_console_script()), *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    err = Lines(proc.stderr)
    try:
        with durable.Engine(url) as engine:
            done = eventually(lambda: engine.get_execution(wid).status == "completed", timeout=60)
            assert done, err.text() if proc.poll() is not None else "not completed in 60 s"
            frozen = engine.get_execution(wid).context["frozen"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, err.text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert frozen > 10_000  # (the modules, durable's and the store's among them)


def test_a_missing_module_is_a_clear_error(tmp_path):
    run = _run_script(
        tmp_path, "--store", "sqlite:///flows.db", "-i", "no_such_flows", "start", "x"
    )
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    assert "cannot import workflow module 'no_such_flows'" in run.stderr
    assert f"looked in {os.path.realpath(tmp_path)}" in run.stderr


# -- 5. show: the running attempt's budget, aligned columns, results ---------------------------


def _step_lines(shown: str) -> tuple[str, list[str]]:
    body = shown.split("\n  steps\n", 1)[1].splitlines()
    header, rest = body[0], body[1:]
    return header, [ln for ln in rest if ln.startswith("    ") and not ln.startswith("      log")]


def test_show_gives_the_running_attempt_its_real_budget(tmp_path, durable_clock):
    url = sqlite_url(tmp_path)
    with durable.Engine(url, clock=durable_clock) as engine:
        wid = engine.start(Budget)
        assert len(engine.scheduler.claim(None, limit=1)) == 1  # running, its attempt in flight
        assert engine.get_execution(wid).status == "running"
        shown = ok("--store", url, "show", wid)
    _, lines = _step_lines(shown)
    assert len(lines) == 1, shown
    assert lines[0].split()[:3] == ["charge", "1/3", "running"], shown


def test_show_gives_a_later_step_in_flight_its_budget(tmp_path, durable_clock):
    """The attempt a worker is running right now, in a step after the first."""
    url = sqlite_url(tmp_path)
    HOLD_ENTERED.clear()
    HOLD_RELEASE.clear()
    with durable.Engine(url, clock=durable_clock) as engine:
        wid = engine.start(Hold)
        runner = threading.Thread(target=engine.drain)
        runner.start()
        try:
            assert HOLD_ENTERED.wait(30), "the held step never started"
            shown = ok("--store", url, "show", wid)
        finally:
            HOLD_RELEASE.set()
            runner.join(30)
        assert engine.get_execution(wid).status == "completed"
    _, lines = _step_lines(shown)
    assert [ln.split()[:3] for ln in lines] == [
        ["first", "1/1", "completed"],
        ["held", "1/4", "running"],
    ], shown
    assert lines[0].endswith("-> 1"), shown


def test_show_keeps_columns_aligned_and_shows_results(tmp_path, durable_clock):
    url = sqlite_url(tmp_path)
    with durable.Engine(url, clock=durable_clock) as engine:
        wid = engine.start(Columns)
        engine.drain()  # pay completes; flaky fails its first attempt, a retry is due in 1 s
        due = engine.next_due()
        assert due is not None
        durable_clock.set(due)
        assert len(engine.scheduler.claim(None, limit=1)) == 1  # flaky's second attempt, in flight
        shown = ok("--store", url, "show", wid)
    header, lines = _step_lines(shown)
    assert [ln.split()[:3] for ln in lines] == [
        ["pay", "1/1", "completed"],
        [LONG, "1/3", "failed"],
        [LONG, "2/3", "running"],
    ], shown
    assert '-> {"charged": 42}' in lines[0]
    assert "ConnectionError: card network down -> retry at" in lines[1]
    # Every column starts where the header's does, whatever the name's length.
    status_at = header.index("status")
    attempt_end = header.index("attempt") + len("attempt")
    for line, (attempt_text, status) in zip(
        lines, [("1/1", "completed"), ("1/3", "failed"), ("2/3", "running")], strict=True
    ):
        assert line.index(status, len(LONG)) == status_at, shown
        assert line.index(attempt_text, 4) + len(attempt_text) == attempt_end, shown


@workflow("cli_fan_child")
class FanChild:
    @step
    def hello(self) -> None:
        put_context("hello", True)


@workflow("cli_fan")
class Fan:
    @step
    def load(self) -> None:
        put_context("xs", list(range(30)))
        put_context("few", [1, 2])

    @durable.foreach("few")
    def some(self, x: int) -> int:
        return x

    @durable.foreach("xs", concurrency=30, retry=Retry(max_attempts=2, backoff="constant", base=1))
    def many(self, x: int) -> int:
        print(f"item {x} says hello")
        if x == 3 and attempt() == 1:
            raise ValueError("three")
        return x

    @durable.parallel
    class both:
        @step
        def left(self) -> None:
            put_context("left", 1)

        @step
        def right(self) -> None:
            put_context("child", durable.call_workflow(FanChild))


def test_show_prints_branches_items_and_children(tmp_path, durable_clock):
    url = sqlite_url(tmp_path)
    with durable.Engine(url, clock=durable_clock) as engine:
        wid = engine.start(Fan)
        run_due(engine, durable_clock)
        assert engine.get_execution(wid).status == "completed"
        (child,) = engine.list_executions(parent=wid)
        shown = ok("--store", url, "show", wid)
        child_shown = ok("--store", url, "show", child.id)
    assert "some[0]" in shown and "some[1]" in shown  # few items: each listed
    assert (
        "many[...]  30 items, attempts: 30 completed, 1 failed; failed attempts in many[3]" in shown
    )
    assert "many[4]" not in shown  # many items: summed up
    assert "both.left" in shown and "both.right" in shown
    assert f"children\n    {child.id}  cli_fan_child" in shown
    assert (
        f"parent     {wid} (this is a child workflow, started by its step both.right)"
        in child_shown
    )
    assert f"(each item, with what it logged and printed: durable show {wid} --step many)" in shown


def test_show_step_lists_every_item_with_its_output(tmp_path, durable_clock):
    url = sqlite_url(tmp_path)
    with durable.Engine(url, clock=durable_clock) as engine:
        wid = engine.start(Fan)
        run_due(engine, durable_clock)
    shown = ok("--store", url, "show", wid, "--step", "many")
    assert "many[...]" not in shown
    for i in range(30):
        assert f"    many[{i}] " in shown
    assert "item 29 says hello" in shown  # the output of an item past the first 20
    assert "some[0]" not in shown and "both.left" not in shown
    result = cli("--store", url, "show", wid, "--step", "nope")
    assert result.exit_code == 1
    assert "has no attempt of step 'nope'; its steps that ran: both, " in result.output
    group = ok("--store", url, "show", wid, "--step", "both")
    assert "both.left" in group and "both.right" in group and "many[" not in group


# -- recovery: retry, fork, and what show prints of them ------------------------------------

FIXED = {"now": False}


@workflow("cli_recover")
class Recover:
    @step
    def load(self) -> None:
        put_context("total", 10)

    @step
    def charge(self) -> None:
        if not FIXED["now"]:
            raise RuntimeError("gateway down")
        put_context("charged", durable.context.get_context("total"))
        if durable.context.get_context("log"):  # (the fork's context has them)
            put_context("log", [*durable.context.get_context("log"), "charged"])
            put_context("meta", {**durable.context.get_context("meta"), "by": "card"})


def test_retry_and_fork_from_the_command_line(tmp_path, durable_clock):
    url = sqlite_url(tmp_path)
    engine = durable.Engine(url, clock=durable_clock)
    FIXED["now"] = False
    wid = engine.start(Recover)
    engine.drain()
    assert engine.get_execution(wid).status == "failed"
    shown = ok("--store", url, "show", wid)
    assert "set total = 10" in shown  # what load changed in the context
    FIXED["now"] = True
    assert f"{wid}: pending again at step charge (visit 2)" in ok("--store", url, "retry", wid)
    engine.drain()
    assert engine.get_execution(wid).context == {"total": 10, "charged": 10}
    given = '{"total": 7, "log": ["loaded"], "meta": {"id": 1}}'
    out = ok("--store", url, "fork", wid, "--from-step", "charge", "--context", given)
    fid = out.strip()
    engine.drain()
    forked = engine.get_execution(fid)
    assert (forked.status, forked.context, forked.forked_from) == (
        "completed",
        {"total": 7, "log": ["loaded", "charged"], "meta": {"id": 1, "by": "card"}, "charged": 7},
        wid,
    )
    shown = ok("--store", url, "show", fid)
    assert f"forked     from {wid}" in shown
    # a list grown at its end and a dict changed in part: only what changed is shown
    assert 'add log += ["charged"]' in shown and 'set meta.by = "card"' in shown
    bad = cli("--store", url, "fork", wid, "--from-step", "charge", "--context", "[1]")
    assert bad.exit_code != 0 and "a JSON object" in bad.output
    nope = cli("--store", url, "retry", wid)
    assert nope.exit_code == 1 and "is completed; only a failed, cancelled" in nope.output
    engine.close()


def _deployed(*names: str) -> type:
    """The same workflow class as successive deploys define it."""
    ns = {}
    for name in names:

        def run(self: object) -> None:
            wait_for_any_event(["go"])

        run.__name__ = name
        ns[name] = step(run)
    return workflow("cli_deploy")(type("Deployed", (), ns))


def test_check_lists_what_the_loaded_code_cannot_continue_and_exits_1(tmp_path, durable_clock):
    url = sqlite_url(tmp_path)
    engine = durable.Engine(url, clock=durable_clock)
    _deployed("a", "b")
    fine = engine.start("cli_deploy")
    engine.drain()  # waiting at a
    assert "ok: the loaded code can continue" in ok("--store", url, "check")
    engine.send_event(fine, "go")
    engine.drain()  # waiting at b
    stuck = engine.start("cli_deploy")
    engine.drain()  # waiting at a
    _deployed("a", "c")  # b is gone
    result = cli("--store", url, "check")
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"{fine}  cli_deploy  at b: step 'b' is gone")
    assert stuck not in result.output
    engine.close()


def test_check_exits_3_when_the_check_itself_cannot_run(tmp_path, durable_clock, monkeypatch):
    (tmp_path / "broken_workflows.py").write_text("raise RuntimeError('half-written module')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    url = sqlite_url(tmp_path)
    durable.Engine(url, clock=durable_clock).close()
    result = cli("--store", url, "-i", "broken_workflows", "check")
    assert result.exit_code == 3, result.output
    assert "the check could not run" in result.output and "half-written module" in result.output
    missing = cli("--store", "postgresql://nobody@127.0.0.1:1/none", "check")
    assert missing.exit_code == 3, missing.output
    assert cli("--store", url, "check", "--no-such-option").exit_code == 2


# -- schedules ----------------------------------------------------------------------------


@workflow("cli_cron")
class CliCron:
    @step
    def run(self) -> None:
        put_context("ran", True)


def test_schedules_list_pause_resume_remove_and_show(tmp_path, durable_clock):
    url = sqlite_url(tmp_path)
    engine = durable.Engine(url, clock=durable_clock)
    assert ok("--store", url, "schedules").strip() == "no schedules"
    engine.schedule(CliCron, "*/5 * * * *", name="often", timezone="Europe/Paris")
    line = ok("--store", url, "schedules").strip()
    assert ok("--store", url, "schedules", "list").strip() == line
    assert line.startswith("often") and "'*/5 * * * *' Europe/Paris" in line
    assert "catch_up=latest overlap=allow" in line and "next " in line
    assert "paused" in ok("--store", url, "schedules", "pause", "often")
    assert "next " in ok("--store", url, "schedules", "resume", "often")
    durable_clock.set(engine.get_schedule("often").next_tick)
    engine.drain()
    (ex,) = engine.list_executions()
    assert "schedule   often, tick 20" in ok("--store", url, "show", ex.id)
    assert "(schedule often tick" in ok("--store", url, "list")
    assert "removed schedule often" in ok("--store", url, "schedules", "remove", "often")
    missing = cli("--store", url, "schedules", "pause", "often")
    assert missing.exit_code == 1 and "no schedule named 'often'" in missing.output
    engine.close()


def test_graph_prints_mermaid_or_dot_and_an_executions_states(tmp_path, durable_clock):
    url = sqlite_url(tmp_path)
    engine = durable.Engine(url, clock=durable_clock)
    out = ok("--store", url, "graph", "cli_recover")
    assert out.startswith("flowchart TD") and '"load"' in out
    dot = ok("--store", url, "graph", "cli_recover", "--format", "dot")
    assert dot.startswith('digraph "cli_recover"') and '"load" -> "charge";' in dot
    FIXED["now"] = True
    wid = engine.start(Recover)
    engine.drain()
    styled = ok("--store", url, "graph", "cli_recover", "--format", "dot", "--execution", wid)
    assert 'class="completed"' in styled
    bad = cli("--store", url, "graph", "cli_recover", "--format", "png")
    assert bad.exit_code == 2
    engine.close()


def test_a_worker_with_no_workflows_says_so_and_exits_2(tmp_path):
    """A worker claims only workflows it has the code of: without -i it could never run
    anything, so it does not start."""
    run = _run_script(tmp_path, "--store", "sqlite:///w.db", "worker")
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("Error: this worker has no workflows to run"), run.stderr
    assert "-i MODULE" in run.stderr


def test_cancel_says_what_happens_next_with_or_without_the_workflows_code(tmp_path):
    """Without the workflow's code, the CLI cannot know whether it compensates: it says
    so rather than promise compensations."""
    (tmp_path / "noop_flows.py").write_text(NO_OP_FLOWS)
    store = ("--store", "sqlite:///c.db")
    ids = [
        _run_script(tmp_path, *store, "-i", "noop_flows", "start", "cli_no_op").stdout.strip()
        for _ in range(2)
    ]
    known = _run_script(tmp_path, *store, "-i", "noop_flows", "cancel", ids[0])
    assert known.returncode == 0, known.stderr
    assert known.stdout == f"{ids[0]}: cancelled\n"
    unknown = _run_script(tmp_path, *store, "cancel", ids[1])
    assert unknown.returncode == 0, unknown.stderr
    assert unknown.stdout == (
        f"{ids[1]}: cancelling: a worker that runs 'cli_no_op' runs its compensations, if "
        "it has any, then it ends (import its module with -i to know which)\n"
    )
