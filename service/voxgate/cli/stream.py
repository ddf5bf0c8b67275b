"""``voxgate stream FILE.wav``: stream a WAV through a gateway at real-time pace.

What a client of voxgate does, in about a hundred lines: connect with a client key,
send 16-bit PCM in frames at the pace of real time, print the turns as they arrive,
``Terminate`` at the end and wait for ``Termination``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import wave
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, WebSocketException

#: Milliseconds of audio per frame (AssemblyAI takes 50-1000; 50 is its advice).
DEFAULT_FRAME_MS = 50
#: Deadline for the handshake and Begin, and for Termination after Terminate.
OPEN_TIMEOUT = 15.0
TERMINATION_TIMEOUT = 15.0
#: The environment variable ``--key`` defaults to.
KEY_ENV = "VOXGATE_CLIENT_KEY"
_CLEAR = "\r\x1b[2K"

OnMessage = Callable[[dict[str, Any]], None]


def gateway_url(text: str) -> str:
    """The gateway's WebSocket base URL from what a user types: ``ws://`` and ``wss://``
    as given, ``http(s)://`` as ``ws(s)://``, a bare ``host:port`` (or ``host``, or
    ``[::1]:port``) as ``ws://``; a trailing ``/v3/ws`` is dropped (the client adds it).
    Raise :class:`ValueError`, in one line that never shows a password, for anything
    else."""
    text = text.strip()
    if "://" not in text:
        head = text.partition("/")[0]
        if "/" in text and head.endswith(":"):  # ws:/h:1, http:h/...
            raise ValueError(f"give {head}//HOST:PORT (two slashes after the scheme)")
        if head.count(":") > 1 and not head.startswith("["):
            raise ValueError("an IPv6 address goes in brackets: [::1]:PORT")
        text = f"ws://{text}"
    parts = urlsplit(text)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"{parts.scheme}:// is not a gateway URL (ws://, wss:// or HOST:PORT)")
    hostport = parts.netloc.rpartition("@")[2]
    if hostport.endswith(":"):
        raise ValueError("the port is empty: give HOST:PORT")
    if hostport.count(":") > 1 and not hostport.startswith("["):
        raise ValueError("an IPv6 address goes in brackets: [::1]:PORT")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port is not a number from 0 to 65535") from None
    if not parts.hostname or parts.query or parts.fragment or port == 0:
        raise ValueError("give ws://HOST:PORT, wss://HOST:PORT or HOST:PORT")
    path = parts.path.rstrip("/").removesuffix("/v3/ws").rstrip("/")
    return parts._replace(scheme=scheme, path=path).geturl()


def shown_url(url: str) -> str:
    """``url`` fit for a message: any ``user:password@`` replaced by ``***@``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    netloc, slash, tail = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return f"{scheme}{sep}{netloc}{slash}{tail}"


class StreamError(Exception):
    """The gateway ended the session with an error (code and its words)."""

    def __init__(self, code: int | None, text: str) -> None:
        super().__init__(f"closed with {code}: {text}")
        self.code = code
        self.text = text


def read_wav(path: Path) -> tuple[bytes, int]:
    """16-bit PCM mono (a stereo file is reduced to its first channel) and its rate."""
    with wave.open(str(path), "rb") as wav:
        if wav.getcomptype() != "NONE" or wav.getsampwidth() != 2:
            raise ValueError("only uncompressed 16-bit PCM WAV files can be streamed")
        channels, rate = wav.getnchannels(), wav.getframerate()
        pcm = wav.readframes(wav.getnframes())
    if channels > 1:
        samples = array("h")
        samples.frombytes(pcm)
        pcm = samples[::channels].tobytes()
    return pcm, rate


def frames(pcm: bytes, rate: int, frame_ms: int) -> list[bytes]:
    size = rate * 2 * frame_ms // 1000
    out = [pcm[i : i + size] for i in range(0, len(pcm), size)]
    if out and len(out[-1]) < size:
        out[-1] += bytes(size - len(out[-1]))  # a short last frame would be refused (3007)
    return out


def render_message(message: dict[str, Any], tty: bool, formatted: bool = True) -> str | None:
    """A line to print for a message, or None. On a terminal a partial line is
    redrawn in place (it starts with ``\\r``); elsewhere only finals are printed."""
    kind = message.get("type")
    if kind == "Begin":
        return f"session {message.get('id')} started"
    if kind == "Turn":
        text = message.get("transcript", "")
        order = message.get("turn_order")
        final = bool(message.get("end_of_turn"))
        done = final and (message.get("turn_is_formatted") or not formatted)
        if done:
            return f"{_CLEAR if tty else ''}[turn {order}] {text}"
        return f"{_CLEAR}[turn {order}] {text} …" if tty else None
    if kind == "Termination":
        return f"session ended: {message.get('audio_duration_seconds')} s of audio"
    if kind == "Error":
        return f"error {message.get('error_code')}: {message.get('error')}"
    return None


def printer(tty: bool) -> OnMessage:
    """Print each message's line; on a terminal a partial stays on its line to be redrawn."""

    def show(message: dict[str, Any]) -> None:
        line = render_message(message, tty)
        if line is not None:
            partial = line.startswith(_CLEAR) and line.endswith("…")
            print(line, end="" if partial else "\n", flush=True)

    return show


