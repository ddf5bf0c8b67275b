"""``/healthz`` (the process serves), ``/readyz`` (it takes sessions, and how its
Redis and key pool are) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from voxgate.keys.shared import SharedPool
from voxgate.metrics.gateway import Metrics
from voxgate.relay.sessions import SessionRegistry
from voxgate.transcripts.publisher import Publisher


@dataclass(frozen=True, slots=True)
class HealthRoutes:
    registry: SessionRegistry
    metrics: Metrics
    publisher: Publisher | None
    shared: SharedPool | None

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
