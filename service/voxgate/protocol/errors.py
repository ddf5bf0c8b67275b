"""Close codes, the labels of what a client did wrong, and the exception that carries
both (pure). See ``../shared/PROTOCOL.md``, "Close codes"."""

from __future__ import annotations

from enum import IntEnum, StrEnum

#: A close reason is capped at 123 bytes by RFC 6455.
MAX_CLOSE_REASON_BYTES = 123


class CloseCode(IntEnum):
    """WebSocket close codes spoken on both sides (see PROTOCOL.md)."""

    NORMAL = 1000
    ABNORMAL = 1006  # never sent on the wire: "the connection dropped"
    POLICY = 1008  # unauthorized / account problem
    TOO_BIG = 1009
    INTERNAL = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    SERVER_ERROR = 3005
    INVALID_MESSAGE = 3006
    AUDIO_VIOLATION = 3007
    SESSION_EXPIRED = 3008
    TOO_MANY_SESSIONS = 3009
    LEGACY_NOT_AUTHORIZED = 4001
    LEGACY_INSUFFICIENT_FUNDS = 4002
    LEGACY_PAID_ONLY = 4003


class Violation(StrEnum):
    """Why a client's request or message was refused (a metric label)."""

    MISSING_KEY = "missing_key"
    INVALID_KEY = "invalid_key"
    BAD_PARAMETER = "bad_parameter"
    BAD_TAG = "bad_tag"
    FRAME_TOO_BIG = "frame_too_big"
    BAD_FRAME = "bad_frame"  # broke RFC 6455 framing (answered with 1002 or 1007)
    BAD_HANDSHAKE = "bad_handshake"  # an upgrade request refused with HTTP 400/404/426
    FRAME_DURATION = "frame_duration"
    FRAME_MISALIGNED = "frame_misaligned"
    TOO_FAST = "too_fast"
    BAD_JSON = "bad_json"
    MESSAGE_TOO_BIG = "message_too_big"  # a text message over VOXGATE_MAX_CONTROL_CHARS
    MESSAGE_RATE = "message_rate"  # text messages over VOXGATE_MAX_CONTROL_RATE a second
    UNKNOWN_MESSAGE = "unknown_message"
    TOKEN_MALFORMED = "token_malformed"
    TOKEN_FORGED = "token_forged"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_REUSED = "token_reused"
    TOKENS_BUSY = "tokens_busy"  # the store of used token ids is full
    TOKEN_RATE = "token_rate_limited"  # too many tokens minted by one client
    BAD_ORIGIN = "bad_origin"


class ProtocolViolation(Exception):
    """A client broke a protocol rule; the session closes with ``code``."""

    def __init__(self, code: CloseCode, violation: Violation, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.violation = violation
        self.reason = reason


def truncate_reason(reason: str) -> str:
    """Cut ``reason`` to the 123 UTF-8 bytes a close frame allows, on a character edge."""
    raw = reason.encode()
    if len(raw) <= MAX_CLOSE_REASON_BYTES:
        return reason
    return raw[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
