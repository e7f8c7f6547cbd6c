"""The dashboard's ASGI app: pages to find and read executions, forms to act on them.

Every page reads the store through the engine it is given, in a worker thread (the store
calls block); nothing is cached, so what it shows is what the store holds. Parts that
change (an execution's timeline, the list's first page, the workers) are polled by htmx
every 2 seconds and answered with 204 when nothing changed; an execution that reached a
final status is answered with 286 (htmx stops polling) and its page is rendered without
polling at all. Every value from the store goes through Jinja2's autoescaping.

Every link and redirect is a path from the root of the site (the ASGI ``root_path`` the
dashboard is mounted under, then its own route), never an absolute ``http://`` URL: behind
a proxy that ends TLS the app sees ``http`` while the browser uses ``https``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from jinja2 import pass_context
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from durable.dashboard._forms import Form, form_for
from durable.dashboard._security import CSRF_FIELD, CSRF_HEADER, Guard, is_loopback, same_origin
from durable.dsl import get_workflow, registered_workflows
from durable.errors import (
    DurableError,
    ExecutionNotFound,
    InvalidInput,
    ScheduleNotFound,
    WorkflowNotFound,
)
from durable.graphs import graph
from durable.models import Execution, Status, StepExecution, Wait
from durable.stores.base import ExecutionRow, unit_id

__all__ = ["create_app"]

PAGE = 50  # executions (and units) a page
LIVE_MS = 2000  # how often the live parts are polled
WAITS = 200  # an execution's newest waits shown (its pending ones always are)
STOP_POLLING = 286  # the status that tells htmx to stop polling (the part is final)

Auth = Callable[[Request], bool | Awaitable[bool]]

_NOTICES = {
    "cancelled": "Cancel requested.",
    "retried": "Retried: it runs again.",
    "forked": "Forked: this is the new execution.",
    "sent": "Event sent.",
    "provided": "Input provided: the execution goes on.",
    "paused": "Schedule paused.",
    "resumed": "Schedule resumed.",
}


def create_app(
    engine: Any,
    *,
    auth: Auth | None = None,
    token: str | None = None,
    read_only: bool = False,
    secret: bytes | None = None,
) -> Starlette:
    """The dashboard of ``engine`` as an ASGI app, to serve (``durable dashboard``) or to
    mount in your own app behind your own authentication.

    ``auth(request)`` (sync or async) is asked before every request: False answers 403.
    ``token``: every request must carry it (``Authorization: Bearer``, or the cookie
    set by opening the dashboard once with ``?token=``). ``read_only`` hides every action
    and refuses their POSTs. Actions are POSTs checked against CSRF (``secret`` signs the
    tokens: give the same one to every process serving one dashboard); a POST sending
    the token as ``Authorization: Bearer`` needs no CSRF token."""
    guard = Guard(token, secret)
    views = _Views(engine, guard, read_only)
    routes = [
        Route("/", views.home),
        Route("/executions", views.executions),
        Route("/executions/rows", views.execution_rows),
        Route("/executions/{eid}", views.execution),
        Route("/executions/{eid}/live", views.execution_live),
        Route("/executions/{eid}/units", views.units),
        Route("/executions/{eid}/unit", views.unit),
        Route("/executions/{eid}/cancel", views.cancel, methods=["POST"]),
        Route("/executions/{eid}/retry", views.retry, methods=["POST"]),
        Route("/executions/{eid}/fork", views.fork, methods=["POST"]),
        Route("/executions/{eid}/events", views.send_event, methods=["POST"]),
        Route("/inputs", views.inputs),
        Route("/inputs/{eid}/{name:path}", views.provide_input, methods=["POST"]),
        Route("/schedules", views.schedules),
        Route("/schedules/{name:path}/pause", views.pause, methods=["POST"]),
        Route("/schedules/{name:path}/resume", views.resume, methods=["POST"]),
        Route("/workers", views.workers),
        Route("/workers/live", views.workers_live),
        Mount("/static", StaticFiles(directory=str(_package_dir("static"))), name="static"),
    ]
    middleware = [Middleware(_Gate, guard=guard, auth=auth)]
    app = Starlette(routes=routes, middleware=middleware)
    views.router = app.router
    return app


def _package_dir(name: str) -> Any:
    return resources.files("durable.dashboard") / name


class _Gate(BaseHTTPMiddleware):
    """Token, ``auth``, the session cookie and security headers, around every request."""

    def __init__(self, app: Any, guard: Guard, auth: Auth | None) -> None:
        super().__init__(app)
        self.guard = guard
        self.auth = auth

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if self.guard.token is None and self.auth is None:
            # Without a token only this machine may use it: a page elsewhere whose name
            # was made to resolve to 127.0.0.1 (DNS rebinding) sends its own Host.
            host = request.headers.get("host", "").rpartition(":")[0] or request.headers.get(
                "host", ""
            )
            if not is_loopback(host.strip("[]")):
                return PlainTextResponse(
                    f"This dashboard has no token, so it answers only requests addressed to "
                    f"this machine (127.0.0.1, localhost), not to {host!r}; give it --token "
                    "to reach it by another name.",
                    status_code=421,
                )
        if self.auth is not None:
            allowed = self.auth(request)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if not allowed:
                return PlainTextResponse("Forbidden by the application's auth.", status_code=403)
        given = request.query_params.get("token")
        if given is not None and self.guard.token is not None:
            if not self.guard.token_ok(given):
                return PlainTextResponse("Wrong dashboard token.", status_code=401)
            # The token goes into a cookie and out of the address bar (and history).
            plain = request.url.remove_query_params("token")
            where = plain.path + (f"?{plain.query}" if plain.query else "")
            response: Response = RedirectResponse(where, status_code=303)
            _cookie(response, request, self.guard.token_cookie(request), given)
            return response
        if not self.guard.token_ok(self.guard.token_given(request)):
            return PlainTextResponse(
                "This dashboard needs its token: open it once as ?token=TOKEN, or send "
                "Authorization: Bearer TOKEN.",
                status_code=401,
            )
        nul = _nul_in(request)
        if nul is not None:
            return PlainTextResponse(
                f"The {nul} holds a NUL character (\\x00), which no name or value the "
                "dashboard stores or looks up can hold: send it again without it.",
                status_code=400,
            )
        session_cookie = self.guard.session_cookie(request)
        session = request.cookies.get(session_cookie)
        if session is None:
            session = self.guard.new_session()
        request.state.session = session
        response = await call_next(request)
        if request.cookies.get(session_cookie) != session:
            _cookie(response, request, session_cookie, session)
        response.headers.setdefault(
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        )
        response.headers.setdefault("x-content-type-options", "nosniff")
        response.headers.setdefault("referrer-policy", "same-origin")
        return response


def _nul_in(request: Request) -> str | None:
    """What part of the request's address holds a NUL character (PostgreSQL's text holds
    none: looked up, it would fail the query), if one does."""
    if "\x00" in request.url.path:
        return "address"
    for key, value in request.query_params.multi_items():
        if "\x00" in key or "\x00" in value:
            return f"query parameter {key.replace(chr(0), '')!r}"
    return None


def _cookie(response: Response, request: Request, name: str, value: str) -> None:
    root = request.scope.get("root_path", "") or "/"
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="lax",  # (a link from elsewhere opens it; the CSRF token guards POSTs)
        secure=request.url.scheme == "https",
        path=root,
    )


class _Refused(Exception):
    def __init__(self, status: int, message: str, back: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.back = back


class _Views:
    router: Router  # (set by create_app: the dashboard's own routes, for its links)

    def __init__(self, engine: Any, guard: Guard, read_only: bool) -> None:
        self.engine = engine
        self.store = engine.store
        self.guard = guard
        self.read_only = read_only
        self.templates = Jinja2Templates(directory=str(_package_dir("templates")))
        env = self.templates.env
        env.filters["when"] = _when
        env.filters["took"] = _took
        env.filters["pretty"] = _pretty
        env.filters["short"] = _short
        env.globals["LIVE_MS"] = LIVE_MS
        env.globals["url_for"] = self._url_for_in_page

    # -- addresses -------------------------------------------------------------------------

    def path(self, request: Request, name: str, /, **params: Any) -> str:
        """The path of one of the dashboard's routes, from the root of the site: under
        the ``root_path`` it is mounted at, never an absolute URL."""
        root = str(request.scope.get("root_path", "") or "").rstrip("/")
        return root + str(self.router.url_path_for(name, **params))

    @pass_context
    def _url_for_in_page(self, context: Any, name: str, /, **params: Any) -> str:
        return self.path(context["request"], name, **params)

    def unit_path(self, request: Request, row: ExecutionRow) -> str:
        """The page of a unit (a branch, an item), from its row."""
        query = urlencode(
            {"step": row.group_step or "", "visit": row.group_visit, "index": row.unit_index}
        )
        return f"{self.path(request, 'unit', eid=row.parent_id or '')}?{query}"

    # -- rendering -------------------------------------------------------------------------

    def page(self, request: Request, template: str, status: int = 200, **values: Any) -> Response:
        session = request.state.session
        values.update(
            request=request,
            csrf=self.guard.csrf_for(session),
            csrf_field=CSRF_FIELD,
            read_only=self.read_only,
            notice=_NOTICES.get(request.query_params.get("notice", "")),
            store_label=getattr(self.engine, "store_label", ""),
        )
        return self.templates.TemplateResponse(request, template, values, status_code=status)

    def live(self, request: Request, template: str, final: bool = False, **values: Any) -> Response:
        """A polled part: 204 when it is what the page shows already (its hash is ``v``);
        286 (htmx stops polling) with the part when it is ``final``: it will not change."""
        response = self.page(request, template, **values)
        body = bytes(response.body)
        version = hashlib.sha256(body).hexdigest()[:16]
        if final:
            response.status_code = STOP_POLLING
        elif request.query_params.get("v") == version:
            return Response(status_code=204)
        response.headers["x-version"] = version
        return response

    async def action(self, request: Request) -> dict[str, str]:
        """The form of a POST, once it passed the read-only and CSRF checks. A request
        that authenticates with the token in its Authorization header needs no CSRF
        token (a page elsewhere cannot make a browser send that header)."""
        if self.read_only:
            raise _Refused(403, "This dashboard is read-only: actions are turned off.")
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        given = request.headers.get(CSRF_HEADER) or fields.pop(CSRF_FIELD, None)
        if self.guard.by_bearer(request):
            # (a proxy in front may add the header to every request, a browser's too: so
            # a request that says it comes from another site is refused all the same)
            if not same_origin(request) or request.headers.get("sec-fetch-site") == "cross-site":
                raise _Refused(
                    403,
                    "This request comes from another site (its Origin or Sec-Fetch-Site "
                    "says so): actions are taken from this dashboard's pages or by scripts "
                    "that send no Origin.",
                )
        elif not self.guard.csrf_ok(request, given):
            raise _Refused(
                403,
                "The form's CSRF token is missing, stale or from another site: reload the "
                "page and send it again (a script sends Authorization: Bearer TOKEN).",
            )
        for key, value in fields.items():
            if "\x00" in key or "\x00" in value:
                raise _Refused(
                    400,
                    f"The field {key.replace(chr(0), '')!r} holds a NUL character (\\x00), "
                    "which no name or value the dashboard stores can hold: send it again "
                    "without it.",
                )
        return fields

    def refused(self, request: Request, exc: _Refused) -> Response:
        return self.page(request, "error.html", status=exc.status, message=str(exc), back=exc.back)

    # -- executions ------------------------------------------------------------------------

    def home(self, request: Request) -> Response:
        return RedirectResponse(self.path(request, "executions"), status_code=303)

    def _filters(self, request: Request) -> dict[str, Any]:
        q = request.query_params
        return {
            "workflow": q.get("workflow", "").strip(),
            "status": q.get("status", "").strip(),
            "queue": q.get("queue", "").strip(),
            "since": q.get("since", "").strip(),
            "until": q.get("until", "").strip(),
            "before": q.get("before", "").strip(),
        }

    def _rows(self, f: dict[str, Any]) -> tuple[list[ExecutionRow], str | None, list[str]]:
        """A page of executions by the filters, the next page's cursor, and what was
        wrong with the filters."""
        problems: list[str] = []
        statuses: list[Status] | None = None
        if f["status"]:
            try:
                statuses = [Status(f["status"])]
            except ValueError:
                problems.append(f"no status {f['status']!r}")
        since = _moment(f["since"], "since", problems)
        until = _moment(f["until"], "until", problems)
        before: tuple[datetime, int] | None = None
        if f["before"]:
            at, _, seq = f["before"].rpartition("|")
            moment = _moment(at, "page", problems)
            if moment is not None and seq.isdigit():
                before = (moment, int(seq))
            else:
                problems.append("the page cursor is not one this dashboard made")
        elif until is not None:
            before = (until, 2**62)
        if problems:
            return [], None, problems
        rows = self.store.list_executions(
            workflows=[f["workflow"]] if f["workflow"] else None,
            statuses=statuses,
            queues=[f["queue"]] if f["queue"] else None,
            limit=PAGE + 1,
            before=before,
        )
        if since is not None:
            rows = [r for r in rows if r.created_at >= since]
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        cursor = f"{rows[-1].created_at.isoformat()}|{rows[-1].seq}" if more and rows else None
        return rows, cursor, problems

    def executions(self, request: Request) -> Response:
        found = request.query_params.get("find", "").strip()
        if found:
            row = self.store.get(found) or self.store.get_by_key(found)
            if row is not None and row.unit is not None:  # a branch or an item: its page
                return RedirectResponse(self.unit_path(request, row), status_code=303)
            if row is not None:
                where = self.path(request, "execution", eid=row.id)
                return RedirectResponse(where, status_code=303)
        f = self._filters(request)
        rows, cursor, problems = self._rows(f)
        if found:
            problems.append(f"no execution has the id or idempotency key {found!r}")
        workflows = sorted(registered_workflows())
        return self.page(
            request,
            "executions.html",
            rows=[(r, r.to_execution()) for r in rows],
            cursor=cursor,
            filters=f,
            find=found,
            problems=problems,
            workflows=workflows,
            statuses=[s.value for s in Status],
            next_url=_with(request, before=cursor) if cursor else None,
            rows_url=f"{self.path(request, 'execution_rows')}?{urlencode(f)}",
        )

    def execution_rows(self, request: Request) -> Response:
        f = self._filters(request)
        rows, _, _ = self._rows(f)
        return self.live(request, "_rows.html", rows=[(r, r.to_execution()) for r in rows])

    def _row(self, eid: str) -> ExecutionRow:
        """The row of an execution or a unit (a 404 when there is none)."""
        row: ExecutionRow | None = self.store.get(eid)
        if row is None:
            raise _Refused(404, f"No execution has the id {eid!r}.")
        return row

    def _execution(self, eid: str) -> tuple[Execution, ExecutionRow]:
        row = self._whole(eid)
        return row.to_execution(self.store.own_steps(eid)), row

    def _whole(self, eid: str) -> ExecutionRow:
        """The row of execution ``eid``: a 404 when there is none, or when ``eid`` is a
        unit's (a branch or an item is acted on through its execution)."""
        row = self._row(eid)
        if row.unit is not None:
            raise _Refused(
                404,
                f"{eid!r} is a unit ({row.unit}) of execution {row.parent_id}, not an "
                "execution: open it from that execution's page.",
            )
        return row

    def _waits(self, eid: str) -> tuple[list[Wait], int]:
        """The waits to show (the pending ones, then the newest others, oldest first) and
        how many older ones are left out."""
        shown: dict[tuple[str, str, int, int], Wait] = {}
        for w in self.store.waits(execution_id=eid, pending_only=True, limit=WAITS):
            shown[(w.execution_id, w.step, w.visit, w.seq)] = w
        recent, total = self.store.recent_waits(eid, limit=WAITS)
        for w in recent:
            shown.setdefault((w.execution_id, w.step, w.visit, w.seq), w)
        waits = sorted(shown.values(), key=lambda w: (w.created_at, w.execution_id, w.seq))
        return waits, max(0, total - len(waits))

    def _live_values(self, request: Request, eid: str) -> dict[str, Any]:
        ex, row = self._execution(eid)
        steps = ex.steps or []
        waits, older_waits = self._waits(eid)
        children = self.store.list_executions(
            workflows=None, statuses=None, queues=None, limit=PAGE + 1, parent=eid
        )
        groups = self._groups(ex, steps)
        try:
            wdef = get_workflow(ex.workflow)
            # (its children are listed under the graph, with links: not drawn again)
            drawn: str | None = graph(
                wdef, "mermaid", execution=ex, engine=self.engine, children=False
            )
        except DurableError:  # not imported here, or a run the current code cannot place
            drawn = None
        return {
            "ex": ex,
            "row": row,
            "steps": steps,
            "waits": waits,
            "older_waits": older_waits,
            "children": [c.to_execution() for c in children[:PAGE]],
            "more_children": len(children) > PAGE,
            "groups": groups,
            "graph": drawn,
            "units_url": self.path(request, "units", eid=eid),
            "unit_url": self.path(request, "unit", eid=eid),
        }

    def _groups(self, ex: Execution, steps: Sequence[StepExecution]) -> dict[str, Any]:
        """(step, visit) of each group run -> its first page of units."""
        runs: dict[tuple[str, int], None] = {}
        try:
            wdef = get_workflow(ex.workflow)
            kinds = {s.name: s.kind for s in wdef.steps}
        except WorkflowNotFound:
            kinds = {}
        for s in steps:
            kind = kinds.get(s.name)
            if kind in ("parallel", "foreach") or (not kinds and s.phase == "run"):
                runs[(s.name, s.visit)] = None
        out: dict[str, Any] = {}
        for name, visit in list(runs)[:100]:
            page = self.store.unit_outcomes(ex.id, name, visit, limit=PAGE + 1)
            if page:
                out[f"{name}@{visit}"] = {
                    "step": name,
                    "visit": visit,
                    "units": page[:PAGE],
                    "after": page[PAGE - 1].index if len(page) > PAGE else None,
                }
        return out

    def execution(self, request: Request) -> Response:
        eid = request.path_params["eid"]
        try:
            row = self._row(eid)
            if row.unit is not None:  # a unit's id (a link, a bookmark): its own page
                return RedirectResponse(self.unit_path(request, row), status_code=303)
            values = self._live_values(request, eid)
        except _Refused as exc:
            return self.refused(request, exc)
        ex: Execution = values["ex"]
        pending_inputs = [w for w in values["waits"] if w.kind == "input" and w.status == "pending"]
        forms = [(w, n, form_for(w.schema)) for w in pending_inputs for n in w.names]
        try:
            step_names = [s.name for s in get_workflow(ex.workflow).steps]
        except WorkflowNotFound:
            step_names = list(dict.fromkeys(s.name for s in values["steps"]))
        settled = _settled(values)
        version = ""
        if not settled:  # (the page polls: its first answer must not redraw what it shows)
            live = self.page(request, "_live.html", **values)
            version = hashlib.sha256(bytes(live.body)).hexdigest()[:16]
        return self.page(
            request,
            "execution.html",
            version=version,
            settled=settled,
            forms=forms,
            step_names=step_names,
            context_unreadable=any(p.startswith("context") for p in ex.unreadable),
            live_url=self.path(request, "execution_live", eid=eid),
            **values,
        )

    def execution_live(self, request: Request) -> Response:
        try:
            values = self._live_values(request, request.path_params["eid"])
        except _Refused as exc:
            return self.refused(request, exc)
        return self.live(request, "_live.html", final=_settled(values), **values)

    def units(self, request: Request) -> Response:
        eid = request.path_params["eid"]
        q = request.query_params
        step, visit, after = q.get("step", ""), q.get("visit", "1"), q.get("after", "-1")
        if not visit.isdigit() or not after.lstrip("-").isdigit():
            return self.refused(request, _Refused(400, "visit and after are integers"))
        try:
            ex = self._execution(eid)[0]
        except _Refused as exc:
            return self.refused(request, exc)
        page = self.store.unit_outcomes(eid, step, int(visit), after=int(after), limit=PAGE + 1)
        group = {
            "step": step,
            "visit": int(visit),
            "units": page[:PAGE],
            "after": page[PAGE - 1].index if len(page) > PAGE else None,
        }
        return self.page(
            request,
            "_units.html",
            ex=ex,
            group=group,
            units_url=self.path(request, "units", eid=eid),
            unit_url=self.path(request, "unit", eid=eid),
        )

    def unit(self, request: Request) -> Response:
        eid = request.path_params["eid"]
        q = request.query_params
        step, visit, index = q.get("step", ""), q.get("visit", "1"), q.get("index", "")
        if not visit.isdigit() or not index.isdigit():
            return self.refused(request, _Refused(400, "visit and index are integers"))
        try:
            ex, _ = self._execution(eid)
        except _Refused as exc:
            return self.refused(request, exc)
        attempts = self.store.steps(unit_id(eid, step, int(visit), int(index)))
        return self.page(
            request, "unit.html", ex=ex, step=step, visit=visit, index=index, attempts=attempts
        )

    # -- actions ---------------------------------------------------------------------------

    async def _act(
        self, request: Request, do: Callable[[dict[str, str]], str], back: str
    ) -> Response:
        try:
            fields = await self.action(request)
            notice_url = await run_in_threadpool(do, fields)
        except _Refused as exc:
            return self.refused(request, exc)
        except (ExecutionNotFound, ScheduleNotFound) as exc:  # (nothing to go back to)
            listing = "executions" if isinstance(exc, ExecutionNotFound) else "schedules"
            return self.page(
                request,
                "error.html",
                status=404,
                message=str(exc),
                back=self.path(request, listing),
            )
        except (DurableError, ValueError) as exc:
            return self.page(request, "error.html", status=409, message=str(exc), back=back)
        return RedirectResponse(notice_url, status_code=303)

    async def cancel(self, request: Request) -> Response:
        eid = request.path_params["eid"]
        back = self.path(request, "execution", eid=eid)

        def do(fields: dict[str, str]) -> str:
            self._whole(eid)
            self.engine.cancel(eid, reason=fields.get("reason") or "cancelled from the dashboard")
            return f"{back}?notice=cancelled"

        return await self._act(request, do, back)

    async def retry(self, request: Request) -> Response:
        eid = request.path_params["eid"]
        back = self.path(request, "execution", eid=eid)

        def do(fields: dict[str, str]) -> str:
            self._whole(eid)
            self.engine.retry(eid, from_step=fields.get("from_step") or None)
            return f"{back}?notice=retried"

        return await self._act(request, do, back)

    async def fork(self, request: Request) -> Response:
        eid = request.path_params["eid"]
        back = self.path(request, "execution", eid=eid)

        def do(fields: dict[str, str]) -> str:
            self._whole(eid)
            text = fields.get("context", "").strip()
            context = _object(text, "the context") if text else None
            new = self.engine.fork(eid, fields.get("from_step", ""), context=context)
            return f"{self.path(request, 'execution', eid=new)}?notice=forked"

        return await self._act(request, do, back)

    async def send_event(self, request: Request) -> Response:
        eid = request.path_params["eid"]
        back = self.path(request, "execution", eid=eid)

        def do(fields: dict[str, str]) -> str:
            self._whole(eid)
            text = fields.get("payload", "").strip()
            payload = _loads(text, "the payload") if text else None
            self.engine.send_event(eid, fields.get("name", "").strip(), payload)
            return f"{back}?notice=sent"

        return await self._act(request, do, back)

    async def provide_input(self, request: Request) -> Response:
        eid, name = request.path_params["eid"], request.path_params["name"]
        back = request.query_params.get("back") or ""
        if not _own_path(back):
            back = self.path(request, "execution", eid=eid)
        try:
            fields = await self.action(request)
        except _Refused as exc:
            return self.refused(request, exc)
        return await run_in_threadpool(self._provide, request, eid, name, fields, back)

    def _input_wait(self, request: Request, eid: str, name: str) -> Wait:
        """The pending input wait ``name`` of execution ``eid``: a 404 when there is no
        such execution or input, a 409 when that input is no longer pending."""
        row = self.store.get(eid)
        if row is None or row.unit is not None:
            raise _Refused(
                404, f"No execution has the id {eid!r}.", self.path(request, "executions")
            )
        pending: list[Wait] = self.store.waits(execution_id=eid, kind="input", limit=1000)
        for w in pending:
            if name in w.names:
                return w
        back = self.path(request, "execution", eid=eid)
        every = self.store.waits(execution_id=eid, kind="input", pending_only=False, limit=1000)
        if any(name in w.names for w in every):
            raise _Refused(
                409,
                f"Execution {eid} is not waiting for the input {name!r} any more (it was "
                "given, or its wait timed out or ended with the execution).",
                back,
            )
        waiting = sorted({n for w in pending for n in w.names})
        raise _Refused(
            404,
            f"Execution {eid} has no input named {name!r}"
            + (f"; it waits for: {', '.join(map(repr, waiting))}." if waiting else "."),
            back,
        )

    def _provide(
        self, request: Request, eid: str, name: str, fields: dict[str, str], back: str
    ) -> Response:
        try:
            wait = self._input_wait(request, eid, name)
        except _Refused as exc:
            return self.refused(request, exc)
        form = form_for(wait.schema)
        try:
            data = form.data(fields)
            self.engine.provide_input(eid, name, data)
        except InvalidInput as exc:
            form.place(list(exc.problems) or [("", str(exc))])
            return self._refused_form(request, wait, name, form, back)
        except ValueError:
            return self._refused_form(request, wait, name, form, back)
        except ExecutionNotFound as exc:  # (purged meanwhile)
            return self.page(request, "error.html", status=404, message=str(exc))
        except DurableError as exc:
            return self.page(request, "error.html", status=409, message=str(exc), back=back)
        return RedirectResponse(f"{back}{'&' if '?' in back else '?'}notice=provided", 303)

    def _refused_form(
        self, request: Request, wait: Wait, name: str, form: Form, back: str
    ) -> Response:
        return self.page(
            request, "input_refused.html", status=422, wait=wait, name=name, form=form, back=back
        )

    # -- pending inputs, schedules, workers ------------------------------------------------

    def inputs(self, request: Request) -> Response:
        waits = self.store.waits(kind="input", limit=200)
        forms = [(w, n, form_for(w.schema)) for w in waits for n in w.names]
        return self.page(request, "inputs.html", forms=forms)

    def schedules(self, request: Request) -> Response:
        return self.page(request, "schedules.html", schedules=self.engine.list_schedules())

    async def _schedule(self, request: Request, paused: bool) -> Response:
        name = request.path_params["name"]
        back = self.path(request, "schedules")

        def do(fields: dict[str, str]) -> str:
            if paused:
                self.engine.pause_schedule(name)
            else:
                self.engine.resume_schedule(name)
            return f"{back}?notice={'paused' if paused else 'resumed'}"

        return await self._act(request, do, back)

    async def pause(self, request: Request) -> Response:
        return await self._schedule(request, True)

    async def resume(self, request: Request) -> Response:
        return await self._schedule(request, False)

    def _workers(self) -> dict[str, Any]:
        """Each worker's claims, each with its lease and whether the lease expired by the
        engine's clock (the store's rows say until when; the worker that lost it may be
        gone: any worker takes such a claim over)."""
        now = self.engine.clock.now()
        running = self.store.list_executions(
            workflows=None, statuses=[Status.RUNNING], queues=None, limit=1000
        )
        workers: dict[str, list[tuple[Execution, datetime | None, bool]]] = {}
        leases: dict[str, datetime | None] = {}
        for r in running:
            who = r.worker_id or "(unknown)"
            lease = r.lease_expires_at
            expired = lease is not None and lease <= now
            workers.setdefault(who, []).append((r.to_execution(), lease, expired))
            held = leases.get(who)
            if lease is not None and (held is None or lease > held):
                leases[who] = lease
        return {
            "workers": sorted(workers.items()),
            "leases": leases,
            "now": now,
            "capped": len(running) >= 1000,
        }

    def workers(self, request: Request) -> Response:
        return self.page(
            request,
            "workers.html",
            live_url=self.path(request, "workers_live"),
            **self._workers(),
        )

    def workers_live(self, request: Request) -> Response:
        return self.live(request, "_workers.html", **self._workers())


