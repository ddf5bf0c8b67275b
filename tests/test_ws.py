"""The lean RFC 6455 WebSocket (service/ws): pure codec and handshake, then both roles
over real sockets against the ``websockets`` package (and uvicorn for the server)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import pytest
import uvicorn
from starlette.applications import Starlette
from voxgate.server import bind
from voxgate.ws import client
from voxgate.ws.connection import Closed, ConnectionClosed, State
from voxgate.ws.frames import (
    BINARY,
    CONTINUATION,
    PING,
    TEXT,
    FrameError,
    FrameReader,
    apply_mask,
    close_payload,
    encode,
    parse_close,
)
from voxgate.ws.handshake import (
    HandshakeError,
    Response,
    accept_value,
    check_accept,
    client_request,
    new_key,
    parse_request,
    parse_response_head,
)
from voxgate.ws.server import ServerWebSocket, protocol_factory
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed as WsClosed
from websockets.exceptions import InvalidStatus as WsInvalidStatus
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse

T = TypeVar("T")

#: Deadline for a whole async scenario (each await in it is bounded by it).
WAIT = 5.0
MAX_SIZE = 1024
MAX_QUEUE = 4
WS_PATH = "/v3/ws"


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    """Run one scenario on a fresh event loop, under the WAIT deadline."""

    async def bounded() -> T:
        async with asyncio.timeout(WAIT):
            return await scenario()

    return asyncio.run(bounded())


# ---------------------------------------------------------------------- frames


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv: int = 0
) -> bytes:
    """A frame built by hand (short lengths only), fin/rsv/mask as asked."""
    assert len(payload) < 126
    first = (0x80 if fin else 0) | rsv | opcode
    if not mask:
        return bytes([first, len(payload)]) + payload
    key = b"\x01\x02\x03\x04"
    return bytes([first, 0x80 | len(payload)]) + key + apply_mask(payload, key)


def server_reader(max_size: int = MAX_SIZE) -> FrameReader:
    return FrameReader(masked=True, max_size=max_size)


def code_of(reader: FrameReader, data: bytes) -> int:
    """The close code the reader answers ``data`` with (it stops at the first error)."""
    assert reader.feed(data) == []
    assert reader.error is not None
    assert reader.feed(encode(TEXT, b"later", mask=True)) == []  # stopped for good
    return reader.error.code


def test_masked_frames_round_trip_text_as_str_binary_as_bytes() -> None:
    """A client's masked frames parse back on the server side: text as str, binary as
    bytes, several in one feed, in order."""
    data = encode(TEXT, "héllo".encode(), mask=True) + encode(BINARY, b"\x00\xff", mask=True)
    assert server_reader().feed(data) == [(TEXT, "héllo"), (BINARY, b"\x00\xff")]


def test_frames_fed_one_byte_at_a_time_come_out_whole() -> None:
    """Partial frames wait for the rest: byte by byte, nothing comes out until each
    frame's last byte, then exactly that message."""
    reader = server_reader()
    data = encode(TEXT, b"abc", mask=True) + encode(BINARY, b"xyz" * 50, mask=True)
    out = []
    for i in range(len(data)):
        out.extend(reader.feed(data[i : i + 1]))
    assert out == [(TEXT, "abc"), (BINARY, b"xyz" * 50)]


def test_unmasked_frames_round_trip_on_the_client_side() -> None:
    """A server's unmasked frames parse on the client side (masked=False)."""
    reader = FrameReader(masked=False, max_size=MAX_SIZE)
    assert reader.feed(encode(TEXT, b"hi", mask=False)) == [(TEXT, "hi")]


