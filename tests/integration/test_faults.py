"""Fault injection: real redis-server, gateways and the simulator's fault modes.

Each test breaks one thing while sessions run at real-time pace (Redis killed,
a key dropping every session, SIGTERM, a key turning 402, clients vanishing, a
huge upstream message) and checks what a client and a Redis consumer must still
see: every final once, turn numbering without a gap, and every session that a
healthy key could carry completed.

This module has its own simulator: its keys include stateful ones (``402-after-M``),
and its pace burst (SANDBOX_BURST) is below the gateway's replay (2 s) and above
the gateway's own burst (GATEWAY_BURST, its replacements' too), as AssemblyAI's
would be: a replay sent at once would be refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis
from voxgate.bench.procs import RedisServer, Server
from voxgate.relay.closes import UPSTREAM_TOO_BIG
from voxgate.sandbox.behaviours import PAID_ONLY
from voxgate.transcripts.publisher import STREAM_KEY
from websockets.exceptions import ConnectionClosed

from tests.support import audio
from tests.support.gateway import (
    ADMIN_KEY,
    GatewayFactory,
    admin_keys,
    metric,
    sandbox_sessions,
    wait_backlog_empty,
)
from tests.support.http import get_json
from tests.support.procs import start
from tests.support.wsclient import DEFAULT_QUERY, WAIT, Outcome, collect, open_client, run

#: The simulator's pace burst, and the gateway's (VOXGATE_PACE_BURST_SECONDS).
SANDBOX_BURST = 1.5
GATEWAY_BURST = 1.0
KEYS = ",".join(
    [
        "good-a=ok",
        "good-b=ok",
        "dropper=drop-1011@25f",  # every session dropped after 25 frames (1.25 s)
        "late-drop=drop-1011@3.5",
        "long-drop=drop-1011@2.5",
        "quota=402-after-5",
        "revise=revise@0",
        "big-revision=revise@700000",
        "huge-revision=revise@2000000",
        "padding=1008-padding",
        "padding-2=1008-padding",
        "feature=4003-speaker_labels",
        "blip-a=drop-1012@1.5",  # switched to ok by the test once its sessions run
        "blip-b=drop-1012@1.5",
        "mid-drop=drop-1011@2.0",
        "early-drop=drop-1011@1.5",
        "mid-paid=drop-4003@1.0",  # a running session closed 4003 (paid-only)
    ]
)
FRAME_SECONDS = audio.FRAME_MS / 1000
#: A Redis outage this long ends while the publisher waits out a retry delay (its
#: tries after the first failure: 0.2, 0.6, 1.4, 3.0, then 6.2 s).
OUTAGE_SECONDS = 3.5


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """This module's simulator (overrides conftest's): the keys above."""
    log = tmp_path_factory.mktemp("sandbox") / "stderr.log"
    proc = start(
        ["sandbox", "--port", "0", "--keys", KEYS, "--pace-burst", str(SANDBOX_BURST)], {}, log
    )
    yield proc
    proc.stop()


def gateway(factory: GatewayFactory, keys: str, **env: str) -> Server:
    return factory(
        keys,
        VOXGATE_PACE_BURST_SECONDS=str(GATEWAY_BURST),
        VOXGATE_REPLACEMENT_BURST_SECONDS=str(GATEWAY_BURST),
        VOXGATE_ADMIN_KEY=ADMIN_KEY,
        **env,
    )


async def talk(
    url: str,
    utterances: int = 3,
    *,
    pcm: bytes | None = None,
    query: str = DEFAULT_QUERY,
    vanish_after: int | None = None,
    configure: dict[str, Any] | None = None,
) -> Outcome:
    """One client at real-time pace from ``Begin`` on: ``utterances`` turns (or
    ``pcm``), then Terminate. ``vanish_after``: after that many frames the TCP
    connection is cut, no close. ``configure``: an UpdateConfiguration sent first."""
    outcome = Outcome()
    frames = audio.frames(pcm if pcm is not None else audio.utterance(0.8, 0.7) * utterances)
    ws = await open_client(url, query=query)
    with contextlib.suppress(ConnectionClosed):  # then collect records the close
        outcome.messages.append(json.loads(await asyncio.wait_for(ws.recv(), WAIT)))
    reader = asyncio.create_task(collect(ws, outcome))
    try:
        if configure is not None:
            await ws.send(json.dumps({"type": "UpdateConfiguration", **configure}))
        for i, frame in enumerate(frames):
            if vanish_after is not None and i == vanish_after:
                ws.transport.abort()
                break
            await ws.send(frame)
            await asyncio.sleep(FRAME_SECONDS)
        else:
            await ws.send(json.dumps({"type": "Terminate"}))
    except Exception:  # the gateway closed (drain, error): the reader says how
        pass
    return await reader


async def crowd(url: str, count: int, utterances: int = 3) -> list[Outcome]:
    return list(await asyncio.gather(*(talk(url, utterances) for _ in range(count))))


def pairs(out: Outcome) -> list[tuple[int, bool]]:
    return [(t["turn_order"], t["turn_is_formatted"]) for t in out.finals]


def continuous(turns: int) -> list[tuple[int, bool]]:
    """Final turns numbered 0..turns-1, each unformatted then formatted."""
    return [(i, formatted) for i in range(turns) for formatted in (False, True)]


def stream(redis_url: str) -> dict[str, list[dict[str, Any]]]:
    """The transcript stream by session, each envelope once (by seq: delivery is at
    least once), in seq order."""
    client = redis.Redis.from_url(redis_url)
    try:
        entries: Any = client.xrange(STREAM_KEY)
    finally:
        client.close()
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for _id, fields in entries:
        envelope = json.loads(fields[b"envelope"])
        out.setdefault(envelope["session_id"], {})[envelope["seq"]] = envelope
    return {sid: [by_seq[s] for s in sorted(by_seq)] for sid, by_seq in out.items()}


def assert_on_stream(outcomes: Sequence[Outcome], redis_url: str) -> None:
    """Every client's finals are on the stream once each, in order, with its
    session.ended; and nothing else final is."""
    sessions = stream(redis_url)
    for out in outcomes:
        sid = out.messages[0]["id"]
        envelopes = sessions.get(sid, [])
        finals = [e["message"] for e in envelopes if e.get("message", {}).get("type") == "Turn"]
        got = [(t["turn_order"], t["turn_is_formatted"]) for t in finals]
        assert got == pairs(out), f"{sid}: stream {got} != client {pairs(out)}"
        ended = [e for e in envelopes if e["event"] == "session.ended"]
        assert len(ended) == 1, f"{sid}: {len(ended)} session.ended on the stream"


# --------------------------------------------------------------------------- keys


def test_a_key_that_drops_every_session_beside_a_healthy_one(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """Pool: a key whose sessions all drop after 25 frames, and a healthy key. Ten
    concurrent sessions of three turns: each one dropped is carried on by the
    healthy key (a replacement prefers another key), the dropping key cools down,
    and all ten complete with turns 0, 1, 2 on the client and on the stream."""
    gw = gateway(
        gateway_factory, "dropper=dropper,healthy=good-a", VOXGATE_REDIS_URL=redis_server.url
    )
    outcomes = run(crowd(gw.url, 10))
    completed = [o for o in outcomes if o.code == 1000 and pairs(o) == continuous(3)]
    assert len(completed) == 10, [(o.code, o.reason, pairs(o)) for o in outcomes]
    assert all(len(o.of_type("Begin")) == 1 and not o.of_type("Error") for o in outcomes)
    assert admin_keys(gw)["dropper"]["state"] == "cooling_down"
    wait_backlog_empty(gw)
    assert_on_stream(outcomes, redis_server.url)


def wait_sessions(sandbox: Server, count: int, timeout: float = WAIT) -> None:
    """Until the simulator has seen ``count`` sessions."""
    deadline = time.monotonic() + timeout
    while len(sandbox_sessions(sandbox)) < count:
        assert time.monotonic() < deadline, "the sessions did not reach the simulator"
        time.sleep(0.05)


def test_an_upstream_wide_blip_is_nobody_s_key_s_fault(
    gateway_factory: GatewayFactory, sandbox: Server
) -> None:
    """Upstream drops every running session of both keys at once (1012, 1.5 s in; new
    sessions after that are served as usual): an upstream-wide event, so no key
    cools down, every session carries on with a replacement and completes with its
    turns 0, 1, 2, and a new session afterwards is served."""
    gw = gateway(gateway_factory, "ka=blip-a,kb=blip-b")
    before = len(sandbox_sessions(sandbox))

    async def scenario() -> list[Outcome]:
        sessions = asyncio.gather(*(talk(gw.url, 3) for _ in range(10)))
        await asyncio.to_thread(wait_sessions, sandbox, before + 10)  # then the keys heal
        for key in ("blip-a", "blip-b"):
            await asyncio.to_thread(
                get_json, f"{sandbox.http_url}/sandbox/keys?set={key}&behaviour=ok"
            )
        return list(await sessions)

    outcomes = run(scenario())
    completed = [o for o in outcomes if o.code == 1000 and pairs(o) == continuous(3)]
    assert len(completed) == 10, [(o.code, o.reason, pairs(o)) for o in outcomes]
    assert metric(gw, "voxgate_failovers_total", phase="mid_session") == 10
    keys = admin_keys(gw)
    assert keys["ka"]["state"] == keys["kb"]["state"] == "healthy", keys
    assert run(talk(gw.url, 1)).code == 1000


def test_a_key_turning_402_during_a_burst_of_new_sessions(
    gateway_factory: GatewayFactory, sandbox: Server
) -> None:
    """A key that serves five sessions and then answers 402, beside a healthy key,
    during a burst of 20 new sessions: every session completes; the key is
    disabled as payment-required, and each 402 it answered is counted."""
    gw = gateway(gateway_factory, "quota=quota,healthy=good-a")
    before = len(sandbox_sessions(sandbox))
    outcomes = run(crowd(gw.url, 20, utterances=1))
    assert [o.code for o in outcomes] == [1000] * 20, [(o.code, o.reason) for o in outcomes]
    assert all(pairs(o) == continuous(1) for o in outcomes)
    served = [s for s in sandbox_sessions(sandbox)[before:] if s["behaviour"] == "402-after-5"]
    assert len(served) == 5
    assert admin_keys(gw)["quota"]["state"] == "disabled_payment_required"
    refused = metric(gw, "voxgate_upstream_402_total", key="quota")
    assert refused >= 1
    assert metric(gw, "voxgate_failovers_total", phase="connect") == refused


def test_an_unexplained_1008_cools_keys_and_a_refused_feature_is_the_client_s(
    gateway_factory: GatewayFactory, sandbox: Server
) -> None:
    """Two keys answer 1008 "Incorrect padding" at connect: the session goes on with
    the third, and both keys only cool down (not disabled, no 402). A key that
    refuses a paid-only feature the client asked for (4003 with AssemblyAI's own
    words, which name no parameter): the gateway confirms through /v3/token that
    the key's account works, so the client gets that 4003 and its words, no other
    key is tried, the key stays in rotation and serves the next session, and no 402
    is counted."""
    gw = gateway(gateway_factory, "pad-1=padding,pad-2=padding-2,healthy=good-a")
    out = run(talk(gw.url, 1))
    assert out.code == 1000, out
    keys = admin_keys(gw)
    for alias in ("pad-1", "pad-2"):  # cooled for about a second (the session took longer)
        cooled = (keys[alias]["state"], keys[alias]["reason"])
        assert cooled in {("cooling_down", "Incorrect padding"), ("healthy", "cool-down over")}
    assert metric(gw, "voxgate_upstream_errors_total", key="pad-1", failure="unexplained") == 1
    assert metric(gw, "voxgate_upstream_402_total", key="pad-1") == 0

    gw = gateway(gateway_factory, "paid=feature,other=good-a")
    before = len(sandbox_sessions(sandbox))
    refused = run(talk(gw.url, 1, query=DEFAULT_QUERY + "&speaker_labels=true"))
    assert refused.code == 4003, refused
    assert refused.of_type("Error")[-1]["error"] == PAID_ONLY
    assert len(sandbox_sessions(sandbox)) - before == 1  # not failed over
    assert admin_keys(gw)["paid"]["state"] == "healthy"
    assert metric(gw, "voxgate_upstream_402_total", key="paid") == 0
    before = len(sandbox_sessions(sandbox))
    again = [run(talk(gw.url, 1)) for _ in range(2)]
    assert [o.code for o in again] == [1000, 1000]
    served = {(u["behaviour"], u["end"]) for u in sandbox_sessions(sandbox)[before:]}
    assert ("4003-speaker_labels", "terminated") in served


def test_a_paid_only_close_of_a_running_session_disables_no_key_whose_account_works(
    gateway_factory: GatewayFactory,
) -> None:
    """A running session closed with 4003 (as when an UpdateConfiguration asks for a
    paid feature): the client gets upstream's 4003; the key is disabled only if a
    /v3/token probe confirms payment is required, and here the account answers: the
    key stays in rotation, counted as the client's fault, no 402."""
    gw = gateway(gateway_factory, "paid=mid-paid")
    out = run(talk(gw.url, 1))
    assert out.code == 4003, out
    deadline = time.monotonic() + WAIT
    while metric(gw, "voxgate_upstream_errors_total", key="paid", failure="client_fault") < 1:
        assert time.monotonic() < deadline, admin_keys(gw)
        time.sleep(0.05)
    assert admin_keys(gw)["paid"]["state"] == "healthy"
    assert metric(gw, "voxgate_upstream_402_total", key="paid") == 0


