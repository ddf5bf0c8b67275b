"""The shared key pool's Lua scripts against a real redis-server.

The tests drive two SharedPool objects (two "replicas") in one process and call
``sync()`` by hand instead of running the heartbeat task, so nothing depends on timing
except the lease expiry, which is polled with a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import redis
from voxgate.bench.procs import RedisServer
from voxgate.keys.layout import ACTIVE_KEY, INSTANCES_KEY, STATES_KEY
from voxgate.keys.pool import KeyPool, KeyState, Lease, Unavailable
from voxgate.keys.shared import SharedPool
from voxgate.metrics.gateway import Metrics
from voxgate.settings import UpstreamKey
from voxgate.upstream.failures import FailureClass


def replica(
    server: RedisServer,
    name: str,
    *,
    keys: int = 1,
    cap: int = 2,
    per_minute: int = 100,
    ttl: float = 10.0,
) -> SharedPool:
    pool = KeyPool(
        [UpstreamKey(f"k{i}", f"secret-{i}") for i in range(keys)],
        max_sessions=cap,
        sessions_per_minute=per_minute,
        clock=time.monotonic,
    )
    return SharedPool(
        server.url,
        pool,
        Metrics(),
        instance=name,
        max_sessions=cap,
        sessions_per_minute=per_minute,
        lease_ttl=ttl,
        timeout=1.0,
    )


@asynccontextmanager
async def replicas(*pools: SharedPool) -> AsyncIterator[None]:
    for p in pools:
        await p.sync()
        assert p.mode == "shared"
    try:
        yield
    finally:
        for p in pools:
            await p.close()


def leases(results: list[Lease | Unavailable]) -> list[Lease]:
    return [r for r in results if isinstance(r, Lease)]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met before the deadline")


def test_caps_hold_exactly_across_replicas_under_concurrent_acquires(
    redis_server: RedisServer,
) -> None:
    """20 acquires at once from two replicas for one key capped at 3: exactly 3 get a
    lease (the Lua script books atomically); a release on one frees a slot for the other."""
    a, b = replica(redis_server, "a", cap=3), replica(redis_server, "b", cap=3)

    async def scenario() -> None:
        async with replicas(a, b):
            got = await asyncio.gather(*(p.acquire() for p in (a, b) * 10))
            held = leases(list(got))
            assert len(held) == 3
            assert set(got) - set(held) == {Unavailable.AT_CAPACITY}
            owner = a if a.pool.record("k0").active else b
            other = b if owner is a else a
            assert await other.acquire() is Unavailable.AT_CAPACITY
            owner.release(Lease(owner.pool.record("k0").key))
            await owner.sync()
            assert isinstance(await other.acquire(), Lease)
            assert a.pool.record("k0").active + b.pool.record("k0").active == 3

    asyncio.run(scenario())


def test_least_loaded_key_across_replicas_is_chosen(redis_server: RedisServer) -> None:
    """Replica b's own view has both keys idle, but replica a holds k0: b picks k1."""
    a, b = replica(redis_server, "a", keys=2, cap=4), replica(redis_server, "b", keys=2, cap=4)

    async def scenario() -> None:
        async with replicas(a, b):
            first = await a.acquire()
            assert isinstance(first, Lease) and first.alias == "k0"
            second = await b.acquire()
            assert isinstance(second, Lease) and second.alias == "k1"

    asyncio.run(scenario())


def test_new_sessions_budget_is_shared(redis_server: RedisServer) -> None:
    """A per-minute budget of 2 is spent by one session on each replica; the next
    request on either is refused as rate limited."""
    a, b = (replica(redis_server, n, cap=100, per_minute=2) for n in "ab")

    async def scenario() -> None:
        async with replicas(a, b):
            assert isinstance(await a.acquire(), Lease)
            assert isinstance(await b.acquire(), Lease)
            assert await a.acquire() is Unavailable.RATE_LIMITED
            assert await b.acquire() is Unavailable.RATE_LIMITED

    asyncio.run(scenario())


def test_a_silent_replicas_leases_expire(redis_server: RedisServer) -> None:
    """Replicas a and b fill the key's cap, then a stops heartbeating (as if killed)
    while b lives on: b is refused at first, and gets a's slots back once a's leases
    expired (TTL 1 s here) - b's own lease keeps counting."""
    a = replica(redis_server, "a", cap=3, ttl=1.0)
    b = replica(redis_server, "b", cap=3, ttl=1.0)

    async def scenario() -> None:
        async with replicas(a, b):
            assert len(leases([await a.acquire(), await a.acquire(), await b.acquire()])) == 3
            assert await b.acquire() is Unavailable.AT_CAPACITY

            async def b_gets_one() -> bool:
                return isinstance(await b.acquire(), Lease)

            await eventually(b_gets_one)
            assert isinstance(await b.acquire(), Lease)
            assert await b.acquire() is Unavailable.AT_CAPACITY
            # a's counts were deleted from Redis, not just ignored.
            client = redis.Redis.from_url(redis_server.url, decode_responses=True)
            assert "a" not in client.hgetall(ACTIVE_KEY.format("k0"))
            assert client.zscore(INSTANCES_KEY, "a") is None
            client.close()

    asyncio.run(scenario())


