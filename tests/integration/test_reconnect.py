"""Mid-session upstream loss: the client sees one continuous session."""

from __future__ import annotations

from typing import Any

import pytest
from voxgate.bench.procs import Server

from tests.support import audio
from tests.support.gateway import GatewayFactory, metric, sandbox_sessions
from tests.support.wsclient import run, session


@pytest.mark.parametrize("flaky", ["flaky-key", "flaky-abort-key"])
def test_a_drop_mid_session_is_invisible_to_the_client(
    gateway_factory: GatewayFactory, sandbox: Server, flaky: str
) -> None:
    """Upstream drops (1011, or the TCP connection cut) 2 s into a 4.5 s session of
    three utterances: the gateway opens a replacement, replays the turn in progress,
    and the client gets one Begin, three turns numbered 0, 1, 2 (each final once,
    then its formatted repeat), word times that only grow, Termination and 1000."""
    gw = gateway_factory(f"flaky={flaky},main=good-key")
    before = len(sandbox_sessions(sandbox))
    frames = audio.frames(audio.utterance(0.8, 0.7) * 3)
    out = run(session(gw.url, frames, frame_interval=0.05))
    assert out.code == 1000, out
    assert [m["type"] for m in out.messages].count("Begin") == 1
    assert out.of_type("Error") == []
    assert out.messages[-1]["type"] == "Termination"
    finals = out.finals
    assert [(t["turn_order"], t["turn_is_formatted"]) for t in finals] == [
        (0, False),
        (0, True),
        (1, False),
        (1, True),
        (2, False),
        (2, True),
    ]
    orders = [t["turn_order"] for t in out.of_type("Turn")]
    assert orders == sorted(orders), "turn_order went backwards at the seam"
    ends: list[Any] = [t["words"][-1]["end"] for t in finals if not t["turn_is_formatted"]]
    assert ends == sorted(ends) and ends[-1] > 3500, ends
    assert metric(gw, "voxgate_failovers_total", phase="mid_session") == 1.0
    upstream = sandbox_sessions(sandbox)[before:]
    assert [u["end"] for u in upstream] == ["dropped", "terminated"]


def test_a_replacement_reuses_the_lost_session_s_slot_on_a_key_at_its_cap(
    gateway_factory: GatewayFactory,
) -> None:
    """One key with a cap of one session: the lost upstream's slot is given back
    before the replacement is opened, so the session carries on instead of ending
    with 'every key at its cap'."""
    gw = gateway_factory("only=late-flaky-key", VOXGATE_KEY_MAX_SESSIONS="1")
    frames = audio.frames(audio.utterance(0.8, 0.7) * 3)
    out = run(session(gw.url, frames, frame_interval=0.05))
    assert out.code == 1000, out
    assert metric(gw, "voxgate_failovers_total", phase="mid_session") == 1.0
    assert [t["turn_order"] for t in out.finals] == [0, 0, 1, 1, 2, 2]
    assert metric(gw, "voxgate_upstream_key_sessions_active", key="only") == 0.0
