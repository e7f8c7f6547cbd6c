"""The dashboard over HTTP (Starlette's test client, the real app, on memory, SQLite and
PostgreSQL): every page, every action, CSRF, the token, read-only, escaping."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
import sqlalchemy as sa
from dash_workflows import Approval, Chatty, Many, Order, PaintJob, Parent, Spawner, Waiter
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

import durable
import durable.dashboard.app as dashboard_app
from durable import step, workflow
from durable.context import wait_for_input
from durable.dashboard import create_app
from durable.dashboard._security import check_bind, is_loopback
from durable.stores.base import unit_id

from helpers import run_due

TOKEN = "a-token-of-enough-length-42"
XSS = "<script>window.__xss = 1</script>"


@pytest.fixture
def client(engine):
    with TestClient(create_app(engine), base_url="http://127.0.0.1:8765") as c:
        yield c


def csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "the page has no CSRF field"
    return found[1]


def failed_order(engine, durable_clock, **extra):
    wid = engine.start(Order, {"sku": "A-1", "fail": True, "why": "card declined", **extra})
    run_due(engine, durable_clock)
    assert engine.get_execution(wid).status == "failed"
    return wid


# -- pages -----------------------------------------------------------------------------------


def test_the_list_filters_and_pages_with_a_cursor(engine, durable_clock, client):
    ids = []
    for i in range(55):
        ids.append(engine.start(Order, {"sku": f"S-{i}"}, idempotency_key=f"key-{i}"))
        durable_clock.advance(1000)
    waiting = engine.start(Waiter)
    run_due(engine, durable_clock)
    first = client.get("/executions")
    assert first.status_code == 200
    assert first.text.count("/executions/") >= 50
    assert waiting[:8] in first.text  # newest first
    nxt = re.search(r'href="([^"]+)" id="next-page"', first.text)
    assert nxt is not None
    second = client.get(nxt[1].replace("&amp;", "&"))
    assert ids[0][:8] in second.text and waiting[:8] not in second.text
    assert 'id="next-page"' not in second.text
    only = client.get("/executions", params={"workflow": "dash_waiter"})
    assert waiting[:8] in only.text and ids[0][:8] not in only.text
    by_status = client.get("/executions", params={"status": "waiting"})
    assert waiting[:8] in by_status.text and ids[3][:8] not in by_status.text
    # a time range: the first ten seconds of orders
    start = engine.get_execution(ids[0]).created_at
    ranged = client.get(
        "/executions",
        params={
            "since": start.isoformat(),
            "until": (start + timedelta(seconds=9.5)).isoformat(),
        },
    )
    shown = set(re.findall(r"/executions/([0-9a-f-]{36})", ranged.text))
    assert shown == set(ids[:10])
    bad = client.get("/executions", params={"status": "nope", "since": "yesterday"})
    assert "no status &#39;nope&#39;" in bad.text and "is not a date and time" in bad.text


def test_find_opens_by_id_or_idempotency_key(engine, client):
    wid = engine.start(Order, {"sku": "A"}, idempotency_key="order-77")
    by_key = client.get("/executions", params={"find": "order-77"}, follow_redirects=False)
    assert by_key.status_code == 303 and by_key.headers["location"].endswith(f"/executions/{wid}")
    assert (
        client.get("/executions", params={"find": wid}, follow_redirects=False).status_code == 303
    )
    missing = client.get("/executions", params={"find": "nope"})
    assert "no execution has the id or idempotency key" in missing.text


def test_find_opens_a_unit_by_its_id_on_its_page(engine, durable_clock, client):
    wid = engine.start(Many, 3)
    run_due(engine, durable_clock)
    item = unit_id(wid, "each", 1, 1)
    found = client.get("/executions", params={"find": item}, follow_redirects=False)
    assert found.status_code == 303
    where = urlparse(found.headers["location"])
    assert where.path == f"/executions/{wid}/unit"
    assert parse_qs(where.query) == {"step": ["each"], "visit": ["1"], "index": ["1"]}
    page = client.get(found.headers["location"])
    assert page.status_code == 200 and "item 1" in page.text  # the item's own output
    # its id as an execution's address opens the same page
    opened = client.get(f"/executions/{item}", follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == found.headers["location"]


def test_a_failed_execution_shows_its_error_timeline_logs_and_graph(engine, durable_clock, client):
    wid = failed_order(engine, durable_clock)
    page = client.get(f"/executions/{wid}").text
    assert "RuntimeError" in page and "card declined" in page
    assert "traceback" in page
    assert "reserving A-1" in page  # its captured output
    assert "stock low for A-1" in page  # its log record
    assert "set order" in page  # what the step changed in the context
    assert '<pre class="mermaid">' in page and "flowchart TD" in page
    assert 'name="from_step"' in page  # retry from a chosen step
    assert client.get("/executions/nope").status_code == 404


def test_an_execution_with_many_items_pages_them(engine, durable_clock, client):
    wid = engine.start(Many, 120)
    run_due(engine, durable_clock)
    page = client.get(f"/executions/{wid}").text
    assert page.count("each[") == 50
    # the graph counts the items (the page reads the execution's own attempts only)
    assert "each (foreach xs): 120 items: 120 completed" in page
    assert "no items yet" not in page
    # its context is in the page once (the fork form takes its copy in the browser)
    assert page.count("&#34;xs&#34;: [") == 1
    assert 'data-fill-from="context"' in page and '<pre class="json" id="context">' in page
    more = re.search(r'class="more" href="([^"]+)"', page)
    assert more is not None
    second = client.get(more[1].replace("&amp;", "&")).text
    assert "each[50]" in second and "each[99]" in second and "each[100]" not in second
    unit = client.get(
        f"/executions/{wid}/unit", params={"step": "each", "visit": 1, "index": 7}
    ).text
    assert "item 7" in unit  # the item's own captured output


def test_parent_and_children_link_each_other(engine, durable_clock, client):
    wid = engine.start(Parent)
    run_due(engine, durable_clock)
    (child,) = engine.list_executions(parent=wid)
    page = client.get(f"/executions/{wid}").text
    assert f"/executions/{child.id}" in page and "dash_child" in page
    # listed once: in the children table, not drawn in the graph again
    assert page.count(f"/executions/{child.id}") == 1 and page.count("dash_child") == 1
    assert "(child)" not in page
    assert f"/executions/{wid}" in client.get(f"/executions/{child.id}").text


def test_live_parts_answer_204_when_nothing_changed(engine, durable_clock, client):
    wid = engine.start(Waiter)
    run_due(engine, durable_clock)
    first = client.get(f"/executions/{wid}/live")
    version = first.headers["x-version"]
    assert client.get(f"/executions/{wid}/live", params={"v": version}).status_code == 204
    engine.send_event(wid, "paid", 5)
    run_due(engine, durable_clock)
    changed = client.get(f"/executions/{wid}/live", params={"v": version})
    # (final: htmx swaps it in and stops polling on a 286)
    assert changed.status_code == 286 and "completed" in changed.text
    assert client.get(f"/executions/{wid}/live", params={"v": version}).status_code == 286
    rows = client.get("/executions/rows")
    assert (
        client.get("/executions/rows", params={"v": rows.headers["x-version"]}).status_code == 204
    )


def test_a_finished_executions_page_polls_nothing(engine, durable_clock, client):
    wid = engine.start(Waiter)
    run_due(engine, durable_clock)

    def live_div() -> str:
        page = client.get(f"/executions/{wid}").text
        return re.search(r'<div id="live"[^>]*>', page)[0]

    assert "hx-trigger" in live_div() and "hx-get" in live_div()  # waiting: it may change
    engine.send_event(wid, "paid", 5)
    run_due(engine, durable_clock)
    assert engine.get_execution(wid).status == "completed"
    assert "hx-trigger" not in live_div() and "hx-get" not in live_div()
    assert client.get(f"/executions/{wid}/live").status_code == 286  # (stop, if polling)


def test_a_page_that_can_still_change_keeps_polling(engine, durable_clock, client):
    """A failed execution can be retried elsewhere; a completed parent's child may run on."""
    failed = failed_order(engine, durable_clock)
    page = client.get(f"/executions/{failed}").text
    assert "hx-trigger" in re.search(r'<div id="live"[^>]*>', page)[0]
    assert client.get(f"/executions/{failed}/live").status_code == 200
    engine.retry(failed)  # (from the CLI, another tab)
    live = client.get(f"/executions/{failed}/live")
    assert live.status_code == 200 and "pending" in live.text

    parent = engine.start(Spawner)
    run_due(engine, durable_clock)
    assert engine.get_execution(parent).status == "completed"
    (kid,) = engine.list_executions(parent=parent)
    assert kid.status == "waiting"
    assert client.get(f"/executions/{parent}/live").status_code == 200  # (its child runs on)
    engine.send_event(kid.id, "paid", 1)
    run_due(engine, durable_clock)
    assert client.get(f"/executions/{parent}/live").status_code == 286


