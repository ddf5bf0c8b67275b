"""``voxgate tail``: follow transcripts in Redis, live or from the stream.

It reads the gateway's Redis settings (``VOXGATE_REDIS_*``, ``VOXGATE_STREAM_SHARDS``)
and follows every stream shard, and on a cluster every shard's sharded channels
(:mod:`voxgate.transcripts.shards`); order holds within a session, not across shards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from voxgate.protocol import TAG_PATTERN
from voxgate.redis_client import Client, RedisTopology, connect
from voxgate.settings import SettingsError, read_redis, read_stream_shards
from voxgate.transcripts.publisher import SESSION_CHANNEL, STREAM_KEY, TAG_CHANNEL
from voxgate.transcripts.shards import ShardLayout

#: How long one blocking stream read waits before looking again (milliseconds).
STREAM_BLOCK_MS = 1000
#: Entries read from the stream per call.
STREAM_COUNT = 200
#: On a cluster the shards are read in turn without blocking; the pause when all were
#: empty (seconds).
CLUSTER_IDLE = 0.2
#: On a cluster, the pause when no shard's node had a message (seconds).
LIVE_IDLE = 0.02
#: Deadline of a command; above STREAM_BLOCK_MS.
TAIL_TIMEOUT = 10.0
#: A client name, as VOXGATE_CLIENT_KEYS allows them (no ``:`` and no glob characters).
CLIENT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


HELP = "follow transcripts published to Redis"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", help="Redis URL (default: env VOXGATE_REDIS_URL)")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="--redis is a seed node of a Redis Cluster (default: env VOXGATE_REDIS_CLUSTER)",
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=0,
        help="stream shards (default: env VOXGATE_STREAM_SHARDS; 16 on a cluster, else 1)",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--session", help="only this session id")
    which.add_argument(
        "--tag",
        help="only sessions with this voxgate_tag (of the --client given, else of any client)",
    )
    parser.add_argument(
        "--client",
        help="only sessions of this client (a name of VOXGATE_CLIENT_KEYS; with --tag, "
        "follows voxgate:tag:<client>:<tag>)",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help=f"read the durable stream {STREAM_KEY} instead of live pub/sub",
    )
    parser.add_argument(
        "--from-start", action="store_true", help="with --stream: from the oldest entry"
    )
    parser.add_argument("--partials", action="store_true", help="print partial turns too")
    parser.add_argument("--json", action="store_true", help="print raw envelopes")
    parser.add_argument("--limit", type=int, default=0, help="stop after N envelopes (0: never)")


def render_envelope(envelope: dict[str, Any], *, partials: bool) -> str | None:
    """One line for an envelope, or None for what is not shown."""
    who = envelope.get("session_id", "?")[:8]
    tag = envelope.get("tag")
    prefix = f"[{who}{' ' + tag if tag else ''}]"
    event = envelope.get("event")
    if event == "session.started":
        return f"{prefix} session started (client {envelope.get('client')})"
    if event == "session.ended":
        return (
            f"{prefix} session ended: {envelope.get('outcome')}, "
            f"{envelope.get('audio_seconds')} s of audio, close {envelope.get('close_code')}"
        )
    message = envelope.get("message") or {}
    kind = message.get("type")
    if kind == "Turn":
        if message.get("end_of_turn"):
            label = "final*" if message.get("turn_is_formatted") else "final "
            return f"{prefix} #{message.get('turn_order')} {label} {message.get('transcript')}"
        if partials:
            return f"{prefix} #{message.get('turn_order')} …      {message.get('transcript')}"
        return None
    if kind == "Error":
        return f"{prefix} error {message.get('error_code')}: {message.get('error')}"
    return None


def _matches(envelope: dict[str, Any], ns: argparse.Namespace) -> bool:
    if ns.session and envelope.get("session_id") != ns.session:
        return False
    if ns.client and envelope.get("client") != ns.client:
        return False
    return not (ns.tag and envelope.get("tag") != ns.tag)


def target(ns: argparse.Namespace) -> tuple[RedisTopology, ShardLayout]:
    """Where to read: the gateway's settings, overridden by the command line."""
    env = dict(os.environ)
    if ns.redis:
        env["VOXGATE_REDIS_URL"] = ns.redis
    if ns.cluster:
        env["VOXGATE_REDIS_CLUSTER"] = "true"
    if ns.shards:
        env["VOXGATE_STREAM_SHARDS"] = str(ns.shards)
    topology = read_redis(env) or RedisTopology("redis://127.0.0.1:6379/0")
    return topology, ShardLayout(read_stream_shards(env), topology.cluster)


