"""The simulator's "recogniser": audio in, AssemblyAI-shaped Turn messages out. Pure.

It does not recognise speech. It hears *sound* by energy and speaks words from a
fixed script, one word per ``WORD_MS`` of sound, so transcripts are deterministic
and their timing follows the audio the way a real recogniser's would:

* partial ``Turn`` (``end_of_turn: false``) each time a word completes;
* after ``min_turn_silence`` ms of silence (or at ``ForceEndpoint``/``Terminate``)
  a final ``Turn``, then with ``format_turns`` its formatted repeat (same
  ``turn_order``, ``turn_is_formatted: true``);
* a turn whose sound never made a whole word is taken as "not confident": it
  ends after ``max_turn_silence`` ms of silence instead.

Word times are milliseconds on the session's audio clock, as upstream's are.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Mapping
from operator import mul
from typing import Any

from voxgate.protocol import Encoding

#: Milliseconds of sound that make one word (speech runs at about 3 words a second).
WORD_MS = 350.0
#: A trailing sound at least this long still counts as a word when a turn ends.
MIN_WORD_MS = 100.0
#: RMS loudness (of 32768) above which a chunk is sound.
SOUND_RMS = 400.0
#: Only every n-th sample is measured: loudness is a property of the whole chunk.
SAMPLE_STRIDE = 4
#: AssemblyAI's defaults for ending a turn (ms of silence).
DEFAULT_MIN_TURN_SILENCE_MS = 400
DEFAULT_MAX_TURN_SILENCE_MS = 1280
SCRIPT_TEXT = (
    "hello from the voxgate upstream simulator it hears sound instead of words and "
    "speaks this script in order one word for every third of a second of sound so "
    "transcripts are the same on every run"
)
SCRIPT = tuple(SCRIPT_TEXT.split(" "))


def _mulaw_table() -> list[int]:
    table = []
    for byte in range(256):
        u = ~byte & 0xFF
        magnitude = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
        table.append(abs(magnitude - 0x84))
    return table


_MULAW = _mulaw_table()
_SWAP = sys.byteorder == "big"


def loudness(chunk: bytes, encoding: Encoding) -> float:
    """Root mean square of a sample of the chunk (0.0 when it cannot be decoded)."""
    if encoding is Encoding.PCM_S16LE:
        samples = array("h")
        samples.frombytes(chunk[: len(chunk) - len(chunk) % 2])
        if _SWAP:
            samples.byteswap()
        picked = samples[::SAMPLE_STRIDE]
        values: list[int] | array[int] = picked
    elif encoding is Encoding.PCM_MULAW:
        values = [_MULAW[b] for b in chunk[::SAMPLE_STRIDE]]
    else:
        return 0.0
    if not values:
        return 0.0
    return math.sqrt(sum(map(mul, values, values)) / len(values))


class Transcriber:
    """One session's turns. Feed audio chunks; get the messages to send back."""

    def __init__(
        self,
        *,
        encoding: Encoding,
        bytes_per_ms: float | None,
        format_turns: bool,
        min_turn_silence_ms: float = DEFAULT_MIN_TURN_SILENCE_MS,
        max_turn_silence_ms: float = DEFAULT_MAX_TURN_SILENCE_MS,
    ) -> None:
        self.encoding = encoding
        self.bytes_per_ms = bytes_per_ms
        self.format_turns = format_turns
        self.min_silence = float(min_turn_silence_ms)
        self.max_silence = float(max(max_turn_silence_ms, min_turn_silence_ms))
        self.audio_ms = 0.0
        self.turn_order = 0
        self.turns_sent = 0
        self._script_at = 0
        self._words: list[dict[str, Any]] = []
        self._word_start: float | None = None
        self._word_sound = 0.0
        self._silence = 0.0
        self._speech_started: float | None = None

    # ------------------------------------------------------------------ input

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        if self.bytes_per_ms is None:
            return []  # compressed audio: its length is not its duration
        millis = len(chunk) / self.bytes_per_ms
        loud = loudness(chunk, self.encoding) >= SOUND_RMS
        out: list[dict[str, Any]] = []
        if loud:
            self._silence = 0.0
            if not self._in_turn():
                self._speech_started = self.audio_ms
            if self._word_start is None:
                self._word_start = self.audio_ms
            self._word_sound += millis
            self.audio_ms += millis
            while self._word_sound >= WORD_MS:
                self._complete_word(self.audio_ms)
                out.append(self._turn(final=False))
            return out
        self.audio_ms += millis
        if self._in_turn():
            self._silence += millis
            if self._silence >= (self.min_silence if self._words else self.max_silence):
                out.extend(self._end_turn())
        return out

    def speech_started(self) -> int | None:
        """Where the latest turn's sound began (ms), once per turn, else None."""
        started, self._speech_started = self._speech_started, None
        return None if started is None else int(started)

    def force_endpoint(self) -> list[dict[str, Any]]:
        return self._end_turn()

    def finish(self) -> list[dict[str, Any]]:
        """``Terminate``: the turn in progress ends now."""
        return self._end_turn()

    def update(self, fields: Mapping[str, Any]) -> None:
        """``UpdateConfiguration``: new turn-silence settings apply from now on."""
        low = fields.get("min_turn_silence", fields.get("min_end_of_turn_silence_when_confident"))
        if low is not None:
            self.min_silence = float(low)
        high = fields.get("max_turn_silence")
        if high is not None:
            self.max_silence = float(high)
        self.max_silence = max(self.max_silence, self.min_silence)

    # ------------------------------------------------------------------ turns

    def _in_turn(self) -> bool:
        return bool(self._words) or self._word_start is not None

    def _complete_word(self, end: float) -> None:
        assert self._word_start is not None
        start = self._word_start
        self._words.append(
            {
                "text": SCRIPT[self._script_at % len(SCRIPT)],
                "start": int(start),
                "end": int(end),
                "confidence": 0.9,
                "word_is_final": True,
            }
        )
        self._script_at += 1
        self._word_sound = max(0.0, self._word_sound - WORD_MS)
        self._word_start = end if self._word_sound else None

    def _end_turn(self) -> list[dict[str, Any]]:
        if self._word_start is not None and self._word_sound >= MIN_WORD_MS:
            self._complete_word(self._word_start + self._word_sound)
        self._word_start = None
        self._word_sound = 0.0
        self._silence = 0.0
        if not self._words:
            return []
        out = [self._turn(final=True)]
        if self.format_turns:
            out.append(self._turn(final=True, formatted=True))
        self._words = []
        self.turn_order += 1
        return out

    def _turn(self, *, final: bool, formatted: bool = False) -> dict[str, Any]:
        words = [dict(w) for w in self._words]
        if not final and words:
            words[-1]["word_is_final"] = False
        transcript = " ".join(w["text"] for w in words)
        if formatted:
            transcript = transcript[:1].upper() + transcript[1:] + "."
        self.turns_sent += 1
        return {
            "type": "Turn",
            "turn_order": self.turn_order,
            "turn_is_formatted": formatted,
            "end_of_turn": final,
            "transcript": transcript,
            "end_of_turn_confidence": 0.95 if final else round(min(0.5, 0.1 * len(words)), 2),
            "words": words,
        }
