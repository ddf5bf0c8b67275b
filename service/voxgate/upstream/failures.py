"""What an upstream failure means: pure classification, no I/O.

Every way AssemblyAI (or the network) can refuse or end a session lands in one
:class:`FailureClass`. The key pool, the metrics and the close code a client gets
all follow from it. See PROTOCOL.md, "Close codes" and "The 402".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from voxgate.protocol.jsonguard import loads_bounded


class FailureClass(StrEnum):
    PAYMENT_REQUIRED = "payment_required"  # the key's account needs billing
    UNAUTHORIZED = "unauthorized"  # the key itself is refused
    RATE_LIMITED = "rate_limited"  # too many sessions: back off, then retry
    TRANSIENT = "transient"  # dropped, internal, unreachable: retry with backoff
    CLIENT_FAULT = "client_fault"  # the client's audio or messages: never the key's fault
    EXPIRED = "expired"  # the session reached its time cap
    NORMAL = "normal"  # not a failure


_PAYMENT_WORDS = re.compile(
    r"balance|billing|funds|payment|paid|upgrade|credit card|account", re.IGNORECASE
)
_RATE_WORDS = re.compile(r"too many|concurrent|rate limit|per minute", re.IGNORECASE)

_CLOSE_CLASSES: dict[int, FailureClass] = {
    1000: FailureClass.NORMAL,
    1001: FailureClass.TRANSIENT,
    1006: FailureClass.TRANSIENT,
    1011: FailureClass.TRANSIENT,
    1012: FailureClass.TRANSIENT,
    1013: FailureClass.TRANSIENT,
    3005: FailureClass.TRANSIENT,
    1009: FailureClass.CLIENT_FAULT,
    3006: FailureClass.CLIENT_FAULT,
    3007: FailureClass.CLIENT_FAULT,
    4029: FailureClass.CLIENT_FAULT,  # legacy twin of 3007
    4031: FailureClass.CLIENT_FAULT,  # legacy twin of 3006 (idle)
    3008: FailureClass.EXPIRED,
    3009: FailureClass.RATE_LIMITED,
    4102: FailureClass.RATE_LIMITED,
    4001: FailureClass.UNAUTHORIZED,
    4002: FailureClass.PAYMENT_REQUIRED,
    4003: FailureClass.PAYMENT_REQUIRED,
}


@dataclass(frozen=True, slots=True)
class UpstreamFailure(Exception):
    """An upstream refusal or loss, classified.

    ``code`` is the WebSocket close code, or the HTTP status when ``http`` is true.
    ``detail`` is upstream's own words (never a key).
    """

    failure: FailureClass
    code: int
    detail: str
    http: bool = False

    def __str__(self) -> str:
        where = "HTTP" if self.http else "close"
        return f"{self.failure.value} ({where} {self.code}): {self.detail}"


def classify_close(code: int, reason: str = "") -> FailureClass:
    """Classify a close code with its reason (1008's meaning is in its words)."""
    if code == 1008:
        if _RATE_WORDS.search(reason):
            return FailureClass.RATE_LIMITED
        if _PAYMENT_WORDS.search(reason):
            return FailureClass.PAYMENT_REQUIRED
        return FailureClass.UNAUTHORIZED
    return _CLOSE_CLASSES.get(code, FailureClass.TRANSIENT)


def classify_http(status: int, body: bytes | str = b"") -> FailureClass:
    """Classify an HTTP answer to the upgrade or to ``/v3/token``."""
    if status == 402 or _body_status(body) == 402:
        return FailureClass.PAYMENT_REQUIRED
    if status in (401, 403):
        return FailureClass.UNAUTHORIZED
    if status == 429:
        return FailureClass.RATE_LIMITED
    if 400 <= status < 500 and status not in (404, 408):
        return FailureClass.CLIENT_FAULT
    return FailureClass.TRANSIENT


def http_failure(status: int, body: bytes | str) -> UpstreamFailure:
    return UpstreamFailure(classify_http(status, body), status, _body_error(body), http=True)


def close_failure(code: int, reason: str) -> UpstreamFailure:
    return UpstreamFailure(classify_close(code, reason), code, reason[:200])


def _decode(body: bytes | str) -> object:
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    try:
        return loads_bounded(text[:4096])
    except ValueError:
        return text[:200]


def _body_status(body: bytes | str) -> int | None:
    parsed = _decode(body)
    if isinstance(parsed, dict):
        status = parsed.get("status")
        return status if isinstance(status, int) else None
    return None


def _body_error(body: bytes | str) -> str:
    parsed = _decode(body)
    if isinstance(parsed, dict):
        return str(parsed.get("error", ""))[:200]
    return str(parsed)[:200]
