"""The pure rules of tenants: records and their checks, limits and their closes,
periods, audio left, prices and model labels, and the key pool's held-out states."""

from __future__ import annotations

import json

import pytest
from voxgate.access.clientkeys import ClientAuthenticator
from voxgate.keys.pool import KeyPool, KeyState, Unavailable
from voxgate.protocol import ProtocolViolation
from voxgate.relay import closes
from voxgate.settings import (
    CLIENT_LIMIT_NAMES,
    ClientKey,
    Settings,
    SettingsError,
    UpstreamKey,
    digest_secret,
)
from voxgate.tenants import layout
from voxgate.tenants.limits import (
    Limit,
    Prices,
    audio_left,
    budget_share,
    first_limit_reached,
    model_label,
    periods,
    refusal,
)
from voxgate.tenants.records import (
    MAX_KEYS_PER_CLIENT,
    ClientRecord,
    Limits,
    RecordError,
    add_key,
    client_from_json,
    digest_hex,
    parse_key_request,
    parse_limits,
    parse_upstream_key,
    upstream_from_json,
)
from voxgate.upstream.failures import FailureClass


def test_limits_are_parsed_merged_and_checked() -> None:
    limits = parse_limits({"limits": {"max_sessions": 3, "audio_hours_per_day": 1.5}})
    assert limits == Limits(max_sessions=3, audio_hours_per_day=1.5)
    merged = parse_limits({"sessions_per_minute": 10, "max_sessions": None}, limits)
    assert merged == Limits(sessions_per_minute=10, audio_hours_per_day=1.5)
    for bad in (
        {"max_sessions": 1.5},
        {"max_sessions": 0},
        {"max_sessions": True},
        {"max_sessions": "3"},
        {"audio_hours_per_day": float("inf")},
        {"unknown": 1},
        [],
    ):
        with pytest.raises(RecordError):
            parse_limits(bad)


def test_a_client_key_is_kept_as_a_digest_and_a_record_holds_a_bounded_number() -> None:
    record = ClientRecord("svc")
    record, entry, secret = add_key(record, now=100.0, expires_at=None)
    assert entry.digest == digest_hex(secret) and secret not in json.dumps(record.to_json())
    assert client_from_json(json.loads(json.dumps(record.to_json()))) == record
    for _ in range(MAX_KEYS_PER_CLIENT - 1):
        record, _, _ = add_key(record, now=100.0, expires_at=200.0)
    with pytest.raises(RecordError):
        add_key(record, now=100.0, expires_at=None)
    # Expired keys do not count, and are dropped at the next change.
    record, _, _ = add_key(record, now=300.0, expires_at=None)
    assert len(record.keys) == 2
    assert parse_key_request({"expires_in": 60}, 1000.0) == 1060.0
    with pytest.raises(RecordError):
        parse_key_request({"expires_at": 10}, 1000.0)


def test_an_expired_or_replaced_key_is_refused() -> None:
    now = [100.0]
    auth = ClientAuthenticator([ClientKey("a", digest_secret("old"), 150.0)], clock=lambda: now[0])
    assert auth.check("old") == "a"
    now[0] = 150.0
    with pytest.raises(ProtocolViolation):
        auth.check("old")
    auth.load([ClientKey("b", digest_secret("new"))])
    assert auth.check("new") == "b" and auth.names == frozenset({"b"})


def test_upstream_key_settings_never_show_the_secret_unless_stored() -> None:
    settings = parse_upstream_key(
        "k2", {"secret": "s" * 20, "budget_usd": 5, "period": "day"}, None
    )
    assert "s" * 20 not in json.dumps(settings.to_json(with_secret=False))
    assert upstream_from_json(settings.to_json(with_secret=True)) == settings
    assert parse_upstream_key("k2", {"alert_share": 0.5}, settings).budget_usd == 5
    for bad in ({"period": "week"}, {"alert_share": 2}, {"secret": "x"}, {"other": 1}):
        with pytest.raises(RecordError):
            parse_upstream_key("k2", bad, None)
    with pytest.raises(RecordError):
        parse_upstream_key("bad alias!", {}, None)


