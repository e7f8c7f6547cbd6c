"""The built documentation site in a real browser (Debian's Chromium, driven by
Playwright), in light and dark mode and on a phone's width: the home page, the tutorial
and a reference page load without a script error or a missing file, every picture shows,
code blocks have their copy button, the dark scheme is dark, nothing is wider than the
screen, and search finds things.

Screenshots go to the test's tmp_path, and to DURABLE_SITE_SCREENSHOTS (a folder) when set:
that is how they are looked at.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
PAGES = {"home": "", "tutorial": "tutorial/", "reference": "reference/durable/"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        thread.join(10)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


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


def _open(browser: Any, url: str, scheme: str, width: int = 1280) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(color_scheme=scheme, viewport={"width": width, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
    page.goto(url, wait_until="networkidle")
    return context, page, problems


def _shot(page: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    folder = os.environ.get("DURABLE_SITE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / path.name)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_shows_whole_in_its_scheme(browser, served, tmp_path, name, scheme):
    context, page, problems = _open(browser, served + PAGES[name], scheme)
    try:
        assert page.locator("h1").first.is_visible()
        broken = page.evaluate(
            "[...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
        )
        assert broken == []
        if name != "reference":
            blocks = page.locator("div.highlight pre").count()
            assert blocks > 0
            assert page.locator("button[title='Copy to clipboard']").count() >= blocks
        palette = page.evaluate("document.body.getAttribute('data-md-color-scheme')")
        assert palette == ("slate" if scheme == "dark" else "default")
        rgb = page.evaluate("getComputedStyle(document.body).backgroundColor")
        level = sum(int(x) for x in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3])
        assert (level < 3 * 96) if scheme == "dark" else (level > 3 * 200), rgb
        _shot(page, tmp_path, f"{name}-{scheme}")
    finally:
        context.close()
    assert problems == []


@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_fits_a_phone(browser, served, tmp_path, name):
    context, page, problems = _open(browser, served + PAGES[name], "light", width=390)
    try:
        wider = page.evaluate(
            "document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth"
        )
        assert wider <= 1, f"the page scrolls sideways by {wider}px at 390px"
        _shot(page, tmp_path, f"{name}-phone")
    finally:
        context.close()
    assert problems == []


def test_search_finds_the_retry_options(browser, served, tmp_path):
    context, page, problems = _open(browser, served, "light")
    try:
        page.locator("input.md-search__input").click()
        page.locator("input.md-search__input").press_sequentially("backoff", delay=30)
        results = page.locator("li.md-search-result__item")
        playwright_sync.expect(results.first).to_be_visible(timeout=15_000)
        assert results.count() >= 2
        _shot(page, tmp_path, "search")
    finally:
        context.close()
    assert problems == []


def test_copying_a_shell_session_copies_its_commands_only(browser, served):
    """A console block's copy button gives what a shell can run: no ``$ `` prompts, no
    output lines (docs/stylesheets/extra.css hides them while the theme copies)."""
    context = browser.new_context()
    origin = served.rstrip("/")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=origin)
    page = context.new_page()
    try:
        page.goto(served + "tutorial/", wait_until="networkidle")
        copied = []
        blocks = ("div.highlight:has(.gp) >> nth=1", "div.highlight:not(:has(.gp)) >> nth=0")
        for selector in blocks:  # a session with output, then a file's code
            block = page.locator(selector)
            block.hover()
            block.locator("button[title='Copy to clipboard']").click()
            copied.append(page.evaluate("navigator.clipboard.readText()"))
        session, code = copied
        wanted = """durable -i expenses start expense_claim --input '{"employee": "ann", "amount": 42}'
durable list"""
        assert [line for line in session.splitlines() if line] == wanted.splitlines()
        assert "$" not in session and "pending" not in session
        assert code.startswith('"""A stand-in for your bank')
    finally:
        context.close()
