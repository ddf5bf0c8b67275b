"""Transcripts to Redis, off the hot path, losing nothing that can be kept.

Sessions hand envelopes to :meth:`Publisher.publish`, which never blocks and never
touches the network: the envelope joins a bounded in-memory backlog. One task
drains the backlog to Redis in order, in batches (one Lua script call each):

* pub/sub: every envelope on ``voxgate:session:<id>``, and on ``voxgate:tag:<tag>``
  when the client tagged its session;
* stream ``voxgate:transcripts`` (XADD, approximate MAXLEN): lifecycle events and
  final turns (partials too when ``VOXGATE_STREAM_PARTIALS=true``).

When Redis is slow or down the backlog waits and is delivered in order when it
returns (at least once: a batch cut by a failure may be sent again; ``seq``
tells duplicates). When the backlog is full, partials are shed before finals.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .backlog import Backlog
from .logs import get_logger
from .metrics import Metrics

STREAM_KEY = "voxgate:transcripts"
#: Upstream message types that go to the stream like final turns (others are live only).
_KEPT_TYPES = frozenset({"Begin", "Termination", "Error"})
SESSION_CHANNEL = "voxgate:session:{}"
TAG_CHANNEL = "voxgate:tag:{}"
#: Envelopes sent to Redis in one script call.
BATCH = 100
#: Envelopes encoded between two yields to the event loop while a batch is built
#: (about 20 us of CPU each): a big batch must not hold up the frames being relayed.
PREPARE_SLICE = 16
#: After the backlog wakes from empty, how long more envelopes may gather before the
#: batch goes out: one script call per burst, not per envelope (a call costs about
#: 200 us of CPU on top of its envelopes). Delays an envelope by at most this.
BATCH_LINGER = 0.02
#: One batch is one script call: a pipeline of PUBLISH and XADD costs redis-py about
#: 60 us of CPU per envelope (packing, then one reply read per command), the script
#: about a third of that (README: Performance). ARGV[1] is the stream's MAXLEN, then
#: per envelope: the number of channels N, N channels, the envelope's JSON, 1 when it
#: goes to the stream (else 0), its session id and seq.
PUBLISH_LUA = """
local maxlen = ARGV[1]
local i = 2
local n = #ARGV
while i <= n do
  local channels = tonumber(ARGV[i])
  local text = ARGV[i + channels + 1]
  for c = 1, channels do
    redis.call('PUBLISH', ARGV[i + c], text)
  end
  i = i + channels + 2
  if ARGV[i] == '1' then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*',
      'session_id', ARGV[i + 1], 'seq', ARGV[i + 2], 'envelope', text)
  end
  i = i + 3
