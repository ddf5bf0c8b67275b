"""Pure key-pool logic: selection, caps, budgets, state changes, probes."""

from __future__ import annotations

from voxgate.keys.pool import (
    DROP_COOLDOWN,
    DROP_LIMIT,
    DROP_WINDOW,
    FIRST_PROBE_DELAY,
    PROBE_INTERVAL,
    UPSTREAM_WIDE_WINDOW,
    KeyPool,
    KeyState,
    Lease,
    Unavailable,
)
from voxgate.settings import UpstreamKey
from voxgate.upstream.failures import FailureClass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pool(n: int = 3, *, cap: int = 2, per_minute: int = 100) -> tuple[KeyPool, Clock]:
    clock = Clock()
    keys = [UpstreamKey(f"k{i}", f"secret-{i}") for i in range(n)]
    return (
        KeyPool(
            keys, max_sessions=cap, sessions_per_minute=per_minute, clock=clock, jitter=lambda: 1.0
        ),
        clock,
    )


def lease(p: KeyPool) -> Lease:
    got = p.acquire()
    assert isinstance(got, Lease), got
    return got


def test_selection_spreads_load_and_rotates_ties() -> None:
    """Each new session goes to the least-loaded key; equal loads take turns."""
    p, _ = pool(3, cap=2)
    first = [lease(p).alias for _ in range(3)]
    assert sorted(first) == ["k0", "k1", "k2"]
    second = [lease(p).alias for _ in range(3)]
    assert sorted(second) == ["k0", "k1", "k2"]
    assert p.acquire() is Unavailable.AT_CAPACITY


def test_release_returns_capacity() -> None:
    """A released lease frees its key's slot."""
    p, _ = pool(1, cap=1)
    held = lease(p)
    assert p.acquire() is Unavailable.AT_CAPACITY
    p.release(held)
    assert lease(p).alias == "k0"


def test_new_sessions_per_minute_budget_holds_and_refills() -> None:
    """A key takes at most its per-minute budget of new sessions, then again a minute later."""
    p, clock = pool(1, cap=10, per_minute=2)
    for _ in range(2):
        p.release(lease(p))
    assert p.acquire() is Unavailable.RATE_LIMITED
    clock.now += 61
    assert lease(p).alias == "k0"


def test_payment_required_leaves_rotation_at_once_and_is_probed_later() -> None:
    """A 402 disables the key for selection; a probe is due after the first delay."""
    p, clock = pool(2)
    change = p.report_failure("k0", FailureClass.PAYMENT_REQUIRED, "Account not upgraded")
    assert change is not None and change.new is KeyState.PAYMENT_REQUIRED
    assert {lease(p).alias for _ in range(2)} == {"k1"}
    assert p.due_probes() == []
    clock.now += FIRST_PROBE_DELAY
    assert [k.alias for k in p.due_probes()] == ["k0"]
    p.probe_failed("k0", FailureClass.PAYMENT_REQUIRED, "still")
    assert p.due_probes() == []
    clock.now += PROBE_INTERVAL
    assert [k.alias for k in p.due_probes()] == ["k0"]
    back = p.report_success("k0")
    assert back is not None and back.new is KeyState.HEALTHY
    assert p.due_probes() == []


def test_rate_limit_cools_down_with_growing_backoff() -> None:
    """Rate limits and transient failures cool a key down, longer each time in a row."""
    p, clock = pool(1)
    p.report_failure("k0", FailureClass.RATE_LIMITED, "3009")
    assert p.acquire() is Unavailable.RATE_LIMITED
    clock.now += 1.0
    p.release(lease(p))
    p.report_failure("k0", FailureClass.TRANSIENT, "1011")
    p.report_failure("k0", FailureClass.TRANSIENT, "1011")
    clock.now += 3.9
    assert not isinstance(p.acquire(), Lease)
    clock.now += 0.2
    assert isinstance(p.acquire(), Lease)


def test_client_faults_never_count_against_a_key() -> None:
    """3006/3007/1009 are the client's doing: the key stays healthy."""
    p, _ = pool(1)
    assert p.report_failure("k0", FailureClass.CLIENT_FAULT, "3007") is None
    assert p.record("k0").state is KeyState.HEALTHY


