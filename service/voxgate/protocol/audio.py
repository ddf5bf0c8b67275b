"""Audio frames: their size and duration rules, and the pace of real time (pure)."""

from __future__ import annotations

from voxgate.protocol.errors import CloseCode, ProtocolViolation, Violation
from voxgate.protocol.messages import MAX_MESSAGE_BYTES
from voxgate.protocol.params import BYTES_PER_SAMPLE, StreamParams

#: A binary frame must hold 50-1000 ms of audio (else close 3007).
MIN_CHUNK_MS = 50.0
MAX_CHUNK_MS = 1000.0
#: How far ahead of real time a client may run before the gateway's own 3007 "too
#: fast". A client that stalled on the network may catch up in one burst. AssemblyAI is
#: the authority on its pace (a client saw it take about 310 s of look-ahead, and its
#: 3007 is relayed as it comes); this is the gateway's guard against abuse, generous so
#: that it never refuses what AssemblyAI takes in practice. The gateway does not hold a
#: burst: it goes upstream at once through the session's bounded queues.
DEFAULT_PACE_BURST_SECONDS = 60.0


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
            f"{params.encoding} samples",
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

    Audio credit grows with wall time from ``start`` (default: the first frame); a
    client may be ahead of the wall clock by at most ``burst_seconds``.
    """

    __slots__ = ("_burst", "_sent", "_start")

    def __init__(
        self, burst_seconds: float = DEFAULT_PACE_BURST_SECONDS, start: float | None = None
    ) -> None:
        self._burst = burst_seconds
        self._start: float | None = start
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
