"""Temporary tokens for browsers, as pure logic (no I/O).

A browser must never hold a client key, let alone an AssemblyAI key. A trusted
server (or voxgate's demo helper) mints a short-lived token with its client key
through ``GET /v3/token``; the page opens ``/v3/ws?token=...`` with it.

A token is ``vgt1.<payload>.<signature>``: the payload is compact JSON in
base64url (client name, expiry as unix seconds, session cap, a random id), the
signature HMAC-SHA256 of ``vgt1.<payload>`` with the gateway's token secret. It
carries no upstream key and nothing secret: it only says "client X may open one
session before T, of at most C seconds". A token is good for one session: the
ids of redeemed tokens are remembered until the token expires (at most
``MAX_EXPIRES_IN_SECONDS``), in a store with a hard cap.

Every refusal is a 1008 :class:`ProtocolViolation` with its own ``Violation``
label, the way the rest of the gateway refuses a client.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import json
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass

from voxgate.protocol import CloseCode, ProtocolViolation, Violation

PREFIX = "vgt1."
#: AssemblyAI's ranges for ``GET /v3/token`` (PROTOCOL.md).
MIN_EXPIRES_IN_SECONDS = 1
MAX_EXPIRES_IN_SECONDS = 600
MIN_SESSION_SECONDS = 60
MAX_SESSION_SECONDS = 10_800
DEFAULT_SESSION_SECONDS = MAX_SESSION_SECONDS
#: A token we mint is about 200 characters; anything much longer is not ours.
MAX_TOKEN_CHARS = 512
#: Redeemed token ids remembered at once. Each entry costs ~100 bytes and lives at
#: most 600 s, so this admits ~160 new token sessions a second, sustained, in ~10 MB.
#: When full, tokens are refused (1013) rather than forgetting an id: forgetting
#: would let a token be used twice.
DEFAULT_USED_CAPACITY = 100_000
#: Tokens one client may mint per minute (``GET /v3/token`` answers 429 beyond it).
DEFAULT_MINTS_PER_MINUTE = 600
_ID_BYTES = 16
_B64 = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True, slots=True)
class Grant:
    """What a valid token allows: one session for ``client``, capped at ``max_session_seconds``."""

    client: str
    token_id: str
    expires_at: float
    max_session_seconds: int


class TokenRequestError(ValueError):
    """A ``GET /v3/token`` request that must be refused with ``status``."""

    def __init__(self, status: int, violation: Violation, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.violation = violation
        self.message = message


def parse_token_request(query: Mapping[str, str]) -> tuple[int, int]:
    """``expires_in_seconds`` (required, 1-600) and ``max_session_duration_seconds``
    (optional, 60-10800, default 10800), or a 400 :class:`TokenRequestError`."""
    expires = _int_in_range(
        query, "expires_in_seconds", None, MIN_EXPIRES_IN_SECONDS, MAX_EXPIRES_IN_SECONDS
    )
    session = _int_in_range(
        query,
        "max_session_duration_seconds",
        DEFAULT_SESSION_SECONDS,
        MIN_SESSION_SECONDS,
        MAX_SESSION_SECONDS,
    )
    return expires, session


def _int_in_range(
    query: Mapping[str, str], name: str, default: int | None, low: int, high: int
) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise TokenRequestError(400, Violation.BAD_PARAMETER, f"{name} is required")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise TokenRequestError(
            400, Violation.BAD_PARAMETER, f"{name} must be an integer, got {raw[:40]!r}"
        ) from None
    if not low <= value <= high:
        raise TokenRequestError(
            400, Violation.BAD_PARAMETER, f"{name} must be between {low} and {high}, got {value}"
        )
    return value


def looks_like_token(credential: str) -> bool:
    """Whether a presented credential is one of our tokens (else it is a client key)."""
    return credential.startswith(PREFIX)


def _refuse(violation: Violation, why: str) -> ProtocolViolation:
    return ProtocolViolation(CloseCode.POLICY, violation, f"Unauthorized Connection: {why}")


def reused() -> ProtocolViolation:
    """A token already spent (on this replica, or on another as Redis says)."""
    return _refuse(Violation.TOKEN_REUSED, "temporary token already used")


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not _B64.match(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class UsedTokens:
    """Ids of redeemed tokens, each kept until its token expires; at most ``capacity``."""

    __slots__ = ("_capacity", "_heap", "_ids")

    def __init__(self, capacity: int = DEFAULT_USED_CAPACITY) -> None:
        self._capacity = capacity
        self._ids: set[str] = set()
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, token_id: str) -> bool:
        return token_id in self._ids

    def purge(self, now: float) -> None:
        """Forget ids whose tokens have expired (they can no longer be presented)."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, token_id = heapq.heappop(heap)
            self._ids.discard(token_id)

    def discard(self, token_id: str) -> None:
        """Forget ``token_id`` (its heap entry goes at its expiry, as any other)."""
        self._ids.discard(token_id)

    def add(self, token_id: str, expires_at: float, now: float) -> bool:
        """Remember ``token_id``; False when the store is full of unexpired ids."""
        self.purge(now)
        if len(self._ids) >= self._capacity:
            return False
        self._ids.add(token_id)
        heapq.heappush(self._heap, (expires_at, token_id))
        return True


