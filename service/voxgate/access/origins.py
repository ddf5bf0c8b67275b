"""Which browser origins may open sessions, as pure logic.

Browsers send ``Origin`` on a WebSocket upgrade (and on a POST); other clients
(SDKs, services) send none and are not concerned. With no list configured any
origin may connect: a credential is needed anyway, and voxgate uses no cookies,
so a foreign page can not ride on a user's ambient rights. The list narrows which
sites may use tokens at all. The gateway's own pages (same origin as the request's
``Host``) are always allowed, so the demo page keeps working.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": "80", "https": "443"}
_ORIGIN = re.compile(r"^https?://[^/\s?#@]+$")


def normalize_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` lowercased, default port dropped; None if not an origin."""
    origin = origin.strip().lower().rstrip("/")
    if not _ORIGIN.match(origin):
        return None
    parts = urlsplit(origin)
    return f"{parts.scheme}://{_strip_default_port(parts.scheme, parts.netloc)}"


def _strip_default_port(scheme: str, netloc: str) -> str:
    port = _DEFAULT_PORTS.get(scheme)
    if port is not None and netloc.endswith(":" + port):
        return netloc[: -len(port) - 1]
    return netloc


class OriginPolicy:
    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self._allowed = frozenset(o for o in (normalize_origin(a) for a in allowed) if o)

    @property
    def restricted(self) -> bool:
        return bool(self._allowed)

    def allows(self, origin: str | None, host: str | None) -> bool:
        """Whether a request with this ``Origin`` (None: not a browser) and ``Host`` may go on."""
        if origin is None or not self._allowed:
            return True
        normalized = normalize_origin(origin)
        if normalized is None:  # "null" (sandboxed frames, file://) or garbage
            return False
        if normalized in self._allowed:
            return True
        if host:
            scheme, _, netloc = normalized.partition("://")
            return netloc == _strip_default_port(scheme, host.strip().lower())
        return False
