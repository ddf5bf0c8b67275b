"""The admin API of a gateway the tests started (with VOXGATE_ADMIN_KEY=ADMIN_KEY)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from voxgate.bench.procs import Server

from tests.support.gateway import ADMIN_KEY


def admin(gw: Server, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """``method path`` with the admin key: (HTTP status, the JSON answer)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        gw.http_url + path,
        data=data,
        method=method,
        headers={"Authorization": ADMIN_KEY, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
