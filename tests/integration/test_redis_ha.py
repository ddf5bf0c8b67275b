"""The gateway on highly available Redis: a 3-primary, 3-replica Redis Cluster and a
primary, a replica and three sentinels, all real redis-server processes on this machine.

Each topology is started once for the module (parametrized, module-scoped) and every
test runs on both: two gateway processes share the key pool (a 402 seen by one retires
the key for the other, a cap holds across them), transcripts are published and read
back by ``voxgate tail``, a token used on one gateway is refused on the other, and the
primary that carries the sessions' writes is killed while 10 sessions stream: every
final a client received is on the stream exactly once, and the sessions go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel
from voxgate.bench.procs import RedisServer, Server
from voxgate.settings import DEFAULT_CLUSTER_STREAM_SHARDS
from voxgate.transcripts.shards import ShardLayout
from websockets.asyncio.client import ClientConnection

from tests.support import ROOT, audio
from tests.support.deploy import compose_binary, config_with_example, run_tool
from tests.support.gateway import (
    ADMIN_KEY,
    CLIENT_KEY,
    GatewayFactory,
    admin_keys,
    metric,
    wait_backlog_empty,
)
from tests.support.http import get_json
from tests.support.redisha import SENTINEL_MASTER, Cluster, SentinelGroup, cut_and_kill
from tests.support.wsclient import DEFAULT_QUERY, WAIT, Outcome, collect, open_client, run, session

SECRET = "a-shared-token-secret-for-the-ha-tests-0123456"
#: Sessions streaming while the primary is killed.
SESSIONS = 10
#: The replica is frozen this long, then cut off this long, before the kill (seconds):
#: several finals of the 10 sessions fall in each part.
CUT_SECONDS = 1.2


@dataclass
class HA:
    kind: str
    cluster: Cluster | None = None
    sentinels: SentinelGroup | None = None
    layout: ShardLayout = field(default_factory=ShardLayout)

    def env(self) -> dict[str, str]:
        if self.cluster is not None:
            return {"VOXGATE_REDIS_URL": self.cluster.url, "VOXGATE_REDIS_CLUSTER": "true"}
        assert self.sentinels is not None
        return {
            "VOXGATE_REDIS_SENTINELS": self.sentinels.addresses,
            "VOXGATE_REDIS_SENTINEL_MASTER": SENTINEL_MASTER,
        }

    def client(self) -> Any:
        if self.cluster is not None:
            live = next(n for n in self.cluster.nodes if n.popen is not None)
            return RedisCluster(host="127.0.0.1", port=live.port, decode_responses=True)
        assert self.sentinels is not None
        sentinel = Sentinel([("127.0.0.1", s.port) for s in self.sentinels.sentinels])
        return sentinel.master_for(SENTINEL_MASTER, decode_responses=True)

    def primary_for(self, key: str) -> RedisServer:
        if self.cluster is not None:
            return self.cluster.owner(key)
        assert self.sentinels is not None
        port = self.sentinels.master_port()
        return next(s for s in self.sentinels.servers if s.port == port)

    def servers(self) -> list[RedisServer]:
        if self.cluster is not None:
            return self.cluster.nodes
        assert self.sentinels is not None
        return self.sentinels.servers

    def wait_failover(self, dead: RedisServer, key: str) -> None:
        if self.cluster is not None:
            self.cluster.wait_failover(dead, key)
        else:
            assert self.sentinels is not None
            self.sentinels.wait_failover(dead)

    def stream(self) -> list[dict[str, Any]]:
        """Every envelope on every stream shard."""
        client = self.client()
        try:
            out: list[dict[str, Any]] = []
            for key in self.layout.stream_keys():
                out += [json.loads(f["envelope"]) for _id, f in client.xrange(key)]
            return out
        finally:
            client.close()


@pytest.fixture(scope="module", params=["cluster", "sentinel"])
def ha(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HA]:
    workdir = tmp_path_factory.mktemp(request.param)
    if request.param == "cluster":
        cluster = Cluster(workdir)
        yield HA(
            "cluster", cluster=cluster, layout=ShardLayout(DEFAULT_CLUSTER_STREAM_SHARDS, True)
        )
        cluster.stop()
    else:
        group = SentinelGroup(workdir)
        yield HA("sentinel", sentinels=group)
        group.stop()


def gateways(
    factory: GatewayFactory, ha: HA, keys: str = "main=good-key", **env: str
) -> list[Server]:
    full = {
        **ha.env(),
        "VOXGATE_ADMIN_KEY": ADMIN_KEY,
        "VOXGATE_TOKEN_SECRET": SECRET,
        "VOXGATE_REDIS_WAIT_REPLICAS": "1",
        "VOXGATE_REDIS_WAIT_TIMEOUT": "1",
        **env,
    }
    two = [factory(keys, **full), factory(keys, **full)]
    for gw in two:
        eventually(lambda gw=gw: get_json(gw.http_url + "/readyz")["pool"] == "shared", "shared")
    return two


def eventually(check: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def finals_on_stream(ha: HA) -> dict[str, list[tuple[Any, ...]]]:
    """Each session's final turns on the stream, in stream order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for envelope in ha.stream():
        message = envelope.get("message") or {}
        if message.get("type") == "Turn" and message.get("end_of_turn"):
            out.setdefault(envelope["session_id"], []).append(turn_key(message))
    return out


