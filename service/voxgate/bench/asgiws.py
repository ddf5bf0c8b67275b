"""The gateway's ``/v3/ws`` handler behind uvicorn's own WebSocket implementations
(ASGI and Starlette), for ``voxgate bench --variants`` only: the same session code
over another client-side stack, so the default (``voxgate.ws``) is chosen by
measurement in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import cast

from starlette.datastructures import Headers, QueryParams
from starlette.websockets import WebSocket, WebSocketDisconnect

from voxgate.app import Gateway
from voxgate.ws.connection import Closed, ConnectionClosed
from voxgate.ws.server import ServerWebSocket


class AsgiClient:
    """A Starlette WebSocket with the calls the gateway makes of its client: ``write``
    without waiting (one task sends what was written, in order), ``drained`` and
    ``writable`` for backpressure, as ``voxgate.ws`` connections have them."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket
        self.headers: Headers = websocket.headers
        self.query_params: QueryParams = websocket.query_params
        #: Set by the session; uvicorn's stacks never call it (their messages come by recv).
        self.on_message: object = None
        self._pending: deque[bytes | str] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._failed: ConnectionClosed | None = None

    @property
    def writable(self) -> bool:
        """Nothing written is still waiting to be sent."""
        return not self._pending and self._failed is None

    async def accept(self) -> None:
        if self._ws.client_state.name == "CONNECTING":
            await self._ws.accept()

    async def recv(self) -> bytes | str:
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            code = message.get("code", 1006)
            sent = Closed(code, "") if code == 1009 else None  # uvicorn refused a big one
            raise ConnectionClosed(None if sent else Closed(code, ""), sent)
        data: bytes | None = message.get("bytes")
        return data if data is not None else cast(str, message.get("text"))

    def write(self, message: bytes | str) -> None:
        if self._failed is not None:
            raise self._failed
        self._pending.append(message)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_pending())

    async def drained(self) -> None:
        if self._sender is not None:
            await asyncio.shield(self._sender)
        if self._failed is not None:
            raise self._failed

    async def send(self, message: bytes | str) -> None:
        self.write(message)
        await self.drained()

    async def _send_pending(self) -> None:
        while self._pending:
            message = self._pending[0]
            try:
                if isinstance(message, bytes):
                    await self._ws.send_bytes(message)
                else:
                    await self._ws.send_text(message)
            except (WebSocketDisconnect, RuntimeError):
                self._failed = ConnectionClosed(None, None)
                self._pending.clear()
                return
            self._pending.popleft()

    async def send_text(self, text: str) -> None:
        await self.send(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.drained()  # what was written goes before the close
        try:
            await self._ws.close(code, reason)
        except (WebSocketDisconnect, RuntimeError):
            raise ConnectionClosed(None, None) from None


def asgi_endpoint(gateway: Gateway) -> Callable[[WebSocket], Awaitable[None]]:
    async def endpoint(websocket: WebSocket) -> None:
        # Duck-typed: AsgiClient has every call the handler and the session make.
        await gateway.websocket(cast(ServerWebSocket, AsgiClient(websocket)))

    return endpoint
