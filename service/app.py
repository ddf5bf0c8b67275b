"""Wiring: the ASGI application, its routes and the resources its lifespan owns."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from . import closes
from .auth import ClientAuthenticator
from .classify import UpstreamFailure
from .closes import Close
from .logs import get_logger
from .metrics import Metrics, Outcome
from .protocol import ProtocolViolation, parse_stream_params
from .registry import SessionRegistry
from .session import Session
from .settings import Settings
from .upstream import open_session

log = get_logger("voxgate.app")


class Gateway:
    """What the routes share: settings, metrics, the session registry."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.auth = ClientAuthenticator(settings.client_keys)
        self.registry = SessionRegistry()
        for key in settings.upstream_keys:
            self.metrics.register_key(key.alias)

    async def drain(self) -> None:
        await self.registry.drain(self.settings.drain_timeout, self.settings.terminate_timeout)

    # ------------------------------------------------------------------ /v3/ws

    async def websocket(self, websocket: WebSocket) -> None:
        requested_at = asyncio.get_running_loop().time()
        if self.registry.draining:
            await _refuse(websocket, closes.DRAINING)
            return
        try:
            client_name = self.auth.authenticate(websocket.headers, websocket.query_params)
            params = parse_stream_params(websocket.query_params.multi_items())
        except ProtocolViolation as violation:
            self.metrics.client_rejections.labels(violation.violation.value).inc()
            log.info("client_refused", reason=violation.reason, code=violation.code)
            await _refuse(websocket, closes.for_violation(violation))
            return
        await websocket.accept()
        key = self.settings.upstream_keys[0]
        bound = log.bind(client=client_name, key=key.alias)
        try:
            upstream = await open_session(
                self.settings.upstream_url,
                key,
                params,
                connect_timeout=self.settings.connect_timeout,
                begin_timeout=self.settings.begin_timeout,
                api_version=websocket.headers.get("assemblyai-version"),
            )
        except UpstreamFailure as failure:
            self.metrics.upstream_failure(key.alias, failure)
            self.metrics.sessions_ended.labels(Outcome.UPSTREAM_ERROR).inc()
            bound.warning(
                "upstream_refused",
                failure=failure.failure,
                code=failure.code,
                http=failure.http,
                detail=failure.detail,
            )
            await _refuse(websocket, closes.for_connect_failure(failure))
            return
        self.metrics.upstream_connect_seconds.labels(key.alias).observe(upstream.connect_seconds)
        session = Session(
            client=websocket,
            upstream=upstream,
            params=params,
            key_alias=key.alias,
            client_name=client_name,
            settings=self.settings,
            metrics=self.metrics,
        )
        self.metrics.upstream_begin_seconds.labels(key.alias).observe(
            session.opened_at - requested_at
        )
        self.metrics.sessions_started.inc()
        self.metrics.sessions_active.inc()
        self.registry.add(session)
        session.log.info("session_started", params=dict(params.forward))
        try:
            await session.run()
        finally:
            self.registry.discard(session)
            self.metrics.sessions_active.dec()

    # ------------------------------------------------------------------ HTTP

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        if self.registry.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ready", "sessions": len(self.registry)})

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _refuse(websocket: WebSocket, close: Close) -> None:
    """Accept only to say why: an Error frame, then the close (as AssemblyAI does)."""
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        if websocket.client_state.name == "CONNECTING":
            await websocket.accept()
        await websocket.send_text(close.error_frame())
        await websocket.close(close.code, close.reason)


def create_app(settings: Settings, metrics: Metrics | None = None) -> Starlette:
    gateway = Gateway(settings, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info(
            "gateway_started",
            upstream=settings.upstream_url,
            keys=[k.alias for k in settings.upstream_keys],
            clients=[k.name for k in settings.client_keys],
        )
        yield
        await gateway.drain()

    app = Starlette(
        routes=[
            WebSocketRoute("/v3/ws", gateway.websocket),
            Route("/healthz", gateway.health),
            Route("/readyz", gateway.ready),
            Route("/metrics", gateway.metrics_endpoint),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app
