"""``voxgate stream``'s pure parts: the sample WAV, reading WAVs, framing, rendering
turns. (The commands themselves: integration/test_streamer.py.)"""

from __future__ import annotations

import argparse
import socket
import wave
from pathlib import Path

import pytest
from voxgate.cli import stream
from voxgate.cli.demo import sample_wav
from voxgate.cli.stream import (
    add_arguments,
    frames,
    gateway_url,
    read_wav,
    render_message,
    shown_url,
)
from voxgate.cli.stream import run as run_command


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
        ("127.0.0.1:8080/v3/ws", "ws://127.0.0.1:8080"),
        ("wss://gw.example/base/v3/ws/", "wss://gw.example/base"),
        ("ws://u:pw@h:1", "ws://u:pw@h:1"),
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


@pytest.mark.parametrize(
    ("typed", "words"),
    [
        ("host:", "the port is empty"),
        ("ws://host:", "the port is empty"),
        ("ws://u:pw@host:", "the port is empty"),
        ("ws:/h:1", "two slashes"),
        ("::1", "IPv6 address goes in brackets"),
        ("::1:8080", "IPv6 address goes in brackets"),
        ("ws://::1:8080", "IPv6 address goes in brackets"),
    ],
)
def test_stream_refuses_a_half_url_with_a_clear_message(typed: str, words: str) -> None:
    """An empty port, one slash after the scheme, a bare IPv6 address: refused, saying
    what to write (not read as some other host or port)."""
    with pytest.raises(ValueError, match=words):
        gateway_url(typed)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ws://u:pw@h:1", "ws://***@h:1"),
        ("wss://token@gw.example/base", "wss://***@gw.example/base"),
        ("u:pw@h:1", "***@h:1"),
        ("ws://h:1/a@b", "ws://h:1/a@b"),
        ("ws://h:1", "ws://h:1"),
    ],
)
def test_urls_in_messages_never_show_userinfo(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def stream_command(capsys: pytest.CaptureFixture[str], wav: Path, url: str) -> tuple[int, str]:
    """`voxgate stream WAV --url URL --key k`, in this process: (exit status, stderr)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    status = run_command(parser.parse_args([str(wav), "--url", url, "--key", "k"]))
    return status, capsys.readouterr().err


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "hello.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(bytes(3200))
    return path


def test_stream_names_a_connection_refused_with_the_url_and_exits_1(
    capsys: pytest.CaptureFixture[str], wav: Path
) -> None:
    """Nothing listens: exit 1 and the URL with the error, not the WAV blamed (2)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    status, err = stream_command(capsys, wav, f"ws://u:secret@127.0.0.1:{port}")
    assert status == 1, err
    assert err.startswith(f"voxgate stream: ws://***@127.0.0.1:{port}: "), err
    assert "secret" not in err and str(wav) not in err and len(err.splitlines()) == 1
    assert err.strip().split(": ", 2)[2], err  # an error message, not empty


def test_stream_names_a_timeout_and_exits_1(
    capsys: pytest.CaptureFixture[str], wav: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that accepts and never answers the handshake: exit 1, "timed out"."""
    monkeypatch.setattr(stream, "OPEN_TIMEOUT", 0.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"127.0.0.1:{silent.getsockname()[1]}"
        status, err = stream_command(capsys, wav, url)
    assert status == 1, err
    assert err == f"voxgate stream: ws://{url}: timed out (no answer)\n", err


def test_stream_reads_the_wav_before_connecting(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A file that is no WAV: exit 2 naming the file, whatever the URL (here one where
    nothing listens: the file is read first)."""
    bad = tmp_path / "not.wav"
    bad.write_bytes(b"not a wav at all")
    status, err = stream_command(capsys, bad, "ws://127.0.0.1:9")
    assert status == 2, err
    assert err.startswith(f"voxgate stream: cannot read {bad}: "), err


def test_a_refused_url_is_printed_without_its_password(
    capsys: pytest.CaptureFixture[str], wav: Path
) -> None:
    status, err = stream_command(capsys, wav, "ws://u:secret@h:")
    assert status == 2 and "secret" not in err and "***@h:" in err, err
