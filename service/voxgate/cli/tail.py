"""``voxgate tail``: follow transcripts in Redis, live or from the stream."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from voxgate.protocol import TAG_PATTERN
from voxgate.transcripts.publisher import SESSION_CHANNEL, STREAM_KEY, TAG_CHANNEL

#: How long one blocking stream read waits before looking again (milliseconds).
STREAM_BLOCK_MS = 1000
#: Entries read from the stream per call.
STREAM_COUNT = 200
#: A client name, as VOXGATE_CLIENT_KEYS allows them (no ``:`` and no glob characters).
CLIENT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


HELP = "follow transcripts published to Redis"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", help="Redis URL (default: env VOXGATE_REDIS_URL)")
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


async def follow(ns: argparse.Namespace) -> int:
    url = ns.redis or os.environ.get("VOXGATE_REDIS_URL") or "redis://127.0.0.1:6379/0"
    if ns.tag and not TAG_PATTERN.fullmatch(ns.tag):
        print("voxgate tail: --tag is not a valid tag", file=sys.stderr)
        return 2
    if ns.client and not CLIENT_NAME.match(ns.client):
        print("voxgate tail: --client is not a valid client name", file=sys.stderr)
        return 2
    client = aioredis.Redis.from_url(url, socket_connect_timeout=5.0)
    shown = 0
    try:
        async for envelope in _stream(client, ns) if ns.stream else _live(client, ns):
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


async def _live(client: aioredis.Redis, ns: argparse.Namespace) -> Any:
    pubsub = client.pubsub()
    if ns.session:
        await pubsub.subscribe(SESSION_CHANNEL.format(ns.session))
    elif ns.tag and ns.client:
        await pubsub.subscribe(TAG_CHANNEL.format(ns.client, ns.tag))
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


async def _stream(client: aioredis.Redis, ns: argparse.Namespace) -> Any:
    last = "0-0" if ns.from_start else "$"
    while True:
        entries: Any = await client.xread(
            {STREAM_KEY: last}, count=STREAM_COUNT, block=STREAM_BLOCK_MS
        )
        for _stream_name, items in entries or []:
            for entry_id, fields in items:
                last = entry_id
                yield json.loads(fields[b"envelope"])


def run(ns: argparse.Namespace) -> int:
    try:
        return asyncio.run(follow(ns))
    except KeyboardInterrupt:
        return 0
