"""Workflow graphs: a workflow's plan as Mermaid or Graphviz DOT text, and, given an
execution, each node styled by how far that execution got (``durable.graph``).

The graph is built from the plan the class declares (``WorkflowDef``), never by running
anything: every step in written order, a decision's edges to its targets, a ``when``
step's skip edge, a parallel group's fork and join around its branches, a foreach, and
each compensation (a dashed edge from the step it undoes). Child workflows are started by
a step's code, not declared, so they are drawn from an execution: each child a node of its
own, joined by a dashed edge to the step run that started it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from durable._starts import child_id
from durable.dsl import StepDef, WorkflowDef, get_workflow
from durable.errors import ConfigError
from durable.models import Execution, Status, StepPhase, StepStatus

__all__ = ["Graph", "graph", "plan_graph"]

#: what a node's state may be, with an execution
STATES = (
    "completed",
    "failed",
    "running",
    "waiting",
    "skipped",
    "pending",
    "compensated",
    "cancelled",
)
_FILL = {
    "completed": "#c8e6c9",
    "failed": "#ffcdd2",
    "running": "#bbdefb",
    "waiting": "#fff9c4",
    "skipped": "#eeeeee",
    "pending": "#ffffff",
    "compensated": "#e1bee7",
    "cancelled": "#d7ccc8",
}


@dataclass
class Graph:
    """Nodes (id -> label, shape, kind) and edges (from, to, label, dashed)."""

    nodes: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    edges: list[tuple[str, str, str, bool]] = field(default_factory=list)
    groups: dict[str, list[str]] = field(default_factory=dict)  # parallel: its branches
    states: dict[str, str] = field(default_factory=dict)

    def node(self, nid: str, label: str, shape: str, kind: str) -> str:
        self.nodes[nid] = (label, shape, kind)
        return nid

    def edge(self, a: str, b: str, label: str = "", dashed: bool = False) -> None:
        self.edges.append((a, b, label, dashed))


def _when_label(sdef: StepDef) -> str:
    when = sdef.when
    return f"when {when}" if isinstance(when, str) else "when ..."


#: The ids of the nodes that are not steps begin with ``[``, which no step, group or
#: compensation name may hold (dsl: ``.[]`` qualify units' names), so no name is one.
START, END = "[start]", "[end]"
#: the note that says more children were not drawn
MORE = "[more children]"


def _join(group: str) -> str:
    """The id of parallel group ``group``'s join (its fork's is the group's name)."""
    return f"[join]{group}"


def _undo(compensation: str) -> str:
    """The id of the note of compensation ``compensation``."""
    return f"[undo]{compensation}"


def _child(execution_id: str) -> str:
    """The id of the node of child workflow ``execution_id``."""
    return f"[child]{execution_id}"


def plan_graph(wdef: WorkflowDef) -> Graph:
    """The workflow's plan as a ``Graph``: a step's node id is its name, a branch's
    ``"group.step"``, a group's fork the group's name; the others begin with ``[``: a
    group's join ``"[join]group"``, a compensation's note ``"[undo]name"``, the start and
    end ``"[start]"`` and ``"[end]"`` (and, with an execution, a child ``"[child]id"``)."""
    g = Graph()
    g.node(START, "start", "circle", "start")
    g.node(END, "end", "doublecircle", "end")
    entry: dict[str, str] = {}  # step name -> the node an edge into it lands on
    leave: dict[str, str] = {}  # step name -> the node edges out of it leave from
    for sdef in wdef.steps:
        if sdef.kind == "parallel":
            fork = g.node(sdef.name, f"{sdef.name} (parallel)", "box", "fork")
            join = g.node(_join(sdef.name), f"{sdef.name} joined", "box", "join")
            g.groups[sdef.name] = []
            for b in sdef.branches:
                g.node(b.name, b.name, "box", "branch")
                g.groups[sdef.name].append(b.name)
                g.edge(fork, b.name)
                g.edge(b.name, join)
                if b.undo is not None:
                    undo = g.node(_undo(b.undo.name), f"undo {b.undo.name}", "note", "undo")
                    g.edge(b.name, undo, "compensate", dashed=True)
            entry[sdef.name], leave[sdef.name] = fork, join
            continue
        if sdef.kind == "foreach":
            label = f"{sdef.name} (foreach {sdef.items})"
            g.node(sdef.name, label, "box3d", "foreach")
        elif sdef.kind == "decision":
            g.node(sdef.name, sdef.name, "diamond", "decision")
        else:
            g.node(sdef.name, sdef.name, "box", "step")
        entry[sdef.name] = leave[sdef.name] = sdef.name
        if sdef.undo is not None:
            undo = g.node(_undo(sdef.undo.name), f"undo {sdef.undo.name}", "note", "undo")
            g.edge(sdef.name, undo, "compensate", dashed=True)
    g.edge(START, entry[wdef.first_step.name])
    for i, sdef in enumerate(wdef.steps):
        after = wdef.steps[i + 1].name if i + 1 < len(wdef.steps) else None
        nxt = END if after is None else entry[after]
        if sdef.kind == "decision":
            for target in sdef.targets:
                g.edge(leave[sdef.name], entry[target], target)
            g.edge(leave[sdef.name], nxt, "None")
        else:
            g.edge(leave[sdef.name], nxt)
        if sdef.when is not None:
            g.edge(entry[sdef.name], nxt, f"skipped ({_when_label(sdef)})", dashed=True)
    return g


