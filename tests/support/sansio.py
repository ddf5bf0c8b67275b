"""WebSocket connections with no socket: a transport that records what is written, and
connections opened on it, for tests that drive the protocol by feeding bytes."""

from __future__ import annotations

from typing import Any

from voxgate.ws.connection import State, WebSocket
from voxgate.ws.frames import FrameReader


class RecordingTransport:
    """The transport's side of the contract: writes are recorded, nothing is sent."""

    def __init__(self, name: str, wire: list[tuple[str, bytes]]) -> None:
        self.name, self.wire = name, wire

    def write(self, data: bytes) -> None:
        self.wire.append((self.name, data))

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.wire.append((self.name, b""))  # EOF: nothing more is written

    def close(self) -> None: ...

    def abort(self) -> None: ...


class ServerSide(WebSocket):
    is_client = False


class ClientSide(WebSocket):
    is_client = True


def opened(kind: type[WebSocket], name: str, wire: list[tuple[str, bytes]]) -> WebSocket:
    ws = kind(max_size=1 << 20, ping_interval=None)
    ws.connection_made(RecordingTransport(name, wire))  # type: ignore[arg-type]
    ws.state = State.OPEN
    return ws


def frames_of(wire: list[tuple[str, bytes]], name: str, *, masked: bool) -> list[Any]:
    reader = FrameReader(masked=masked, max_size=1 << 20)
    return reader.feed(b"".join(data for who, data in wire if who == name))