def test_pending_waits_are_shown_however_many_came_before(
    engine, durable_clock, client, monkeypatch
):
    monkeypatch.setattr(dashboard_app, "WAITS", 5)  # (the page shows the newest 200)
    wid = engine.start(Chatty)
    run_due(engine, durable_clock)
    assert engine.get_execution(wid).status == "waiting"  # 8 sleeps done, an event awaited
    page = client.get(f"/executions/{wid}").text
    table = re.search(r'<table class="list" id="waits">.*?</table>', page, re.S)[0]
    rows = re.findall(r"<tr><td>(\w+)</td><td>([^<]*)</td>.*?status s-(\w+)", table)
    assert len(rows) == 5 and rows[-1] == ("event", "go", "pending")
    assert [kind for kind, _, _ in rows[:-1]] == ["sleep"] * 4
    assert "4 older waits not shown" in page


@pytest.mark.parametrize("durable_store_url", ["sqlite", "postgres"], indirect=True)
def test_an_execution_that_cannot_be_read_says_so(engine, durable_clock, client):
    # (SQL stores: a row written by an older version or by hand; memory holds objects)
    wid = engine.start(Waiter)
    run_due(engine, durable_clock)
    table = sa.Table("durable_executions", sa.MetaData(), autoload_with=engine.store.engine)
    with engine.store.engine.begin() as conn:
        deep = "[" * 5000 + "]" * 5000  # valid JSON, past what Python reads
        conn.execute(sa.update(table).where(table.c.id == wid).values(context=deep))
    page = client.get(f"/executions/{wid}")
    assert page.status_code == 200
    shown = re.search(r'<div class="error big" id="unreadable">.*?</div>', page.text, re.S)[0]
    assert "cannot be read" in shown and "context: nested too deep" in shown
    # the fork form is not filled with the {} the context reads as, and says why
    assert "data-fill-from" not in page.text
    assert "context cannot be read here" in page.text


