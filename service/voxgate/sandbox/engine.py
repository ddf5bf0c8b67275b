"""The simulator's "recogniser": audio in, AssemblyAI-shaped messages out. Pure.

It does not recognise speech. It hears *sound* by energy (PCM) or by bitrate
(compressed audio, ``compressed``) and speaks words from a fixed script, one word per
``WORD_MS`` of sound, so transcripts are deterministic and their timing follows the
audio the way a real recogniser's would. Per model family (ref G):

* universal-streaming (``universal-streaming-*``, ``whisper-rt``): a partial ``Turn``
  each time a word completes; after ``min_turn_silence`` ms of silence (or at
  ``ForceEndpoint``/``Terminate``) a final ``Turn``, then with ``format_turns`` its
  formatted repeat (same ``turn_order``, ``turn_is_formatted: true``);
* Universal-3 Pro (``u3-rt-pro``, ``universal-3-*``, the default): one partial at
  each pause (cumulative, ``end_of_turn_confidence`` 0), then one final per turn,
  always formatted (``format_turns`` ignored, ``end_of_turn_confidence`` 1).

A turn whose sound never made a whole word is taken as "not confident": it ends after
``max_turn_silence`` ms of silence instead. ``utterance`` holds the turn's formatted
text on the turn's first final message and is ``""`` elsewhere. With speaker labels
each turn has a ``speaker_label`` (A, B, A, ... up to ``max_speakers``) and each word
a ``speaker``; with language detection each final carries ``language_code`` and
``language_confidence``; ``SpeechStarted`` (U3 Pro) marks where a turn's sound began,
``Silence`` (``acknowledge_silence``) each stretch of at least ``SILENCE_ACK_MS``.

Word times are milliseconds on the session's audio clock, as upstream's are.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Mapping
from operator import mul
from typing import Any

from voxgate.sandbox.compressed import Meter

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
#: ``acknowledge_silence``: the shortest silence a ``Silence`` message reports.
SILENCE_ACK_MS = 1000.0
#: ``session_heartbeat``: one ``Heartbeat`` per this much audio received.
HEARTBEAT_AUDIO_MS = 1000.0
#: Speakers the scripted diarizer takes turns with.
SPEAKERS = "ABCDEFGHIJ"
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


def loudness(chunk: bytes, encoding: str) -> float:
    """Root mean square of a sample of PCM audio (0.0 for any other encoding)."""
    if encoding == "pcm_s16le":
        samples = array("h")
        samples.frombytes(chunk[: len(chunk) - len(chunk) % 2])
        if _SWAP:
            samples.byteswap()
        picked = samples[::SAMPLE_STRIDE]
        values: list[int] | array[int] = picked
    elif encoding == "pcm_mulaw":
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
        encoding: str,
        bytes_per_ms: float | None,
        format_turns: bool,
        min_turn_silence_ms: float = DEFAULT_MIN_TURN_SILENCE_MS,
        max_turn_silence_ms: float = DEFAULT_MAX_TURN_SILENCE_MS,
        u3_pro: bool = False,
        speaker_labels: bool = False,
        max_speakers: int = 10,
        language: str | None = None,
        acknowledge_silence: bool = False,
        speech_started: bool = False,
    ) -> None:
        self.encoding = encoding
        self.bytes_per_ms = bytes_per_ms
        self.format_turns = format_turns
        self.min_silence = float(min_turn_silence_ms)
        self.max_silence = float(max(max_turn_silence_ms, min_turn_silence_ms))
        self.u3_pro = u3_pro
        self.speaker_labels = speaker_labels
        self.speakers = SPEAKERS[: max(1, min(max_speakers, len(SPEAKERS)))]
        self.language = language
        self.acknowledge_silence = acknowledge_silence
        self.announce_speech = speech_started
        self.meter = Meter(encoding) if bytes_per_ms is None else None
        self.audio_ms = 0.0
        self.turn_order = 0
        self.turns_sent = 0
        #: Whether any chunk since the last ``heard_speech()`` was sound.
        self.loud_since = False
        self._script_at = 0
        self._words: list[dict[str, Any]] = []
        self._word_start: float | None = None
        self._word_sound = 0.0
        self._silence = 0.0
        self._paused = False
        self._silence_from: float | None = 0.0
        self._speech_started: float | None = None
        #: Final turns' labels as first sent, for the revision at the end.
        self.labelled: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ input

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        if self.meter is not None:
            millis, loud = self.meter.feed(chunk)
            if millis <= 0.0:
                return []
        else:
            assert self.bytes_per_ms is not None
            millis = len(chunk) / self.bytes_per_ms
            loud = loudness(chunk, self.encoding) >= SOUND_RMS
        return self.advance(millis, loud)

    def advance(self, millis: float, loud: bool) -> list[dict[str, Any]]:
        """``millis`` of audio that is sound or not: the messages it causes."""
        out: list[dict[str, Any]] = []
        if loud:
            self.loud_since = True
            self._silence = 0.0
            self._paused = False
            if self._silence_from is not None:
                out.extend(self._silence_ended())
            if not self._in_turn():
                self._speech_started = self.audio_ms
                if self.announce_speech:
                    out.append(
                        {
                            "type": "SpeechStarted",
                            "timestamp": int(self.audio_ms),
                            "confidence": 0.9,
                        }
                    )
            if self._word_start is None:
                self._word_start = self.audio_ms
            self._word_sound += millis
            self.audio_ms += millis
            while self._word_sound >= WORD_MS:
                self._complete_word(self.audio_ms)
                if not self.u3_pro:
                    out.append(self._turn(final=False))
            return out
        if self._silence_from is None:
            self._silence_from = self.audio_ms
        self.audio_ms += millis
        if self._in_turn():
            if self.u3_pro and self._words and not self._paused:
                self._paused = True
                out.append(self._turn(final=False))
            self._silence += millis
            if self._silence >= (self.min_silence if self._words else self.max_silence):
                out.extend(self._end_turn())
        return out

    def speech_started(self) -> int | None:
        """Where the latest turn's sound began (ms), once per turn, else None."""
        started, self._speech_started = self._speech_started, None
        return None if started is None else int(started)

    def heard_speech(self) -> bool:
        """Whether there was sound since the last call (a Heartbeat's speech probability)."""
        loud, self.loud_since = self.loud_since, False
        return loud

    def force_endpoint(self) -> list[dict[str, Any]]:
        return self._end_turn()

    def finish(self) -> list[dict[str, Any]]:
        """``Terminate``: the turn in progress ends now, a silence in progress too."""
        out = self._end_turn()
        if self._silence_from is not None:
            out.extend(self._silence_ended())
        return out

    def update(self, fields: Mapping[str, Any]) -> None:
        """New turn-silence settings apply from now on (values already checked)."""
        low = fields.get("min_turn_silence", fields.get("min_end_of_turn_silence_when_confident"))
        if low is not None:
            self.min_silence = float(low)
        high = fields.get("max_turn_silence")
        if high is not None:
            self.max_silence = float(high)
        self.max_silence = max(self.max_silence, self.min_silence)

    def revision(self) -> dict[str, Any] | None:
        """The diarizer's second pass at the end: turns relabelled A, A, B, B, ... where
        that differs from the first pass (A, B, A, B, ...); None when nothing changes."""
        revisions = []
        for turn in self.labelled:
            label = self.speakers[(turn["turn_order"] // 2) % len(self.speakers)]
            if label != turn["speaker_label"]:
                words = [{**w, "speaker": label} for w in turn["words"]]
                revisions.append(
                    {"turn_order": turn["turn_order"], "speaker_label": label, "words": words}
                )
        if not revisions:
            return None
        return {"type": "SpeakerRevision", "revisions": revisions}

    # ------------------------------------------------------------------ turns

    def _in_turn(self) -> bool:
        return bool(self._words) or self._word_start is not None

    def _silence_ended(self) -> list[dict[str, Any]]:
        start, self._silence_from = self._silence_from, None
        assert start is not None
        if not self.acknowledge_silence or self.audio_ms - start < SILENCE_ACK_MS:
            return []
        return [{"type": "Silence", "start_ms": int(start), "end_ms": int(self.audio_ms)}]

    def _speaker(self) -> str:
        return self.speakers[self.turn_order % len(self.speakers)]

    def _complete_word(self, end: float) -> None:
        assert self._word_start is not None
        start = self._word_start
        word: dict[str, Any] = {
            "text": SCRIPT[self._script_at % len(SCRIPT)],
            "start": int(start),
            "end": int(end),
            "confidence": 0.9,
            "word_is_final": True,
        }
        if self.speaker_labels:
            word["speaker"] = self._speaker()
        self._words.append(word)
        self._script_at += 1
        self._word_sound = max(0.0, self._word_sound - WORD_MS)
        self._word_start = end if self._word_sound else None

    def _end_turn(self) -> list[dict[str, Any]]:
        if self._word_start is not None and self._word_sound >= MIN_WORD_MS:
            self._complete_word(self._word_start + self._word_sound)
        self._word_start = None
        self._word_sound = 0.0
        self._silence = 0.0
        self._paused = False
        if not self._words:
            return []
        if self.u3_pro:
            out = [self._turn(final=True, formatted=True, utterance=True)]
        else:
            out = [self._turn(final=True, utterance=True)]
            if self.format_turns:
                out.append(self._turn(final=True, formatted=True))
        if self.speaker_labels:
            last = out[-1]
            self.labelled.append(
                {
                    "turn_order": last["turn_order"],
                    "speaker_label": last["speaker_label"],
                    "words": last["words"],
                }
            )
        self._words = []
        self.turn_order += 1
        return out

    def _turn(
        self, *, final: bool, formatted: bool = False, utterance: bool = False
    ) -> dict[str, Any]:
        words = [dict(w) for w in self._words]
        if not final and words and not self.u3_pro:
            words[-1]["word_is_final"] = False
        transcript = " ".join(w["text"] for w in words)
        shown = transcript[:1].upper() + transcript[1:] + "." if transcript else ""
        if self.u3_pro:
            confidence = 1.0 if final else 0.0
        else:
            confidence = 0.95 if final else round(min(0.5, 0.1 * len(words)), 2)
        self.turns_sent += 1
        turn: dict[str, Any] = {
            "type": "Turn",
            "turn_order": self.turn_order,
            "turn_is_formatted": formatted,
            "end_of_turn": final,
            "transcript": shown if formatted else transcript,
            "end_of_turn_confidence": confidence,
            "words": words,
            "utterance": shown if utterance else "",
        }
        if self.speaker_labels:
            turn["speaker_label"] = self._speaker()
        if final and self.language is not None:
            turn["language_code"] = self.language
            turn["language_confidence"] = 0.98
        return turn
