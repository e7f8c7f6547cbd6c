"""The ``durable`` command line.

Each command imports what it uses when it runs: ``durable --help`` or a command's
``--help`` imports neither the engine nor a store (nor SQLAlchemy), and every DurableError
a command raises is its error message, translated in one place (``_Commands``).
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import re
import socket
import sys
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from durable._text import printable, redact_url
from durable.errors import ConfigError, DurableError, StoreError
from durable.models import Status

if TYPE_CHECKING:
    from durable.engine import Engine
    from durable.models import Execution, Schedule, StepExecution, Wait

__all__ = ["format_execution", "main"]

log = logging.getLogger("durable.cli")


def _fmt_time(dt: datetime | None) -> str:
    return "-" if dt is None else dt.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _json(value: Any) -> str:
    # ensure_ascii escapes every control character (and lone surrogates) as \uXXXX
    return json.dumps(value)


def _step_line(s: StepExecution, width: int) -> str:
    took = "" if s.duration_ms is None else f"{s.duration_ms} ms"
    note = ""
    if s.error:
        note = f"{s.error.get('type')}: {s.error.get('message')}"
    if s.retry_at is not None:
        note += f" -> retry at {_fmt_time(s.retry_at)}"
    if s.result is not None:
        shown = _json(s.result)
        note += f"-> {shown if len(shown) <= 80 else shown[:77] + '...'}"
    if s.visit > 1:  # a step reached again: its attempts count from 1 in each visit
        note = f"(visit {s.visit}) {note}"
    if s.compensates is not None:
        note = f"(compensates {s.compensates}) {note}"
    return (
        f"    {printable(s.name):<{width}}  {f'{s.attempt}/{s.max_attempts}':>8}  "
        f"{s.status.value:<10}{_fmt_time(s.started_at):<25}{took:>10}  {printable(note)}"
    ).rstrip()


def format_execution(ex: Execution, step: str | None = None) -> str:
    """A human-readable account of an execution and, if loaded, its step attempts (with
    ``step``, only that step's, its foreach items each listed). Stored text is shown with
    control characters escaped, so it cannot drive the terminal."""
    p = printable
    lines = [
        f"execution {p(ex.id)}",
        f"  workflow   {p(ex.workflow)}",
        f"  status     {ex.status.value}",
        f"  queue      {p(ex.queue)} (priority {ex.priority})",
        f"  created    {_fmt_time(ex.created_at)}",
        f"  started    {_fmt_time(ex.started_at)}",
        f"  finished   {_fmt_time(ex.completed_at)}",
    ]
    if ex.idempotency_key is not None:
        lines.append(f"  key        {p(ex.idempotency_key)}")
    if ex.parent_id is not None:
        by = "" if ex.parent_step is None else f", started by its step {p(ex.parent_step)}"
        lines.append(f"  parent     {p(ex.parent_id)} (this is a child workflow{by})")
    if ex.forked_from is not None:
        lines.append(f"  forked     from {p(ex.forked_from)}")
    if ex.schedule is not None:
        lines.append(f"  schedule   {p(ex.schedule)}, tick {_fmt_time(ex.scheduled_at)}")
    if ex.status == Status.PENDING and ex.run_at is not None:
        lines.append(f"  runs at    {_fmt_time(ex.run_at)} (step {p(ex.current_step)})")
    if ex.status == Status.WAITING:
        wake = f"wakes at {_fmt_time(ex.run_at)}" if ex.run_at else "no timer"
        lines.append(f"  waiting    in step {p(ex.current_step)}, {wake}")
    if ex.error:
        lines.append(f"  error      {p(ex.error.get('type'))}: {p(ex.error.get('message'))}")
        if ex.error.get("retryable") is False:
            lines.append("             (an error its retry policy does not retry)")
    if ex.cancel_reason:
        lines.append(f"  reason     {p(ex.cancel_reason)}")
    for problem in ex.unreadable:
        lines.append(f"  unreadable {p(problem)}")
    lines.append(f"  input      {_json(ex.input)}")
    lines.append(f"  context    {_json(ex.context)}")
    if ex.steps is not None:
        lines.append("  steps")
        width = max([22, *(len(p(s.name)) for s in ex.steps)])
        header = (
            f"    {'step':<{width}}  {'attempt':>8}  {'status':<10}{'started':<25}"
            f"{'took':>10}  note"
        )
        lines.append(header)
        shown = ex.steps
        if step is not None:
            shown = [s for s in ex.steps if _of_step(s.name, step)]
        many = _many_items(shown) if step is None else {}
        summed: set[str] = set()
        for s in shown:
            base = _item_base(s.name)
            if base in many:  # summed up once, where its first item's attempt is
                if base not in summed:
                    summed.add(base)
                    lines.append(_items_summary(base, many[base]))
                    lines.append(
                        f"{'':<6}(each item, with what it logged and printed: "
                        f"durable show {p(ex.id)} --step {p(base)})"
                    )
                continue
            lines.append(_step_line(s, width))
            lines.extend(_change_lines(s))
            lines.extend(_captured_lines(s))
    return "\n".join(lines)


def _captured_lines(s: StepExecution) -> list[str]:
    """What the attempt logged and printed, in order: ``log LEVEL message``, and a line
    per printed line as ``out | text`` (stdout) or ``err | text`` (stderr)."""
    lines: list[str] = []
    for entry in s.logs:
        stream = entry.get("stream")
        if stream in ("stdout", "stderr"):
            tag = "out" if stream == "stdout" else "err"
            text = str(entry.get("text", ""))
            lines.extend(f"{'':<6}{tag} | {printable(line)}" for line in text.splitlines())
        elif "cut" in entry:
            lines.append(f"{'':<6}cut {printable(str(entry.get('message')))}")
        else:
            lines.append(
                f"{'':<6}log {printable(str(entry.get('level')))} "
                f"{printable(str(entry.get('message')))}"
            )
    return lines


def _change_lines(s: StepExecution) -> list[str]:
    """What a completed step run changed in the context, a line per key (a key inside a
    dict changed in part as ``outer.inner``)."""
    return _changed(s.changes or {}, "")


def _changed(change: dict[str, Any], prefix: str) -> list[str]:
    def short(value: Any) -> str:
        shown = _json(value)
        return printable(shown if len(shown) <= 80 else shown[:77] + "...")

    out = []
    for key, value in change.get("set", {}).items():
        out.append(f"{'':<6}set {printable(prefix + key)} = {short(value)}")
    for key, items in change.get("extended", {}).items():
        out.append(f"{'':<6}add {printable(prefix + key)} += {short(items)}")
    for key, inner in change.get("patched", {}).items():
        out.extend(_changed(inner, f"{prefix}{key}."))
    out.extend(f"{'':<6}del {printable(prefix + key)}" for key in change.get("deleted", []))
    return out


# A foreach with more items than this is summed up in one line rather than listed.
_LIST_ITEMS_UP_TO = 20


def _item_base(name: str) -> str | None:
    """``"ship"`` for an item's name ``"ship[3]"``; None for any other step."""
    base, bracket, rest = name.partition("[")
    return base if bracket and rest.endswith("]") and rest[:-1].isdigit() else None


def _of_step(name: str, step: str) -> bool:
    """Whether the attempt ``name`` is of ``step``: the step, its items, its branches."""
    return name == step or _item_base(name) == step or name.startswith(f"{step}.")


def _many_items(steps: Sequence[StepExecution]) -> dict[str, list[StepExecution]]:
    found: dict[str, list[StepExecution]] = {}
    for s in steps:
        base = _item_base(s.name)
        if base is not None:
            found.setdefault(base, []).append(s)
    return {
        base: records
        for base, records in found.items()
        if len({r.name for r in records}) > _LIST_ITEMS_UP_TO
    }


def _items_summary(base: str, records: Sequence[StepExecution]) -> str:
    items = {r.name for r in records}
    by_status: dict[str, int] = {}
    for r in records:
        by_status[r.status.value] = by_status.get(r.status.value, 0) + 1
    counts = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
    failed = sorted({r.name for r in records if r.status.value == "failed"})
    shown = ", ".join(printable(n) for n in failed[:5]) + (" ..." if len(failed) > 5 else "")
    note = f"; failed attempts in {shown}" if failed else ""
    return f"    {printable(base)}[...]  {len(items)} items, attempts: {counts}{note}"


def _import(modules: Sequence[str]) -> None:
    # As `python -m` does: modules in the working directory can be imported (a console
    # script's sys.path starts at its own folder instead).
    cwd = os.getcwd()
    if modules and cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise click.ClickException(
                f"cannot import workflow module {name!r}: {exc} (looked in {cwd} and the "
                "installed packages; set PYTHONPATH if it lives elsewhere)"
            ) from exc


def _engine(ctx: click.Context, *, wait_for_store: bool = False, migrate: bool = True) -> Engine:
    """The command's engine. ``wait_for_store``: a store that cannot be reached (a
    database starting up or restarting) is tried again with backoff, until it answers or
    the command is stopped, instead of failing the command."""
    obj: dict[str, Any] = ctx.ensure_object(dict)
    if "engine" not in obj:
        from durable.engine import Engine

        _import(obj["imports"])
        options = {} if obj.get("lease_ms") is None else {"lease": obj["lease_ms"]}
        pause = 0.5
        while True:
            try:
                obj["engine"] = Engine(store=obj["store"], migrate=migrate, **options)
                break
            except StoreError as exc:
                if not wait_for_store:
                    raise
                log.warning("cannot use the store yet (%s); trying again in %.1f s", exc, pause)
                threading.Event().wait(pause)
                pause = min(pause * 2, 30.0)
        ctx.call_on_close(obj["engine"].close)
    engine: Engine = obj["engine"]
    return engine


#: ``durable check``'s exit status when the check itself could not run
CHECK_FAILED = 3
#: ``durable worker --metrics-port``'s exit status when no plugin serves metrics
METRICS_UNSERVED = 2
#: ``durable worker``'s exit status when no workflow is defined (no ``-i MODULE``)
NO_WORKFLOWS = 2


class _Commands(click.Group):
    """The commands of ``durable``: a DurableError any of them raises is the command's error
    (exit 1), printed with control characters escaped, so it cannot drive the terminal."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DurableError as exc:
            raise click.ClickException(printable(str(exc), newlines=True)) from exc


class _DefaultStoreOption(click.Option):
    """An option whose default is the engine's store URL, read (so the engine imported) only
    when its command runs or shows its help."""

    def get_default(self, ctx: click.Context, call: bool = True) -> Any:
        from durable.engine import DEFAULT_STORE

        return DEFAULT_STORE


@click.group(cls=_Commands)
@click.option(
    "--store",
    envvar="DURABLE_STORE",
    default=None,
    metavar="URL",
    help="Store URL (env DURABLE_STORE; default sqlite:///durable.db).",
)
@click.option(
    "--import",
    "-i",
    "imports",
    multiple=True,
    metavar="MODULE",
    help="Import this module to register its workflows (repeatable).",
)
@click.option(
    "--lease",
    "lease_ms",
    type=click.IntRange(min=1),
    default=None,
    metavar="MS",
    help="How long a claim lasts without a heartbeat (default 30000).",
)
@click.version_option(package_name="durable-engine")
@click.pass_context
def main(
    ctx: click.Context, store: str | None, imports: tuple[str, ...], lease_ms: int | None
) -> None:
    """durable: durable, resumable workflows."""
    ctx.ensure_object(dict).update(store=store, imports=list(imports), lease_ms=lease_ms)


@main.command()
@click.option(
    "--store",
    "demo_store",
    cls=_DefaultStoreOption,
    show_default=True,
    metavar="URL",
    help="Store to run the demo on (the embedded default: a SQLite file here).",
)
def demo(demo_store: str) -> None:
    """Run the quick start's order workflow and print the execution and its steps."""
    from durable import _demo
    from durable.dsl import get_workflow
    from durable.engine import Engine

    name = get_workflow(_demo.OrderWorkflow).name
    with Engine(store=demo_store) as engine:
        before = engine.list_executions(workflow=_demo.OrderWorkflow, limit=10_000)
        wid = engine.start(_demo.OrderWorkflow, _demo.ORDER)
        click.echo(f"started {name} as {wid} on {redact_url(demo_store)}")
        idle = threading.Event()
        while True:
            engine.drain()
            ex = engine.get_execution(wid)
            if ex.finished:
                break
            due = engine.next_due()
            click.echo(f"  {ex.current_step}: waiting for the retry at {_fmt_time(due)}")
            engine.clock.wait_until(due, idle)
        click.echo("")
        click.echo(format_execution(engine.get_execution(wid, include_steps=True)))
        click.echo(
            f"\nruns of {name} kept in {redact_url(demo_store)}: {len(before) + 1} "
            f"({len(before)} from earlier demo runs)"
        )
        for ex in before[:5]:
            click.echo(f"  {ex.id}  {ex.status.value:<10} {_fmt_time(ex.created_at)}")


@main.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Create or upgrade the store's schema to the current version."""
    from durable.clock import SystemClock
    from durable.engine import DEFAULT_STORE
    from durable.plugins import PluginHost

    obj = ctx.ensure_object(dict)
    # The store itself, not an Engine: an Engine refuses a schema that is out of date.
    url = obj["store"] or os.environ.get("DURABLE_STORE") or DEFAULT_STORE
    store = PluginHost().make_store(url)
    try:
        applied = store.migrate(SystemClock().now())
    finally:
        store.close()
    shown = redact_url(url)
    if applied:
        click.echo(f"{shown}: applied migration(s) {', '.join(map(str, applied))}")
    else:
        click.echo(f"{shown}: already up to date")


@main.command()
@click.argument("workflow")
@click.option("--input", "input_json", default="null", help="Input as JSON.")
@click.option("--queue", default=None)
@click.option("--priority", default=0, type=int)
@click.option(
    "--scheduled-at", type=click.DateTime(), default=None, help="Start no earlier than this (UTC)."
)
@click.option("--idempotency-key", default=None)
@click.pass_context
def start(
    ctx: click.Context,
    workflow: str,
    input_json: str,
    queue: str | None,
    priority: int,
    scheduled_at: datetime | None,
    idempotency_key: str | None,
) -> None:
    """Start WORKFLOW (a registered name) and print its execution id."""
    value = _json_option(input_json, "--input")
    wid = _engine(ctx).start(
        workflow,
        value,
        queue=queue,
        priority=priority,
        scheduled_at=scheduled_at,
        idempotency_key=idempotency_key,
    )
    click.echo(wid)


@main.command(name="list")
@click.option("--workflow", default=None)
@click.option("--status", type=click.Choice([s.value for s in Status]), default=None)
@click.option("--queue", default=None)
@click.option("--limit", default=50, show_default=True, type=int)
@click.pass_context
def list_(
    ctx: click.Context, workflow: str | None, status: str | None, queue: str | None, limit: int
) -> None:
    """List executions, newest first."""
    rows = _engine(ctx).list_executions(workflow=workflow, status=status, queue=queue, limit=limit)
    for ex in rows:
        where = f"schedule {ex.schedule} tick {_fmt_time(ex.scheduled_at)}" if ex.schedule else ""
        click.echo(
            f"{printable(ex.id)}  {printable(ex.workflow):<24} {ex.status.value:<12} "
            f"{_fmt_time(ex.created_at)}  {printable(ex.current_step or '')}"
            + (f"  ({printable(where)})" if where else "")
        )


def _schedule_line(s: Schedule) -> str:
    state = "paused" if s.paused else f"next {_fmt_time(s.next_tick)}"
    extra = [f"last {_fmt_time(s.last_tick)}"] if s.last_tick else []
    if s.missed:
        extra.append(f"missed {s.missed}")
    if s.buffered_id:
        extra.append(f"buffered {s.buffered_id}")
    return printable(
        f"{s.name:<24} {s.workflow:<24} {s.cron!r} {s.timezone}  catch_up={s.catch_up.value} "
        f"overlap={s.overlap.value}{' (declared)' if s.declared else ''}  {state}"
        + (f"  {', '.join(extra)}" if extra else "")
    )


@main.command()
@click.option("--store", "dash_store", default=None, metavar="URL", help="As durable --store.")
@click.option(
    "--import",
    "dash_imports",
    multiple=True,
    metavar="MODULE",
    help="As durable --import: the workflows whose graphs and steps it shows.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--token",
    envvar="DURABLE_DASHBOARD_TOKEN",
    default=None,
    help="Every request must carry it (env DURABLE_DASHBOARD_TOKEN); needed off loopback.",
)
@click.option("--read-only", is_flag=True, help="Hide every action and refuse their POSTs.")
@click.pass_context
def dashboard(
    ctx: click.Context,
    dash_store: str | None,
    dash_imports: tuple[str, ...],
    host: str,
    port: int,
    token: str | None,
    read_only: bool,
) -> None:
    """Serve the web dashboard: executions, pending inputs, schedules, workers."""
    obj = ctx.ensure_object(dict)
    if dash_store is not None:
        obj["store"] = dash_store
    obj["imports"] = [*obj.get("imports", []), *dash_imports]
    try:
        import uvicorn

        from durable.dashboard import create_app
        from durable.dashboard._security import check_bind
    except ImportError as exc:
        raise click.ClickException(
            f"the dashboard needs the dashboard extra ({exc}): "
            "pip install 'durable-engine[dashboard]'"
        ) from None
    try:
        check_bind(host, token)
        app = create_app(_engine(ctx), token=token, read_only=read_only)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    try:
        sock = _listen(host, port)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host} port {port} ({exc.strerror or exc}): choose another "
            "--port, or stop what listens there"
        ) from None
    port = sock.getsockname()[1]  # (the one the system chose for --port 0)
    where = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
    if token is not None:
        needs = "a token is required (open it once as ?token=TOKEN, or send Authorization: Bearer)"
    else:
        needs = "no token: it answers only requests addressed to this machine"
    click.echo(
        f"durable dashboard: serving {where} for {_engine(ctx).store_label}; "
        f"{'read-only' if read_only else 'actions allowed'}; {needs}",
        err=True,
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # (Ctrl-C: uvicorn raises it again once it has stopped)
        pass
    finally:
        sock.close()
    if not server.started:
        raise click.ClickException("the dashboard did not start: see the errors above")


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host`` and ``port`` (IPv6 when the host is an IPv6 address),
    for the dashboard's server to listen on."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


@main.command(name="graph")
@click.argument("workflow")
@click.option("--execution", "execution_id", default=None, help="Style nodes by its state.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot"]),
    default="mermaid",
    show_default=True,
)
@click.pass_context
def graph_(ctx: click.Context, workflow: str, execution_id: str | None, fmt: str) -> None:
    """Print WORKFLOW's graph (import its module with -i) as Mermaid or Graphviz DOT;
    with --execution, each node styled by that execution's state."""
    from durable.graphs import graph

    execution = engine = None
    if execution_id is not None:
        engine = _engine(ctx)
        execution = engine.get_execution(execution_id, include_steps=True)
    else:
        _import(ctx.ensure_object(dict)["imports"])
    click.echo(graph(workflow, format=fmt, execution=execution, engine=engine), nl=False)  # type: ignore[arg-type]


