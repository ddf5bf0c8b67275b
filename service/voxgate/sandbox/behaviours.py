"""How the simulator treats each API key: pure parsing, no I/O.

A key spec is ``key=behaviour`` items, comma-separated, for example
``good=ok,broke=402,low=1008-balance,flaky=drop-1011@2.5``. The behaviours mirror the
ways AssemblyAI answers (see PROTOCOL.md, "Close codes" and "The 402"):

========================  ================================================================
``ok``                    a normal session
``echo``                  a session that answers every audio frame at once (benchmarks)
``401`` ``402`` ``429``   that HTTP status at the WebSocket upgrade and at ``/v3/token``
``500`` ``503``
``1008-balance``          handshake, then Error + close 1008 about the account balance
``1008-concurrent``       ... close 1008 "Too many concurrent sessions" (the old rate limit)
``1008-auth``             ... close 1008 about an invalid key
``1008-padding``          ... close 1008 "Incorrect padding" (a sporadic refusal seen in the
                          wild that clears on a retry)
``4003-speaker_labels``   ... close 4003 with AssemblyAI's paid-only text (which names no
                          parameter), only when the request asks for
                          ``speaker_labels``; else ``ok``
``4001`` ``4002``         ... the legacy closes (not authorized, insufficient funds,
``4003`` ``4102``         paid-only feature, too many streams)
``3009``                  ... close 3009, too many new sessions per minute
``drop-CODE@S``           a normal session that ends with close CODE after S seconds of
                          audio (``drop-1006@S`` drops the TCP connection with no close)
``drop-CODE@Nf``          ... after N audio frames
``402-after-M``           M sessions served as ``ok`` (counted from the simulator's start or
                          the key's last change), then HTTP 402 at the upgrade and at
                          ``/v3/token``, like an account whose credit ran out
``revise@BYTES``          a normal session that also sends ``SpeechStarted`` when a turn's
                          sound begins, after each final turn an
                          ``LLMGatewayResponse`` for it, and at ``Terminate`` one
                          ``SpeakerRevision`` over every turn, its words repeated to about
                          BYTES bytes (``turn_order`` and word times on this connection's
                          own count and clock, as every upstream session's are)
``late-begin@S``          a normal session whose ``Begin`` comes S seconds (at most 60) after
                          the handshake, as from a slow AssemblyAI region; audio sent
                          meanwhile waits in the socket and is read after ``Begin``
``no-termination``        a normal session that takes ``Terminate`` and never answers it
                          (no final turns, no ``Termination``, no close)
``hang``                  the upgrade is never answered
``no-begin``              handshake, but no ``Begin`` ever comes
``junk-deep``             handshake, then instead of ``Begin`` JSON nested 100,000 deep
``junk-json``             ... text that is not JSON
``junk-array``            ... a JSON value that is not an object
``junk-binary``           ... a binary message
``junk-huge``             ... a 1.2 MB text message (over 1 MiB, the least a gateway takes)
========================  ================================================================
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum

from voxgate.sandbox.rules import Close


class Kind(StrEnum):
    OK = "ok"
    ECHO = "echo"
    HTTP = "http"  # refuse the upgrade (and /v3/token) with an HTTP status
    CLOSE = "close"  # accept the upgrade, then Error + close before Begin
    DROP = "drop"  # a normal session that fails mid-way
    QUOTA = "quota"  # ok for ``sessions`` sessions, then HTTP 402
    REVISE = "revise"  # ok, plus LLMGatewayResponse and a SpeakerRevision of ``size``
    HANG = "hang"
    NO_BEGIN = "no_begin"
    JUNK = "junk"  # accept the upgrade, send junk instead of Begin, then read and ignore
    NO_TERMINATION = "no_termination"  # a normal session deaf to Terminate


@dataclass(frozen=True, slots=True)
class Behaviour:
    kind: Kind
    code: int = 0
    reason: str = ""
    after_seconds: float = 0.0
    name: str = ""
    #: ``drop-CODE@Nf``: the frame after which the session drops (0: by seconds).
    after_frames: int = 0
    #: ``402-after-M``: sessions served before the 402s start.
    sessions: int = 0
    #: ``revise@BYTES``: about how large the final SpeakerRevision is.
    size: int = 0
    #: ``late-begin@S``: seconds between the handshake and ``Begin``.
    begin_after: float = 0.0
    #: A refusal that applies only when the request has this parameter (else ``ok``).
    when: str = ""

    @property
    def http_body(self) -> bytes:
        body: dict[str, object] = {"error": self.reason}
        if self.code == 402:
            body["status"] = 402
        return json.dumps(body).encode()

    @property
    def serves_sessions(self) -> bool:
        return self.kind in (
            Kind.OK,
            Kind.ECHO,
            Kind.DROP,
            Kind.QUOTA,
            Kind.REVISE,
            Kind.NO_TERMINATION,
        )


_HTTP: dict[int, str] = {
    401: "Invalid API key",
    402: "Account not upgraded",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}
#: AssemblyAI's paid-only refusal, word for word (the Python SDK's text for 4003): it
#: names no parameter, whatever the request asked for.
PAID_ONLY = (
    "This feature is paid-only and requires you to add a credit card. Please visit "
    "https://app.assemblyai.com/ to add a credit card to your account"
)
_CLOSES: dict[str, tuple[int, str]] = {
    "1008-balance": (
        Close.POLICY,
        "Unauthorized Connection: Insufficient account balance. Add a payment method to "
        "your account to use the streaming API",
    ),
    "1008-concurrent": (Close.POLICY, "Unauthorized Connection: Too many concurrent sessions"),
    "1008-auth": (Close.POLICY, "Unauthorized Connection: Invalid API key"),
    "1008-padding": (Close.POLICY, "Incorrect padding"),
    "4003-speaker_labels": (Close.LEGACY_PAID_ONLY, PAID_ONLY),
    "4001": (Close.LEGACY_NOT_AUTHORIZED, "Not Authorized"),
    "4002": (Close.LEGACY_INSUFFICIENT_FUNDS, "Insufficient Funds"),
    "4003": (Close.LEGACY_PAID_ONLY, PAID_ONLY),
    "4102": (4102, "Too many streams"),
    "3009": (
        Close.TOO_MANY_SESSIONS,
        "Too Many New Sessions: over the account's limit of new sessions per minute",
    ),
}
_DROP = re.compile(r"^drop-(\d{4})@(\d+(?:\.\d+)?)(f?)$")
_QUOTA = re.compile(r"^402-after-(\d{1,6})$")
_REVISE = re.compile(r"^revise@(\d{1,9})$")
_LATE_BEGIN = re.compile(r"^late-begin@(\d{1,2}(?:\.\d{1,3})?)$")
#: The latest ``Begin`` a ``late-begin@S`` key gives.
MAX_BEGIN_AFTER = 60.0
#: The largest SpeakerRevision ``revise@BYTES`` makes (the simulator's own max_size).
MAX_REVISION_BYTES = 256 * 1024 * 1024
#: The close reasons of a mid-session drop, by code.
DROP_REASONS: dict[int, str] = {
    1011: "Internal server error",
    1013: "Try again later",
    3005: "Server error",
    3008: "Session Expired: maximum session duration reached",
}

#: What a ``junk-*`` key sends instead of ``Begin``.
JUNK: dict[str, str | bytes] = {
    "junk-deep": "[" * 100_000 + "]" * 100_000,
    "junk-json": '{"type": "Begin", "id": ',
    "junk-array": '[{"type": "Begin"}]',
    "junk-binary": b"\x00\x01\x02\x03",
    "junk-huge": '{"type": "Begin", "pad": "' + "x" * 1_200_000 + '"}',
}

OK = Behaviour(Kind.OK, name="ok")
#: What a key not named in the spec gets when the spec names keys at all.
UNKNOWN_KEY = Behaviour(Kind.CLOSE, Close.POLICY, "Unauthorized Connection: Invalid API key")


def parse_behaviour(text: str) -> Behaviour:
    """One behaviour name (see the module doc); ValueError names what is wrong."""
    name = text.strip()
    if name == "ok":
        return OK
    if name == "echo":
        return Behaviour(Kind.ECHO, name=name)
    if name == "hang":
        return Behaviour(Kind.HANG, name=name)
    if name == "no-begin":
        return Behaviour(Kind.NO_BEGIN, name=name)
    if name == "no-termination":
        return Behaviour(Kind.NO_TERMINATION, name=name)
    if name in JUNK:
        return Behaviour(Kind.JUNK, name=name)
    if name.isdigit() and int(name) in _HTTP:
        return Behaviour(Kind.HTTP, int(name), _HTTP[int(name)], name=name)
    if name in _CLOSES:
        code, reason = _CLOSES[name]
        when = name.split("-", 1)[1] if code == Close.LEGACY_PAID_ONLY and "-" in name else ""
        return Behaviour(Kind.CLOSE, code, reason, name=name, when=when)
    match = _DROP.match(name)
    if match:
        code = int(match.group(1))
        if code != Close.ABNORMAL and not 1000 < code < 5000:
            raise ValueError(f"behaviour {name!r}: close code {code} is not sendable")
        reason = DROP_REASONS.get(code, f"Session ended by the simulator ({code})")
        if match.group(3):
            if "." in match.group(2):
                raise ValueError(f"behaviour {name!r}: a whole number of frames")
            frames = int(match.group(2))
            if frames < 1:
                raise ValueError(f"behaviour {name!r}: drop after at least one frame")
            return Behaviour(Kind.DROP, code, reason, name=name, after_frames=frames)
        return Behaviour(Kind.DROP, code, reason, float(match.group(2)), name=name)
    match = _QUOTA.match(name)
    if match:
        return Behaviour(Kind.QUOTA, 402, _HTTP[402], name=name, sessions=int(match.group(1)))
    match = _LATE_BEGIN.match(name)
    if match:
        after = float(match.group(1))
        if after > MAX_BEGIN_AFTER:
            raise ValueError(f"behaviour {name!r}: at most {MAX_BEGIN_AFTER:g} seconds")
        return Behaviour(Kind.OK, name=name, begin_after=after)
    match = _REVISE.match(name)
    if match:
        size = int(match.group(1))
        if size > MAX_REVISION_BYTES:
            raise ValueError(f"behaviour {name!r}: at most {MAX_REVISION_BYTES} bytes")
        return Behaviour(Kind.REVISE, name=name, size=size)
    known = ", ".join(
        [
            *("ok", "echo", "hang", "no-begin", "no-termination"),
            *JUNK,
            *map(str, _HTTP),
            *_CLOSES,
            "drop-CODE@S",
            "drop-CODE@Nf",
            "402-after-M",
            "revise@BYTES",
            "late-begin@S",
        ]
    )
    raise ValueError(f"unknown behaviour {name[:40]!r} (known: {known})")


def parse_key_spec(spec: str) -> dict[str, Behaviour]:
    """``key=behaviour,...`` -> {key: behaviour}; a bare ``key`` means ``ok``."""
    keys: dict[str, Behaviour] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        key, sep, name = item.partition("=")
        key = key.strip()
        if not key:
            raise ValueError(f"key spec item {item[:40]!r} has no key")
        if key in keys:
            raise ValueError(f"key spec names a key twice ({len(keys) + 1}th item)")
        keys[key] = parse_behaviour(name) if sep else OK
    return keys
