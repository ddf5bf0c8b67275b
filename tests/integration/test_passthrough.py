"""AssemblyAI is the authority on its protocol: the gateway forwards what it does not
need to judge (parameters, values, encodings, client message types) and upstream's
answer reaches the client unchanged; the gateway's pace clock does not count the time
a client waits for upstream's Begin (issue 16, items 1-2).

The assertions are on what the gateway forwarded (the simulator's /sandbox/sessions)
and on upstream's own answer coming back, not on how strict the simulator is."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from voxgate.bench.procs import Server

from tests.support import audio
from tests.support.gateway import GatewayFactory, metric, sandbox_sessions
from tests.support.wsclient import run, session

#: The reference's "refused wrongly" query rows (shared/reference/assemblyai-v3-2026-11.md, B).
PASS_THROUGH = [
    ("sample_rate", "96000"),
    ("encoding", "pcm_s24le"),
    ("speaker_labels_revision_interval_ms", "7200000"),
    ("redact_pii_policies", "person_name,phone_number"),
    ("format_turns", "1"),
    ("min_turn_silence", "400.0"),
    ("min_turn_silence", "500"),
]  # values over 8192 characters: tests/unit/test_gateway_params.py (the simulator's
#    HTTP parser takes no request line over 8 KB)


def test_parameters_the_gateway_used_to_refuse_reach_upstream_unchanged(
    gateway: Server, sandbox: Server
) -> None:
    """Each reaches upstream as the client spelled it, in its order, duplicates
    included; whatever upstream answers (here the simulator's own refusal) is what the
    client gets, and the gateway counts no refusal of its own."""
    before = len(sandbox_sessions(sandbox))
    out = run(session(gateway.url, [], query=urlencode(PASS_THROUGH)))
    upstream = sandbox_sessions(sandbox)[before:]
    assert upstream, f"nothing reached upstream: {out}"
    assert [tuple(p) for p in upstream[0]["params"]] == PASS_THROUGH
    assert metric(gateway, "voxgate_client_rejections_total", reason="bad_parameter") == 0.0
    if upstream[0]["close_code"] is not None and out.code != 1000:
        assert out.code == upstream[0]["close_code"], (out, upstream[0])


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"type": "FutureControl", "x": 1}),
        json.dumps({"type": "UpdateConfiguration", "min_turn_silence": 70000}),
    ],
)
def test_client_messages_are_forwarded_and_upstream_answers_for_them(
    gateway: Server, sandbox: Server, text: str
) -> None:
    """A new client message type, or an UpdateConfiguration value out of the 2025
    ranges (AssemblyAI clamps it), goes upstream: the gateway does not end the session
    itself (no refusal counted, upstream's session is not ended by the gateway's
    Terminate); if upstream refuses, its code reaches the client."""
    before = len(sandbox_sessions(sandbox))
    frames = [*audio.frames(audio.tone(0.3)), text, *audio.frames(audio.silence(0.3))]
    out = run(session(gateway.url, frames))
    for label in ("unknown_message", "bad_parameter", "bad_json"):
        assert metric(gateway, "voxgate_client_rejections_total", reason=label) == 0.0, label
    upstream = sandbox_sessions(sandbox)[before:]
    assert len(upstream) == 1, upstream
    if upstream[0]["end"] == "terminated":  # upstream took it (as AssemblyAI does)
        assert out.code == 1000 and out.of_type("Termination"), out
    else:  # upstream refused it: its own code and Error come back
        assert out.code == upstream[0]["close_code"], (out, upstream[0])


def test_a_real_time_client_is_not_too_fast_because_begin_was_late(
    gateway_factory: GatewayFactory, sandbox: Server
) -> None:
    """The first key never sends Begin (2 s until the gateway fails over); the client
    streams in real time from its handshake on, as the SDKs do. The audio it sent
    while waiting is not a burst of its own making: with a 1 s burst allowance it is
    not closed with 3007, and upstream gets all of it."""
    gw = gateway_factory(
        "slow=silent-key,main=good-key",
        VOXGATE_BEGIN_TIMEOUT="2",
        VOXGATE_PACE_BURST_SECONDS="1",
    )
    before = len(sandbox_sessions(sandbox))
    frames = audio.frames(audio.utterance(0.8, 0.7) * 3)  # 4.5 s
    out = run(session(gw.url, frames, frame_interval=audio.FRAME_MS / 1000))
    assert out.code == 1000, out
    assert out.of_type("Termination"), out
    served = [s for s in sandbox_sessions(sandbox)[before:] if s["behaviour"] == "ok"]
    assert served and served[0]["audio_seconds"] >= 4.4, served
    assert metric(gw, "voxgate_client_rejections_total", reason="too_fast") == 0.0
