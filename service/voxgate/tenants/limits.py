"""The rules of per-client limits and spend, pure: which limit a refusal names and
with which close code, the UTC periods usage is counted in, how much audio a running
session may still send, what a session costs, and which model label a session gets.

Close codes follow AssemblyAI: too many sessions (concurrent or new per minute) is
3009, as AssemblyAI closes an account over its session limits; an exhausted audio
budget is 1008 "Unauthorized Connection: ..." as AssemblyAI closes an account without
balance. Both come after an ``Error`` frame with the full text.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from voxgate.protocol import CloseCode
from voxgate.tenants.records import Limits


class Limit(StrEnum):
    """A client limit (the ``limit`` label of the refusal counter)."""

    MAX_SESSIONS = "max_sessions"
    SESSIONS_PER_MINUTE = "sessions_per_minute"
    AUDIO_DAY = "audio_hours_per_day"
    AUDIO_MONTH = "audio_hours_per_month"
    #: Redis unreachable and VOXGATE_LIMITS_ON_REDIS_DOWN=closed.
    UNAVAILABLE = "limits_unavailable"


def refusal(limit: Limit, client: str, limits: Limits) -> tuple[int, str]:
    """The close code and text for a session refused (or ended) by ``limit``."""
    if limit is Limit.MAX_SESSIONS:
        return (
            CloseCode.TOO_MANY_SESSIONS,
            f"Too many concurrent sessions: client {client!r} is at its limit of "
            f"{limits.max_sessions} (max_sessions). Retry when a session ends.",
        )
    if limit is Limit.SESSIONS_PER_MINUTE:
        return (
            CloseCode.TOO_MANY_SESSIONS,
            f"Too many new sessions: client {client!r} is at its limit of "
            f"{limits.sessions_per_minute} per minute (sessions_per_minute). "
            "Retry after a backoff.",
        )
    if limit is Limit.AUDIO_DAY:
        return (
            CloseCode.POLICY,
            f"Unauthorized Connection: client {client!r} used its audio budget of "
            f"{limits.audio_hours_per_day:g} h for today, UTC (audio_hours_per_day)",
        )
    if limit is Limit.AUDIO_MONTH:
        return (
            CloseCode.POLICY,
            f"Unauthorized Connection: client {client!r} used its audio budget of "
            f"{limits.audio_hours_per_month:g} h for this month, UTC (audio_hours_per_month)",
        )
    return (
        CloseCode.TRY_AGAIN_LATER,
        "Try again later: the gateway can not check this client's limits (Redis "
        "unreachable, VOXGATE_LIMITS_ON_REDIS_DOWN=closed)",
    )


#: Audio seconds short of a budget that count as reaching it: usage sums frame lengths
#: in floating point (60 frames of 0.05 s add up to 2.9999999999999973), and no frame
#: is this short, so a client left with less could send nothing anyway.
AUDIO_SLACK = 0.01


def first_limit_reached(
    limits: Limits, active: int, starts_last_minute: int, used_day: float, used_month: float
) -> Limit | None:
    """Which limit a new session would break (None: admitted). The rule ``lua/admit.lua``
    applies in Redis, for a gateway without Redis."""
    if limits.max_sessions is not None and active >= limits.max_sessions:
        return Limit.MAX_SESSIONS
    if limits.sessions_per_minute is not None and starts_last_minute >= limits.sessions_per_minute:
        return Limit.SESSIONS_PER_MINUTE
    day, month = limits.audio_hours_per_day, limits.audio_hours_per_month
    if day is not None and used_day + AUDIO_SLACK >= day * 3600:
        return Limit.AUDIO_DAY
    if month is not None and used_month + AUDIO_SLACK >= month * 3600:
        return Limit.AUDIO_MONTH
    return None


def periods(now: float) -> dict[str, str]:
    """The UTC day and month of ``now`` (unix s): {"day": "2026-11-30", "month": "2026-11"}."""
    day = time.strftime("%Y-%m-%d", time.gmtime(now))
    return {"day": day, "month": day[:7]}


def audio_left(limits: Limits, used_day: float, used_month: float) -> tuple[float, Limit | None]:
    """Seconds of audio the client may still send, and the limit that bounds it
    (``inf`` and None without an audio budget). At or below 0 the limit is reached."""
    left, which = float("inf"), None
    if limits.audio_hours_per_day is not None:
        left, which = limits.audio_hours_per_day * 3600 - used_day, Limit.AUDIO_DAY
    if limits.audio_hours_per_month is not None:
        month = limits.audio_hours_per_month * 3600 - used_month
        if month < left:
            left, which = month, Limit.AUDIO_MONTH
    return left, which


#: AssemblyAI's streaming models (docs, 2026-11): each may be a ``model`` label.
KNOWN_MODELS = frozenset(
    {
        "universal-streaming-english",
        "universal-streaming-multilingual",
        "u3-rt-pro",
        "u3-rt-pro-beta-1",
        "whisper-rt",
        "universal-3-5-pro",
        "universal-3-6",
        "universal-3-6-pro",
        "u3-pro",
    }
)
#: The label of a session that names no model, and of one naming a model not known.
DEFAULT_MODEL = "default"
OTHER_MODEL = "other"


def model_label(requested: str | None, priced: Mapping[str, float]) -> str:
    """A bounded ``model`` label: a known or priced model, else "other" (never client text)."""
    if not requested:
        return DEFAULT_MODEL
    if requested in KNOWN_MODELS or requested in priced:
        return requested
    return OTHER_MODEL


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per hour of upstream session, by model (``default`` for any other)."""

    per_hour: Mapping[str, float]

    def cost(self, model: str, session_seconds: float) -> float:
        """AssemblyAI bills streaming by the time a session is open."""
        rate = self.per_hour.get(model, self.per_hour.get(DEFAULT_MODEL, 0.0))
        return rate * session_seconds / 3600.0


def budget_share(spent: float, budget: float | None) -> float | None:
    """How much of a key's budget is spent (1.0: all); None without a budget."""
    if budget is None or budget <= 0:
        return None
    return spent / budget
