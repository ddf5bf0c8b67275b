"""What an upstream failure means: pure classification, no I/O.

Every way AssemblyAI (or the network) can refuse or end a session lands in one
:class:`FailureClass`. The key pool, the metrics and the close code a client gets
all follow from it. See PROTOCOL.md, "Close codes" and "The 402".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from voxgate.protocol.jsonguard import loads_bounded


class FailureClass(StrEnum):
    PAYMENT_REQUIRED = "payment_required"  # the key's account needs billing
    UNAUTHORIZED = "unauthorized"  # the key itself is refused
    RATE_LIMITED = "rate_limited"  # too many sessions: back off, then retry
    TRANSIENT = "transient"  # dropped, internal, unreachable: retry with backoff
    #: A refusal for a reason not known here (e.g. a sporadic 1008 "Incorrect
    #: padding"): the key cools down briefly, another key is tried, and a running
    #: session is not replaced (the reason may be the session's own).
    UNEXPLAINED = "unexplained"
    CLIENT_FAULT = "client_fault"  # the client's audio or messages: never the key's fault
    EXPIRED = "expired"  # the session reached its time cap
    NORMAL = "normal"  # not a failure


# The words of AssemblyAI's close reasons (PROTOCOL.md; AssemblyAI's "Common session
# errors and closures": every 1008 reads "Unauthorized Connection: <reason>", so that
# prefix says nothing by itself). Checked in this order: a rate limit, then the
# client's own request, then the account, then the key.
_RATE_WORDS = re.compile(r"too many|concurren|rate limit|per minute", re.IGNORECASE)
_REQUEST_WORDS = re.compile(
    r"invalid (?:query )?param|parameter|not (?:available|supported) (?:for|on|with)",
    re.IGNORECASE,
)
_PAYMENT_WORDS = re.compile(
    r"balance|billing|funds|payment|credit card|upgrade|paid|free tier|free account",
    re.IGNORECASE,
)
_KEY_WORDS = re.compile(
    r"api key|invalid key|authori[sz]ation header|not authori[sz]ed|revoked|suspended|"
    r"disabled|deactivated|(?:invalid|expired)[\w ]{0,20}token",
    re.IGNORECASE,
)

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
    4000: FailureClass.CLIENT_FAULT,  # legacy: bad sample rate
    4001: FailureClass.UNAUTHORIZED,
    4002: FailureClass.PAYMENT_REQUIRED,
    4003: FailureClass.PAYMENT_REQUIRED,  # unless the reason names what the client asked
    4008: FailureClass.EXPIRED,
    4032: FailureClass.CLIENT_FAULT,  # legacy: audio too short
    4033: FailureClass.CLIENT_FAULT,  # legacy: audio too long
    4034: FailureClass.CLIENT_FAULT,  # legacy: audio too small to transcode
    4101: FailureClass.CLIENT_FAULT,  # legacy: bad schema
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


def classify_close(code: int, reason: str = "", asked: Iterable[str] = ()) -> FailureClass:
    """Classify a close code with its reason. ``asked`` names the query parameters the
    client's request carried: a 1008 or 4003 whose reason names one of them (a paid-only
    feature, a bad value) is the client's request refused, not the key's fault.

    1008 means whatever its words say: a rate limit, the request, the account's
    balance (payment required), the key itself; a reason not known here is
    ``UNEXPLAINED`` (the key cools down briefly, it is not disabled)."""
    if code in (1008, 4003):
        if code == 1008 and _RATE_WORDS.search(reason):
            return FailureClass.RATE_LIMITED
        if _REQUEST_WORDS.search(reason) or _names_any(reason, asked):
            return FailureClass.CLIENT_FAULT
        if _PAYMENT_WORDS.search(reason) or code == 4003:
            return FailureClass.PAYMENT_REQUIRED
        if _KEY_WORDS.search(reason):
            return FailureClass.UNAUTHORIZED
        return FailureClass.UNEXPLAINED
    return _CLOSE_CLASSES.get(code, FailureClass.TRANSIENT)


def _names_any(reason: str, names: Iterable[str]) -> bool:
    """Whether ``reason`` names one of ``names`` as a word. Only names in AssemblyAI's
    multi-word style count (``speaker_labels``): a client can not make upstream's
    "Insufficient account balance" its own by sending a parameter ``balance``."""
    words = set(re.findall(r"[a-z0-9_]+", reason.lower()))
    return any("_" in name and name.lower() in words for name in names)


def is_paid_only(failure: UpstreamFailure) -> bool:
    """A close 4003 read as payment required: AssemblyAI's paid-only-feature refusal
    ("This feature is paid-only and requires you to add a credit card..."), which names
    no parameter. It may be the account's (streaming itself needs billing) or the
    request's (a paid feature asked for): the connector confirms which before the key
    is disabled (``Connector._confirm_paid_only``)."""
    return (
        not failure.http
        and failure.code == 4003
        and failure.failure is FailureClass.PAYMENT_REQUIRED
    )


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


def close_failure(code: int, reason: str, asked: Iterable[str] = ()) -> UpstreamFailure:
    return UpstreamFailure(classify_close(code, reason, asked), code, reason[:200])


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
