"""Attacks at the session level, against real gateway processes (issue 14, items 4, 5, 7):

* an abandoned session (no audio, no message) is ended cleanly after
  ``VOXGATE_IDLE_TIMEOUT``: Terminate upstream, its finals and Termination relayed,
  then 3006; a client that keeps sending (audio, or KeepAlive) is left alone until
  ``VOXGATE_NO_AUDIO_TIMEOUT`` without audio, then ended the same way;
* client text messages are bounded in size (1009) and rate (1008), and KeepAlive goes
  upstream at most once a second;
* M4: a ``voxgate_tag`` is the authenticated client's own: no client can publish into
  another client's tag channel;
* M6: an upstream that sends junk instead of ``Begin`` (JSON nested 100,000 deep, bad
  JSON, a non-object, a binary frame, a message over the size limit) costs the key a
  counted failure and gives its session slot back, and the slot gauge says so.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from typing import Any

import redis
from voxgate.bench.procs import RedisServer, Server

from tests.support import ROOT, audio
from tests.support.adversary import Bystander
from tests.support.gateway import (
    ADMIN_KEY,
    CLIENT_KEY,
    CLIENT_KEYS,
    GatewayFactory,
    admin_keys,
    metric,
    sandbox_sessions,
    wait_backlog_empty,
)
from tests.support.http import get_json
from tests.support.wsclient import Outcome, collect, open_client, run, session

#: The idle timeout of the gateways here (short, so the tests are too).
IDLE = 1.5
#: How late after IDLE the close may come on a busy machine: a watchdog tick (0.25 s),
#: upstream's answer to Terminate, the relay of its last messages.
IDLE_GRACE = 6.0
#: The no-audio timeout of the gateways here: a session sending only KeepAlive.
NO_AUDIO = 5.0
OTHER_KEY = "other-client-key"


# --------------------------------------------------------------------------- idle


async def _abandoned(url: str) -> tuple[Outcome, float]:
    """Speak one turn, then send nothing (no Terminate) and read until the close; the
    seconds from the last frame to the close."""
    outcome = Outcome()
    ws = await open_client(url)
    reader = asyncio.create_task(collect(ws, outcome))
    for frame in audio.speech(1):
        await ws.send(frame)
    last_sent = time.monotonic()
    await reader
    return outcome, time.monotonic() - last_sent


async def _keeps_alive(url: str, seconds: float) -> Outcome:
    """Speak, then send only KeepAlive for ``seconds`` (longer than IDLE), then Terminate."""
    return (await _keeps_alive_timed(url, seconds))[0]


async def _keeps_alive_timed(url: str, seconds: float) -> tuple[Outcome, float]:
    """As ``_keeps_alive``; also the seconds from the last audio frame to the close."""
    outcome = Outcome()
    ws = await open_client(url)
    reader = asyncio.create_task(collect(ws, outcome))
    for frame in audio.speech(1):
        await ws.send(frame)
    last_audio = time.monotonic()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not reader.done():
        await ws.send(json.dumps({"type": "KeepAlive"}))
        await asyncio.sleep(IDLE / 3)
    if not reader.done():
        await ws.send(json.dumps({"type": "Terminate"}))
    return await reader, time.monotonic() - last_audio


def test_an_idle_session_is_terminated_upstream_and_closed_with_3006(
    gateway_factory: GatewayFactory, sandbox: Server
) -> None:
    """A client that goes quiet without Terminate gets its final turn, Termination, then
    Error + close 3006 "Session idle for too long" after IDLE (within IDLE_GRACE); the
    upstream session was ended with Terminate (not dropped); the end is counted and the
    key's slot is free. Beside it, a client sending only KeepAlive for 2 x IDLE and an
    SDK session streaming at real-time pace are left alone; a client that sends only
    KeepAlive for longer than NO_AUDIO is ended the same clean way (before the fix it
    held its upstream session and key slot for as long as it liked)."""
    gw = gateway_factory(VOXGATE_IDLE_TIMEOUT=str(IDLE), VOXGATE_NO_AUDIO_TIMEOUT=str(NO_AUDIO))

    async def all_three() -> tuple[tuple[Outcome, float], Outcome, tuple[Outcome, float]]:
        return await asyncio.gather(
            _abandoned(gw.url),
            _keeps_alive(gw.url, 2 * IDLE),
            _keeps_alive_timed(gw.url, NO_AUDIO + IDLE_GRACE),
        )

    with Bystander(gw.url, CLIENT_KEY, utterances=2) as bystander:
        (idle, after), alive, (mute, mute_after) = run(
            all_three(), deadline=NO_AUDIO + IDLE_GRACE + 20
        )
    print(
        f"idle session closed {after:.2f} s after its last frame (timeout {IDLE} s); "
        f"KeepAlive-only {mute_after:.2f} s after its last audio (timeout {NO_AUDIO} s)"
    )
    assert mute.code == 3006, (mute.code, mute.reason)
    assert mute.reason.startswith("Session idle for too long: no audio"), mute.reason
    assert [m.get("type") for m in mute.messages][-2:] == ["Termination", "Error"]
    assert mute.finals
    assert NO_AUDIO <= mute_after < NO_AUDIO + IDLE_GRACE

    assert idle.code == 3006, (idle.code, idle.reason)
    assert idle.reason.startswith("Session idle for too long")
    kinds = [m.get("type") for m in idle.messages]
    assert kinds[0] == "Begin" and kinds[-2:] == ["Termination", "Error"], kinds
    assert idle.messages[-1]["error_code"] == 3006
    assert idle.finals  # the turn spoken before going quiet (and its formatted twin)
    assert IDLE <= after < IDLE + IDLE_GRACE

    assert alive.code == 1000 and alive.of_type("Termination"), (alive.code, alive.reason)
    assert bystander.sessions and bystander.completed == bystander.sessions

    ends = [s for s in sandbox_sessions(sandbox) if s.get("end") == "terminated"]
    assert len(ends) >= 3 + len(bystander.sessions)  # the idle ones were Terminated too
    assert metric(gw, "voxgate_idle_sessions_total") == 2.0
    assert metric(gw, "voxgate_sessions_ended_total", outcome="idle") == 2.0
    assert metric(gw, "voxgate_upstream_key_sessions_active", key="main") == 0.0


# --------------------------------------------------------------------------- M4: tags


def _token(gw: Server, key: str) -> str:
    request = urllib.request.Request(
        gw.http_url + "/v3/token?expires_in_seconds=60", headers={"Authorization": key}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        token: str = json.loads(response.read())["token"]
    return token


def test_a_tag_is_the_clients_own_channel(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """Two clients use the same voxgate_tag: each one's envelopes reach only
    voxgate:tag:<its name>:<tag>, never the other's channel nor a shared
    voxgate:tag:<tag>; a session opened with a temporary token publishes under the
    client that minted the token. `voxgate tail --client other --tag desk-1` follows
    the other client's channel only."""
    gw = gateway_factory(
        VOXGATE_REDIS_URL=redis_server.url, VOXGATE_CLIENT_KEYS=f"{CLIENT_KEYS},other={OTHER_KEY}"
    )
    client = redis.Redis.from_url(redis_server.url)
    pubsub = client.pubsub()
    pubsub.psubscribe("voxgate:tag:*")
    pubsub.get_message(timeout=2.0)
    follow = ["--json", "--client", "other", "--tag", "desk-1", "--limit", "100"]
    tail = subprocess.Popen(
        [sys.executable, "-m", "voxgate", "tail", "--redis", redis_server.url, *follow],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Wait until it has subscribed: pub/sub keeps nothing for late listeners.
    deadline = time.monotonic() + 10.0
    while (
        dict(client.pubsub_numsub("voxgate:tag:other:desk-1")).get(b"voxgate:tag:other:desk-1", 0)
        < 1
    ):
        assert time.monotonic() < deadline and tail.poll() is None, "voxgate tail never subscribed"
        time.sleep(0.05)
    query = "sample_rate=16000&voxgate_tag=desk-1"
    mine = run(session(gw.url, audio.speech(1), query=query))
    theirs = run(session(gw.url, audio.speech(1), key=OTHER_KEY, query=query))
    token = _token(gw, OTHER_KEY)
    by_token = run(session(gw.url, audio.speech(1), key=None, query=f"{query}&token={token}"))
    assert mine.code == theirs.code == by_token.code == 1000
    wait_backlog_empty(gw)

    seen: dict[str, list[dict[str, Any]]] = {}
    deadline = time.monotonic() + 5.0
    while sum(e["event"] == "session.ended" for v in seen.values() for e in v) < 3:
        assert time.monotonic() < deadline, sorted(seen)
        item = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if item is not None and item["type"] == "pmessage":
            seen.setdefault(item["channel"].decode(), []).append(json.loads(item["data"]))
    pubsub.close()
    client.close()
    tail.terminate()
    printed, _ = tail.communicate(timeout=10)

    assert sorted(seen) == ["voxgate:tag:other:desk-1", "voxgate:tag:tester:desk-1"]
    for channel, envelopes in seen.items():
        owner = channel.split(":")[2]
        assert {e["client"] for e in envelopes} == {owner}
        assert {e["tag"] for e in envelopes} == {"desk-1"}
    sessions = {e["session_id"] for e in seen["voxgate:tag:other:desk-1"]}
    assert len(sessions) == 2  # the key's session and the token's
    tailed = [json.loads(line) for line in printed.splitlines()]
    assert tailed == seen["voxgate:tag:other:desk-1"]


# --------------------------------------------------------------------------- M6: upstream junk

#: What the simulator's flip key sends instead of Begin, in turn.
JUNK = ("junk-deep", "junk-json", "junk-array", "junk-binary", "junk-huge")


def _set_behaviour(sandbox: Server, key: str, behaviour: str) -> None:
    get_json(f"{sandbox.http_url}/sandbox/keys?set={key}&behaviour={behaviour}")


def _works(gw: Server, within: float = 15.0) -> Outcome:
    """A short normal session, tried until one gets through (the key cools down for
    a second or so after a failure)."""
    deadline = time.monotonic() + within
    while True:
        out = run(session(gw.url, audio.frames(audio.silence(0.5))))
        if out.code == 1000 or time.monotonic() > deadline:
            return out
        time.sleep(0.3)


def test_upstream_junk_before_begin_frees_the_slot_and_counts_against_the_key(
    gateway_factory: GatewayFactory, sandbox: Server
) -> None:
    """With one key capped at ONE session: for each junk an upstream may send instead of
    Begin, the client is refused with 1013 at once (not after the Begin timeout), the
    failure is counted against the key as transient, the pool's slot count and the
    gauge both read 0, and the next session on that key works."""
    key = "flip-key"
    gw = gateway_factory(
        f"main={key}",
        VOXGATE_KEY_MAX_SESSIONS="1",
        VOXGATE_BEGIN_TIMEOUT="8",
        VOXGATE_ADMIN_KEY=ADMIN_KEY,
        VOXGATE_UPSTREAM_MAX_MESSAGE_BYTES=str(1024 * 1024),  # junk-huge is over it
    )
    try:
        for count, junk in enumerate(JUNK, start=1):
            _set_behaviour(sandbox, key, junk)
            started = time.monotonic()
            refused = run(session(gw.url, audio.frames(audio.silence(0.2))))
            took = time.monotonic() - started
            assert refused.code == 1013, (junk, refused.code, refused.reason)
            assert took < 8, (junk, took)  # not the Begin timeout
            assert admin_keys(gw)["main"]["active_sessions"] == 0, junk
            assert metric(gw, "voxgate_upstream_key_sessions_active", key="main") == 0.0, junk
            failures = metric(gw, "voxgate_upstream_errors_total", key="main", failure="transient")
            assert failures == count, (junk, failures)
            _set_behaviour(sandbox, key, "ok")
            out = _works(gw)
            assert out.code == 1000, (junk, out.code, out.reason)
    finally:
        _set_behaviour(sandbox, key, "ok")


# --------------------------------------------------------------------------- text messages

#: A KeepAlive padded to about 990 KB (accepted and relayed before the fix).
PADDED = json.dumps({"type": "KeepAlive", "pad": [[]] * 240_000})
#: KeepAlive sent back to back: before the fix every one went upstream.
FLOOD = 2000


async def _send_then_collect(url: str, texts: list[str]) -> Outcome:
    outcome = Outcome()
    ws = await open_client(url)
    reader = asyncio.create_task(collect(ws, outcome))
    for frame in audio.speech(1)[:5]:
        await ws.send(frame)
    try:
        for text in texts:
            await ws.send(text)
        await asyncio.wait_for(asyncio.shield(reader), 5.0)
    except Exception:  # closed by the gateway mid-flood, or still open after 5 s
        pass
    if not reader.done():
        await ws.send(json.dumps({"type": "Terminate"}))
    return await reader


def test_client_text_messages_are_bounded_in_size_and_rate(
    gateway_factory: GatewayFactory,
) -> None:
    gw = gateway_factory()
    keepalive = json.dumps({"type": "KeepAlive"})

    async def attacks() -> tuple[Outcome, Outcome, Outcome]:
        return await asyncio.gather(
            _send_then_collect(gw.url, [PADDED]),
            _send_then_collect(gw.url, [keepalive] * FLOOD),
            _send_then_collect(gw.url, [keepalive] * 15),  # within the burst: left alone
        )

    with Bystander(gw.url, CLIENT_KEY, utterances=1) as bystander:
        big, flood, polite = run(attacks(), deadline=60)
    print(f"text: big {big.code} {big.reason!r}, flood {flood.code} {flood.reason!r}")
    assert len(PADDED) > 900_000
    assert big.code == 1009, (big.code, big.reason)
    assert flood.code == 1008 and "Too many messages" in flood.reason, (flood.code, flood.reason)
    assert polite.code == 1000 and polite.of_type("Termination"), (polite.code, polite.reason)
    assert metric(gw, "voxgate_client_rejections_total", reason="message_too_big") == 1
    assert metric(gw, "voxgate_client_rejections_total", reason="message_rate") == 1
    # Of the polite client's 15 KeepAlive (sent within a second) at most two went up.
    assert metric(gw, "voxgate_keepalives_coalesced_total") >= 13
    assert bystander.sessions and bystander.completed == bystander.sessions
