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
  installing it; ``export NAME=value`` also holds for the page's later blocks. Other lines
  are the output the reader sees, not checked.
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
import subprocess
import sys
import tomllib
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


def commands(body: str) -> list[str]:
    """A console block's commands: its ``$ `` lines, each joined with its continuations."""
    out: list[str] = []
    lines = iter(body.splitlines())
    for line in lines:
        if not line.startswith("$ "):
            continue
        command = line[2:]
        while command.endswith("\\"):
            command = command[:-1] + " " + next(lines).strip()
        out.append(command.strip())
    return out


@dataclass
class Run:
    """One run of a page, as a reader following it would do, in ``folder``."""

    folder: Path
    env: dict[str, str]
    pg_url: str | None  # what a postgresql:// URL in a command stands for
    background: list[subprocess.Popen[bytes]] = field(default_factory=list)
    lasting: list[str | None] = field(default_factory=list)  # a block's place if it used &
    log: list[str] = field(default_factory=list)

    def write(self, block: Block) -> None:
        path = self.folder / block.attrs["title"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.body)

    def console(self, block: Block) -> None:
        script = ["set -euo pipefail"]
        for written in commands(block.body):
            command = PG_URL.sub(self.pg_url, written) if self.pg_url else written
            if command.startswith("pip install "):
                wanted = shlex.split(command, comments=True)[2:]
                script.append(shlex.join([sys.executable, __file__, "installed", *wanted]))
                continue
            export = re.fullmatch(r"export (\w+)=(\S+)", command)
            if export:
                self.env[export[1]] = shlex.split(export[2])[0]
            script.append(command)
        out = self.folder / f".console-{block.line}.log"
        with out.open("wb") as sink:
            proc = subprocess.Popen(
                ["bash", "-c", "\n".join(script)],
                cwd=self.folder,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its background jobs are stopped with the run
            )
            self.background.append(proc)
            lasting = any(c.endswith("&") or " & " in c for c in commands(block.body))
            self.lasting.append(block.where if lasting else None)
            try:
                rc = proc.wait(timeout=180)
            except subprocess.TimeoutExpired:
                rc = None
        self.log.append(f"--- {block.where}: rc={rc}\n{out.read_text()}")
        if rc != 0:
            raise AssertionError(f"{block.where}: the console block failed:\n" + self.log[-1])

    def stop(self) -> None:
        """End what the page left running, as a reader's Ctrl-C (SIGINT) would; a command
        started with ``&`` that ended on its own before that fails the run."""
        ended = []
        for proc, where in zip(self.background, self.lasting, strict=True):
            try:
                os.killpg(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                if where:
                    ended.append(where)
                continue
        for proc in self.background:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                continue
            try:
                proc.wait(timeout=30)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        if ended:
            raise AssertionError(
                f"what {', '.join(ended)} started with & ended before the page's run did:\n"
                + "\n".join(
                    (self.folder / f".console-{w.rsplit(':', 1)[1]}.log").read_text() for w in ended
                )
            )


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