def test_16_and_64_bit_lengths() -> None:
    """200 bytes use the 16-bit length (126), 70000 the 64-bit one (127); both parse."""
    small, big = bytes(range(200)), b"q" * 70_000
    small_frame, big_frame = encode(BINARY, small, mask=True), encode(BINARY, big, mask=True)
    assert small_frame[1] & 0x7F == 126 and struct.unpack("!H", small_frame[2:4]) == (200,)
    assert big_frame[1] & 0x7F == 127 and struct.unpack("!Q", big_frame[2:10]) == (70_000,)
    reader = server_reader(max_size=100_000)
    assert reader.feed(small_frame + big_frame) == [(BINARY, small), (BINARY, big)]
    client_side = FrameReader(masked=False, max_size=100_000)
    assert client_side.feed(encode(BINARY, big, mask=False)) == [(BINARY, big)]


def test_fragmented_text_is_reassembled_and_utf8_checked_as_a_whole() -> None:
    """TEXT fin=0 + CONTINUATION fin=1 give one message; a character split across the
    fragments (é = C3 A9) is fine since UTF-8 is checked on the whole message."""
    reader = server_reader()
    assert reader.feed(frame(TEXT, b"caf\xc3", fin=False)) == []
    assert reader.feed(frame(CONTINUATION, b"\xa9 ", fin=False)) == []
    assert reader.feed(frame(CONTINUATION, b"noir", fin=True)) == [(TEXT, "café noir")]
    # the reader is ready for the next message afterwards
    assert reader.feed(frame(BINARY, b"z")) == [(BINARY, b"z")]


def test_a_ping_inside_a_fragmented_message_comes_out_as_a_control_frame() -> None:
    """A control frame between fragments is delivered at once; the message follows."""
    data = frame(TEXT, b"ab", fin=False) + frame(PING, b"p") + frame(CONTINUATION, b"cd", fin=True)
    assert server_reader().feed(data) == [(PING, b"p"), (TEXT, "abcd")]


def test_masking_rules_are_enforced_both_ways() -> None:
    """Unmasked to a server-side reader, or masked to a client-side one: 1002."""
    assert code_of(server_reader(), encode(TEXT, b"x", mask=False)) == 1002
    client_side = FrameReader(masked=False, max_size=MAX_SIZE)
    assert code_of(client_side, encode(TEXT, b"x", mask=True)) == 1002


@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10])
def test_reserved_bits_are_a_protocol_error(rsv: int) -> None:
    """RSV1-3 set without a negotiated extension: 1002."""
    assert code_of(server_reader(), frame(TEXT, b"x", rsv=rsv)) == 1002


def test_control_frames_over_125_bytes_or_fragmented_are_refused() -> None:
    """A 126-byte ping is 1002 as soon as its header is in; so is a ping with fin=0."""
    assert code_of(server_reader(), encode(PING, b"x" * 126, mask=True)[:4]) == 1002
    assert code_of(server_reader(), frame(PING, b"x", fin=False)) == 1002


def test_a_message_over_max_size_is_refused_at_its_header() -> None:
    """A 2000-byte frame against max_size 1024: 1009 from the 4 header bytes alone,
    before any payload (so it is never buffered); exactly max_size is accepted."""
    data = encode(BINARY, b"x" * 2000, mask=True)
    assert code_of(server_reader(), data[:4]) == 1009
    big = encode(BINARY, b"y" * MAX_SIZE, mask=True)
    assert server_reader().feed(big) == [(BINARY, b"y" * MAX_SIZE)]


def test_a_fragmented_message_cannot_grow_past_max_size() -> None:
    """Two 100-byte fragments fit max_size 150 each, not together: 1009 at the second
    fragment's header."""
    reader = server_reader(max_size=150)
    first = encode(BINARY, b"a" * 100, mask=True)
    first = bytes([first[0] & 0x7F]) + first[1:]  # clear FIN: a first fragment
    assert reader.feed(first) == []
    second = bytes([0x80 | CONTINUATION, 0x80 | 100])
    assert code_of(reader, second) == 1009


