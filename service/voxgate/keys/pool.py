"""The upstream key pool: which key serves the next session, and each key's health.

Pure logic: the clock and the jitter source are passed in, nothing here does I/O.
The gateway asks :meth:`KeyPool.acquire` for a lease, reports what upstream said
with :meth:`KeyPool.report`, and releases the lease when the session ends.
State changes come back as :class:`Transition` values for the caller to log.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from voxgate.settings import UpstreamKey
from voxgate.upstream.failures import FailureClass

#: First cool-down after a rate limit or transient failure; doubles each time.
BASE_BACKOFF = 1.0
MAX_BACKOFF = 60.0
#: A payment-required key is probed again after this long (an upgrade takes 1-2
#: minutes to reach upstream), then every PROBE_INTERVAL until it works.
FIRST_PROBE_DELAY = 30.0
PROBE_INTERVAL = 60.0
#: An unauthorized key is usually a typo or a revoked key: probe it rarely.
UNAUTHORIZED_PROBE_INTERVAL = 300.0
#: Window of the new-sessions-per-minute budget.
BUDGET_WINDOW = 60.0
#: A key whose running sessions upstream drops (transient, after Begin) this many
#: times within DROP_WINDOW seconds cools down like a key failing at connect: first
#: for DROP_COOLDOWN seconds, doubling with each further drop in the window.
DROP_LIMIT = 3
DROP_WINDOW = 60.0
DROP_COOLDOWN = 5.0
#: Drops of two or more keys within this many seconds are one upstream-wide event
#: (a deploy, a network blip, our own network): they count against no key.
UPSTREAM_WIDE_WINDOW = 1.0
#: Ceiling of the recent drops the pool remembers for that (older ones are pruned).
_RECENT_DROPS = 1024


class KeyState(StrEnum):
    HEALTHY = "healthy"
    COOLING = "cooling_down"
    PAYMENT_REQUIRED = "disabled_payment_required"
    UNAUTHORIZED = "disabled_unauthorized"
    #: Out of rotation by the operator: its spend reached its budget (voxgate.tenants),
    #: or it was retired through the admin API. No probe brings it back; the operator
    #: (or a new budget period) does.
    BUDGET_EXHAUSTED = "budget_exhausted"
    RETIRED = "retired"


#: States only the operator's settings set and lift (see KeyPool.hold_out).
HELD_OUT = frozenset({KeyState.BUDGET_EXHAUSTED, KeyState.RETIRED})


#: States that take a key out of rotation until a probe finds it working.
DISABLED = frozenset({KeyState.PAYMENT_REQUIRED, KeyState.UNAUTHORIZED})


class Unavailable(StrEnum):
    """Why no key can take a session now (decides what the client is told)."""

    PAYMENT_REQUIRED = "payment_required"
    UNAUTHORIZED = "unauthorized"
    RATE_LIMITED = "rate_limited"
    AT_CAPACITY = "at_capacity"
    UNREACHABLE = "unreachable"
    #: Every key is out by the operator's settings (budget spent, retired).
    HELD_OUT = "held_out"


@dataclass
class KeyRecord:
    key: UpstreamKey
    max_sessions: int
    sessions_per_minute: int
    state: KeyState = KeyState.HEALTHY
    reason: str = ""
    since: float = 0.0
    active: int = 0
    sessions_total: int = 0
    payment_required_total: int = 0
    failures_in_a_row: int = 0
    cooling_until: float = 0.0
    next_probe_at: float | None = None
    last_failure: FailureClass | None = None
    starts: deque[float] = field(default_factory=deque)
    #: When upstream dropped running sessions of this key (within DROP_WINDOW).
    drops: deque[float] = field(default_factory=deque)
    #: When upstream last dropped a running session of this key (0.0: never).
    dropped_at: float = 0.0
    #: Whether the key cools down because of drops (not a failure at connect).
    drop_cooled: bool = False

    @property
    def alias(self) -> str:
        return self.key.alias

    def budget_left(self, now: float) -> int:
        while self.starts and self.starts[0] <= now - BUDGET_WINDOW:
            self.starts.popleft()
        return self.sessions_per_minute - len(self.starts)

    def usable(self, now: float) -> bool:
        if self.state is KeyState.COOLING and now >= self.cooling_until:
            return True
        return self.state is KeyState.HEALTHY


@dataclass(frozen=True, slots=True)
class Lease:
    key: UpstreamKey

    @property
    def alias(self) -> str:
        return self.key.alias


@dataclass(frozen=True, slots=True)
class Transition:
    alias: str
    old: KeyState
    new: KeyState
    reason: str

    def fields(self) -> dict[str, str]:
        """The one log line of a key's state change (alias and reason, never the key)."""
        return {"key": self.alias, "old": self.old, "new": self.new, "reason": self.reason}


