"""``voxgate stream``'s pure parts: the sample WAV, reading WAVs, framing, rendering
turns. (The commands themselves: integration/test_streamer.py.)"""

from __future__ import annotations

import wave
from pathlib import Path

import pytest
from voxgate.cli.demo import sample_wav
from voxgate.cli.stream import frames, gateway_url, read_wav, render_message


def test_the_sample_is_16_khz_mono_speech_of_several_seconds() -> None:
    """The bundled WAV is what the demo and the browser test stream."""
    pcm, rate = read_wav(sample_wav())
    assert rate == 16000
    assert len(pcm) / (2 * rate) > 5


def test_a_stereo_wav_is_reduced_to_its_first_channel(tmp_path: Path) -> None:
    """Interleaved L/R samples come back as L only."""
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\x01\x00\x02\x00" * 10)
    pcm, rate = read_wav(path)
    assert rate == 8000 and pcm == b"\x01\x00" * 10


def test_frames_are_whole_and_the_last_is_padded() -> None:
    """50 ms at 16 kHz is 1600 bytes; a short tail is padded with silence."""
    out = frames(b"\x01" * 4000, 16000, 50)
    assert [len(f) for f in out] == [1600, 1600, 1600]
    assert out[-1].endswith(b"\x00" * 800)


def test_render_shows_finals_always_and_partials_only_on_a_terminal() -> None:
    """Off a terminal, a partial prints nothing; the formatted final prints its text."""
    partial = {"type": "Turn", "turn_order": 0, "end_of_turn": False, "transcript": "hi"}
    final = {**partial, "end_of_turn": True, "turn_is_formatted": True, "transcript": "Hi."}
    assert render_message(partial, tty=False) is None
    assert render_message(partial, tty=True) == "\r\x1b[2K[turn 0] hi …"
    assert render_message(final, tty=False) == "[turn 0] Hi."
    unformatted = {**final, "turn_is_formatted": False}
    assert render_message(unformatted, tty=False) is None
    assert render_message(unformatted, tty=False, formatted=False) == "[turn 0] Hi."


@pytest.mark.parametrize(
    ("typed", "url"),
    [
        ("127.0.0.1:8080", "ws://127.0.0.1:8080"),
        ("gateway.example", "ws://gateway.example"),
        ("[::1]:8080", "ws://[::1]:8080"),
        ("ws://127.0.0.1:8080/", "ws://127.0.0.1:8080"),
        ("wss://gw.example/base", "wss://gw.example/base"),
        ("http://127.0.0.1:8080", "ws://127.0.0.1:8080"),
        ("https://gw.example", "wss://gw.example"),
    ],
)
def test_stream_takes_a_bare_host_port_or_an_http_url_as_the_gateway(typed: str, url: str) -> None:
    """`--url 127.0.0.1:8080` (no scheme) means ws://; http(s) means ws(s)."""
    assert gateway_url(typed) == url


@pytest.mark.parametrize("typed", ["ftp://h:21", "h:99999", "h:port", "ws://", ":8080", "h:0"])
def test_stream_refuses_what_is_no_gateway_url_in_one_line(typed: str) -> None:
    """Anything else is a ValueError whose text is one line (the command prints it)."""
    with pytest.raises(ValueError, match=r"^[^\n]+$"):
        gateway_url(typed)
