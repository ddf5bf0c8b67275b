"""Tenants at runtime: client records and upstream key settings read from Redis,
per-client limits checked and booked there, usage and spend written there.

One :class:`Tenants` per gateway process. Without ``VOXGATE_REDIS_URL`` it only
counts usage in the Prometheus metrics (clients come from ``VOXGATE_CLIENT_KEYS``,
no limit applies). With Redis (the names are in :mod:`voxgate.tenants.layout`):

* **Records**: every ``SYNC`` seconds a replica reads ``voxgate:{tenants}:version``; when
  it changed, it reloads the clients (their key digests go to the
  :class:`~voxgate.access.clientkeys.ClientAuthenticator`, next to the keys of
  ``VOXGATE_CLIENT_KEYS``) and the upstream key settings (keys added, retired,
  budgets). A change made on one replica works on all within about a second.
  While Redis is unreachable the last records read stay in force.
* **Limits**: a new session is checked and booked by one Lua script (``lua/admit.lua``)
  before any upstream cost: running sessions (a sorted set of leases that each replica
  renews every ``SYNC``; a killed replica's expire after ``LEASE_TTL``), starts of the
  last minute, and the audio used today and this month (UTC). If Redis cannot answer,
  ``VOXGATE_LIMITS_ON_REDIS_DOWN`` decides: ``open`` admits (limits are not enforced
  until Redis is back, and the sessions admitted meanwhile are not counted), ``closed``
  refuses with 1013.
* **Audio budgets of running sessions**: after each write of usage, a replica reads
  each of its budgeted clients' totals and tells each running session how much more
  audio it may send; the frame that would cross the boundary is not sent, upstream
  gets Terminate, the client its final turns, the Termination and close 1008. Each
  session is given the client's whole remainder, so several sessions of one client at
  once may together overshoot by about ``SYNC`` seconds of audio each.
* **Usage**: sessions report audio and session seconds every second; they are added
  to the client's and the upstream key's hashes for the UTC day and month, in one
  pipeline every ``SYNC``, each to the UTC day and month it was used in (kept in memory,
  bounded by clients x keys x models x days, while Redis is down).
* **Spend guard**: a key with a budget whose spend in its period reaches the budget
  leaves rotation with state ``budget_exhausted`` (on every replica, each reading the
  same totals); it comes back when the period turns or the budget is raised.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.exceptions import RedisError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from voxgate.access.clientkeys import ClientAuthenticator
from voxgate.keys.pool import KeyPool, KeyState
from voxgate.logs import get_logger
from voxgate.metrics.gateway import Metrics
from voxgate.redis_client import REDIS_TIMEOUT, connect
from voxgate.relay.closes import Close
from voxgate.settings import ClientKey, Settings, UpstreamKey
from voxgate.tenants import layout
from voxgate.tenants.limits import (
    AUDIO_SLACK,
    Limit,
    Prices,
    audio_left,
    budget_share,
    first_limit_reached,
    model_label,
    periods,
    refusal,
)
from voxgate.tenants.metrics import TenantMetrics
from voxgate.tenants.records import (
    ClientRecord,
    Limits,
    UpstreamKeySettings,
    client_from_json,
    parse_limits,
    upstream_from_json,
)

#: How often a replica reloads changed records, writes usage and renews its leases.
SYNC = 1.0
#: A replica's session leases live this long after its last renewal.
LEASE_TTL = 15.0
#: Freed leases kept to delete from Redis while it is unreachable (older ones expire).
MAX_RELEASES = 10_000
REDIS_FAILURES = (RedisError, OSError, TimeoutError)
#: Timeouts in a row after which Redis counts as down. Fewer are a slow Redis that
#: still answers: the limits stay checked (only the request that timed out is decided
#: by VOXGATE_LIMITS_ON_REDIS_DOWN), instead of admitting all unchecked (open) or
#: refusing all (closed) until the next sync. A connection error is down at once.
SLOW_LIMIT = 3
_TIMEOUTS = (TimeoutError, RedisTimeoutError)

log = get_logger("voxgate.tenants")


def text(value: object) -> str:
    """A Redis reply as text (the client decodes, but its types say bytes or str)."""
    return value.decode() if isinstance(value, bytes) else str(value)


class Limited(Protocol):
    """What a running session offers its ticket (``voxgate.relay.session.Session``)."""

    @property
    def audio_seconds(self) -> float: ...

    def limit_audio(self, seconds: float, close: Close) -> None: ...

    @property
    def limit_reached(self) -> bool: ...


@dataclass(eq=False, slots=True)
class Ticket:
    """One admitted session of a client: its lease in Redis and its usage."""

    client: str
    label: str
    model: str
    limits: Limits
    member: str
    booked: bool
    session: Limited | None = None
    #: The session's audio seconds at its last usage report.
    accounted_audio: float = 0.0
    #: Audio seconds left for the client at admission (inf: no budget).
    left: float = math.inf
    bound: Limit | None = None


@dataclass(slots=True)
class _Pending:
    audio: float = 0.0
    session: float = 0.0
    cost: float = 0.0
    sessions: int = 0


@dataclass(slots=True)
class Snapshot:
    """What this replica last read from Redis."""

    clients: dict[str, ClientRecord] = field(default_factory=dict)
    upstream: dict[str, UpstreamKeySettings] = field(default_factory=dict)
    version: str | None = None


class Tenants:
    def __init__(
        self,
        settings: Settings,
        auth: ClientAuthenticator,
        pool: KeyPool,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.auth = auth
        self.pool = pool
        self.metrics = metrics
        self.m = TenantMetrics(metrics.registry)
        self.prices = Prices(dict(settings.prices))
        self.fail_open = settings.limits_on_redis_down == "open"
        self._clock = clock
        self.redis = (
            connect(settings.redis, decode_responses=True) if settings.redis is not None else None
        )
        self._admit = self.redis.register_script(layout.ADMIT_LUA) if self.redis else None
        self._renew = self.redis.register_script(layout.RENEW_LUA) if self.redis else None
        self.snapshot = Snapshot()
        #: Client records as last parsed: name -> (their JSON, the record, its keys).
        self._parsed: dict[str, tuple[str, ClientRecord, list[ClientKey]]] = {}
        #: Keys of VOXGATE_UPSTREAM_KEYS: their secrets are changed there, never here.
        self._env_aliases = frozenset(k.alias for k in settings.upstream_keys)
        #: VOXGATE_CLIENT_LIMITS: limits of clients without a record in Redis.
        self.env_limits: dict[str, Limits] = {}
        for name, limit, value in settings.client_limits:
            current = self.env_limits.get(name, Limits())
            self.env_limits[name] = parse_limits({limit: value}, current)
        # Without Redis: this process's own counts (starts of the last minute, and the
        # audio of the current UTC day and month, per client).
        self._local_starts: dict[str, collections.deque[float]] = {}
        self._local_audio: dict[tuple[str, str], float] = {}
        self.tickets: set[Ticket] = set()
        #: Usage not written yet, by (client or key, name, model, UTC day it was used).
        self._pending: dict[tuple[str, str, str, str], _Pending] = {}
        self._task: asyncio.Task[None] | None = None
        self._released: list[tuple[str, str]] = []  # leases to free in Redis
        self._wake = asyncio.Event()
        self.up = False
        #: Redis failed at the last attempt (False before the first one); a timeout
        #: only after SLOW_LIMIT in a row (``_timeouts`` counts them).
        self.down = False
        self._timeouts = 0
        # Without VOXGATE_REDIS_URL nothing is missing: 1 (no alert on a one-process set-up).
        self.m.limits_redis_up.set(0.0 if self.redis is not None else 1.0)
        for key in settings.client_keys:
            self.m.client_label(key.name)
        for record in pool.records():
            self._key_gauges(record.alias)

    # ------------------------------------------------------------------ admission

    def limits_of(self, client: str) -> Limits:
        record = self.snapshot.clients.get(client)
        if record is not None:
            return record.limits
        return self.env_limits.get(client, Limits())

    async def admit(self, client: str, requested_model: str | None) -> Ticket | Close:
        """Check and book one new session of ``client`` (before any upstream cost)."""
        limits = self.limits_of(client)
        label = self.m.client_label(client)
        ticket = Ticket(
            client,
            label,
            model_label(requested_model, self.prices.per_hour),
            limits,
            member=secrets.token_hex(8),
            booked=False,
        )
        if self.redis is None or self._admit is None:
            return self._admit_locally(ticket)
        dates = periods(self._clock())
        hours = (limits.audio_hours_per_day, limits.audio_hours_per_month)
        try:
            if self.down:  # known down (the sync loop retries each second): no 2 s wait
                raise ConnectionError("Redis unreachable at the last sync")
            async with asyncio.timeout(REDIS_TIMEOUT):
                raw = await self._admit(
                    keys=[
                        layout.sessions_key(client),
                        layout.starts_key(client),
                        layout.usage_key("client", client, "day", dates["day"]),
                        layout.usage_key("client", client, "month", dates["month"]),
                    ],
                    args=[
                        ticket.member,
                        int(LEASE_TTL * 1000),
                        limits.max_sessions or 0,
                        limits.sessions_per_minute or 0,
                        # (0: no limit; a budget within AUDIO_SLACK is reached)
                        *(max(h * 3600 - AUDIO_SLACK, 1e-6) if h else 0 for h in hours),
                    ],
                )
        except REDIS_FAILURES as exc:
            self._set_up(False, exc)
            if not self.fail_open:
                return self._refuse(ticket, Limit.UNAVAILABLE)
            log.warning("limits_unchecked", client=client, reason="redis unreachable")
            self._started(ticket)
            return ticket
        if int(raw[0]) == 0:
            return self._refuse(ticket, Limit(str(raw[1])))
        ticket.booked = True
        ticket.left, ticket.bound = audio_left(limits, float(raw[1]), float(raw[2]))
        self._started(ticket)
        return ticket

    def _admit_locally(self, ticket: Ticket) -> Ticket | Close:
        """One process, no Redis: the same rules on this process's own counts."""
        now = self._clock()
        client, limits = ticket.client, ticket.limits
        starts = self._local_starts.setdefault(client, collections.deque())
        while starts and starts[0] <= now - 60.0:
            starts.popleft()
        active = sum(1 for t in self.tickets if t.client == client)
        used = self._local_used(client, now)
        reached = first_limit_reached(limits, active, len(starts), *used)
        if reached is not None:
            return self._refuse(ticket, reached)
        if limits.sessions_per_minute is not None:
            starts.append(now)  # at most sessions_per_minute entries
        ticket.left, ticket.bound = audio_left(limits, *used)
        self._started(ticket)
        return ticket

    def _local_used(self, client: str, now: float) -> tuple[float, float]:
        dates = periods(now)
        return (
            self._local_audio.get((client, dates["day"]), 0.0),
            self._local_audio.get((client, dates["month"]), 0.0),
        )

    def _local_usage(self, ticket: Ticket, audio: float) -> None:
        """Without Redis: add to the client's audio of the day and month, and tell its
        running session how much it may still send."""
        now = self._clock()
        dates = periods(now)
        for date in dates.values():
            slot = (ticket.client, date)
            self._local_audio[slot] = self._local_audio.get(slot, 0.0) + audio
        if len(self._local_audio) > 2 * len(self.env_limits) + 2 * len(self.tickets) + 16:
            current = set(dates.values())  # past periods are not needed any more
            self._local_audio = {k: v for k, v in self._local_audio.items() if k[1] in current}
        left, bound = audio_left(ticket.limits, *self._local_used(ticket.client, now))
        if bound is not None and ticket.session is not None:
            ticket.bound = bound
            code, text = refusal(bound, ticket.client, ticket.limits)
            ticket.session.limit_audio(ticket.session.audio_seconds + left, Close(code, text))

    def _refuse(self, ticket: Ticket, limit: Limit) -> Close:
        self.m.client_refused.labels(ticket.label, limit.value).inc()
        code, text = refusal(limit, ticket.client, ticket.limits)
        log.info("client_limit_refused", client=ticket.client, limit=limit.value, code=code)
        return Close(code, text)

    def _started(self, ticket: Ticket) -> None:
        self.tickets.add(ticket)
        self.m.client_sessions.labels(ticket.label).inc()

    def attach(self, ticket: Ticket, session: Limited, alias: str) -> None:
        """The session opened upstream on key ``alias``: count it, give it its budget."""
        ticket.session = session
        day = periods(self._clock())["day"]
        self._pend("client", ticket.client, ticket.model, day).sessions += 1
        self._pend("key", alias, ticket.model, day).sessions += 1
        if ticket.bound is not None:
            code, text = refusal(ticket.bound, ticket.client, ticket.limits)
            session.limit_audio(ticket.left, Close(code, text))

    def usage(self, ticket: Ticket, alias: str, audio: float, seconds: float) -> None:
        """A running session's use since its last report (every second, and at its end)."""
        if audio <= 0 and seconds <= 0:
            return
        cost = self.prices.cost(ticket.model, seconds)
        day = periods(self._clock())["day"]  # booked to the UTC day it was used in
        for by, name in (("client", ticket.client), ("key", alias)):
            pending = self._pend(by, name, ticket.model, day)
            pending.audio += audio
            pending.session += seconds
            pending.cost += cost
        m = self.m
        m.client_audio.labels(ticket.label, ticket.model).inc(audio)
        m.client_session.labels(ticket.label, ticket.model).inc(seconds)
        m.client_spend.labels(ticket.label, ticket.model).inc(cost)
        m.key_spend.labels(alias, ticket.model).inc(cost)
        if ticket.session is not None:
            ticket.accounted_audio = ticket.session.audio_seconds
        if self.redis is None:
            self._local_usage(ticket, audio)

    def release(self, ticket: Ticket) -> None:
        """The session ended (or never opened upstream): its lease goes at the next sync."""
        self.tickets.discard(ticket)
        if ticket.session is not None and ticket.session.limit_reached and ticket.bound:
            self.m.client_refused.labels(ticket.label, ticket.bound.value).inc()
        if ticket.booked and self.redis is not None:
            self._released.append((ticket.client, ticket.member))
            if len(self._released) > MAX_RELEASES:  # Redis down for long: those expired
                del self._released[: len(self._released) - MAX_RELEASES]
            self._wake.set()

    def _pend(self, by: str, name: str, model: str, day: str) -> _Pending:
        key = (by, name, model, day)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending()
        return pending

    # ------------------------------------------------------------------ sync

    def start(self) -> None:
        if self.redis is not None:
            self._task = asyncio.create_task(self._run(), name="tenants")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            with contextlib.suppress(*REDIS_FAILURES):  # the last usage and leases
                async with asyncio.timeout(REDIS_TIMEOUT):
                    await self.sync()
        if self.redis is not None:
            await self.redis.aclose()

    async def _run(self) -> None:
        while True:
            try:
                await self.sync()
            except REDIS_FAILURES as exc:
                self._set_up(False, exc)
            except Exception:  # a bug, not Redis: say so and go on
                log.exception("tenants_sync_failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SYNC):
                    await self._wake.wait()
            self._wake.clear()

    async def sync(self) -> None:
        """Reload changed records, write usage, renew and free leases, apply budgets."""
        assert self.redis is not None
        async with asyncio.timeout(REDIS_TIMEOUT * 2):
            raw_version = await self.redis.get(layout.VERSION)
            version = None if raw_version is None else text(raw_version)
            if version != self.snapshot.version or self.snapshot.version is None:
                await self._reload(version)
            await self._flush()
            await self._leases()
            await self._budgets()
        self._set_up(True)

    async def _reload(self, version: str | None) -> None:
        assert self.redis is not None
        raw_clients = await self.redis.hgetall(layout.CLIENTS)
        raw_keys = await self.redis.hgetall(layout.UPSTREAM_KEYS)
        clients: dict[str, ClientRecord] = {}
        keys: list[ClientKey] = list(self.settings.client_keys)
        # A record whose JSON did not change since the last reload is not parsed again
        # (one admin change re-parsed every record on every replica: 25 ms of event
        # loop for 1000 clients x 10 keys).
        parsed: dict[str, tuple[str, ClientRecord, list[ClientKey]]] = {}
        for raw_name, raw_body in raw_clients.items():
            name, body = text(raw_name), text(raw_body)
            cached = self._parsed.get(name)
            if cached is None or cached[0] != body:
                try:
                    record = client_from_json(json.loads(body))
                except (ValueError, KeyError, TypeError):
                    log.warning("client_record_unreadable", client=name[:40])
                    continue
                digests = [
                    ClientKey(record.name, bytes.fromhex(k.digest), k.expires_at)
                    for k in record.keys
                ]
                cached = (body, record, digests)
                self.m.client_label(record.name)
            parsed[name] = cached
            clients[name] = cached[1]
            keys += cached[2]
        self._parsed = parsed
        upstream: dict[str, UpstreamKeySettings] = {}
        for alias, key_body in raw_keys.items():
            try:
                upstream[text(alias)] = upstream_from_json(json.loads(key_body))
            except (ValueError, KeyError, TypeError):
                log.warning("key_settings_unreadable", key=str(alias)[:40])
        self.snapshot = Snapshot(clients, upstream, version)
        self.auth.load(keys)
        for settings in upstream.values():
            self._apply_key(settings)
        log.info("tenants_loaded", clients=len(clients), upstream_keys=len(upstream))

    def _apply_key(self, settings: UpstreamKeySettings) -> None:
        alias = settings.alias
        known = {r.alias for r in self.pool.records()}
        if alias not in known:
            if settings.secret is None:
                return
            self.pool.add(
                UpstreamKey(alias, settings.secret),
                max_sessions=self.settings.key_max_sessions,
                sessions_per_minute=self.settings.key_sessions_per_minute,
            )
            self.metrics.register_key(alias)
            self._key_gauges(alias)
            log.info("key_added", key=alias)
        elif (
            settings.secret is not None
            and alias not in self._env_aliases
            and self.pool.record(alias).key.secret != settings.secret
        ):  # a runtime key's new secret (PUT /admin/keys/{alias}), on every replica
            transition = self.pool.replace(UpstreamKey(alias, settings.secret))
            if transition is not None:
                log.warning("key_state_changed", **transition.fields(), source="tenants")
                self.metrics.key_changed(self.pool.record(alias))
            log.info("key_secret_replaced", key=alias)
        record = self.pool.record(alias)
        if settings.retired:
            self._hold(alias, KeyState.RETIRED, "retired by the operator")
        elif record.state is KeyState.RETIRED:
            self._hold(alias, None, "back in rotation")
        self.m.key_budget_alert.labels(alias).set(
            settings.alert_share or self.settings.budget_alert_share
        )

    def _key_gauges(self, alias: str) -> None:
        self.m.key_budget_used.labels(alias).set(0.0)
        self.m.key_budget_alert.labels(alias).set(self.settings.budget_alert_share)
        for model in ("default",):
            self.m.key_spend.labels(alias, model)

    def _hold(self, alias: str, state: KeyState | None, reason: str) -> None:
        transition = self.pool.hold_out(alias, state, reason)
        if transition is not None:
            log.warning("key_state_changed", **transition.fields(), source="tenants")
            self.metrics.key_changed(self.pool.record(alias))

    async def _flush(self) -> None:
        assert self.redis is not None
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        try:
            pipe = self.redis.pipeline(transaction=False)
            for (by, name, model, day), p in pending.items():
                dates = {"day": day, "month": day[:7]}
                for period in ("day", "month"):
                    key = layout.usage_key(by, name, period, dates[period])
                    if p.audio:
                        pipe.hincrbyfloat(key, "audio_seconds", p.audio)
                        pipe.hincrbyfloat(key, f"audio_seconds:{model}", p.audio)
                    if p.session:
                        pipe.hincrbyfloat(key, "session_seconds", p.session)
                    if p.cost:
                        pipe.hincrbyfloat(key, "cost_usd", p.cost)
                        pipe.hincrbyfloat(key, f"cost_usd:{model}", p.cost)
                    if p.sessions:
                        pipe.hincrby(key, "sessions", p.sessions)
                    pipe.expire(key, layout.USAGE_TTL[period])
                    index = layout.index_key(by, period, dates[period])
                    pipe.sadd(index, name)
                    pipe.expire(index, layout.USAGE_TTL[period])
            await pipe.execute()
        except BaseException:
            for slot, p in pending.items():  # written at the next sync
                into = self._pend(*slot)
                into.audio += p.audio
                into.session += p.session
                into.cost += p.cost
                into.sessions += p.sessions
            raise

    async def _leases(self) -> None:
        assert self.redis is not None and self._renew is not None
        released, self._released = self._released, []
        if released:
            pipe = self.redis.pipeline(transaction=False)
            for client, member in released:
                pipe.zrem(layout.sessions_key(client), member)
            await pipe.execute()
        members: dict[str, list[str]] = {}
        for ticket in self.tickets:
            if ticket.booked:
                members.setdefault(ticket.client, []).append(ticket.member)
        for client, booked in members.items():  # one call per client (one slot each)
            await self._renew(
                keys=[layout.sessions_key(client)] * len(booked),
                args=[int(LEASE_TTL * 1000), *booked],
            )

    async def _budgets(self) -> None:
        """Running sessions' audio left, and the upstream keys' spend against their budgets."""
        assert self.redis is not None
        dates = periods(self._clock())
        for ticket in self.tickets:  # limits changed meanwhile apply to running sessions
            ticket.limits = self.limits_of(ticket.client)
            if ticket.bound is not None and not ticket.limits.any_audio:
                # The budget was removed: the session's allowance goes too.
                ticket.left, ticket.bound = math.inf, None
                if ticket.session is not None:
                    ticket.session.limit_audio(math.inf, Close(1000, ""))
        budgeted = [t for t in self.tickets if t.session is not None and t.limits.any_audio]
        totals: dict[str, tuple[float, float]] = {}
        for client in {t.client for t in budgeted}:
            day, month = await asyncio.gather(
                self.redis.hget(
                    layout.usage_key("client", client, "day", dates["day"]), "audio_seconds"
                ),
                self.redis.hget(
                    layout.usage_key("client", client, "month", dates["month"]), "audio_seconds"
                ),
            )
            totals[client] = (float(day or 0), float(month or 0))
        for ticket in budgeted:
            left, bound = audio_left(ticket.limits, *totals[ticket.client])
            if bound is None or ticket.session is None:
                continue
            ticket.bound = bound
            code, text = refusal(bound, ticket.client, ticket.limits)
            ticket.session.limit_audio(ticket.accounted_audio + left, Close(code, text))
        for settings in self.snapshot.upstream.values():
            if settings.alias not in {r.alias for r in self.pool.records()}:
                continue
            spent = float(
                await self.redis.hget(
                    layout.usage_key(
                        "key", settings.alias, settings.period, dates[settings.period]
                    ),
                    "cost_usd",
                )
                or 0
            )
            share = budget_share(spent, settings.budget_usd)
            self.m.key_budget_used.labels(settings.alias).set(share or 0.0)
            state = self.pool.record(settings.alias).state
            if settings.retired:  # re-applied each sync, not only when the version changes
                self._hold(settings.alias, KeyState.RETIRED, "retired by the operator")
                continue
            if share is not None and share >= 1.0:
                self._hold(
                    settings.alias,
                    KeyState.BUDGET_EXHAUSTED,
                    f"budget_exhausted: spent {spent:.2f} of {settings.budget_usd:.2f} USD "
                    f"this {settings.period}",
                )
            elif state is KeyState.BUDGET_EXHAUSTED:
                self._hold(settings.alias, None, "budget available again")

    def _set_up(self, up: bool, error: BaseException | None = None) -> None:
        if up:
            self._timeouts = 0
        elif isinstance(error, _TIMEOUTS) and not self.down:
            self._timeouts += 1
            if self._timeouts < SLOW_LIMIT:  # slow, not down (yet)
                log.warning("tenants_redis_slow", timeouts=self._timeouts)
                return
        self.down = not up
        if up == self.up:
            return
        self.up = up
        self.m.limits_redis_up.set(1.0 if up else 0.0)
        if up:
            log.info("tenants_redis_up")
        else:
            log.warning(
                "tenants_redis_down",
                error=type(error).__name__,
                on_redis_down=self.settings.limits_on_redis_down,
            )

    # ------------------------------------------------------------------ admin

    async def audit(self, who: str, action: str, target: str, details: dict[str, Any]) -> None:
        """Append one change to the audit stream and log it (never a secret)."""
        assert self.redis is not None
        entry: dict[Any, Any] = {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._clock())),
            "who": who,
            "action": action,
            "target": target,
            "details": json.dumps(details, sort_keys=True),
        }
        await self.redis.xadd(layout.AUDIT, entry, maxlen=layout.AUDIT_MAXLEN, approximate=True)
        log.info("admin_change", who=who, action=action, target=target, details=details)

    async def update(
        self, hash_name: str, field_name: str, change: Callable[[str | None], str | None]
    ) -> str | None:
        """Read-modify-write one record atomically (retried when another admin wrote it),
        and bump the version so every replica reloads. ``change`` returns the new JSON
        (None: delete)."""
        assert self.redis is not None
        async with self.redis.pipeline(transaction=True) as pipe:
            for _ in range(20):
                try:
                    await pipe.watch(hash_name)
                    current = await pipe.hget(hash_name, field_name)
                    new = change(None if current is None else text(current))
                    pipe.multi()  # type: ignore[no-untyped-call]
                    if new is None:
                        pipe.hdel(hash_name, field_name)
                    else:
                        pipe.hset(hash_name, field_name, new)
                    pipe.incr(layout.VERSION)
                    await pipe.execute()
                    self._wake.set()
                    return new
                except WatchError:
                    continue
        raise RedisError("too many concurrent changes to one record")

    async def active_sessions(self, client: str) -> int:
        assert self.redis is not None
        now_ms = int(self._clock() * 1000)
        return int(await self.redis.zcount(layout.sessions_key(client), now_ms, "+inf"))

    async def usage_report(self, by: str, period: str, date: str) -> list[dict[str, Any]]:
        assert self.redis is not None
        names = sorted(
            text(n) for n in await self.redis.smembers(layout.index_key(by, period, date))
        )
        rows: list[dict[str, Any]] = []
        for name in names:
            reply = await self.redis.hgetall(layout.usage_key(by, name, period, date))
            models: dict[str, dict[str, float]] = {}
            raw = {text(k): text(v) for k, v in reply.items()}
            for fieldname, value in raw.items():
                base, _, model = fieldname.partition(":")
                if model:
                    models.setdefault(model, {})[base] = round(float(value), 6)
            rows.append(
                {
                    by: name,
                    "audio_seconds": round(float(raw.get("audio_seconds", 0)), 3),
                    "session_seconds": round(float(raw.get("session_seconds", 0)), 3),
                    "sessions": int(raw.get("sessions", 0)),
                    "cost_usd": round(float(raw.get("cost_usd", 0)), 6),
                    "models": models,
                }
            )
        rows.sort(key=lambda r: (-r["cost_usd"], -r["audio_seconds"], r[by]))
        return rows
