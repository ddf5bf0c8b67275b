"""Transcripts to Redis, off the hot path, losing nothing that can be kept.

Sessions hand envelopes to :meth:`Publisher.publish`, which never blocks and never
touches the network: the envelope joins a bounded in-memory backlog. One task
drains the backlog to Redis in order, in batches (one Lua script call each):

* pub/sub: every envelope on ``voxgate:session:<id>``, and on
  ``voxgate:tag:<client>:<tag>`` when the client tagged its session (the tag is the
  authenticated client's own: no client can publish into another's channel);
* stream ``voxgate:transcripts`` (XADD, approximate MAXLEN): lifecycle events and
  final turns (partials too when ``VOXGATE_STREAM_PARTIALS=true``).

When Redis is slow or down the backlog waits and is delivered in order when it
returns (at least once: a batch cut by a failure may be sent again; ``seq``
tells duplicates). When the backlog is full, partials are shed before finals.

On Sentinel or a Cluster (docs/operations.md, "Redis topologies"): the stream is
split into shards and the channels are named by :mod:`voxgate.transcripts.shards`;
a batch goes out as one script call per shard it touches; the script skips stream
envelopes it already has (so a batch sent again after a failover adds nothing
twice); and with ``VOXGATE_REDIS_WAIT_REPLICAS`` a batch that holds stream envelopes
leaves the backlog only once that many replicas acknowledged it (``WAIT``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError, RedisError

from voxgate.logs import get_logger
from voxgate.metrics.gateway import Metrics
from voxgate.redis_client import REDIS_TIMEOUT, KeyedWriter, RedisTopology, connect
from voxgate.transcripts.backlog import Backlog
from voxgate.transcripts.shards import SESSION_CHANNEL, STREAM_KEY, TAG_CHANNEL, ShardLayout

__all__ = ["SESSION_CHANNEL", "STREAM_KEY", "TAG_CHANNEL", "Envelope", "Publisher"]

#: Upstream message types that go to the stream like final turns (others are live only).
_KEPT_TYPES = frozenset({"Begin", "Termination", "Error"})
#: Envelopes sent to Redis in one script call.
BATCH = 100
#: After the backlog wakes from empty, how long more envelopes may gather before the
#: batch goes out: one script call per burst, not per envelope (a call costs about
#: 200 us of CPU on top of its envelopes). Delays an envelope by at most this.
BATCH_LINGER = 0.02
#: One batch is one script call, with one argument per envelope: a pipeline of
#: PUBLISH and XADD cost redis-py about 60 us of CPU per envelope (packing, then one
#: reply read per command), a script with six arguments per envelope 40 us, this
#: one about half that (docs/performance.md). ARGV[1] is the stream's MAXLEN; each
#: further argument is a header line of decimal fields, "S SEQ L0 L1 [L2]": S is 1
#: when the envelope goes to the stream, L0 the byte length of the session id, L1
#: (L2) those of its channels; then, with no separator, the session id, the
#: channels, and the envelope's JSON (all the rest).
PUBLISH_LUA = (resources.files("voxgate.transcripts") / "lua" / "publish.lua").read_text()
PUBLISH_SHA = hashlib.sha1(PUBLISH_LUA.encode()).hexdigest()
#: How long the duplicate guard remembers a session's last stream seq (seconds): longer
#: than any wait of a batch to be sent again.
GUARD_SECONDS = 3600
#: Wait between attempts while Redis is down: doubles up to the maximum.
RETRY_MIN = 0.2
RETRY_MAX = 5.0
#: On shutdown, how long the backlog may take to reach Redis (part of the stop budget,
#: ``server.stop_budget_seconds``), and the wait between two tries within it.
FLUSH_TIMEOUT = 5.0
FLUSH_RETRY = 0.1

log = get_logger("voxgate.redis")


@dataclass(frozen=True, slots=True)
class Envelope:
    #: The envelope's JSON, as published.
    text: str
    #: Its header for the publish script: fields, session id and channels.
    header: str
    to_stream: bool
    #: The stream shard's key (the batch is split by it).
    key: str = STREAM_KEY

    def script_arg(self) -> str:
        return self.header + self.text


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _utf8_len(text: str) -> int:
    return len(text.encode())


class SessionPublisher:
    """Numbers and wraps one session's events.

    ``seq`` counts every envelope of the session from 0 (pub/sub carries them all);
    ``stream_seq`` counts those that go to the stream, also from 0. What stays the
    same for the session (its id, client, tag, channels) is encoded once: an
    upstream message costs one string format, and is spliced in as it came.
    """

    def __init__(self, publisher: Publisher, session_id: str, client: str, tag: str | None) -> None:
        self._publisher = publisher
        # The id comes from upstream: a lone surrogate (JSON allows "\ud800") cannot be
        # encoded for Redis, and it is in the channel name and the script's header.
        session_id = session_id.encode(errors="backslashreplace").decode()
        self.session_id = session_id
        self.client = client
        self.tag = tag
        self._seq = 0
        self._stream_seq = 0
        layout = publisher.layout
        channels = layout.channels(session_id, client, tag)
        self._channels = tuple(channels)
        self._key = layout.stream_key(layout.shard(session_id))
        lengths = " ".join(str(_utf8_len(x)) for x in (session_id, *channels))
        self._header_tail = f" {lengths}\n{session_id}{''.join(channels)}"
        # A "message" envelope up to its seq, then from the instance up to its ts.
        self._message_head = (
            f'{{"event":"message","session_id":{_json(session_id)},"client":{_json(client)},'
            f'"tag":{_json(tag)},"seq":'
        )
        self._instance = f',"instance":{_json(publisher.instance)},"ts":'

    def _publish(self, text: str, seq: int, *, final: bool, stream: bool) -> None:
        header = f"{1 if stream else 0} {seq}{self._header_tail}"
        self._publisher.publish(Envelope(text, header, stream, self._key), final=final)

    def _emit(self, event: str, payload: dict[str, Any], *, final: bool) -> None:
        """A lifecycle event (these always go to the stream)."""
        body = {
            "event": event,
            "session_id": self.session_id,
            "client": self.client,
            "tag": self.tag,
            "seq": self._seq,
            "instance": self._publisher.instance,
            "ts": round(time.time(), 6),
            **payload,
            "stream_seq": self._stream_seq,
        }
        self._publish(_json(body), self._seq, final=final, stream=True)
        self._seq += 1
        self._stream_seq += 1

    def started(self, params: dict[str, str]) -> None:
        self._emit("session.started", {"params": params}, final=True)

    def message(self, raw: str, message: dict[str, Any]) -> None:
        """``raw`` as it came from upstream, ``message`` parsed. Final turns and the
        session's Begin, Termination and Error are kept (the stream, never shed
        first); partials and every other type (Heartbeat, SpeechStarted, unknown
        ones) are live only: pub/sub, and shed first."""
        kind = message.get("type")
        final = bool(message.get("end_of_turn")) if kind == "Turn" else kind in _KEPT_TYPES
        stream = final or self._publisher.stream_partials
        seq = self._seq
        ts = repr(round(time.time(), 6))
        if stream:
            text = (
                f'{self._message_head}{seq}{self._instance}{ts},"stream_seq":{self._stream_seq}'
                f',"message":{raw}}}'
            )
            self._stream_seq += 1
        else:
            text = f'{self._message_head}{seq}{self._instance}{ts},"message":{raw}}}'
        self._seq += 1
        self._publish(text, seq, final=final, stream=stream)

    def ended(self, **summary: Any) -> None:
        self._emit("session.ended", summary, final=True)


class Publisher:
    def __init__(
        self,
        redis: RedisTopology | str,
        metrics: Metrics,
        *,
        backlog: int,
        stream_maxlen: int,
        stream_partials: bool,
        instance: str | None = None,
        shards: int = 1,
    ) -> None:
        topology = RedisTopology(redis) if isinstance(redis, str) else redis
        self.instance = instance or socket.gethostname()
        self.stream_partials = stream_partials
        self.layout = ShardLayout(shards, topology.cluster)
        # The guard costs a GET and a SET per stream envelope in Redis: on where a
        # batch may be sent again to a promoted replica, or is retried after a WAIT.
        highly_available = topology.kind != "single" or topology.wait_replicas > 0
        self._head: list[str | int] = [
            stream_maxlen,
            self.layout.publish_command,
            GUARD_SECONDS if highly_available else 0,
        ]
        self._metrics = metrics
        self._backlog: Backlog[Envelope] = Backlog(backlog)
        metrics.redis_backlog.set_function(lambda: len(self._backlog))  # read when scraped
        self._wake = asyncio.Event()
        self._redis = connect(topology)
        self._writer = KeyedWriter(self._redis, topology, timeout=REDIS_TIMEOUT)
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
        self._wake.set()

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="redis-publisher")

    async def close(self) -> None:
        """Stop the sending task, then flush what is waiting within FLUSH_TIMEOUT,
        whatever the task last saw: Redis may have come back while the task waited
        out its retry delay, so every batch is tried, and tried again after a failure,
        until the backlog is empty or the time is up. The task goes first so that two
        senders never pop the same batch; a batch it had sent but not yet popped goes
        again (at least once: ``seq`` tells)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FLUSH_TIMEOUT):
                while len(self._backlog):
                    try:
                        await self._send_batch()
                    except (RedisError, OSError) as exc:
                        self._set_up(False, type(exc).__name__)
                        await asyncio.sleep(FLUSH_RETRY)
        if len(self._backlog):
            log.warning("redis_backlog_lost_on_shutdown", envelopes=len(self._backlog))
        await self._writer.aclose()
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
        # Each envelope was encoded when it was queued: this is one join per envelope.
        if not self.layout.sharded:
            await self._send_shard(STREAM_KEY, [entry.item for entry in batch])
        else:
            by_key: dict[str, list[Envelope]] = {}
            for entry in batch:
                by_key.setdefault(entry.item.key, []).append(entry.item)
            for key, envelopes in by_key.items():
                await self._send_shard(key, envelopes)
        self._backlog.pop(len(batch))
        self._metrics.redis_publish_seconds.observe(time.perf_counter() - started)
        self._metrics.redis_published.inc(len(batch))
        self._set_up(True, "")

    async def _send_shard(self, key: str, envelopes: list[Envelope]) -> None:
        """One script call; acknowledged by replicas (WAIT) when it holds stream
        envelopes and WAIT is asked for (partials alone are live only)."""
        args = self._head + [envelope.script_arg() for envelope in envelopes]
        command = ("EVALSHA", PUBLISH_SHA, 1, key, *args)
        matters = self._writer.waits and any(envelope.to_stream for envelope in envelopes)
        try:
            await self._writer.run(key, [command], acknowledged=matters)
        except NoScriptError:
            await self._writer.run(key, [("SCRIPT", "LOAD", PUBLISH_LUA)], acknowledged=False)
            await self._writer.run(key, [command], acknowledged=matters)

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
