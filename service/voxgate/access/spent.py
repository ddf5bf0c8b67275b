"""Temporary tokens spent once across every replica: ``SET NX`` in Redis.

Each replica refuses a token it has seen (:class:`~voxgate.access.tokens.UsedTokens`,
in memory). With Redis configured, a token is also written as
``voxgate:token:<id>`` with ``SET NX`` expiring when the token does: the first
replica to write it wins, every other replica (and this one again) is refused
(1008, as a reuse). One key per token: cluster-safe as it is. With
``VOXGATE_REDIS_WAIT_REPLICAS``, the write is acknowledged by replicas first, so a
failover right after does not forget it.

When Redis does not answer within its deadline the replica's own check stands
(the token is admitted once per replica during the outage), logged as
``token_spend_local``: a choice of availability over a strict single use while Redis
is down (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import math

from redis.exceptions import RedisError

from voxgate.logs import get_logger
from voxgate.redis_client import REDIS_TIMEOUT, KeyedWriter, NotReplicated, RedisTopology, connect

TOKEN_KEY = "voxgate:token:{}"
#: The key outlives the token by this much (ms): clocks of replicas and Redis differ.
SLACK_MS = 5_000

log = get_logger("voxgate.tokens")


class SpentTokens:
    def __init__(self, topology: RedisTopology, *, timeout: float = REDIS_TIMEOUT) -> None:
        self._redis = connect(topology, timeout=timeout)
        self._writer = KeyedWriter(self._redis, topology, timeout=timeout)
        self._timeout = timeout
        #: Times Redis did not answer and the replica's own check stood.
        self.local = 0

    async def spend(self, token_id: str, expires_at: float) -> bool | None:
        """True when this is the token's first use anywhere, False when some replica
        spent it before, None when Redis did not say (the caller's local check stands)."""
        key = TOKEN_KEY.format(token_id)
        until = math.ceil(expires_at * 1000) + SLACK_MS
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._writer.run(key, [("SET", key, "1", "NX", "PXAT", until)])
        except NotReplicated as short:
            log.warning("token_spend_unreplicated", detail=str(short)[:200])
            reply = short.reply
        except (RedisError, OSError, TimeoutError) as exc:
            self.local += 1
            log.warning("token_spend_local", error=type(exc).__name__, detail=str(exc)[:200])
            return None
        return reply is not None

    async def give_back(self, token_id: str) -> None:
        """Un-spend a token whose session never began (no upstream for it): its retry is
        then refused for the same reason as the first try, not as a reuse. Best effort:
        a Redis that does not answer leaves the token spent."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.delete(TOKEN_KEY.format(token_id))
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("token_give_back_failed", error=type(exc).__name__)

    async def close(self) -> None:
        await self._writer.aclose()
        await self._redis.aclose()
