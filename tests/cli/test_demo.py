"""``durable demo``: the quick start's workflow lives in durable/_demo.py only; the README
and the docs show it, and this test holds them to it."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _order_workflow(source: str) -> str:
    """The OrderWorkflow class of a source text, without type annotations."""
    tree = ast.parse(source)
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "OrderWorkflow"]
    for node in ast.walk(cls):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.returns = None
        if isinstance(node, ast.arg):
            node.annotation = None
    return ast.dump(cls)


@pytest.mark.parametrize("doc", ["README.md", "docs/index.md"])
def test_the_quick_start_shows_the_demo_workflow(doc):
    (block,) = [
        b
        for b in re.findall(r"```python\n(.*?)```", (ROOT / doc).read_text(), re.S)
        if "class OrderWorkflow" in b
    ]
    demo = (ROOT / "durable" / "_demo.py").read_text()
    assert _order_workflow(block) == _order_workflow(demo), (
        f"{doc}'s quick start differs from durable/_demo.py, which `durable demo` runs: "
        "change them together"
    )


@pytest.mark.slow  # waits out a real 2 s backoff in a process of its own
def test_demo_runs_the_quick_start_and_keeps_its_runs(tmp_path):
    """Waits out the payment step's real 2 s backoff once."""
    env = {k: v for k, v in os.environ.items() if k != "DURABLE_STORE"}
    run = subprocess.run(
        [sys.executable, "-m", "durable.cli", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert out.startswith("started process_order as "), out
    assert "  charge_payment: waiting for the retry at " in out
    assert "  status     completed" in out
    assert re.search(r"charge_payment +1/3 +failed .*PaymentError: card network timeout", out)
    assert re.search(r"charge_payment +2/3 +completed", out)
    assert "runs of process_order kept in sqlite:///durable.db: 1 (0 from earlier demo runs)" in out
    assert (tmp_path / "durable.db").is_file()
