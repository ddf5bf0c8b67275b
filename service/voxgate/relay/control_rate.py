"""How many text messages one session's client may send, pure: a token bucket of
``rate`` messages a second (a burst of as many), and KeepAlive forwarded upstream at
most once a second (more are dropped: one keeps upstream's inactivity timer as well
as many). See docs/limits.md, "Client messages"."""

from __future__ import annotations

from typing import Final

#: KeepAlive goes upstream at most this often, in seconds.
KEEPALIVE_PERIOD: Final = 1.0


class ControlRate:
    def __init__(self, rate: int, now: float) -> None:
        self.rate = rate
        self._tokens = float(rate)
        self._at = now
        self._keepalive_at = float("-inf")

    def admit(self, now: float) -> bool:
        """One more text message at ``now``: False when it is over the rate."""
        tokens = min(float(self.rate), self._tokens + (now - self._at) * self.rate)
        self._at = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True

    def keepalive_due(self, now: float) -> bool:
        """Whether a KeepAlive at ``now`` goes upstream (else it is coalesced)."""
        if now - self._keepalive_at < KEEPALIVE_PERIOD:
            return False
        self._keepalive_at = now
        return True
