"""Logs of a real gateway process: JSON when not a terminal, one start and one summary
line per session with ids bound, and never a key, a token or a secret."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from voxgate.bench.procs import RedisServer, Server

from tests.support import audio
from tests.support.gateway import CLIENT_KEY, GatewayFactory
from tests.support.wsclient import DEFAULT_QUERY, run, session

#: Upstream secrets (the simulator's keys) the gateway holds.
UPSTREAM_SECRETS = ("pay-key", "good-key")
ADMIN_KEY = "admin-secret-5f1c9e"
TOKEN_SECRET = "token-signing-secret-0123456789abcdef"
#: Secrets clients present that the gateway must refuse without echoing them.
WRONG_CLIENT_KEY = "wrong-client-secret-8c2d41"
WRONG_TOKEN = "forged-token-7e3b0a"
SUMMARY_FIELDS = (
    "duration_seconds",
    "audio_seconds",
    "turns",
    "key",
    "close_code",
    "failovers",
    "reconnects",
    "outcome",
    "session_id",
    "request_id",
)


def events(gw: Server) -> list[dict[str, Any]]:
    """Every stderr line of the gateway parsed as JSON (fails on any other line)."""
    out = []
    for line in gw.stderr().splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def refused(gw: Server, key: str | None, query: str = DEFAULT_QUERY) -> int | None:
    code: int | None = run(session(gw.url, [], key=key, query=query)).code
    return code


def test_logs_are_json_with_a_start_and_a_summary_line_per_session_and_no_secret(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """With stderr not a terminal and the format left on auto, every line is JSON. Each
    session logs session_started and session_ended sharing request_id and session_id;
    the summary has duration, audio seconds, turns, key alias, close code and failovers
    (1 for the session that failed over from the 402 key). Sessions open with the client
    key in a header, in the query string, and with a minted temporary token; refusals
    include wrong keys, a forged token and the reused token. No upstream key, client key,
    token (nor its signature), token secret or admin key appears anywhere, even at debug
    level."""
    gw = gateway_factory(
        "pay=pay-key,main=good-key",
        VOXGATE_REDIS_URL=redis_server.url,
        VOXGATE_ADMIN_KEY=ADMIN_KEY,
        VOXGATE_TOKEN_SECRET=TOKEN_SECRET,
        VOXGATE_LOG_FORMAT="auto",
        VOXGATE_LOG_LEVEL="debug",
    )
    first = run(session(gw.url, audio.speech(2)))  # "pay" answers 402: fails over
    by_token = f"{DEFAULT_QUERY}&token={CLIENT_KEY}"  # the client key in the query string
    second = run(session(gw.url, audio.speech(1), key=None, query=by_token))
    minted = urllib.request.Request(
        gw.http_url + "/v3/token?expires_in_seconds=60", headers={"Authorization": CLIENT_KEY}
    )
    with urllib.request.urlopen(minted, timeout=5) as response:
        token = json.loads(response.read())["token"]
    by_temp_token = f"{DEFAULT_QUERY}&token={token}"
    third = run(session(gw.url, audio.speech(1), key=None, query=by_temp_token))
    assert (first.code, second.code, third.code) == (1000, 1000, 1000), (first, second, third)
    assert refused(gw, None, by_temp_token) == 1008  # a token is single use
    assert refused(gw, WRONG_CLIENT_KEY) == 1008
    assert refused(gw, None, f"{DEFAULT_QUERY}&token={WRONG_TOKEN}") == 1008
    assert refused(gw, f"Bearer {WRONG_CLIENT_KEY}") == 1008
    admin = gw.http_url + "/admin/keys"
    request = urllib.request.Request(admin, headers={"Authorization": ADMIN_KEY})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(
            urllib.request.Request(admin, headers={"Authorization": WRONG_CLIENT_KEY}),
            timeout=5,
        )
    gw.stop()  # the shutdown lines too

    logged = events(gw)
    text = gw.stderr()
    signature = token.rsplit(".", 1)[-1]
    secrets = (*UPSTREAM_SECRETS, CLIENT_KEY, ADMIN_KEY, TOKEN_SECRET, WRONG_CLIENT_KEY)
    for secret in (*secrets, WRONG_TOKEN, token, signature):
        assert secret not in text, f"{secret!r} appears in the gateway's log"

    started = [e for e in logged if e["event"] == "session_started"]
    ended = [e for e in logged if e["event"] == "session_ended"]
    assert len(started) == len(ended) == 3, [e["event"] for e in logged]
    for start, end in zip(started, ended, strict=True):
        missing = [f for f in SUMMARY_FIELDS if f not in end]
        assert not missing, (missing, end)
        assert start["session_id"] == end["session_id"] and start["session_id"]
        assert start["request_id"] == end["request_id"] and start["request_id"]
        assert end["key"] == "main" and end["close_code"] == 1000
        assert end["audio_seconds"] > 0 and end["turns"] > 0
    assert [e["failovers"] for e in ended] == [1, 0, 0]
    assert [e["reconnects"] for e in ended] == [0, 0, 0]
    assert len({e["request_id"] for e in started}) == 3
    # The 402 seen while opening the first session carries that connection's request id.
    (failure,) = [e for e in logged if e["event"] == "upstream_failure"]
    assert failure["key"] == "pay" and failure["request_id"] == started[0]["request_id"]
    refusals = [e for e in logged if e["event"] == "client_refused"]
    assert len(refusals) == 4 and all(e.get("request_id") for e in refusals)
