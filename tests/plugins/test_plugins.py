"""The plugin API: built-ins register through entry points, exactly as third parties do."""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import durable
from durable import hookspecs
from durable.plugins import PluginHost, StoreRegistry, hookimpl
from durable.stores.memory import MemoryStore

ROOT = Path(__file__).resolve().parents[2]


def test_builtins_are_entry_point_plugins():
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="durable")}
    assert eps["builtins"] == "durable._builtins"
    host = PluginHost()
    assert host.stores().names() == ["memory", "postgres", "postgresql", "sqlite"]
    assert host.clocks().names() == ["system"]
    # a name registered by two plugins is refused, naming both
    with pytest.raises(durable.ConfigError, match=r"twice: by .*Again and by entrypoint:builtins"):

        class Again:
            @hookimpl
            def durable_register_clocks(self, registry):
                registry.add("system", object)

        PluginHost([Again()]).clocks()


@durable.workflow("plugins_short_one")
class ShortOne:
    @durable.step
    def only(self):
        pass


class _Counting:
    """A plugin class installed through an entry point (stood in for below)."""

    def __init__(self) -> None:
        self.created: list[str] = []

    @hookimpl
    def durable_execution_headers(self, workflow, execution_id, created_by):
        self.created.append(execution_id)


def test_an_installed_plugin_passed_again_is_loaded_once_or_refused(monkeypatch):
    from durable import _builtins, plugins

    installed = _Counting()
    monkeypatch.setattr(
        plugins,
        "entry_point_plugins",
        lambda refresh=False: [("builtins", _builtins), ("counting", installed)],
    )
    # the same object, installed and given (or given twice): loaded once, runs once
    with durable.Engine("memory://", plugins=[installed, installed]) as engine:
        wid = engine.start(ShortOne)
    assert installed.created == [wid]
    # another instance of its class would run every hook a second time: refused
    with pytest.raises(durable.ConfigError) as refused:
        PluginHost([_Counting()])
    assert str(refused.value) == (
        "plugins=[...] has a _Counting, and the installed plugin 'counting' (entry point "
        "group 'durable') is one too: it is loaded already; leave it out of "
        "plugins=[...], or uninstall the package that installs it"
    )


def test_plugins_of_a_generic_kind_are_not_taken_for_the_same_plugin(monkeypatch):
    """Two classes given as plugins, or two namespaces, are as many plugins (each kind is
    ``type`` or ``SimpleNamespace``, whoever made them)."""
    from types import SimpleNamespace

    from durable import _builtins, plugins

    class InstalledClass:
        @staticmethod
        @hookimpl
        def durable_execution_headers(workflow, execution_id, created_by):
            return {"by": "class"}

    class GivenClass:
        @staticmethod
        @hookimpl
        def durable_execution_headers(workflow, execution_id, created_by):
            return {"also": "class"}

    installed_ns = SimpleNamespace(durable_execution_headers=hookimpl(lambda workflow: None))
    monkeypatch.setattr(
        plugins,
        "entry_point_plugins",
        lambda refresh=False: [
            ("builtins", _builtins),
            ("installed", InstalledClass),
            ("installed-ns", installed_ns),
        ],
    )
    given_ns = SimpleNamespace(durable_execution_headers=hookimpl(lambda workflow: None))
    host = PluginHost([GivenClass, given_ns])
    assert host.execution_headers("w", "id", "start") == {"by": "class", "also": "class"}


def test_every_hookspec_is_documented_with_its_signature():
    doc = (ROOT / "docs" / "plugins.md").read_text()
    specs = [name for name in dir(hookspecs) if name.startswith("durable_")]
    assert len(specs) == 16
    for name in specs:
        sig = inspect.signature(getattr(hookspecs, name))
        params = ", ".join(sig.parameters)
        assert f"{name}({params})" in doc, f"docs/plugins.md lacks {name}({params})"


def test_a_scheme_taken_twice_is_a_clear_error():
    class Other:
        @hookimpl
        def durable_register_stores(self, registry: StoreRegistry) -> None:
            registry.add("memory", lambda url: MemoryStore())

    with pytest.raises(durable.ConfigError, match="store scheme 'memory' is registered twice"):
        durable.Engine("memory://", plugins=[Other()])


