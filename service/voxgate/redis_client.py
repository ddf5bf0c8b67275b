"""Connections to Redis: one deadline for every command, one way to open a client.

The transcript publisher and the shared key pool both talk to the Redis of
``VOXGATE_REDIS_URL``; each opens its own client here, with the same deadlines.
(``voxgate tail`` opens its own client: its reads block on purpose.)
"""

from __future__ import annotations

import redis.asyncio as aioredis

#: Deadline of one Redis command or connection attempt: a Redis that takes longer is
#: treated as down (the publisher keeps a backlog, the key pool goes local).
REDIS_TIMEOUT = 2.0


def connect(
    url: str, *, timeout: float = REDIS_TIMEOUT, decode_responses: bool = False
) -> aioredis.Redis:
    """A client for ``url`` (it connects on its first command)."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=decode_responses,
    )