def test_refusals_use_assemblyais_codes_and_name_the_limit() -> None:
    limits = Limits(2, 5, 1.0, 20.0)
    assert refusal(Limit.MAX_SESSIONS, "svc", limits)[0] == 3009
    assert refusal(Limit.SESSIONS_PER_MINUTE, "svc", limits)[0] == 3009
    code, text = refusal(Limit.AUDIO_DAY, "svc", limits)
    assert (
        code == 1008
        and text.startswith("Unauthorized Connection")
        and "audio_hours_per_day" in text
    )
    assert "audio_hours_per_month" in refusal(Limit.AUDIO_MONTH, "svc", limits)[1]
    assert refusal(Limit.UNAVAILABLE, "svc", limits)[0] == 1013
    for limit in Limit:
        assert "max_sessions" in refusal(limit, "svc", limits)[1] or limit is not Limit.MAX_SESSIONS


def test_periods_are_utc_and_audio_left_takes_the_tighter_budget() -> None:
    assert periods(1_764_547_199.0) == {"day": "2025-11-30", "month": "2025-11"}
    assert periods(1_764_547_200.0) == {"day": "2025-12-01", "month": "2025-12"}
    assert audio_left(Limits(), 1e9, 1e9) == (float("inf"), None)
    assert audio_left(Limits(audio_hours_per_day=1.0), 600.0, 0.0) == (3000.0, Limit.AUDIO_DAY)
    both = Limits(audio_hours_per_day=1.0, audio_hours_per_month=2.0)
    assert audio_left(both, 0.0, 6000.0) == (1200.0, Limit.AUDIO_MONTH)


def test_prices_model_labels_and_budget_share() -> None:
    prices = Prices({"default": 0.15, "u3-rt-pro": 0.45})
    assert prices.cost("universal-streaming-english", 3600.0) == pytest.approx(0.15)
    assert prices.cost("u3-rt-pro", 1800.0) == pytest.approx(0.225)
    assert model_label(None, prices.per_hour) == "default"
    assert model_label("u3-rt-pro", prices.per_hour) == "u3-rt-pro"
    assert model_label("x" * 500, prices.per_hour) == "other"  # never client text as a label
    assert budget_share(8.0, 10.0) == 0.8 and budget_share(8.0, None) is None


def test_prices_and_the_redis_down_choice_are_read_from_the_environment() -> None:
    base = {"VOXGATE_UPSTREAM_KEYS": "k", "VOXGATE_CLIENT_KEYS": "a=b"}
    settings = Settings.from_env({**base, "VOXGATE_PRICES": "0.2,u3-rt-pro=0.5"})
    assert dict(settings.prices) == {"default": 0.2, "u3-rt-pro": 0.5}
    assert settings.limits_on_redis_down == "open"
    for name, value in (
        ("VOXGATE_PRICES", "u3=-1"),
        ("VOXGATE_LIMITS_ON_REDIS_DOWN", "maybe"),
        ("VOXGATE_BUDGET_ALERT_SHARE", "1.5"),
    ):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({**base, name: value})
    # With Redis, clients may all be managed at runtime.
    only_redis = {"VOXGATE_UPSTREAM_KEYS": "k", "VOXGATE_REDIS_URL": "redis://h"}
    assert Settings.from_env(only_redis).client_keys == ()


