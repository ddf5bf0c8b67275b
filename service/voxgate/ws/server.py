"""The protocol uvicorn hands a WebSocket upgrade to (its ``ws`` setting).

uvicorn parses the HTTP request and, for an upgrade, calls the factory made by
:func:`protocol_factory` and feeds the new protocol the request. This protocol
checks the handshake, then runs ``handler(connection)`` as a task, registered with
uvicorn so its graceful shutdown waits for it. The handler decides: ``accept()``
sends the 101. Only ``path`` is served; any other path gets a 404, a request that
breaks RFC 6455 4.2.1 a 400 (or 426 for another version), each told to ``on_refused``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import Headers, QueryParams

from voxgate.logs import get_logger
from voxgate.ws.connection import MESSAGE_TIMEOUT, OnLimit, State, WebSocket
from voxgate.ws.handshake import HandshakeError, Request, accept_response, parse_request, refusal

log = get_logger("voxgate.ws")

Handler = Callable[["ServerWebSocket"], Awaitable[None]]
#: Told the HTTP status of each upgrade request refused at the handshake (for a metric).
Refused = Callable[[int], None]


class ServerWebSocket(WebSocket):
    is_client = False

    def __init__(
        self,
        handler: Handler,
        path: str,
        server_state: Any,
        on_refused: Refused | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._handler = handler
        self._on_refused = on_refused
        self._path = path
        self._server_state = server_state
        self._task: asyncio.Task[None] | None = None
        self.request: Request | None = None
        self.headers = Headers()
        self.query_params = QueryParams()

    @property
    def accepted(self) -> bool:
        return self.state is not State.CONNECTING

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._server_state.connections.add(self)

    def _connection_lost(self) -> None:
        self._server_state.connections.discard(self)

    def _handshake_data(self, data: bytes) -> None:
        if self.request is not None:
            return  # nothing may come before the 101 (the client waits for it)
        try:
            request = parse_request(data)
            if request.path != self._path:
                raise HandshakeError(f"no WebSocket at {request.path}", 404)
        except HandshakeError as exc:
            log.info("websocket_handshake_refused", status=exc.status, reason=str(exc)[:200])
            if self._on_refused is not None:
                self._on_refused(exc.status)
            self.transport.write(refusal(exc.status, str(exc)))
            self.transport.close()
            return
        self.request = request
        self.headers = Headers(raw=request.headers)
        self.query_params = QueryParams(request.query_string.decode("latin-1"))
        self._task = self._loop.create_task(self._run(), name="websocket")
        self._server_state.tasks.add(self._task)
        self._task.add_done_callback(self._server_state.tasks.discard)

    async def _run(self) -> None:
        try:
            await self._handler(self)
        except Exception:
            log.exception("websocket_handler_failed")
            self.fail(1011, "internal error")
        finally:
            if self.state is State.CONNECTING:
                self.abort()
            elif self.state is not State.CLOSED:
                await self.close(1000)

    async def accept(self) -> None:
        assert self.request is not None
        if self.state is State.CONNECTING:
            self.transport.write(accept_response(self.request.key))
            self._opened()

    async def send_text(self, text: str) -> None:
        await self.send(text)

    def shutdown(self) -> None:
        """uvicorn's shutdown (after the gateway's drain): close what is still open."""
        if self.state is State.OPEN:
            self._send_close(1012, "server shutting down")
            self._loop.call_later(self._close_timeout, self.abort)  # no answer: drop it
        elif self.state is State.CONNECTING:
            self.abort()


def protocol_factory(
    handler: Handler,
    *,
    path: str,
    max_size: int,
    max_queue: int,
    ping_interval: float,
    close_timeout: float,
    on_refused: Refused | None = None,
    message_timeout: float | None = MESSAGE_TIMEOUT,
    max_fragments: int | None = None,
    on_limit: OnLimit | None = None,
) -> Callable[..., ServerWebSocket]:
    """What to pass uvicorn as ``ws``: it calls it with its own config and state."""

    def make(*, config: Any, server_state: Any, app_state: Any) -> ServerWebSocket:
        return ServerWebSocket(
            handler,
            path,
            server_state,
            on_refused,
            max_size=max_size,
            max_queue=max_queue,
            ping_interval=ping_interval,
            close_timeout=close_timeout,
            message_timeout=message_timeout,
            max_fragments=max_fragments,
            on_limit=on_limit,
        )

    return make
