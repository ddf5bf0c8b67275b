"""A byte pipe: the floor of any relay written in Python with asyncio and uvloop.

It copies bytes between the client's TCP connection and one it opens to the
upstream, in the protocol callbacks, without looking at them: no WebSocket
parsing, no task, no await. The WebSocket handshake and frames pass through as
they are. What a Python relay costs on top of this is what it does with the
frames; what this costs is the event loop and the kernel's sockets, which no
Python relay can avoid.

Run: ``python -m voxgate.bench.pipe --upstream ws://127.0.0.1:8081 [--port 0]``;
prints ``pipe listening on ws://HOST:PORT``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import urlsplit

from voxgate.bench.relay import serve_cli

#: Listen backlog: the bench opens sessions in bursts.
BACKLOG = 1024
#: Deadline for the connection to the upstream.
CONNECT_TIMEOUT = 10.0


class Half(asyncio.Protocol):
    """One side of a pipe: what it reads goes out on the other side as it is."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Half | None = None
        #: What came before the other side was connected (uvloop may deliver a read
        #: already done when reading is paused).
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self.early.append(data)
            return
        peer.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    # The other side cannot keep up: stop reading this side until it can.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class ClientHalf(Half):
    """The client's side: reading waits until the upstream side is connected."""

    def __init__(self, join: Callable[[ClientHalf], None]) -> None:
        super().__init__()
        self._join = join

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        transport.pause_reading()  # type: ignore[attr-defined]
        self._join(self)


async def serve_pipe(upstream: str, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    parts = urlsplit(upstream)
    up_host, up_port = parts.hostname or "127.0.0.1", parts.port or 80
    connecting: set[asyncio.Task[None]] = set()

    async def connect_upstream(client: ClientHalf) -> None:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                _, server = await loop.create_connection(Half, up_host, up_port)
        except (OSError, TimeoutError):
            if client.transport is not None:
                client.transport.close()
            return
        server.peer, client.peer = client, server
        if server.transport is not None and client.early:
            server.transport.write(b"".join(client.early))
            client.early.clear()
        if client.transport is not None:
            client.transport.resume_reading()

    def join(client: ClientHalf) -> None:
        task = loop.create_task(connect_upstream(client))
        connecting.add(task)
        task.add_done_callback(connecting.discard)

    server = await loop.create_server(lambda: ClientHalf(join), host, port, backlog=BACKLOG)
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    print(f"pipe listening on ws://{bound_host}:{bound_port}", flush=True)
    await server.serve_forever()


def main() -> None:
    serve_cli(serve_pipe, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
