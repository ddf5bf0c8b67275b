"""The compose topology, run natively: what `docker compose --profile sandbox up` starts,
as processes on this machine (there is no Docker engine here).

Two gateway replicas with the environment docker-compose.yml gives the `voxgate` service
(read through `docker-compose config` with .env.example), one redis-server started with the
compose service's own command, the simulator as the `sandbox` profile runs it, and a real
Prometheus loading deploy/prometheus/prometheus.yml and its rules, with only the scrape
targets (compose DNS there, the replicas' local ports here) and the intervals (1 s, for a
quick test) rewritten. What differs from the containers, and why:

* host names become 127.0.0.1 and ports are picked free (parallel test runs never collide);
* each replica is a compose service of its own (voxgate-1, voxgate-2), as in the file;
* VOXGATE_DRAIN_TIMEOUT is 2 s instead of 30 s, so the drain test ends sessions for them
  without waiting half a minute.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from voxgate.bench.procs import RedisServer, Server
from voxgate.transcripts.publisher import STREAM_KEY
from websockets.exceptions import ConnectionClosed

from tests.support import audio
from tests.support.deploy import config_with_example, gateway_services
from tests.support.http import get_json
from tests.support.procs import PrometheusServer, start
from tests.support.wsclient import Outcome, collect, open_client, session

#: Deadline for the topology to show something (a scrape, an envelope in Redis).
SETTLE_TIMEOUT = 30.0
#: The drain used here (compose: 30 s); see the module docstring.
DRAIN_SECONDS = "2"
_POLL = 0.2
T = TypeVar("T")


@dataclass
class Topology:
    replicas: list[Server]
    sandbox: Server
    redis_url: str
    prometheus: PrometheusServer
    client_key: str
    workdir: Path

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, decode_responses=True)


def start_prometheus(targets: list[str], workdir: Path) -> PrometheusServer:
    """Prometheus with the repository's config: same jobs and rules, local targets."""
    prometheus = PrometheusServer(workdir, targets)
    prometheus.start()
    return prometheus


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """The compose stack (with the sandbox profile) as local processes."""
    workdir = tmp_path_factory.mktemp("topology")
    services = config_with_example("sandbox")["services"]
    started: list[Server] = []
    redis_server: RedisServer | None = None
    prometheus: PrometheusServer | None = None
    try:
        command = list(services["sandbox"]["command"])
        command[command.index("--host") + 1] = "127.0.0.1"
        command[command.index("--port") + 1] = "0"
        sandbox = start(command, {}, workdir / "sandbox.log")
        started.append(sandbox)

        # redis-server with the compose service's arguments, on a free local port.
        redis_command = list(services["redis"]["command"])
        assert redis_command[0] == "redis-server", redis_command
        redis_server = RedisServer(workdir, options=redis_command[1:])
        redis_url = redis_server.url

        gateways = gateway_services({"services": services})
        env = dict(gateways["voxgate-1"]["environment"])
        upstream = urllib.parse.urlsplit(env["VOXGATE_UPSTREAM_URL"])
        assert upstream.hostname == "sandbox", "compose + .env.example should use the simulator"
        env["VOXGATE_UPSTREAM_URL"] = sandbox.url + upstream.path
        assert urllib.parse.urlsplit(env["VOXGATE_REDIS_URL"]).hostname == "redis"
        env["VOXGATE_REDIS_URL"] = redis_url
        env.update(VOXGATE_HOST="127.0.0.1", VOXGATE_PORT="0", VOXGATE_DRAIN_TIMEOUT=DRAIN_SECONDS)
        assert len(gateways) >= 2, "the compose stack should run several replicas"
        replicas = []
        for name, gateway in gateways.items():
            assert gateway["environment"]["VOXGATE_INSTANCE"] == name
            replica_env = {**env, "VOXGATE_INSTANCE": name}
            replica = start(["serve"], replica_env, workdir / f"{name}.log")
            started.append(replica)
            replicas.append(replica)

        targets = [urllib.parse.urlsplit(r.url).netloc for r in replicas]
        prometheus = start_prometheus(targets, workdir)
        client_key = env["VOXGATE_CLIENT_KEYS"].split(",")[0].partition("=")[2]
        yield Topology(replicas, sandbox, redis_url, prometheus, client_key, workdir)
    finally:
        if prometheus is not None:
            prometheus.stop()
        for proc in reversed(started):
            proc.stop()
        if redis_server is not None:
            redis_server.stop()


