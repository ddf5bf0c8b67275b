"""Synthetic test audio: loud tone bursts the simulator hears as speech, and silence."""

from __future__ import annotations

import math
from array import array

RATE = 16000
FRAME_MS = 50
FRAME_BYTES = RATE * 2 * FRAME_MS // 1000


def tone(seconds: float, freq: float = 220.0, amplitude: int = 8000) -> bytes:
    count = int(RATE * seconds)
    samples = array(
        "h", (int(amplitude * math.sin(2 * math.pi * freq * i / RATE)) for i in range(count))
    )
    return samples.tobytes()


def silence(seconds: float) -> bytes:
    return bytes(int(RATE * seconds) * 2)


def utterance(speech: float = 1.0, pause: float = 0.8) -> bytes:
    """``speech`` seconds of 'voice' followed by ``pause`` seconds of silence."""
    return tone(speech) + silence(pause)


def frames(pcm: bytes, size: int = FRAME_BYTES) -> list[bytes]:
    """Split into frames of ``size`` bytes, padding the last with silence."""
    out = [pcm[i : i + size] for i in range(0, len(pcm), size)]
    if out and len(out[-1]) < size:
        out[-1] = out[-1] + bytes(size - len(out[-1]))
    return out


def speech(utterances: int = 1, pause: float = 0.7) -> list[bytes]:
    """Frames of ``utterances`` x (0.8 s of 'voice', then ``pause`` s of silence): one
    turn per utterance."""
    return frames(utterance(0.8, pause) * utterances)