def _states(g: Graph, wdef: WorkflowDef, ex: Execution) -> dict[str, str]:
    """Each node's state in execution ``ex`` (its latest run's, by name)."""
    states = {nid: "pending" for nid in g.nodes if nid not in (START, END)}
    for s in ex.steps or []:
        name = wdef.current_name(s.name) or s.name
        if s.phase == StepPhase.COMPENSATE:
            if s.status == StepStatus.COMPLETED and s.compensates is not None:
                undone = wdef.current_name(s.compensates) or s.compensates
                if undone in states:
                    states[undone] = "compensated"
                states[_undo(s.name)] = "completed"
            elif _undo(s.name) in states:
                states[_undo(s.name)] = s.status.value
            continue
        base = name.partition("[")[0]
        if base not in states:
            continue
        status = s.status.value
        states[base] = {"lost": "running", "suspended": "waiting"}.get(status, status)
        if base in g.groups and status == "completed":
            states[_join(base)] = "completed"
    if ex.current_step is not None and not ex.finished:
        cur = wdef.current_name(ex.current_step) or ex.current_step
        if cur in states:
            states[cur] = "waiting" if ex.status == Status.WAITING else "running"
    return {k: (v if v in STATES else "pending") for k, v in states.items()}


#: an execution's status as a node's state
_CHILD_STATE = {
    Status.PENDING: "pending",
    Status.RUNNING: "running",
    Status.WAITING: "waiting",
    Status.COMPLETED: "completed",
    Status.FAILED: "failed",
    Status.CANCELLED: "cancelled",
    Status.COMPENSATING: "running",
    Status.COMPENSATED: "compensated",
}
#: children drawn one by one; more are summed up in one node
CHILDREN_SHOWN = 50


def _node_of(name: str, g: Graph, wdef: WorkflowDef) -> str | None:
    """The node of the step run ``name`` (a step's, or a unit's: ``"group.step"`` is its
    branch's node, ``"step[i]"`` its foreach's)."""
    current = wdef.current_name(name) or name
    for candidate in (current, current.partition("[")[0]):
        if candidate in g.nodes:
            return candidate
    return None


def _guessed_starters(ex: Execution, g: Graph, wdef: WorkflowDef, most: int) -> dict[str, str]:
    """For children stored before their ``parent_step`` was (schema v14): child id ->
    the node of the step run whose derived id it is (durable._starts.child_id), trying
    the first ``most`` positions of each of the execution's own step runs."""
    found: dict[str, str] = {}
    runs = {(s.name, s.visit) for s in ex.steps or [] if s.phase == StepPhase.RUN}
    for name, visit in runs:
        node = _node_of(name, g, wdef)
        if node is None or "[" in name:
            continue
        for position in range(most):
            found[child_id(ex.id, name, visit, f"start{position}")] = node
        # (a call's position counts every wait the run reached, sleeps and events too)
        for position in range(most + 32):
            found[child_id(ex.id, name, visit, f"call{position}")] = node
    return found


def _add_children(g: Graph, wdef: WorkflowDef, ex: Execution, children: list[Execution]) -> None:
    shown = children[:CHILDREN_SHOWN]
    guessed: dict[str, str] | None = None
    for child in shown:
        nid = g.node(_child(child.id), f"{child.workflow} (child)", "component", "child")
        g.states[nid] = _CHILD_STATE.get(child.status, "pending")
        if child.parent_step is not None:
            starter = _node_of(child.parent_step, g, wdef)
        else:
            if guessed is None:
                guessed = _guessed_starters(ex, g, wdef, len(shown))
            starter = guessed.get(child.id)
        if starter is not None:
            g.edge(starter, nid, "child", dashed=True)
    if len(children) > CHILDREN_SHOWN:
        g.node(MORE, "more children, not drawn", "note", "child")