end
return 1
"""
#: Deadline of one Redis command or connection attempt.
REDIS_TIMEOUT = 2.0
#: Wait between attempts while Redis is down: doubles up to the maximum.
RETRY_MIN = 0.2
RETRY_MAX = 5.0
#: On shutdown, how long the backlog may take to reach Redis.
FLUSH_TIMEOUT = 5.0

log = get_logger("voxgate.redis")


@dataclass(frozen=True, slots=True)
class Envelope:
    body: dict[str, Any]
    channels: tuple[str, ...]
    to_stream: bool
    #: The upstream message as it came (``body["message"]`` parsed): spliced into
    #: the envelope's JSON as it is, not encoded again.
    raw_message: str | None = None

    def text(self) -> str:
        if self.raw_message is None:
            return json.dumps(self.body, separators=(",", ":"))
        head = {k: v for k, v in self.body.items() if k != "message"}
        return json.dumps(head, separators=(",", ":"))[:-1] + ',"message":' + self.raw_message + "}"


class SessionPublisher:
    """Numbers and wraps one session's events.

    ``seq`` counts every envelope of the session from 0 (pub/sub carries them all);
    ``stream_seq`` counts those that go to the stream, also from 0.
    """

    def __init__(self, publisher: Publisher, session_id: str, client: str, tag: str | None) -> None:
        self._publisher = publisher
        self.session_id = session_id
        self.client = client
        self.tag = tag
        self._seq = 0
        self._stream_seq = 0
        channels = [SESSION_CHANNEL.format(session_id)]
        if tag:
            channels.append(TAG_CHANNEL.format(tag))
        self._channels = tuple(channels)

    def _emit(
        self,
        event: str,
        payload: dict[str, Any],
        *,
        final: bool,
        stream: bool,
        raw_message: str | None = None,
    ) -> None:
        body = {
            "event": event,
            "session_id": self.session_id,
            "client": self.client,
            "tag": self.tag,
            "seq": self._seq,
            "instance": self._publisher.instance,
            "ts": round(time.time(), 6),
            **payload,
        }
        self._seq += 1
        if stream:
            # Consecutive over what goes to the stream, so a stream reader can see a gap.
            body["stream_seq"] = self._stream_seq
            self._stream_seq += 1
        self._publisher.publish(Envelope(body, self._channels, stream, raw_message), final=final)

    def started(self, params: dict[str, str]) -> None:
        self._emit("session.started", {"params": params}, final=True, stream=True)

    def message(self, raw: str, message: dict[str, Any]) -> None:
        """Final turns and the session's Begin, Termination and Error are kept (the
        stream, never shed first); partials and every other type (Heartbeat,
        SpeechStarted, unknown ones) are live only: pub/sub, and shed first."""
        kind = message.get("type")
        final = bool(message.get("end_of_turn")) if kind == "Turn" else kind in _KEPT_TYPES
        stream = final or self._publisher.stream_partials
        self._emit("message", {"message": message}, final=final, stream=stream, raw_message=raw)

    def ended(self, **summary: Any) -> None:
        self._emit("session.ended", summary, final=True, stream=True)


class Publisher:
    def __init__(
        self,
        url: str,
        metrics: Metrics,
        *,
        backlog: int,
        stream_maxlen: int,
        stream_partials: bool,
        instance: str | None = None,
    ) -> None:
        self.instance = instance or socket.gethostname()
        self.stream_partials = stream_partials
        self._stream_maxlen = stream_maxlen
        self._metrics = metrics
        self._backlog: Backlog[Envelope] = Backlog(backlog)
        self._wake = asyncio.Event()
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
        )
        self._publish_script = self._redis.register_script(PUBLISH_LUA)
        self.up: bool | None = None  # None: not tried yet
        self._task: asyncio.Task[None] | None = None

    def session(self, session_id: str, client: str, tag: str | None) -> SessionPublisher:
        return SessionPublisher(self, session_id, client, tag)

    def publish(self, envelope: Envelope, *, final: bool) -> None:
        """Queue ``envelope``; never blocks. A full backlog sheds a partial first."""
        dropped = self._backlog.push(envelope, final=final)
        if dropped is not None:
            kind = "final" if dropped.final else "partial"
            self._metrics.redis_dropped.labels(kind).inc()
        self._metrics.redis_backlog.set(len(self._backlog))
        self._wake.set()

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="redis-publisher")

    async def close(self) -> None:
        """Stop the sending task, flush what is waiting (bounded by FLUSH_TIMEOUT).
        The task goes first so that two senders never pop the same batch; a batch it
        had sent but not yet popped goes again (at least once: ``seq`` tells)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            async with asyncio.timeout(FLUSH_TIMEOUT):
                while len(self._backlog) and self.up is not False:
                    await self._send_batch()
        except (TimeoutError, RedisError, OSError):
            pass
        if len(self._backlog):
            log.warning("redis_backlog_lost_on_shutdown", envelopes=len(self._backlog))
        await self._redis.aclose()

    async def _run(self) -> None:
        delay = RETRY_MIN
        while True:
            if not len(self._backlog):
                self._wake.clear()
                await self._wake.wait()
                await asyncio.sleep(BATCH_LINGER)
                continue
            try:
                await self._send_batch()
            except (RedisError, OSError) as exc:
                self._set_up(False, type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX, delay * 2)
                continue
            delay = RETRY_MIN

    async def _send_batch(self) -> None:
        batch = self._backlog.peek(BATCH)
        started = time.perf_counter()
        args: list[str | int] = [self._stream_maxlen]
        for i, entry in enumerate(batch):
            if i and not i % PREPARE_SLICE:
                await asyncio.sleep(0)  # let frames through: the batch waits, not they
            envelope = entry.item
            body = envelope.body
            args.append(len(envelope.channels))
            args.extend(envelope.channels)
            args += (
                envelope.text(),
                1 if envelope.to_stream else 0,
                body["session_id"],
                body["seq"],
            )
        await self._publish_script(keys=[STREAM_KEY], args=args)
        self._backlog.pop(len(batch))
        self._metrics.redis_publish_seconds.observe(time.perf_counter() - started)
        self._metrics.redis_published.inc(len(batch))
        self._metrics.redis_backlog.set(len(self._backlog))
        self._set_up(True, "")

    @property
    def state(self) -> str:
        return {None: "unknown", True: "up", False: "down"}[self.up]

    def _set_up(self, up: bool, why: str) -> None:
        if up != self.up:
            if up and self.up is False:
                self._metrics.reconnects.labels("redis").inc()
            self.up = up
            self._metrics.redis_up.set(1.0 if up else 0.0)
            if up:
                log.info("redis_up", backlog=len(self._backlog))
            else:
                log.warning("redis_down", error=why, backlog=len(self._backlog))
