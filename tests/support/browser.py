"""Debian's chromium as the tests drive it: headless, with a fake microphone playing the
sample WAV (Playwright only drives it through ``executable_path``; it never downloads a
browser)."""

from __future__ import annotations

import shutil

import pytest

from tests.support import ROOT

SAMPLE_WAV = ROOT / "service" / "voxgate" / "samples" / "hello.wav"
#: Deadline for what a page shows (turns need a few seconds of looped sample audio).
PAGE_WAIT_MS = 30_000
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    f"--use-file-for-fake-audio-capture={SAMPLE_WAV}",
]


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed (apt-get install chromium; scripts/bootstrap does)")
    return path
