"""Wiring: the gateway's parts built from one :class:`Settings`, its routes, and the
background work its lifespan owns. No request is handled here."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import Mount, Route

from voxgate.access.admission import Gatekeeper
from voxgate.access.clientkeys import ClientAuthenticator
from voxgate.access.origins import OriginPolicy
from voxgate.access.spent import SpentTokens
from voxgate.access.tokens import TokenAuthority
from voxgate.keys.pool import KeyPool
from voxgate.keys.shared import SharedPool, instance_id
from voxgate.logs import get_logger
from voxgate.metrics.gateway import Metrics
from voxgate.relay.handler import StreamHandler
from voxgate.relay.session import WATCHDOG_INTERVAL
from voxgate.relay.sessions import SessionRegistry
from voxgate.relay.ticker import Ticker
from voxgate.routes.admin import AdminRoutes
from voxgate.routes.demo import DemoRoutes, static_files
from voxgate.routes.health import HealthRoutes
from voxgate.routes.tenants import TenantRoutes
from voxgate.routes.tokens import TokenMinter, TokenRoutes
from voxgate.settings import Settings
from voxgate.shutdown import (
    EXIT_MARGIN,
    GRACEFUL_MARGIN,
    LIFESPAN_MAX,
    LIFESPAN_MIN,
    stop_budget_seconds,
    stop_fitting,
    stop_plan,
    stop_warning,
)
from voxgate.tenants.service import Tenants
from voxgate.transcripts.publisher import Publisher
from voxgate.upstream.connector import Connector

log = get_logger("voxgate.app")


class Gateway:
    """One gateway process's parts, built once from the settings."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        #: How the stop on SIGTERM is spent (voxgate.shutdown).
        self.stop = stop_plan(settings)
        # When the stop began (loop time); None while serving.
        self._stop_started: float | None = None
        self.registry = SessionRegistry()
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
                settings.redis,
                self.pool,
                self.metrics,
                instance=instance_id(settings.instance),
                max_sessions=settings.key_max_sessions,
                sessions_per_minute=settings.key_sessions_per_minute,
            )
            if settings.redis is not None and settings.shared_pool
            else None
        )
        self.connector = Connector(settings, self.pool, self.metrics, self.shared)
        self.publisher = (
            Publisher(
                settings.redis,
                self.metrics,
                backlog=settings.redis_backlog,
                stream_maxlen=settings.stream_maxlen,
                stream_partials=settings.stream_partials,
                instance=settings.instance,
                shards=settings.stream_shards,
            )
            if settings.redis is not None
            else None
        )
        #: Temporary tokens spent once across replicas through Redis.
        self.spent = SpentTokens(settings.redis) if settings.redis is not None else None
        auth = ClientAuthenticator(settings.client_keys)
        #: Clients managed at runtime, their limits, usage and spend (voxgate.tenants).
        self.tenants = Tenants(settings, auth, self.pool, self.metrics)
        origins = OriginPolicy(settings.allowed_origins)
        tokens = TokenAuthority(settings.token_secret)
        minter = TokenMinter(tokens, self.metrics)
        #: The ``/v3/ws`` handler (the server hands it every upgraded connection).
        self.websocket = StreamHandler(
            settings=settings,
            metrics=self.metrics,
            gatekeeper=Gatekeeper(auth, tokens, origins),
            connector=self.connector,
            registry=self.registry,
            ticker=Ticker(WATCHDOG_INTERVAL),  # every session's watchdog
            publisher=self.publisher,
            tenants=self.tenants,
            spent=self.spent,
        )
        self.health = HealthRoutes(self.registry, self.metrics, self.publisher, self.shared)
        self.tokens = TokenRoutes(auth, origins, minter)
        self.demo = DemoRoutes(settings.demo_client, origins, minter)
        self.admin = AdminRoutes(settings.admin_key, self.pool, self.connector)
        self.tenant_routes = TenantRoutes(self.admin, self.tenants)
        for key in settings.upstream_keys:
            self.metrics.register_key(key.alias)
            self.metrics.key_changed(self.pool.record(key.alias))

    async def drain(self) -> None:
        """The stop's drain and Terminate wait (voxgate.shutdown), once per process: the
        server runs it on SIGTERM, the lifespan's shutdown only if the server did not."""
        if self._stop_started is not None:
            return
        self._stop_started = asyncio.get_running_loop().time()
        await self.registry.drain(self.stop.drain, self.stop.terminate)

    def stop_seconds_left(self) -> float | None:
        """Seconds left before the declared stop timeout (less EXIT_MARGIN) runs out;
        None when none is declared or the stop has not begun."""
        if self.stop.limit is None or self._stop_started is None:
            return None
        elapsed = asyncio.get_running_loop().time() - self._stop_started
        return self.stop.limit - EXIT_MARGIN - elapsed

    def graceful_seconds(self) -> float:
        """uvicorn's graceful shutdown, once the drain is over: what the stop timeout
        leaves after the lifespan's minimum, at most GRACEFUL_MARGIN."""
        left = self.stop_seconds_left()
        if left is None:
            return self.stop.graceful
        return max(0.1, min(GRACEFUL_MARGIN, left - LIFESPAN_MIN))

    async def close(self) -> None:
        """The lifespan's shutdown: flush the transcripts and usage to Redis and leave the shared
        pool, side by side, within LIFESPAN_MAX or what the stop timeout leaves."""
        parts = (self.publisher, self.shared, self.tenants, self.spent)
        closing = [c.close() for c in parts if c is not None]
        if not closing:
            return
        left = self.stop_seconds_left()
        limit = LIFESPAN_MAX if left is None else max(0.1, min(LIFESPAN_MAX, left))
        started = time.monotonic()
        try:
            async with asyncio.timeout(limit):
                await asyncio.gather(*closing)
        except TimeoutError:
            log.warning("shutdown_cut", seconds=round(time.monotonic() - started, 3))


