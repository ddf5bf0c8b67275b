"""Metrics of a real gateway: a mid-session reconnect counted and summarised."""

from __future__ import annotations

import json

from tests.support import audio
from tests.support.gateway import GatewayFactory, metric
from tests.support.wsclient import run, session


def test_a_mid_session_reconnect_is_counted_and_summarised(
    gateway_factory: GatewayFactory,
) -> None:
    """Upstream drops a running session and a replacement takes over: the failover
    (mid_session) and the reconnect (upstream) are counted once each, and the session's
    summary line says reconnects=1, failovers=0 (none before Begin)."""
    gw = gateway_factory("flaky=flaky-key,main=good-key")
    frames = audio.frames(audio.utterance(0.8, 0.7) * 3)
    out = run(session(gw.url, frames, frame_interval=0.05))
    assert out.code == 1000, out
    assert metric(gw, "voxgate_reconnects_total", target="upstream") == 1.0
    assert metric(gw, "voxgate_failovers_total", phase="mid_session") == 1.0
    assert metric(gw, "voxgate_reconnects_total", target="redis") == 0.0
    gw.stop()
    (summary,) = [
        event
        for event in map(json.loads, gw.stderr().splitlines())
        if event["event"] == "session_ended"
    ]
    assert (summary["reconnects"], summary["failovers"]) == (1, 0), summary