def test_a_failing_observer_never_fails_the_workflow(caplog):
    from workflows import ORDER, OrderWorkflow

    class Broken:
        @hookimpl
        def durable_step_completed(self, execution, step):
            raise RuntimeError("observer bug")

    with durable.Engine("memory://", plugins=[Broken()]) as eng:
        wid = eng.start(OrderWorkflow, ORDER)
        eng.drain()
        assert eng.get_execution(wid).status == "completed"
    assert "observer bug" in caplog.text


PLUGIN_SOURCE = '''
"""A throwaway third-party durable plugin."""
import json, os
from durable.plugins import hookimpl
from durable.stores.memory import MemoryStore

class MyStore(MemoryStore):
    def __init__(self, url):
        super().__init__()
        self.url = url

@hookimpl
def durable_register_stores(registry):
    registry.add("myscheme", MyStore)

def _log(event, execution):
    with open(os.environ["MYPLUGIN_LOG"], "a") as f:
        f.write(json.dumps([event, execution.id, execution.status]) + "\\n")

@hookimpl
def durable_workflow_started(execution):
    _log("started", execution)

@hookimpl
def durable_workflow_completed(execution):
    _log("completed", execution)
'''

SCRIPT = """
import json, durable
from durable import step, workflow
from durable.context import put_context

@workflow("via_plugin")
class ViaPlugin:
    @step
    def only(self):
        put_context("ok", True)

engine = durable.Engine("myscheme://anything")
wid = engine.start(ViaPlugin)
engine.drain()
print(json.dumps({"store": type(engine.store).__module__ + "." + type(engine.store).__name__,
                  "url": engine.store.url, "id": wid,
                  "status": engine.get_execution(wid).status}))
"""


@pytest.mark.slow  # pip installs a package, then runs two processes
def test_a_throwaway_plugin_distribution_is_found_and_used(tmp_path):
    project = tmp_path / "durable-myplugin"
    project.mkdir()
    (project / "durable_myplugin.py").write_text(PLUGIN_SOURCE)
    (project / "pyproject.toml").write_text(
        textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "durable-myplugin"
        version = "0.0.1"

        [project.entry-points.durable]
        myplugin = "durable_myplugin"

        [tool.setuptools]
        py-modules = ["durable_myplugin"]
    """)
    )
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(project),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert list(site.glob("durable_myplugin-0.0.1.dist-info/entry_points.txt"))
    log = tmp_path / "events.jsonl"
    env = {**os.environ, "PYTHONPATH": str(site), "MYPLUGIN_LOG": str(log)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    result = json.loads(out.stdout)
    assert result["store"] == "durable_myplugin.MyStore"
    assert result["url"] == "myscheme://anything"
    assert result["status"] == "completed"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert events == [
        ["started", result["id"], "running"],
        ["completed", result["id"], "completed"],
    ]

    # and without the distribution on the path, the scheme is unknown, clearly
    env.pop("PYTHONPATH")
    bad = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode != 0
    assert re.search(
        r"no store is registered for scheme 'myscheme'.*installed schemes: memory", bad.stderr
    )


NO_PSYCOPG = """
import sys
sys.modules["psycopg"] = None  # as if the postgres extra were not installed
import durable
from durable import step, workflow

@workflow("no_psycopg")
class W:
    @step
    def s(self):
        pass

engine = durable.Engine("memory://")
wid = engine.start(W)
engine.drain()
assert engine.get_execution(wid).status == "completed"
try:
    durable.Engine("postgresql://postgres@127.0.0.1:5432/test")
except durable.ConfigError as exc:
    print(exc)
"""


def test_durable_works_without_the_postgres_extra():
    out = subprocess.run(
        [sys.executable, "-c", NO_PSYCOPG], capture_output=True, text=True, timeout=120, check=True
    )
    assert "pip install 'durable-engine[postgres]'" in out.stdout