def test_invalid_utf8_text_is_1007() -> None:
    """A text message that is not UTF-8: 1007; the same bytes as binary are fine."""
    assert code_of(server_reader(), frame(TEXT, b"ok\xff")) == 1007
    assert server_reader().feed(frame(BINARY, b"ok\xff")) == [(BINARY, b"ok\xff")]


def test_fragmentation_order_errors_are_1002() -> None:
    """A continuation with no message to continue, and a new data frame inside a
    fragmented message, are both 1002."""
    assert code_of(server_reader(), frame(CONTINUATION, b"x")) == 1002
    reader = server_reader()
    reader.feed(frame(TEXT, b"a", fin=False))
    assert code_of(reader, frame(BINARY, b"b")) == 1002


@pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF])
def test_unknown_opcodes_are_1002(opcode: int) -> None:
    """Reserved data (3-7) and control (B-F) opcodes: 1002."""
    assert code_of(server_reader(), frame(opcode, b"x")) == 1002


def test_parse_close_codes() -> None:
    """An empty close is 1005; one byte, the never-on-the-wire 1006 and an unassigned
    999 are 1002; a reason that is not UTF-8 is 1007; an application code round-trips
    with its reason through close_payload."""
    assert parse_close(b"") == (1005, "")
    for payload in (b"\x03", struct.pack("!H", 1006), struct.pack("!H", 999)):
        with pytest.raises(FrameError) as caught:
            parse_close(payload)
        assert caught.value.code == 1002, payload
    with pytest.raises(FrameError) as bad_reason:
        parse_close(struct.pack("!H", 1000) + b"\xff")
    assert bad_reason.value.code == 1007
    assert parse_close(close_payload(4001, "reason ✓")) == (4001, "reason ✓")
    assert parse_close(close_payload(1000, "")) == (1000, "")


def test_close_payload_cuts_a_long_reason_on_a_character_boundary() -> None:
    """200 bytes of two-byte characters: cut to 61 characters (122 bytes), never half
    a character, so the frame stays within the 125-byte control limit."""
    payload = close_payload(1008, "é" * 100)
    assert len(payload) <= 125 and len(payload) - 2 <= 123
    assert parse_close(payload) == (1008, "é" * 61)
    # three-byte characters: 41 of them fill exactly 123 bytes
    assert parse_close(close_payload(1000, "€" * 50)) == (1000, "€" * 41)


# ---------------------------------------------------------------------- handshake


def upgrade_request(*, version: str = "13", key: str | None = None) -> bytes:
    """A raw upgrade request as uvicorn hands it over."""
    return (
        "GET /v3/ws?sample_rate=16000 HTTP/1.1\r\n"
        "host: example\r\n"
        "upgrade: websocket\r\n"
        "connection: Upgrade\r\n"
        f"sec-websocket-key: {key if key is not None else new_key()}\r\n"
        f"sec-websocket-version: {version}\r\n\r\n"
    ).encode()


def test_accept_value_matches_the_rfc_example() -> None:
    """RFC 6455 section 1.3's key gives its documented accept value."""
    assert accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_parse_request_reads_path_query_headers_and_key() -> None:
    """A valid request: path and query split, header names lower case, key kept."""
    key = new_key()
    request = parse_request(upgrade_request(key=key))
    assert request.path == "/v3/ws" and request.query_string == b"sample_rate=16000"
    assert (b"host", b"example") in request.headers and request.key == key


def test_parse_request_refusals_carry_their_status() -> None:
    """Version 8: 426; a key that is not 16 base64 bytes: 400; a POST: 400."""
    with pytest.raises(HandshakeError) as version:
        parse_request(upgrade_request(version="8"))
    assert version.value.status == 426
    for key in ("not base64!", "c2hvcnQ=", ""):
        with pytest.raises(HandshakeError) as bad_key:
            parse_request(upgrade_request(key=key))
        assert bad_key.value.status == 400, key
    with pytest.raises(HandshakeError) as post:
        parse_request(upgrade_request().replace(b"GET", b"POST", 1))
    assert post.value.status == 400
    for missing in (b"connection: Upgrade\r\n", b"host: example\r\n"):
        with pytest.raises(HandshakeError) as incomplete:
            parse_request(upgrade_request().replace(missing, b""))
        assert incomplete.value.status == 400, missing
    with pytest.raises(HandshakeError):
        parse_request(upgrade_request().replace(b"connection: Upgrade", b"connection: close"))