async def stream_file(
    url: str,
    key: str,
    wav: Path,
    *,
    on_message: OnMessage,
    frame_ms: int = DEFAULT_FRAME_MS,
    params: Sequence[tuple[str, str]] = (),
) -> list[dict[str, Any]]:
    """Stream ``wav`` through the gateway at ``url``; return every message received.
    Raise :class:`StreamError` when the session does not end with 1000."""
    pcm, rate = read_wav(wav)
    return await stream_pcm(
        url, key, pcm, rate, on_message=on_message, frame_ms=frame_ms, params=params
    )


async def stream_pcm(
    url: str,
    key: str,
    pcm: bytes,
    rate: int,
    *,
    on_message: OnMessage,
    frame_ms: int = DEFAULT_FRAME_MS,
    params: Sequence[tuple[str, str]] = (),
) -> list[dict[str, Any]]:
    """Stream 16-bit PCM mono at ``rate`` through the gateway at ``url`` (see
    :func:`stream_file`)."""
    query = [("sample_rate", str(rate)), ("format_turns", "true"), *params]
    received: list[dict[str, Any]] = []
    async with asyncio.timeout(OPEN_TIMEOUT):
        ws = await connect(
            f"{url.rstrip('/')}/v3/ws?{urlencode(query)}",
            additional_headers={"Authorization": key},
            compression=None,
            open_timeout=None,
        )

    async def receive() -> None:
        try:
            async for raw in ws:
                message = json.loads(raw)
                received.append(message)
                on_message(message)
        except ConnectionClosed:
            pass

    reader = asyncio.create_task(receive())
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        for index, frame in enumerate(frames(pcm, rate, frame_ms)):
            if reader.done():
                break
            await ws.send(frame)
            await asyncio.sleep(max(0.0, started + (index + 1) * frame_ms / 1000 - loop.time()))
        if not reader.done():
            await ws.send(json.dumps({"type": "Terminate"}))
        async with asyncio.timeout(TERMINATION_TIMEOUT):
            await reader
    except ConnectionClosed:
        async with asyncio.timeout(TERMINATION_TIMEOUT):
            await reader
    finally:
        reader.cancel()
        await ws.close()
    if ws.close_code != 1000:
        errors = [m for m in received if m.get("type") == "Error"]
        text = str(errors[-1].get("error")) if errors else (ws.close_reason or "")
        raise StreamError(ws.close_code, text)
    return received


# --------------------------------------------------------------------------- CLI


HELP = "stream a WAV file at real-time pace"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("wav", type=Path, help="a 16-bit PCM WAV file")
    parser.add_argument(
        "--url",
        default="ws://127.0.0.1:8080",
        help="the gateway: ws://HOST:PORT, wss://HOST:PORT or HOST:PORT",
    )
    parser.add_argument("--key", help=f"a voxgate client key (default: env {KEY_ENV})")
    parser.add_argument("--tag", help="voxgate_tag, to find the transcripts in Redis")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra query parameter (repeatable), e.g. speech_model=universal-streaming-english",
    )
    parser.add_argument("--frame-ms", type=int, default=DEFAULT_FRAME_MS, help="50-1000")


def run(ns: argparse.Namespace) -> int:
    return asyncio.run(_stream_command(ns))


async def _stream_command(ns: argparse.Namespace) -> int:
    key = ns.key or os.environ.get(KEY_ENV, "")
    if not key:
        print(f"voxgate stream: give --key or set {KEY_ENV}", file=sys.stderr)
        return 2
    params: list[tuple[str, str]] = []
    for item in ns.param:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"voxgate stream: --param {item!r} is not NAME=VALUE", file=sys.stderr)
            return 2
        params.append((name, value))
    if ns.tag:
        params.append(("voxgate_tag", ns.tag))
    try:
        url = gateway_url(ns.url)
    except ValueError as exc:
        print(f"voxgate stream: --url {shown_url(ns.url.strip())!r}: {exc}", file=sys.stderr)
        return 2
    try:  # the file first: a bad one is the user's to fix (2), before any connection
        pcm, rate = read_wav(ns.wav)
    except (OSError, ValueError, EOFError, wave.Error) as exc:
        print(f"voxgate stream: cannot read {ns.wav}: {_words(exc)}", file=sys.stderr)
        return 2
    show = printer(sys.stdout.isatty())
    try:
        await stream_pcm(url, key, pcm, rate, on_message=show, frame_ms=ns.frame_ms, params=params)
    except StreamError as exc:
        print(f"voxgate stream: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:  # an OSError too: named before the others
        print(f"voxgate stream: {shown_url(url)}: timed out (no answer)", file=sys.stderr)
        return 1
    except (OSError, WebSocketException) as exc:  # refused, unreachable, not a gateway
        print(f"voxgate stream: {shown_url(url)}: {_words(exc)}", file=sys.stderr)
        return 1
    return 0


def _words(exc: BaseException) -> str:
    """An exception in one line (its type when it has no message)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