def test_unavailable_says_why() -> None:
    """All keys needing billing, all unauthorized, and all excluded are told apart."""
    p, _ = pool(2)
    for alias in ("k0", "k1"):
        p.report_failure(alias, FailureClass.PAYMENT_REQUIRED, "402")
    assert p.acquire() is Unavailable.PAYMENT_REQUIRED
    q, _ = pool(2)
    for alias in ("k0", "k1"):
        q.report_failure(alias, FailureClass.UNAUTHORIZED, "401")
    assert q.acquire() is Unavailable.UNAUTHORIZED
    r, _ = pool(2)
    for alias in ("k0", "k1"):
        r.report_failure(alias, FailureClass.TRANSIENT, "refused")
    assert r.acquire() is Unavailable.UNREACHABLE


def test_candidates_are_usable_keys_in_rotation_order_and_take_books_one() -> None:
    """The shared pool's view: usable, not excluded keys from the rotation point on;
    booking one counts it as this replica's session and moves the rotation past it."""
    p, _ = pool(3, cap=1)
    p.report_failure("k1", FailureClass.PAYMENT_REQUIRED, "402")
    assert p.candidates() == ["k0", "k2"]
    assert p.candidates(frozenset({"k0"})) == ["k2"]
    got = p.take("k0")
    assert got.alias == "k0"
    record = p.record("k0")
    assert (record.active, record.sessions_total, len(record.starts)) == (1, 1, 1)
    assert p.candidates() == ["k2", "k0"]
    # take books past the local cap: the cap is checked across replicas, in Redis.
    p.take("k0")
    assert p.record("k0").active == 2


def test_adopting_another_replicas_402_disables_without_counting_and_schedules_a_probe() -> None:
    """A 402 another replica saw takes the key out here too, with a probe of its own;
    this replica's session and 402 counters stay as they were."""
    p, clock = pool(2)
    change = p.adopt("k0", KeyState.PAYMENT_REQUIRED, "Account not upgraded")
    assert change is not None and change.new is KeyState.PAYMENT_REQUIRED
    record = p.record("k0")
    assert record.payment_required_total == 0 and record.sessions_total == 0
    assert {lease(p).alias for _ in range(2)} == {"k1"}
    assert p.adopt("k0", KeyState.PAYMENT_REQUIRED, "again") is None
    clock.now += FIRST_PROBE_DELAY
    assert [k.alias for k in p.due_probes()] == ["k0"]
    back = p.adopt("k0", KeyState.HEALTHY, "works")
    assert back is not None and back.new is KeyState.HEALTHY
    assert p.due_probes() == [] and "k0" in p.candidates()


def test_adopting_healthy_lifts_only_disabled_states() -> None:
    """'Works' from another replica ends a disabled state but not this replica's own
    cool-down (a transient failure may be its own network); cooling is never adopted."""
    p, _ = pool(2)
    p.report_failure("k0", FailureClass.TRANSIENT, "1011")
    assert p.adopt("k0", KeyState.HEALTHY, "works") is None
    assert p.record("k0").state is KeyState.COOLING
    assert p.adopt("k1", KeyState.COOLING, "3009") is None
    assert p.record("k1").state is KeyState.HEALTHY
    p.adopt("k1", KeyState.UNAUTHORIZED, "401")
    assert p.record("k1").state is KeyState.UNAUTHORIZED
    assert p.candidates() == []


def test_a_key_that_keeps_dropping_sessions_cools_down_longer_each_time() -> None:
    """One or two drops say little; the third within a minute cools the key down for
    DROP_COOLDOWN, and a further one doubles it. A connect that works in between does
    not forgive the drops (the key connects, then drops)."""
    p, clock = pool(2)
    assert p.report_drop("k0", "1011") == []
    assert p.report_drop("k0", "1011") == []
    p.report_success("k0")
    (moved,) = p.report_drop("k0", "1011")
    assert moved.new is KeyState.COOLING and "3 sessions" in moved.reason
    assert [lease(p).alias for _ in range(2)] == ["k1", "k1"]
    clock.now += DROP_COOLDOWN + 0.1
    p.report_success("k0")
    p.report_drop("k0", "1011")
    clock.now += DROP_COOLDOWN + 0.1
    assert "k0" not in p.candidates()  # 4 drops: twice as long
    clock.now += DROP_COOLDOWN
    assert "k0" in p.candidates()