def test_parse_request_takes_connection_as_a_token_list() -> None:
    """Browsers may send "Connection: keep-alive, Upgrade": that is an upgrade."""
    listed = upgrade_request().replace(b"connection: Upgrade", b"Connection: keep-alive, UPGRADE")
    assert parse_request(listed).path == "/v3/ws"


def switching(key: str, **extra: str) -> Response:
    headers = {
        "upgrade": "websocket",
        "connection": "Upgrade",
        "sec-websocket-accept": accept_value(key),
    }
    headers.update(extra)
    return Response(101, headers, None)


def test_check_accept_wants_our_key_and_no_extension() -> None:
    """The right accept passes; another key's accept, or an extension we never
    offered, raise HandshakeError."""
    key = new_key()
    check_accept(switching(key), key)
    with pytest.raises(HandshakeError):
        check_accept(switching(key, **{"sec-websocket-accept": accept_value(new_key())}), key)
    with pytest.raises(HandshakeError):
        check_accept(switching(key, **{"sec-websocket-extensions": "permessage-deflate"}), key)


def test_parse_response_head_reads_status_headers_and_length() -> None:
    """Status, header names lower-cased, Content-Length as a number (None without)."""
    head = b"HTTP/1.1 402 Payment Required\r\nContent-Type: text/plain\r\nContent-Length: 12"
    response = parse_response_head(head)
    assert response.status == 402 and response.body_length == 12
    assert response.headers == {"content-type": "text/plain", "content-length": "12"}
    assert parse_response_head(b"HTTP/1.1 101 Switching Protocols").body_length is None
    for bad in (b"garbage", b"HTTP/1.1 abc OK", b"HTTP/1.1 200 OK\r\nno colon"):
        with pytest.raises(HandshakeError):
            parse_response_head(bad)


def test_client_request_refuses_header_injection() -> None:
    """A header value with a line break is refused rather than sent."""
    with pytest.raises(ValueError):
        client_request("h", "/", new_key(), {"Authorization": "k\r\nX-Evil: 1"})


# ---------------------------------------------------------------------- our client


@asynccontextmanager
async def upstream() -> AsyncIterator[tuple[str, asyncio.Queue[int]]]:
    """A real ``websockets`` server: /echo echoes, /close sends two messages then
    closes 4001, /flood sends 20 messages then waits, /record reports the close code
    it received (as does /flood), /pay refuses with 402."""
    closes: asyncio.Queue[int] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        if ws.request.path == "/echo":
            async for message in ws:
                await ws.send(message)
        elif ws.request.path == "/close":
            await ws.send("one")
            await ws.send(b"two")
            await ws.close(4001, "reason")
        elif ws.request.path == "/flood":
            for i in range(20):
                await ws.send(f"m{i}")
            await ws.wait_closed()
            closes.put_nowait(ws.close_code or 0)
        elif ws.request.path == "/record":
            try:
                async for _ in ws:
                    pass
            finally:
                closes.put_nowait(ws.close_code or 0)

    def process_request(ws: ServerConnection, request: WsRequest) -> WsResponse | None:
        if request.path == "/pay":
            return ws.respond(402, '{"error": "Account not upgraded"}')
        return None

    async with serve(
        handler, "127.0.0.1", 0, process_request=process_request, close_timeout=1
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}", closes


async def open_upstream(url: str) -> client.ClientWebSocket:
    return await client.connect(url, headers={}, max_size=1 << 20, max_queue=16, close_timeout=1)


