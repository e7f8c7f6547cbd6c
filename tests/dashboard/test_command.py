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


def test_the_command_says_where_it_serves_and_how(tmp_path, monkeypatch):
    import uvicorn

    served = []

    def run(server, sockets):  # (serving nothing: the line comes before)
        served.append(sockets[0].getsockname())
        sockets[0].close()
        server.started = True

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)  # (never serve here)
    store = f"sqlite:///{tmp_path / 'd.db'}"
    result = CliRunner().invoke(main, ["dashboard", "--store", store, "--port", "0"])
    assert result.exit_code == 0, result.output
    ((host, port),) = served
    assert host == "127.0.0.1" and port > 0  # (--port 0: the one the system chose)
    assert result.stderr == (
        f"durable dashboard: serving http://127.0.0.1:{port}/ for {store}; actions allowed; "
        "no token: it answers only requests addressed to this machine\n"
    )
    token = "s3cret-token-of-enough-length"
    secured = CliRunner().invoke(
        main, ["dashboard", "--store", store, "--port", "0", "--token", token, "--read-only"]
    )
    assert secured.exit_code == 0, secured.output
    assert "; read-only; a token is required" in secured.stderr
    assert token not in secured.output and token not in secured.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        refused = CliRunner().invoke(main, ["dashboard", "--store", store, "--port", str(taken)])
    assert refused.exit_code == 1
    assert f"cannot listen on 127.0.0.1 port {taken}" in refused.output


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
        assert proc.stderr is not None
        started = proc.stderr.readline().decode()  # (written before it listened)
        assert started.startswith(f"durable dashboard: serving http://127.0.0.1:{port}/ for ")
        assert "read-only" in started and "a token is required" in started
        assert token not in started
        page = httpx.get(url, headers={"authorization": f"Bearer {token}"}, timeout=5)
        assert page.status_code == 200 and "read-only" in page.text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
