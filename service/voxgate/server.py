"""Running the gateway under uvicorn, with a drain on SIGTERM.

uvicorn on its own closes every WebSocket with 1012 the moment it shuts down, which
would cut off the final transcripts of running sessions. This server instead, on
the first SIGTERM/SIGINT: stops accepting connections, lets running sessions end by
themselves for ``VOXGATE_DRAIN_TIMEOUT``, then ends each cleanly (Terminate
upstream, relay the final turns and Termination, close 1012) and only then exits.
A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
import socket
import sys
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from voxgate.app import Gateway, create_app
from voxgate.edge.descriptors import raise_descriptor_limit
from voxgate.edge.http import Edge
from voxgate.edge.http import protocol_factory as http_protocol_factory
from voxgate.edge.limits import (
    PROBE_LISTENER_CONNECTIONS,
    PROBE_TIMEOUT,
    EdgeLimits,
    Refusal,
    connection_cap,
)
from voxgate.edge.tls import server_context
from voxgate.logs import get_logger
from voxgate.protocol import MAX_MESSAGE_BYTES, Violation
from voxgate.settings import Settings
from voxgate.shutdown import graceful_shutdown_seconds
from voxgate.ws.server import protocol_factory

#: The connection refuses larger messages itself (1009); below it the gateway's own
#: check answers with an Error frame first.
WS_MAX_SIZE = 8 * MAX_MESSAGE_BYTES
#: WebSocket pings find a vanished client: one silent for a whole interval after a
#: ping is dropped (the default of websockets and uvicorn).
WS_PING_INTERVAL = 20.0
#: Client messages queued before the gateway stops reading that client (the relay
#: takes them one by one, so this is only slack for bursts).
WS_MAX_QUEUE = 16
#: How long the client has to answer the gateway's close frame (below the session's
#: own clean-up deadline).
WS_CLOSE_TIMEOUT = 1.0
#: The one WebSocket path served.
WS_PATH = "/v3/ws"

log = get_logger("voxgate.server")


def best_loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


class DrainingServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        gateway: Gateway,
        probes: tuple[socket.socket, Edge] | None = None,
    ) -> None:
        super().__init__(config)
        self.gateway = gateway
        self._drain_requested = False
        self._drain_task: asyncio.Task[None] | None = None
        # The probe listener (VOXGATE_PROBE_PORT): its own edge and connection set,
        # so connections on the main port cannot fill it; open through the drain.
        self._probes = probes
        self._probe_server: asyncio.base_events.Server | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self._probes is None or self.should_exit:
            return
        sock, edge = self._probes
        config, state, app_state = self.config, ServerState(), self.lifespan.state
        make = http_protocol_factory(edge)

        def create(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return make(config=config, server_state=state, app_state=app_state, _loop=_loop)

        loop = asyncio.get_running_loop()
        self._probe_server = await loop.create_server(create, sock=sock, backlog=128)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._probe_server is not None:
            self._probe_server.close()
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_requested:
            self.should_exit = True
            self.force_exit = True
            return
        self._drain_requested = True

    async def on_tick(self, counter: int) -> bool:
        if self._drain_requested and self._drain_task is None:
            for server in getattr(self, "servers", []):
                server.close()  # stop accepting; open connections go on
            self._drain_task = asyncio.create_task(self._drain())
        result: bool = await super().on_tick(counter)
        return result

    async def _drain(self) -> None:
        try:
            await self.gateway.drain()
        finally:
            # What the stop timeout leaves (uvicorn reads it when it shuts down).
            self.config.timeout_graceful_shutdown = self.gateway.graceful_seconds()  # type: ignore[assignment]
            self.should_exit = True


def _soft_fd_limit() -> int:
    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1_048_576 if fd_limit == resource.RLIM_INFINITY else fd_limit


def build_probe_edge(gateway: Gateway, settings: Settings, fd_limit: int | None = None) -> Edge:
    """The probe listener's edge: its own small connection cap, a 1 s head deadline,
    and GET /healthz, /readyz, /metrics only (anything else: 404)."""
    limits = EdgeLimits.build(
        max_head_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        handshake_timeout=PROBE_TIMEOUT,
        max_connections=PROBE_LISTENER_CONNECTIONS,
        max_handshakes=PROBE_LISTENER_CONNECTIONS,
        fd_limit=fd_limit if fd_limit is not None else _soft_fd_limit(),
        max_body_bytes=settings.max_body_bytes,
    )
    counters = {r: gateway.metrics.edge_refusals.labels(r.value) for r in Refusal}
    return Edge(limits, on_refused=lambda reason: counters[reason].inc(), probe_listener=True)


def build_edge(gateway: Gateway, settings: Settings, fd_limit: int | None = None) -> Edge:
    """The edge limits (docs/limits.md) with their metrics; ``fd_limit`` defaults to
    the soft descriptor limit in force."""
    if fd_limit is None:
        fd_limit = _soft_fd_limit()
    limits = EdgeLimits.build(
        max_head_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        handshake_timeout=settings.handshake_timeout,
        max_connections=settings.max_connections,
        max_handshakes=settings.max_handshakes,
        fd_limit=fd_limit,
        max_body_bytes=settings.max_body_bytes,
    )
    metrics = gateway.metrics
    counters = {reason: metrics.edge_refusals.labels(reason.value) for reason in Refusal}
    edge = Edge(limits, on_refused=lambda reason: counters[reason].inc())
    metrics.edge_connections.set_function(lambda: edge.open_connections)
    metrics.edge_handshakes.set_function(lambda: edge.handshakes)
    metrics.edge_max_connections.set(limits.max_connections)
    metrics.open_files_limit.set(fd_limit)
    return edge


def uvicorn_config(app: Any, settings: Settings, edge: Edge | None = None) -> uvicorn.Config:
    """uvicorn serves HTTP through the edge's protocol (``voxgate.edge``: head and
    connection limits); its WebSocket upgrades go to the gateway's own lean
    WebSocket (``voxgate.ws``), not through ASGI (see docs/performance.md)."""
    gateway: Gateway = app.state.gateway
    if edge is None:
        edge = build_edge(gateway, settings)
    websocket = protocol_factory(
        gateway.websocket,
        path=WS_PATH,
        max_size=WS_MAX_SIZE,
        max_queue=WS_MAX_QUEUE,
        ping_interval=WS_PING_INTERVAL,
        close_timeout=WS_CLOSE_TIMEOUT,
        on_refused=lambda status: gateway.metrics.client_rejections.labels(
            Violation.BAD_HANDSHAKE.value
        ).inc(),
        message_timeout=settings.ws_message_timeout,
        max_fragments=settings.ws_max_fragments,
        on_limit=lambda limit: gateway.metrics.ws_limits.labels("client", limit).inc(),
    )
    tls: dict[str, Any] = {}
    if settings.tls_cert is not None and settings.tls_key is not None:
        # Loaded here, so a bad pair fails at start with TlsError naming the variables.
        context = server_context(settings.tls_cert, settings.tls_key)
        tls = {"ssl_certfile": settings.tls_cert, "ssl_context_factory": lambda *_: context}
    return uvicorn.Config(
        app,
        loop=best_loop(),
        **tls,
        http=http_protocol_factory(edge),  # type: ignore[arg-type]  # called like uvicorn's
        ws=websocket,  # type: ignore[arg-type]  # uvicorn calls it like its own classes
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=math.ceil(graceful_shutdown_seconds(settings)),
    )


def build_server(
    settings: Settings, fd_limit: int | None = None, probe_socket: socket.socket | None = None
) -> DrainingServer:
    app = create_app(settings)
    gateway: Gateway = app.state.gateway
    edge = build_edge(gateway, settings, fd_limit)
    probes = None
    if probe_socket is not None:
        probes = (probe_socket, build_probe_edge(gateway, settings, fd_limit))
    return DrainingServer(uvicorn_config(app, settings, edge), gateway, probes)


def run_gateway(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT, then drain. Prints one line when listening."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    fds = raise_descriptor_limit()
    sock = bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    probe_socket = None
    if settings.probe_port is not None:
        probe_socket = bind(settings.host, settings.probe_port)
        log.info("probe_listener", host=host, port=probe_socket.getsockname()[1])
    server = build_server(settings, fds.soft, probe_socket)
    log.info(
        "descriptor_limit",
        soft_before=fds.soft_before,
        soft=fds.soft,
        hard=fds.hard,
        max_connections=connection_cap(settings.max_connections, fds.soft),
    )
    scheme = "wss" if settings.tls else "ws"
    print(f"voxgate gateway listening on {scheme}://{host}:{port}", flush=True)
    server.run(sockets=[sock])