def test_drops_of_several_keys_within_a_second_are_an_upstream_wide_event() -> None:
    """Upstream drops every session at once (both keys within UPSTREAM_WIDE_WINDOW):
    no key cools down, even one whose own drops reached DROP_LIMIT before the other
    key's first came in (it is back in rotation), and new sessions are served."""
    p, clock = pool(2, cap=20)
    for _ in range(DROP_LIMIT):
        p.report_drop("k0", "1012")
        clock.now += 0.001
    assert p.record("k0").state is KeyState.COOLING
    (back,) = p.report_drop("k1", "1012")
    assert (back.alias, back.new) == ("k0", KeyState.HEALTHY)
    for alias in ["k0", "k1"] * 4:
        clock.now += 0.001
        assert p.report_drop(alias, "1012") == []
    assert [r.state for r in p.records()] == [KeyState.HEALTHY] * 2
    assert isinstance(p.acquire(), Lease)
    # One key alone dropping again later is counted as before.
    clock.now += UPSTREAM_WIDE_WINDOW + 0.1
    for _ in range(DROP_LIMIT):
        p.report_drop("k1", "1011")
    assert p.record("k1").state is KeyState.COOLING


def test_a_drop_not_counted_and_drop_cooling_never_stops_a_replacement() -> None:
    """``count=False`` (the client session had a drop counted already) leaves the key
    alone. Keys cooling down from drops are skipped by new sessions, but a
    replacement (``fallback``) gets the least recently dropped one; a key cooling
    after a failure at connect is never a fallback."""
    p, clock = pool(3, cap=5)
    for _ in range(DROP_LIMIT + 2):
        assert p.report_drop("k0", "1011", count=False) == []
    assert p.record("k0").state is KeyState.HEALTHY
    for alias in ("k0", "k1"):
        for _ in range(DROP_LIMIT):
            p.report_drop(alias, "1011")
        clock.now += UPSTREAM_WIDE_WINDOW + 0.1
    p.report_failure("k2", FailureClass.TRANSIENT, "1011 at connect")
    assert p.acquire() is Unavailable.UNREACHABLE
    assert p.candidates(fallback=True) == ["k0", "k1"]
    replacement = p.acquire(frozenset({"k1"}), fallback=True)
    assert isinstance(replacement, Lease) and replacement.alias == "k0"
    p.report_success("k0")  # the replacement's connect does not end the cool-down
    assert p.record("k0").state is KeyState.COOLING


def test_drops_older_than_the_window_are_forgotten() -> None:
    """Two drops, then one more a window later: still healthy."""
    p, clock = pool(1)
    p.report_drop("k0", "1011")
    p.report_drop("k0", "1011")
    clock.now += DROP_WINDOW + 1
    assert p.report_drop("k0", "1011") == []
    assert p.record("k0").state is KeyState.HEALTHY


def test_an_unexplained_refusal_cools_a_key_briefly_without_disabling_it() -> None:
    """A 1008 for a reason not known (say "Incorrect padding") cools the key like a
    transient failure: it is back after the backoff, never disabled or probed."""
    p, clock = pool(1)
    p.report_failure("k0", FailureClass.UNEXPLAINED, "Incorrect padding")
    record = p.record("k0")
    assert record.state is KeyState.COOLING and record.next_probe_at is None
    clock.now += 1.1
    assert isinstance(p.acquire(), Lease)


def test_drops_leave_a_disabled_key_as_it_is() -> None:
    """Sessions that were running when the key turned 402 drop: the key stays
    disabled for payment, and the pool still says payment is what is missing."""
    p, _ = pool(1)
    p.report_failure("k0", FailureClass.PAYMENT_REQUIRED, "402")
    for _ in range(4):
        assert p.report_drop("k0", "1011") == []
    assert p.record("k0").state is KeyState.PAYMENT_REQUIRED
    assert p.acquire() is Unavailable.PAYMENT_REQUIRED


def test_a_cool_down_that_is_over_is_shown_as_healthy() -> None:
    """After the backoff the key is usable; expire_cooling says so (for /admin/keys
    and the metrics) without waiting for its next success, and a further failure
    still backs off longer (the failures in a row are remembered)."""
    p, clock = pool(1)
    p.report_failure("k0", FailureClass.TRANSIENT, "1011")
    assert p.expire_cooling() == []
    clock.now += 1.1
    (moved,) = p.expire_cooling()
    assert (moved.old, moved.new) == (KeyState.COOLING, KeyState.HEALTHY)
    assert p.record("k0").state is KeyState.HEALTHY
    p.report_failure("k0", FailureClass.TRANSIENT, "1011")
    assert p.record("k0").cooling_until == clock.now + 2.0  # the second backoff: 2 s
