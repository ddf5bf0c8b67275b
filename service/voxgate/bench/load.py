"""The load: N streams of 16 kHz PCM in 50 ms frames at real-time pace.

Each stream opens a session (set-up time: connect to ``Begin``), then sends one frame
every 50 ms on its own schedule (streams are spread over the 50 ms so the load is
even). The first 8 bytes of every frame are the stream's number and the frame's
sequence (big-endian u32 each); an upstream in ``echo`` mode answers each frame at
once with ``{"type": "Echo", "n": "<16 hex digits>"}``, which gives the round trip.
After a warm-up, a measuring window counts frames, round trips, lateness of the
sender against its schedule, and messages; ``sample()`` is called at the window's
start and end so the caller can read CPU counters at exactly those instants.

Times are taken with ``perf_counter``: uvloop's ``loop.time()`` counts whole
milliseconds, which is fine for the send schedule but not for round trips.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from voxgate.bench import wsraw

SAMPLE_RATE = 16_000
FRAME_SECONDS = 0.05
FRAME_BYTES = int(SAMPLE_RATE * FRAME_SECONDS) * 2
MARK_BYTES = 8
#: As the SDK's users connect (format_turns: a final turn is followed by its formatted repeat;
#: universal-streaming sends a partial per word, where the default U3 Pro model, like
#: AssemblyAI's, speaks only at pauses).
QUERY = (
    f"?sample_rate={SAMPLE_RATE}&encoding=pcm_s16le&format_turns=true"
    "&speech_model=universal-streaming-english"
)
#: Sessions being opened at once (a burst of thousands would only measure the backlog).
OPEN_CONCURRENCY = 32
#: Deadlines: one session's set-up, and the end of all sessions after Terminate.
OPEN_TIMEOUT = 20.0
CLOSE_TIMEOUT = 10.0
#: After the window, how long late round trips may still arrive.
TRAILING_SECONDS = 0.5
#: Pace held: the sender's p99 lateness stays under one frame, and (echo) this share
#: of the window's frames came back.
PACE_LATENESS = FRAME_SECONDS
MIN_ECHOED_SHARE = 0.99
_HEADER = wsraw.frame_header(wsraw.OP_BINARY, FRAME_BYTES)
_MARK = struct.Struct("!II")
_TERMINATE = json.dumps({"type": "Terminate"})


@dataclass
class LoadResult:
    streams: int
    opened: int = 0
    failed_open: list[str] = field(default_factory=list)
    setup_seconds: list[float] = field(default_factory=list)
    #: From the first connect to the last ``Begin``.
    open_wall_seconds: float = 0.0
    window_seconds: float = 0.0
    frames_sent: int = 0
    #: Frames sent in the window per target (``urls[i]``), when the load is shared.
    frames_by_target: list[int] = field(default_factory=list)
    frames_echoed: int = 0
    rtts: list[float] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)
    messages: int = 0
    turns: int = 0
    closed_early: int = 0
    close_codes: dict[int, int] = field(default_factory=dict)
    samples: list[Any] = field(default_factory=list)


def silence_frames() -> list[bytes]:
    return [bytes(FRAME_BYTES - MARK_BYTES)]


def speech_like_frames(
    speech_seconds: float = 2.6, pause_seconds: float = 0.6, seed: int = 7
) -> list[bytes]:
    """A loop of noise shaped like syllables (about 4 per second), then a pause.

    Not speech, but what an energy detector sees in speech: bursts of sound at
    conversational level with short dips between syllables and a longer pause
    between phrases.
    """
    rng = random.Random(seed)
    frames: list[bytes] = []
    per_frame = FRAME_BYTES // 2
    total = round((speech_seconds + pause_seconds) / FRAME_SECONDS)
    speech = round(speech_seconds / FRAME_SECONDS)
    for index in range(total):
        samples = []
        for i in range(per_frame):
            t = (index * per_frame + i) / SAMPLE_RATE
            envelope = 0.55 + 0.45 * math.sin(2 * math.pi * 4.0 * t) if index < speech else 0.0
            samples.append(int(envelope * rng.gauss(0.0, 5000.0)))
        clipped = [max(-32768, min(32767, s)) for s in samples]
        frames.append(struct.pack(f"<{per_frame}h", *clipped)[MARK_BYTES:])
    return frames


class _Stream:
    __slots__ = (
        "begun",
        "body",
        "client",
        "closed_at",
        "due",
        "gen",
        "handle",
        "index",
        "sent_at",
        "seq",
    )

    def __init__(self, gen: _Generator, index: int) -> None:
        self.gen = gen
        self.index = index
        self.client: wsraw.RawClient | None = None
        self.begun: asyncio.Future[None] = gen.loop.create_future()
        self.seq = 0
        self.due = 0.0
        self.sent_at: dict[int, float] = {}
        self.handle: asyncio.TimerHandle | None = None
        self.body = index  # offset into the audio loop, so streams are not in step
        self.closed_at: float | None = None

    def on_text(self, text: str) -> None:
        gen = self.gen
        now = perf_counter()
        if text.startswith('{"type":"Echo"') or '"Echo"' in text:
            seq = int(json.loads(text)["n"][8:16], 16)
            sent = self.sent_at.pop(seq, None)
            if sent is not None and gen.measuring_from <= sent < gen.measuring_to:
                gen.result.rtts.append(now - sent)
            return
        if not self.begun.done():
            if '"Begin"' in text:
                self.begun.set_result(None)
            return
        if gen.measuring_from <= now < gen.measuring_to:
            gen.result.messages += 1
            if '"Turn"' in text:
                gen.result.turns += 1

    def on_close(self, code: int) -> None:
        gen = self.gen
        self.closed_at = gen.loop.time()
        gen.result.close_codes[code] = gen.result.close_codes.get(code, 0) + 1
        if not gen.stopping:
            gen.result.closed_early += 1
        if self.handle is not None:
            self.handle.cancel()
        if not self.begun.done():
            self.begun.set_exception(ConnectionError(f"closed {code} before Begin"))

    def tick(self) -> None:
        gen = self.gen
        loop = gen.loop
        client = self.client
        if client is None or gen.stopping or self.closed_at is not None:
            return
        seq = self.seq
        frames = gen.frames
        client.send_binary(
            _HEADER + _MARK.pack(self.index, seq), frames[(self.body + seq) % len(frames)]
        )
        now = perf_counter()
        if gen.echo:
            self.sent_at[seq] = now
        if gen.measuring_from <= now < gen.measuring_to:
            gen.result.frames_sent += 1
            gen.result.frames_by_target[self.index % len(gen.result.frames_by_target)] += 1
            gen.result.lateness.append(loop.time() - self.due)
        self.seq = seq + 1
        self.due += FRAME_SECONDS
        self.handle = loop.call_at(self.due, self.tick)


class _Generator:
    def __init__(self, frames: Sequence[bytes], echo: bool, streams: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.frames = list(frames)
        self.echo = echo
        self.result = LoadResult(streams)
        self.measuring_from = math.inf
        self.measuring_to = math.inf
        self.stopping = False


async def run_load(
    urls: Sequence[str],
    keys: Sequence[str],
    streams: int,
    *,
    seconds: float,
    warmup: float = 1.0,
    echo: bool = True,
    frames: Sequence[bytes] | None = None,
    sample: Callable[[], Any] | None = None,
) -> LoadResult:
    """Run ``streams`` sessions spread over ``urls`` (ws://HOST:PORT bases) and measure.

    Stream ``i`` goes to ``urls[j]``, ``j = i % len(urls)``, with the key ``keys[j % len(keys)]``.
    """
    gen = _Generator(frames or silence_frames(), echo, streams)
    result = gen.result
    loop = gen.loop
    targets = [url.rstrip("/") + "/v3/ws" + QUERY for url in urls]
    headers = [{"Authorization": keys[j % len(keys)]} for j in range(len(targets))]
    result.frames_by_target = [0] * len(targets)
    all_streams = [_Stream(gen, i) for i in range(streams)]
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def open_one(stream: _Stream) -> None:
        async with gate:
            started = perf_counter()
            try:
                async with asyncio.timeout(OPEN_TIMEOUT):
                    stream.client = await wsraw.connect(
                        targets[stream.index % len(targets)],
                        headers[stream.index % len(targets)],
                        stream.on_text,
                        stream.on_close,
                    )
                    await stream.begun
            except (OSError, TimeoutError, ConnectionError) as exc:
                result.failed_open.append(f"{type(exc).__name__}: {exc}"[:200])
                if stream.client is not None:
                    stream.client.abort()
                stream.client = None
                return
            result.setup_seconds.append(perf_counter() - started)
            result.opened += 1

    opened_at = perf_counter()
    await asyncio.gather(*(open_one(s) for s in all_streams))
    result.open_wall_seconds = perf_counter() - opened_at
    live = [s for s in all_streams if s.client is not None]
    try:
        start = loop.time() + FRAME_SECONDS
        for i, stream in enumerate(live):
            stream.due = start + FRAME_SECONDS * i / max(1, len(live))
            stream.handle = loop.call_at(stream.due, stream.tick)
        await asyncio.sleep(FRAME_SECONDS + warmup)
        if sample is not None:
            result.samples.append(sample())
        gen.measuring_from = perf_counter()
        gen.measuring_to = gen.measuring_from + seconds
        await asyncio.sleep(seconds)
        if sample is not None:
            result.samples.append(sample())
        result.window_seconds = perf_counter() - gen.measuring_from
        gen.measuring_to = gen.measuring_from + result.window_seconds
        await asyncio.sleep(TRAILING_SECONDS)
        result.frames_echoed = len(result.rtts)
    finally:
        gen.stopping = True
        await _close_all(live)
    return result


async def _close_all(streams: Sequence[_Stream]) -> None:
    for stream in streams:
        if stream.handle is not None:
            stream.handle.cancel()
        if stream.client is not None and stream.closed_at is None:
            stream.client.send_text(_TERMINATE)
    waits = [s.client.closed for s in streams if s.client is not None]
    if waits:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.gather(*waits, return_exceptions=True)
    for stream in streams:
        if stream.client is not None and not stream.client.closed.done():
            stream.client.abort()