def test_a_held_out_key_stays_out_until_the_operator_puts_it_back() -> None:
    pool = KeyPool(
        [UpstreamKey("a", "s1"), UpstreamKey("b", "s2")],
        max_sessions=5,
        sessions_per_minute=100,
        clock=lambda: 0.0,
    )
    transition = pool.hold_out("a", KeyState.BUDGET_EXHAUSTED, "budget_exhausted: spent")
    assert transition is not None and transition.new is KeyState.BUDGET_EXHAUSTED
    assert pool.candidates() == ["b"]
    assert pool.report_success("a") is None  # a session or probe does not bring it back
    assert pool.record("a").state is KeyState.BUDGET_EXHAUSTED
    assert pool.due_probes() == []
    assert pool.adopt("a", KeyState.HEALTHY, "probe") is None
    back = pool.hold_out("a", None)
    assert back is not None and back.new is KeyState.HEALTHY
    assert pool.add(UpstreamKey("c", "s3"), max_sessions=5, sessions_per_minute=100)
    assert not pool.add(UpstreamKey("c", "s3"), max_sessions=5, sessions_per_minute=100)
    assert "c" in pool.candidates()
    pool.report_failure("b", FailureClass.PAYMENT_REQUIRED, "402")
    pool.hold_out("c", KeyState.RETIRED, "retired")
    assert pool.candidates() == ["a"]


def test_with_every_key_held_out_the_client_is_told_so() -> None:
    pool = KeyPool(
        [UpstreamKey("a", "s1"), UpstreamKey("b", "s2")],
        max_sessions=5,
        sessions_per_minute=100,
        clock=lambda: 0.0,
    )
    pool.hold_out("a", KeyState.BUDGET_EXHAUSTED, "budget_exhausted")
    pool.hold_out("b", KeyState.RETIRED, "retired")
    assert pool.acquire() is Unavailable.HELD_OUT
    close = closes.for_unavailable(Unavailable.HELD_OUT)
    assert close.code == 1008 and "budget" in close.text


def test_client_limits_from_the_environment_and_the_local_rule() -> None:
    base = {"VOXGATE_UPSTREAM_KEYS": "k", "VOXGATE_CLIENT_KEYS": "a=b"}
    raw = "a.max_sessions=2,a.audio_hours_per_month=1.5,b.sessions_per_minute=10"
    settings = Settings.from_env({**base, "VOXGATE_CLIENT_LIMITS": raw})
    assert settings.client_limits == (
        ("a", "max_sessions", 2.0),
        ("a", "audio_hours_per_month", 1.5),
        ("b", "sessions_per_minute", 10.0),
    )
    assert set(CLIENT_LIMIT_NAMES) == set(Limits.__dataclass_fields__)
    for bad in ("a.max_sessions=1.5", "a.nope=1", "a=1", "a.max_sessions=0", "bad name.x=1"):
        with pytest.raises(SettingsError, match="VOXGATE_CLIENT_LIMITS"):
            Settings.from_env({**base, "VOXGATE_CLIENT_LIMITS": bad})
    limits = Limits(2, 3, 1.0, None)
    assert first_limit_reached(limits, 1, 2, 3599.0, 1e9) is None
    assert first_limit_reached(limits, 2, 0, 0.0, 0.0) is Limit.MAX_SESSIONS
    assert first_limit_reached(limits, 0, 3, 0.0, 0.0) is Limit.SESSIONS_PER_MINUTE
    assert first_limit_reached(limits, 0, 0, 3600.0, 0.0) is Limit.AUDIO_DAY
    assert first_limit_reached(Limits(audio_hours_per_month=1), 0, 0, 0, 3600) is Limit.AUDIO_MONTH


def test_the_keys_of_one_atomic_step_share_a_cluster_slot() -> None:
    """Redis Cluster runs a script or a MULTI only on keys of one slot: the hash tag
    (the text in braces) is the same for the admission script's keys (one client) and
    for a change (a record and the version)."""

    def tag(key: str) -> str:
        return key[key.index("{") + 1 : key.index("}")]

    admission = [
        layout.sessions_key("svc"),
        layout.starts_key("svc"),
        layout.usage_key("client", "svc", "day", "2026-11-30"),
        layout.usage_key("client", "svc", "month", "2026-11"),
    ]
    assert {tag(k) for k in admission} == {"svc"}
    assert {tag(k) for k in (layout.CLIENTS, layout.UPSTREAM_KEYS, layout.VERSION)} == {"tenants"}
    assert tag(layout.usage_key("key", "main", "day", "2026-11-30")) == "main"


