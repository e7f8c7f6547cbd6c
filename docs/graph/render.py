"""Write docs/graph/*.dot from the workflows the docs define (and render *.svg with
Graphviz's `dot`, when it is installed): python docs/graph/render.py. A test checks that
the .dot files are what durable.graph gives now."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import durable
from durable import dsl
from durable_testing.engine import TimeTravelEngine

HERE = Path(__file__).resolve().parent
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def workflows_of(page: str) -> None:
    """Define the workflows of docs/``page`` (on a registry of their own)."""
    dsl._registry = {}
    namespace = {"__name__": "docs"}
    for block in BLOCK.findall((HERE.parent / page).read_text()):
        try:
            exec(compile(block, page, "exec"), namespace)
        except Exception:  # (a snippet that is not a program of its own)
            continue


def drawings() -> dict[str, str]:
    """Each .dot file's name and the DOT text it should hold."""
    out = {}
    workflows_of("index.md")
    out["process_order.dot"] = durable.graph("process_order", format="dot")
    workflows_of("graph.md")
    engine = TimeTravelEngine("memory://")
    try:
        wid = engine.start("fulfil")
        engine.run_until(wid)
        ex = engine.get_execution(wid, include_steps=True)
        out["fulfil_run.dot"] = durable.graph("fulfil", format="dot", execution=ex)
    finally:
        engine.close()
    return out


def main() -> None:
    for name, text in drawings().items():
        (HERE / name).write_text(text)
        if shutil.which("dot"):
            svg = HERE / name.replace(".dot", ".svg")
            subprocess.run(["dot", "-Tsvg", str(HERE / name), "-o", str(svg)], check=True)
        else:
            print(f"wrote {name}; install Graphviz to render it", file=sys.stderr)


if __name__ == "__main__":
    main()
