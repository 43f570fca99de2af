"""A real browser for the console's and portal's tests: Debian's Chromium, started once per
test session, driven by Playwright for Python over the DevTools protocol.

Chromium comes from `apt-get install chromium` (tests/browser_deps.sh, run by `make test`);
Playwright's own browser download is never used. Without /usr/bin/chromium the browser tests
fail under CI (the environment variable CI set) and are skipped, with the reason, elsewhere.

Each test starts Playwright on its own event loop (where the in-process API runs too),
connects it to the one Chromium and works in a fresh browser context (its own cookies).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
DOCS = Path(__file__).parent.parent / "docs"
_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    why = f"{CHROMIUM} is missing: `apt-get install -y chromium` (tests/browser_deps.sh)"
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run under CI: {why}", pytrace=False)
    pytest.skip(f"browser tests skipped: {why}")


@pytest.fixture(scope="session")
def chromium_endpoint() -> Iterator[str]:
    """The DevTools WebSocket of the session's one headless Chromium."""
    _require_chromium()
    profile = tempfile.mkdtemp(prefix="webhookd-chromium-")
    proc = subprocess.Popen(
        [str(CHROMIUM), *CHROMIUM_ARGS, "--remote-debugging-port=0",
         f"--user-data-dir={profile}", "about:blank"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    found: list[str] = []
    ready = threading.Event()

    def read_stderr() -> None:
        # Read to the end, so Chromium never blocks on a full pipe.
        assert proc.stderr is not None
        for line in proc.stderr:
            match = _LISTENING.search(line)
            if match and not found:
                found.append(match[1])
                ready.set()
        ready.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        if not ready.wait(30) or not found:
            pytest.fail("Chromium did not start (no DevTools endpoint within 30 s)")
        yield found[0]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(5)
        proc.stderr.close()
        shutil.rmtree(profile, ignore_errors=True)


@asynccontextmanager
async def browser_context(endpoint: str, **options: Any) -> AsyncIterator[Any]:
    """A fresh context (its own cookies) in the session's Chromium."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.connect_over_cdp(endpoint)
        context = await browser.new_context(**options)
        context.set_default_timeout(10_000)
        try:
            yield context
        finally:
            await context.close()
            await browser.close()


@pytest_asyncio.fixture
async def browser(chromium_endpoint: str) -> AsyncIterator[Any]:
    """`await browser.new_page()`, in a context of this test's own. The test fails if a page
    threw an uncaught error or broke its own Content-Security-Policy."""
    problems: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            problems.append(f"CSP: {message.text}")

    async with browser_context(chromium_endpoint) as context:
        context.on("console", on_console)
        context.on("weberror", lambda error: problems.append(f"uncaught: {error.error}"))
        yield context
    assert problems == [], "the pages reported errors"


async def accessibility_violations(page: Any) -> list[str]:
    """axe-core's serious and critical violations of the page as it is now. axe is evaluated
    through the DevTools protocol, which the page's CSP does not govern (an injected <script>
    would be refused, as it should be)."""
    await page.evaluate(AXE.read_text() + "\n;true")
    results = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))}))"
    )
    return [
        f"{v['id']} ({v['impact']}): {', '.join(v['nodes'][:3])}"
        for v in results
        if v["impact"] in ("serious", "critical")
    ]


async def screenshot(page: Any, name: str) -> None:
    """docs/<name>.png, when WEBHOOKD_SCREENSHOTS is set (`make screenshots`)."""
    if os.environ.get("WEBHOOKD_SCREENSHOTS"):
        await page.screenshot(path=str(DOCS / f"{name}.png"), full_page=False)
