"""The upstream simulator itself, spoken to directly as AssemblyAI would be."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from voxgate.bench.procs import Server
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support import audio
from tests.support.http import get_json
from tests.support.wsclient import WAIT, run, session

QUERY = "sample_rate=16000&format_turns=true"


def token(sandbox: Server, key: str, query: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{sandbox.http_url}/v3/token?{query}", headers={"Authorization": key}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def direct(sandbox: Server, frames: list[bytes], *, key: str | None, query: str = QUERY) -> Any:
    """A session straight to the simulator (no gateway)."""
    return session(sandbox.url, frames, key=key, query=query)


def test_token_endpoint_follows_assemblyai_ranges_and_key_failures(sandbox: Server) -> None:
    """/v3/token: 200 with token and expiry; 400 out of range; 402 body for an
    unbilled key; 401 for an unknown key."""
    status, body = token(sandbox, "good-key", "expires_in_seconds=60")
    assert status == 200 and body["expires_in_seconds"] == 60 and len(body["token"]) > 20
    status, body = token(sandbox, "good-key", "expires_in_seconds=601")
    assert status == 400 and "expires_in_seconds" in body["error"]
    status, body = token(
        sandbox, "good-key", "expires_in_seconds=60&max_session_duration_seconds=59"
    )
    assert status == 400
    status, body = token(sandbox, "pay-key", "expires_in_seconds=60")
    assert status == 402 and body == {"error": "Account not upgraded", "status": 402}
    status, body = token(sandbox, "nobody", "expires_in_seconds=60")
    assert status == 401


def test_a_temporary_token_opens_one_session_only(sandbox: Server) -> None:
    """A token in ?token= opens a session; the same token a second time gets 1008."""
    _, body = token(sandbox, "good-key", "expires_in_seconds=60")
    query = f"{QUERY}&token={body['token']}"
    first = run(direct(sandbox, audio.frames(audio.utterance(0.8, 0.5)), key=None, query=query))
    assert first.code == 1000 and first.finals
    second = run(direct(sandbox, [], key=None, query=query))
    assert second.code == 1008 and "token" in second.reason


def test_upgrade_refusals_carry_the_status_and_body(sandbox: Server) -> None:
    """A 402 key's upgrade is refused with HTTP 402 and the JSON body."""

    async def attempt() -> InvalidStatus:
        with pytest.raises(InvalidStatus) as caught:
            await connect(
                f"{sandbox.url}/v3/ws?{QUERY}",
                additional_headers={"Authorization": "pay-key"},
                open_timeout=WAIT,
            )
        return caught.value

    refused = run(attempt())
    assert refused.response.status_code == 402
    assert json.loads(refused.response.body)["status"] == 402


def test_a_key_can_be_upgraded_at_run_time(sandbox: Server) -> None:
    """/sandbox/keys?set=KEY&behaviour=ok turns a 402 key into a working one, and back."""
    try:
        get_json(f"{sandbox.http_url}/sandbox/keys?set=pay-key&behaviour=ok")
        out = run(direct(sandbox, audio.frames(audio.utterance(0.8, 0.5)), key="pay-key"))
        assert out.code == 1000
    finally:
        keys = get_json(f"{sandbox.http_url}/sandbox/keys?set=pay-key&behaviour=402")
    assert keys["keys"]["pay-key"] == "402"


def test_bad_query_parameters_close_with_3006_after_the_handshake(sandbox: Server) -> None:
    """A missing sample_rate is refused the way AssemblyAI does: Error + 3006."""
    out = run(direct(sandbox, [], key="good-key", query="encoding=pcm_s16le"))
    assert out.code == 3006
    assert out.of_type("Error")[0]["error_code"] == 3006


def test_sessions_are_listed_without_keys(sandbox: Server) -> None:
    """/sandbox/sessions shows each session's behaviour, params and end, never the key."""
    run(direct(sandbox, audio.frames(audio.utterance(0.8, 0.5)), key="good-key"))
    sessions = get_json(f"{sandbox.http_url}/sandbox/sessions")
    last = sessions[-1]
    assert last["end"] == "terminated" and last["close_code"] == 1000
    assert last["behaviour"] == "ok" and last["turns"] >= 2
    assert abs(last["audio_seconds"] - 1.3) < 0.06
    assert "good-key" not in json.dumps(sessions)
