"""The operator's view of the key pool: ``GET /admin/keys`` (``voxgate keys`` reads it)."""

from __future__ import annotations

import hmac
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from voxgate.keys.pool import KeyPool, KeyRecord, KeyState
from voxgate.upstream.connector import Connector

REMEDY = {
    KeyState.PAYMENT_REQUIRED: (
        "This key's AssemblyAI account needs billing: add a payment method in the "
        "AssemblyAI dashboard (Billing), wait a minute or two; voxgate probes the key "
        "and puts it back in rotation by itself."
    ),
    KeyState.UNAUTHORIZED: (
        "AssemblyAI refuses this key: check it in VOXGATE_UPSTREAM_KEYS against the "
        "dashboard (revoked or mistyped)."
    ),
    KeyState.COOLING: "Rate limited or unreachable: voxgate retries after the backoff.",
    KeyState.BUDGET_EXHAUSTED: (
        "This key spent its budget for the period (PUT /admin/keys/<alias>): it comes back "
        "when the period turns or the budget is raised."
    ),
    KeyState.RETIRED: (
        "Retired by the operator (DELETE /admin/keys/<alias>); PUT it to bring it back."
    ),
}


def describe(record: KeyRecord, now_mono: float) -> dict[str, Any]:
    """A key as the operator sees it: alias, never the secret; times as unix seconds."""
    offset = time.time() - now_mono
    probe = record.next_probe_at
    return {
        "key": record.alias,
        "state": record.state.value,
        "reason": record.reason,
        "since": round(record.since + offset, 3) if record.since else None,
        "active_sessions": record.active,
        "max_sessions": record.max_sessions,
        "sessions_total": record.sessions_total,
        "payment_required_total": record.payment_required_total,
        "next_probe_at": round(probe + offset, 3) if probe is not None else None,
        "remedy": REMEDY.get(record.state),
    }


class AdminRoutes:
    def __init__(self, admin_key: str | None, pool: KeyPool, connector: Connector) -> None:
        self._admin_key = admin_key
        self._pool = pool
        self._connector = connector

    def _allowed(self, request: Request) -> bool:
        if not self._admin_key:
            return False
        presented = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(presented.encode(), self._admin_key.encode())

    def refusal(self, request: Request) -> Response | None:
        """The answer to a request without the admin key (None: it has it)."""
        if not self._admin_key:
            return JSONResponse({"error": "admin disabled: set VOXGATE_ADMIN_KEY"}, 404)
        if not self._allowed(request):
            return JSONResponse({"error": "unauthorized"}, 401)
        return None

    async def keys(self, request: Request) -> Response:
        if (refused := self.refusal(request)) is not None:
            return refused
        if request.query_params.get("probe") in ("1", "true"):
            for record in self._pool.records():
                failure = await self._connector.probe(record.key)
                if failure is None:
                    self._connector.succeeded(record.alias)
                else:
                    self._connector.failed(record.alias, failure)
        self._connector.expire_cooling()  # a cool-down that is over is not shown
        now = time.monotonic()
        return JSONResponse({"keys": [describe(r, now) for r in self._pool.records()]})
