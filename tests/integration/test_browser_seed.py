"""The seed's flow, unchanged but for the host (issue 16, item 5): AssemblyAI's browser
example (a token server and a page with the JS SDK's StreamingTranscriber recording
the microphone) pointed at voxgate over TLS. Debian's chromium, headless, its fake
microphone playing the sample WAV, driven by Playwright; the gateway's self-signed
certificate is accepted with --ignore-certificate-errors, as a test may."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Page, sync_playwright
from voxgate.bench.procs import Server

from tests.support.browser import CHROMIUM_FLAGS, PAGE_WAIT_MS, chromium_path
from tests.support.gateway import CLIENT_KEY, GatewayFactory, sandbox_sessions
from tests.support.seed import TokenServer

OpenSeed = Callable[[Server], Page]


@pytest.fixture
def open_seed(tmp_path: Path, tls_files: tuple[Path, Path]) -> Iterator[OpenSeed]:
    """The page of the seed's example, served by its token server in front of ``gw``."""
    chromium = chromium_path()
    errors: list[str] = []
    with sync_playwright() as playwright:
        closers: list[Callable[[], None]] = []

        def open_(gw: Server) -> Page:
            host = gw.url.split("://", 1)[1]
            server = TokenServer(f"https://{host}", CLIENT_KEY, tls_files[0]).__enter__()
            closers.append(lambda: server.__exit__(None, None, None))
            context = playwright.chromium.launch_persistent_context(
                user_data_dir=str(tmp_path / "profile"),
                executable_path=chromium,
                headless=True,
                args=[*CHROMIUM_FLAGS, "--ignore-certificate-errors"],
            )
            closers.insert(0, context.close)
            page = context.pages[0] if context.pages else context.new_page()
            page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))

            def console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    errors.append(f"console: {message.text}")

            page.on("console", console)
            page.goto(f"{server.url}/?ws=wss://{host}/v3/ws")
            return page

        yield open_
        for close in closers:
            close()
    assert not errors, errors


def test_the_seed_page_shows_turns_through_voxgate(
    tls_gateway_factory: GatewayFactory, sandbox: Server, open_seed: OpenSeed
) -> None:
    """Record: token from the page's server (voxgate's /v3/token), the SDK's socket to
    wss://voxgate with it, the fake microphone streamed; final turns show; Stop ends
    the session with Termination and upstream sees it terminated."""
    gw = tls_gateway_factory()
    before = len(sandbox_sessions(sandbox))
    page = open_seed(gw)
    page.click("#record")
    page.wait_for_selector(".turn.final, .notice:not([hidden])", timeout=PAGE_WAIT_MS)
    assert page.is_hidden("#problem"), page.inner_text("#problem")
    assert page.is_hidden("#billing"), page.inner_text("#billing")
    final_text = page.inner_text(".turn.final")
    assert final_text.strip() and final_text != "…"
    page.click("#stop")
    page.wait_for_function(
        "document.getElementById('status').textContent === 'Done'", timeout=PAGE_WAIT_MS
    )
    upstream = sandbox_sessions(sandbox)[before:]
    assert len(upstream) == 1, upstream
    assert upstream[0]["end"] == "terminated" and upstream[0]["close_code"] == 1000, upstream
    assert "good-key" not in page.content() and CLIENT_KEY not in page.content()


def test_every_key_needing_billing_makes_the_seed_page_explain(
    tls_gateway_factory: GatewayFactory, open_seed: OpenSeed
) -> None:
    """With only a key whose account needs billing, the page says what happened and
    who must act (the gateway operator adds billing), with the gateway's words."""
    gw = tls_gateway_factory("pay=pay-key")
    page = open_seed(gw)
    page.click("#record")
    page.wait_for_selector(".notice:not([hidden])", timeout=PAGE_WAIT_MS)
    assert page.is_hidden("#problem"), page.inner_text("#problem")
    notice = page.inner_text("#billing")
    assert "needs billing" in notice and "operator must add a payment method" in notice
    assert "Upstream payment required" in page.inner_text("#billing-detail")
    assert page.is_enabled("#record")
