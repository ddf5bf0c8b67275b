"""Temporary tokens and origin rules as pure logic (no sockets): voxgate/access/tokens.py,
voxgate/access/origins.py, and their settings."""

from __future__ import annotations

import base64
import json

import pytest
from voxgate.access.origins import OriginPolicy, normalize_origin
from voxgate.access.tokens import (
    MAX_TOKEN_CHARS,
    PREFIX,
    MintLimiter,
    TokenAuthority,
    TokenRequestError,
    UsedTokens,
    looks_like_token,
    parse_token_request,
)
from voxgate.protocol import CloseCode, ProtocolViolation, Violation
from voxgate.settings import Settings, SettingsError

SECRET = b"s" * 32


class Clock:
    """A hand-moved clock (seconds)."""

    def __init__(self, now: float = 1_764_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def refusal(authority: TokenAuthority, token: str) -> ProtocolViolation:
    with pytest.raises(ProtocolViolation) as caught:
        authority.redeem(token)
    return caught.value


def payload_of(token: str) -> dict[str, object]:
    body = token[len(PREFIX) :].split(".")[0]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return decoded


def test_a_minted_token_is_redeemed_once_for_its_client_and_cap() -> None:
    """A fresh token names its client and session cap, and works exactly once:
    the second use is refused with 1008 and the token_reused label."""
    clock = Clock()
    authority = TokenAuthority(SECRET, clock=clock)
    token = authority.mint("web", 60, 600)
    assert looks_like_token(token) and len(token) < MAX_TOKEN_CHARS
    grant = authority.redeem(token)
    assert (grant.client, grant.max_session_seconds) == ("web", 600)
    assert grant.expires_at == pytest.approx(clock.now + 60)
    again = refusal(authority, token)
    assert again.code == CloseCode.POLICY
    assert again.violation is Violation.TOKEN_REUSED
    assert again.reason.startswith("Unauthorized Connection: ")


def test_every_token_is_distinct_and_carries_no_secret() -> None:
    """Two tokens for the same request differ (random id); the payload holds only
    the client name, expiry, cap and id, never the signing secret."""
    authority = TokenAuthority(SECRET, clock=Clock())
    first, second = authority.mint("web", 60, 600), authority.mint("web", 60, 600)
    assert first != second
    assert set(payload_of(first)) == {"c", "exp", "cap", "id"}
    assert SECRET.decode() not in first


def test_an_expired_token_is_refused() -> None:
    """Past its expires_in window a token is refused with token_expired, even unused,
    and with AssemblyAI's code for it: 3008 (session expired), not 1008."""
    clock = Clock()
    authority = TokenAuthority(SECRET, clock=clock)
    token = authority.mint("web", 5, 600)
    clock.now += 5
    refused = refusal(authority, token)
    assert refused.violation is Violation.TOKEN_EXPIRED
    assert refused.code == CloseCode.SESSION_EXPIRED, refused.code


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda t: t[:-10] + ("A" if t[-10] != "A" else "B") + t[-9:], id="signature"),
        pytest.param(
            lambda t: (
                PREFIX
                + base64.urlsafe_b64encode(
                    json.dumps({"c": "admin", "exp": 9e12, "cap": 10800, "id": "x"}).encode()
                )
                .rstrip(b"=")
                .decode()
                + "."
                + t.rsplit(".", 1)[1]
            ),
            id="payload-swapped",
        ),
        pytest.param(
            lambda t: TokenAuthority(b"o" * 32, clock=Clock()).mint("web", 60, 600),
            id="other-secret",
        ),
    ],
)
def test_a_forged_token_is_refused(tamper: object) -> None:
    """A token whose signature does not match this gateway's secret is refused with
    token_forged: a changed signature, a changed payload, another gateway's secret."""
    authority = TokenAuthority(SECRET, clock=Clock())
    token = authority.mint("web", 60, 600)
    forged = tamper(token)  # type: ignore[operator]
    assert refusal(authority, forged).violation is Violation.TOKEN_FORGED


@pytest.mark.parametrize(
    "token",
    [
        PREFIX,
        PREFIX + "abc",
        PREFIX + "abc.",
        PREFIX + ".sig",
        PREFIX + "abc.not base64!",
        PREFIX + "a" * MAX_TOKEN_CHARS,
        "vgt2.abc.def",
    ],
)
def test_a_malformed_token_is_refused(token: str) -> None:
    """Anything that is not prefix.payload.signature in base64url (or is too long)
    is refused with token_malformed before any JSON is parsed."""
    authority = TokenAuthority(SECRET, clock=Clock())
    assert refusal(authority, token).violation is Violation.TOKEN_MALFORMED


def test_a_signed_but_broken_payload_is_malformed() -> None:
    """Even a correctly signed payload is checked field by field (defence if the
    secret leaks or a future version changes the format)."""
    authority = TokenAuthority(SECRET, clock=Clock())
    body = base64.urlsafe_b64encode(b'{"c": 5}').rstrip(b"=").decode()
    signed = PREFIX + body
    signature = base64.urlsafe_b64encode(authority._sign(signed)).rstrip(b"=").decode()
    assert refusal(authority, f"{signed}.{signature}").violation is Violation.TOKEN_MALFORMED


def test_a_token_of_a_revoked_client_is_refused() -> None:
    """A token minted by a client whose key has since been removed no longer works."""
    authority = TokenAuthority(SECRET, clock=Clock())
    token = authority.mint("gone", 60, 600)
    with pytest.raises(ProtocolViolation) as caught:
        authority.redeem(token, clients={"web"})
    assert caught.value.violation is Violation.INVALID_KEY


