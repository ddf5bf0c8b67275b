"""The demo page in a real browser: Debian's chromium, headless, its fake microphone
playing the sample WAV, driven by Playwright, against a real gateway and the simulator.

Chromium comes from apt (scripts/bootstrap installs it); Playwright only drives it
(``executable_path``), it never downloads a browser.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, sync_playwright
from voxgate.bench.procs import Server

from tests.support.browser import CHROMIUM_FLAGS, PAGE_WAIT_MS, SAMPLE_WAV, chromium_path
from tests.support.gateway import GatewayFactory, sandbox_sessions

OpenPage = Callable[[Server], Page]
#: Counts the moments a partial turn is on the page (finals replace them in place).
WATCH_PARTIALS = """
window.partialsSeen = 0;
new MutationObserver(() => {
  window.partialsSeen += document.querySelectorAll('#turns .turn.partial').length;
}).observe(document.getElementById('turns'),
  {subtree: true, childList: true, attributes: true, characterData: true});
"""


@pytest.fixture
def open_page(tmp_path: Path) -> Iterator[OpenPage]:
    """A fresh headless chromium (empty profile) per test; its page errors are collected."""
    assert SAMPLE_WAV.is_file(), SAMPLE_WAV
    errors: list[str] = []
    with sync_playwright() as playwright:
        contexts: list[BrowserContext] = []

        def open_(gw: Server) -> Page:
            context = playwright.chromium.launch_persistent_context(
                user_data_dir=str(tmp_path / "profile"),  # empty: a first run, no state
                executable_path=chromium_path(),
                headless=True,
                args=CHROMIUM_FLAGS,
            )
            contexts.append(context)
            page = context.pages[0] if context.pages else context.new_page()
            page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))

            def console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    errors.append(f"console: {message.text}")

            page.on("console", console)
            page.goto(gw.http_url + "/demo/")
            return page

        yield open_
        for context in contexts:
            context.close()
    assert not errors, errors


def test_turns_appear_live_and_stop_waits_for_termination(
    gateway_factory: GatewayFactory, sandbox: Server, open_page: OpenPage
) -> None:
    """Record takes the (fake) microphone, gets a token from the demo helper, streams
    16 kHz PCM frames the gateway accepts; partial and final turns show on the page;
    Stop sends Terminate and the page reports Termination. Upstream sees a complete
    session, ended by Terminate."""
    gw = gateway_factory(VOXGATE_DEMO_CLIENT="tester")
    before = len(sandbox_sessions(sandbox))
    page = open_page(gw)
    page.evaluate(WATCH_PARTIALS)
    page.click("#record")
    page.wait_for_selector(".turn.final, .notice:not([hidden])", timeout=PAGE_WAIT_MS)
    assert page.is_hidden("#problem"), page.inner_text("#problem")
    assert page.is_hidden("#billing"), page.inner_text("#billing")
    final_text = page.inner_text(".turn.final")
    assert final_text.strip() and final_text != "…"
    assert page.evaluate("window.partialsSeen") > 0, "no partial turn was shown"
    page.click("#stop")
    page.wait_for_function(
        "document.getElementById('status').textContent.startsWith('Done')", timeout=PAGE_WAIT_MS
    )
    assert page.is_hidden("#billing") and page.is_hidden("#problem")
    assert page.is_enabled("#record")
    upstream = sandbox_sessions(sandbox)[before:]
    assert len(upstream) == 1, upstream
    assert upstream[0]["end"] == "terminated" and upstream[0]["close_code"] == 1000, upstream
    assert upstream[0]["audio_seconds"] > 1.0
    assert upstream[0]["turns"] >= 1
    assert "good-key" not in page.content()


def test_a_402_only_gateway_makes_the_page_explain_billing(
    gateway_factory: GatewayFactory, open_page: OpenPage
) -> None:
    """With only a key whose account needs billing, the page shows the billing notice in
    plain words (add a payment method; voxgate picks the key up by itself), not a
    console error or a generic failure."""
    gw = gateway_factory("pay=pay-key", VOXGATE_DEMO_CLIENT="tester")
    page = open_page(gw)
    page.click("#record")
    page.wait_for_selector(".notice:not([hidden])", timeout=PAGE_WAIT_MS)
    assert page.is_hidden("#problem"), page.inner_text("#problem")
    notice = page.inner_text("#billing")
    assert "needs billing" in notice
    assert "payment method" in notice and "AssemblyAI dashboard" in notice
    assert "by itself" in notice
    assert "Upstream payment required" in page.inner_text("#billing-detail")
    assert page.is_enabled("#record")