# -- helpers ---------------------------------------------------------------------------------


def _with(request: Request, **params: str | None) -> str:
    q = dict(request.query_params)
    for k, v in params.items():
        if v is None:
            q.pop(k, None)
        else:
            q[k] = v
    return f"{request.url.path}?{urlencode(q)}"


def _own_path(back: str) -> bool:
    """Whether ``back`` is a path of this site to send the browser back to: it begins
    with one ``/``, and holds no backslash and no control character (``//host``,
    ``/\\host``, and ``/<tab>/host`` or ``/<newline>/host``, which browsers read as
    ``//host`` once they drop those characters, would all leave the site)."""
    return (
        back.startswith("/")
        and not back.startswith("//")
        and "\\" not in back
        and not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in back)
    )


def _moment(text: str, what: str, problems: list[str]) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        problems.append(f"{what}: {text!r} is not a date and time (2026-11-28T09:00)")
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _loads(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{what} is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None


def _object(text: str, what: str) -> dict[str, Any]:
    value = _loads(text, what)
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _took(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    ms = (end - start).total_seconds() * 1000
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _short(value: Any, length: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= length else text[: length - 3] + "..."


def _settled(values: dict[str, Any]) -> bool:
    """Whether an execution's page can stop polling: it completed, and the children it
    lists have finished. A failed, cancelled or compensated one can still be retried
    (from another tab, the CLI), and a completed parent's children may still run."""
    ex: Execution = values["ex"]
    if ex.status != "completed" or values["more_children"]:
        return False
    return all(child.finished for child in values["children"])
