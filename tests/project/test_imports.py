"""What starting up imports: the pytest plugin (which pytest loads at every start), the
``durable`` command and ``import durable`` import only what they use. These tests assert
which modules a fresh interpreter has imported, never how long it took."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import durable
import durable_testing

ROOT = Path(__file__).resolve().parents[2]

# Neither a cheap start nor a store that does not need them should import these.
HEAVY = {"sqlalchemy", "psycopg", "freezegun", "hypothesis", "jsonschema", "pydantic"}


def imported(code: str, cwd: Path) -> set[str]:
    """The modules a fresh interpreter has imported once it has run ``code``."""
    script = (
        f"{code}\nimport sys as _s\n_m = sorted(_s.modules)\n"
        "import json as _j\nprint('\\n' + _j.dumps(_m))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DURABLE_STORE", "PYTHONPATH")}
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return set(json.loads(run.stdout.rstrip().rsplit("\n", 1)[1]))


def top_level(modules: set[str]) -> set[str]:
    return {m.split(".", 1)[0] for m in modules}


def durable_modules(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".", 1)[0] in ("durable", "durable_testing")}


def cli(*args: str) -> str:
    return (
        "from durable.cli import main\n"
        "try:\n"
        f"    main({list(args)!r}, prog_name='durable')\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
    )


# -- the pytest plugin ---------------------------------------------------------------------


def test_loading_the_pytest_plugin_imports_nothing_of_durable(tmp_path):
    mods = imported("import durable_testing.plugin", tmp_path)
    assert durable_modules(mods) == {"durable_testing", "durable_testing.plugin"}
    assert top_level(mods) & HEAVY == set()


@pytest.mark.slow  # a pytest run in a process of its own
def test_a_pytest_run_imports_freezegun_and_the_engine_only_for_a_fixture(pytester):
    pytester.makepyfile(
        test_user="""
import sys

def test_without_fixtures():
    assert "freezegun" not in sys.modules
    assert "durable.engine" not in sys.modules
    assert "durable_testing.clock" not in sys.modules

def test_with_the_clock(durable_clock):
    assert "freezegun" in sys.modules

def test_with_the_engine(durable_engine):
    assert "durable.engine" in sys.modules
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


# -- the command line ----------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--help"], ["list", "--help"], ["worker", "--help"]])
def test_help_imports_neither_the_engine_nor_a_store(tmp_path, args):
    mods = imported(cli(*args), tmp_path)
    assert durable_modules(mods) == {
        "durable",
        "durable._text",
        "durable.cli",
        "durable.errors",
        "durable.models",
    }
    assert top_level(mods) & (HEAVY | {"pluggy", "asyncio"}) == set()


def test_a_command_on_a_memory_store_imports_no_database_library(tmp_path):
    mods = imported(cli("--store", "memory://", "list"), tmp_path)
    assert "durable.engine" in mods
    assert top_level(mods) & HEAVY == set()


def test_a_command_on_sqlite_imports_sqlalchemy_but_not_the_postgres_driver(tmp_path):
    mods = imported(cli("--store", f"sqlite:///{tmp_path / 'x.db'}", "list"), tmp_path)
    assert "sqlalchemy" in mods
    assert top_level(mods) & HEAVY == {"sqlalchemy"}


# -- the package ---------------------------------------------------------------------------


def test_import_durable_imports_only_the_errors(tmp_path):
    mods = imported("import durable", tmp_path)
    assert durable_modules(mods) == {"durable", "durable.errors"}
    assert top_level(mods) & (HEAVY | {"pluggy", "asyncio"}) == set()


def test_every_public_name_and_submodule_is_there_on_first_use(tmp_path):
    imported(
        "import durable, durable_testing\n"
        "from durable import *\n"
        "from durable_testing import *\n"
        "assert durable.durations.to_ms(1) == 1  # a submodule, as when __init__ imported it\n"
        "assert durable_testing.clock.TimeTravelClock is TimeTravelClock\n"
        "for m in (durable, durable_testing):\n"
        "    missing = set(m.__all__) - set(dir(m))\n"
        "    assert not missing, missing\n",
        tmp_path,
    )


@pytest.mark.parametrize("package", [durable, durable_testing], ids=lambda p: p.__name__)
def test_the_lazy_names_are_the_public_names_of_their_modules(package):
    # The lazy-import table is the mechanism under test here, so it is read directly.
    lazy = package._MODULE_OF
    eager = {n for n in package.__all__ if n not in lazy}
    assert set(lazy) <= set(package.__all__)
    for name in eager:
        assert name in vars(package), f"{name} is in __all__ but neither imported nor lazy"
    for name, module in lazy.items():
        assert getattr(package, name) is getattr(sys.modules[module], name)
    # A submodule named like a public name would replace it once imported.
    folder = ROOT / package.__name__
    submodules = {p.stem for p in folder.glob("*.py")} | {
        p.name for p in folder.iterdir() if (p / "__init__.py").is_file()
    }
    assert set(package.__all__) & submodules == set()


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'durable' has no attribute 'nope'"):
        durable.nope
    with pytest.raises(ImportError, match="cannot import name 'Nope'"):
        from durable import Nope  # noqa: F401
    assert not hasattr(durable_testing, "nope")