def graph(
    workflow: Any,
    format: Literal["mermaid", "dot"] = "mermaid",
    execution: Any = None,
    *,
    engine: Any = None,
    children: bool = True,
) -> str:
    """The workflow (a class or registered name) as Mermaid (``flowchart TD``) or
    Graphviz DOT text: every step, decision edges to their targets, ``when`` skip edges,
    parallel fork and join, foreach, and compensations (dashed). With ``execution`` (an
    ``Execution`` read with ``include_steps=True``, or an id) each node is
    styled by its state: completed, failed, running, waiting, skipped, pending,
    compensated, cancelled; a foreach's node shows its item count; and the child
    workflows the execution started are drawn (by their status), each joined by a dashed
    edge to the step that started it. An id, and the children, are read from ``engine``
    (default: durable's default engine when ``execution`` is an id; an Execution given
    without ``engine`` is drawn without its children). With ``engine`` a foreach's items
    are counted in its store, every item as it stands (pending ones too), so the
    execution's own attempts are enough (``Store.own_steps``); without it they are
    counted from the items' attempts among ``execution.steps``. ``children=False``
    leaves the children out (a page that lists them already)."""
    wdef = get_workflow(workflow)
    if format not in ("mermaid", "dot"):
        raise ConfigError(f"graph format {format!r}: use 'mermaid' or 'dot'")
    g = plan_graph(wdef)
    if execution is not None:
        if isinstance(execution, str) and engine is None:
            from durable._default import default_engine

            engine = default_engine()
        ex = _execution(execution, engine)
        if ex.workflow != wdef.name:
            raise ConfigError(
                f"execution {ex.id} is of workflow {ex.workflow!r}, not {wdef.name!r}"
            )
        g.states = _states(g, wdef, ex)
        for sdef in wdef.steps:
            if sdef.kind == "foreach":
                label, shape, kind = g.nodes[sdef.name]
                if engine is None:
                    items = _items(sdef.name, ex, wdef)
                else:
                    items = _stored_items(sdef.name, ex, wdef, engine.store)
                g.nodes[sdef.name] = (f"{label}: {items}", shape, kind)
        if engine is not None and children:
            started = engine.list_executions(parent=ex.id, limit=CHILDREN_SHOWN + 1)
            _add_children(g, wdef, ex, list(reversed(started)))
    return _dot(wdef, g) if format == "dot" else _mermaid(g)


def _items(name: str, ex: Execution, wdef: WorkflowDef) -> str:
    """How the items of the latest visit of foreach ``name`` that began stand: ``"3
    items: 2 completed, 1 retrying"`` (each item by its latest attempt, in the words of the
    graph's states: a suspended one is waiting, a lost one running, a failed one with a
    retry to come retrying while the foreach has not ended; items of a run under a name
    the step had before count too)."""

    def of(record: str) -> bool:
        base, bracket, _ = record.partition("[")
        return bool(bracket) and (wdef.current_name(base) or base) == name

    runs = [s for s in ex.steps or [] if s.phase == StepPhase.RUN and of(s.name)]
    if not runs:
        return "no items yet"
    visit = max(s.visit for s in runs)
    ended = ex.finished or any(
        s.visit == visit
        and (wdef.current_name(s.name) or s.name) == name
        and s.status in (StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.CANCELLED)
        for s in ex.steps or []
    )
    latest: dict[str, str] = {}  # item -> how it stands (attempts in the order they began)
    for s in runs:
        if s.visit != visit:
            continue
        status = _ITEM_STATE.get(s.status, s.status.value)
        if s.status == StepStatus.FAILED and s.retry_at is not None and not ended:
            status = "retrying"
        latest[s.name.partition("[")[2]] = status
    counts: dict[str, int] = {}
    for status in latest.values():
        counts[status] = counts.get(status, 0) + 1
    shown = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    again = f" (visit {visit})" if visit > 1 else ""
    return f"{len(latest)} item{'s' if len(latest) != 1 else ''}{again}: {shown}"