# --------------------------------------------------------------------------- continuity


def test_after_a_reconnect_every_message_is_on_the_session_s_clock_and_numbering(
    gateway_factory: GatewayFactory,
) -> None:
    """Upstream drops 3.5 s in; the replacement (another key) sends SpeechStarted,
    an LLMGatewayResponse after each final and a SpeakerRevision at the end: they
    name the client's turns (not the replacement's 0), their times are on the
    session's clock (a SpeechStarted where its turn's first word starts, revised
    words where the finals' were), and Termination counts the whole session's audio
    (4.5 s, not the 2-odd s the replacement heard)."""
    gw = gateway(gateway_factory, "first=late-drop,second=revise")
    out = run(talk(gw.url, 3))
    assert out.code == 1000, out
    assert pairs(out) == continuous(3)
    formatted = {t["turn_order"]: t for t in out.finals if t["turn_is_formatted"]}
    # Each LLMGatewayResponse follows the final of the turn it is about.
    last_final, about = None, []
    for message in out.messages:
        if message["type"] == "Turn" and message["turn_is_formatted"]:
            last_final = message["turn_order"]
        elif message["type"] == "LLMGatewayResponse":
            about.append((message["turn_order"], last_final))
    assert about and all(said == final for said, final in about), about
    (revision,) = out.of_type("SpeakerRevision")
    revised = revision["revisions"]
    assert [r["turn_order"] for r in revised] == sorted(formatted)[-len(revised) :]
    for r in revised:
        times = [(w["start"], w["end"]) for w in formatted[r["turn_order"]]["words"]]
        assert [(w["start"], w["end"]) for w in r["words"]] == times
    # Each SpeechStarted is where the next turn's first word starts.
    started = [
        (message["timestamp"], after["words"][0]["start"])
        for i, message in enumerate(out.messages)
        if message["type"] == "SpeechStarted"
        for after in [next(m for m in out.messages[i:] if m["type"] == "Turn")]
    ]
    assert started and all(said == first for said, first in started), started
    (termination,) = out.of_type("Termination")
    sent = len(audio.frames(audio.utterance(0.8, 0.7) * 3)) * FRAME_SECONDS
    assert abs(termination["audio_duration_seconds"] - sent) <= 1, termination


