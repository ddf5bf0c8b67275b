"""AssemblyAI's rules as the simulator models them: pure, and the simulator's own.

Written from ``../shared/reference/assemblyai-v3-2026-11.md`` (rows named in the
comments as "ref B sample_rate" etc.), never imported from the gateway: a simulator
that checked input with the gateway's code could never show where the gateway is
stricter than AssemblyAI. ``tests/unit/test_sandbox_rules.py`` holds the import ban.

Where the reference marks a fact as inferred ([inf]) or silent, the choice made here
is said next to it, so a later correction knows where to go.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any


class Close(IntEnum):
    """The close codes AssemblyAI uses (ref E)."""

    NORMAL = 1000
    ABNORMAL = 1006  # never sent: the connection is cut
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL = 1011
    TRY_AGAIN_LATER = 1013
    SERVER_ERROR = 3005
    INVALID_MESSAGE = 3006
    AUDIO_VIOLATION = 3007
    SESSION_EXPIRED = 3008
    TOO_MANY_SESSIONS = 3009
    LEGACY_NOT_AUTHORIZED = 4001
    LEGACY_INSUFFICIENT_FUNDS = 4002
    LEGACY_PAID_ONLY = 4003
    LEGACY_TOO_MANY_STREAMS = 4102


class Refusal(Exception):
    """AssemblyAI would answer with ``Error`` {code, reason} and close with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


#: RFC 6455 caps a close reason at 123 bytes; the whole text goes in the Error frame.
MAX_CLOSE_REASON_BYTES = 123


def close_reason(reason: str) -> str:
    raw = reason.encode()
    if len(raw) <= MAX_CLOSE_REASON_BYTES:
        return reason
    return raw[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")


# ---------------------------------------------------------------------- limits

#: ref C "At most 128 KB per message, else 1009".
MAX_MESSAGE_BYTES = 128 * 1024
#: ref C "Binary audio, 50-1000 ms per message, else 3007" (PCM only: the size of
#: compressed audio does not tell its duration, and the reference has no rule for it).
CHUNK_MS_RANGE = (50.0, 1000.0)
#: ref C "No faster than real time": AssemblyAI tolerated about 310 s of look-ahead
#: (ISSUE ViDove: "Received 314.9 sec. audio in 1.31 sec").
PACE_LOOKAHEAD_SECONDS = 310.0
#: ref E 3008: a session lasts at most 3 hours.
MAX_SESSION_SECONDS = 10_800
#: ref F: /v3/token's ranges.
TOKEN_EXPIRES_RANGE = (1, 600)
TOKEN_SESSION_RANGE = (60, 10_800)

# ---------------------------------------------------------------------- parameters

#: ref B encoding: bytes per sample of the PCM encodings; None: compressed.
ENCODINGS: dict[str, int | None] = {
    "pcm_s16le": 2,
    "pcm_mulaw": 1,
    "opus": None,
    "ogg_opus": None,
    "aac": None,
}
#: ref B sample_rate: "any integer 8000-96000" (required for PCM, ignored otherwise).
SAMPLE_RATE_RANGE = (8000, 96_000)
#: ref B speech_model: the nine of today. An unknown model is refused [inf: the server
#: is pydantic-based and its SDK types the field as an enum].
UNIVERSAL_STREAMING_MODELS = frozenset(
    {"universal-streaming-english", "universal-streaming-multilingual", "whisper-rt"}
)
#: The Universal-3 Pro family: one formatted final per turn, format_turns ignored,
#: partials only at pauses, end_of_turn_confidence 0 then 1 (ref G "U3 ... semantics").
U3_PRO_MODELS = frozenset(
    {"u3-rt-pro", "u3-rt-pro-beta-1", "universal-3-5-pro", "universal-3-6", "universal-3-6-pro",
     "u3-pro"}
)  # fmt: skip
SPEECH_MODELS = UNIVERSAL_STREAMING_MODELS | U3_PRO_MODELS
#: ref B speech_model: "optional, default universal-3-6-pro" (WEB universal-3-pro).
DEFAULT_SPEECH_MODEL = "universal-3-6-pro"
#: ref B mode.
MODES = frozenset({"min_latency", "balanced", "max_accuracy"})
DEFAULT_MODE = "balanced"  # [inf] the docs name no default
#: ref A AssemblyAI-Version: "defaults to the latest". The newest the reference saw
#: echoed in Begin.configuration.api_version.
LATEST_API_VERSION = "2026-09-01"
#: ref B min_turn_silence: "server clamps to 50-10000" (at connect and on update).
MIN_TURN_SILENCE_CLAMP = (50, 10_000)
DEFAULT_MIN_TURN_SILENCE_MS = 400
DEFAULT_MAX_TURN_SILENCE_MS = 1280
#: ref B speaker_labels_revision_interval_ms: refused outside 0-86 400 000, a non-zero
#: value clamped to 120 000-300 000.
REVISION_INTERVAL_RANGE = (0, 86_400_000)
REVISION_INTERVAL_CLAMP = (120_000, 300_000)

_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
#: Booleans, with pydantic's lax spellings (ref B "Lenient scalar spellings" [inf]).
BOOL_PARAMS = frozenset(
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
        "voice_focus",
        "customer_support_audio_capture",
        "_customer_support_audio_capture",
    }
)
#: Integers with the ranges the reference gives (a value like ``400.0`` is an integer
#: to pydantic's lax mode [inf]); None: no documented bound.
INT_PARAMS: dict[str, tuple[int, int] | None] = {
    "sample_rate": SAMPLE_RATE_RANGE,
    "min_turn_silence": None,  # clamped, never refused
    "min_end_of_turn_silence_when_confident": None,  # deprecated alias, clamped
    "max_turn_silence": None,
    "inactivity_timeout": (5, 3600),
    "max_speakers": (1, 10),
    "speaker_labels_revision_interval_ms": REVISION_INTERVAL_RANGE,
    "interruption_delay": (0, 1000),
    "previous_context_n_turns": (0, 100),
    "turn_left_pad_ms": None,
    "max_turn_duration": None,
}
FLOAT_PARAMS: dict[str, tuple[float, float]] = {
    "end_of_turn_confidence_threshold": (0.0, 1.0),
    "vad_threshold": (0.0, 1.0),
    "voice_focus_threshold": (0.0, 1.0),
    "noise_suppression_threshold": (0.0, 1.0),
}
#: JSON arrays of strings: name -> (most items, most characters per item or 0).
LIST_PARAMS: dict[str, tuple[int, int]] = {
    "keyterms_prompt": (100, 50),
    "language_codes": (10, 0),
}
#: Free text with a documented length.
TEXT_PARAMS: dict[str, int] = {"prompt": 1750, "agent_context": 1750}
#: Parameters that still work but are deprecated: a ``Warning`` after ``Begin`` [inf:
#: the reference names the Warning message, not when it is sent].
DEPRECATED_PARAMS: dict[str, str] = {
    "end_of_turn_confidence_threshold": "use min_turn_silence and max_turn_silence",
    "min_end_of_turn_silence_when_confident": "use min_turn_silence",
    "language_code": "use language_codes",
    "noise_suppression_model": "use voice_focus",
    "noise_suppression_threshold": "use voice_focus_threshold",
}
#: Warning codes the simulator uses (AssemblyAI's own values are not documented).
WARNING_DEPRECATED = 1
WARNING_CLAMPED = 2


