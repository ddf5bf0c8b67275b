"""A session's idle end and its parse of hostile upstream JSON, sans-I/O (recording
transports, no sockets): the watchdog's Terminate, the end as 3006 once upstream's
Termination came, audio keeping a session alive, a deep upstream message relayed
without ending the session."""

from __future__ import annotations

import asyncio
import json

from voxgate.metrics.gateway import Metrics, Outcome
from voxgate.protocol import parse_stream_params
from voxgate.relay.session import End, Session
from voxgate.relay.ticker import Ticker
from voxgate.settings import Settings
from voxgate.upstream.connect import UpstreamSession
from voxgate.ws.connection import WebSocket
from voxgate.ws.frames import BINARY, CLOSE, TEXT, close_payload, encode

from tests.support.sansio import ClientSide, ServerSide, frames_of, opened
from tests.support.wsclient import run

IDLE = 0.3
TICK = 0.02
FRAME = bytes(1600)  # 50 ms of 16 kHz PCM
SETTINGS = Settings.from_env(
    {
        "VOXGATE_UPSTREAM_KEYS": "main=secret",
        "VOXGATE_CLIENT_KEYS": "tester=client-secret",
        "VOXGATE_PACE_BURST_SECONDS": "30",
        "VOXGATE_IDLE_TIMEOUT": str(IDLE),
    }
)


def make_session(wire: list[tuple[str, bytes]]) -> tuple[Session, WebSocket, WebSocket]:
    client = opened(ServerSide, "client", wire)
    upstream = opened(ClientSide, "upstream", wire)
    session = Session(
        client=client,  # type: ignore[arg-type]
        upstream=UpstreamSession(upstream, '{"type":"Begin"}', {"id": "s1"}, 0.01),  # type: ignore[arg-type]
        params=parse_stream_params([("sample_rate", "16000")]),
        key_alias="main",
        client_name="tester",
        settings=SETTINGS,
        metrics=Metrics(),
        on_upstream_failure=lambda alias, failure: None,
        ticker=Ticker(TICK),
    )
    return session, client, upstream


def upstream_texts(wire: list[tuple[str, bytes]]) -> list[str]:
    return [p for op, p in frames_of(wire, "upstream", masked=True) if op == TEXT]


def test_a_quiet_session_is_terminated_upstream_then_ends_idle_with_3006() -> None:
    """No client message for IDLE: the watchdog sends Terminate upstream (and counts
    it), the relay goes on so upstream's Termination reaches the client, and upstream's
    1000 ends the session as idle with close 3006."""

    async def scenario() -> tuple[End, list[str], list[str], float]:
        wire: list[tuple[str, bytes]] = []
        session, client, upstream = make_session(wire)
        relaying = asyncio.create_task(session._relay())
        client.data_received(encode(BINARY, FRAME, mask=True))
        await asyncio.sleep(IDLE / 2)
        assert upstream_texts(wire) == []  # not yet
        deadline = asyncio.get_running_loop().time() + 5
        while not upstream_texts(wire):
            assert asyncio.get_running_loop().time() < deadline, "no Terminate upstream"
            await asyncio.sleep(TICK)
        termination = json.dumps({"type": "Termination", "audio_duration_seconds": 0})
        upstream.data_received(encode(TEXT, termination.encode(), mask=False))
        upstream.data_received(encode(CLOSE, close_payload(1000, ""), mask=False))
        end = await asyncio.wait_for(relaying, 3.0)
        to_client = [p for op, p in frames_of(wire, "client", masked=False) if op == TEXT]
        counted = session.metrics.idle_sessions._value.get()
        return end, upstream_texts(wire), to_client, counted

    end, up, to_client, counted = run(scenario(), 10)
    assert up == ['{"type": "Terminate"}']
    assert to_client == ['{"type": "Termination", "audio_duration_seconds": 0}']
    assert end.outcome == Outcome.IDLE
    assert end.close is not None and end.close.code == 3006
    assert end.close.text.startswith("Session idle for too long")
    assert counted == 1.0


def test_audio_keeps_a_session_from_going_idle() -> None:
    """Audio every IDLE / 3 for 3 x IDLE: no Terminate goes upstream, the relay runs on."""

    async def scenario() -> tuple[list[str], bool]:
        wire: list[tuple[str, bytes]] = []
        session, client, _ = make_session(wire)
        relaying = asyncio.create_task(session._relay())
        for _ in range(9):
            client.data_received(encode(BINARY, FRAME, mask=True))
            await asyncio.sleep(IDLE / 3)
        running = not relaying.done()
        relaying.cancel()
        return upstream_texts(wire), running

    up, running = run(scenario(), 10)
    assert up == [] and running


def test_a_deeply_nested_upstream_message_is_relayed_not_a_gateway_bug() -> None:
    """Upstream sends JSON nested 100,000 deep mid-session: it reaches the client as it
    came (unparsed, unpublished) and the session goes on; it used to raise
    RecursionError in the parse and end the session with 1011 'Internal gateway error'."""
    deep = "[" * 100_000 + "]" * 100_000

    async def scenario() -> tuple[list[str], bool]:
        wire: list[tuple[str, bytes]] = []
        session, _, upstream = make_session(wire)
        relaying = asyncio.create_task(session._relay())
        await asyncio.sleep(0)
        upstream.data_received(encode(TEXT, deep.encode(), mask=False))
        await asyncio.sleep(0.05)
        running = not relaying.done()
        relaying.cancel()
        return [p for op, p in frames_of(wire, "client", masked=False) if op == TEXT], running

    to_client, running = run(scenario(), 10)
    assert to_client == [deep] and running