def test_a_replay_is_paced_to_real_time_plus_the_burst(
    gateway_factory: GatewayFactory, sandbox: Server
) -> None:
    """Upstream drops 2.5 s into a 3 s turn: 2 s are replayed, more than the
    simulator's 1.5 s burst. Paced, the replacement takes it and the session
    completes; sent at once it would be refused with 3007."""
    gw = gateway(gateway_factory, "first=long-drop,second=good-b")
    before = len(sandbox_sessions(sandbox))
    out = run(talk(gw.url, pcm=audio.utterance(3.0, 0.8) + audio.utterance(0.8, 0.7)))
    assert out.code == 1000, out
    assert pairs(out) == continuous(2)
    upstream = sandbox_sessions(sandbox)[before:]
    assert [u["end"] for u in upstream] == ["dropped", "terminated"], upstream


def test_a_replacement_keeps_its_own_pace_for_the_rest_of_its_life(
    gateway_factory: GatewayFactory, sandbox: Server
) -> None:
    """A client with pace credit (it paused) bursts 4.5 s of audio 2 s after its
    upstream dropped: within the session's pace (the gateway's burst), but 4 s ahead
    of the replacement's own clock, over the simulator's burst. The gateway keeps
    the replacement within real time plus the burst from its Begin for as long as
    it lives (not only until it first caught up): the session completes, the
    replacement is not closed with 3007."""
    gw = gateway(gateway_factory, "first=early-drop,second=good-b")
    before = len(sandbox_sessions(sandbox))
    pcm = audio.utterance(0.8, 0.7) * 4

    async def scenario() -> Outcome:
        outcome = Outcome()
        ws = await open_client(gw.url)
        outcome.messages.append(json.loads(await asyncio.wait_for(ws.recv(), WAIT)))
        reader = asyncio.create_task(collect(ws, outcome))
        frames = audio.frames(pcm)
        with contextlib.suppress(ConnectionClosed):
            for i, frame in enumerate(frames):
                if i == 20:  # 1 s sent: a pause of 2.5 s (pace credit)
                    await asyncio.sleep(2.5)
                if i == 36:  # 0.8 s more (upstream dropped 0.5 s into it): 2 s later,
                    await asyncio.sleep(2.0)  # the rest (4.5 s) at once
                await ws.send(frame)
                if i < 36:
                    await asyncio.sleep(FRAME_SECONDS)
            await ws.send(json.dumps({"type": "Terminate"}))
        return await reader

    out = run(scenario())
    assert out.code == 1000, (out.code, out.reason, out.of_type("Error"))
    turns = len(pairs(out)) // 2
    assert turns >= 3 and pairs(out) == continuous(turns), pairs(out)
    upstream = sandbox_sessions(sandbox)[before:]
    assert [u["end"] for u in upstream] == ["dropped", "terminated"], upstream


