"""Flow control of one WebSocket connection and the session's fast paths, driven by
feeding bytes (sans-I/O): the transport only records what is written."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from voxgate.metrics.gateway import Metrics
from voxgate.protocol import PaceGuard
from voxgate.relay.continuity import Seam
from voxgate.relay.session import Session
from voxgate.ws import client
from voxgate.ws.connection import State, WebSocket
from voxgate.ws.frames import BINARY, PING, PONG, TEXT, FrameReader, encode
from voxgate.ws.handshake import HandshakeError, dechunk
from websockets.asyncio.server import ServerConnection, serve

WAIT = 5.0


class RecordingTransport:
    """The transport's side of the contract: writes are recorded, nothing is sent."""

    def __init__(self, name: str, wire: list[tuple[str, bytes]]) -> None:
        self.name, self.wire = name, wire

    def write(self, data: bytes) -> None:
        self.wire.append((self.name, data))

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class ServerSide(WebSocket):
    is_client = False


class ClientSide(WebSocket):
    is_client = True


def opened(kind: type[WebSocket], name: str, wire: list[tuple[str, bytes]]) -> WebSocket:
    ws = kind(max_size=1 << 20, ping_interval=None)
    ws.connection_made(RecordingTransport(name, wire))  # type: ignore[arg-type]
    ws.state = State.OPEN
    return ws


def frames_of(wire: list[tuple[str, bytes]], name: str, *, masked: bool) -> list[Any]:
    reader = FrameReader(masked=masked, max_size=1 << 20)
    return reader.feed(b"".join(data for who, data in wire if who == name))


def run(scenario: Any) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(WAIT):
            return await scenario()

    return asyncio.run(bounded())


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

    assert run(scenario) == (True, True)


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

    assert run(scenario) == [(PONG, b"499")]


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


@pytest.mark.integration
def test_a_chunked_refusal_on_a_kept_alive_connection_is_read_at_once() -> None:
    """A 402 with a chunked body whose server keeps the connection open is reported as
    InvalidStatus with the decoded body (not a handshake timeout)."""

    async def scenario() -> tuple[int, bytes]:
        async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 402 Payment Required\r\nTransfer-Encoding: chunked\r\n\r\n"
                b'19\r\n{"error": "not upgraded"}\r\n0\r\n\r\n'
            )
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(WAIT)  # keep-alive: the connection stays open

        server = await asyncio.start_server(refuse, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with asyncio.timeout(2.0):
                await client.connect(
                    f"ws://127.0.0.1:{port}/v3/ws",
                    headers={},
                    max_size=1 << 20,
                    max_queue=4,
                    close_timeout=1.0,
                )
        except client.InvalidStatus as refused:
            return refused.status, refused.body
        finally:
            server.close()
        raise AssertionError("the upgrade was not refused")

    assert run(scenario) == (402, b'{"error": "not upgraded"}')


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
        session.seam = Seam(bytes_per_ms=32.0, format_turns=True, max_replay_bytes=1 << 16)
        session.publisher = Publisher()  # type: ignore[assignment]
        session.turns = session.bytes_down = 0
        session._down_send_started = 0.0
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

    on_wire, published, completed = run(scenario)
    assert on_wire == ["x", "X."]
    assert published == [False, True]
    assert completed == 1


@pytest.mark.integration
def test_the_client_speaks_tls_to_a_wss_upstream(tmp_path: Path) -> None:
    """AssemblyAI is reached over wss://: the client does TLS with the host name
    checked against the certificate, then the WebSocket over it."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            *subject,
            *files,
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))

    async def scenario() -> bytes | str:
        async def echo(ws: ServerConnection) -> None:
            await ws.send(await ws.recv())

        async with serve(echo, "localhost", 0, ssl=server_tls) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            connection = await client.connect(
                f"wss://localhost:{port}/v3/ws",
                headers={},
                max_size=1 << 20,
                max_queue=4,
                close_timeout=1.0,
                ssl_context=client_tls,
            )
            await connection.send("over TLS")
            answer = await connection.recv()
            await connection.close()
            return answer

    assert run(scenario) == "over TLS"
