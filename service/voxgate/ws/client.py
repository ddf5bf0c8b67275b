"""``connect()``: open a WebSocket to a server (the gateway's upstream hop).

A refusal (any status but 101) raises :class:`InvalidStatus` with the status and
the start of the body, which is where AssemblyAI says why (402, 401, 429...).
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

from voxgate.ws.connection import MESSAGE_TIMEOUT, OnLimit, WebSocket
from voxgate.ws.handshake import (
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    HandshakeError,
    Response,
    check_accept,
    client_request,
    dechunk,
    new_key,
    parse_response_head,
)


class InvalidStatus(Exception):
    """The server answered the upgrade with an HTTP status other than 101."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


class ClientWebSocket(WebSocket):
    is_client = True

    def __init__(self, request: bytes, key: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._request = request
        self._key = key
        self._head = b""
        self._refusal: Response | None = None
        self._body = b""
        self.handshake: asyncio.Future[None] = self._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.write(self._request)

    def _handshake_data(self, data: bytes) -> None:
        if self._refusal is not None:
            self._body += data
            self._refused_body_complete()
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEAD_BYTES:
                self._handshake_failed(HandshakeError("response head too long"))
            return
        rest = self._head[end + 4 :]
        try:
            response = parse_response_head(self._head[:end])
            if response.status == 101:
                check_accept(response, self._key)
        except HandshakeError as exc:
            self._handshake_failed(exc)
            return
        self._head = b""
        if response.status != 101:
            self._refusal, self._body = response, rest
            self._refused_body_complete()
            return
        self._opened()
        self.handshake.set_result(None)
        if rest:
            self.data_received(rest)

    def _refused_body_complete(self) -> None:
        assert self._refusal is not None
        if "chunked" in self._refusal.headers.get("transfer-encoding", "").lower():
            try:
                body = dechunk(self._body)
            except HandshakeError as exc:
                self._handshake_failed(exc)
                return
            if body is not None:
                self._handshake_failed(InvalidStatus(self._refusal.status, body[:MAX_BODY_BYTES]))
            elif len(self._body) >= MAX_BODY_BYTES:
                self._handshake_failed(InvalidStatus(self._refusal.status, b""))
            return
        wanted = self._refusal.body_length
        if wanted is not None and len(self._body) >= min(wanted, MAX_BODY_BYTES):
            self._handshake_failed(InvalidStatus(self._refusal.status, self._body[:wanted]))
        elif len(self._body) >= MAX_BODY_BYTES:
            self._handshake_failed(InvalidStatus(self._refusal.status, self._body[:MAX_BODY_BYTES]))

    def _handshake_failed(self, exc: Exception) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(exc)
        self.transport.close()

    def _connection_lost(self) -> None:
        if self.handshake.done():
            return
        if self._refusal is not None:  # a body read to the end of the connection
            self.handshake.set_exception(InvalidStatus(self._refusal.status, self._body))
        else:
            self.handshake.set_exception(ConnectionResetError("closed during the handshake"))


async def connect(
    url: str,
    *,
    headers: dict[str, str],
    max_size: int,
    max_queue: int,
    close_timeout: float,
    ssl_context: ssl.SSLContext | None = None,
    max_fragments: int | None = None,
    message_timeout: float | None = MESSAGE_TIMEOUT,
    on_limit: OnLimit | None = None,
) -> ClientWebSocket:
    """Open the TCP (TLS for wss://) connection and do the handshake. No deadline of
    its own: callers wrap it in theirs. On failure the socket is closed. The bounds on
    the server's messages (``max_size``, ``max_fragments``, ``message_timeout``) are
    those of :class:`~voxgate.ws.connection.WebSocket`."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a WebSocket URL: {url!r}")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    default_port = port == (443 if secure else 80)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # IPv6
    host_header = host if default_port else f"{host}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    key = new_key()
    request = client_request(host_header, target, key, headers)
    loop = asyncio.get_running_loop()
    context = (ssl_context or ssl.create_default_context()) if secure else None
    _, connection = await loop.create_connection(
        lambda: ClientWebSocket(
            request,
            key,
            max_size=max_size,
            max_queue=max_queue,
            close_timeout=close_timeout,
            max_fragments=max_fragments,
            message_timeout=message_timeout,
            on_limit=on_limit,
        ),
        parts.hostname,
        port,
        ssl=context,
    )
    try:
        await connection.handshake
    except BaseException:
        connection.abort()
        raise
    return connection