def _bad(name: str, why: str) -> Refusal:
    return Refusal(Close.INVALID_MESSAGE, f"Invalid parameter {name}: {why}")


def parse_bool(name: str, value: str) -> bool:
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise _bad(name, f"expected a boolean, got {value[:40]!r}")


def parse_int(name: str, value: str) -> int:
    """An integer, or a number with no fraction (``400.0``) as pydantic's lax mode."""
    text = value.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        real = float(text)
    except ValueError:
        raise _bad(name, f"expected an integer, got {value[:40]!r}") from None
    if not math.isfinite(real) or real != int(real):
        raise _bad(name, f"expected an integer, got {value[:40]!r}")
    return int(real)


def parse_float(name: str, value: str) -> float:
    try:
        real = float(value.strip())
    except ValueError:
        raise _bad(name, f"expected a number, got {value[:40]!r}") from None
    if not math.isfinite(real):
        raise _bad(name, f"expected a number, got {value[:40]!r}")
    return real


def clamp(value: float, bounds: tuple[float, float]) -> float:
    return min(max(value, bounds[0]), bounds[1])


def parse_string_list(name: str, value: str, *, comma_form: bool = False) -> tuple[str, ...]:
    """A JSON array of strings; with ``comma_form`` also ``a,b`` (ref B redact_pii_policies)."""
    text = value.strip()
    if comma_form and not text.startswith("["):
        return tuple(item.strip() for item in text.split(",") if item.strip())
    try:
        items = loads_shallow(text)
    except ValueError:
        raise _bad(name, "expected a JSON array of strings") from None
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise _bad(name, "expected a JSON array of strings")
    return tuple(items)