@pytest.mark.integration
def test_client_echo_of_text_and_binary() -> None:
    """Text comes back as str, binary as bytes, a 70 kB message too (64-bit length)."""

    async def scenario() -> None:
        async with upstream() as (url, _):
            conn = await open_upstream(f"{url}/echo")
            for message in ("hello", b"\x00\x01\x02", "é" * 10, b"m" * 70_000):
                await conn.send(message)
                assert await conn.recv() == message
            await conn.close()

    run(scenario)


@pytest.mark.integration
def test_client_gets_queued_messages_then_the_close() -> None:
    """The server sends two messages and closes 4001 "reason": once the connection is
    gone, recv still yields both, then raises ConnectionClosed with rcvd (4001,
    "reason") and our echoed close as sent."""

    async def scenario() -> None:
        async with upstream() as (url, _):
            conn = await open_upstream(f"{url}/close")
            await conn.wait_closed()
            assert await conn.recv() == "one"
            assert await conn.recv() == b"two"
            with pytest.raises(ConnectionClosed) as caught:
                await conn.recv()
            assert caught.value.rcvd == (4001, "reason") and caught.value.code == 4001
            assert caught.value.sent is not None and caught.value.sent.code == 4001

    run(scenario)


@pytest.mark.integration
def test_client_refusal_carries_status_and_body() -> None:
    """An upgrade answered with HTTP 402 raises InvalidStatus with 402 and the body."""

    async def scenario() -> None:
        async with upstream() as (url, _):
            with pytest.raises(client.InvalidStatus) as caught:
                await open_upstream(f"{url}/pay")
            assert caught.value.status == 402
            assert caught.value.body == b'{"error": "Account not upgraded"}'

    run(scenario)


@pytest.mark.integration
def test_client_close_completes_the_handshake_and_send_after_raises() -> None:
    """close() ends with the server having received 1000 and the connection CLOSED;
    send afterwards raises ConnectionClosed, and a second close() is a no-op."""

    async def scenario() -> None:
        async with upstream() as (url, closes):
            conn = await open_upstream(f"{url}/record")
            await conn.close()
            assert conn.state is State.CLOSED
            assert conn.sent == (1000, "") and conn.rcvd == (1000, "")
            assert await closes.get() == 1000
            with pytest.raises(ConnectionClosed):
                await conn.send("late")
            await conn.close()

    run(scenario)


@pytest.mark.integration
def test_client_close_gets_through_a_full_receive_queue() -> None:
    """With reading paused (20 messages unread, max_queue 4), close() still reads the
    server's close and the end of the connection (it returns well before its long
    close_timeout would abort), and the unread messages can still be taken."""

    async def scenario() -> None:
        async with upstream() as (url, closes):
            conn = await client.connect(
                f"{url}/flood", headers={}, max_size=MAX_SIZE, max_queue=4, close_timeout=WAIT * 2
            )
            while not conn._reading_paused:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.01)
            try:
                async with asyncio.timeout(WAIT / 2):  # far below close_timeout
                    await conn.close()
            finally:
                conn.abort()  # a no-op once closed; ends a failing run at once
            assert conn.rcvd is not None and conn.rcvd.code == 1000
            assert conn.state is State.CLOSED
            assert await closes.get() == 1000
            taken = [await conn.recv() for _ in range(len(conn._messages))]
            assert taken[:4] == ["m0", "m1", "m2", "m3"]

    run(scenario)


def test_client_rejects_non_websocket_urls() -> None:
    """Only ws:// and wss:// URLs with a host are accepted."""

    async def scenario() -> None:
        for url in ("http://example.com/", "ws:///path"):
            with pytest.raises(ValueError):
                await open_upstream(url)

    run(scenario)


# ---------------------------------------------------------------------- our server