def create_app(settings: Settings, metrics: Metrics | None = None) -> Starlette:
    gateway = Gateway(settings, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info(
            "gateway_started",
            redis=settings.redis.describe() if settings.redis is not None else None,
            upstream=settings.upstream_url,
            keys=[k.alias for k in settings.upstream_keys],
            clients=[k.name for k in settings.client_keys],
            drain_seconds=gateway.stop.drain,
            terminate_seconds=gateway.stop.terminate,
            stop_budget_seconds=stop_budget_seconds(settings),
        )
        if (warning := stop_warning(settings)) is not None:
            log.warning("drain_exceeds_stop_timeout", problem=warning)
        elif (fitting := stop_fitting(settings)) is not None:
            log.info("drain_fitted_to_stop_timeout", detail=fitting)
        probes = asyncio.create_task(gateway.connector.run_probes(), name="key-probes")
        if gateway.publisher is not None:
            gateway.publisher.start()
        if gateway.shared is not None:
            gateway.shared.start()
        gateway.tenants.start()
        try:
            yield
            await gateway.drain()
        finally:
            probes.cancel()
            await asyncio.gather(probes, return_exceptions=True)
            await gateway.close()

    app = Starlette(
        routes=[
            Route("/healthz", gateway.health.health),
            Route("/readyz", gateway.health.ready),
            Route("/metrics", gateway.health.metrics_endpoint),
            Route("/admin/keys", gateway.admin.keys),
            *tenant_routes(gateway.tenant_routes),
            Route("/v3/token", gateway.tokens.token),
            Route("/demo/token", gateway.demo.token, methods=["POST"]),
            Mount("/demo", static_files(), name="demo"),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app


def tenant_routes(routes: TenantRoutes) -> list[Route]:
    """``/admin/clients...``, ``/admin/keys/{alias}``, ``/admin/usage``, ``/admin/audit``."""
    g = routes.guarded
    return [
        Route("/admin/clients", g(routes.list_clients)),
        Route("/admin/clients/{name}", g(routes.get_client), methods=["GET"]),
        Route("/admin/clients/{name}", g(routes.put_client), methods=["PUT"]),
        Route("/admin/clients/{name}", g(routes.delete_client), methods=["DELETE"]),
        Route("/admin/clients/{name}/keys", g(routes.add_client_key), methods=["POST"]),
        Route(
            "/admin/clients/{name}/keys/{key_id}", g(routes.delete_client_key), methods=["DELETE"]
        ),
        Route("/admin/keys/{alias}", g(routes.put_key), methods=["PUT"]),
        Route("/admin/keys/{alias}", g(routes.delete_key), methods=["DELETE"]),
        Route("/admin/usage", g(routes.usage)),
        Route("/admin/audit", g(routes.audit)),
    ]