@dataclass(frozen=True, slots=True)
class Notice:
    """A ``Warning`` to send after ``Begin``."""

    code: int
    text: str

    def message(self) -> dict[str, Any]:
        return {"type": "Warning", "warning_code": self.code, "warning": self.text}


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """What one session runs with, from its query parameters (and its version header)."""

    encoding: str = "pcm_s16le"
    sample_rate: int | None = None
    speech_model: str = DEFAULT_SPEECH_MODEL
    mode: str = DEFAULT_MODE
    api_version: str = LATEST_API_VERSION
    format_turns: bool = False
    min_turn_silence_ms: float = DEFAULT_MIN_TURN_SILENCE_MS
    max_turn_silence_ms: float = DEFAULT_MAX_TURN_SILENCE_MS
    inactivity_timeout: float | None = None
    speaker_labels: bool = False
    max_speakers: int = 10
    revision_interval_ms: int = 0
    language_detection: bool = False
    language_codes: tuple[str, ...] = ()
    llm_gateway: Mapping[str, Any] | None = None
    session_heartbeat: bool = False
    acknowledge_silence: bool = False
    redact_pii: bool = False
    filter_profanity: bool = False
    domain: str | None = None
    voice_focus: bool = False
    notices: tuple[Notice, ...] = field(default=())

    @property
    def u3_pro(self) -> bool:
        return self.speech_model in U3_PRO_MODELS

    @property
    def bytes_per_ms(self) -> float | None:
        """Bytes of one millisecond of audio, None for compressed encodings."""
        width = ENCODINGS[self.encoding]
        if width is None or self.sample_rate is None:
            return None
        return width * self.sample_rate / 1000.0

    def begin_configuration(self) -> dict[str, Any]:
        """``Begin.configuration`` (ref D Begin; field set from PY SessionConfiguration)."""
        return {
            "model": self.speech_model,
            "mode": self.mode,
            "api_version": self.api_version,
            "speaker_labels": self.speaker_labels,
            "redact_pii": self.redact_pii,
            "filter_profanity": self.filter_profanity,
            "domain": self.domain,
            "voice_focus": self.voice_focus,
        }


def parse_connection(
    pairs: Iterable[tuple[str, str]], api_version: str | None = None
) -> SessionConfig:
    """The session a connection request asks for, or :class:`Refusal` (3006).

    Unknown parameters are ignored (ref B "Unknown or misspelled parameters"); a
    parameter given twice keeps its last value [inf: a typical query parser]; ``token``
    is the credential, not a setting.
    """
    values: dict[str, str] = {}
    for name, value in pairs:
        if name != "token":
            values.pop(name, None)
            values[name] = value
    notices: list[Notice] = []
    for name, value in values.items():
        _check(name, value)
        if name in DEPRECATED_PARAMS:
            notices.append(
                Notice(WARNING_DEPRECATED, f"{name} is deprecated: {DEPRECATED_PARAMS[name]}")
            )
    encoding = values.get("encoding", "pcm_s16le").strip()
    if encoding not in ENCODINGS:
        known = ", ".join(ENCODINGS)
        raise _bad("encoding", f"{encoding[:40]!r} is not one of {known}")
    sample_rate = None
    if "sample_rate" in values:
        sample_rate = parse_int("sample_rate", values["sample_rate"])
    elif ENCODINGS[encoding] is not None:
        raise _bad("sample_rate", f"required for encoding {encoding}")
    model = values.get("speech_model", DEFAULT_SPEECH_MODEL).strip()
    if model not in SPEECH_MODELS:
        raise _bad("speech_model", f"{model[:40]!r} is not a streaming model")
    mode = values.get("mode", DEFAULT_MODE).strip()
    if mode not in MODES:
        raise _bad("mode", f"{mode[:40]!r} is not one of {', '.join(sorted(MODES))}")

    def flag(name: str) -> bool:
        return name in values and parse_bool(name, values[name])

    low_raw = values.get("min_turn_silence", values.get("min_end_of_turn_silence_when_confident"))
    low = float(DEFAULT_MIN_TURN_SILENCE_MS)
    if low_raw is not None:
        asked = parse_int("min_turn_silence", low_raw)
        low = clamp(asked, MIN_TURN_SILENCE_CLAMP)
        if low != asked:
            notices.append(_clamped("min_turn_silence", asked, low))
    high = float(DEFAULT_MAX_TURN_SILENCE_MS)
    if "max_turn_silence" in values:
        high = max(0.0, float(parse_int("max_turn_silence", values["max_turn_silence"])))
    interval = 0
    if "speaker_labels_revision_interval_ms" in values:
        interval = parse_int("speaker_labels_revision_interval_ms",
                             values["speaker_labels_revision_interval_ms"])  # fmt: skip
        if interval:
            interval = int(clamp(interval, REVISION_INTERVAL_CLAMP))
    inactivity = values.get("inactivity_timeout")
    codes = values.get("language_codes")
    llm = values.get("llm_gateway")
    domain = values.get("domain")
    return SessionConfig(
        encoding=encoding,
        sample_rate=sample_rate,
        speech_model=model,
        mode=mode,
        api_version=(api_version or "").strip() or LATEST_API_VERSION,
        format_turns=flag("format_turns"),
        min_turn_silence_ms=low,
        max_turn_silence_ms=max(high, low),
        inactivity_timeout=float(parse_int("inactivity_timeout", inactivity))
        if inactivity is not None
        else None,
        speaker_labels=flag("speaker_labels"),
        max_speakers=parse_int("max_speakers", values["max_speakers"])
        if "max_speakers" in values
        else 10,
        revision_interval_ms=interval,
        language_detection=flag("language_detection"),
        language_codes=parse_string_list("language_codes", codes) if codes is not None else (),
        llm_gateway=_json_object("llm_gateway", llm) if llm is not None else None,
        session_heartbeat=flag("session_heartbeat"),
        acknowledge_silence=flag("acknowledge_silence"),
        redact_pii=flag("redact_pii"),
        filter_profanity=flag("filter_profanity"),
        domain=domain[:100] if domain is not None else None,
        voice_focus=flag("voice_focus"),
        notices=tuple(notices),
    )


