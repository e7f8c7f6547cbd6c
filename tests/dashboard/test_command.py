"""`durable dashboard`: it refuses to listen beyond loopback without a token, and serves
the app when started as a process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import httpx2 as httpx
import pytest
from click.testing import CliRunner

from durable.cli import main

from helpers import eventually


def test_a_non_loopback_host_without_a_token_is_refused(tmp_path):
    result = CliRunner().invoke(
        main, ["dashboard", "--store", f"sqlite:///{tmp_path / 'd.db'}", "--host", "0.0.0.0"]
    )
    assert result.exit_code == 1
    assert "--host 0.0.0.0 without --token" in result.output
    assert "give --token" in result.output
    short = CliRunner().invoke(
        main,
        ["dashboard", "--store", f"sqlite:///{tmp_path / 'd.db'}", "--token", "abc"],
    )
    assert short.exit_code == 1 and "at least 16" in short.output


@pytest.mark.slow
@pytest.mark.processes
def test_the_command_serves_the_dashboard(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "t" * 24
    env = {**os.environ, "DURABLE_DASHBOARD_TOKEN": token}
    env.pop("DURABLE_STORE", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "durable.cli",
            "dashboard",
            "--store",
            f"sqlite:///{tmp_path / 'd.db'}",
            "--port",
            str(port),
            "--read-only",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/executions"

    def answers() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 401  # it needs the token
        except httpx.TransportError:
            return proc.poll() is not None

    try:
        assert eventually(answers, timeout=30) and proc.poll() is None
        page = httpx.get(url, headers={"authorization": f"Bearer {token}"}, timeout=5)
        assert page.status_code == 200 and "read-only" in page.text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