def _held_out_pool(state: KeyState) -> tuple[KeyPool, list[float]]:
    now = [0.0]
    pool = KeyPool(
        [UpstreamKey("old", "s1"), UpstreamKey("main", "s2")],
        max_sessions=5,
        sessions_per_minute=100,
        clock=lambda: now[0],
        jitter=lambda: 0.0,
    )
    pool.hold_out("old", state, "retired by the operator")
    return pool, now


@pytest.mark.parametrize("state", [KeyState.RETIRED, KeyState.BUDGET_EXHAUSTED])
def test_drops_of_a_held_out_keys_running_sessions_do_not_bring_it_back(state: KeyState) -> None:
    pool, now = _held_out_pool(state)
    for i in range(3):  # its running sessions are dropped one after the other
        now[0] = 2.0 * i
        assert pool.report_drop("old", "1011") == []
    assert len(pool.record("old").drops) == 3  # counted, state kept
    now[0] = 1000.0
    assert pool.expire_cooling() == []
    assert pool.record("old").state is state
    assert pool.candidates() == ["main"]


@pytest.mark.parametrize("state", [KeyState.RETIRED, KeyState.BUDGET_EXHAUSTED])
@pytest.mark.parametrize(
    "failure",
    [FailureClass.TRANSIENT, FailureClass.PAYMENT_REQUIRED, FailureClass.UNAUTHORIZED],
)
def test_failures_and_other_replicas_states_keep_a_held_out_key_out(
    state: KeyState, failure: FailureClass
) -> None:
    pool, now = _held_out_pool(state)
    assert pool.report_failure("old", failure, "upstream said no") is None
    record = pool.record("old")
    assert record.last_failure is failure  # counted
    assert record.state is state and record.next_probe_at is None  # not probed
    for other in (KeyState.PAYMENT_REQUIRED, KeyState.UNAUTHORIZED, KeyState.HEALTHY):
        assert pool.adopt("old", other, "another replica") is None
        assert record.state is state
    now[0] = 1000.0
    pool.expire_cooling()
    assert pool.due_probes() == []
    assert pool.candidates() == ["main"]


@pytest.mark.parametrize(
    "body",
    [
        '{"expires_at": 1e400}',  # JSON inf
        '{"expires_at": -1e400}',
        '{"expires_in": 1e400}',
        '{"expires_at": 1' + "0" * 400 + "}",  # 10**400: OverflowError in float()
        '{"expires_in": 1' + "0" * 400 + "}",
        '{"expires_at": 99999999999999}',  # past the longest expiry (10 years)
        '{"expires_in": 400000000}',
    ],
)
def test_a_key_expiry_must_be_finite_and_bounded(body: str) -> None:
    with pytest.raises(RecordError):
        parse_key_request(json.loads(body), 1000.0)


@pytest.mark.parametrize("body", ['{"max_sessions": 1' + "0" * 400 + "}", '{"budget_usd": 1e400}'])
def test_a_huge_or_infinite_limit_is_a_400_not_a_crash(body: str) -> None:
    with pytest.raises(RecordError):
        parse_limits(json.loads(body))
    with pytest.raises(RecordError):
        parse_upstream_key("k", json.loads(body.replace("max_sessions", "budget_usd")), None)


def test_the_documented_rotation_expiry_of_30_days_is_accepted() -> None:
    assert parse_key_request({"expires_in": 2592000}, 1000.0) == 1000.0 + 2592000
    ten_years = 10 * 365 * 86400
    assert parse_key_request({"expires_in": ten_years}, 1000.0) == 1000.0 + ten_years
    assert parse_key_request({"expires_at": 2e9}, 1.8e9) == 2e9


