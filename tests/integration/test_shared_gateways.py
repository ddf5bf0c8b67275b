"""Two gateway processes sharing one key pool through a real redis-server.

Each test starts two real gateways (uvicorn on port 0) in front of the simulator and
one Redis, and checks what one gateway does to the other: caps, 402s, a killed
process's leases, and the fallback to a local view while Redis is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Callable

import redis
from voxgate.bench.procs import RedisServer, Server
from voxgate.keys.shared import LEASE_TTL
from websockets.asyncio.client import ClientConnection

from tests.support import audio
from tests.support.gateway import ADMIN_KEY, GatewayFactory, admin_keys, metric, sandbox_sessions
from tests.support.http import get_json
from tests.support.wsclient import WAIT, Outcome, collect, open_client, run, session

#: The gateway's close when every key is at its cap (voxgate/relay/closes.py).
AT_CAPACITY = 1013


def shared_env(redis: RedisServer, cap: int = 2) -> dict[str, str]:
    return {
        "VOXGATE_REDIS_URL": redis.url,
        "VOXGATE_KEY_MAX_SESSIONS": str(cap),
        "VOXGATE_ADMIN_KEY": ADMIN_KEY,
    }


def eventually(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def pool_mode(gw: Server) -> str:
    mode: str = get_json(gw.http_url + "/readyz")["pool"]
    return mode


def wait_mode(mode: str, *gateways: Server) -> None:
    for gw in gateways:

        def reached(gw: Server = gw) -> bool:
            return pool_mode(gw) == mode

        eventually(reached, f"{gw.url} pool {mode}")
        assert metric(gw, "voxgate_pool_shared") == (1.0 if mode == "shared" else 0.0)


async def hold(url: str) -> ClientConnection:
    """Open a session and keep it open (no audio, no Terminate) once Begin arrived."""
    ws = await open_client(url)
    first = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    assert first["type"] == "Begin", first
    return ws


async def finish(ws: ClientConnection) -> Outcome:
    with contextlib.suppress(Exception):
        await ws.send(json.dumps({"type": "Terminate"}))
    return await collect(ws, Outcome())


def live_upstream(sandbox: Server) -> int:
    return sum(1 for s in sandbox_sessions(sandbox) if s["closed_at"] is None)


def test_per_key_cap_holds_across_two_gateways(
    gateway_factory: GatewayFactory, redis_server: RedisServer, sandbox: Server
) -> None:
    """Cap 2 per key on each gateway: two sessions on gateway one fill key main for
    both; gateway two (which has never used main) fails over to its spare key, and a
    third session on gateway one, which has only main, is refused at capacity. The
    simulator never holds more than the sessions the caps allow."""
    env = shared_env(redis_server, cap=2)
    one = gateway_factory("main=good-key", **env)
    two = gateway_factory("main=good-key,spare=good-key-2", **env)
    wait_mode("shared", one, two)
    before = live_upstream(sandbox)

    async def scenario() -> None:
        held = [await hold(one.url), await hold(one.url)]
        held.append(await hold(two.url))
        refused = await session(one.url, [])
        assert refused.code == AT_CAPACITY, refused
        assert "capacity" in refused.reason
        assert live_upstream(sandbox) - before == 3
        keys = admin_keys(two)
        assert keys["main"]["active_sessions"] == 0
        assert keys["spare"]["active_sessions"] == 1
        assert admin_keys(one)["main"]["active_sessions"] == 2
        for ws in held:
            assert (await finish(ws)).code == 1000

    run(scenario())


def test_a_402_seen_by_one_gateway_disables_the_key_for_the_other(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """Gateway one tries key pay first, gets 402 and fails over (its client sees no
    error); gateway two, which never used pay, shows it disabled_payment_required."""
    env = shared_env(redis_server)
    one = gateway_factory("pay=pay-key,main=good-key", **env)
    two = gateway_factory("pay=pay-key,main=good-key", **env)
    wait_mode("shared", one, two)
    assert admin_keys(two)["pay"]["state"] == "healthy"
    out = run(session(one.url, audio.speech()))
    seen = time.monotonic()
    assert out.code == 1000, out
    assert admin_keys(one)["pay"]["payment_required_total"] == 1
    eventually(
        lambda: admin_keys(two)["pay"]["state"] == "disabled_payment_required",
        "gateway two sees pay disabled",
    )
    print(f"402 reached the other gateway within {time.monotonic() - seen:.2f} s")
    pay = admin_keys(two)["pay"]
    assert pay["sessions_total"] == 0 and pay["payment_required_total"] == 0
    assert pay["next_probe_at"] is not None
    out = run(session(two.url, audio.speech()))
    assert out.code == 1000
    assert metric(two, "voxgate_upstream_402_total", key="pay") == 0.0


def test_one_gateways_probe_puts_an_upgraded_key_back_for_the_other(
    gateway_factory: GatewayFactory, redis_server: RedisServer, sandbox: Server
) -> None:
    """Key upg needs billing: gateway one (probing every second) and gateway two (whose
    own first probe is 10 minutes away) both take it out. Once the account is upgraded
    in the simulator, one's probe finds it working and two has it back too, then serves
    on it."""
    env = shared_env(redis_server)
    one = gateway_factory(
        "upg=upgrade-key,main=good-key", VOXGATE_PROBE_DELAY="1", VOXGATE_PROBE_INTERVAL="1", **env
    )
    two = gateway_factory("upg=upgrade-key", VOXGATE_PROBE_DELAY="600", **env)
    wait_mode("shared", one, two)
    assert run(session(one.url, audio.speech())).code == 1000
    eventually(
        lambda: admin_keys(two)["upg"]["state"] == "disabled_payment_required", "upg out on two"
    )
    get_json(f"{sandbox.http_url}/sandbox/keys?set=upgrade-key&behaviour=ok")
    try:
        eventually(lambda: admin_keys(two)["upg"]["state"] == "healthy", "upg back on two")
        assert admin_keys(two)["upg"]["payment_required_total"] == 0
        assert run(session(two.url, audio.speech())).code == 1000
        assert admin_keys(two)["upg"]["sessions_total"] == 1
    finally:
        get_json(f"{sandbox.http_url}/sandbox/keys?set=upgrade-key&behaviour=402")


def test_a_killed_gateways_leases_expire_and_capacity_returns(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """Gateway one holds the key's whole cap and is killed with SIGKILL (no cleanup):
    gateway two is refused while one's leases live, then gets the whole cap back."""
    env = shared_env(redis_server, cap=2)
    one = gateway_factory("main=good-key", **env)
    two = gateway_factory("main=good-key", **env)
    wait_mode("shared", one, two)

    async def scenario() -> None:
        held = [await hold(one.url), await hold(one.url)]
        one.send_signal(signal.SIGKILL)
        one.wait()
        killed = time.monotonic()
        refused = await session(two.url, [])
        assert refused.code == AT_CAPACITY, refused
        deadline = time.monotonic() + LEASE_TTL + 15
        while (await session(two.url, audio.speech())).code != 1000:
            assert time.monotonic() < deadline, "capacity did not come back"
            await asyncio.sleep(0.2)
        print(f"capacity back {time.monotonic() - killed:.1f} s after SIGKILL (TTL {LEASE_TTL} s)")
        again = [await hold(two.url), await hold(two.url)]
        for ws in again:
            assert (await finish(ws)).code == 1000
        for ws in held:
            await ws.close()

    run(scenario())