def test_key_states_travel_both_ways(redis_server: RedisServer) -> None:
    """A 402 seen by replica a disables the key on b (b counts no 402 of its own);
    b's probe finding it working puts it back on a."""
    a, b = replica(redis_server, "a", keys=2), replica(redis_server, "b", keys=2)

    async def scenario() -> None:
        async with replicas(a, b):
            a.publish(a.pool.report_failure("k0", FailureClass.PAYMENT_REQUIRED, "402 upgrade"))
            await a.sync()
            await b.sync()
            record = b.pool.record("k0")
            assert record.state is KeyState.PAYMENT_REQUIRED
            assert record.reason == "402 upgrade"
            assert record.payment_required_total == 0
            assert record.next_probe_at is not None
            b.publish(b.pool.report_success("k0"))
            await b.sync()
            await a.sync()
            assert a.pool.record("k0").state is KeyState.HEALTHY
            client = redis.Redis.from_url(redis_server.url, decode_responses=True)
            assert set(client.hkeys(STATES_KEY)) == {"k0"}
            assert "secret" not in str(client.hgetall(STATES_KEY))
            client.close()

    asyncio.run(scenario())


def test_redis_down_falls_back_to_local_and_recovers_with_its_counts(
    redis_server: RedisServer,
) -> None:
    """With Redis stopped, acquire still answers (local view, local cap) and the mode
    says local; when Redis is back one sync makes it shared again, and the sessions
    opened meanwhile count against the cap for the other replica."""
    a, b = replica(redis_server, "a", cap=2), replica(redis_server, "b", cap=2)

    async def scenario() -> None:
        async with replicas(a, b):
            redis_server.stop()
            held = leases([await a.acquire(), await a.acquire()])
            assert len(held) == 2
            assert a.mode == "local"
            assert await a.acquire() is Unavailable.AT_CAPACITY
            await b.sync()
            assert b.mode == "local"
            redis_server.start()
            await a.sync()
            await b.sync()
            assert a.mode == b.mode == "shared"
            assert await b.acquire() is Unavailable.AT_CAPACITY
            a.release(held[0])
            await a.sync()
            assert isinstance(await b.acquire(), Lease)

    asyncio.run(scenario())


def test_a_swamped_replica_refuses_without_leaving_shared_mode(redis_server: RedisServer) -> None:
    """A booking that waits for the replica's Redis lock past the deadline (other
    bookings ahead of it) is refused as at capacity, and a heartbeat that cannot get
    the lock skips its beat; Redis is not blamed, so the replica stays shared and the
    next booking works."""
    a = replica(redis_server, "a")

    async def scenario() -> None:
        async with replicas(a):
            await a._lock.acquire()  # stands for a long queue of bookings ahead
            try:
                assert await a.acquire() is Unavailable.AT_CAPACITY
                await a.sync()
            finally:
                a._lock.release()
            assert a.mode == "shared"
            assert isinstance(await a.acquire(), Lease)

    asyncio.run(scenario())


def test_states_still_travel_after_redis_restarts_empty(redis_server: RedisServer) -> None:
    """Replica b has seen a's state version; Redis then loses everything (a restart
    without persistence, here FLUSHALL). The next state a writes still reaches b: its
    version is above what b saw, not a counter starting again from 1."""
    a, b = replica(redis_server, "a", keys=2), replica(redis_server, "b", keys=2)

    async def scenario() -> None:
        async with replicas(a, b):
            a.publish(a.pool.report_failure("k0", FailureClass.UNAUTHORIZED, "401"))
            await a.sync()
            await b.sync()
            assert b.pool.record("k0").state is KeyState.UNAUTHORIZED
            client = redis.Redis.from_url(redis_server.url)
            client.flushall()
            client.close()
            a.publish(a.pool.report_success("k0"))
            a.publish(a.pool.report_failure("k1", FailureClass.PAYMENT_REQUIRED, "402"))
            await a.sync()
            await b.sync()
            assert b.pool.record("k0").state is KeyState.HEALTHY
            assert b.pool.record("k1").state is KeyState.PAYMENT_REQUIRED

    asyncio.run(scenario())
