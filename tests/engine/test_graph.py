"""durable.graph: every example workflow in docs/, drawn as DOT, parsed back with a real
DOT parser (pydot) and checked against the workflow's plan; Mermaid text; an execution's
states on the nodes."""

from __future__ import annotations

import dataclasses
import html
import re
from pathlib import Path

import pydot
import pytest
import sqlalchemy as sa

import durable
from durable import compensation, decision, dsl, foreach, parallel, step, workflow
from durable.context import get_context, increment_context, put_context
from durable.stores.memory import MemoryStore

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _unquote(name: str) -> str:
    """A DOT ID as written (a quoted string's escaped quotes and backslashes read back)."""
    return re.sub(r'\\(["\\])', r"\1", name[1:-1]) if name.startswith('"') else name


def _label(text: str) -> str:
    """A DOT label's text (durable writes each ``&`` as ``&amp;``: Graphviz reads
    entities in labels)."""
    return html.unescape(_unquote(text))


def _parsed(dot: str) -> tuple[set[str], set[tuple[str, str, str]], set[tuple[str, str]]]:
    (g,) = pydot.graph_from_dot_data(dot)
    nodes = {_unquote(n.get_name()) for n in g.get_nodes()} - {"node", "graph", "edge"}
    for sub in g.get_subgraphs():
        nodes |= {_unquote(n.get_name()) for n in sub.get_nodes()}
    solid, dashed = set(), set()
    for e in g.get_edges():
        a, b = _unquote(e.get_source()), _unquote(e.get_destination())
        label = _label(e.get_label() or '""')
        if e.get_style() == "dashed":
            dashed.add((a, b))
        else:
            solid.add((a, b, label))
    return nodes, solid, dashed


def _expected(wdef: dsl.WorkflowDef):
    """The plan, read from the WorkflowDef through its own API (not through the graph)."""
    nodes = {"[start]", "[end]"}
    solid: set[tuple[str, str, str]] = set()
    dashed: set[tuple[str, str]] = set()

    def into(sdef):
        return sdef.name if sdef is not None else "[end]"

    def out(sdef):
        return f"[join]{sdef.name}" if sdef.kind == "parallel" else sdef.name

    solid.add(("[start]", wdef.first_step.name, ""))
    for sdef in wdef.steps:
        nodes.add(sdef.name)
        units = sdef.branches if sdef.kind == "parallel" else ()
        if sdef.kind == "parallel":
            nodes.add(f"[join]{sdef.name}")
        for b in units:
            nodes.add(b.name)
            solid |= {(sdef.name, b.name, ""), (b.name, f"[join]{sdef.name}", "")}
        for s in (sdef, *units):
            if s.undo is not None:
                nodes.add(f"[undo]{s.undo.name}")
                dashed.add((s.name, f"[undo]{s.undo.name}"))
        following = wdef.next_step(sdef.name)
        if sdef.kind == "decision":
            solid.add((out(sdef), into(following), "None"))
            solid |= {(sdef.name, t, t) for t in sdef.targets}
        else:
            solid.add((out(sdef), into(following), ""))
        if sdef.when is not None:
            dashed.add((sdef.name, into(following)))
    return nodes, solid, dashed


def _check(wdef: dsl.WorkflowDef) -> None:
    dot = durable.graph(wdef.name, format="dot")
    assert _parsed(dot) == _expected(wdef), wdef.name
    mermaid = durable.graph(wdef.name)
    assert mermaid.startswith("flowchart TD")
    # one Mermaid node per DOT node, one arrow per DOT edge
    nodes, solid, dashed = _expected(wdef)
    assert len(re.findall(r"^  n\d+[\[\(\{>]", mermaid, re.M)) == len(nodes)
    assert len(re.findall(r"^  n\d+ -", mermaid, re.M)) == len(solid) + len(dashed)


