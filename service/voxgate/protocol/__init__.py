"""The AssemblyAI Universal Streaming (v3) wire protocol, as pure logic (no I/O).

Both the gateway and the upstream simulator validate what a client sends with
these functions, so the two enforce exactly the same rules. Each rule failure is
a :class:`ProtocolViolation` carrying the close code AssemblyAI sends for it and a
``Violation`` label (a closed enum, safe as a metric label value).

See ``../shared/PROTOCOL.md`` for the protocol itself.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

#: AssemblyAI refuses a message over 128 KB with close 1009.
MAX_MESSAGE_BYTES = 128 * 1024
#: A binary frame must hold 50-1000 ms of audio (else close 3007).
MIN_CHUNK_MS = 50.0
MAX_CHUNK_MS = 1000.0
#: Sample rates we accept for PCM encodings (telephony to studio).
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000
#: How far ahead of real time a client may run before 3007 "too fast". A client
#: that stalled on the network may catch up in one burst; this bounds that burst.
DEFAULT_PACE_BURST_SECONDS = 2.0
#: A close reason is capped at 123 bytes by RFC 6455.
MAX_CLOSE_REASON_BYTES = 123
#: Bounds on what a connection request may carry.
MAX_QUERY_PARAMS = 64
MAX_PARAM_VALUE_CHARS = 8192


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


# --------------------------------------------------------------------------- params


class Encoding(StrEnum):
    PCM_S16LE = "pcm_s16le"
    PCM_MULAW = "pcm_mulaw"
    OPUS = "opus"
    OGG_OPUS = "ogg_opus"
    AAC = "aac"


#: Bytes per sample for the encodings whose duration follows from their size.
BYTES_PER_SAMPLE: dict[Encoding, int] = {Encoding.PCM_S16LE: 2, Encoding.PCM_MULAW: 1}

_BOOLS = {"true": True, "false": False}
_BOOL_PARAMS = frozenset(
    {
        "format_turns",
        "speaker_labels",
        "filter_profanity",
        "language_detection",
        "redact_pii",
        "continuous_partials",
        "include_partial_turns",
        "session_heartbeat",
        "acknowledge_silence",
    }
)
#: name -> (lowest, highest) inclusive
_INT_PARAMS: dict[str, tuple[int, int]] = {
    "min_turn_silence": (0, 60_000),
    "max_turn_silence": (0, 60_000),
    "min_end_of_turn_silence_when_confident": (0, 60_000),
    "inactivity_timeout": (5, 3600),
    "max_speakers": (1, 32),
    "speaker_labels_revision_interval_ms": (0, 3_600_000),
    "interruption_delay": (0, 60_000),
    "turn_left_pad_ms": (0, 60_000),
}
_FLOAT_PARAMS: dict[str, tuple[float, float]] = {
    "end_of_turn_confidence_threshold": (0.0, 1.0),
    "vad_threshold": (0.0, 1.0),
    "voice_focus_threshold": (0.0, 1.0),
    "noise_suppression_threshold": (0.0, 1.0),
}
_STRING_LIST_PARAMS = frozenset({"keyterms_prompt", "language_codes", "redact_pii_policies"})
#: Parameters the gateway consumes itself and never forwards upstream.
GATEWAY_PARAM_PREFIX = "voxgate_"
TAG_PARAM = "voxgate_tag"
#: A tag becomes part of a Redis channel name: a short, plain identifier.
TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
AUTH_PARAMS = frozenset({"token"})


def _bad(name: str, why: str) -> ProtocolViolation:
    return ProtocolViolation(
        CloseCode.INVALID_MESSAGE, Violation.BAD_PARAMETER, f"Invalid query parameter {name}: {why}"
    )


def parse_bool(name: str, value: str) -> bool:
    """``true``/``false`` in any case (Python's ``True``/``False`` included)."""
    parsed = _BOOLS.get(value.lower())
    if parsed is None:
        raise _bad(name, f"expected true or false, got {value[:40]!r}")
    return parsed


def _check_param(name: str, value: str) -> None:
    if len(value) > MAX_PARAM_VALUE_CHARS:
        raise _bad(name, f"longer than {MAX_PARAM_VALUE_CHARS} characters")
    if name in _BOOL_PARAMS:
        parse_bool(name, value)
    elif name in _INT_PARAMS:
        low, high = _INT_PARAMS[name]
        try:
            number = int(value)
        except ValueError:
            raise _bad(name, f"expected an integer, got {value[:40]!r}") from None
        if not low <= number <= high:
            raise _bad(name, f"{number} is outside {low}-{high}")
    elif name in _FLOAT_PARAMS:
        low_f, high_f = _FLOAT_PARAMS[name]
        try:
            real = float(value)
        except ValueError:
            raise _bad(name, f"expected a number, got {value[:40]!r}") from None
        if not (math.isfinite(real) and low_f <= real <= high_f):
            raise _bad(name, f"{value[:40]} is outside {low_f}-{high_f}")
    elif name in _STRING_LIST_PARAMS:
        try:
            items = json.loads(value)
        except ValueError:
            raise _bad(name, "expected a JSON array of strings") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise _bad(name, "expected a JSON array of strings")


def _check_gateway_param(name: str, value: str) -> None:
    if name != TAG_PARAM:
        raise _bad(name[:40], f"unknown gateway parameter (known: {TAG_PARAM})")
    if not TAG_PATTERN.match(value):
        raise ProtocolViolation(
            CloseCode.INVALID_MESSAGE,
            Violation.BAD_TAG,
            f"Invalid query parameter {TAG_PARAM}: 1-64 of A-Z a-z 0-9 _ . : - "
            "starting with a letter or digit",
        )


@dataclass(frozen=True, slots=True)
class StreamParams:
    """What a client asked for on connect, validated.

    ``forward`` holds every parameter to send upstream, in the client's order and
    spelling (unknown ones included): the gateway's own ``voxgate_*`` parameters
    and the auth ``token`` are left out.
    """

    encoding: Encoding
    sample_rate: int | None
    forward: tuple[tuple[str, str], ...]
    gateway: Mapping[str, str]

    @property
    def bytes_per_second(self) -> int | None:
        """Bytes of one second of audio, or None when the size does not tell."""
        width = BYTES_PER_SAMPLE.get(self.encoding)
        if width is None or self.sample_rate is None:
            return None
        return width * self.sample_rate

    @property
    def tag(self) -> str | None:
        return self.gateway.get(TAG_PARAM)

    def format_turns(self) -> bool:
        for name, value in self.forward:
            if name == "format_turns":
                return parse_bool(name, value)
        return False


def parse_stream_params(query: Iterable[tuple[str, str]]) -> StreamParams:
    """Validate the connection's query parameters (raise :class:`ProtocolViolation`)."""
    pairs = list(query)
    if len(pairs) > MAX_QUERY_PARAMS:
        raise _bad("(all)", f"more than {MAX_QUERY_PARAMS} parameters")
    forward: list[tuple[str, str]] = []
    gateway: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in pairs:
        if name in seen:
            raise _bad(name, "given more than once")
        seen.add(name)
        if name in AUTH_PARAMS:
            continue
        if name.startswith(GATEWAY_PARAM_PREFIX):
            _check_gateway_param(name, value)
            gateway[name] = value
            continue
        _check_param(name, value)
        forward.append((name, value))
    values = dict(forward)
    raw_encoding = values.get("encoding", Encoding.PCM_S16LE.value)
    try:
        encoding = Encoding(raw_encoding)
    except ValueError:
        allowed = ", ".join(e.value for e in Encoding)
        raise _bad("encoding", f"{raw_encoding[:40]!r} is not one of {allowed}") from None
    sample_rate: int | None = None
    raw_rate = values.get("sample_rate")
    if raw_rate is not None:
        try:
            sample_rate = int(raw_rate)
        except ValueError:
            raise _bad("sample_rate", f"expected an integer, got {raw_rate[:40]!r}") from None
        if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
            raise _bad(
                "sample_rate", f"{sample_rate} is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE}"
            )
    elif encoding in BYTES_PER_SAMPLE:
        raise _bad("sample_rate", f"required for encoding {encoding.value}")
    return StreamParams(encoding, sample_rate, tuple(forward), gateway)


# --------------------------------------------------------------------------- audio


def check_audio_frame(nbytes: int, params: StreamParams) -> float:
    """Validate one binary frame; return the seconds of audio it holds (0.0 if unknown)."""
    if nbytes > MAX_MESSAGE_BYTES:
        raise ProtocolViolation(
            CloseCode.TOO_BIG,
            Violation.FRAME_TOO_BIG,
            f"Message too big: {nbytes} bytes, the limit is {MAX_MESSAGE_BYTES}",
        )
    per_second = params.bytes_per_second
    if per_second is None:
        return 0.0
    width = BYTES_PER_SAMPLE[params.encoding]
    if nbytes % width:
        raise ProtocolViolation(
            CloseCode.AUDIO_VIOLATION,
            Violation.FRAME_MISALIGNED,
            f"Invalid audio chunk: {nbytes} bytes is not a whole number of "
            f"{params.encoding.value} samples",
        )
    seconds = nbytes / per_second
    millis = seconds * 1000.0
    if not MIN_CHUNK_MS <= millis <= MAX_CHUNK_MS:
        raise ProtocolViolation(
            CloseCode.AUDIO_VIOLATION,
            Violation.FRAME_DURATION,
            f"Invalid audio chunk duration: {millis:.0f} ms, "
            f"must be between {MIN_CHUNK_MS:.0f} and {MAX_CHUNK_MS:.0f} ms",
        )
    return seconds


#: Float slack so that a client exactly at the burst limit is not refused.
_PACE_EPSILON = 1e-6


class PaceGuard:
    """Refuses audio sent faster than real time, beyond a bounded burst.

    Audio credit grows with wall time from the first frame; a client may be ahead
    of the wall clock by at most ``burst_seconds``.
    """

    __slots__ = ("_burst", "_sent", "_start")

    def __init__(self, burst_seconds: float = DEFAULT_PACE_BURST_SECONDS) -> None:
        self._burst = burst_seconds
        self._start: float | None = None
        self._sent = 0.0

    @property
    def audio_seconds(self) -> float:
        return self._sent

    def feed(self, seconds: float, now: float) -> None:
        if self._start is None:
            self._start = now
        self._sent += seconds
        ahead = self._sent - (now - self._start)
        if ahead > self._burst + _PACE_EPSILON:
            raise ProtocolViolation(
                CloseCode.AUDIO_VIOLATION,
                Violation.TOO_FAST,
                f"Audio Transmission Rate Exceeded: {ahead:.1f} s ahead of real time",
            )


# --------------------------------------------------------------------------- control


class ControlType(StrEnum):
    TERMINATE = "Terminate"
    FORCE_ENDPOINT = "ForceEndpoint"
    KEEP_ALIVE = "KeepAlive"
    UPDATE_CONFIGURATION = "UpdateConfiguration"


def parse_control(text: str) -> tuple[ControlType, dict[str, Any]]:
    """Parse a client text frame; raise 3006 for bad JSON or an unknown type."""
    try:
        message = json.loads(text)
    except ValueError:
        raise ProtocolViolation(
            CloseCode.INVALID_MESSAGE, Violation.BAD_JSON, "Invalid Message: not valid JSON"
        ) from None
    if not isinstance(message, dict):
        raise ProtocolViolation(
            CloseCode.INVALID_MESSAGE, Violation.BAD_JSON, "Invalid Message: not a JSON object"
        )
    raw_type = message.get("type")
    try:
        kind = ControlType(str(raw_type))
    except ValueError:
        shown = str(raw_type)[:40]
        raise ProtocolViolation(
            CloseCode.INVALID_MESSAGE,
            Violation.UNKNOWN_MESSAGE,
            f"Invalid Message Type: {shown}",
        ) from None
    if kind is ControlType.UPDATE_CONFIGURATION:
        for name, value in message.items():
            if name == "type" or value is None:
                continue
            _check_param(name, _as_param_text(value))
    return kind, message


def _as_param_text(value: Any) -> str:
    """Render a JSON value the way it would arrive as a query parameter."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)
