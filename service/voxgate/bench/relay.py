"""The minimal Python relay: the floor a Python WebSocket gateway can reach.

Plain ``websockets`` server in, ``websockets`` client out, one pump each way, uvloop.
It forwards the path, query and ``Authorization`` header as they came and does
nothing else: no auth, no checks, no metrics, no logs, no Redis. What the gateway
costs per frame over this is what its features cost.

Run: ``python -m voxgate.bench.relay --upstream ws://127.0.0.1:8081 [--port 0]``;
prints ``relay listening on ws://HOST:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

#: Same bounds as the gateway's (a 1000 ms PCM frame at 48 kHz is 96 KB).
MAX_SIZE = 1024 * 1024
#: Listen backlog: the bench opens sessions in bursts.
BACKLOG = 1024


async def _pump(
    source: ServerConnection | ClientConnection, sink: ServerConnection | ClientConnection
) -> None:
    recv = source.recv
    send = sink.send
    with contextlib.suppress(ConnectionClosed):
        while True:
            await send(await recv())


async def _relay(upstream_base: str, client: ServerConnection) -> None:
    request = client.request
    assert request is not None
    headers = {}
    auth = request.headers.get("Authorization")
    if auth is not None:
        headers["Authorization"] = auth
    try:
        upstream = await connect(
            upstream_base + request.path,
            additional_headers=headers,
            compression=None,
            max_size=MAX_SIZE,
            open_timeout=10,
        )
    except Exception:
        await client.close(1011, "upstream unreachable")
        return
    async with upstream:
        up = asyncio.create_task(_pump(client, upstream))
        down = asyncio.create_task(_pump(upstream, client))
        _, pending = await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        code = upstream.close_code or 1000
        await client.close(code if code not in (1005, 1006) else 1011)


async def serve_relay(upstream_base: str, host: str, port: int) -> None:
    async def handler(client: ServerConnection) -> None:
        await _relay(upstream_base, client)

    async with serve(
        handler, host, port, compression=None, max_size=MAX_SIZE, backlog=BACKLOG
    ) as server:
        sock = next(iter(server.sockets))
        bound_host, bound_port = sock.getsockname()[:2]
        print(f"relay listening on ws://{bound_host}:{bound_port}", flush=True)
        await server.serve_forever()


def serve_cli(
    serve: Callable[[str, str, int], Coroutine[Any, Any, None]], description: str
) -> None:
    """The command line of a bench target (``--upstream``, ``--host``, ``--port``),
    served on uvloop until interrupted."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--upstream", required=True, help="ws://HOST:PORT of the upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    ns = parser.parse_args()
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(ns.upstream.rstrip("/"), ns.host, ns.port))


def main() -> None:
    serve_cli(serve_relay, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
