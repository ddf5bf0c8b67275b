"""One continuous session across upstream reconnects: pure bookkeeping, no I/O.

When upstream drops mid-session the gateway opens a new upstream session and
replays the audio of the turn in progress (bounded), so no speech is lost at the
seam. The new upstream counts turns from 0 and times words from 0; the client
must see neither. This module keeps:

* the replay buffer: frames sent upstream since the last completed turn, capped
  at ``max_replay_bytes`` (the oldest go first: a turn longer than the cap loses
  its beginning, as docs/operations.md says);
* the cut point: the client-visible turn count and the audio time where the last
  completed turn ended;
* the rewrite for messages of a replacement upstream, so that every message that
  names a turn or a time is on the client's session numbering and clock, and totals
  cover the whole session:

  ==================== =============================================================
  ``Turn``             ``turn_order`` plus the turns completed before, word times
                       plus where the replay began; an unformatted final the client
                       already has is not sent twice
  ``SpeakerRevision``  each revision's ``turn_order`` and word times, likewise
  ``LLMGatewayResponse`` ``turn_order``, likewise
  ``SpeechStarted``    ``timestamp`` (ms) plus where the replay began
  ``Silence``          ``start_ms`` and ``end_ms``, likewise
  ``Heartbeat``        ``total_audio_received_ms`` plus where the replay began,
                       ``total_duration_ms`` plus the session's time before it
  ``Termination``      ``audio_duration_seconds`` and ``session_duration_seconds``,
                       likewise (whole seconds, as upstream sends them: the
                       replacement's rounded figure plus the offset, so off by
                       up to 1 s)
  ==================== =============================================================
"""

from __future__ import annotations

from collections import deque
from typing import Any


class Seam:
    __slots__ = (
        "_base",
        "_bytes",
        "_bytes_per_ms",
        "_elapsed_ms",
        "_frames",
        "_max_bytes",
        "_offset_ms",
        "_unformatted_final",
        "audio_ms",
        "completed_turns",
        "format_turns",
        "replacements",
    )

    def __init__(self, *, bytes_per_ms: float | None, format_turns: bool, max_replay_bytes: int):
        self._bytes_per_ms = bytes_per_ms
        #: Whether upstream sends each final twice (unformatted, then formatted): set
        #: at connect, and again when the client's UpdateConfiguration changes it.
        self.format_turns = format_turns
        self._max_bytes = max_replay_bytes if bytes_per_ms else 0
        self._frames: deque[tuple[float, bytes]] = deque()
        self._bytes = 0
        self.audio_ms = 0.0
        self.completed_turns = 0
        self._unformatted_final: int | None = None
        self._base = 0
        self._offset_ms = 0.0
        self._elapsed_ms = 0.0
        self.replacements = 0

    # ------------------------------------------------------------------ upward

    def sent(self, frame: bytes) -> None:
        """A frame went (or is going) upstream; keep it for a replay."""
        if self._max_bytes:
            self._frames.append((self.audio_ms, frame))
            self._bytes += len(frame)
            while self._bytes > self._max_bytes:
                self._bytes -= len(self._frames.popleft()[1])
        if self._bytes_per_ms:
            self.audio_ms += len(frame) / self._bytes_per_ms

    @property
    def replay_bytes(self) -> int:
        return self._bytes

    def replay(self, elapsed_ms: float = 0.0) -> list[bytes]:
        """Start a replacement upstream, ``elapsed_ms`` into the client's session: the
        frames to send it first, in order."""
        self.replacements += 1
        self._base = self.completed_turns
        self._offset_ms = self._frames[0][0] if self._frames else self.audio_ms
        self._elapsed_ms = elapsed_ms
        return [frame for _, frame in self._frames]

    # ------------------------------------------------------------------ downward

    @property
    def rewriting(self) -> bool:
        return self.replacements > 0

    def rewrite(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """A replacement upstream's message as the client must see it (None: drop it)."""
        kind = message.get("type")
        if kind == "Turn":
            return self._turn(message)
        offset = self._offset_ms
        if kind == "SpeakerRevision":
            revisions = message.get("revisions")
            for revision in revisions if isinstance(revisions, list) else ():
                if isinstance(revision, dict):
                    self._renumber(revision)
                    self._shift_words(revision)
        elif kind == "LLMGatewayResponse":
            self._renumber(message)
        elif kind == "SpeechStarted":
            _add(message, "timestamp", offset)
        elif kind == "Silence":
            _add(message, "start_ms", offset)
            _add(message, "end_ms", offset)
        elif kind == "Heartbeat":
            _add(message, "total_audio_received_ms", offset)
            _add(message, "total_duration_ms", self._elapsed_ms)
        elif kind == "Termination":
            _add(message, "audio_duration_seconds", offset / 1000)
            _add(message, "session_duration_seconds", self._elapsed_ms / 1000)
        return message

    def _turn(self, message: dict[str, Any]) -> dict[str, Any] | None:
        self._renumber(message)
        self._shift_words(message)
        if (
            message.get("end_of_turn")
            and not message.get("turn_is_formatted")
            and message.get("turn_order") == self._unformatted_final
        ):
            return None  # the client has this final already, from the lost upstream
        return message

    def _renumber(self, item: dict[str, Any]) -> None:
        order = item.get("turn_order")
        if isinstance(order, int) and not isinstance(order, bool):
            item["turn_order"] = order + self._base

    def _shift_words(self, item: dict[str, Any]) -> None:
        words = item.get("words")
        if isinstance(words, list) and self._offset_ms:
            for word in words:
                if isinstance(word, dict):
                    _add(word, "start", self._offset_ms)
                    _add(word, "end", self._offset_ms)

    def delivered(self, message: dict[str, Any]) -> None:
        """A Turn the client got: a completed turn moves the cut point."""
        if message.get("type") != "Turn" or not message.get("end_of_turn"):
            return
        order = message.get("turn_order")
        if not isinstance(order, int):
            return
        formatted = bool(message.get("turn_is_formatted"))
        if self.format_turns and not formatted:
            self._unformatted_final = order  # its formatted repeat completes it
            return
        self.completed_turns = max(self.completed_turns, order + 1)
        words = message.get("words")
        end = words[-1].get("end") if isinstance(words, list) and words else None
        cut = float(end) if isinstance(end, int | float) else self.audio_ms
        frames = self._frames
        per_ms = self._bytes_per_ms or 1.0
        while frames and frames[0][0] + len(frames[0][1]) / per_ms <= cut:
            self._bytes -= len(frames.popleft()[1])


def _add(item: dict[str, Any], name: str, amount: float) -> None:
    """``item[name] += amount`` when it is a number; an int stays an int (rounded)."""
    value = item.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not amount:
        return
    item[name] = round(value + amount) if isinstance(value, int) else value + amount
