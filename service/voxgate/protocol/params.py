"""The connection request and the :class:`StreamParams` a session runs with (pure).

Two readings. The gateway's, :func:`gateway_params`: AssemblyAI is the authority on its
own parameters, so every one is forwarded as the client spelled it (duplicates, new
names, new values, new encodings, any sample rate) and upstream's answer reaches the
client; the gateway refuses only what protects it (more than
``GATEWAY_MAX_QUERY_PARAMS`` parameters, a value over ``GATEWAY_MAX_VALUE_CHARS``, its
own ``voxgate_*`` namespace) and reads what it needs for its pace accounting
(``encoding``, ``sample_rate``, leniently; anything it cannot read falls back to a bound
that holds for any encoding, ``MAX_BYTES_PER_SECOND``).

The strict one, :func:`parse_stream_params` / :func:`check_param`, checks types and
ranges as documented in 2025: the simulator's until it has its own checks written from
the reference (issue 16); the gateway no longer uses it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from voxgate.protocol.errors import CloseCode, ProtocolViolation, Violation

#: Sample rates we accept for PCM encodings (telephony to studio).
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000
#: Bounds on what a connection request may carry.
MAX_QUERY_PARAMS = 64
MAX_PARAM_VALUE_CHARS = 8192


class Encoding(StrEnum):
    PCM_S16LE = "pcm_s16le"
    PCM_MULAW = "pcm_mulaw"
    OPUS = "opus"
    OGG_OPUS = "ogg_opus"
    AAC = "aac"


#: Bytes per sample for the encodings whose duration follows from their size.
BYTES_PER_SAMPLE: dict[str, int] = {Encoding.PCM_S16LE: 2, Encoding.PCM_MULAW: 1}

#: The gateway's own protection (not AssemblyAI's rules, which upstream applies): the
#: SDKs send at most about 45 parameters; the request head is capped at
#: VOXGATE_MAX_HEADER_BYTES (16 KB) before this is reached (docs/limits.md).
GATEWAY_MAX_QUERY_PARAMS = 256
GATEWAY_MAX_VALUE_CHARS = 65_536
#: AssemblyAI's PCM sample rates (its reference: any integer 8000-96000). The gateway
#: paces PCM by its byte rate within these; outside, upstream answers for the rate.
PCM_RATE_RANGE = (8000, 96_000)
#: The pace bound for audio whose byte rate the gateway cannot know (compressed or new
#: encodings, a sample rate it cannot read): 96 kHz of 32-bit samples is more bytes
#: per second than any encoding AssemblyAI takes, so this never refuses real time.
MAX_BYTES_PER_SECOND = 96_000 * 4
#: Spellings of true in a lenient reading (pydantic's lax mode accepts these).
_TRUE = frozenset({"true", "1", "yes", "on", "t", "y"})

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
TAG_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
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


def check_param(name: str, value: str) -> None:
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
    if not TAG_PATTERN.fullmatch(value):  # not match(): "$" would let a final "\n" in
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

    encoding: str
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
    def pace_bytes_per_second(self) -> int:
        """The byte rate the pace rule counts by: the audio's own, else the bound."""
        return self.bytes_per_second or MAX_BYTES_PER_SECOND

    @property
    def tag(self) -> str | None:
        return self.gateway.get(TAG_PARAM)

    @property
    def speech_model(self) -> str | None:
        """The ``speech_model`` asked for (client text: bound it before using it as a label)."""
        for name, value in self.forward:
            if name == "speech_model":
                return value
        return None

    def format_turns(self) -> bool:
        """Whether formatted finals follow (the last ``format_turns`` given, read leniently)."""
        value = "false"
        for name, given in self.forward:
            if name == "format_turns":
                value = given
        return value.strip().lower() in _TRUE


def gateway_params(query: Iterable[tuple[str, str]]) -> StreamParams:
    """The gateway's reading of the connection's query (see the module's docstring):
    raise :class:`ProtocolViolation` only for its own limits and ``voxgate_*`` names."""
    pairs = list(query)
    if len(pairs) > GATEWAY_MAX_QUERY_PARAMS:
        raise _bad(
            "(all)", f"more than {GATEWAY_MAX_QUERY_PARAMS} parameters (the gateway's limit)"
        )
    forward: list[tuple[str, str]] = []
    gateway: dict[str, str] = {}
    for name, value in pairs:
        if len(value) > GATEWAY_MAX_VALUE_CHARS:
            raise _bad(
                name[:40], f"longer than {GATEWAY_MAX_VALUE_CHARS} characters (the gateway's limit)"
            )
        if name in AUTH_PARAMS:
            continue
        if name.startswith(GATEWAY_PARAM_PREFIX):
            if name in gateway:
                raise _bad(name[:40], "given more than once")
            _check_gateway_param(name, value)
            gateway[name] = value
            continue
        forward.append((name, value))
    values = dict(forward)  # the last of a repeated name, as most query parsers keep
    encoding = values.get("encoding", Encoding.PCM_S16LE.value).strip().lower()
    return StreamParams(encoding, _pcm_rate(values.get("sample_rate")), tuple(forward), gateway)


def _pcm_rate(raw: str | None) -> int | None:
    """A sample rate the gateway can pace by, else None (upstream judges the value)."""
    if raw is None:
        return None
    try:
        rate = float(raw.strip())
    except ValueError:
        return None
    low, high = PCM_RATE_RANGE
    if not (math.isfinite(rate) and rate == int(rate) and low <= rate <= high):
        return None
    return int(rate)


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
        check_param(name, value)
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
