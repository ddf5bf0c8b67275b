"""Temporary tokens end to end: a real gateway process in front of the simulator.

GET /v3/token, /v3/ws with ?token= or Authorization, every refusal (expired, reused,
forged, malformed, wrong origin), the token's session cap (3008), the demo helper.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

import pytest
from voxgate.access.tokens import TokenAuthority
from voxgate.bench.procs import Server

from tests.support import audio
from tests.support.gateway import CLIENT_KEY, GatewayFactory, metric, sandbox_sessions
from tests.support.http import get_text
from tests.support.sdk import PARAMS, Recorder, sdk_client
from tests.support.wsclient import DEFAULT_QUERY, WAIT, Outcome, run, session

SHARED_SECRET = "a-shared-token-secret-for-the-tests-0123456789"


def http(
    url: str, *, key: str | None = CLIENT_KEY, method: str = "GET", origin: str | None = None
) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body) of one request; HTTP errors are answers too."""
    headers = {"Authorization": key} if key is not None else {}
    if origin is not None:
        headers["Origin"] = origin
    request = urllib.request.Request(url, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def mint(gw: Server, query: str = "expires_in_seconds=60") -> str:
    status, _, body = http(f"{gw.http_url}/v3/token?{query}")
    assert status == 200, body
    token: str = body["token"]
    return token


async def token_session(
    url: str,
    token: str,
    frames: list[bytes],
    *,
    in_header: bool = False,
    origin: str | None = None,
    terminate: bool = True,
    frame_interval: float = 0.0,
) -> Outcome:
    """A session authenticated by ``token`` (query or header); everything until the close."""
    query = DEFAULT_QUERY if in_header else f"{DEFAULT_QUERY}&token={quote(token, safe='')}"
    return await session(
        url,
        frames,
        key=token if in_header else None,
        query=query,
        terminate=terminate,
        frame_interval=frame_interval,
        origin=origin,
    )


def test_token_endpoint_answers_like_assemblyai(gateway: Server) -> None:
    """200 {token, expires_in_seconds} for a client key, never cached; 400 for values out of
    AssemblyAI's ranges, 401 without a key, with a wrong one, or with a token as the key;
    every answer {"error": ...} and counted."""
    status, headers, body = http(f"{gateway.http_url}/v3/token?expires_in_seconds=120")
    assert status == 200
    assert set(body) == {"token", "expires_in_seconds"} and body["expires_in_seconds"] == 120
    assert body["token"].startswith("vgt1.")
    assert headers["cache-control"] == "no-store"
    assert "good-key" not in json.dumps(body)

    base = gateway.http_url + "/v3/token?"
    cases = [
        (base + "expires_in_seconds=0", CLIENT_KEY, 400),
        (base + "expires_in_seconds=601", CLIENT_KEY, 400),
        (base, CLIENT_KEY, 400),
        (base + "expires_in_seconds=60&max_session_duration_seconds=10801", CLIENT_KEY, 400),
        (base + "expires_in_seconds=60", None, 401),
        (base + "expires_in_seconds=60", "wrong-key", 401),
        (base + "expires_in_seconds=60", body["token"], 401),
    ]
    for url, key, want in cases:
        status, _, answer = http(url, key=key)
        assert status == want, (url, key, answer)
        assert set(answer) == {"error"} and answer["error"]
    assert metric(gateway, "voxgate_client_rejections_total", reason="bad_parameter") == 4.0
    assert metric(gateway, "voxgate_client_rejections_total", reason="missing_key") == 1.0
    assert metric(gateway, "voxgate_client_rejections_total", reason="invalid_key") == 2.0


@pytest.mark.parametrize("in_header", [False, True], ids=["query", "header"])
def test_a_token_opens_one_full_session(gateway: Server, sandbox: Server, in_header: bool) -> None:
    """A token (as ?token= or in Authorization) opens a complete session: Begin, turns,
    Termination, 1000; upstream never sees the token, only the gateway's own key."""
    before = len(sandbox_sessions(sandbox))
    token = mint(gateway)
    out = run(token_session(gateway.url, token, audio.speech(), in_header=in_header))
    assert out.code == 1000, out
    assert out.messages[0]["type"] == "Begin" and out.messages[-1]["type"] == "Termination"
    assert out.finals
    upstream = sandbox_sessions(sandbox)[before:]
    assert len(upstream) == 1
    assert "token" not in dict(upstream[0]["params"])
    assert token not in json.dumps(upstream)


def expired_token(gw: Server) -> str:
    token = mint(gw, "expires_in_seconds=1")
    time.sleep(1.2)  # past the token's window (not a timing assertion)
    return token


def reused_token(gw: Server) -> str:
    token = mint(gw)
    first = run(token_session(gw.url, token, audio.speech()))
    assert first.code == 1000, first
    return token


def forged_token(gw: Server) -> str:
    other = TokenAuthority(b"not-this-gateway's-secret-at-all-0123")
    return other.mint("tester", 60, 10_800)


def malformed_token(gw: Server) -> str:
    return "vgt1.this-is-not.a token"


@pytest.mark.parametrize(
    ("make", "label", "word", "code"),
    [
        (expired_token, "token_expired", "Session Expired: temporary token expired", 3008),
        (reused_token, "token_reused", "already used", 1008),
        (forged_token, "token_forged", "invalid", 1008),
        (malformed_token, "token_malformed", "malformed", 1008),
    ],
)
def test_bad_tokens_are_refused_with_1008_and_counted(
    gateway: Server, sandbox: Server, make: Any, label: str, word: str, code: int
) -> None:
    """Reused, forged and malformed tokens: Error frame then close 1008
    'Unauthorized Connection: ...'; an expired one 3008 as AssemblyAI answers (its
    reference: "session expired ... or temporary token expired"); counted by reason,
    and no upstream session."""
    token = make(gateway)
    before = len(sandbox_sessions(sandbox))
    out = run(token_session(gateway.url, token, audio.speech()))
    assert out.code == code, out
    assert word in out.reason
    if code == 1008:
        assert out.reason.startswith("Unauthorized Connection: ")
    assert [m["type"] for m in out.messages] == ["Error"]
    assert out.messages[0]["error_code"] == code
    assert len(sandbox_sessions(sandbox)) == before
    assert metric(gateway, "voxgate_client_rejections_total", reason=label) == 1.0


def test_origins_outside_the_allowed_list_are_refused(
    gateway_factory: GatewayFactory, sandbox: Server
) -> None:
    """With VOXGATE_ALLOWED_ORIGINS set, a browser from another origin gets 1008 on the
    upgrade (and 403 on /v3/token); listed origins, the gateway's own origin and clients
    without Origin go through."""
    gw = gateway_factory(VOXGATE_ALLOWED_ORIGINS="https://app.example.com")
    before = len(sandbox_sessions(sandbox))
    out = run(token_session(gw.url, mint(gw), [], origin="https://evil.example"))
    assert out.code == 1008 and "origin" in out.reason, out
    assert len(sandbox_sessions(sandbox)) == before
    status, _, body = http(
        f"{gw.http_url}/v3/token?expires_in_seconds=60", origin="https://evil.example"
    )
    assert status == 403 and "error" in body
    assert metric(gw, "voxgate_client_rejections_total", reason="bad_origin") == 2.0

    own = "http://" + gw.url.removeprefix("ws://")
    for origin in ("https://app.example.com", own, None):
        ok = run(token_session(gw.url, mint(gw), audio.speech(), origin=origin))
        assert ok.code == 1000, (origin, ok)


def test_the_gateway_ends_a_token_session_at_its_cap_with_3008(
    gateway_factory: GatewayFactory, sandbox: Server
) -> None:
    """A token's max_session_duration_seconds is enforced by the gateway: at the cap the
    client gets Error + 3008 and the upstream session is ended (it bills while open).
    The token is minted with the shared secret to get a 2 s cap (the endpoint's minimum is 60)."""
    gw = gateway_factory(VOXGATE_TOKEN_SECRET=SHARED_SECRET)
    token = TokenAuthority(SHARED_SECRET.encode()).mint("tester", 30, 2)
    before = len(sandbox_sessions(sandbox))
    frames = audio.frames(audio.utterance(0.8, 0.7) * 4)
    started = time.time()
    out = run(token_session(gw.url, token, frames, terminate=False, frame_interval=0.05))
    assert out.code == 3008, out
    assert out.of_type("Error")[-1]["error_code"] == 3008
    assert out.messages[0]["type"] == "Begin"
    # Begin says when the session ends, as AssemblyAI's does under a token's cap (not
    # upstream's own 3 h on the pool key).
    assert out.messages[0]["expires_at"] <= int(time.time()) + 1, out.messages[0]
    assert out.messages[0]["expires_at"] >= int(started), out.messages[0]
    assert metric(gw, "voxgate_sessions_ended_total", outcome="expired") == 1.0
    deadline = time.monotonic() + 5
    upstream = sandbox_sessions(sandbox)[before:]
    while time.monotonic() < deadline and not upstream[0]["closed_at"]:
        time.sleep(0.05)
        upstream = sandbox_sessions(sandbox)[before:]
    assert upstream[0]["closed_at"], "upstream session left open after the cap"


def test_tokens_from_one_replica_work_on_another_with_a_shared_secret(
    gateway_factory: GatewayFactory,
) -> None:
    """Two gateways with the same VOXGATE_TOKEN_SECRET accept each other's tokens; a
    gateway with its own random secret refuses them as forged."""
    one = gateway_factory(VOXGATE_TOKEN_SECRET=SHARED_SECRET)
    two = gateway_factory(VOXGATE_TOKEN_SECRET=SHARED_SECRET)
    alone = gateway_factory()
    assert run(token_session(two.url, mint(one), audio.speech())).code == 1000
    refused = run(token_session(alone.url, mint(one), []))
    assert refused.code == 1008 and "invalid" in refused.reason


def test_demo_helper_is_off_by_default_and_mints_limited_tokens_when_on(
    gateway_factory: GatewayFactory,
) -> None:
    """POST /demo/token is 404 unless VOXGATE_DEMO_CLIENT names a client; then it mints
    a token for that client (no key needed, same-origin page), 30 a minute at most;
    the page's static files are served under /demo/."""
    off = gateway_factory()
    status, _, body = http(off.http_url + "/demo/token", key=None, method="POST")
    assert status == 404 and "VOXGATE_DEMO_CLIENT" in body["error"]

    on = gateway_factory(VOXGATE_DEMO_CLIENT="tester")
    status, _, body = http(on.http_url + "/demo/token", key=None, method="POST")
    assert status == 200 and body["expires_in_seconds"] == 60
    assert run(token_session(on.url, body["token"], audio.speech())).code == 1000
    statuses = [http(on.http_url + "/demo/token", key=None, method="POST")[0] for _ in range(30)]
    assert statuses.count(429) == 1 and statuses[-1] == 429
    assert metric(on, "voxgate_client_rejections_total", reason="token_rate_limited") == 1.0

    page = get_text(on.http_url + "/demo/")
    assert 'id="record"' in page and "app.js" in page
    assert "audioWorklet" in get_text(on.http_url + "/demo/app.js")
    assert "registerProcessor" in get_text(on.http_url + "/demo/pcm-worklet.js")


def test_the_assemblyai_sdk_streams_with_a_voxgate_token(gateway: Server) -> None:
    """The official SDK given a voxgate token instead of a key (it sends it in
    Authorization) gets Begin, final turns and Termination."""
    rec = Recorder()
    client = sdk_client(gateway.url, mint(gateway), rec)
    client.connect(PARAMS)
    for frame in audio.frames(audio.utterance(0.8, 0.7)):
        client.stream(frame)
        time.sleep(0.01)
    assert rec.wait_for(lambda r: any(t.end_of_turn for t in r.of("Turn")))
    client.disconnect(terminate=True)
    assert len(rec.of("Begin")) == 1 and len(rec.of("Termination")) == 1
    assert not rec.of("Error")