PAGES = sorted(p.name for p in (ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("page", PAGES)
def test_every_workflow_a_docs_page_defines_is_drawn_as_its_plan(page, monkeypatch):
    blocks = BLOCK.findall((ROOT / "docs" / page).read_text())
    # (each page on a registry of its own: pages reuse names, as separate apps would)
    monkeypatch.setattr(dsl, "_registry", {})
    namespace = {"__name__": f"docs_{page.removesuffix('.md')}"}
    for block in blocks:
        try:
            exec(compile(block, f"docs/{page}", "exec"), namespace)
        except Exception:  # a snippet that is not a program of its own (index.md's)
            continue
    defined = list(dsl.registered_workflows().values())
    for wdef in defined:
        _check(wdef)
    if page in ("flow.md", "sagas.md", "cron.md"):
        assert defined, f"{page} defines workflows: none were drawn"


@workflow("graph_all_kinds")
class AllKinds:
    @step(compensate="unload")
    def load(self):
        put_context("items", [1, 2, 3])

    @step(when="express")
    def rush(self):
        pass

    @parallel
    class checks:
        @step(compensate="unreserve")
        def reserve(self):
            pass

        @step
        def score(self):
            pass

    @foreach("items")
    def each(self, item):
        return item * 2

    @decision("rush", "ship")
    def route(self):
        increment_context("loops")
        return "rush" if get_context("loops") < 2 else None

    @step
    def pack(self):
        pass

    @step
    def ship(self):
        raise RuntimeError("no courier")

    @compensation
    def unload(self):
        pass

    @compensation
    def unreserve(self):
        pass


def test_every_kind_of_node_and_edge(durable_engine):
    _check(dsl.get_workflow("graph_all_kinds"))
    dot = durable.graph(AllKinds, format="dot")
    assert '"route" -> "rush" [label="rush"]' in dot  # a decision's edge, labelled
    assert '"load" -> "[undo]unload" [label="compensate", style=dashed]' in dot


def test_an_execution_styles_each_node_by_its_state(durable_engine):
    wid = durable_engine.start(AllKinds)
    durable_engine.run_until(wid)
    ex = durable_engine.get_execution(wid, include_steps=True)
    assert ex.status == "compensated"
    dot = durable.graph(AllKinds, format="dot", execution=ex)
    (g,) = pydot.graph_from_dot_data(dot)
    state = {_unquote(n.get_name()): _unquote(n.get("class") or '""') for n in g.get_nodes()}
    assert state["load"] == "compensated"  # completed, then undone
    assert state["rush"] == "skipped" and state["ship"] == "failed"
    assert state["checks.reserve"] == "compensated" and state["checks.score"] == "completed"
    assert state["each"] == "completed" and state["pack"] == "completed"
    assert state["[undo]unload"] == "completed"
    assert "each (foreach items): 3 items (visit 2): 3 completed" in dot  # (the latest visit)
    mermaid = durable.graph(AllKinds, execution=ex)
    assert "classDef failed" in mermaid and re.search(r"class n\d+ compensated", mermaid)


@workflow("graph_items_as_they_stand")
class ItemsAsTheyStand:
    @step
    def load(self):
        put_context("xs", [1, 2, 3])

    @foreach("xs", concurrency=1, retry={"backoff": "constant", "base": 60})
    def each(self, x):
        if x == 2 and durable.context.attempt() == 1:
            raise RuntimeError("once")
        if x == 3:
            durable.sleep_for(10_000)
        return x


def test_a_foreach_shows_each_item_that_began_as_it_stands(durable_engine):
    def label() -> str:
        ex = durable_engine.get_execution(wid, include_steps=True)
        (g,) = pydot.graph_from_dot_data(
            durable.graph(ItemsAsTheyStand, format="dot", execution=ex)
        )
        (node,) = [n for n in g.get_nodes() if n.get_name() == '"each"']
        return _label(node.get("label")).removeprefix("each (foreach xs): ")

    wid = durable_engine.start(ItemsAsTheyStand)
    durable_engine.drain()  # the second item failed once: its retry is a minute away
    assert label() == "2 items: 1 completed, 1 retrying"
    durable_engine.advance_to_next()
    durable_engine.drain()  # (it ran again; the third sleeps)
    assert label() == "3 items: 2 completed, 1 waiting"
    durable_engine.run_until(wid)
    assert label() == "3 items: 3 completed"


def test_with_its_engine_a_foreach_is_counted_in_the_store_from_its_own_steps(
    durable_engine,
):
    # (what the dashboard draws: the execution's own attempts, never its items')
    def label(ex, engine) -> str:
        (g,) = pydot.graph_from_dot_data(
            durable.graph(ItemsAsTheyStand, format="dot", execution=ex, engine=engine)
        )
        (node,) = [n for n in g.get_nodes() if n.get_name() == '"each"']
        return _label(node.get("label")).removeprefix("each (foreach xs): ")

    def own(wid):
        ex = durable_engine.get_execution(wid)
        return dataclasses.replace(ex, steps=durable_engine.store.own_steps(wid))

    wid = durable_engine.start(ItemsAsTheyStand)
    durable_engine.drain()  # the second item failed once: its retry is a minute away
    assert label(own(wid), durable_engine) == "3 items: 1 completed, 1 pending, 1 retrying"
    durable_engine.advance_to_next()
    durable_engine.drain()  # (it ran again; the third sleeps)
    assert label(own(wid), durable_engine) == "3 items: 2 completed, 1 waiting"
    durable_engine.run_until(wid)
    full = durable_engine.get_execution(wid, include_steps=True)
    assert label(own(wid), durable_engine) == label(full, None) == "3 items: 3 completed"


def test_bad_arguments_say_what_would_be_right(durable_engine):
    with pytest.raises(durable.ConfigError, match="'mermaid' or 'dot'"):
        durable.graph(AllKinds, format="png")  # type: ignore[arg-type]
    wid = durable_engine.start(AllKinds)
    with pytest.raises(durable.ConfigError, match="include_steps=True"):
        durable.graph(AllKinds, execution=durable_engine.get_execution(wid))
    with pytest.raises(durable.WorkflowNotFound):
        durable.graph("no_such_workflow")


@workflow("graph_child")
class GraphChild:
    @step
    def work(self):
        if durable.context.input() == "fail":
            raise RuntimeError("child failed")


@workflow("graph_parent")
class GraphParent:
    @step
    def prepare(self):
        pass

    @step
    def call(self):
        durable.sleep_for(1000)
        return durable.call_workflow(GraphChild, "ok")

    @step
    def fire(self):
        durable.start_workflow(GraphChild, "fail")
        durable.start_workflow(GraphChild, "later")


def test_an_execution_draws_its_children_from_the_steps_that_started_them(durable_engine):
    wid = durable_engine.start(GraphParent)
    durable_engine.run_all()  # (the children it started without waiting too)
    children = durable_engine.list_executions(parent=wid)
    assert len(children) == 3
    ex = durable_engine.get_execution(wid, include_steps=True)
    dot = durable.graph(GraphParent, format="dot", execution=ex, engine=durable_engine)
    nodes, _, dashed = _parsed(dot)
    by_input = {c.input: c for c in children}
    ok, failed, later = (f"[child]{by_input[k].id}" for k in ("ok", "fail", "later"))
    assert {ok, failed, later} <= nodes
    assert {("call", ok), ("fire", failed), ("fire", later)} <= dashed
    (g,) = pydot.graph_from_dot_data(dot)
    state = {_unquote(n.get_name()): _unquote(n.get("class") or '""') for n in g.get_nodes()}
    assert state[ok] == "completed" and state[failed] == "failed"
    # Without an engine an Execution is drawn as its plan and states only; an id is read,
    # with its children, from the engine given (by default, durable's default engine).
    assert "[child]" not in durable.graph(GraphParent, format="dot", execution=ex)
    mermaid = durable.graph(GraphParent, execution=wid, engine=durable_engine)
    assert mermaid.count("(child)") == 3 and "-.->" in mermaid


@workflow("graph_waiting_branch")
class GraphWaitingBranch:
    @parallel
    class both:
        @step
        def ask(self):
            return durable.wait_for_input("ok")

        @step
        def other(self):
            pass


def test_a_branch_waiting_for_input_is_drawn_waiting(durable_engine):
    wid = durable_engine.start(GraphWaitingBranch)
    durable_engine.run_all()
    ex = durable_engine.get_execution(wid, include_steps=True)
    (g,) = pydot.graph_from_dot_data(durable.graph(GraphWaitingBranch, format="dot", execution=ex))
    state = {_unquote(n.get_name()): _unquote(n.get("class") or '""') for n in g.get_nodes()}
    assert state["both.ask"] == "waiting" and state["both.other"] == "completed"


# -- names that once collided or broke the text ----------------------------------------------


@workflow("graph_start_end")
class StartEnd:
    @step
    def start(self):
        pass

    @step
    def end(self):
        pass


def test_steps_named_start_and_end_are_steps_of_their_own():
    _check(dsl.get_workflow("graph_start_end"))
    nodes, solid, _ = _parsed(durable.graph(StartEnd, format="dot"))
    assert {"[start]", "start", "end", "[end]"} <= nodes
    assert {("[start]", "start", ""), ("start", "end", ""), ("end", "[end]", "")} == solid


@workflow("graph_special_names")
class SpecialNames:
    """Step names may hold any character but ``.[]``: these are the ids special nodes
    had (start, end, a group's join, a compensation's note, the children's note)."""

    @step(name="(start)")
    def a(self):
        pass

    @parallel
    class pack:
        @step
        def box(self):
            pass

    @step(name="pack/join", compensate="refund")
    def b(self):
        pass

    @step(name="undo:refund")
    def c(self):
        pass

    @step(name="child:more")
    def d(self):
        pass

    @step(name="(end)")
    def e(self):
        pass

    @compensation
    def refund(self):
        pass


def test_no_step_name_is_the_id_of_a_special_node():
    wdef = dsl.get_workflow("graph_special_names")
    _check(wdef)
    nodes, solid, dashed = _parsed(durable.graph(SpecialNames, format="dot"))
    names = {"(start)", "pack", "pack.box", "pack/join", "undo:refund", "child:more", "(end)"}
    assert len(nodes) == len(names) + 4  # each step, the group's join, undo, start and end
    assert names <= nodes
    assert ("pack/join", "undo:refund", "") in solid  # step to step, not undo to itself
    assert len(dashed) == 1 and next(iter(dashed))[0] == "pack/join"
    with pytest.raises(durable.ConfigError, match="contains one of"):
        step(name="[start]")(lambda self: None)


@workflow('graph_"quoted" #1 <b>é✓')
class Quoted:
    @step
    def ställ(self):
        pass

    @decision("packe")
    def välj(self):
        return None

    @step
    def packe(self):
        pass

    # (a label that begins with a backtick is Mermaid's markdown string; an entity is HTML)
    @step(name='`md` &amp; "q" \\')
    def marked(self):
        pass


def test_dot_keeps_unicode_and_escapes_quotes():
    dot = durable.graph(Quoted, format="dot")
    assert '"ställ"' in dot and "\\u" not in dot  # UTF-8 as it is, no JSON escapes
    (g,) = pydot.graph_from_dot_data(dot)
    assert _unquote(g.get_name()) == 'graph_"quoted" #1 <b>é✓'
    _check(dsl.get_workflow('graph_"quoted" #1 <b>é✓'))
    # a backslash and a quote escaped; an & an entity of its own in a label, not in an id
    name = '`md` &amp; "q" \\'
    assert '"`md` &amp; \\"q\\" \\\\" [label="`md` &amp;amp; \\"q\\" \\\\"' in dot
    (node,) = [n for n in g.get_nodes() if _unquote(n.get_name()) == name]
    assert _label(node.get("label")) == name


MERMAID = ROOT / "tests" / "mermaid"


def _mermaid_read(text: str) -> dict:
    """What Mermaid's own parser reads in ``text`` (tests/mermaid/parse.mjs, on node)."""
    import json
    import os
    import shutil
    import subprocess

    if shutil.which("node") is None or not (MERMAID / "node_modules").is_dir():
        if os.environ.get("CI"):
            pytest.fail("Mermaid's parser is not installed: npm ci --prefix tests/mermaid")
        pytest.skip("Mermaid's parser is not installed: npm ci --prefix tests/mermaid")
    done = subprocess.run(
        ["node", str(MERMAID / "parse.mjs")],
        input=text,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    read = json.loads(done.stdout)
    assert read["ok"], (read, text)

    def decoded(label: str) -> str:
        # (Mermaid keeps entity codes as placeholders until it renders)
        label = re.sub(r"ﬂ°°(\d+)¶ß", lambda m: chr(int(m[1])), label)
        return re.sub(r"ﬂ°(\w+)¶ß", lambda m: html.unescape(f"&{m[1]};"), label)

    for n in read["nodes"]:
        n["label"] = decoded(n["label"])
    for e in read["edges"]:
        e["label"] = decoded(e["label"])
    return read


@pytest.mark.slow
def test_mermaid_reads_back_every_label_and_edge():
    for workflow_class in (AllKinds, Quoted, StartEnd, SpecialNames):
        g = durable.graphs.plan_graph(dsl.get_workflow(workflow_class))
        read = _mermaid_read(durable.graph(workflow_class))
        assert read["type"] == "flowchart-v2"
        assert sorted(n["label"] for n in read["nodes"]) == sorted(
            label for label, _, _ in g.nodes.values()
        )
        labels = {n["id"]: n["label"] for n in read["nodes"]}
        ids = {nid: f"n{i}" for i, nid in enumerate(g.nodes)}
        edges = sorted((e["from"], e["to"], e["label"], e["stroke"]) for e in read["edges"])
        assert edges == sorted(
            (ids[a], ids[b], label, "dotted" if dashed else "normal")
            for a, b, label, dashed in g.edges
        )
        assert labels[ids["[start]"]] == "start"


@workflow('`kid` "x" <y> &amp;')
class OddlyNamedChild:
    @step
    def work(self):
        pass


@workflow("graph_mermaid_run")
class MermaidRun:
    @step
    def fire(self):
        durable.start_workflow(OddlyNamedChild)

    @step
    def boom(self):
        raise RuntimeError("boom")


def test_mermaid_reads_back_an_execution_s_states_and_children(durable_engine):
    wid = durable_engine.start(MermaidRun)
    durable_engine.run_all()
    read = _mermaid_read(durable.graph(MermaidRun, execution=wid, engine=durable_engine))
    by_label = {n["label"]: (n["id"], n["classes"]) for n in read["nodes"]}
    assert by_label["fire"][1] == ["completed"] and by_label["boom"][1] == ["failed"]
    child, classes = by_label['`kid` "x" <y> &amp; (child)']
    assert classes == ["completed"]
    edge = {"from": by_label["fire"][0], "to": child, "label": "child", "stroke": "dotted"}
    assert edge in read["edges"]


# -- children started anywhere -------------------------------------------------------------


@workflow("graph_many_waits")
class ManyWaits:
    @step
    def chatty(self):
        for _ in range(40):
            durable.sleep_for(1)
        return durable.call_workflow(GraphChild, "after 40 waits")


@workflow("graph_units_children")
class UnitsChildren:
    @step
    def load(self):
        put_context("xs", [1, 2])

    @foreach("xs")
    def each(self, x):
        return durable.call_workflow(GraphChild, f"item {x}")

    @parallel
    class both:
        @step
        def left(self):
            durable.start_workflow(GraphChild, "from left")

        @step
        def right(self):
            pass


def _children_edges(engine, workflow_class, stored_before_v14=False) -> dict[str, str]:
    """Each child's input -> the node its edge comes from; ``stored_before_v14``: drawn
    after the store has forgotten which step run started each child."""
    wid = engine.start(workflow_class)
    engine.run_all()
    assert engine.get_execution(wid).status in ("completed", "failed")
    children = {c.id: c.input for c in engine.list_executions(parent=wid)}
    if stored_before_v14:
        _forget_parent_steps(engine.store)
        assert {c.parent_step for c in engine.list_executions(parent=wid)} == {None}
    _, _, dashed = _parsed(
        durable.graph(workflow_class, format="dot", execution=wid, engine=engine)
    )
    return {children[b.removeprefix("[child]")]: a for a, b in dashed if b.startswith("[child]")}


def _forget_parent_steps(store) -> None:
    """Every row as schema v13 left it (or a store that does not keep parent_step)."""
    if isinstance(store, MemoryStore):
        for row in store._rows.values():
            row.parent_step = None
    else:
        with store.engine.begin() as conn:
            conn.execute(sa.text("UPDATE durable_executions SET parent_step = NULL"))


def test_children_stored_before_their_step_run_was_get_the_edge_their_ids_give(
    durable_engine,
):
    # (a child's id is derived from the run that started it and the start's position)
    edges = {"ok": "call", "fail": "fire", "later": "fire"}
    assert _children_edges(durable_engine, GraphParent) == edges
    assert _children_edges(durable_engine, GraphParent, stored_before_v14=True) == edges
    # units have ids of their own, and a position past the ones tried is not guessed:
    # those children are drawn without an edge, never with a wrong one
    assert _children_edges(durable_engine, UnitsChildren, stored_before_v14=True) == {}
    assert _children_edges(durable_engine, ManyWaits, stored_before_v14=True) == {}


def test_a_child_started_after_many_waits_has_its_edge(durable_engine):
    assert _children_edges(durable_engine, ManyWaits) == {"after 40 waits": "chatty"}


def test_children_of_items_and_branches_are_joined_to_their_nodes(durable_engine):
    assert _children_edges(durable_engine, UnitsChildren) == {
        "item 1": "each",
        "item 2": "each",
        "from left": "both.left",
    }
    (child,) = [
        c for c in durable_engine.list_executions(workflow=GraphChild) if c.input == "from left"
    ]
    assert child.parent_step == "both.left"


@workflow("graph_renamed_each")
class RenamedEach:
    @step
    def load(self):
        put_context("xs", [1, 2, 3])

    @foreach("xs")
    def each(self, x):
        return x


def test_a_renamed_foreach_counts_the_items_run_under_its_old_name(durable_engine, monkeypatch):
    wid = durable_engine.start(RenamedEach)
    durable_engine.run_all()
    ex = durable_engine.get_execution(wid, include_steps=True)
    monkeypatch.setattr(dsl, "_registry", {})

    @workflow("graph_renamed_each")
    class Renamed:
        @step
        def load(self):
            pass

        @foreach("xs", renamed_from="each")
        def every(self, x):
            return x

    dot = durable.graph(Renamed, format="dot", execution=ex)
    assert "every (foreach xs): 3 items: 3 completed" in dot
