"""The gateway's ``/v3/ws`` handler behind uvicorn's own WebSocket implementations
(ASGI and Starlette), for ``voxgate bench --variants`` only: the same session code
over another client-side stack, so the default (``voxgate.ws``) is chosen by
measurement in the same run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import cast

from starlette.datastructures import Headers, QueryParams
from starlette.websockets import WebSocket, WebSocketDisconnect

from voxgate.app import Gateway
from voxgate.ws.connection import Closed, ConnectionClosed
from voxgate.ws.server import ServerWebSocket


class AsgiClient:
    """A Starlette WebSocket with the few calls the gateway makes of its client."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket
        self.headers: Headers = websocket.headers
        self.query_params: QueryParams = websocket.query_params

    #: Never ready for a write without await: the session relays through its pumps.
    writable = False

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

    async def send(self, message: bytes | str) -> None:
        try:
            if isinstance(message, bytes):
                await self._ws.send_bytes(message)
            else:
                await self._ws.send_text(message)
        except (WebSocketDisconnect, RuntimeError):
            raise ConnectionClosed(None, None) from None

    async def send_text(self, text: str) -> None:
        await self.send(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        try:
            await self._ws.close(code, reason)
        except (WebSocketDisconnect, RuntimeError):
            raise ConnectionClosed(None, None) from None


def asgi_endpoint(gateway: Gateway) -> Callable[[WebSocket], Awaitable[None]]:
    async def endpoint(websocket: WebSocket) -> None:
        # Duck-typed: AsgiClient has every call the handler and the session make.
        await gateway.websocket(cast(ServerWebSocket, AsgiClient(websocket)))

    return endpoint