def test_update_configuration_outlives_a_reconnect(gateway_factory: GatewayFactory) -> None:
    """The client sets 3 s turn silences with UpdateConfiguration, then speaks four
    times with 0.7 s pauses: one turn. Upstream drops 2 s in: the replacement is sent
    the same configuration before the replay, so the client still gets one turn (not
    four)."""
    gw = gateway(gateway_factory, "first=mid-drop,second=good-b")
    silences = {"min_turn_silence": 3000, "max_turn_silence": 3000}
    out = run(talk(gw.url, 4, configure=silences))
    assert out.code == 1000, out
    assert metric(gw, "voxgate_failovers_total", phase="mid_session") == 1
    assert pairs(out) == continuous(1), pairs(out)


def test_a_large_upstream_message_is_relayed_and_an_oversized_one_ends_without_retry(
    gateway_factory: GatewayFactory, sandbox: Server
) -> None:
    """A 700 KB SpeakerRevision reaches the client whole, then Termination and 1000,
    on one upstream session. Over VOXGATE_UPSTREAM_MAX_MESSAGE_BYTES (1 MiB here), a
    2 MB one ends the session with 1011 and says why, with no replacement opened."""
    big = gateway(gateway_factory, "only=big-revision")
    small = gateway(
        gateway_factory, "only=huge-revision", VOXGATE_UPSTREAM_MAX_MESSAGE_BYTES="1048576"
    )
    before = len(sandbox_sessions(sandbox))

    async def both() -> list[Outcome]:
        return list(await asyncio.gather(talk(big.url, 2), talk(small.url, 2)))

    relayed, refused = run(both())
    assert relayed.code == 1000, relayed
    (revision,) = relayed.of_type("SpeakerRevision")
    assert len(json.dumps(revision)) >= 690_000
    assert relayed.messages[-1]["type"] == "Termination"
    assert refused.code == 1011, refused
    assert refused.of_type("Error")[-1]["error"] == UPSTREAM_TOO_BIG.text
    assert len(sandbox_sessions(sandbox)) - before == 2  # one each, no replacement
    assert metric(small, "voxgate_failovers_total", phase="mid_session") == 0
    refusals = metric(small, "voxgate_ws_messages_refused_total", hop="upstream", limit="size")
    assert refusals == 1