def turn_key(message: dict[str, Any]) -> tuple[Any, ...]:
    return (message["turn_order"], bool(message.get("turn_is_formatted")), message["transcript"])


def test_two_gateways_share_the_pool(gateway_factory: GatewayFactory, ha: HA) -> None:
    """Through the topology: the pool is shared (its scripts' keys are in one hash slot
    on a cluster), a 402 seen by one gateway retires the key for the other, and a cap of
    one session per key holds across the two."""
    one, two = gateways(
        gateway_factory, ha, "pay=pay-key,main=good-key", VOXGATE_KEY_MAX_SESSIONS="1"
    )
    assert run(session(one.url, audio.speech())).code == 1000
    eventually(lambda: admin_keys(two)["pay"]["state"] == "disabled_payment_required", "402 shared")

    async def cap() -> None:
        ws = await open_client(one.url)
        assert json.loads(await asyncio.wait_for(ws.recv(), WAIT))["type"] == "Begin"
        refused = await session(two.url, [])
        assert refused.code == 1013 and "capacity" in refused.reason, refused
        await ws.send(json.dumps({"type": "Terminate"}))
        assert (await collect(ws, Outcome())).code == 1000

    run(cap())


def test_transcripts_are_spread_over_shards_and_read_back_by_tail(
    gateway_factory: GatewayFactory, ha: HA
) -> None:
    """Sessions through both gateways: `voxgate tail --tag` (live; sharded pub/sub on a
    cluster) and `voxgate tail --stream --from-start` (every shard) print each final;
    on a cluster the stream shards of the sessions live on more than one primary."""
    one, two = gateways(gateway_factory, ha)
    env = {**ha.env()}
    live = tail(env, "--client", "tester", "--tag", "ha-desk", "--limit", "1000")
    channels = ha.layout.tag_channels("tester", "ha-desk")
    eventually(lambda: subscribed(ha, channels), "tail subscribed")
    query = f"{DEFAULT_QUERY}&voxgate_tag=ha-desk"

    async def many() -> list[Outcome]:
        sessions = [session(gw.url, audio.speech(2), query=query) for gw in (one, two) * 3]
        return list(await asyncio.gather(*sessions))

    outcomes = run(many())
    assert all(out.code == 1000 for out in outcomes)
    for gw in (one, two):
        wait_backlog_empty(gw, timeout=30)
    time.sleep(2.0)  # the tail prints what it was sent
    live.terminate()
    printed, err = live.communicate(timeout=10)
    finals = sum(len(out.finals) for out in outcomes)
    assert finals >= 12
    assert sum(" final" in line for line in printed.splitlines()) == finals, err

    stream = tail(env, "--stream", "--from-start", "--json", "--limit", "100000")
    with contextlib.suppress(subprocess.TimeoutExpired):
        stream.wait(timeout=5)
    stream.terminate()
    printed, _ = stream.communicate(timeout=10)
    read = [json.loads(line) for line in printed.splitlines()]
    ids = {out.messages[0]["id"] for out in outcomes}
    got = [e for e in read if e["session_id"] in ids and is_final(e)]
    assert len(got) == finals
    if ha.cluster is not None:
        primaries = {ha.primary_for(ha.layout.stream_key(ha.layout.shard(i))).port for i in ids}
        assert len(primaries) > 1, "every session's stream on one primary"


def subscribed(ha: HA, channels: list[str]) -> bool:
    """Whether every channel has a subscriber (sharded ones asked of their node)."""
    client = ha.client()
    try:
        for channel in channels:
            if ha.cluster is not None:
                node = client.get_node_from_key(channel)
                counts = client.execute_command("PUBSUB", "SHARDNUMSUB", channel, target_nodes=node)
            else:
                counts = client.execute_command("PUBSUB", "NUMSUB", channel)
            if int(counts[1]) < 1:
                return False
        return True
    finally:
        client.close()


def is_final(envelope: dict[str, Any]) -> bool:
    message = envelope.get("message") or {}
    return message.get("type") == "Turn" and bool(message.get("end_of_turn"))


