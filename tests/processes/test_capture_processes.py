"""A `durable worker` process keeps what its steps print, from the step and from a thread
it starts, still writes it to its own stdout and stderr, and `durable show` prints it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

import durable

MODULE = textwrap.dedent(
    """
    import logging
    import sys
    import threading

    from durable import step, workflow

    @workflow("capture_proc")
    class CaptureProc:
        @step
        def talk(self):
            print("hello from the step")
            logging.getLogger("capture").warning("a record")
            t = threading.Thread(target=lambda: print("hello from its thread", file=sys.stderr))
            t.start()
            t.join()
    """
)


@pytest.mark.processes
def test_a_worker_process_keeps_and_passes_on_what_steps_print(tmp_path, monkeypatch):
    (tmp_path / "capture_mod.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import capture_mod  # noqa: F401

    url = f"sqlite:///{tmp_path / 'capture.db'}"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    cli = [sys.executable, "-m", "durable.cli", "--store", url, "-i", "capture_mod"]
    client = durable.Engine(url)
    out, err = tmp_path / "worker.out", tmp_path / "worker.err"
    try:
        wid = client.start("capture_proc")
        with out.open("wb") as o, err.open("wb") as e:
            worker = subprocess.Popen([*cli, "worker"], env=env, stdout=o, stderr=e)
            try:
                ex = client.wait(wid, timeout=60_000)
            finally:
                worker.send_signal(signal.SIGTERM)
                worker.wait(60)
    finally:
        client.close()
    assert ex.status == "completed"
    assert "hello from the step" in out.read_text()
    worker_err = err.read_text()
    assert "hello from its thread" in worker_err
    assert "WARNING capture: a record" in worker_err  # the worker's own logging, once
    assert worker_err.count("a record") == 1
    shown = subprocess.run(
        [*cli, "show", wid], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "out | hello from the step" in shown
    assert "err | hello from its thread" in shown
    assert "log WARNING a record" in shown
    # the record the worker's log handler wrote to stderr is not kept again as output
    assert not [line for line in shown.splitlines() if " | " in line and "a record" in line]