def session_id(outcome: Outcome) -> str:
    begins = outcome.of_type("Begin")
    assert begins, outcome
    return str(begins[0]["id"])


def stream_envelopes(top: Topology, ids: set[str], ended: int) -> list[dict[str, Any]]:
    """The stream's envelopes of sessions ``ids``, once ``ended`` of them have ended."""
    client = top.redis()
    deadline = time.monotonic() + SETTLE_TIMEOUT
    try:
        while True:
            entries = [json.loads(f["envelope"]) for _id, f in client.xrange(STREAM_KEY)]
            mine = [e for e in entries if e["session_id"] in ids]
            if sum(e["event"] == "session.ended" for e in mine) >= ended:
                return mine
            assert time.monotonic() < deadline, f"stream holds {mine}"
            time.sleep(_POLL)
    finally:
        client.close()


def wait_for(probe: Callable[[], T], accept: Callable[[T], bool], what: str) -> T:
    """Poll ``probe`` until ``accept`` takes its value; fail with the last value seen."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        value = probe()
        if accept(value):
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}; last: {value!r}"
        time.sleep(_POLL)


def test_sessions_on_both_replicas_are_published_to_the_one_redis_stream(
    topology: Topology,
) -> None:
    """A session on each replica: both clients get their turns, and the one Redis stream
    holds both sessions' lifecycle and final turns, each tagged with its replica."""

    async def both() -> list[Outcome]:
        return list(
            await asyncio.gather(
                *(
                    session(r.url, audio.speech(2), key=topology.client_key, frame_interval=0.05)
                    for r in topology.replicas
                )
            )
        )

    outcomes = asyncio.run(both())
    for outcome in outcomes:
        assert outcome.code == 1000, outcome
        assert outcome.finals, outcome
    ids = [session_id(o) for o in outcomes]
    envelopes = stream_envelopes(topology, set(ids), ended=2)
    for n, (sid, outcome) in enumerate(zip(ids, outcomes, strict=True), start=1):
        mine = [e for e in envelopes if e["session_id"] == sid]
        assert {e["instance"] for e in mine} == {f"voxgate-{n}"}
        assert mine[0]["event"] == "session.started" and mine[-1]["event"] == "session.ended"
        # The stream holds final turns only (VOXGATE_STREAM_PARTIALS is off), all of them.
        turns = [e["message"] for e in mine if e["event"] == "message"]
        assert [m for m in turns if m.get("type") == "Turn"] == outcome.finals
    sizes = [len(json.dumps(e)) for e in envelopes]
    print(
        f"stream envelopes: {len(sizes)}, mean {sum(sizes) / len(sizes):.0f} B, max {max(sizes)} B"
    )