# --------------------------------------------------------------------------- redis, shutdown


def kill(server: RedisServer) -> None:
    """SIGKILL redis-server (no shutdown, no save): as a crash or an OOM kill."""
    assert server.popen is not None
    server.popen.send_signal(signal.SIGKILL)
    server.popen.wait(timeout=10)
    server.popen = None


def test_redis_killed_and_restarted_mid_stream_loses_no_final(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """Five sessions; redis-server SIGKILLed 1 s in and back 2 s later: every
    session completes untouched, and afterwards the stream holds every final."""
    gw = gateway(gateway_factory, "main=good-a", VOXGATE_REDIS_URL=redis_server.url)

    async def scenario() -> list[Outcome]:
        sessions = asyncio.gather(*(talk(gw.url, 3) for _ in range(5)))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(kill, redis_server)
        await asyncio.sleep(2.0)
        await asyncio.to_thread(redis_server.start)
        return list(await sessions)

    outcomes = run(scenario())
    assert all(o.code == 1000 and pairs(o) == continuous(3) for o in outcomes), outcomes
    wait_backlog_empty(gw)
    assert_on_stream(outcomes, redis_server.url)


@pytest.mark.parametrize("outage", [False, True], ids=["redis-up", "right-after-redis-outage"])
def test_sigterm_during_20_sessions_delivers_every_final(
    gateway_factory: GatewayFactory, redis_server: RedisServer, outage: bool
) -> None:
    """SIGTERM while 20 sessions speak (with ``outage``: 0.3 s after redis-server came
    back from an outage of OUTAGE_SECONDS, while the publisher waits out its retry
    delay): each client gets its finals numbered without a gap,
    Termination and 1012, the gateway exits 0, and every final and every
    session.ended is on the stream."""
    gw = gateway(
        gateway_factory,
        "a=good-a,b=good-b",
        VOXGATE_REDIS_URL=redis_server.url,
        VOXGATE_DRAIN_TIMEOUT="1",
    )

    async def scenario() -> list[Outcome]:
        sessions = asyncio.gather(*(talk(gw.url, 6) for _ in range(20)))
        await asyncio.sleep(0.5)
        if outage:
            await asyncio.to_thread(redis_server.stop)
            await asyncio.sleep(OUTAGE_SECONDS)
            await asyncio.to_thread(redis_server.start)
            await asyncio.sleep(0.3)
        else:
            await asyncio.sleep(1.5)
        gw.send_signal(signal.SIGTERM)
        return list(await sessions)

    outcomes = run(scenario())
    for out in outcomes:
        assert out.code == 1012, (out.code, out.reason)
        assert out.messages[-1]["type"] == "Termination"
        turns = len(pairs(out)) // 2
        assert turns >= 1 and pairs(out) == continuous(turns), pairs(out)
    assert gw.wait() == 0
    assert_on_stream(outcomes, redis_server.url)
    assert "redis_backlog_lost_on_shutdown" not in gw.stderr()


def test_clients_vanishing_without_a_close(
    gateway_factory: GatewayFactory, redis_server: RedisServer, sandbox: Server
) -> None:
    """Five clients cut their TCP connection mid-turn: each upstream session is
    ended at once (Terminate, not left billing), the finals each client had got are
    on the stream with the rest of its turns, and each session.ended says
    client_gone."""
    gw = gateway(gateway_factory, "main=good-a", VOXGATE_REDIS_URL=redis_server.url)
    before = len(sandbox_sessions(sandbox))

    async def five() -> list[Outcome]:
        return list(await asyncio.gather(*(talk(gw.url, 3, vanish_after=40) for _ in range(5))))

    outcomes = run(five())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        upstream = sandbox_sessions(sandbox)[before:]
        if len(upstream) == 5 and all(u["closed_at"] for u in upstream):
            break
        time.sleep(0.1)
    assert [u["end"] for u in upstream] == ["terminated"] * 5, upstream
    wait_backlog_empty(gw)
    sessions = stream(redis_server.url)
    for out in outcomes:
        envelopes = sessions[out.messages[0]["id"]]
        finals = [e["message"] for e in envelopes if e.get("message", {}).get("type") == "Turn"]
        got = [(t["turn_order"], t["turn_is_formatted"]) for t in finals]
        assert got[: len(pairs(out))] == pairs(out) and got == continuous(len(got) // 2)
        assert envelopes[-1]["event"] == "session.ended"
        assert envelopes[-1]["outcome"] == "client_gone"
