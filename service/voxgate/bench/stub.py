"""A lean echo upstream inside the bench process, for the scale-out run only.

On a 2-core machine the harness has one core. With the simulator (a full
``websockets`` server) the harness's core is nearly full at the load that fills one
gateway process, so a second gateway process has nowhere to run. This stub answers
like the simulator's ``echo`` key (``Begin``; ``{"type":"Echo","n":...}`` per binary
frame; ``Termination`` and close 1000 after ``Terminate``) at a fraction of its cost:
an asyncio Protocol that unmasks only the 8 marker bytes of each frame. It checks
nothing; the simulator is what every other phase uses.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
import uuid
from typing import cast

from voxgate.bench import wsraw
from voxgate.protocol import MAX_MESSAGE_BYTES

#: The gateway sends at most one 128 KB audio message per frame.
MAX_FRAME_BYTES = MAX_MESSAGE_BYTES

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TERMINATION = b'{"type":"Termination","audio_duration_seconds":0,"session_duration_seconds":0}'


def _server_frame(opcode: int, payload: bytes) -> bytes:
    length = len(payload)
    if length < 126:
        return bytes((0x80 | opcode, length)) + payload
    return bytes((0x80 | opcode, 126)) + struct.pack("!H", length) + payload


class _EchoUpstream(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        transport = self.transport
        assert transport is not None
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > wsraw.MAX_HANDSHAKE_BYTES:
                    transport.abort()
                return
            key = b""
            for line in bytes(buffer[:end]).split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-key":
                    key = value.strip()
            accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
            transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            begin = f'{{"type":"Begin","id":"{uuid.uuid4()}","expires_at":0}}'.encode()
            transport.write(_server_frame(wsraw.OP_TEXT, begin))
            del buffer[: end + 4]
            self.upgraded = True
        start, size = 0, len(buffer)
        while (header := wsraw.parse_header(buffer, start)) is not None:
            first, _, length, offset = header
            if length > MAX_FRAME_BYTES:
                transport.abort()  # never sent by the gateway (frames are <= 128 KB)
                return
            if size - offset < 4 + length:
                break
            mask = bytes(buffer[offset : offset + 4])
            payload_at = offset + 4
            start = payload_at + length
            opcode = first & 0x0F
            if opcode == wsraw.OP_BINARY:
                mark = bytes(
                    a ^ b
                    for a, b in zip(buffer[payload_at : payload_at + 8], mask * 2, strict=False)
                )
                transport.write(
                    _server_frame(
                        wsraw.OP_TEXT, b'{"type":"Echo","n":"' + mark.hex().encode() + b'"}'
                    )
                )
            elif opcode == wsraw.OP_TEXT:
                text = bytes(
                    b ^ mask[i % 4] for i, b in enumerate(buffer[payload_at : payload_at + length])
                )
                if b"Terminate" in text:
                    transport.write(_server_frame(wsraw.OP_TEXT, _TERMINATION))
                    transport.write(_server_frame(wsraw.OP_CLOSE, struct.pack("!H", 1000)))
            elif opcode == wsraw.OP_CLOSE:
                transport.write(_server_frame(wsraw.OP_CLOSE, struct.pack("!H", 1000)))
                transport.close()
            elif opcode == wsraw.OP_PING:
                payload = bytes(
                    b ^ mask[i % 4] for i, b in enumerate(buffer[payload_at : payload_at + length])
                )
                transport.write(_server_frame(wsraw.OP_PONG, payload))
        if start:
            del buffer[:start]


async def start_stub(host: str = "127.0.0.1") -> tuple[asyncio.Server, str]:
    """Start the stub on a free port; return the server and its ws:// base URL."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_EchoUpstream, host, 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    return server, f"ws://{host}:{port}"
