"""Edge limits, pure: what a connection may send before it is answered, how many
connections a process holds, and which of them a full process still lets in.

The numbers come from settings and from the descriptor limit (``descriptors.py``);
the protocol that applies them is ``http.py``. See docs/limits.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Final

#: Descriptors kept out of the connection cap: the listening socket, Redis, log files,
#: and the probe slots below.
FD_HEADROOM: Final = 64
#: Connections a full process still accepts for ``PROBE_PATHS`` only.
PROBE_SLOTS: Final = 8
#: A probe-only connection has this long to send its request head.
PROBE_TIMEOUT: Final = 1.0
#: Descriptors never handed to a client connection (a new one at or above
#: ``soft limit - FD_LAST`` is closed at once).
FD_LAST: Final = 16
#: The paths a full process still serves (health probes and scrapes).
PROBE_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})
#: Connections the probe listener (VOXGATE_PROBE_PORT) holds at a time.
PROBE_LISTENER_CONNECTIONS: Final = 64
#: Descriptors one session holds (the client's and upstream's sockets).
FDS_PER_SESSION: Final = 2


class Refusal(StrEnum):
    """Why a connection or request was refused at the edge (the metric's ``reason``)."""

    HEAD_TOO_LARGE = "head_too_large"  # 431: request line and headers over the byte cap
    TOO_MANY_HEADERS = "too_many_headers"  # 431: over the header count
    HANDSHAKE_TIMEOUT = "handshake_timeout"  # 408: no complete head within the deadline
    BODY_TOO_LARGE = "body_too_large"  # 413: a request body over the byte cap
    BODY_TIMEOUT = "body_timeout"  # 408: a request body not complete within the deadline
    NOT_PROBE = "not_probe"  # 404: the probe listener serves PROBE_PATHS only
    BAD_REQUEST = "bad_request"  # 400: not HTTP/1.1 as httptools reads it
    CONNECTION_CAP = "connection_cap"  # 503: the process holds its cap of connections
    HANDSHAKE_CAP = "handshake_cap"  # 503: too many connections still sending their head
    DESCRIPTORS = "descriptors"  # 503: the process is close to its descriptor limit


#: The HTTP status each refusal is answered with.
STATUS: Final = {
    Refusal.HEAD_TOO_LARGE: 431,
    Refusal.TOO_MANY_HEADERS: 431,
    Refusal.HANDSHAKE_TIMEOUT: 408,
    Refusal.BODY_TOO_LARGE: 413,
    Refusal.BODY_TIMEOUT: 408,
    Refusal.NOT_PROBE: 404,
    Refusal.BAD_REQUEST: 400,
    Refusal.CONNECTION_CAP: 503,
    Refusal.HANDSHAKE_CAP: 503,
    Refusal.DESCRIPTORS: 503,
}


class Tier(Enum):
    """What a new connection is let do."""

    OPEN = "open"  # anything
    PROBES_ONLY = "probes_only"  # a GET of PROBE_PATHS within PROBE_TIMEOUT, else 503
    REFUSED = "refused"  # a 503 at once, nothing read


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    max_head_bytes: int
    max_headers: int
    handshake_timeout: float
    #: The connection cap in force (the setting, lowered to fit the descriptor limit).
    max_connections: int
    max_handshakes: int
    #: The process's soft descriptor limit.
    fd_limit: int
    #: The most a request body may hold.
    max_body_bytes: int = 65536

    @classmethod
    def build(
        cls,
        *,
        max_head_bytes: int,
        max_headers: int,
        handshake_timeout: float,
        max_connections: int,
        max_handshakes: int,
        fd_limit: int,
        max_body_bytes: int = 65536,
    ) -> EdgeLimits:
        return cls(
            max_head_bytes=max_head_bytes,
            max_headers=max_headers,
            handshake_timeout=handshake_timeout,
            max_connections=connection_cap(max_connections, fd_limit),
            max_handshakes=max_handshakes,
            fd_limit=fd_limit,
            max_body_bytes=max_body_bytes,
        )


def connection_cap(setting: int, fd_limit: int) -> int:
    """The cap in force: every connection may be a session holding two descriptors,
    and ``FD_HEADROOM`` stay free for everything else."""
    return max(1, min(setting, (fd_limit - FD_HEADROOM) // FDS_PER_SESSION))


def admission(
    limits: EdgeLimits, open_connections: int, handshakes: int, probes: int, fd: int
) -> tuple[Tier, Refusal | None]:
    """A new connection's tier, and the limit it met (None: none). ``fd`` is its
    descriptor number (Linux hands out the lowest free one, so at least ``fd`` are
    open); ``open_connections``, ``handshakes``, ``probes`` are counted without it."""
    if fd >= limits.fd_limit - FD_LAST:
        return Tier.REFUSED, Refusal.DESCRIPTORS
    reason: Refusal | None = None
    if fd >= limits.fd_limit - FD_HEADROOM:
        reason = Refusal.DESCRIPTORS
    elif open_connections >= limits.max_connections:
        reason = Refusal.CONNECTION_CAP
    elif handshakes >= limits.max_handshakes:
        reason = Refusal.HANDSHAKE_CAP
    if reason is None:
        return Tier.OPEN, None
    if probes < PROBE_SLOTS:
        return Tier.PROBES_ONLY, reason
    return Tier.REFUSED, reason


class Throttle:
    """At most one log line per ``period`` for a recurring event; ``hit(now)`` returns
    how many occurrences the line stands for (0: stay quiet)."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._next = float("-inf")
        self._pending = 0

    def hit(self, now: float) -> int:
        self._pending += 1
        if now < self._next:
            return 0
        count, self._pending = self._pending, 0
        self._next = now + self.period
        return count
