"""Conformance: the official AssemblyAI Node SDK (npm ``assemblyai`` 4.41.5), pointed at
voxgate by its host only, over wss:// (the SDK refuses anything else). The same
scenarios as the Python SDK's (test_sdk_conformance.py): Begin, partial and final
turns, Termination and a clean close; a temporary token minted by the SDK over https;
ForceEndpoint and UpdateConfiguration; the errors a client must understand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from voxgate.bench.procs import Server

from tests.support import audio
from tests.support.gateway import (
    CLIENT_KEY,
    CLIENT_KEYS,
    TEST_PACE_BURST,
    GatewayFactory,
    sandbox_sessions,
)
from tests.support.node import of, run_scenario
from tests.support.procs import start

PARAMS = {"sampleRate": 16000, "formatTurns": True, "speechModel": "universal-streaming-english"}


@pytest.fixture(scope="module")
def tls_gateway(
    sandbox: Server, tls_files: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One TLS gateway with a working key for the module's scenarios."""
    cert, key = tls_files
    env = {
        "VOXGATE_UPSTREAM_URL": sandbox.url + "/v3/ws",
        "VOXGATE_UPSTREAM_KEYS": "main=good-key",
        "VOXGATE_CLIENT_KEYS": CLIENT_KEYS,
        "VOXGATE_PORT": "0",
        "VOXGATE_PACE_BURST_SECONDS": str(TEST_PACE_BURST),
        "VOXGATE_TLS_CERT": str(cert),
        "VOXGATE_TLS_KEY": str(key),
    }
    proc = start(["serve"], env, tmp_path_factory.mktemp("node-gw") / "gateway.log")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def pcm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Raw 16 kHz PCM files: two utterances, and one second of tone (a turn left open)."""
    folder = tmp_path_factory.mktemp("pcm")
    files = {"speech": b"".join(audio.speech(2)), "tone": audio.tone(1.0), "short": bytes(640)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: str(folder / name) for name in files}


def scenario(gw: Server, **fields: Any) -> dict[str, Any]:
    host = gw.url.split("://", 1)[1]
    return {"base": f"wss://{host}", "https": f"https://{host}", "params": PARAMS, **fields}


def stream(path: str) -> dict[str, Any]:
    return {"do": "stream", "pcm": path, "frameBytes": audio.FRAME_BYTES * 2, "delayMs": 5}


def test_node_sdk_full_session_with_a_client_key(
    tls_gateway: Server, sandbox: Server, tls_files: tuple[Path, Path], pcm: dict[str, str]
) -> None:
    """Begin, partial and final formatted turns, then close(): Termination is awaited
    and the socket closes with 1000; upstream saw one session ended by Terminate."""
    before = len(sandbox_sessions(sandbox))
    steps = [stream(pcm["speech"]), {"do": "waitTurns", "finals": 2}, {"do": "close"}]
    events = run_scenario(scenario(tls_gateway, apiKey=CLIENT_KEY, steps=steps), tls_files[0])
    assert of(events, "begin") and of(events, "begin")[0]["id"], events
    turns = of(events, "turn")
    assert any(not t["end_of_turn"] for t in turns), turns
    formatted = [t for t in turns if t["end_of_turn"] and t["formatted"]]
    assert formatted and formatted[0]["transcript"][:1].isupper(), turns
    assert len(of(events, "termination")) == 1, events
    assert of(events, "error") == [] and of(events, "timeout") == [], events
    upstream = sandbox_sessions(sandbox)[before:]
    assert len(upstream) == 1 and upstream[0]["end"] == "terminated", upstream


def test_node_sdk_with_a_temporary_token(
    tls_gateway: Server, tls_files: tuple[Path, Path], pcm: dict[str, str]
) -> None:
    """The browser flow's server half: the SDK's createTemporaryToken against voxgate's
    /v3/token over https with a client key, then a session opened with ?token=."""
    steps = [stream(pcm["speech"]), {"do": "waitTurns", "finals": 1}, {"do": "close"}]
    events = run_scenario(scenario(tls_gateway, mintWith=CLIENT_KEY, steps=steps), tls_files[0])
    assert of(events, "token"), events
    assert of(events, "begin"), events
    assert [t for t in of(events, "turn") if t["end_of_turn"]], events
    assert len(of(events, "termination")) == 1, events


def test_node_sdk_force_endpoint_and_update_configuration(
    tls_gateway: Server, tls_files: tuple[Path, Path], pcm: dict[str, str]
) -> None:
    """UpdateConfiguration (long silences) is accepted silently, so a second of tone
    leaves the turn open; ForceEndpoint ends it at once."""
    steps = [
        {"do": "update", "config": {"max_turn_silence": 2000, "min_turn_silence": 1500}},
        stream(pcm["tone"]),
        {"do": "waitTurns", "turns": 1},
        {"do": "forceEndpoint"},
        {"do": "waitTurns", "finals": 1, "timeoutMs": 5000},
        {"do": "close"},
    ]
    events = run_scenario(scenario(tls_gateway, apiKey=CLIENT_KEY, steps=steps), tls_files[0])
    (forced,) = [e for e in events if e.get("what") == "ForceEndpoint"]
    assert forced["finals"] == 0, events
    assert of(events, "timeout") == [] and of(events, "error") == [], events
    assert len(of(events, "termination")) == 1, events


def test_node_sdk_sees_a_bad_frame_as_3007(
    tls_gateway: Server, tls_files: tuple[Path, Path], pcm: dict[str, str]
) -> None:
    """A 20 ms chunk is refused with 3007, as AssemblyAI does: the SDK's error listener
    gets the code and its close listener the same code."""
    steps = [{"do": "stream", "pcm": pcm["short"], "frameBytes": 640}, {"do": "waitClose"}]
    events = run_scenario(scenario(tls_gateway, apiKey=CLIENT_KEY, steps=steps), tls_files[0])
    assert [e["code"] for e in of(events, "error")] == [3007], events
    assert [e["code"] for e in of(events, "close")] == [3007], events


def test_node_sdk_sees_a_bad_client_key_as_1008(
    tls_gateway: Server, tls_files: tuple[Path, Path]
) -> None:
    events = run_scenario(scenario(tls_gateway, apiKey="wrong-client-key", steps=[]), tls_files[0])
    (failed,) = of(events, "connect_error")
    assert failed["code"] == 1008 and "invalid client key" in failed["message"].lower(), failed


@pytest.mark.parametrize(
    ("upstream", "code", "words"),
    [("pay=pay-key", 1008, "payment required"), ("lim=limited-key", 3009, "rate limited")],
)
def test_node_sdk_sees_upstream_errors_with_code_and_words(
    tls_gateway_factory: GatewayFactory,
    tls_files: tuple[Path, Path],
    upstream: str,
    code: int,
    words: str,
) -> None:
    """Every key needing billing: connect() rejects with 1008 and words that say so (not
    a timeout or a bare close); an upstream rate limit with 3009."""
    gw = tls_gateway_factory(upstream)
    events = run_scenario(scenario(gw, apiKey=CLIENT_KEY, steps=[]), tls_files[0])
    (failed,) = of(events, "connect_error")
    assert failed["code"] == code and words in failed["message"].lower(), failed
    assert of(events, "begin") == []