def test_redis_down_gateways_serve_on_a_local_view_and_share_again_when_it_returns(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """Redis stopped: both gateways say pool local (readyz and metric) and keep serving;
    sessions opened meanwhile are held against the cap once Redis is back and both
    say shared again."""
    env = shared_env(redis_server, cap=2)
    one = gateway_factory("main=good-key", **env)
    two = gateway_factory("main=good-key", **env)
    wait_mode("shared", one, two)
    redis_server.stop()
    wait_mode("local", one, two)
    assert run(session(one.url, audio.speech())).code == 1000
    assert run(session(two.url, audio.speech())).code == 1000

    async def during_outage() -> list[ClientConnection]:
        return [await hold(one.url), await hold(one.url)]

    async def after_recovery(held: list[ClientConnection]) -> None:
        refused = await session(two.url, [])
        assert refused.code == AT_CAPACITY, refused
        assert (await finish(held.pop())).code == 1000
        # The release reaches Redis at gateway one's next sync (woken by it).
        for _ in range(50):
            attempt = await session(two.url, audio.speech())
            if attempt.code == 1000:
                break
            await asyncio.sleep(0.1)
        assert attempt.code == 1000, attempt
        for ws in held:
            assert (await finish(ws)).code == 1000

    async def scenario() -> None:
        held = await during_outage()
        redis_server.start()
        await asyncio.to_thread(wait_mode, "shared", one, two)
        await after_recovery(held)

    run(scenario())


def test_shared_pool_can_be_turned_off_while_publishing_stays_on(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """VOXGATE_SHARED_POOL=false with a Redis URL: the pool stays local (readyz, metric)
    and writes nothing under voxgate:pool:*, while transcripts are still published."""
    gw = gateway_factory(**shared_env(redis_server), VOXGATE_SHARED_POOL="false")
    assert run(session(gw.url, audio.speech())).code == 1000
    eventually(lambda: get_json(gw.http_url + "/readyz")["redis"] == "up", "publisher up")
    assert pool_mode(gw) == "local"
    assert metric(gw, "voxgate_pool_shared") == 0.0
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.keys("voxgate:pool:*") == []
        assert client.xlen("voxgate:transcripts") > 0
    finally:
        client.close()