def test_used_ids_are_forgotten_when_their_tokens_expire_and_the_store_is_bounded() -> None:
    """The single-use memory holds an id only until its token expires, never more
    than its capacity; when full of live ids it refuses (1013) rather than forget."""
    used = UsedTokens(capacity=2)
    assert used.add("a", 10.0, now=0.0) and used.add("b", 20.0, now=0.0)
    assert not used.add("c", 30.0, now=5.0)
    assert used.add("c", 30.0, now=10.0)  # "a" expired and was dropped
    assert "a" not in used and "b" in used and len(used) == 2

    clock = Clock()
    authority = TokenAuthority(SECRET, clock=clock, used_capacity=1)
    authority.redeem(authority.mint("web", 10, 600))
    busy = refusal(authority, authority.mint("web", 10, 600))
    assert (busy.code, busy.violation) == (CloseCode.TRY_AGAIN_LATER, Violation.TOKENS_BUSY)
    clock.now += 10
    authority.redeem(authority.mint("web", 10, 600))
    assert authority.used == 1


def test_a_short_secret_is_rejected() -> None:
    """HMAC with a tiny key would be guessable: the authority wants 16+ bytes."""
    with pytest.raises(ValueError):
        TokenAuthority(b"short")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"expires_in_seconds": "60"}, (60, 10_800)),
        ({"expires_in_seconds": "1", "max_session_duration_seconds": "60"}, (1, 60)),
        ({"expires_in_seconds": "600", "max_session_duration_seconds": "10800"}, (600, 10_800)),
    ],
)
def test_token_requests_take_assemblyai_ranges(
    query: dict[str, str], expected: tuple[int, int]
) -> None:
    """expires_in_seconds 1-600 (required), max_session_duration_seconds 60-10800
    (default 10800), as AssemblyAI's /v3/token."""
    assert parse_token_request(query) == expected


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"expires_in_seconds": "0"},
        {"expires_in_seconds": "601"},
        {"expires_in_seconds": "ten"},
        {"expires_in_seconds": "60", "max_session_duration_seconds": "59"},
        {"expires_in_seconds": "60", "max_session_duration_seconds": "10801"},
    ],
)
def test_token_requests_out_of_range_are_400(query: dict[str, str]) -> None:
    """A missing or out-of-range value is a 400 naming the parameter."""
    with pytest.raises(TokenRequestError) as caught:
        parse_token_request(query)
    assert caught.value.status == 400
    assert "seconds" in caught.value.message


def test_mint_limiter_allows_a_bounded_number_per_sliding_minute() -> None:
    """Each client gets per_minute tokens in any 60 s; others are not affected."""
    clock = Clock(0.0)
    limiter = MintLimiter(3, clock)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")
    clock.now = 60.0
    assert limiter.allow("a")


def test_origin_policy() -> None:
    """No list: every origin. A list: those origins (default ports and case folded),
    the gateway's own origin, and non-browser clients (no Origin header); never "null"."""
    anyone = OriginPolicy()
    assert anyone.allows("https://evil.example", "gw:8080")
    policy = OriginPolicy(["https://App.example.com:443", "http://localhost:3000"])
    assert policy.restricted
    assert policy.allows("https://app.example.com", "gw")
    assert policy.allows("http://localhost:3000", "gw")
    assert policy.allows(None, "gw")
    assert policy.allows("http://127.0.0.1:8080", "127.0.0.1:8080")  # same origin
    assert policy.allows("http://gw", "gw:80")
    assert not policy.allows("https://evil.example", "gw")
    assert not policy.allows("http://localhost:3001", "gw")
    assert not policy.allows("null", "gw")
    assert normalize_origin("https://a.example/") == "https://a.example"
    assert normalize_origin("https://a.example/path") is None


BASE = {"VOXGATE_UPSTREAM_KEYS": "main=aai-secret", "VOXGATE_CLIENT_KEYS": "web=s3cret"}


def test_token_settings() -> None:
    """The secret is random per process unless set (then 32+ characters); origins are
    validated and normalised; the demo client must be a configured client."""
    one, two = Settings.from_env(BASE), Settings.from_env(BASE)
    assert one.token_secret != two.token_secret and len(one.token_secret) == 32
    shared = "x" * 40
    s = Settings.from_env(
        {
            **BASE,
            "VOXGATE_TOKEN_SECRET": shared,
            "VOXGATE_ALLOWED_ORIGINS": "https://A.example, http://localhost:3000",
            "VOXGATE_DEMO_CLIENT": "web",
        }
    )
    assert s.token_secret == shared.encode()
    assert s.allowed_origins == ("https://a.example", "http://localhost:3000")
    assert s.demo_client == "web"
    assert shared not in repr(s)
    for env, variable in [
        ({"VOXGATE_TOKEN_SECRET": "short"}, "VOXGATE_TOKEN_SECRET"),
        ({"VOXGATE_ALLOWED_ORIGINS": "a.example"}, "VOXGATE_ALLOWED_ORIGINS"),
        ({"VOXGATE_DEMO_CLIENT": "nobody"}, "VOXGATE_DEMO_CLIENT"),
    ]:
        with pytest.raises(SettingsError, match=variable):
            Settings.from_env({**BASE, **env})


def test_a_token_given_back_may_be_redeemed_again() -> None:
    """A token whose session never began (the gateway had no upstream for it) is given
    back: the SDK's retry with the same token meets the same refusal, not 'already used'."""
    authority = TokenAuthority(SECRET, clock=Clock())
    token = authority.mint("web", 60, 600)
    grant = authority.redeem(token)
    assert refusal(authority, token).violation is Violation.TOKEN_REUSED
    authority.give_back(grant.token_id)
    assert authority.redeem(token).token_id == grant.token_id
    assert refusal(authority, token).violation is Violation.TOKEN_REUSED
