"""Reading a documentation page's code blocks and running them as a reader would.

Every fenced block of every page under docs/ (and the README) is one of these, by its
info string; a block that is none of them fails ``test_every_block_is_accounted_for``:

* ```` ```python ```` with nothing after it: durable code. A page's such blocks, in order,
  form one module: run by pytest when it holds a ``def test_``, else as a script.
* ```` ```python title="path/file.py" ````: a file the reader writes: written to that path
  in the run's folder when the run reaches it (a later block with the same path replaces
  it), so the commands and code after it use it.
* ```` ```python title="DBOS" ```` (a title among ``OTHER_TOOLS``) and ```` ```elixir ````:
  another tool's code, shown for comparison: compiled when it is Python, not run.
* ```` ```console ````: a shell session: its ``$ `` lines (with their ``\\`` continuations)
  are run, in order, by bash with ``set -e`` in the run's folder; ``... &`` keeps running
  until the page's run ends; ``pip install X`` checks that X is installed instead of
  installing it; ``export NAME=value`` also holds for the page's later blocks; a
  PostgreSQL URL stands for a fresh database, and a port in ``PORTS`` for a free one. The
  other lines are the output the reader sees: see ``Run.console`` for how it is checked.
* ```` ```text ````: output, not run. ```` ```toml ```` and ```` ```yaml ````: parsed.
* ```` ```shell ````, ```` ```ini ````, ```` ```dockerfile ````: commands and configuration
  for what the test does not have (a collector, systemd, a container runtime, a fresh
  machine): shown, not run; test_docs.py's ``UNRUN`` says how many each page may have.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```[ \t]*$", re.S | re.M)
ATTR = re.compile(r'(\w+)="([^"]*)"')
OTHER_TOOLS = {"DBOS", "Temporal", "Celery", "Elixir", "Inngest", "Prefect"}
# Languages shown for a tool this machine does not run (systemd, docker): not executed.
UNRUN = {"shell", "ini", "dockerfile"}
PG_URL = re.compile(r"postgresql://[^\s'\"]+")
# The ports the pages serve on (the dashboard's and the metrics' defaults): a command's
# gets a free port of the run's own instead, so that runs side by side do not collide.
PORTS = re.compile(r"(?<=[ :])(?:8765|9464)\b")


@dataclass
class Block:
    page: str
    line: int
    lang: str
    attrs: dict[str, str]
    body: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def kind(self) -> str:
        title = self.attrs.get("title")
        if self.lang == "python" and not self.attrs:
            return "module"
        if self.lang == "python" and title in OTHER_TOOLS:
            return "other"
        if self.lang == "elixir" and title in OTHER_TOOLS | {None}:
            return "other"
        if self.lang == "python" and title and re.fullmatch(r"[\w./-]+\.py", title):
            return "file"
        if self.lang == "console" and not self.attrs:
            return "console"
        if self.lang in {"text", "toml", "yaml"} | UNRUN and set(self.attrs) <= {"title"}:
            return self.lang
        return "unknown"


def pages() -> list[str]:
    """Every page of the site, relative to docs/, and the README (as ``../README.md``)."""
    docs = ROOT / "docs"
    return [*sorted(str(p.relative_to(docs)) for p in docs.rglob("*.md")), "../README.md"]


def blocks(page: str) -> list[Block]:
    text = (ROOT / "docs" / page).read_text()
    found = []
    for match in FENCE.finditer(text):
        info = match["info"].strip()
        lang, _, rest = info.partition(" ")
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(page, line, lang, dict(ATTR.findall(rest)), match["body"]))
    return found


def commands(body: str) -> list[tuple[str, list[str]]]:
    """A console block's commands (its ``$ `` lines, each joined with its ``\\``
    continuations), each with the output lines shown after it."""
    out: list[tuple[str, list[str]]] = []
    lines = iter(body.splitlines())
    for line in lines:
        if not line.startswith("$ "):
            if out and line.strip():
                out[-1][1].append(line)
            continue
        command = line[2:]
        while command.endswith("\\"):
            command = command[:-1] + " " + next(lines).strip()
        out.append((command.strip(), []))
    return out


BACKGROUND = re.compile(r"(?P<command>.*?)\s&\s*(?:#.*)?")
# What varies from one run to the next in a shown output line, and what stands for it.
VARYING = re.compile(
    r"(?P<skip>(?:\.\.\.|…)+)"  # (a run of them is one: pytest's dots, say)
    r"|(?P<url>(?:sqlite|postgresql|postgres|memory)://[^\s;,]*[^\s;,:])"
    r"|(?P<worker>[\w.-]+:\d+:[0-9a-f]{8}\b)"
    r"|(?P<uuid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
    r"|(?P<hex>\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{6,}\b)"
    r"|(?P<number>\d+(?:\.\d+)?)"
    r"|(?P<space>\s+)"
)
STANDS_FOR = {
    "skip": ".*?",
    "url": r"(?:sqlite|postgresql|postgres|memory)://\S*?",  # the run's own store
    "worker": r"\S+:\d+:[0-9a-f]{8}",
    "uuid": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "hex": "[0-9a-f]+",
    "number": r"\d+(?:\.\d+)?",
    "space": r"\s+",
}


def shown(line: str) -> re.Pattern[str]:
    """A shown output line as a pattern: ids, numbers and times may differ, ``...`` stands
    for anything, spacing is free; every other character must be there."""
    pattern, at = [], 0
    text = line.strip()
    for match in VARYING.finditer(text):
        pattern.append(re.escape(text[at : match.start()]))
        pattern.append(STANDS_FOR[match.lastgroup or "skip"])
        at = match.end()
    pattern.append(re.escape(text[at:]))
    return re.compile("".join(pattern))


@dataclass
class Run:
    """One run of a page, as a reader following it would do, in ``folder``."""

    folder: Path
    env: dict[str, str]
    databases: Callable[[str], str] | None  # a fresh database for a URL a command names
    shells: list[subprocess.Popen[bytes]] = field(default_factory=list)
    lasting: list[tuple[str, int]] = field(default_factory=list)  # (a block's place, pid)
    log: list[str] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)

    def port(self, shown: str) -> int:
        if shown not in self.ports:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.ports[shown] = probe.getsockname()[1]
        return self.ports[shown]

    def write(self, block: Block) -> None:
        path = self.folder / block.attrs["title"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.body)

    def console(self, block: Block) -> None:
        """Run the block's commands as one bash script (its variables hold from one line to
        the next); each must succeed, except one whose shown output starts with
        ``Error:``, which must fail, and one whose shown output ends with ``(exit status
        N)``, which must end so; every line shown after a command that does not run in
        the background must be in what the block printed (see ``shown``)."""
        pids = self.folder / f".console-{block.line}.pids"
        script, expected = ["set -euo pipefail"], []
        fresh = self.databases

        def database(url: re.Match[str]) -> str:
            assert fresh is not None
            return fresh(url[0])

        for written, output in commands(block.body):
            command = PG_URL.sub(database, written) if fresh else written
            command = PORTS.sub(lambda port: str(self.port(port[0])), command)
            background = BACKGROUND.fullmatch(command)
            if command.startswith("pip install "):
                wanted = shlex.split(command, comments=True)[2:]
                script.append(shlex.join([sys.executable, __file__, "installed", *wanted]))
                continue
            if background:  # a session of its own, so that its end alone is noticed
                inner = shlex.quote(background["command"])
                script.append(f"setsid bash -c {inner} & echo $! >> {pids.name}")
                continue
            export = re.fullmatch(r"export (\w+)=(\S+)", command)
            if export:
                self.env[export[1]] = shlex.split(export[2])[0]
            status = re.fullmatch(r"\(exit status (\d+)\)", output[-1]) if output else None
            if status:  # the command must end with that status
                want = status[1]
                wrong = shlex.quote(f"should have ended with status {want}: {written}")
                script.append(
                    f"set +e\n{command}\nrc=$?\nset -e\n"
                    f'if [ $rc != {want} ]; then echo {wrong} "(got $rc)"; exit 1; fi\n'
                    'echo "(exit status $rc)"'
                )
            elif output and output[0].startswith("Error:"):  # it must fail
                refused = shlex.quote(f"this command should have failed: {written}")
                script.append(f"if {command}\nthen echo {refused}; exit 1; fi")
            else:
                script.append(command)
            expected += [(written, line) for line in output]
        out = self.folder / f".console-{block.line}.log"
        with out.open("wb") as sink:
            proc = subprocess.Popen(
                ["bash", "-c", "\n".join(script)],
                cwd=self.folder,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.shells.append(proc)
            try:
                rc = proc.wait(timeout=180)
            except subprocess.TimeoutExpired:
                rc = None
        printed = out.read_text()
        self.log.append(f"--- {block.where}: rc={rc}\n{printed}")
        if pids.exists():
            for pid in map(int, pids.read_text().split()):
                _own_session(pid)
                self.lasting.append((block.where, pid))
        if rc != 0:
            raise AssertionError(f"{block.where}: the console block failed:\n" + self.log[-1])
        lines = printed.splitlines()
        missing = [
            f"  after `{command}`: {line.strip()}"
            for command, line in expected
            if not any(shown(line).search(got) for got in lines)
        ]
        if missing:
            raise AssertionError(
                f"{block.where}: output shown on the page but not printed:\n"
                + "\n".join(missing)
                + "\n"
                + self.log[-1]
            )

    def stop(self) -> None:
        """End what the page left running, as a reader's Ctrl-C (SIGINT) would; a command
        started with ``&`` that ended on its own before that fails the run."""
        ended = []
        for where, pid in self.lasting:
            try:
                os.killpg(pid, signal.SIGINT)
            except ProcessLookupError:
                ended.append(where)
        for _, pid in self.lasting:
            for _ in range(300):  # up to 30 s to stop, as a worker finishing its steps
                try:
                    os.killpg(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        for proc in self.shells:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        if ended:
            raise AssertionError(
                f"what {', '.join(sorted(set(ended)))} started with & ended before the "
                "page's run did:\n"
                + "\n".join(
                    f"--- {log.name}:\n{log.read_text()}"
                    for log in sorted(self.folder.glob(".console-*.log"))
                )
            )


def _own_session(pid: int) -> None:
    """Wait for a background command to be in the session setsid gives it: until then it
    is in its shell's group, and stopping the run could not reach it by its own."""
    for _ in range(100):
        try:
            if os.getsid(pid) == pid:
                return
        except ProcessLookupError:
            return  # it ended already: stop() says so
        time.sleep(0.05)
    raise AssertionError(f"background command {pid} did not start its own session in 5 s")


def parse_config(block: Block) -> None:
    if block.lang == "toml":
        tomllib.loads(block.body)
    elif block.lang == "yaml":
        yaml.safe_load(block.body)


def check_installed(wanted: list[str]) -> None:
    """``pip install`` in a page names distributions (with extras) this venv has."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.markers import Marker
    from packaging.requirements import Requirement

    for spec in wanted:
        req = Requirement(spec)
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            raise SystemExit(f"pip install {spec}: {req.name} is not installed") from None
        for extra in req.extras:
            needs = [
                Requirement(r.split(";", 1)[0])
                for r in dist.requires or []
                if ";" in r and Marker(r.split(";", 1)[1]).evaluate({"extra": extra})
            ]
            if not needs and extra not in (dist.metadata.get_all("Provides-Extra") or []):
                raise SystemExit(f"pip install {spec}: {req.name} has no extra {extra!r}")
            for need in needs:
                try:
                    distribution(need.name)
                except PackageNotFoundError:
                    raise SystemExit(
                        f"pip install {spec}: {need.name} ({req.name}[{extra}]) is not installed"
                    ) from None


if __name__ == "__main__" and sys.argv[1:2] == ["installed"]:
    check_installed(sys.argv[2:])