async def follow(ns: argparse.Namespace) -> int:
    if ns.tag and not TAG_PATTERN.fullmatch(ns.tag):
        print("voxgate tail: --tag is not a valid tag", file=sys.stderr)
        return 2
    if ns.client and not CLIENT_NAME.match(ns.client):
        print("voxgate tail: --client is not a valid client name", file=sys.stderr)
        return 2
    try:
        topology, layout = target(ns)
    except SettingsError as exc:
        print(f"voxgate tail: {exc}", file=sys.stderr)
        return 2
    url = topology.describe() if topology.sentinels or topology.url is None else topology.url
    client = connect(topology, timeout=TAIL_TIMEOUT)
    shown = 0
    try:
        source = _stream(client, layout, ns) if ns.stream else _live(client, layout, ns)
        async for envelope in source:
            if not _matches(envelope, ns):
                continue
            line = (
                json.dumps(envelope) if ns.json else render_envelope(envelope, partials=ns.partials)
            )
            if line is not None:
                print(line, flush=True)
            shown += 1
            if ns.limit and shown >= ns.limit:
                break
    except RedisError as exc:
        print(f"voxgate tail: Redis at {url}: {exc}", file=sys.stderr)
        return 1
    finally:
        await client.aclose()
    return 0


async def _live(client: Client, layout: ShardLayout, ns: argparse.Namespace) -> Any:
    if isinstance(client, RedisCluster):
        async for envelope in _live_sharded(client, layout, ns):
            yield envelope
        return
    pubsub = client.pubsub()
    if ns.session:
        await pubsub.subscribe(layout.session_channel(ns.session))
    elif ns.tag and ns.client:
        await pubsub.subscribe(*layout.tag_channels(ns.client, ns.tag))
    elif ns.tag:  # this tag of every client (names and tags hold no glob characters)
        await pubsub.psubscribe(TAG_CHANNEL.format("*", ns.tag))
    else:
        await pubsub.psubscribe(SESSION_CHANNEL.format("*"))
    try:
        while True:
            item = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if item is not None and item["type"] in ("message", "pmessage"):
                yield json.loads(item["data"])
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped


async def _live_sharded(client: RedisCluster, layout: ShardLayout, ns: argparse.Namespace) -> Any:
    """Sharded pub/sub: one subscription per shard's channel, on the node owning it."""
    await client.initialize()  # the slot map, to find each channel's node
    pubsub = client.pubsub()
    if ns.session:
        channels = [layout.session_channel(ns.session)]
    elif ns.tag and ns.client:
        channels = layout.tag_channels(ns.client, ns.tag)
    else:  # every envelope of every shard; a tag of any client is filtered here
        channels = layout.live_channels()
    await pubsub.ssubscribe(*channels)
    try:
        while True:
            # Without blocking: redis-py waits out the timeout on each node in turn.
            item = await pubsub.get_sharded_message(ignore_subscribe_messages=True)
            if item is None:
                await asyncio.sleep(LIVE_IDLE)
            elif item["type"] == "smessage":
                yield json.loads(item["data"])
    finally:
        await pubsub.aclose()


async def _stream(client: Client, layout: ShardLayout, ns: argparse.Namespace) -> Any:
    keys = layout.stream_keys()
    if isinstance(client, RedisCluster):
        async for envelope in _stream_sharded(client, keys, ns):
            yield envelope
        return
    last: dict[Any, Any] = {key: "0-0" if ns.from_start else "$" for key in keys}
    if len(keys) > 1 and not ns.from_start:  # "$" again at each read would miss entries
        for key in keys:
            newest: Any = await client.xrevrange(key, count=1)
            last[key] = newest[0][0] if newest else "0-0"
    while True:
        entries: Any = await client.xread(last, count=STREAM_COUNT, block=STREAM_BLOCK_MS)
        for stream_name, items in entries or []:
            for entry_id, fields in items:
                last[stream_name.decode()] = entry_id
                yield json.loads(fields[b"envelope"])


async def _stream_sharded(client: RedisCluster, keys: list[str], ns: argparse.Namespace) -> Any:
    """One key per read on a cluster (keys of several slots cannot share a command)."""
    last: dict[str, Any] = {}
    for key in keys:
        newest: Any = [] if ns.from_start else await client.xrevrange(key, count=1)
        last[key] = newest[0][0] if newest else "0-0"
    while True:
        got = False
        for key in keys:
            entries: Any = await client.xread({key: last[key]}, count=STREAM_COUNT)
            for _stream_name, items in entries or []:
                for entry_id, fields in items:
                    got = True
                    last[key] = entry_id
                    yield json.loads(fields[b"envelope"])
        if not got:
            await asyncio.sleep(CLUSTER_IDLE)


def run(ns: argparse.Namespace) -> int:
    try:
        return asyncio.run(follow(ns))
    except KeyboardInterrupt:
        return 0
