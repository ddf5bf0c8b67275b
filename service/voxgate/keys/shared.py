"""The upstream key pool shared by several gateway replicas through Redis.

Each replica keeps its own pure :class:`~voxgate.keys.pool.KeyPool`; this module keeps
Redis and that pool in step (the key names and Lua scripts are in
:mod:`voxgate.keys.layout`). Keys appear in Redis only by alias.

* **Leases**: ``voxgate:pool:active:<alias>`` is a hash, one field per replica
  instance: how many upstream sessions that instance holds on the key.
  ``voxgate:pool:instances`` is a sorted set of instances scored by the time (Redis's
  clock, ms) their heartbeat expires, ``LEASE_TTL`` after the last one. Counts of an
  instance that is missing or expired there are not counted and are deleted, so a
  killed replica's sessions free their keys within ``LEASE_TTL``. A replica writes
  its own counts absolutely (never by increment) at every acquire and heartbeat, so
  a count lost in a Redis restart, or while the replica was cut off, comes back.
* **Budget**: ``voxgate:pool:starts:<alias>`` is a sorted set of the session starts
  of the last ``BUDGET_WINDOW`` seconds, across replicas.
* **States**: ``voxgate:pool:states`` is a hash alias -> JSON ``{state, reason,
  since, by, version}`` (versions rise with Redis's clock, even across a restart). A replica
  writes a key's state when it takes the key out (payment required, unauthorized)
  or a probe puts it back; every replica reads the hash each ``HEARTBEAT`` and takes
  on what is newer than what it saw. Cooling down stays local.

Acquire is one Lua script: among the candidate keys (usable in this replica's view,
in its rotation order) it books the least loaded one across live instances that is
under its cap and has budget left, atomically, so caps hold exactly across replicas.

A key is the same key on every replica when its alias is; replicas should use the
same caps (each applies its own). Every Redis call runs under one lock (a replica's
absolute counts are then never older than its last booking) and a deadline of
``REDIS_TIMEOUT``; a booking waits at most that long for the lock too (one booking
takes about a millisecond; past that the replica is swamped and says "try again
later"). Any Redis failure switches the replica to local mode at once: it serves
from its own KeyPool alone (per-replica caps), says so in ``/readyz`` and
``voxgate_pool_shared``, and the heartbeat keeps trying; its first success is shared
mode again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time
from typing import Any

from redis.exceptions import RedisError

from voxgate.keys.layout import (
    ACQUIRE_LUA,
    HEARTBEAT_LUA,
    SET_STATE_LUA,
    SharedState,
    decode_states,
    encode_state,
    pool_keys,
)
from voxgate.keys.pool import (
    BUDGET_WINDOW,
    DISABLED,
    KeyPool,
    KeyState,
    Lease,
    Transition,
    Unavailable,
)
from voxgate.logs import get_logger
from voxgate.metrics.gateway import Metrics
from voxgate.redis_client import REDIS_TIMEOUT, RedisTopology, connect

#: A replica's leases live this long after its last heartbeat (a killed process's
#: capacity returns within it); long enough to ride out a few missed heartbeats.
LEASE_TTL = 10.0
#: Heartbeat and state poll interval: how fast a 402 seen by one replica reaches all.
HEARTBEAT = 1.0

#: What makes a replica fall back to its local view.
REDIS_FAILURES = (RedisError, OSError, TimeoutError)

log = get_logger("voxgate.pool")

# --------------------------------------------------------------------------- pure


def is_shared(transition: Transition) -> bool:
    """Whether a replica's own state change is written for all: a key taken out of
    rotation, or one a probe (or a session) found working again."""
    return transition.new in DISABLED or (
        transition.new is KeyState.HEALTHY and transition.old in DISABLED
    )


def to_adopt(
    states: list[SharedState], seen: dict[str, int], known: set[str], me: str
) -> list[SharedState]:
    """States newer than ``seen`` (updated in place) for keys this replica has,
    written by another replica (its own writes are already applied)."""
    out: list[SharedState] = []
    for state in states:
        if state.alias not in known or state.version <= seen.get(state.alias, 0):
            continue
        seen[state.alias] = state.version
        if state.by != me:
            out.append(state)
    return out


def instance_id(name: str | None) -> str:
    """Unique per process even when replicas share a host name or VOXGATE_INSTANCE."""
    return f"{name or socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------- I/O


class SharedPool:
    def __init__(
        self,
        redis: RedisTopology | str,
        pool: KeyPool,
        metrics: Metrics,
        *,
        instance: str,
        max_sessions: int,
        sessions_per_minute: int,
        lease_ttl: float = LEASE_TTL,
        heartbeat: float = HEARTBEAT,
        timeout: float = REDIS_TIMEOUT,
    ) -> None:
        self.pool = pool
        self.instance = instance
        self._metrics = metrics
        self._cap = max_sessions
        self._budget = sessions_per_minute
        self._ttl_ms = int(lease_ttl * 1000)
        self._heartbeat = heartbeat
        self._timeout = timeout
        topology = RedisTopology(redis) if isinstance(redis, str) else redis
        self._keys = pool_keys(topology.cluster)
        self._redis = connect(topology, timeout=timeout, decode_responses=True)
        self._acquire_script = self._redis.register_script(ACQUIRE_LUA)
        self._heartbeat_script = self._redis.register_script(HEARTBEAT_LUA)
        self._set_state_script = self._redis.register_script(SET_STATE_LUA)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._pending: dict[str, str] = {}  # alias -> state JSON; at most one per key
        self._seen: dict[str, int] = {}
        self._starts = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self.shared = False
        metrics.pool_shared.set(0.0)

    @property
    def mode(self) -> str:
        return "shared" if self.shared else "local"

    # ------------------------------------------------------------------ leases

    async def acquire(
        self, exclude: frozenset[str] = frozenset(), *, fallback: bool = False
    ) -> Lease | Unavailable:
        """Book a key across replicas; in local mode (or on a Redis failure) locally.
        ``fallback``: a replacement's last resort (see ``KeyPool.acquire``)."""
        if self.shared:
            try:
                async with asyncio.timeout(self._timeout):
                    await self._lock.acquire()
            except TimeoutError:
                # Queued behind this replica's other bookings past the deadline: Redis
                # is not at fault (the booking ahead would have said), this replica is
                # swamped with new sessions. Refuse this one as "try again later".
                return (
                    Unavailable.AT_CAPACITY
                    if self.shared
                    else self.pool.acquire(exclude, fallback=fallback)
                )
            try:
                async with asyncio.timeout(self._timeout):
                    return await self._acquire_shared(exclude, fallback)
            except REDIS_FAILURES as exc:
                self._set_shared(False, exc)
            finally:
                self._lock.release()
        return self.pool.acquire(exclude, fallback=fallback)

    async def _acquire_shared(self, exclude: frozenset[str], fallback: bool) -> Lease | Unavailable:
        candidates = self.pool.candidates(exclude, fallback=fallback)
        if not candidates:
            return self.pool.why_unavailable(exclude)
        keys = [self._keys.instances]
        for alias in candidates:
            keys += [self._keys.active(alias), self._keys.starts(alias)]
        args: list[str | int] = [
            self.instance,
            self._ttl_ms,
            self._cap,
            self._budget,
            int(BUDGET_WINDOW * 1000),
            f"{self.instance}:{next(self._starts)}",
        ]
        args += [self.pool.record(alias).active for alias in candidates]
        chosen, why = await self._acquire_script(keys=keys, args=args)
        if int(chosen) == 0:
            return Unavailable(_text(why))
        return self.pool.take(candidates[int(chosen) - 1])

    def release(self, lease: Lease) -> None:
        """Free a lease; Redis learns it at the next sync, woken now (never blocks)."""
        self.pool.release(lease)
        self._wake.set()

    # ------------------------------------------------------------------ states

    def publish(self, transition: Transition | None) -> None:
        """Write this replica's own state change for all replicas (soon, never blocks)."""
        if transition is None or not is_shared(transition):
            return
        self._pending[transition.alias] = encode_state(transition, self.instance, time.time())
        self._wake.set()

    # ------------------------------------------------------------------ sync

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="shared-pool")

    async def close(self) -> None:
        """Stop the heartbeat, write the last counts, and leave the instances set."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.shared:
            await self.sync()
            with contextlib.suppress(*REDIS_FAILURES):
                async with asyncio.timeout(self._timeout):
                    await self._redis.zrem(self._keys.instances, self.instance)
        await self._redis.aclose()

    async def _run(self) -> None:
        while True:
            try:
                await self.sync()
            except Exception as exc:  # a bug, not Redis: say so, serve locally, go on
                log.exception("shared_pool_error")
                self._set_shared(False, exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._heartbeat):
                    await self._wake.wait()
            self._wake.clear()

    async def sync(self) -> None:
        """Write pending states and this replica's counts, read everyone's states."""
        aliases = [r.alias for r in self.pool.records()]
        try:
            async with asyncio.timeout(self._timeout):
                await self._lock.acquire()
        except TimeoutError:
            return  # bookings keep the lock busy (and this replica alive): next beat
        try:
            async with asyncio.timeout(self._timeout):
                for alias, body in list(self._pending.items()):
                    version = await self._set_state_script(
                        keys=[self._keys.state_version, self._keys.states], args=[alias, body]
                    )
                    self._seen[alias] = max(self._seen.get(alias, 0), int(version))
                    if self._pending.get(alias) == body:
                        del self._pending[alias]
                counts = [self.pool.record(alias).active for alias in aliases]
                raw = await self._heartbeat_script(
                    keys=[
                        self._keys.instances,
                        self._keys.states,
                        *(self._keys.active(a) for a in aliases),
                    ],
                    args=[self.instance, self._ttl_ms, *counts],
                )
        except REDIS_FAILURES as exc:
            self._set_shared(False, exc)
            return
        finally:
            self._lock.release()
        self._set_shared(True)
        flat = [_text(item) for item in raw]
        states = decode_states(dict(zip(flat[::2], flat[1::2], strict=True)))
        for state in to_adopt(states, self._seen, set(aliases), self.instance):
            self._adopt(state)

    def _adopt(self, state: SharedState) -> None:
        transition = self.pool.adopt(state.alias, state.state, state.reason)
        if transition is not None:
            log.warning("key_state_changed", **transition.fields(), source="shared", by=state.by)
            self._metrics.key_changed(self.pool.record(state.alias))

    def _set_shared(self, shared: bool, error: BaseException | None = None) -> None:
        if shared == self.shared:
            return
        self.shared = shared
        self._metrics.pool_shared.set(1.0 if shared else 0.0)
        if shared:
            log.info("pool_shared", instance=self.instance)
        else:
            detail = str(error)[:200] if error is not None else ""
            log.warning(
                "pool_local", instance=self.instance, error=type(error).__name__, detail=detail
            )