class TokenAuthority:
    """Mints and redeems tokens with one secret. ``clock`` is unix time (replicas share it)."""

    def __init__(
        self,
        secret: bytes,
        *,
        clock: Callable[[], float] = time.time,
        used_capacity: int = DEFAULT_USED_CAPACITY,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("a token secret needs at least 16 bytes")
        self._secret = secret
        self._clock = clock
        self._used = UsedTokens(used_capacity)

    @property
    def used(self) -> int:
        return len(self._used)

    def _sign(self, signed_part: str) -> bytes:
        return hmac.new(self._secret, signed_part.encode("ascii"), hashlib.sha256).digest()

    def mint(self, client: str, expires_in_seconds: float, max_session_seconds: int) -> str:
        """A token for ``client``, to be redeemed within ``expires_in_seconds``.

        Ranges are the caller's to check (:func:`parse_token_request`); the gateway
        enforces whatever a correctly signed token says.
        """
        payload = {
            "c": client,
            "exp": round(self._clock() + expires_in_seconds, 3),
            "cap": int(max_session_seconds),
            "id": _b64encode(secrets.token_bytes(_ID_BYTES)),
        }
        body = _b64encode(json.dumps(payload, separators=(",", ":")).encode())
        signed_part = PREFIX + body
        return f"{signed_part}.{_b64encode(self._sign(signed_part))}"

    def verify(self, token: str) -> Grant:
        """Check signature, shape and expiry (not single use); raise a 1008 violation."""
        if len(token) > MAX_TOKEN_CHARS or not looks_like_token(token):
            raise _refuse(Violation.TOKEN_MALFORMED, "malformed temporary token")
        body, sep, signature_text = token[len(PREFIX) :].partition(".")
        try:
            if not sep or not body:
                raise ValueError("no signature")
            signature = _b64decode(signature_text)
        except (ValueError, binascii.Error):
            raise _refuse(Violation.TOKEN_MALFORMED, "malformed temporary token") from None
        if not hmac.compare_digest(signature, self._sign(PREFIX + body)):
            raise _refuse(Violation.TOKEN_FORGED, "invalid temporary token")
        grant = _parse_payload(body)
        if self._clock() >= grant.expires_at:
            # AssemblyAI's code for it: 3008, "session expired ... or temporary token
            # expired" (shared/reference/assemblyai-v3-2026-11.md, E).
            raise ProtocolViolation(
                CloseCode.SESSION_EXPIRED,
                Violation.TOKEN_EXPIRED,
                "Session Expired: temporary token expired",
            )
        return grant

    def redeem(self, token: str, clients: Container[str] | None = None) -> Grant:
        """Verify ``token`` and use it up: a second redeem of it is refused.

        With ``clients``, a token of a client no longer among them (its key was
        revoked since) is refused too.
        """
        grant = self.verify(token)
        if clients is not None and grant.client not in clients:
            raise _refuse(Violation.INVALID_KEY, "the client key behind this token was revoked")
        if grant.token_id in self._used:
            raise reused()
        if not self._used.add(grant.token_id, grant.expires_at, self._clock()):
            raise ProtocolViolation(
                CloseCode.TRY_AGAIN_LATER,
                Violation.TOKENS_BUSY,
                "Too many temporary tokens in use on this gateway; retry after a backoff",
            )
        return grant

    def give_back(self, token_id: str) -> None:
        """The session a redeemed token was for never began (the gateway had no upstream
        for it): the token may be presented again while it is valid. The SDKs retry a
        refused connect with the same token; so they meet the same refusal (its words,
        e.g. "payment required") rather than "temporary token already used"."""
        self._used.discard(token_id)


def _parse_payload(body: str) -> Grant:
    """Decode a correctly signed payload (only a leaked secret makes this fail)."""
    try:
        payload = json.loads(_b64decode(body))
        client, expires_at = payload["c"], payload["exp"]
        cap, token_id = payload["cap"], payload["id"]
    except (ValueError, binascii.Error, KeyError, TypeError):
        raise _refuse(Violation.TOKEN_MALFORMED, "malformed temporary token") from None
    if not (
        isinstance(client, str)
        and isinstance(expires_at, int | float)
        and isinstance(cap, int)
        and isinstance(token_id, str)
        and cap > 0
    ):
        raise _refuse(Violation.TOKEN_MALFORMED, "malformed temporary token")
    return Grant(client, token_id, float(expires_at), cap)


class MintLimiter:
    """At most ``per_minute`` tokens per client in any sliding minute.

    One bounded deque per client name; names come from the operator's client keys,
    so the number of deques is bounded too.
    """

    __slots__ = ("_clock", "_per_minute", "_recent")

    def __init__(
        self,
        per_minute: int = DEFAULT_MINTS_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._recent: dict[str, deque[float]] = {}

    def allow(self, client: str) -> bool:
        now = self._clock()
        recent = self._recent.setdefault(client, deque(maxlen=self._per_minute))
        while recent and recent[0] <= now - 60.0:
            recent.popleft()
        if len(recent) >= self._per_minute:
            return False
        recent.append(now)
        return True
