"""Wiring: the ASGI application, its routes and the resources its lifespan owns."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from voxgate.access.browser import BrowserRoutes, static_files
from voxgate.access.clientkeys import ClientAuthenticator
from voxgate.keys.pool import KeyPool
from voxgate.keys.shared import SharedPool, instance_id
from voxgate.logs import get_logger
from voxgate.metrics.gateway import Metrics, Outcome
from voxgate.protocol import ProtocolViolation, parse_stream_params
from voxgate.relay import closes
from voxgate.relay.closes import Close
from voxgate.relay.session import WATCHDOG_INTERVAL, Session
from voxgate.relay.sessions import SessionRegistry
from voxgate.relay.ticker import Ticker
from voxgate.routes.admin import AdminRoutes
from voxgate.settings import Settings
from voxgate.transcripts.publisher import Publisher
from voxgate.upstream.connect import UpstreamSession
from voxgate.upstream.connector import Connector, NoUpstream
from voxgate.ws.connection import ConnectionClosed
from voxgate.ws.server import ServerWebSocket

log = get_logger("voxgate.app")


class Gateway:
    """What the routes share: settings, metrics, the session registry."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.auth = ClientAuthenticator(settings.client_keys)
        self.browser = BrowserRoutes(settings, self.auth, self.metrics)
        self.registry = SessionRegistry()
        self.ticker = Ticker(WATCHDOG_INTERVAL)  # every session's watchdog
        self.pool = KeyPool(
            settings.upstream_keys,
            max_sessions=settings.key_max_sessions,
            sessions_per_minute=settings.key_sessions_per_minute,
            clock=time.monotonic,
            first_probe_delay=settings.probe_delay,
            probe_interval=settings.probe_interval,
        )
        self.shared = (
            SharedPool(
                settings.redis_url,
                self.pool,
                self.metrics,
                instance=instance_id(settings.instance),
                max_sessions=settings.key_max_sessions,
                sessions_per_minute=settings.key_sessions_per_minute,
            )
            if settings.redis_url and settings.shared_pool
            else None
        )
        self.connector = Connector(settings, self.pool, self.metrics, self.shared)
        self.admin = AdminRoutes(settings.admin_key, self.pool, self.connector)
        self.publisher = (
            Publisher(
                settings.redis_url,
                self.metrics,
                backlog=settings.redis_backlog,
                stream_maxlen=settings.stream_maxlen,
                stream_partials=settings.stream_partials,
                instance=settings.instance,
            )
            if settings.redis_url
            else None
        )
        for key in settings.upstream_keys:
            self.metrics.register_key(key.alias)
            self.metrics.key_changed(self.pool.record(key.alias))

    async def drain(self) -> None:
        await self.registry.drain(self.settings.drain_timeout, self.settings.terminate_timeout)

    # ------------------------------------------------------------------ /v3/ws

    async def websocket(self, websocket: ServerWebSocket) -> None:
        # Every log line of this connection (pool, publisher, session) carries its id.
        with structlog.contextvars.bound_contextvars(request_id=secrets.token_hex(8)):
            await self._websocket(websocket)

    async def _websocket(self, websocket: ServerWebSocket) -> None:
        requested_at = asyncio.get_running_loop().time()
        if self.registry.draining:
            await _refuse(websocket, closes.DRAINING)
            return
        try:
            admission = self.browser.admit(websocket.headers, websocket.query_params)
            params = parse_stream_params(websocket.query_params.multi_items())
        except ProtocolViolation as violation:
            self.metrics.client_rejections.labels(violation.violation.value).inc()
            log.info("client_refused", reason=violation.reason, code=violation.code)
            await _refuse(websocket, closes.for_violation(violation))
            return
        client_name = admission.client
        await websocket.accept()
        try:
            opened = await self.connector.open(
                params, api_version=websocket.headers.get("assemblyai-version")
            )
        except NoUpstream as refused:
            self.metrics.sessions_ended.labels(Outcome.UPSTREAM_ERROR).inc()
            log.warning("session_refused", client=client_name, reason=refused.close.text)
            await _refuse(websocket, refused.close)
            return
        alias = opened.lease.alias
        self.metrics.key_changed(self.pool.record(alias))
        self.metrics.upstream_connect_seconds.labels(alias).observe(opened.upstream.connect_seconds)
        self.metrics.upstream_begin_seconds.labels(alias).observe(
            asyncio.get_running_loop().time() - requested_at
        )
        session_id = str(opened.upstream.begin.get("id", ""))
        structlog.contextvars.bind_contextvars(session_id=session_id)
        publisher = (
            self.publisher.session(session_id, client_name, params.tag)
            if self.publisher is not None
            else None
        )
        if publisher is not None:
            publisher.started(dict(params.forward))
            publisher.message(opened.upstream.begin_text, dict(opened.upstream.begin))
        api_version = websocket.headers.get("assemblyai-version")

        held = True  # whether opened.lease is still this session's

        async def reopen() -> tuple[UpstreamSession, str]:
            """A replacement upstream after a mid-session drop (raises NoUpstream). The
            lost upstream's slot is given back first: on a key at its cap, the
            replacement takes it."""
            nonlocal opened, held
            self.connector.release(opened.lease)
            held = False
            opened = await self.connector.open(params, api_version=api_version)
            held = True
            return opened.upstream, opened.lease.alias

        session = Session(
            client=websocket,
            upstream=opened.upstream,
            params=params,
            key_alias=alias,
            client_name=client_name,
            settings=self.settings,
            metrics=self.metrics,
            on_upstream_failure=self.connector.dropped,
            publisher=publisher,
            reopen=reopen,
            max_seconds=admission.max_session_seconds,
            failovers=opened.attempts - 1,
            ticker=self.ticker,
        )
        self.metrics.sessions_started.inc()
        self.metrics.sessions_active.inc()
        self.registry.add(session)
        session.log.info("session_started", params=dict(params.forward), attempts=opened.attempts)
        try:
            await session.run()
        finally:
            self.registry.discard(session)
            self.metrics.sessions_active.dec()
            if held:
                self.connector.release(opened.lease)

    # ------------------------------------------------------------------ HTTP

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        if self.registry.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        redis = self.publisher.state if self.publisher is not None else "disabled"
        backlog = self.publisher.backlog if self.publisher is not None else 0
        return JSONResponse(
            {
                "status": "ready",
                "sessions": len(self.registry),
                "redis": redis,
                "redis_backlog": backlog,
                "pool": self.shared.mode if self.shared is not None else "local",
            }
        )

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _refuse(websocket: ServerWebSocket, close: Close) -> None:
    """Accept only to say why: an Error frame, then the close (as AssemblyAI does)."""
    with contextlib.suppress(ConnectionClosed, OSError):
        await websocket.accept()  # nothing when already accepted
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
        probes = asyncio.create_task(gateway.connector.run_probes(), name="key-probes")
        if gateway.publisher is not None:
            gateway.publisher.start()
        if gateway.shared is not None:
            gateway.shared.start()
        try:
            yield
            await gateway.drain()
        finally:
            probes.cancel()
            await asyncio.gather(probes, return_exceptions=True)
            if gateway.publisher is not None:
                await gateway.publisher.close()
            if gateway.shared is not None:
                await gateway.shared.close()

    app = Starlette(
        routes=[
            Route("/healthz", gateway.health),
            Route("/readyz", gateway.ready),
            Route("/metrics", gateway.metrics_endpoint),
            Route("/admin/keys", gateway.admin.keys),
            Route("/v3/token", gateway.browser.token),
            Route("/demo/token", gateway.browser.demo_token, methods=["POST"]),
            Mount("/demo", static_files(), name="demo"),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app
