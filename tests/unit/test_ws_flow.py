"""Flow control of one WebSocket connection and the session's fast paths, driven by
feeding bytes (sans-I/O): the transport only records what is written. (The client
against real sockets, a kept-alive refusal and TLS: integration/test_ws_flow.py.)"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from voxgate.metrics.gateway import Metrics
from voxgate.protocol import PaceGuard
from voxgate.relay.continuity import Seam
from voxgate.relay.session import Session
from voxgate.ws.frames import BINARY, PING, PONG, TEXT, FrameReader, encode
from voxgate.ws.handshake import HandshakeError, dechunk

from tests.support.sansio import ClientSide, ServerSide, frames_of, opened
from tests.support.wsclient import run

#: Deadline for a whole async scenario (each await in it is bounded by it).
WAIT = 5.0


def test_every_sender_waiting_for_the_write_buffer_wakes_when_it_drains() -> None:
    """Two sends waiting on one paused connection (the up pump's audio and a drain's
    Terminate) both finish when writing resumes; neither is left behind."""

    async def scenario() -> tuple[bool, bool]:
        wire: list[tuple[str, bytes]] = []
        ws = opened(ClientSide, "up", wire)
        ws.pause_writing()
        audio = asyncio.create_task(ws.send(b"\x00" * 3200))
        terminate = asyncio.create_task(ws.send('{"type": "Terminate"}'))
        await asyncio.sleep(0.01)
        assert not audio.done() and not terminate.done()
        ws.resume_writing()
        await asyncio.wait([audio, terminate], timeout=1.0)
        return audio.done(), terminate.done()

    assert run(scenario(), WAIT) == (True, True)


def test_a_ping_flood_while_writing_is_paused_owes_one_pong() -> None:
    """A peer that pings and never reads cannot grow the write buffer: while writing is
    paused only the latest ping is remembered, and answered once it resumes."""

    async def scenario() -> list[Any]:
        wire: list[tuple[str, bytes]] = []
        ws = opened(ServerSide, "down", wire)
        ws.pause_writing()
        ws.data_received(b"".join(encode(PING, b"%d" % i, mask=True) for i in range(500)))
        assert wire == []
        ws.resume_writing()
        return frames_of(wire, "down", masked=False)

    assert run(scenario(), WAIT) == [(PONG, b"499")]


def test_a_big_frame_in_many_small_reads_comes_out_whole() -> None:
    """A frame near the size limit arriving in TCP-segment-sized reads is parsed once
    complete, with the frames after it in the same read."""
    payload = bytes(range(256)) * 3000
    data = encode(BINARY, payload, mask=True) + encode(TEXT, b"next", mask=True)
    reader = FrameReader(masked=True, max_size=1 << 20)
    out: list[Any] = []
    for i in range(0, len(data), 1460):
        out += reader.feed(data[i : i + 1460])
    assert out == [(BINARY, payload), (TEXT, "next")]
    assert reader.error is None


def test_dechunk_waits_for_the_last_chunk() -> None:
    """A chunked refusal body is decoded only once its zero-size chunk has come."""
    first, second = b'{"error"', b': "not upgraded"}'
    body = b"%x\r\n%s\r\n%x;ext=1\r\n%s\r\n" % (len(first), first, len(second), second)
    assert dechunk(body) is None
    assert dechunk(body + b"0\r\n\r\n") == b'{"error": "not upgraded"}'
    with pytest.raises(HandshakeError):
        dechunk(b"zz\r\n")


def test_upstream_messages_reach_redis_in_the_order_they_reach_the_client() -> None:
    """While the pump is still in a send to a slow client, upstream's next message is
    not taken by the fast path: it is counted, published and seen by the seam after
    the one before it, as on the wire (unformatted final, then formatted)."""

    async def scenario() -> tuple[list[str], list[bool], int]:
        wire: list[tuple[str, bytes]] = []
        to_client = opened(ServerSide, "client", wire)
        to_upstream = opened(ClientSide, "upstream", wire)
        published: list[bool] = []

        class Publisher:
            def message(self, raw: str, message: dict[str, Any]) -> None:
                published.append(bool(message.get("turn_is_formatted")))

        session = Session.__new__(Session)  # only what the down direction uses
        session.client = to_client  # type: ignore[assignment]
        session.upstream = type("U", (), {"connection": to_upstream})()  # type: ignore[assignment]
        session.metrics = Metrics()
        session._relay_down = session.metrics.relay_down.observe
        session._loop = asyncio.get_running_loop()
        session._pace = PaceGuard(1.0)
        session._timed_audio = True
        session._sent_audio = 0.0
        session.seam = Seam(bytes_per_ms=32.0, format_turns=True, max_replay_bytes=1 << 16)
        session.publisher = Publisher()  # type: ignore[assignment]
        session.turns = session.bytes_down = 0
        session._down_send_started = 0.0
        session._held_error = None
        session._watch = asyncio.get_running_loop().create_future()  # a relay running
        to_upstream.on_message = session._fast_message
        pump = asyncio.create_task(session._upstream_to_client())
        await asyncio.sleep(0)
        turn = {"type": "Turn", "turn_order": 0, "end_of_turn": True, "transcript": "x"}
        first = json.dumps({**turn, "turn_is_formatted": False})
        second = json.dumps({**turn, "turn_is_formatted": True, "transcript": "X."})
        to_client.pause_writing()  # a slow client
        to_upstream.data_received(encode(TEXT, first.encode(), mask=False))
        await asyncio.sleep(0.01)  # the pump wrote the first and waits for the client
        to_client.resume_writing()  # in the same loop turn as upstream's next read:
        to_upstream.data_received(encode(TEXT, second.encode(), mask=False))
        await asyncio.sleep(0.01)
        pump.cancel()
        on_wire = [json.loads(p)["transcript"] for _, p in frames_of(wire, "client", masked=False)]
        return on_wire, published, session.seam.completed_turns

    on_wire, published, completed = run(scenario(), WAIT)
    assert on_wire == ["x", "X."]
    assert published == [False, True]
    assert completed == 1
