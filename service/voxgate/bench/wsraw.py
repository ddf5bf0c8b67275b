"""A lean WebSocket client for the load generator: an asyncio Protocol, no library.

The harness shares one core with the upstream simulator, so whatever it spends per
frame lowers the load it can offer. A library client costs tens of microseconds per
message (a task per connection, futures per recv, a fresh random mask per frame);
here a frame is one ``transport.write`` of bytes built once, and received messages
are handed to a callback straight from ``data_received``.

Client frames must be masked (RFC 6455 5.3) but the key may be any value: with the
all-zero key the masked payload equals the payload, so frames need no XOR pass.
This is a benchmark client only: it trusts the server (no Sec-WebSocket-Accept
check, no UTF-8 validation) and refuses what the bench never receives
(fragmented or extended-length > 64 KB messages).
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Callable
from typing import cast

#: Bytes of a server's handshake answer we accept before calling it broken.
MAX_HANDSHAKE_BYTES = 16 * 1024
#: A received message larger than this ends the connection (the bench gets small JSON).
MAX_MESSAGE_BYTES = 64 * 1024
_ZERO_MASK = b"\x00\x00\x00\x00"
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def frame_header(opcode: int, length: int) -> bytes:
    """The header of one masked client frame (FIN set, all-zero mask key)."""
    first = 0x80 | opcode
    if length < 126:
        return bytes((first, 0x80 | length)) + _ZERO_MASK
    if length < 1 << 16:
        return bytes((first, 0x80 | 126)) + struct.pack("!H", length) + _ZERO_MASK
    return bytes((first, 0x80 | 127)) + struct.pack("!Q", length) + _ZERO_MASK


def parse_header(buffer: bytearray, start: int) -> tuple[int, int, int, int] | None:
    """The frame at ``start``: (first byte, second byte, payload length, offset of what
    follows the length: the mask key if masked, else the payload); None while the
    buffer does not hold the whole header yet."""
    size = len(buffer)
    if size - start < 2:
        return None
    first, second = buffer[start], buffer[start + 1]
    length, offset = second & 0x7F, start + 2
    if length == 126:
        if size - offset < 2:
            return None
        (length,) = struct.unpack_from("!H", buffer, offset)
        offset += 2
    elif length == 127:
        if size - offset < 8:
            return None
        (length,) = struct.unpack_from("!Q", buffer, offset)
        offset += 8
    return first, second, length, offset


def handshake_request(host: str, port: int, path: str, headers: dict[str, str]) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class RawClient(asyncio.Protocol):
    """One client connection. ``opened`` resolves at the 101; ``closed`` at the end.

    ``on_text(text)`` is called for every text message, ``on_close(code)`` once.
    """

    def __init__(
        self,
        request: bytes,
        on_text: Callable[[str], None],
        on_close: Callable[[int], None],
    ) -> None:
        loop = asyncio.get_running_loop()
        self._request = request
        self._on_text = on_text
        self._on_close = on_close
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._upgraded = False
        self.close_code = 0

    # ------------------------------------------------------------------ sending

    def send_binary(self, header: bytes, payload: bytes) -> None:
        """Send one binary frame; ``header`` from :func:`frame_header` for its length."""
        if self.transport is not None and not self.closed.done():
            self.transport.writelines((header, payload))

    def send_text(self, text: str) -> None:
        data = text.encode()
        if self.transport is not None and not self.closed.done():
            self.transport.writelines((frame_header(OP_TEXT, len(data)), data))

    def close(self, code: int = 1000) -> None:
        if self.transport is not None and not self.transport.is_closing():
            body = struct.pack("!H", code)
            self.transport.writelines((frame_header(OP_CLOSE, len(body)), body))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # ------------------------------------------------------------------ asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed before the handshake"))
        self._finish(self.close_code or 1006)

    def _finish(self, code: int) -> None:
        if not self.closed.done():
            self.close_code = code
            self.closed.set_result(code)
            self._on_close(code)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HANDSHAKE_BYTES:
                    self._fail(ConnectionError("handshake answer too long"))
                return
            status_line = bytes(buffer[: buffer.find(b"\r\n")])
            if not status_line.startswith(b"HTTP/1.1 101"):
                self._fail(ConnectionError(status_line.decode(errors="replace")))
                return
            del buffer[: end + 4]
            self._upgraded = True
            self.opened.set_result(None)
        self._parse_frames()

    def _fail(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        self.abort()

    def _parse_frames(self) -> None:
        buffer = self._buffer
        start = 0
        size = len(buffer)
        while (header := parse_header(buffer, start)) is not None:
            first, second, length, offset = header
            if second & 0x80 or not first & 0x80 or length > MAX_MESSAGE_BYTES:
                self._fail(ConnectionError("unexpected frame (masked, fragmented or too big)"))
                return
            if size - offset < length:
                break
            payload = bytes(buffer[offset : offset + length])
            start = offset + length
            opcode = first & 0x0F
            if opcode == OP_TEXT:
                self._on_text(payload.decode())
            elif opcode == OP_PING:
                if self.transport is not None:
                    self.transport.writelines((frame_header(OP_PONG, len(payload)), payload))
            elif opcode == OP_CLOSE:
                code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
                self.close(code if code not in (1005, 1006) else 1000)
                self._finish(code)
                if self.transport is not None:
                    self.transport.close()
        if start:
            del buffer[:start]


async def connect(
    url: str,
    headers: dict[str, str],
    on_text: Callable[[str], None],
    on_close: Callable[[int], None],
) -> RawClient:
    """Open ``ws://host:port/path?query``; return once the server answered 101."""
    if not url.startswith("ws://"):
        raise ValueError("the bench speaks plain ws:// only")
    rest = url[len("ws://") :]
    hostport, _, path = rest.partition("/")
    host, _, port_text = hostport.rpartition(":")
    port = int(port_text)
    request = handshake_request(host, port, "/" + path, headers)
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(
        lambda: RawClient(request, on_text, on_close), host, port
    )
    await client.opened
    return client