def test_a_runtime_keys_new_secret_replaces_the_old_one() -> None:
    pool = KeyPool([UpstreamKey("a", "s1")], max_sessions=5, sessions_per_minute=100, clock=float)
    assert pool.add(UpstreamKey("x", "typo-secret"), max_sessions=5, sessions_per_minute=100)
    pool.report_failure("x", FailureClass.UNAUTHORIZED, "401")
    moved = pool.replace(UpstreamKey("x", "right-secret"))
    assert moved is not None and moved.new is KeyState.HEALTHY
    assert pool.record("x").key.secret == "right-secret" and "x" in pool.candidates()
    pool.hold_out("x", KeyState.RETIRED, "retired")
    assert pool.replace(UpstreamKey("x", "third")) is None  # still retired
    assert pool.record("x").state is KeyState.RETIRED and pool.record("x").key.secret == "third"


def test_a_slow_redis_is_not_taken_for_a_down_one() -> None:
    """One or two timeouts in a row (a slow Redis that still answers) leave the limits
    checked; the third, or a connection error at once, counts as down."""
    import asyncio

    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeout
    from voxgate.metrics.gateway import Metrics
    from voxgate.tenants.service import SLOW_LIMIT, Tenants

    async def scenario() -> list[bool]:
        env = {"VOXGATE_UPSTREAM_KEYS": "k", "VOXGATE_REDIS_URL": "redis://127.0.0.1:1/0"}
        settings = Settings.from_env(env)
        keys = list(settings.upstream_keys)
        pool = KeyPool(keys, max_sessions=5, sessions_per_minute=9, clock=float)
        tenants = Tenants(settings, ClientAuthenticator([]), pool, Metrics())
        seen = []
        tenants._set_up(True)
        for error in [TimeoutError(), RedisTimeout()] * SLOW_LIMIT:
            tenants._set_up(False, error)
            seen.append(tenants.down)
        tenants._set_up(True)
        seen.append(tenants.down)
        tenants._set_up(False, RedisConnectionError())
        seen.append(tenants.down)
        await tenants.close()
        return seen

    seen = asyncio.run(scenario())
    assert seen[: SLOW_LIMIT - 1] == [False] * (SLOW_LIMIT - 1)
    assert all(seen[SLOW_LIMIT - 1 : 2 * SLOW_LIMIT])
    assert seen[-2:] == [False, True]


def test_a_client_key_is_found_by_its_digest_not_by_a_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """10,000 stored keys: a bad attempt compares no digest, a good one only its own;
    an expired key is refused, and a secret listed under two names finds the first."""
    import hmac

    from voxgate.access import clientkeys
    from voxgate.settings import ClientKey, digest_secret

    compares: list[int] = []
    compare = hmac.compare_digest

    def counted(a: bytes, b: bytes) -> bool:
        compares.append(1)
        return compare(a, b)

    monkeypatch.setattr(clientkeys.hmac, "compare_digest", counted)
    keys = [ClientKey(f"c{i}", digest_secret(f"secret-{i}")) for i in range(10_000)]
    keys += [ClientKey("gone", digest_secret("old-secret"), expires_at=50.0)]
    keys += [ClientKey("second", digest_secret("secret-7"))]
    auth = ClientAuthenticator(keys, clock=lambda: 100.0)
    with pytest.raises(ProtocolViolation):
        auth.check("not-a-key")
    assert len(compares) <= 1
    assert auth.check("secret-9999") == "c9999"
    assert auth.check("secret-7") == "c7"
    assert len(compares) <= 1 + 1 + 1
    with pytest.raises(ProtocolViolation):
        auth.check("old-secret")


def test_the_cli_warns_about_how_the_admin_key_travels() -> None:
    from voxgate.cli.admin import warnings

    assert warnings("http://127.0.0.1:8080", False) == []
    assert warnings("https://gw.example:8443", False) == []
    (plain,) = warnings("http://gw.example:8080", False)
    assert "plain http" in plain
    (argument,) = warnings("http://localhost:8080", True)
    assert "VOXGATE_ADMIN_KEY" in argument
