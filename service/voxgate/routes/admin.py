"""The operator's view of the key pool: ``GET /admin/keys`` and ``voxgate keys``."""

from __future__ import annotations

import argparse
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from voxgate.keys.pool import KeyPool, KeyRecord, KeyState
from voxgate.upstream.connector import Connector

#: Deadline for ``voxgate keys`` to hear back from the gateway (probes take a while).
CLI_TIMEOUT = 60.0

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

    async def keys(self, request: Request) -> Response:
        if not self._admin_key:
            return JSONResponse({"error": "admin disabled: set VOXGATE_ADMIN_KEY"}, 404)
        if not self._allowed(request):
            return JSONResponse({"error": "unauthorized"}, 401)
        if request.query_params.get("probe") in ("1", "true"):
            for record in self._pool.records():
                failure = await self._connector.probe(record.key)
                if failure is None:
                    self._connector.succeeded(record.alias)
                else:
                    self._connector.failed(record.alias, failure)
        now = time.monotonic()
        return JSONResponse({"keys": [describe(r, now) for r in self._pool.records()]})


# --------------------------------------------------------------------------- CLI


def add_keys_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway's base URL")
    parser.add_argument("--admin-key", help="default: env VOXGATE_ADMIN_KEY")
    parser.add_argument("--probe", action="store_true", help="probe every key now")
    parser.add_argument("--json", action="store_true", help="print the raw JSON")


def run_keys_command(ns: argparse.Namespace) -> int:
    admin_key = ns.admin_key or os.environ.get("VOXGATE_ADMIN_KEY", "")
    url = ns.url.rstrip("/") + "/admin/keys" + ("?probe=1" if ns.probe else "")
    request = urllib.request.Request(url, headers={"Authorization": admin_key})
    try:
        with urllib.request.urlopen(request, timeout=CLI_TIMEOUT) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        print(f"voxgate keys: {url}: HTTP {exc.code} {exc.read(500).decode()}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"voxgate keys: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    if ns.json:
        print(json.dumps(body, indent=2))
        return 0
    print(render_table(body["keys"]))
    return 0


def render_table(keys: list[dict[str, Any]]) -> str:
    lines = [f"{'KEY':<20} {'STATE':<26} {'ACTIVE':>6} {'SESSIONS':>8} {'402s':>5}  REASON"]
    for key in keys:
        lines.append(
            f"{key['key']:<20} {key['state']:<26} {key['active_sessions']:>6} "
            f"{key['sessions_total']:>8} {key['payment_required_total']:>5}  {key['reason']}"
        )
    for key in keys:
        if key.get("remedy"):
            lines.append(f"\n{key['key']}: {key['remedy']}")
    return "\n".join(lines)
