"""The edge's HTTP protocol driven by feeding bytes (sans-I/O): a transport that records
what is written, uvicorn's own config and server state, a one-line ASGI app. (Against a
real gateway under attack: integration/test_adversarial_http.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState
from voxgate.edge.http import Edge, EdgeHttpProtocol
from voxgate.edge.limits import EdgeLimits, Refusal

HEAD_CAP = 1024
LIMITS = EdgeLimits.build(
    max_head_bytes=HEAD_CAP,
    max_headers=10,
    handshake_timeout=0.2,
    max_connections=2,
    max_handshakes=10,
    fd_limit=1024,
)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


class Sock:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 80)

    def getpeername(self) -> tuple[str, int]:
        return ("127.0.0.1", 5000 + self.fd)


class Transport:
    def __init__(self, fd: int = 10) -> None:
        self.written = b""
        self.closed = False
        self.eof = False
        self.protocol: Any = None
        self.sock = Sock(fd)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" else default

    def write(self, data: bytes) -> None:
        self.written += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_protocol(self) -> Any:
        return self.protocol

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def connect(edge: Edge, state: ServerState, fd: int = 10) -> tuple[EdgeHttpProtocol, Transport]:
    config = uvicorn.Config(app, lifespan="off", log_config=None)
    config.load()
    protocol = EdgeHttpProtocol(edge, config=config, server_state=state, app_state={})
    transport = Transport(fd)
    transport.protocol = protocol
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport


def statuses(transport: Transport) -> list[int]:
    out = []
    for chunk in transport.written.split(b"HTTP/1.1 ")[1:]:
        out.append(int(chunk[:3]))
    return out


def run(scenario: Any) -> Any:
    return asyncio.run(asyncio.wait_for(scenario(), 5.0))


def test_a_head_trickled_byte_by_byte_is_refused_at_the_cap() -> None:
    async def scenario() -> tuple[list[int], bool, int, list[Refusal]]:
        refused: list[Refusal] = []
        edge = Edge(LIMITS, refused.append)
        protocol, transport = connect(edge, ServerState())
        head = b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 4096
        fed = 0
        for byte in head:
            if transport.written:
                break
            protocol.data_received(bytes([byte]))
            fed += 1
        return statuses(transport), transport.eof, fed, refused

    got, eof, fed, refused = run(scenario)
    assert got == [431] and eof and refused == [Refusal.HEAD_TOO_LARGE]
    assert fed == HEAD_CAP


def test_a_head_in_one_big_read_is_cut_at_the_cap() -> None:
    async def scenario() -> tuple[list[int], int]:
        edge = Edge(LIMITS)
        protocol, transport = connect(edge, ServerState())
        protocol.data_received(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 1_000_000)
        return statuses(transport), edge.handshakes

    assert run(scenario) == ([431], 0)


def test_too_many_headers_are_refused() -> None:
    async def scenario() -> list[int]:
        protocol, transport = connect(Edge(LIMITS), ServerState())
        headers = b"".join(b"X-%d: v\r\n" % i for i in range(11))
        protocol.data_received(b"GET / HTTP/1.1\r\n" + headers + b"\r\n")
        return statuses(transport)

    assert run(scenario) == [431]


def test_keep_alive_requests_each_get_the_cap_and_an_answer() -> None:
    async def scenario() -> list[int]:
        protocol, transport = connect(Edge(LIMITS), ServerState())
        request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 900 + b"\r\n\r\n"
        for _ in range(3):
            protocol.data_received(request)
            await asyncio.sleep(0.01)
        protocol.data_received(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 5000)
        return statuses(transport)

    assert run(scenario) == [200, 200, 200, 431]


def test_a_pipelined_head_over_the_cap_ends_the_connection_after_the_answer() -> None:
    async def scenario() -> tuple[list[int], bool]:
        protocol, transport = connect(Edge(LIMITS), ServerState())
        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        protocol.data_received(request + b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 5000)
        await asyncio.sleep(0.01)
        return statuses(transport), transport.closed

    assert run(scenario) == ([200], True)


def test_an_idle_connection_gets_408_at_the_deadline_and_a_slow_one_too() -> None:
    async def scenario() -> tuple[list[int], list[int], int]:
        edge = Edge(LIMITS)
        state = ServerState()
        _, idle = connect(edge, state)
        slow, slow_transport = connect(edge, state, fd=11)
        for byte in b"GET / HTTP/1.1\r\n":
            slow.data_received(bytes([byte]))
            await asyncio.sleep(0.02)
        return statuses(idle), statuses(slow_transport), edge.handshakes

    assert run(scenario) == ([408], [408], 0)


def test_a_full_process_serves_probes_only_and_refuses_beyond_its_slots() -> None:
    async def scenario() -> tuple[list[int], list[int], list[int], list[int]]:
        edge = Edge(LIMITS)
        state = ServerState()
        connect(edge, state, fd=10)
        connect(edge, state, fd=11)  # the cap (2) is reached
        probe, probe_transport = connect(edge, state, fd=12)
        probe.data_received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        other, other_transport = connect(edge, state, fd=13)
        other.data_received(b"GET /v3/token HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.01)
        late: list[int] = []
        for fd in range(14, 22):  # the probe slots taken (idle) then a refusal at accept
            _, transport = connect(edge, state, fd=fd)
            late = statuses(transport)
        return statuses(probe_transport), statuses(other_transport), late, [edge.probes]

    probe, other, late, probes = run(scenario)
    assert probe == [200] and other == [503] and late == [503] and probes == [8]