def test_prometheus_scrapes_both_replicas_with_the_repository_config(
    topology: Topology,
) -> None:
    """Prometheus, on deploy/prometheus/prometheus.yml, scrapes both replicas (up == 1)
    and sees voxgate_sessions_started_total per replica; its rule files load."""
    for replica in topology.replicas:
        result = asyncio.run(
            session(replica.url, audio.speech(2)[:20], key=topology.client_key, frame_interval=0.05)
        )
        assert result.code == 1000, result
    targets = {urllib.parse.urlsplit(r.url).netloc for r in topology.replicas}
    prom = topology.prometheus

    def up() -> dict[str, float]:
        rows = prom.query('up{job="voxgate"}')
        return {r["metric"]["instance"]: float(r["value"][1]) for r in rows}

    wait_for(up, lambda seen: seen == dict.fromkeys(targets, 1.0), "up == 1 for both replicas")

    def started() -> dict[str, float]:
        rows = prom.query("voxgate_sessions_started_total")
        return {r["metric"]["instance"]: float(r["value"][1]) for r in rows}

    wait_for(
        started,
        lambda seen: set(seen) == targets and min(seen.values()) >= 1,
        "voxgate_sessions_started_total >= 1 for each replica",
    )
    groups = get_json(prom.url + "/api/v1/rules")["data"]["groups"]
    assert groups, "no rule group loaded from the rule files prometheus.yml names"


def test_sigterm_to_one_replica_mid_session_drains_it_and_keeps_the_final_transcript(
    topology: Topology,
) -> None:
    """SIGTERM to replica 2 while its client is speaking: the client still gets a final
    Turn, then Termination, then close 1012 (reconnect elsewhere); the final is in the
    Redis stream with a session.ended of outcome `drained`; the replica exits 0;
    replica 1 goes on serving; Prometheus sees replica 2 go down."""
    draining, other = topology.replicas[1], topology.replicas[0]

    async def scenario() -> Outcome:
        out = Outcome()
        ws = await open_client(draining.url, topology.client_key)
        reader = asyncio.create_task(collect(ws, out))
        for i, frame in enumerate(audio.frames(audio.tone(8.0))):
            if i == 10:
                draining.send_signal()
            try:
                await ws.send(frame)
            except ConnectionClosed:
                break
            await asyncio.sleep(0.05)
        return await reader

    outcome = asyncio.run(scenario())
    assert outcome.code == 1012, outcome
    assert outcome.finals, "final transcript lost in the drain"
    assert outcome.messages[-1]["type"] == "Termination"
    assert draining.wait() == 0
    sid = session_id(outcome)
    envelopes = stream_envelopes(topology, {sid}, ended=1)
    ended = [e for e in envelopes if e["event"] == "session.ended"]
    assert ended[0]["outcome"] == "drained"
    streamed = [e["message"] for e in envelopes if e["event"] == "message"]
    assert outcome.finals[-1] in streamed

    still = asyncio.run(
        session(other.url, audio.speech(2)[:20], key=topology.client_key, frame_interval=0.05)
    )
    assert still.code == 1000, still
    gone = urllib.parse.urlsplit(draining.url).netloc
    wait_for(
        lambda: topology.prometheus.query(f'up{{job="voxgate",instance="{gone}"}}'),
        lambda rows: [float(r["value"][1]) for r in rows] == [0.0],
        f"up == 0 for the drained replica {gone}",
    )


def test_env_example_without_the_sandbox_profile_fails_loudly(tmp_path: Path) -> None:
    """.env.example's upstream is the simulator's compose name: a gateway started with it
    but without the `sandbox` profile (the name does not resolve) refuses each session
    with 1013 "Upstream unavailable", never serving anything in the simulator's place."""
    env = dict(gateway_services(config_with_example())["voxgate-1"]["environment"])
    assert urllib.parse.urlsplit(env["VOXGATE_UPSTREAM_URL"]).hostname == "sandbox"
    env.update(VOXGATE_HOST="127.0.0.1", VOXGATE_PORT="0")
    env.pop("VOXGATE_REDIS_URL")  # publishing is beside the point here
    gateway = start(["serve"], env, tmp_path / "voxgate.log")
    try:
        key = env["VOXGATE_CLIENT_KEYS"].split(",")[0].partition("=")[2]
        outcome = asyncio.run(session(gateway.url, audio.speech(2)[:4], key=key))
    finally:
        gateway.stop()
    assert outcome.code == 1013, outcome
    assert outcome.reason.startswith("Upstream unavailable")
    assert not outcome.of_type("Begin")