def tail(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "voxgate", "tail", *args],
        cwd=ROOT,
        env={**_base_env(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("VOXGATE_")}


def test_a_token_used_on_one_gateway_is_refused_on_the_other(
    gateway_factory: GatewayFactory, ha: HA
) -> None:
    """Same token secret on both: a token opens a session on one gateway, then the
    other refuses it (1008, already used): single use across replicas."""
    one, two = gateways(gateway_factory, ha)
    request = urllib.request.Request(
        f"{one.http_url}/v3/token?expires_in_seconds=60", headers={"Authorization": CLIENT_KEY}
    )
    with urllib.request.urlopen(request, timeout=WAIT) as response:
        token = quote(json.loads(response.read())["token"], safe="")
    first = run(session(one.url, audio.speech(), key=None, query=f"{DEFAULT_QUERY}&token={token}"))
    assert first.code == 1000
    again = run(session(two.url, [], key=None, query=f"{DEFAULT_QUERY}&token={token}"))
    assert again.code == 1008 and "already used" in again.reason, again


def test_the_primary_dies_mid_stream_and_no_final_is_lost_or_doubled(
    gateway_factory: GatewayFactory, ha: HA
) -> None:
    """10 sessions stream at real-time pace through two gateways (WAIT for one
    replica). The primary holding the first session's stream loses its replica's
    acknowledgements (frozen, then cut off: redisha.cut_and_kill) and is killed with
    SIGKILL; the replica is promoted with part of the unacknowledged writes. Every
    session ends normally, and each client's final turns are on the stream once each,
    in order (without WAIT the cut-off part is lost; without the script's guard the
    frozen part is there twice). The dead node comes back (as a replica) so that
    writes can be acknowledged again."""
    one, two = gateways(gateway_factory, ha)
    outcomes = [Outcome() for _ in range(SESSIONS)]
    frames = audio.speech(5)  # 7.5 s of audio, sent at its pace

    async def stream(url: str, outcome: Outcome) -> None:
        ws: ClientConnection = await open_client(url)
        reader = asyncio.create_task(collect(ws, outcome))
        for frame in frames:
            await ws.send(frame)
            await asyncio.sleep(0.05)
        await ws.send(json.dumps({"type": "Terminate"}))
        await reader

    killed: list[RedisServer] = []

    async def scenario() -> None:
        tasks = [
            asyncio.create_task(stream((one, two)[i % 2].url, outcomes[i])) for i in range(SESSIONS)
        ]
        while not all(out.finals for out in outcomes):  # noqa: ASYNC110  # polled: mid-stream
            await asyncio.sleep(0.05)
        first = outcomes[0].messages[0]["id"]
        key = ha.layout.stream_key(ha.layout.shard(first))
        victim = ha.primary_for(key)
        await asyncio.to_thread(cut_and_kill, victim, ha.servers(), CUT_SECONDS)
        killed.append(victim)
        started = time.monotonic()
        await asyncio.to_thread(ha.wait_failover, victim, key)
        print(f"{ha.kind}: promoted {time.monotonic() - started:.1f} s after the kill")
        await asyncio.gather(*tasks)

    try:
        run(scenario(), deadline=120)
    finally:
        for server in killed:
            server.start()  # rejoins as a replica
    assert [out.code for out in outcomes] == [1000] * SESSIONS
    for gw in (one, two):
        wait_backlog_empty(gw, timeout=60)
    # The kill was felt: some publisher lost its Redis and came back.
    assert sum(metric(gw, "voxgate_reconnects_total", target="redis") for gw in (one, two)) >= 1
    on_stream = finals_on_stream(ha)
    for out in outcomes:
        sid = out.messages[0]["id"]
        assert len(out.finals) >= 5
        assert on_stream.get(sid) == [turn_key(m) for m in out.finals], sid


def test_the_compose_sentinel_variant_is_valid_with_the_default_file() -> None:
    """`docker-compose config` (Compose v2) accepts docker-compose.yml with
    docker-compose.sentinel.yml over it: the gateways find Redis through three sentinels
    and wait for one replica; the default file alone still has one Redis."""
    args = [compose_binary(), "--project-directory", str(ROOT), "-f", "docker-compose.yml"]
    args += ["-f", "docker-compose.sentinel.yml", "--env-file", str(ROOT / ".env.example")]
    result = run_tool([*args, "config", "--format", "json"], _base_env())
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert {"redis", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"} <= set(services)
    for name in ("voxgate-1", "voxgate-2"):
        env = services[name]["environment"]
        assert env["VOXGATE_REDIS_URL"] == "" and env["VOXGATE_REDIS_WAIT_REPLICAS"] == "1"
        assert env["VOXGATE_REDIS_SENTINELS"].count(":26379") == 3
    assert "sentinel-1" not in config_with_example()["services"]