def _clamped(name: str, asked: float, used: float) -> Notice:
    return Notice(WARNING_CLAMPED, f"{name} {asked:g} is outside the allowed range, using {used:g}")


def _json_object(name: str, value: str) -> dict[str, Any]:
    try:
        parsed = loads_shallow(value)
    except ValueError:
        raise _bad(name, "expected a JSON object") from None
    if not isinstance(parsed, dict):
        raise _bad(name, "expected a JSON object")
    return parsed


def _check(name: str, value: str) -> None:
    """Type and documented range of one known parameter; unknown ones pass."""
    if name in BOOL_PARAMS:
        parse_bool(name, value)
    elif name in INT_PARAMS:
        number = parse_int(name, value)
        bounds = INT_PARAMS[name]
        if bounds is not None and not bounds[0] <= number <= bounds[1]:
            raise _bad(name, f"{number} is outside {bounds[0]}-{bounds[1]}")
        if bounds is None and number < 0:
            raise _bad(name, f"{number} is negative")
    elif name in FLOAT_PARAMS:
        real = parse_float(name, value)
        low, high = FLOAT_PARAMS[name]
        if not low <= real <= high:
            raise _bad(name, f"{value[:40]} is outside {low:g}-{high:g}")
    elif name in LIST_PARAMS:
        items = parse_string_list(name, value)
        most, chars = LIST_PARAMS[name]
        if len(items) > most:
            raise _bad(name, f"more than {most} items")
        if chars and any(len(i) > chars for i in items):
            raise _bad(name, f"an item is longer than {chars} characters")
    elif name == "redact_pii_policies":
        parse_string_list(name, value, comma_form=True)
    elif name in TEXT_PARAMS and len(value) > TEXT_PARAMS[name]:
        raise _bad(name, f"longer than {TEXT_PARAMS[name]} characters")


# ---------------------------------------------------------------------- client messages

#: ref C: the client's message types; anything else is 3006.
CLIENT_MESSAGE_TYPES = frozenset({"Terminate", "ForceEndpoint", "KeepAlive", "UpdateConfiguration"})
#: Nesting a client message may have (the simulator's own bound on the parser).
MAX_JSON_DEPTH = 64


def loads_shallow(text: str) -> Any:
    """``json.loads`` for text from a peer: ValueError when it nests deeper than
    MAX_JSON_DEPTH (the parser would otherwise recurse until Python's own limit)."""
    if _depth_exceeds(text, MAX_JSON_DEPTH):
        raise ValueError("nested too deeply")
    return json.loads(text)