@main.group(invoke_without_command=True)
@click.pass_context
def schedules(ctx: click.Context) -> None:
    """List the cron schedules (one line each: name, workflow, cron, zone, policies, next
    tick), or pause, resume or remove one."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(schedules_list)


@schedules.command(name="list")
@click.pass_context
def schedules_list(ctx: click.Context) -> None:
    """List the cron schedules (as `durable schedules` alone does)."""
    found = _engine(ctx).list_schedules()
    for s in found:
        click.echo(_schedule_line(s))
    if not found:
        click.echo("no schedules")


@schedules.command(name="pause")
@click.argument("name")
@click.pass_context
def schedules_pause(ctx: click.Context, name: str) -> None:
    """Stop firing NAME until it is resumed."""
    click.echo(_schedule_line(_engine(ctx).pause_schedule(name)))


@schedules.command(name="resume")
@click.argument("name")
@click.pass_context
def schedules_resume(ctx: click.Context, name: str) -> None:
    """Fire NAME again from its next tick (the ticks while paused are not made up for)."""
    click.echo(_schedule_line(_engine(ctx).resume_schedule(name)))


@schedules.command(name="remove")
@click.argument("name")
@click.pass_context
def schedules_remove(ctx: click.Context, name: str) -> None:
    """Remove NAME (executions it started go on)."""
    _engine(ctx).unschedule(name)
    click.echo(f"removed schedule {printable(name)}")


@main.command()
@click.argument("execution_id")
@click.option(
    "--step",
    "step_name",
    default=None,
    help="Only this step's attempts, each foreach item listed (not summed up).",
)
@click.pass_context
def show(ctx: click.Context, execution_id: str, step_name: str | None) -> None:
    """Show an execution with its step attempts and what it waits for."""
    engine = _engine(ctx)
    ex = engine.get_execution(execution_id, include_steps=True)
    if step_name is not None and not any(_of_step(s.name, step_name) for s in ex.steps or []):
        ran = sorted({_item_base(s.name) or s.name for s in ex.steps or []})
        raise click.ClickException(
            f"execution {execution_id} has no attempt of step {step_name!r}; "
            f"its steps that ran: {', '.join(ran) or 'none yet'}"
        )
    waits = engine.list_waits(execution_id)
    click.echo(format_execution(ex, step=step_name))
    children = engine.list_executions(parent=ex.id, limit=10_000)
    if children:
        click.echo("  children")
        for child in reversed(children):  # oldest first
            click.echo(
                f"    {printable(child.id)}  {printable(child.workflow):<20} {child.status.value}"
            )
    if waits:
        click.echo("  waits for")
        for w in waits:
            click.echo(f"    {format_wait(w)}")


def format_wait(w: Wait) -> str:
    """One line: what a wait is for and until when (stored text escaped)."""
    names = ", ".join(printable(n) for n in w.names)
    what = {
        "sleep": "sleep",
        "event": ("event " if len(w.names) == 1 else f"{printable(w.mode)} of events ") + names,
        "input": f"input {names}"
        + (f" ({printable(w.prompt)})" if w.prompt else "")
        + (f" [{printable(w.model)}]" if w.model else ""),  # (the model: -i its module)
        "child": f"child workflow {names}",
    }.get(w.kind, printable(w.kind))
    until = f"until {_fmt_time(w.until)}" if w.until else "no timeout"
    return f"{what:<40} {until}  (step {printable(w.step)}, since {_fmt_time(w.created_at)})"


@main.command()
@click.option("--kind", type=click.Choice(["sleep", "event", "input", "child"]), default=None)
@click.option("--limit", default=100, show_default=True, type=int)
@click.pass_context
def waits(ctx: click.Context, kind: str | None, limit: int) -> None:
    """List what waiting executions wait for, and until when (oldest first)."""
    rows = _engine(ctx).list_waits(kind=kind, limit=limit)
    if not rows:
        click.echo("nothing is waiting")
    for w in rows:
        click.echo(f"{printable(w.execution_id)}  {printable(w.workflow):<20} {format_wait(w)}")


@main.command(name="send-event")
@click.argument("execution_id")
@click.argument("name")
@click.option("--payload", "payload_json", default="null", help="Payload as JSON.")
@click.pass_context
def send_event(ctx: click.Context, execution_id: str, name: str, payload_json: str) -> None:
    """Send the event NAME to an execution."""
    payload = _json_option(payload_json, "--payload")
    _engine(ctx).send_event(execution_id, name, payload)
    click.echo(f"{execution_id}: event {name!r} sent")


@main.command(name="provide-input")
@click.argument("execution_id")
@click.argument("name")
@click.option("--data", "data_json", required=True, help="The input as JSON.")
@click.pass_context
def provide_input(ctx: click.Context, execution_id: str, name: str, data_json: str) -> None:
    """Provide the input NAME a step of the execution waits for. When the wait was made
    with a pydantic model, its module is imported (if it can be), so that the model checks
    the data and what is stored has its defaults filled in."""
    data = _json_option(data_json, "--data")
    engine = _engine(ctx)
    for w in engine.list_waits(execution_id, kind="input"):
        if name in w.names and w.model is not None:
            _import_model(w.model)
    engine.provide_input(execution_id, name, data)
    click.echo(f"{execution_id}: input {name!r} provided")


def _import_model(model: str) -> None:
    module = model.partition(":")[0]
    if module in sys.modules:
        return
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        importlib.import_module(module)
    except Exception as exc:  # its module may fail in ways of its own: say so, go on
        click.echo(
            f"note: cannot import {module} for the model {model} ({exc}); the data is "
            "checked against the model's JSON Schema only, and its defaults are filled in "
            f"each time the step reads it (give -i {module} to check it with the model)",
            err=True,
        )


_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def _duration(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h|d)\s*", text)
    if match is None:
        raise click.BadParameter(
            f"{text!r} is not a duration; use a number and a unit: 500ms, 45s, 30m, 12h, 90d",
            param_hint="--older-than",
        )
    return int(match.group(1)) * _UNITS[match.group(2)]


@main.command()
@click.option("--older-than", "older_than", required=True, help="Age, e.g. 90d, 12h, 30m.")
@click.option("--workflow", default=None, help="Only executions of this workflow.")
@click.pass_context
def purge(ctx: click.Context, older_than: str, workflow: str | None) -> None:
    """Delete executions that finished longer ago than --older-than, with their history."""
    age = _duration(older_than)
    n = _engine(ctx).purge(age, workflow=workflow)
    click.echo(f"purged {n} execution(s) finished more than {older_than} ago")


def _json_option(text: str, option: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=option) from exc


@main.command()
@click.argument("execution_id")
@click.option("--reason", default=None)
@click.pass_context
def cancel(ctx: click.Context, execution_id: str, reason: str | None) -> None:
    """Cancel an execution."""
    from durable.dsl import registered_workflows

    ex = _engine(ctx).cancel(execution_id, reason)
    compensating = (
        "compensating (a worker runs the compensations, then it ends)"
        if ex.workflow in registered_workflows()
        # (not imported here: the store cannot tell whether it compensates, so a worker
        # that has its code decides; see Engine.cancel)
        else f"cancelling: a worker that runs {ex.workflow!r} runs its compensations, if "
        "it has any, then it ends (import its module with -i to know which)"
    )
    state = {
        Status.CANCELLED: "cancelled",
        Status.COMPENSATING: compensating,
    }.get(ex.status, "cancel requested (running)")
    click.echo(f"{execution_id}: {state}")


@main.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """List the unfinished executions the loaded code (-i MODULE) cannot continue, one
    line each: id, workflow, the step it is at, what changed. Exits 1 when there is any
    (run it in CI before a deploy, with the new code); 3 when the check itself could not
    run (the store unreachable or of another schema version, a module that fails to
    import), so that CI can tell "unsafe" from "unknown"; 2 for a usage error."""
    try:
        # (it only reads: the store it checks, production's, is not migrated)
        found = _engine(ctx, migrate=False).check_deploy()
    except click.UsageError:
        raise
    except Exception as exc:  # (a module may fail to import with anything)
        message = exc.format_message() if isinstance(exc, click.ClickException) else repr(exc)
        if isinstance(exc, DurableError):
            message = str(exc)
        click.echo(f"Error: the check could not run: {printable(message, newlines=True)}", err=True)
        raise click.exceptions.Exit(CHECK_FAILED) from exc
    for problem in found:
        click.echo(
            f"{printable(problem.execution_id)}  {printable(problem.workflow)}  "
            f"at {printable(str(problem.step))}: {printable(problem.change)}"
        )
    if found:
        raise click.exceptions.Exit(1)
    click.echo("ok: the loaded code can continue every unfinished execution")


@main.command()
@click.argument("execution_id")
@click.option(
    "--from-step",
    default=None,
    help="The step to run again from (default: the step it stopped at).",
)
@click.pass_context
def retry(ctx: click.Context, execution_id: str, from_step: str | None) -> None:
    """Run a failed, cancelled or compensated execution again from the step that failed
    (or --from-step); steps completed before it are not run again."""
    ex = _engine(ctx).retry(execution_id, from_step=from_step)
    click.echo(
        f"{execution_id}: pending again at step {printable(ex.current_step)} "
        f"(visit {ex.current_visit})"
    )


@main.command()
@click.argument("execution_id")
@click.option("--from-step", required=True, help="The step the new execution starts at.")
@click.option(
    "--context",
    "context_json",
    default=None,
    help="A JSON object of context keys to set over the context before that step.",
)
@click.pass_context
def fork(ctx: click.Context, execution_id: str, from_step: str, context_json: str | None) -> None:
    """Start a new execution of the same workflow and input at --from-step, with the
    context as it was before that step ran (updated with --context); print its id."""
    context = None
    if context_json is not None:
        try:
            context = json.loads(context_json)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--context") from None
        if not isinstance(context, dict):
            raise click.BadParameter("a JSON object of keys to set", param_hint="--context")
    click.echo(_engine(ctx).fork(execution_id, from_step, context=context))


@main.command()
@click.option(
    "--queue",
    "queues",
    multiple=True,
    help="Queue to take work from (repeatable; default: every queue).",
)
@click.option("--concurrency", default=10, show_default=True, type=int)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    metavar="PORT",
    help="Serve the worker's metrics for scraping (Prometheus text at /metrics) on this "
    "port, through the plugin that provides it: pip install durable-otel.",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    metavar="HOST",
    help="Address the metrics are served on (0.0.0.0: every interface).",
)
@click.pass_context
def worker(
    ctx: click.Context,
    queues: tuple[str, ...],
    concurrency: int,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run a worker until SIGINT or SIGTERM. It logs (to stderr, through `logging`) each
    failed attempt, retry, lost attempt, recovery and store outage. A store it cannot
    reach at start (a database restarting) is tried again with backoff."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from durable.dsl import registered_workflows

    engine = _engine(ctx, wait_for_store=True)
    if not registered_workflows():
        # A worker claims only the workflows it has the code of: with none, it would
        # run forever and never take anything.
        click.echo(
            "Error: this worker has no workflows to run: import the module that defines "
            "them with -i MODULE (repeatable), e.g. durable -i myapp.workflows worker",
            err=True,
        )
        ctx.exit(NO_WORKFLOWS)
    if metrics_port is not None:
        where = engine.plugins.serve_metrics(metrics_port, metrics_host)
        if where is None:
            click.echo(
                "Error: --metrics-port needs a plugin that serves metrics, and none is "
                "installed: pip install durable-otel (it serves them as Prometheus text), "
                "or leave out --metrics-port",
                err=True,
            )
            ctx.exit(METRICS_UNSERVED)
        log.info("worker metrics served at %s", where)
    # From here on the process is a worker, and what start-up made (the modules, the
    # engine) lives as long as it does: frozen, the collector's full passes no longer
    # walk it, and they cost what the work in flight holds rather than the whole heap.
    gc.collect()
    gc.freeze()
    engine.run_worker(
        list(queues) or None,
        concurrency,
        on_ready=lambda: log.info(
            "worker %s on %s, queues %s, concurrency %d",
            engine.worker_id,
            engine.store_label,
            ", ".join(queues) or "all",
            concurrency,
        ),
    )
    log.info("worker %s stopped", engine.worker_id)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