def test_schedules_and_workers_pages(engine, client):
    engine.schedule("dash_order", "0 9 * * *", input={"sku": "daily"}, name="daily-order")
    page = client.get("/schedules").text
    assert "daily-order" in page and "0 9 * * *" in page and "Pause" in page
    with engine.worker(concurrency=1):
        assert "Workers" in client.get("/workers").text


def test_the_workers_page_marks_expired_leases_by_the_engines_clock(engine, durable_clock, client):
    wid = engine.start(Order, {"sku": "A"})
    (claim,) = engine.store.claim(
        queues=None,
        workflows=["dash_order"],
        worker_id="worker-7",
        now=durable_clock.now(),
        lease_ms=30_000,
        limit=1,
    )
    assert claim.id == wid
    page = client.get("/workers").text
    assert "worker-7" in page and wid[:8] in page and "lease expired" not in page
    durable_clock.advance(29_000)
    assert "lease expired" not in client.get("/workers/live").text
    durable_clock.advance(1_000)  # (the lease ends now: any worker may take it over)
    live = client.get("/workers/live").text
    assert "lease expired" in live and "every lease expired" in live
    assert "lease expired" in client.get("/workers").text


# -- actions ---------------------------------------------------------------------------------


def test_retry_from_a_chosen_step(engine, durable_clock, client):
    wid = failed_order(engine, durable_clock)
    token = csrf(client.get(f"/executions/{wid}").text)
    done = client.post(
        f"/executions/{wid}/retry",
        data={"csrf": token, "from_step": "reserve"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and "notice=retried" in done.headers["location"]
    assert engine.get_execution(wid).status == "pending"
    assert engine.get_execution(wid).current_step == "reserve"


def test_cancel_send_event_and_fork(engine, durable_clock, client):
    waiting = engine.start(Waiter)
    other = engine.start(Waiter)
    run_due(engine, durable_clock)
    token = csrf(client.get(f"/executions/{waiting}").text)
    client.post(f"/executions/{waiting}/cancel", data={"csrf": token, "reason": "by hand"})
    got = engine.get_execution(waiting)
    assert got.status == "cancelled" and got.cancel_reason == "by hand"
    client.post(f"/executions/{other}/events", data={"csrf": token, "name": "paid", "payload": "7"})
    run_due(engine, durable_clock)
    assert engine.get_execution(other).context == {"paid": 7}
    forked = client.post(
        f"/executions/{other}/fork",
        data={"csrf": token, "from_step": "wait", "context": '{"note": "again"}'},
        follow_redirects=False,
    )
    new_id = urlparse(forked.headers["location"]).path.rsplit("/", 1)[1]
    assert engine.get_execution(new_id).context == {"note": "again"}
    bad = client.post(
        f"/executions/{other}/fork", data={"csrf": token, "from_step": "wait", "context": "[1"}
    )
    assert bad.status_code == 409 and "the context is not JSON" in bad.text


def test_provide_input_shows_the_schemas_errors_next_to_the_fields(engine, durable_clock, client):
    wid = engine.start(Approval)
    run_due(engine, durable_clock)
    page = client.get("/inputs").text
    assert "Approve the refund?" in page
    assert 'name="input.by"' in page and 'name="input.limit"' in page
    token = csrf(page)
    url = f"/inputs/{wid}/approval?back=/inputs"
    refused = client.post(url, data={"csrf": token, "input.by": "x", "input.limit": "0"})
    assert refused.status_code == 422
    assert re.search(r'class="field bad">\s*<span>Approved by', refused.text)
    assert "should be non-empty" in refused.text or "too short" in refused.text
    assert "less than the minimum" in refused.text
    assert engine.get_execution(wid).status == "waiting"  # nothing was stored
    # a required field left empty: its problem is at that field, not only at the top
    empty = client.post(url, data={"csrf": token, "input.by": "", "input.limit": "3"})
    assert empty.status_code == 422
    assert re.search(
        r'class="field bad">\s*<span>Approved by \*</span>.*?<small class="problem">required',
        empty.text,
        re.S,
    )
    assert "is a required property" not in empty.text
    typed = client.post(url, data={"csrf": token, "input.by": "ann", "input.limit": "ten"})
    assert typed.status_code == 422 and "&#39;ten&#39; is not an integer" in typed.text
    ok = client.post(
        url,
        data={"csrf": token, "input.approved": "on", "input.by": "ann", "input.limit": "5"},
        follow_redirects=False,
    )
    assert ok.status_code == 303 and parse_qs(urlparse(ok.headers["location"]).query) == {
        "notice": ["provided"]
    }
    run_due(engine, durable_clock)
    assert engine.get_execution(wid).context["answer"] == {
        "approved": True,
        "by": "ann",
        "limit": 5,
    }


def test_pause_and_resume_a_schedule(engine, client):
    engine.schedule("dash_order", "0 9 * * *", input={"sku": "daily"}, name="daily-order")
    token = csrf(client.get("/schedules").text)
    client.post("/schedules/daily-order/pause", data={"csrf": token})
    assert engine.get_schedule("daily-order").paused
    client.post("/schedules/daily-order/resume", data={"csrf": token})
    assert not engine.get_schedule("daily-order").paused


# -- protection ------------------------------------------------------------------------------


def test_every_action_needs_its_csrf_token_and_the_same_origin(engine, durable_clock, client):
    wid = failed_order(engine, durable_clock)
    token = csrf(client.get(f"/executions/{wid}").text)
    for path, data in [
        (f"/executions/{wid}/retry", {}),
        (f"/executions/{wid}/cancel", {}),
        (f"/executions/{wid}/fork", {"from_step": "reserve"}),
        (f"/executions/{wid}/events", {"name": "x"}),
        (f"/inputs/{wid}/approval", {}),
        ("/schedules/x/pause", {}),
    ]:
        assert client.post(path, data=data).status_code == 403, path
        assert client.post(path, data={**data, "csrf": "0" * 64}).status_code == 403, path
    # a valid token from another site's page is refused too
    other = client.post(
        f"/executions/{wid}/retry",
        data={"csrf": token},
        headers={"origin": "https://evil.example"},
    )
    assert other.status_code == 403
    # another browser (no session cookie) cannot reuse this one's token
    with TestClient(create_app(engine), base_url="http://127.0.0.1:8765") as stranger:
        assert stranger.post(f"/executions/{wid}/retry", data={"csrf": token}).status_code == 403
    assert engine.get_execution(wid).status == "failed"


def test_a_token_guards_every_page_and_leaves_the_address_bar(engine):
    app = create_app(engine, token=TOKEN)
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        assert c.get("/executions").status_code == 401
        assert c.get("/executions", params={"token": "wrong-token-of-length"}).status_code == 401
        opened = c.get("/executions", params={"token": TOKEN}, follow_redirects=False)
        assert opened.status_code == 303 and "token" not in opened.headers["location"]
        assert c.get("/executions").status_code == 200  # the cookie carries it now
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        bearer = {"authorization": f"Bearer {TOKEN}"}
        assert c.get("/executions", headers=bearer).status_code == 200
    with pytest.raises(durable.ConfigError, match="at least 16"):
        create_app(engine, token="short")


def test_read_only_hides_and_refuses_every_action(engine, durable_clock):
    wid = failed_order(engine, durable_clock)
    with TestClient(create_app(engine, read_only=True), base_url="http://127.0.0.1") as c:
        page = c.get(f"/executions/{wid}").text
        assert "read-only" in page
        assert "/retry" not in page and "/cancel" not in page and "/fork" not in page
        assert 'name="csrf"' not in page  # no form to send
        refused = c.post(f"/executions/{wid}/retry", data={"csrf": "any"})
        assert refused.status_code == 403 and "read-only" in refused.text
    assert engine.get_execution(wid).status == "failed"


def test_an_apps_own_auth_is_asked_first(engine):
    asked = []

    async def auth(request):
        asked.append(request.url.path)
        return request.headers.get("x-user") == "ann"

    with TestClient(create_app(engine, auth=auth)) as c:
        assert c.get("/executions").status_code == 403
        assert c.get("/executions", headers={"x-user": "ann"}).status_code == 200
    assert asked == ["/executions", "/executions"]


def test_listening_beyond_loopback_needs_a_token():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", TOKEN)
    with pytest.raises(durable.ConfigError, match="without --token"):
        check_bind("0.0.0.0", None)


def test_every_stored_value_is_escaped(engine, durable_clock, client):
    wid = failed_order(engine, durable_clock, sku=XSS, why=XSS)
    engine.start(Order, {"sku": XSS}, idempotency_key=XSS)
    run_due(engine, durable_clock)
    for path in ["/executions", f"/executions/{wid}", f"/executions/{wid}/live"]:
        text = client.get(path).text
        assert "<script>window.__xss" not in text, path
    page = client.get(f"/executions/{wid}").text
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in page  # shown, as text


def test_pages_send_a_content_security_policy(client):
    headers = client.get("/executions").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "back",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        # browsers drop tabs and newlines from a URL: these are //evil.example/ to them
        "/\t/evil.example/",
        "/\n/evil.example/",
        "/\r/evil.example/",
        "/\x0b/evil.example/",
        "/inputs\x7f",
    ],
)
def test_an_input_sends_back_only_to_a_page_of_this_site(engine, durable_clock, client, back):
    wid = engine.start(Approval)
    run_due(engine, durable_clock)
    token = csrf(client.get("/inputs").text)
    done = client.post(
        f"/inputs/{wid}/approval",
        params={"back": back},
        data={"csrf": token, "input.approved": "on", "input.by": "ann", "input.limit": "5"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"].startswith(f"/executions/{wid}?")


def test_without_a_token_only_requests_to_this_machine_are_answered(engine):
    # DNS rebinding: a page elsewhere whose name now resolves to 127.0.0.1 sends its Host
    with TestClient(create_app(engine), base_url="http://attacker.example:8765") as c:
        refused = c.get("/executions")
        assert refused.status_code == 421 and "give it --token" in refused.text
    with TestClient(create_app(engine, token=TOKEN), base_url="http://dash.example") as c:
        assert c.get("/executions", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200


@workflow("dash_odd_input")
class OddInput:
    @step
    def ask(self):
        wait_for_input("team/lead?ok#1")


def test_names_with_slashes_and_url_characters_work(engine, durable_clock, client):
    wid = engine.start(OddInput)
    engine.schedule("dash_order", "0 9 * * *", input={"sku": "d"}, name="reports/daily #1?")
    run_due(engine, durable_clock)
    page = client.get(f"/executions/{wid}")
    assert page.status_code == 200
    token = csrf(page.text)
    action = re.search(r'class="input-form" method="post" action="([^"]+)"', page.text)[1]
    done = client.post(action.replace("&amp;", "&"), data={"csrf": token, "input.__value__": "1"})
    assert done.status_code == 200 and engine.get_execution(wid).status == "pending"
    schedules = client.get("/schedules")
    assert schedules.status_code == 200
    pause = re.search(r'<form method="post" action="([^"]+)">', schedules.text)[1]
    client.post(pause, data={"csrf": token})
    assert engine.get_schedule("reports/daily #1?").paused


def test_read_only_shows_no_input_form(engine, durable_clock):
    wid = engine.start(Approval)
    run_due(engine, durable_clock)
    with TestClient(create_app(engine, read_only=True), base_url="http://127.0.0.1") as c:
        assert "input-form" not in c.get(f"/executions/{wid}").text
        assert "input-form" not in c.get("/inputs").text


def test_actions_on_a_units_id_are_a_404(engine, durable_clock, client):
    wid = engine.start(Many, 3)
    run_due(engine, durable_clock)
    item = unit_id(wid, "each", 1, 1)
    token = csrf(client.get(f"/executions/{wid}").text)
    for action, data in (
        ("cancel", {"reason": "x"}),
        ("retry", {}),
        ("fork", {"from_step": "load"}),
        ("send_event", {"name": "go"}),
    ):
        path = f"/executions/{item}/" + action.replace("send_event", "events")
        answer = client.post(path, data={**data, "csrf": token}, follow_redirects=False)
        assert answer.status_code == 404, (action, answer.status_code)
        assert "is a unit" in answer.text


def test_the_units_of_an_unknown_execution_are_a_404(client):
    assert client.get("/executions/nope/units", params={"step": "x"}).status_code == 404


def test_an_input_form_made_from_a_pydantic_model(engine, durable_clock, client):
    wid = engine.start(PaintJob)
    run_due(engine, durable_clock)
    page = client.get(f"/executions/{wid}").text
    form = re.search(r'<form class="input-form".*?</form>', page, re.S)[0]
    # its enum, under $defs, is a list to choose from; the nullable one offers null
    assert re.search(r'<select name="input\.colour" required><option value="&#34;red', form)
    assert '<select name="input.finish"><option value="">null</option>' in form
    # the model's csrf field is its own, apart from the dashboard's CSRF token
    assert 'name="input.csrf"' in form and form.count('name="csrf"') == 1
    action = re.search(r'class="input-form" method="post" action="([^"]+)"', form)[1]
    action = action.replace("&amp;", "&")
    token = csrf(page)
    refused = client.post(action, data={"csrf": token, "input.finish": "", "input.csrf": "x"})
    assert refused.status_code == 422
    assert re.search(r'class="field bad">\s*<span>Colour \*</span>', refused.text)
    done = client.post(
        action,
        data={"csrf": token, "input.colour": '"green"', "input.finish": "", "input.csrf": "mine"},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    run_due(engine, durable_clock)
    assert engine.get_execution(wid).context["paint"] == {
        "colour": "green",
        "finish": None,
        "csrf": "mine",
    }


def test_actions_on_what_does_not_exist_are_404_and_conflicts_409(engine, durable_clock, client):
    finished = failed_order(engine, durable_clock)
    token = csrf(client.get(f"/executions/{finished}").text)
    for path, data in [
        ("/executions/nope/cancel", {}),
        ("/executions/nope/retry", {}),
        ("/executions/nope/fork", {"from_step": "reserve"}),
        ("/executions/nope/events", {"name": "paid"}),
        ("/inputs/nope/approval", {}),
        ("/schedules/nope/pause", {}),
        ("/schedules/nope/resume", {}),
    ]:
        answer = client.post(path, data={"csrf": token, **data})
        assert answer.status_code == 404, (path, answer.status_code, answer.text)
        assert "nope" in answer.text, path
    asking = engine.start(Approval)
    run_due(engine, durable_clock)
    other = client.post(f"/inputs/{asking}/other", data={"csrf": token})
    assert other.status_code == 404 and "has no input named &#39;other&#39;" in other.text
    assert "it waits for: &#39;approval&#39;" in other.text
    engine.provide_input(asking, "approval", {"approved": True, "by": "ann", "limit": 1})
    given = client.post(f"/inputs/{asking}/approval", data={"csrf": token})
    assert given.status_code == 409 and "not waiting for the input" in given.text
    # a real conflict is still one: cancelling an execution that finished
    assert client.post(f"/executions/{finished}/cancel", data={"csrf": token}).status_code == 409


def test_nul_characters_are_refused_with_a_400_never_a_server_error(engine, durable_clock, client):
    wid = engine.start(Approval)
    run_due(engine, durable_clock)
    for params in [
        {"workflow": "dash\x00order"},
        {"status": "failed\x00"},
        {"queue": "q\x00"},
        {"find": "x\x00y"},
        {"since": "\x00"},
        {"before": "\x00|1"},
    ]:
        answer = client.get("/executions", params=params)
        assert answer.status_code == 400, params
        assert "NUL character" in answer.text and repr(next(iter(params))) in answer.text
    assert client.get("/executions/rows", params={"queue": "\x00"}).status_code == 400
    assert client.get("/executions/a%00b").status_code == 400
    assert client.get(f"/executions/{wid}/units", params={"step": "\x00"}).status_code == 400
    token = csrf(client.get(f"/executions/{wid}").text)
    for path, data in [
        (f"/executions/{wid}/cancel", {"reason": "by\x00hand"}),
        (f"/executions/{wid}/events", {"name": "pa\x00id"}),
        (f"/executions/{wid}/retry", {"from_step": "ask\x00"}),
        (f"/inputs/{wid}/approval", {"input.by": "a\x00n", "input.limit": "1"}),
        ("/inputs/nope%00/approval", {}),
        ("/schedules/a%00b/pause", {}),
    ]:
        answer = client.post(path, data={"csrf": token, **data})
        assert answer.status_code == 400, (path, answer.status_code)
        assert "NUL character" in answer.text, path
    assert engine.get_execution(wid).status == "waiting"  # nothing was done


def test_two_dashboards_on_one_host_keep_their_own_cookies(engine):
    # Browsers keep cookies by host, not port: one browser, two dashboards on 127.0.0.1.
    other_token = "another-token-of-enough-length"
    apps = {"8765": create_app(engine, token=TOKEN), "8766": create_app(engine, token=other_token)}

    async def by_port(scope, receive, send):
        host = dict(scope["headers"])[b"host"].decode()
        await apps[host.rpartition(":")[2]](scope, receive, send)

    engine.schedule("dash_order", "0 9 * * *", input={"sku": "d"}, name="daily")
    browser = TestClient(by_port, base_url="http://127.0.0.1:8765")
    first, second = "http://127.0.0.1:8765", "http://127.0.0.1:8766"
    for base, token in ((first, TOKEN), (second, other_token)):
        opened = browser.get(f"{base}/schedules", params={"token": token}, follow_redirects=False)
        assert opened.status_code == 303
        (set_cookie,) = opened.headers.get_list("set-cookie")
        assert "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie
    page = browser.get(f"{first}/schedules")  # the first still has its token (and session)
    assert page.status_code == 200
    assert browser.get(f"{second}/schedules").status_code == 200  # (its own session now)
    paused = browser.post(f"{first}/schedules/daily/pause", data={"csrf": csrf(page.text)})
    assert paused.status_code == 200 and engine.get_schedule("daily").paused
    names = {cookie.name for cookie in browser.cookies.jar}
    assert len(names) == 4  # a token and a session cookie for each
    assert all(
        n.startswith(("durable_dashboard_token_", "durable_dashboard_session_")) for n in names
    )


def test_links_and_redirects_stay_under_the_path_it_is_mounted_at(engine, durable_clock):
    wid = failed_order(engine, durable_clock)
    site = Starlette(routes=[Mount("/ops/durable", app=create_app(engine))])
    with TestClient(site, base_url="http://127.0.0.1:8765") as c:
        home = c.get("/ops/durable/", follow_redirects=False)
        assert home.headers["location"] == "/ops/durable/executions"
        page = c.get(f"/ops/durable/executions/{wid}").text
        links = re.findall(r'(?:href|src|action|hx-get)="([^"]+)"', page)
        assert len(links) > 10
        assert all(link.startswith("/ops/durable/") for link in links), links
        done = c.post(
            f"/ops/durable/executions/{wid}/retry",
            data={"csrf": csrf(page)},
            follow_redirects=False,
        )
        assert done.headers["location"] == f"/ops/durable/executions/{wid}?notice=retried"


def test_behind_a_proxy_that_ends_tls_links_are_paths_and_the_origin_is_its_host(
    engine, durable_clock
):
    # The browser speaks https to the proxy; the proxy speaks http to the app, passing
    # the Host on. The browser's Origin says https://dash.example.
    wid = failed_order(engine, durable_clock)
    with TestClient(create_app(engine, token=TOKEN), base_url="http://dash.example") as c:
        opened = c.get("/executions", params={"token": TOKEN}, follow_redirects=False)
        assert opened.headers["location"] == "/executions"
        page = c.get(f"/executions/{wid}").text
        assert "http://" not in " ".join(re.findall(r'(?:href|src|action)="([^"]+)"', page))
        done = c.post(
            f"/executions/{wid}/retry",
            data={"csrf": csrf(page)},
            headers={"origin": "https://dash.example"},
            follow_redirects=False,
        )
        assert done.status_code == 303
        assert done.headers["location"] == f"/executions/{wid}?notice=retried"
        engine.cancel(wid)
        for origin in (
            "https://evil.example",
            "https://dash.example.evil.example",
            "null",
            "http://dash.example:8080",  # (a Host without a port: 80 or 443 only)
        ):
            refused = c.post(
                f"/executions/{wid}/retry", data={"csrf": csrf(page)}, headers={"origin": origin}
            )
            assert refused.status_code == 403, origin
    with TestClient(create_app(engine, token=TOKEN), base_url="http://dash.example:8443") as c:
        c.get("/executions", params={"token": TOKEN})
        page = c.get(f"/executions/{wid}").text
        other_port = c.post(
            f"/executions/{wid}/retry",
            data={"csrf": csrf(page)},
            headers={"origin": "https://dash.example:9443"},
        )
        assert other_port.status_code == 403


def test_a_script_acts_with_its_bearer_token_alone(engine, durable_clock):
    wid = failed_order(engine, durable_clock)
    app = create_app(engine, token=TOKEN)
    with TestClient(app, base_url="http://127.0.0.1:8765") as script:
        bearer = {"authorization": f"Bearer {TOKEN}"}
        done = script.post(f"/executions/{wid}/retry", headers=bearer, follow_redirects=False)
        assert done.status_code == 303 and engine.get_execution(wid).status == "pending"
        wrong = script.post(
            f"/executions/{wid}/cancel", headers={"authorization": "Bearer not-the-token-at-all"}
        )
        assert wrong.status_code == 401
    with TestClient(app, base_url="http://127.0.0.1:8765") as browser:
        browser.get("/executions", params={"token": TOKEN})  # (the token is in a cookie now)
        refused = browser.post(f"/executions/{wid}/cancel", data={"reason": "forged"})
        assert refused.status_code == 403 and "CSRF" in refused.text
    assert engine.get_execution(wid).status == "pending"
    # a proxy may add the header to a browser's forged request: another site is refused
    with TestClient(app, base_url="http://127.0.0.1:8765") as proxied:
        for headers in (
            {**bearer, "origin": "https://evil.example"},
            {**bearer, "sec-fetch-site": "cross-site"},
        ):
            forged = proxied.post(f"/executions/{wid}/cancel", headers=headers)
            assert forged.status_code == 403 and "another site" in forged.text
    assert engine.get_execution(wid).status == "pending"
    # without a token to check, a Bearer header proves nothing: the CSRF token is needed
    with TestClient(create_app(engine), base_url="http://127.0.0.1:8765") as c:
        anyone = c.post(f"/executions/{wid}/cancel", headers={"authorization": "Bearer x" * 9})
        assert anyone.status_code == 403