def _stored_items(name: str, ex: Execution, wdef: WorkflowDef, store: Any) -> str:
    """How the items of the latest run of foreach ``name`` that has items stand, counted
    in the store (``Store.unit_states``): ``"10000 items: 120 completed, 50 running,
    9830 pending"``. Its runs are those its own attempts record (under any name the step
    had) and the one it is at now, whose units run while it waits."""
    runs = {
        (s.visit, s.name)
        for s in ex.steps or []
        if s.phase == StepPhase.RUN
        and "[" not in s.name
        and (wdef.current_name(s.name) or s.name) == name
    }
    current = ex.current_step
    if current is not None and (wdef.current_name(current) or current) == name:
        runs.add((ex.current_visit, current))
    for visit, stored in sorted(runs, reverse=True):
        counts = store.unit_states(ex.id, stored, visit)
        if counts:
            total = sum(counts.values())
            shown = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
            again = f" (visit {visit})" if visit > 1 else ""
            return f"{total} item{'s' if total != 1 else ''}{again}: {shown}"
    return "no items yet"


#: an item's attempt's status as the graph says it
_ITEM_STATE = {StepStatus.SUSPENDED: "waiting", StepStatus.LOST: "running"}


def _execution(execution: Any, engine: Any) -> Execution:
    if isinstance(execution, Execution):
        if execution.steps is None:
            raise ConfigError("graph(execution=...) needs get_execution(..., include_steps=True)")
        return execution
    if isinstance(execution, str):
        ex: Execution = engine.get_execution(execution, include_steps=True)
        return ex
    raise ConfigError(f"graph(execution=...) takes an Execution or an id, got {execution!r}")


def _q(text: str) -> str:
    """A DOT quoted string: backslashes and quotes escaped, the rest (UTF-8) as it is."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _label(text: str) -> str:
    """A DOT label: a quoted string whose ``&`` is written ``&amp;`` (Graphviz reads
    ``&name;`` in a label as an HTML entity, so ``"a &lt; b"`` would show ``a < b``)."""
    return _q(text.replace("&", "&amp;"))


#: what Mermaid would read as markup inside a quoted label, as its entity codes ("#"
#: first: the codes themselves begin with it): a quote ends the label, a backtick at its
#: start makes it a markdown string (and one that is not closed does not parse), and
#: ``<``, ``>`` and ``&`` would be HTML where labels are rendered as HTML
_MERMAID_CODES = (
    ("#", "#35;"),
    ('"', "#quot;"),
    ("`", "#96;"),
    ("<", "#lt;"),
    (">", "#gt;"),
    ("&", "#amp;"),
)


def _m(text: str) -> str:
    """A Mermaid quoted label."""
    for char, code in _MERMAID_CODES:
        text = text.replace(char, code)
    return f'"{text}"'


def _dot(wdef: WorkflowDef, g: Graph) -> str:
    lines = [f"digraph {_q(wdef.name)} {{", "  rankdir=TB;", '  node [fontname="Helvetica"];']
    for group, branches in g.groups.items():
        lines.append(f"  subgraph {_q('cluster_' + group)} {{")
        lines.append(f"    label={_label(group)};")
        lines.extend(f"    {_q(n)};" for n in (group, *branches, _join(group)))
        lines.append("  }")
    for nid, (label, shape, _kind) in g.nodes.items():
        attrs = [f"label={_label(label)}", f"shape={shape}"]
        state = g.states.get(nid)
        if state is not None:
            attrs += ["style=filled", f"fillcolor={_q(_FILL[state])}", f"class={_q(state)}"]
        lines.append(f"  {_q(nid)} [{', '.join(attrs)}];")
    for a, b, label, dashed in g.edges:
        attrs = []
        if label:
            attrs.append(f"label={_label(label)}")
        if dashed:
            attrs.append("style=dashed")
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"  {_q(a)} -> {_q(b)}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid(g: Graph) -> str:
    ids = {nid: f"n{i}" for i, nid in enumerate(g.nodes)}
    shapes = {
        "circle": ("((", "))"),
        "doublecircle": ("(((", ")))"),
        "diamond": ("{", "}"),
        "note": (">", "]"),
        "box3d": ("[[", "]]"),
        "box": ("[", "]"),
        "component": ("[/", "/]"),
    }
    lines = ["flowchart TD"]
    for nid, (label, shape, _kind) in g.nodes.items():
        left, right = shapes[shape]
        lines.append(f"  {ids[nid]}{left}{_m(label)}{right}")
    for a, b, label, dashed in g.edges:
        arrow = "-.->" if dashed else "-->"
        text = f"|{_m(label)}|" if label else ""
        lines.append(f"  {ids[a]} {arrow}{text} {ids[b]}")
    if g.states:
        for state in STATES:
            lines.append(f"  classDef {state} fill:{_FILL[state]}")
        for nid, state in g.states.items():
            lines.append(f"  class {ids[nid]} {state}")
    return "\n".join(lines) + "\n"