class KeyPool:
    def __init__(
        self,
        keys: Sequence[UpstreamKey],
        *,
        max_sessions: int,
        sessions_per_minute: int,
        clock: Callable[[], float],
        jitter: Callable[[], float] = random.random,
        first_probe_delay: float = FIRST_PROBE_DELAY,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        self._first_probe_delay = first_probe_delay
        self._probe_interval = probe_interval
        self._records = {k.alias: KeyRecord(k, max_sessions, sessions_per_minute) for k in keys}
        self._order = list(self._records)
        self._turn = 0
        self._clock = clock
        self._jitter = jitter
        # (when, alias) of the drops of the last UPSTREAM_WIDE_WINDOW, oldest first.
        self._recent_drops: deque[tuple[float, str]] = deque()

    def records(self) -> list[KeyRecord]:
        return [self._records[a] for a in self._order]

    def record(self, alias: str) -> KeyRecord:
        return self._records[alias]

    # ------------------------------------------------------------------ leasing

    def acquire(
        self, exclude: frozenset[str] = frozenset(), *, fallback: bool = False
    ) -> Lease | Unavailable:
        """Lease the usable key with the most spare capacity (ties rotate). With
        ``fallback`` (a running session's replacement), when no key is usable, the
        least recently dropped of the keys cooling down from drops alone."""
        now = self._clock()
        best: KeyRecord | None = None
        best_load = 2.0
        count = len(self._order)
        for offset in range(count):
            record = self._records[self._order[(self._turn + offset) % count]]
            if record.alias in exclude or not record.usable(now):
                continue
            if record.active >= record.max_sessions or record.budget_left(now) <= 0:
                continue
            load = record.active / record.max_sessions
            if load < best_load:
                best, best_load = record, load
        if best is None and fallback:
            for alias in self._drop_cooled(exclude):
                record = self._records[alias]
                if record.active < record.max_sessions and record.budget_left(now) > 0:
                    return self.take(alias)
        if best is None:
            return self.why_unavailable(exclude)
        return self.take(best.alias)

    def candidates(
        self, exclude: frozenset[str] = frozenset(), *, fallback: bool = False
    ) -> list[str]:
        """Usable keys in rotation order, caps and budgets not checked (the shared
        pool checks them across replicas, see :mod:`voxgate.keys.shared`). With
        ``fallback`` and no usable key: the keys cooling down from drops alone, least
        recently dropped first (see :meth:`acquire`)."""
        now = self._clock()
        count = len(self._order)
        rotated = [self._order[(self._turn + i) % count] for i in range(count)]
        usable = [a for a in rotated if a not in exclude and self._records[a].usable(now)]
        if not usable and fallback:
            return self._drop_cooled(exclude)
        return usable

    def _drop_cooled(self, exclude: frozenset[str]) -> list[str]:
        """Keys out of rotation only because their sessions dropped, least recently
        dropped first: drop-cooling never stops a running session's own replacement."""
        cooled = [
            r
            for r in self.records()
            if r.alias not in exclude and r.state is KeyState.COOLING and r.drop_cooled
        ]
        return [r.alias for r in sorted(cooled, key=lambda r: r.dropped_at)]

    def take(self, alias: str) -> Lease:
        """Book a lease on ``alias``, chosen here or by the shared pool."""
        record = self._records[alias]
        self._turn = (self._order.index(alias) + 1) % len(self._order)
        record.active += 1
        record.sessions_total += 1
        record.starts.append(self._clock())
        return Lease(record.key)

    def release(self, lease: Lease) -> None:
        record = self._records[lease.alias]
        record.active = max(0, record.active - 1)

    def why_unavailable(self, exclude: frozenset[str] = frozenset()) -> Unavailable:
        now = self._clock()
        records = self.records()
        states = {r.state for r in records}
        if states == {KeyState.PAYMENT_REQUIRED}:
            return Unavailable.PAYMENT_REQUIRED
        if states == {KeyState.UNAUTHORIZED}:
            return Unavailable.UNAUTHORIZED
        if states <= {KeyState.PAYMENT_REQUIRED, KeyState.UNAUTHORIZED}:
            return Unavailable.PAYMENT_REQUIRED
        if states <= HELD_OUT:
            return Unavailable.HELD_OUT
        usable = [r for r in records if r.usable(now) and r.alias not in exclude]
        if usable and all(r.active >= r.max_sessions for r in usable):
            return Unavailable.AT_CAPACITY
        if any(r.last_failure is FailureClass.RATE_LIMITED for r in records) or (
            usable and all(r.budget_left(now) <= 0 for r in usable)
        ):
            return Unavailable.RATE_LIMITED
        # Every remaining key failed to connect in this attempt, or cools down after
        # a transient failure: the excluded keys' last failures tell which.
        last = {r.last_failure for r in records if r.alias in exclude}
        if last and last <= {FailureClass.PAYMENT_REQUIRED, FailureClass.UNAUTHORIZED}:
            return Unavailable.PAYMENT_REQUIRED
        return Unavailable.UNREACHABLE

    # ------------------------------------------------------------------ health

    def report_success(self, alias: str) -> Transition | None:
        record = self._records[alias]
        record.failures_in_a_row = 0
        record.last_failure = None
        if record.state in HELD_OUT:
            return None
        if record.drop_cooled and self._clock() < record.cooling_until:
            # A key that connects, then drops: a connect (a replacement's, on the
            # fallback) does not end the cool-down its drops earned.
            return None
        record.drop_cooled = False
        return self._move(record, KeyState.HEALTHY, "works", probe=None)

    def report_failure(self, alias: str, failure: FailureClass, detail: str) -> Transition | None:
        """Apply what upstream said about ``alias``; client faults never count against it."""
        record = self._records[alias]
        now = self._clock()
        if failure in (FailureClass.CLIENT_FAULT, FailureClass.NORMAL, FailureClass.EXPIRED):
            return None
        record.last_failure = failure
        if failure is FailureClass.PAYMENT_REQUIRED:
            record.payment_required_total += 1
        if record.state in HELD_OUT:
            # Out by the operator (retired, budget spent): counted, the state kept; only
            # the operator (or a new budget period) puts it back, never a cool-down.
            record.failures_in_a_row += 1
            return None
        if failure is FailureClass.PAYMENT_REQUIRED:
            return self._move(
                record, KeyState.PAYMENT_REQUIRED, detail, probe=now + self._first_probe_delay
            )
        if failure is FailureClass.UNAUTHORIZED:
            return self._move(
                record, KeyState.UNAUTHORIZED, detail, probe=now + UNAUTHORIZED_PROBE_INTERVAL
            )
        record.failures_in_a_row += 1
        backoff = min(MAX_BACKOFF, BASE_BACKOFF * 2 ** (record.failures_in_a_row - 1))
        record.cooling_until = max(
            record.cooling_until if record.drop_cooled else 0.0,
            now + backoff * (0.5 + self._jitter() / 2),
        )
        record.drop_cooled = False
        return self._move(record, KeyState.COOLING, detail, probe=None)

    def report_drop(self, alias: str, detail: str, *, count: bool = True) -> list[Transition]:
        """Upstream dropped a running session of ``alias`` (a transient failure after
        Begin). One drop says little; DROP_LIMIT within DROP_WINDOW make the key cool
        down (a successful connect does not end that: the key connects, then drops).

        Not counted: a drop with ``count`` false (the caller counts one drop per
        client session, so a session's own replacements dropping in turn do not cool
        the only key for everyone), and drops of two or more keys within
        UPSTREAM_WIDE_WINDOW (an upstream-wide event: every key would cool at once and
        nobody be served); those uncount the other keys' drops of that window too,
        and a key they had cooled is back. The changes are returned (to be logged)."""
        record = self._records[alias]
        now = self._clock()
        record.dropped_at = now
        recent = self._recent_drops
        while recent and (
            recent[0][0] <= now - UPSTREAM_WIDE_WINDOW or len(recent) >= _RECENT_DROPS
        ):
            recent.popleft()
        others = {a for _, a in recent if a != alias}
        recent.append((now, alias))
        if others:
            return [t for a in sorted(others) if (t := self._uncount(a, now)) is not None]
        if not count:
            return []
        drops = record.drops
        drops.append(now)
        while drops and drops[0] <= now - DROP_WINDOW:
            drops.popleft()
        if len(drops) > DROP_LIMIT * 8:
            drops.popleft()  # bounded: only the count up to the ceiling matters
        if len(drops) < DROP_LIMIT or record.state in DISABLED or record.state in HELD_OUT:
            # (a disabled or held-out key keeps its state: a retired key's running
            # sessions dropping must not move it to cooling_down, then healthy)
            return []
        record.last_failure = FailureClass.TRANSIENT
        cooldown = min(MAX_BACKOFF, DROP_COOLDOWN * 2 ** (len(drops) - DROP_LIMIT))
        record.cooling_until = max(record.cooling_until, now + cooldown)
        record.drop_cooled = True
        moved = self._move(
            record, KeyState.COOLING, f"{len(drops)} sessions dropped: {detail}", probe=None
        )
        return [moved] if moved is not None else []

    def _uncount(self, alias: str, now: float) -> Transition | None:
        """Forget ``alias``'s drops of the last UPSTREAM_WIDE_WINDOW (an upstream-wide
        event); back in rotation if they alone had cooled it down."""
        record = self._records[alias]
        drops = record.drops
        while drops and drops[-1] > now - UPSTREAM_WIDE_WINDOW:
            drops.pop()
        if record.state is not KeyState.COOLING or not record.drop_cooled:
            return None
        if len(drops) >= DROP_LIMIT:
            return None
        record.drop_cooled = False
        record.cooling_until = 0.0
        record.last_failure = None
        return self._move(record, KeyState.HEALTHY, "upstream-wide drop, not the key's", probe=None)

    def expire_cooling(self) -> list[Transition]:
        """Keys whose cool-down is over are healthy again (they were usable already):
        called before the pool's states are shown, so ``/admin/keys`` and the metrics
        do not say ``cooling_down`` until the key's next success. The count of failures
        in a row and the recent drops stay (a further failure still backs off longer)."""
        now = self._clock()
        moved: list[Transition] = []
        for record in self.records():
            if record.state is KeyState.COOLING and now >= record.cooling_until:
                record.drop_cooled = False
                transition = self._move(record, KeyState.HEALTHY, "cool-down over", probe=None)
                if transition is not None:
                    moved.append(transition)
        return moved

    def probe_failed(self, alias: str, failure: FailureClass, detail: str) -> Transition | None:
        """A background probe still fails: schedule the next one."""
        record = self._records[alias]
        transition = self.report_failure(alias, failure, detail)
        if record.state is KeyState.PAYMENT_REQUIRED:
            record.next_probe_at = self._clock() + self._probe_interval
        return transition

    # ------------------------------------------------------------------ operator

    def add(self, key: UpstreamKey, *, max_sessions: int, sessions_per_minute: int) -> bool:
        """Put a key added at runtime in rotation (False: the alias is already known)."""
        if key.alias in self._records:
            return False
        self._records[key.alias] = KeyRecord(key, max_sessions, sessions_per_minute)
        self._order.append(key.alias)
        return True

    def replace(self, key: UpstreamKey) -> Transition | None:
        """A runtime key's new secret (same alias): the next sessions and probes use it;
        its health starts afresh (healthy), unless the operator holds it out. Running
        sessions keep the connection they have."""
        record = self._records[key.alias]
        if record.key.secret == key.secret:
            return None
        record.key = key
        record.failures_in_a_row = 0
        record.last_failure = None
        record.drops.clear()
        record.drop_cooled = False
        record.cooling_until = 0.0
        if record.state in HELD_OUT:
            return None
        return self._move(record, KeyState.HEALTHY, "secret replaced", probe=None)

    def hold_out(self, alias: str, state: KeyState | None, reason: str = "") -> Transition | None:
        """Take a key out of rotation for the operator's reason (``budget_exhausted``,
        ``retired``), or with None put a key held out back (healthy). Running sessions
        on it go on; it is not probed."""
        record = self._records[alias]
        if state is None:
            if record.state not in HELD_OUT:
                return None
            return self._move(record, KeyState.HEALTHY, reason or "back in rotation", probe=None)
        assert state in HELD_OUT
        if record.state is state:
            return None
        return self._move(record, state, reason, probe=None)

    def adopt(self, alias: str, state: KeyState, reason: str) -> Transition | None:
        """Take on a state another replica saw: a key one replica found disabled is
        disabled here too (and probed here too), one a probe found working comes back.
        Counters of this replica's own sessions and 402s do not change. Cooling down
        is not shared (a transient failure may be this replica's own network)."""
        record = self._records[alias]
        if state is record.state or record.state in HELD_OUT:
            return None  # (held out: only this replica's operator settings lift it)
        if state is KeyState.HEALTHY:
            if record.state not in DISABLED:
                return None
            record.failures_in_a_row = 0
            record.last_failure = None
            return self._move(record, state, reason, probe=None)
        if state is KeyState.PAYMENT_REQUIRED:
            record.last_failure = FailureClass.PAYMENT_REQUIRED
            return self._move(record, state, reason, probe=self._clock() + self._first_probe_delay)
        if state is KeyState.UNAUTHORIZED:
            record.last_failure = FailureClass.UNAUTHORIZED
            probe = self._clock() + UNAUTHORIZED_PROBE_INTERVAL
            return self._move(record, state, reason, probe=probe)
        return None

    def due_probes(self) -> list[UpstreamKey]:
        now = self._clock()
        return [
            r.key for r in self.records() if r.next_probe_at is not None and r.next_probe_at <= now
        ]

    def _move(
        self, record: KeyRecord, state: KeyState, reason: str, probe: float | None
    ) -> Transition | None:
        old = record.state
        record.next_probe_at = probe
        if old is state and state is not KeyState.COOLING:
            return None
        record.state = state
        record.reason = reason[:200]
        record.since = self._clock()
        return Transition(record.alias, old, state, record.reason)