Handler = Callable[[ServerWebSocket], Awaitable[None]]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """A real uvicorn on 127.0.0.1:0 whose /v3/ws upgrades go to ``handler``."""
    websocket = protocol_factory(
        handler,
        path=WS_PATH,
        max_size=MAX_SIZE,
        max_queue=MAX_QUEUE,
        ping_interval=20,
        close_timeout=1,
    )
    config = uvicorn.Config(
        Starlette(),
        ws=websocket,  # type: ignore[arg-type]  # uvicorn calls it like its own classes
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(WAIT):
            await task
        sock.close()


async def echo(ws: ServerWebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send(await ws.recv())
    except ConnectionClosed:
        pass


@pytest.mark.integration
def test_server_echoes_text_binary_and_fragmented_messages() -> None:
    """Text and binary echo; a message the client sends in three fragments comes back
    as one message; a ping gets its pong."""

    async def scenario() -> None:
        async with serving(echo) as url, ws_connect(f"{url}{WS_PATH}") as ws:
            for message in ("hello", b"\x00\xff", "é" * 10):
                await ws.send(message)
                assert await ws.recv() == message
            await ws.send(["ab", "c\u00e9", "d"])
            assert await ws.recv() == "abcéd"
            await ws.send([b"12", b"34"])
            assert await ws.recv() == b"1234"
            pong = await ws.ping(b"are you there")
            await pong

    run(scenario)


@pytest.mark.integration
def test_server_passes_the_request_to_the_handler() -> None:
    """The handler sees the request's query parameters and headers."""
    seen: dict[str, str | None] = {}

    async def handler(ws: ServerWebSocket) -> None:
        seen["rate"] = ws.query_params.get("sample_rate")
        seen["auth"] = ws.headers.get("authorization")
        await ws.accept()
        await ws.send("ok")

    async def scenario() -> None:
        async with serving(handler) as url:
            headers = {"Authorization": "k1"}
            async with ws_connect(
                f"{url}{WS_PATH}?sample_rate=16000", additional_headers=headers
            ) as ws:
                assert await ws.recv() == "ok"

    run(scenario)
    assert seen == {"rate": "16000", "auth": "k1"}


@pytest.mark.integration
def test_server_closes_1009_on_a_message_over_max_size() -> None:
    """A 2000-byte message against max_size 1024 gets close code 1009."""

    async def scenario() -> None:
        async with serving(echo) as url, ws_connect(f"{url}{WS_PATH}") as ws:
            await ws.send("x" * 2000)
            with pytest.raises(WsClosed) as caught:
                await ws.recv()
            assert caught.value.rcvd is not None and caught.value.rcvd.code == 1009

    run(scenario)


@pytest.mark.integration
def test_server_refuses_other_paths_with_404() -> None:
    """An upgrade to /other is refused with HTTP 404 (the handler never runs)."""
    called: list[bool] = []

    async def handler(ws: ServerWebSocket) -> None:
        called.append(True)
        await echo(ws)

    async def scenario() -> None:
        async with serving(handler) as url:
            with pytest.raises(WsInvalidStatus) as caught:
                await ws_connect(f"{url}/other")
            assert caught.value.response.status_code == 404

    run(scenario)
    assert called == []


@pytest.mark.integration
def test_handler_sees_the_client_close_code() -> None:
    """A client close(4000, "bye") reaches the handler as ConnectionClosed with rcvd
    (4000, "bye"); the client sees its code echoed."""

    async def scenario() -> None:
        result: asyncio.Future[ConnectionClosed] = asyncio.get_running_loop().create_future()

        async def handler(ws: ServerWebSocket) -> None:
            await ws.accept()
            try:
                await ws.recv()
            except ConnectionClosed as exc:
                result.set_result(exc)

        async with serving(handler) as url:
            ws = await ws_connect(f"{url}{WS_PATH}")
            await ws.close(4000, "bye")
            closed = await result
            assert closed.rcvd == Closed(4000, "bye")
            assert ws.close_code == 4000

    run(scenario)


@pytest.mark.integration
def test_a_refusing_handler_closes_with_its_code_and_reason() -> None:
    """accept() then close(1008, "no"): the client gets close code 1008, reason "no"."""

    async def refuse(ws: ServerWebSocket) -> None:
        await ws.accept()
        await ws.close(1008, "no")

    async def scenario() -> None:
        async with serving(refuse) as url, ws_connect(f"{url}{WS_PATH}") as ws:
            with pytest.raises(WsClosed):
                await ws.recv()
            assert ws.close_code == 1008 and ws.close_reason == "no"

    run(scenario)


@pytest.mark.integration
def test_a_failing_handler_closes_1011() -> None:
    """A handler that raises after accept: the client gets 1011."""

    async def crash(ws: ServerWebSocket) -> None:
        await ws.accept()
        raise RuntimeError("boom")

    async def scenario() -> None:
        async with serving(crash) as url, ws_connect(f"{url}{WS_PATH}") as ws:
            with pytest.raises(WsClosed):
                await ws.recv()
            assert ws.close_code == 1011

    run(scenario)


@pytest.mark.integration
def test_a_slow_handler_stops_reading_and_loses_nothing() -> None:
    """A handler that does not recv: after max_queue (4) messages the server stops
    reading, so of 50 sent only a few are queued; once it drains, all 50 arrive in
    order."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[ServerWebSocket] = loop.create_future()
        drain = asyncio.Event()
        received: list[bytes | str] = []

        async def slow(ws: ServerWebSocket) -> None:
            await ws.accept()
            opened.set_result(ws)
            await drain.wait()
            for _ in range(50):
                received.append(await ws.recv())
            await ws.send("done")

        async with serving(slow) as url, ws_connect(f"{url}{WS_PATH}") as ws:
            conn = await opened
            for i in range(50):
                await ws.send(f"m{i}")
                # one message per read until the queue is full (the client and the
                # server share this loop), so the pause point is exact; no event to
                # wait on, hence the polling
                while not conn._reading_paused and len(conn._messages) <= i:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            await asyncio.sleep(0.2)  # room to (wrongly) read on
            assert conn._reading_paused
            assert len(conn._messages) <= 20
            drain.set()
            assert await ws.recv() == "done"
        assert received == [f"m{i}" for i in range(50)]

    run(scenario)


@pytest.mark.integration
def test_a_handler_can_close_with_its_queue_full() -> None:
    """A handler that stopped reading (queue full) and then closes still gets the
    client's answering close (rcvd 1000) instead of timing out and aborting; what was
    queued can still be taken afterwards."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[ServerWebSocket] = loop.create_future()
        closed = asyncio.Event()
        full = asyncio.Event()

        async def closer(ws: ServerWebSocket) -> None:
            await ws.accept()
            opened.set_result(ws)
            await full.wait()
            await ws.close(1000, "enough")
            closed.set()

        async with serving(closer) as url, ws_connect(f"{url}{WS_PATH}") as ws:
            conn = await opened
            for i in range(MAX_QUEUE):
                await ws.send(f"m{i}")
            while not conn._reading_paused:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.01)
            full.set()
            await closed.wait()
            assert conn.rcvd is not None and conn.rcvd.code == 1000
            assert conn.state is State.CLOSED
            taken = [await conn.recv() for _ in range(MAX_QUEUE)]
            assert taken == [f"m{i}" for i in range(MAX_QUEUE)]
            with pytest.raises(WsClosed):
                await ws.recv()
            assert ws.close_code == 1000 and ws.close_reason == "enough"

    run(scenario)


def test_messages_before_a_framing_error_are_still_delivered() -> None:
    """A frame that breaks the rules stops the reader, but the messages that arrived
    before it in the same read are not lost."""
    reader = FrameReader(masked=True, max_size=10)
    good = encode(TEXT, b"ok", mask=True)
    too_big = encode(BINARY, b"x" * 11, mask=True)
    assert reader.feed(good + too_big) == [(TEXT, "ok")]
    assert reader.error is not None and reader.error.code == 1009
