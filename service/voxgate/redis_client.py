"""Connections to Redis: which topology, one deadline for every command, one way to
open a client, and writes acknowledged by replicas.

The transcript publisher, the shared key pool and the shared token store all talk to
the Redis the settings describe (:class:`RedisTopology`): one server
(``VOXGATE_REDIS_URL``), a primary found through Sentinel
(``VOXGATE_REDIS_SENTINELS`` + ``VOXGATE_REDIS_SENTINEL_MASTER``), or a Redis Cluster
seeded by ``VOXGATE_REDIS_URL`` (``VOXGATE_REDIS_CLUSTER=true``). Each opens its own
client here, with the same deadlines. (``voxgate tail`` opens its own, for blocking
reads.)

:class:`KeyedWriter` runs a few commands on the node that holds one key and, when
``VOXGATE_REDIS_WAIT_REPLICAS`` asks for it, ``WAIT`` on the same connection: the
write is acknowledged by that many replicas before the caller forgets it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError, ResponseError

#: Deadline of one Redis command or connection attempt: a Redis that takes longer is
#: treated as down (the publisher keeps a backlog, the key pool goes local).
REDIS_TIMEOUT = 2.0

#: Either kind of client the gateway uses (a Sentinel master is a plain client).
Client = aioredis.Redis | RedisCluster


@dataclass(frozen=True, slots=True)
class RedisTopology:
    """Where Redis is, as the settings say (validated there)."""

    #: One server; a cluster's seed node; with Sentinel only its password, user and db.
    url: str | None
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str | None = None
    cluster: bool = False
    #: ``WAIT``: replicas that must acknowledge a write that matters (0: no WAIT).
    wait_replicas: int = 0
    wait_timeout: float = 0.5

    @property
    def kind(self) -> str:
        if self.cluster:
            return "cluster"
        return "sentinel" if self.sentinels else "single"

    def describe(self) -> str:
        """For logs and errors: never the password."""
        if self.sentinels:
            where = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"sentinel {self.sentinel_master} via {where}"
        url = aioredis.connection.parse_url(self.url or "")
        return f"{self.kind} {url.get('host', '?')}:{url.get('port', 6379)}"


def connect(
    target: RedisTopology | str,
    *,
    timeout: float = REDIS_TIMEOUT,
    decode_responses: bool = False,
) -> Client:
    """A client for ``target`` (it connects on its first command)."""
    if isinstance(target, str):
        target = RedisTopology(target)
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "decode_responses": decode_responses,
    }
    if target.cluster:
        assert target.url is not None
        return RedisCluster.from_url(target.url, **common)
    if target.sentinels:
        assert target.sentinel_master is not None
        parsed: dict[str, Any] = (
            dict(aioredis.connection.parse_url(target.url)) if target.url else {}
        )
        auth = {k: parsed[k] for k in ("username", "password", "db") if parsed.get(k) is not None}
        sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            list(target.sentinels),
            sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout},
        )
        client: aioredis.Redis = sentinel.master_for(target.sentinel_master, **common, **auth)
        return client
    assert target.url is not None
    return aioredis.Redis.from_url(target.url, **common)


class NotReplicated(RedisError):
    """``WAIT`` returned fewer acknowledgements than asked for: the write is on the
    primary but may not survive its loss, so the caller keeps it to send again.
    ``reply`` is the write's own reply."""

    def __init__(self, message: str, reply: Any) -> None:
        super().__init__(message)
        self.reply = reply


class KeyedWriter:
    """Commands on the node that holds one key, in one round trip, acknowledged by
    ``wait_replicas`` replicas when asked (``WAIT`` must follow the write on the same
    connection: a pipeline on a plain or Sentinel client; on a cluster, a plain client
    per primary, found from the cluster client's slot map and refreshed on a failure).
    """

    def __init__(self, client: Client, topology: RedisTopology, *, timeout: float) -> None:
        self._client = client
        self._cluster = client if isinstance(client, RedisCluster) else None
        self._wait = topology.wait_replicas
        self._wait_ms = max(1, int(topology.wait_timeout * 1000))
        self._timeout = timeout
        self._nodes: dict[str, aioredis.Redis] = {}
        self._auth: dict[str, Any] = {}
        if self._cluster is not None and topology.url:
            parsed = dict(aioredis.connection.parse_url(topology.url))
            self._auth = {
                k: parsed[k] for k in ("username", "password") if parsed.get(k) is not None
            }
            if topology.url.startswith("rediss://"):
                self._auth["ssl"] = True
        self._stale = False

    @property
    def waits(self) -> bool:
        return self._wait > 0

    async def _node(self, key: str) -> aioredis.Redis:
        assert self._cluster is not None
        await self._cluster.initialize()  # once; then a no-op
        if self._stale:
            await self._cluster.nodes_manager.initialize()  # the slot map after a failover
            self._stale = False
        node = self._cluster.get_node_from_key(key)
        if node is None:
            raise ResponseError(f"CLUSTERDOWN no node serves {key[:60]!r}")
        client = self._nodes.get(node.name)
        if client is None:
            client = self._nodes[node.name] = aioredis.Redis(
                host=node.host,
                port=int(node.port),
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                **self._auth,
            )
        return client

    async def run(
        self, key: str, commands: list[tuple[Any, ...]], *, acknowledged: bool = True
    ) -> Any:
        """The commands on ``key``'s node; the last one's reply. With ``WAIT`` asked
        for (and ``acknowledged``), raise :class:`NotReplicated` when too few replicas
        acknowledged in time."""
        wait = self._wait if acknowledged else 0
        try:
            client: Client = self._client if self._cluster is None else await self._node(key)
            if len(commands) == 1 and not wait:
                return await client.execute_command(*commands[0])
            assert isinstance(client, aioredis.Redis)
            pipe = client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            if wait:
                pipe.execute_command("WAIT", wait, self._wait_ms)
            replies = await pipe.execute()
        except (RedisError, OSError):
            # MOVED (redis-py's MovedError), CLUSTERDOWN, READONLY, a dead node: any
            # failure may mean the slot moved. The next attempt reads the map again.
            self._stale = True
            raise
        if wait:
            acked = int(replies[-1])
            if acked < wait:
                raise NotReplicated(f"{acked} of {wait} replicas acknowledged in time", replies[-2])
            return replies[-2]
        return replies[-1]

    async def aclose(self) -> None:
        for client in self._nodes.values():
            await client.aclose()
        self._nodes.clear()
