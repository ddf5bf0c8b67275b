"""Conformance: the official AssemblyAI Python SDK, pointed at voxgate by its host only."""

from __future__ import annotations

import time

import pytest
from assemblyai.streaming.v3 import StreamingSessionParameters
from voxgate.bench.procs import Server

from tests.support import audio
from tests.support.gateway import CLIENT_KEY, GatewayFactory
from tests.support.sdk import PARAMS, Recorder, sdk_client


def test_sdk_full_session_begin_turns_termination(gateway: Server) -> None:
    """The SDK gets Begin, partial and final formatted Turns and Termination, no error."""
    rec = Recorder()
    client = sdk_client(gateway.url, CLIENT_KEY, rec)
    client.connect(PARAMS)
    for frame in audio.frames(audio.utterance(0.8, 0.7) * 2):
        client.stream(frame)
        time.sleep(0.01)
    assert rec.wait_for(lambda r: len([t for t in r.of("Turn") if t.end_of_turn]) >= 2)
    client.disconnect(terminate=True)
    assert len(rec.of("Begin")) == 1 and rec.of("Begin")[0].id
    turns = rec.of("Turn")
    assert any(not t.end_of_turn for t in turns)
    formatted = [t for t in turns if t.end_of_turn and t.turn_is_formatted]
    assert formatted and formatted[0].transcript[:1].isupper()
    assert len(rec.of("Termination")) == 1
    assert rec.of("Termination")[0].audio_duration_seconds is not None
    assert rec.of("Error") == []


def test_sdk_force_endpoint_and_update_configuration(gateway: Server) -> None:
    """ForceEndpoint ends the turn at once; UpdateConfiguration is accepted silently."""
    rec = Recorder()
    client = sdk_client(gateway.url, CLIENT_KEY, rec)
    client.connect(PARAMS)
    client.set_params(StreamingSessionParameters(max_turn_silence=2000, min_turn_silence=1500))
    for frame in audio.frames(audio.tone(1.0)):
        client.stream(frame)
    assert rec.wait_for(lambda r: len(r.of("Turn")) >= 1)
    assert not [t for t in rec.of("Turn") if t.end_of_turn]
    client.force_endpoint()
    assert rec.wait_for(lambda r: any(t.end_of_turn for t in r.of("Turn")), timeout=3.0)
    client.disconnect(terminate=True)
    assert len(rec.of("Termination")) == 1
    assert rec.of("Error") == []


@pytest.mark.parametrize(
    ("key", "upstream", "code", "words"),
    [
        ("wrong-client-key", "main=good-key", 1008, "invalid client key"),
        (CLIENT_KEY, "pay=pay-key", 1008, "payment required"),
        (CLIENT_KEY, "lim=limited-key", 3009, "rate limited"),
    ],
)
def test_sdk_sees_client_visible_errors_with_code_and_words(
    gateway_factory: GatewayFactory, key: str, upstream: str, code: int, words: str
) -> None:
    """Bad client key, upstream 402 and upstream rate limit reach on_error with the
    close code and a message an operator understands."""
    gw = gateway_factory(upstream)
    rec = Recorder()
    client = sdk_client(gw.url, key, rec)
    client.connect(PARAMS)
    assert rec.wait_for(lambda r: len(r.of("Error")) >= 1)
    client.disconnect()
    error = rec.of("Error")[0]
    assert error.code == code
    assert words in str(error).lower()
    assert rec.of("Begin") == []


def test_sdk_sees_a_bad_frame_as_3007(gateway: Server) -> None:
    """A 20 ms chunk from the SDK is refused with 3007, as AssemblyAI does."""
    rec = Recorder()
    client = sdk_client(gateway.url, CLIENT_KEY, rec)
    client.connect(PARAMS)
    client.stream(bytes(640))
    assert rec.wait_for(lambda r: len(r.of("Error")) >= 1)
    client.disconnect()
    assert rec.of("Error")[0].code == 3007
