"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against the
real app served by uvicorn on a SQLite store. An operator's path: open the list, filter,
open a failed execution, read its error, retry it from a step, answer a pending input
(refused first, then accepted), cancel a waiting execution, and see each change appear
without reloading. The engine's time is the test clock; only the browser's polling runs
on the wall clock, and the assertions wait for what it shows.

Screenshots go to the test's tmp_path, and to docs/dashboard/ with
DURABLE_DOCS_SCREENSHOTS=1 (how the docs' pictures are made).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from dash_workflows import DEPLOYED, Approval, Flaky, Many, Order, Waiter, Xss

import durable
from durable.dashboard import create_app

from helpers import eventually, run_due

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

CHROMIUM = "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "dashboard"
LIVE = 10_000  # ms the browser is given to show a change (it polls every 2 s)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


class Served:
    def __init__(self, engine: durable.Engine, clock: Any, url: str) -> None:
        self.engine, self.clock, self.url = engine, clock, url

    def run(self) -> None:
        run_due(self.engine, self.clock)


@pytest.fixture
def served(tmp_path: Path, durable_clock: Any) -> Iterator[Served]:
    DEPLOYED["fixed"] = False
    engine = durable.Engine(f"sqlite:///{tmp_path / 'dash.db'}", clock=durable_clock)
    server = uvicorn.Server(
        uvicorn.Config(create_app(engine), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert eventually(lambda: server.started, timeout=30), "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Served(engine, durable_clock, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(30)
        engine.close()


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield p
    finally:
        context.close()
    assert errors == [], f"the page's scripts failed: {errors}"


def shot(page: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("DURABLE_DOCS_SCREENSHOTS"):
        DOCS.mkdir(exist_ok=True)
        shutil.copy(path, DOCS / f"{name}.png")


def test_find_a_failed_execution_read_its_error_and_retry_it_from_a_step(
    served: Served, page: Any, tmp_path: Path
) -> None:
    for sku in ("A-1", "B-2"):
        served.engine.start(Order, {"sku": sku})
    flaky = served.engine.start(Flaky)
    many = served.engine.start(Many, 60)
    served.run()
    page.goto(f"{served.url}/executions")
    expect(page.locator("tbody#rows tr")).to_have_count(4)
    shot(page, tmp_path, "executions")
    page.select_option("select[name=status]", "failed")
    page.click("form.filters button")
    expect(page.locator("tbody#rows tr")).to_have_count(1)
    page.click(f"a[href$='/executions/{flaky}']")
    expect(page.locator("#error")).to_contain_text("ConnectionError")
    expect(page.locator("#error")).to_contain_text("partner API answered 502 <b>Bad Gateway</b>")
    expect(page.locator("pre.mermaid svg")).to_be_visible()  # the graph, drawn in the page
    # the fork form starts from the context (in the page once: the script copies it)
    context = served.engine.get_execution(flaky).context
    assert page.input_value("form.fork textarea") == json.dumps(context, indent=2)
    shot(page, tmp_path, "execution-failed")
    DEPLOYED["fixed"] = True  # the fix is deployed; now retry
    page.select_option("form.act select[name=from_step]", "prepare")
    page.click("form.act button:has-text('Retry')")
    expect(page.locator("p.notice")).to_contain_text("Retried")
    served.run()
    expect(page.locator("#status")).to_contain_text("completed", timeout=LIVE)  # live
    assert served.engine.get_execution(flaky).context == {"prepared": True, "called": True}
    # a foreach: its graph counts the items, its timeline pages them
    page.goto(f"{served.url}/executions/{many}")
    expect(page.locator("pre.mermaid svg")).to_contain_text("60 items: 60 completed")
    expect(page.locator("a.more")).to_be_visible()
    shot(page, tmp_path, "execution-foreach")


def test_answer_a_pending_input_first_refused_then_accepted(
    served: Served, page: Any, tmp_path: Path
) -> None:
    wid = served.engine.start(Approval)
    served.run()
    page.goto(f"{served.url}/inputs")
    expect(page.locator("p.prompt")).to_have_text("Approve the refund?")
    # required fields: the browser itself will not send them empty
    page.click("form.input-form button")
    expect(page.locator("form.input-form :invalid")).to_have_count(2)  # by, limit
    assert page.url == f"{served.url}/inputs" and page.locator("label.field.bad").count() == 0
    page.fill("input[name='input.by']", "x")
    page.fill("input[name='input.limit']", "0")
    page.click("form.input-form button")
    expect(page.locator("label.field.bad")).to_have_count(2)
    expect(page.locator("label.field.bad", has_text="Approved by")).to_contain_text("short")
    shot(page, tmp_path, "input-refused")
    assert served.engine.get_execution(wid).status == "waiting"
    page.check("input[name='input.approved']")
    page.fill("input[name='input.by']", "ann")
    page.fill("input[name='input.limit']", "5")
    page.click("form.input-form button")
    expect(page.locator("p.notice")).to_contain_text("Input provided")
    served.run()
    page.goto(f"{served.url}/executions/{wid}")
    expect(page.locator("#status")).to_contain_text("completed")
    expect(page.locator("#context")).to_contain_text('"by": "ann"')


def test_cancel_a_waiting_execution_and_see_changes_live(
    served: Served, page: Any, tmp_path: Path
) -> None:
    waiting = served.engine.start(Waiter)
    paid = served.engine.start(Waiter)
    served.run()
    page.goto(f"{served.url}/executions")
    expect(page.locator("tbody#rows tr")).to_have_count(2)
    newer = served.engine.start(Order, {"sku": "live"})  # started elsewhere
    expect(page.locator("tbody#rows tr")).to_have_count(3, timeout=LIVE)
    expect(page.locator(f"a[href$='/executions/{newer}']")).to_be_visible()
    page.goto(f"{served.url}/executions/{paid}")
    assert page.get_attribute("#live", "hx-trigger") is not None  # waiting: it polls
    # once it shows the execution final, the server tells htmx to stop polling (286)
    with page.expect_response(
        lambda r: r.url.startswith(f"{served.url}/executions/{paid}/live") and r.status == 286,
        timeout=LIVE,
    ):
        served.engine.send_event(paid, "paid", 42)  # an event from elsewhere
        served.run()
    expect(page.locator("#status")).to_contain_text("completed", timeout=LIVE)
    expect(page.locator("#context")).to_contain_text('"paid": 42')
    page.reload()  # a final execution's page polls nothing at all
    expect(page.locator("#status")).to_contain_text("completed")
    assert page.get_attribute("#live", "hx-trigger") is None
    page.goto(f"{served.url}/executions/{waiting}")
    expect(page.locator("#status")).to_contain_text("waiting")
    page.fill("input[name=reason]", "customer called")
    page.click("button:has-text('Cancel execution')")
    expect(page.locator("#status")).to_contain_text("cancelled")
    got = served.engine.get_execution(waiting)
    assert got.status == "cancelled" and got.cancel_reason == "customer called"
    shot(page, tmp_path, "execution-cancelled")


def test_nothing_stored_runs_as_script(served: Served, page: Any) -> None:
    payloads = [
        "<script>window.__xss = 1</script>",
        '<img src=x onerror="window.__xss = 2">',
        '"><svg onload="window.__xss = 3">',
    ]
    for text in payloads:
        served.engine.start(Xss, text, idempotency_key=text)
    served.run()
    page.goto(f"{served.url}/executions")
    assert page.evaluate("window.__xss") is None
    for eid in [e.id for e in served.engine.list_executions(workflow=Xss)]:
        page.goto(f"{served.url}/executions/{eid}")
        expect(page.locator("#error")).to_contain_text("ValueError")
        assert page.evaluate("window.__xss") is None
    expect(page.locator("pre.logs").first).to_contain_text("window.__xss")  # shown as text