def parse_client_message(text: str) -> dict[str, Any]:
    """A client text message; 1009 over 128 KB; 3006 for bad JSON, a non-object or an
    unknown type."""
    size = len(text.encode())
    if size > MAX_MESSAGE_BYTES:
        raise Refusal(
            Close.TOO_BIG, f"Message too big: {size} bytes, the limit is {MAX_MESSAGE_BYTES}"
        )
    if _depth_exceeds(text, MAX_JSON_DEPTH):
        raise Refusal(Close.INVALID_MESSAGE, "Invalid Message: nested too deeply")
    try:
        message = json.loads(text)
    except ValueError:
        raise Refusal(Close.INVALID_MESSAGE, "Invalid Message: not valid JSON") from None
    if not isinstance(message, dict):
        raise Refusal(Close.INVALID_MESSAGE, "Invalid Message: not a JSON object")
    kind = message.get("type")
    if kind not in CLIENT_MESSAGE_TYPES:
        raise Refusal(Close.INVALID_MESSAGE, f"Invalid Message Type: {str(kind)[:40]}")
    return message


def _depth_exceeds(text: str, limit: int) -> bool:
    """Whether brackets nest deeper than ``limit`` (strings skipped), before json runs."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def apply_update(
    config: SessionConfig, fields: Mapping[str, Any]
) -> tuple[SessionConfig, list[Notice]]:
    """``UpdateConfiguration``: known turn settings change, out-of-range values are
    clamped (ref C "UpdateConfiguration with an out-of-range known field": AssemblyAI
    clamps, the session goes on), values of the wrong type and unknown fields are
    ignored [inf]. Never a refusal."""
    notices: list[Notice] = []
    changes: dict[str, Any] = {}
    low = fields.get("min_turn_silence", fields.get("min_end_of_turn_silence_when_confident"))
    if low is not None and _is_number(low):
        used = clamp(float(low), MIN_TURN_SILENCE_CLAMP)
        if used != float(low):
            notices.append(_clamped("min_turn_silence", float(low), used))
        changes["min_turn_silence_ms"] = used
    high = fields.get("max_turn_silence")
    if high is not None and _is_number(high):
        changes["max_turn_silence_ms"] = max(0.0, float(high))
    for name in ("format_turns", "session_heartbeat", "acknowledge_silence", "filter_profanity"):
        if isinstance(fields.get(name), bool):
            changes[name] = fields[name]
    if isinstance(fields.get("mode"), str) and fields["mode"] in MODES:
        changes["mode"] = fields["mode"]
    updated = replace(config, **changes)
    if updated.max_turn_silence_ms < updated.min_turn_silence_ms:
        updated = replace(updated, max_turn_silence_ms=updated.min_turn_silence_ms)
    return updated, notices


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------------- audio


def audio_ms(nbytes: int, config: SessionConfig) -> float | None:
    """Milliseconds in one binary message, checked; None for compressed audio.

    1009 over 128 KB (ref C); 3007 for a PCM message outside 50-1000 ms, in
    AssemblyAI's words (ref C: "Input duration violation: ... Expected between 50 and
    1000 ms"). A PCM message that is not a whole number of samples is taken at its
    length: the reference has no rule for it.
    """
    if nbytes > MAX_MESSAGE_BYTES:
        raise Refusal(
            Close.TOO_BIG, f"Message too big: {nbytes} bytes, the limit is {MAX_MESSAGE_BYTES}"
        )
    per_ms = config.bytes_per_ms
    if per_ms is None:
        return None
    millis = nbytes / per_ms
    if not CHUNK_MS_RANGE[0] <= millis <= CHUNK_MS_RANGE[1]:
        raise Refusal(
            Close.AUDIO_VIOLATION,
            f"Input duration violation: {millis:.0f} ms. Expected between "
            f"{CHUNK_MS_RANGE[0]:.0f} and {CHUNK_MS_RANGE[1]:.0f} ms",
        )
    return millis


class Pace:
    """AssemblyAI's rate rule: audio may run ahead of the wall clock by at most
    ``lookahead_seconds`` (ref C), counted from the first audio message."""

    __slots__ = ("_lookahead", "_sent", "_start")

    def __init__(self, lookahead_seconds: float = PACE_LOOKAHEAD_SECONDS) -> None:
        self._lookahead = lookahead_seconds
        self._start: float | None = None
        self._sent = 0.0

    @property
    def audio_seconds(self) -> float:
        return self._sent

    def feed(self, seconds: float, now: float) -> None:
        if self._start is None:
            self._start = now
        self._sent += seconds
        elapsed = now - self._start
        if self._sent - elapsed > self._lookahead + 1e-6:
            raise Refusal(
                Close.AUDIO_VIOLATION,
                "Audio Transmission Rate Exceeded: Received "
                f"{self._sent:.1f} sec. audio in {elapsed:.2f} sec",
            )
