"""The one place that decides which close code and words a client gets.

Every close the gateway itself originates goes through here. The client first
gets an AssemblyAI-shaped ``Error`` frame with the full text, then the close frame
with the same code and the text cut to 123 bytes (as AssemblyAI does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from voxgate.keys.pool import Unavailable
from voxgate.protocol import CloseCode, ProtocolViolation, truncate_reason
from voxgate.upstream.failures import FailureClass, UpstreamFailure


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    text: str

    @property
    def reason(self) -> str:
        return truncate_reason(self.text)

    def error_frame(self) -> str:
        return json.dumps({"type": "Error", "error_code": self.code, "error": self.text})


def for_violation(violation: ProtocolViolation) -> Close:
    return Close(violation.code, violation.reason)


#: What a client is told when no upstream session could be opened, by class.
_CONNECT_FAILURES: dict[FailureClass, tuple[int, str]] = {
    FailureClass.PAYMENT_REQUIRED: (
        CloseCode.POLICY,
        "Upstream payment required: the AssemblyAI account behind this gateway needs "
        "billing (HTTP 402 / account not upgraded). The operator must add a payment method.",
    ),
    FailureClass.UNAUTHORIZED: (
        CloseCode.POLICY,
        "Upstream unauthorized: AssemblyAI refused the gateway's key. The operator must "
        "check VOXGATE_UPSTREAM_KEYS.",
    ),
    FailureClass.RATE_LIMITED: (
        CloseCode.TOO_MANY_SESSIONS,
        "Upstream rate limited: too many new sessions for the AssemblyAI account. "
        "Retry after a backoff.",
    ),
    FailureClass.TRANSIENT: (
        CloseCode.TRY_AGAIN_LATER,
        "Upstream unavailable: AssemblyAI could not be reached or did not answer in time. "
        "Retry after a backoff.",
    ),
    FailureClass.EXPIRED: (CloseCode.SESSION_EXPIRED, "Upstream session expired"),
}


def for_connect_failure(failure: UpstreamFailure) -> Close:
    """The close for a session that never got upstream's Begin."""
    if failure.failure is FailureClass.CLIENT_FAULT:
        # Upstream refused what the client asked for: pass its words on.
        code = failure.code if not failure.http else CloseCode.INVALID_MESSAGE
        return Close(code, failure.detail or "Upstream refused the session parameters")
    code, text = _CONNECT_FAILURES.get(failure.failure, _CONNECT_FAILURES[FailureClass.TRANSIENT])
    return Close(code, text)


def for_upstream_close(code: int, reason: str) -> Close:
    """Relay upstream's own close (code 1006 cannot be sent, so it becomes 1011)."""
    if code in (CloseCode.ABNORMAL, 1005, 1015) or not 1000 <= code <= 4999:
        return Close(CloseCode.INTERNAL, reason or "Upstream connection lost")
    return Close(code, reason or f"Upstream closed the session ({code})")


_UNAVAILABLE: dict[Unavailable, tuple[int, str]] = {
    Unavailable.PAYMENT_REQUIRED: (
        CloseCode.POLICY,
        "Upstream payment required: every AssemblyAI key of this gateway needs billing "
        "(402). The operator must add a payment method in the AssemblyAI dashboard; "
        "voxgate puts the keys back by itself a minute or two later.",
    ),
    Unavailable.UNAUTHORIZED: _CONNECT_FAILURES[FailureClass.UNAUTHORIZED],
    Unavailable.RATE_LIMITED: (
        CloseCode.TOO_MANY_SESSIONS,
        "Upstream rate limited: every AssemblyAI key is at its new-sessions-per-minute "
        "limit or cooling down. Retry after a backoff.",
    ),
    Unavailable.AT_CAPACITY: (
        CloseCode.TRY_AGAIN_LATER,
        "Gateway at capacity: every AssemblyAI key is at its concurrent-session cap. "
        "Retry after a backoff.",
    ),
    Unavailable.UNREACHABLE: _CONNECT_FAILURES[FailureClass.TRANSIENT],
    Unavailable.HELD_OUT: (
        CloseCode.POLICY,
        "Upstream budget exhausted: every AssemblyAI key of this gateway has spent its "
        "budget or was retired by the operator (GET /admin/keys).",
    ),
}


def for_unavailable(reason: Unavailable) -> Close:
    """The close for a session no key of the pool could serve."""
    code, text = _UNAVAILABLE[reason]
    return Close(code, text)


def for_no_upstream(cause: Unavailable | UpstreamFailure) -> Close:
    """The close for a session that got no upstream: no usable key, or upstream's failure."""
    if isinstance(cause, Unavailable):
        return for_unavailable(cause)
    return for_connect_failure(cause)


DRAINING = Close(
    CloseCode.SERVICE_RESTART,
    "Service restart: the gateway is shutting down; reconnect to continue",
)
UPSTREAM_SILENT = Close(
    CloseCode.TRY_AGAIN_LATER, "Upstream did not end the session in time after Terminate"
)
UPSTREAM_STUCK = Close(CloseCode.TRY_AGAIN_LATER, "Upstream stopped taking audio")
INTERNAL = Close(CloseCode.INTERNAL, "Internal gateway error")
UPSTREAM_TOO_BIG = Close(
    CloseCode.INTERNAL,
    "Upstream sent a message larger than this gateway relays (VOXGATE_UPSTREAM_MAX_MESSAGE_BYTES)",
)


def idle(seconds: float) -> Close:
    """A session ended for want of audio (AssemblyAI's inactivity close: 3006, in the
    words of its "Session idle for too long")."""
    return Close(
        CloseCode.INVALID_MESSAGE,
        f"Session idle for too long: no audio nor message for {seconds:g} s",
    )


def no_audio(seconds: float) -> Close:
    """A session ended for want of audio while the client kept sending text messages
    (KeepAlive does not hold a paid upstream session forever)."""
    return Close(
        CloseCode.INVALID_MESSAGE,
        f"Session idle for too long: no audio for {seconds:g} s (VOXGATE_NO_AUDIO_TIMEOUT)",
    )


SESSION_CAP = Close(
    CloseCode.SESSION_EXPIRED,
    "Session Expired: Maximum session duration exceeded (the temporary token's "
    "max_session_duration_seconds)",
)
