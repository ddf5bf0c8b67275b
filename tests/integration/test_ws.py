"""The lean RFC 6455 WebSocket (voxgate/ws) over real loopback sockets: our client
against the ``websockets`` package's server, our server (in uvicorn) against its client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import uvicorn
from starlette.applications import Starlette
from voxgate.server import bind
from voxgate.ws import client
from voxgate.ws.connection import Closed, ConnectionClosed, State
from voxgate.ws.frames import apply_mask
from voxgate.ws.handshake import accept_value
from voxgate.ws.server import ServerWebSocket, protocol_factory
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed as WsClosed
from websockets.exceptions import InvalidStatus as WsInvalidStatus
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse

from tests.support.wsclient import run

#: Deadline for a whole async scenario (each await in it is bounded by it).
WAIT = 5.0
MAX_SIZE = 1024
MAX_QUEUE = 4
WS_PATH = "/v3/ws"


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


def test_client_echo_of_text_and_binary() -> None:
    """Text comes back as str, binary as bytes, a 70 kB message too (64-bit length)."""

    async def scenario() -> None:
        async with upstream() as (url, _):
            conn = await open_upstream(f"{url}/echo")
            for message in ("hello", b"\x00\x01\x02", "é" * 10, b"m" * 70_000):
                await conn.send(message)
                assert await conn.recv() == message
            await conn.close()

    run(scenario(), WAIT)


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

    run(scenario(), WAIT)


def test_client_refusal_carries_status_and_body() -> None:
    """An upgrade answered with HTTP 402 raises InvalidStatus with 402 and the body."""

    async def scenario() -> None:
        async with upstream() as (url, _):
            with pytest.raises(client.InvalidStatus) as caught:
                await open_upstream(f"{url}/pay")
            assert caught.value.status == 402
            assert caught.value.body == b'{"error": "Account not upgraded"}'

    run(scenario(), WAIT)


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

    run(scenario(), WAIT)


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

    run(scenario(), WAIT)


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

    run(scenario(), WAIT)


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

    run(scenario(), WAIT)
    assert seen == {"rate": "16000", "auth": "k1"}


def test_server_closes_1009_on_a_message_over_max_size() -> None:
    """A 2000-byte message against max_size 1024 gets close code 1009."""

    async def scenario() -> None:
        async with serving(echo) as url, ws_connect(f"{url}{WS_PATH}") as ws:
            await ws.send("x" * 2000)
            with pytest.raises(WsClosed) as caught:
                await ws.recv()
            assert caught.value.rcvd is not None and caught.value.rcvd.code == 1009

    run(scenario(), WAIT)


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

    run(scenario(), WAIT)
    assert called == []


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

    run(scenario(), WAIT)


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

    run(scenario(), WAIT)


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

    run(scenario(), WAIT)


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

    run(scenario(), WAIT)


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

    run(scenario(), WAIT)


def test_client_closes_1009_on_an_upstream_message_that_never_ends() -> None:
    """Attack H2 from the other side: a server answers the upgrade, then sends a text
    message continued by empty frames without end. Our client closes with 1009 at the
    fragment bound (8192 frames for 1 MiB), tells on_limit, and the server reads the
    close frame (masked, 1009) before the end of the TCP stream."""
    limits: list[str] = []

    async def scenario() -> None:
        got_close: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def evil(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            key = next(
                line.split(b":", 1)[1].strip().decode()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + accept_value(key).encode()
                + b"\r\n\r\n"
                + bytes([0x01, 1])
                + b"{"
            )

            async def flood() -> None:
                with contextlib.suppress(ConnectionError):
                    while True:
                        writer.write(bytes([0x00, 0]) * 4096)
                        await writer.drain()

            task = asyncio.create_task(flood())
            data = await reader.read(2 + 4 + 125)  # the client's close frame
            task.cancel()
            got_close.set_result(apply_mask(data[6:], data[2:6]) if len(data) > 6 else data)
            writer.close()

        server = await asyncio.start_server(evil, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            conn = await client.connect(
                f"ws://127.0.0.1:{port}/",
                headers={},
                max_size=1 << 20,
                max_queue=16,
                close_timeout=1,
                on_limit=limits.append,
            )
            with pytest.raises(ConnectionClosed):
                await conn.recv()
            assert conn.sent is not None and conn.sent.code == 1009, conn.sent
            payload = await got_close
            assert payload[:2] == (1009).to_bytes(2, "big"), payload
            await conn.wait_closed()

    run(scenario(), WAIT)
    assert limits == ["fragments"]
