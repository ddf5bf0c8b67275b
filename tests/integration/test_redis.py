"""Transcripts to a real redis-server: order, completeness, outages, shedding, tags."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
import redis
from voxgate.bench.procs import RedisServer, Server
from voxgate.transcripts.publisher import STREAM_KEY

from tests.support import audio
from tests.support.gateway import GatewayFactory, metric, wait_backlog_empty
from tests.support.wsclient import Outcome, collect, open_client, run, session


class Subscriber:
    """Collects every envelope published on voxgate:session:* in a thread."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub()
        self.pubsub.psubscribe("voxgate:session:*")
        self.pubsub.get_message(timeout=2.0)  # the subscribe confirmation
        self.envelopes: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self.pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if item is not None:
                self.envelopes.append(json.loads(item["data"]))

    def wait_for_end(self, sessions: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ended = [e for e in self.envelopes if e["event"] == "session.ended"]
            if len(ended) >= sessions:
                return
            time.sleep(0.05)
        raise AssertionError(f"saw {len(ended)} of {sessions} session.ended")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.pubsub.close()
        self.client.close()


def by_session(envelopes: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for envelope in envelopes:
        out.setdefault(envelope["session_id"], []).append(envelope)
    return out


def test_every_envelope_arrives_in_order_for_concurrent_sessions(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """Three concurrent tagged sessions: per session, seq is 0..n-1 with no gap, it
    starts with session.started and ends with session.ended, and the upstream
    messages are exactly what the client received, in order."""
    gw = gateway_factory(VOXGATE_REDIS_URL=redis_server.url)
    sub = Subscriber(redis_server.url)
    try:

        async def three() -> list[Outcome]:
            return list(
                await asyncio.gather(
                    *(
                        session(
                            gw.url, audio.speech(2), query=f"sample_rate=16000&voxgate_tag=call-{i}"
                        )
                        for i in range(3)
                    )
                )
            )

        outcomes = run(three())
        sub.wait_for_end(3)
    finally:
        sub.close()
    sessions = by_session(sub.envelopes)
    assert len(sessions) == 3
    for out in outcomes:
        assert out.code == 1000
        sid = out.messages[0]["id"]
        envelopes = sessions[sid]
        assert [e["seq"] for e in envelopes] == list(range(len(envelopes)))
        assert envelopes[0]["event"] == "session.started"
        assert envelopes[-1]["event"] == "session.ended"
        assert envelopes[-1]["close_code"] == 1000
        relayed = [e["message"] for e in envelopes if e["event"] == "message"]
        assert relayed == out.messages
        tags = {e["tag"] for e in envelopes}
        assert len(tags) == 1 and tags.pop().startswith("call-")
        assert {e["client"] for e in envelopes} == {"tester"}


def test_a_tag_channel_carries_partials_and_finals(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """A subscriber to voxgate:tag:<client>:<tag> sees both partial and final turns."""
    gw = gateway_factory(VOXGATE_REDIS_URL=redis_server.url)
    client = redis.Redis.from_url(redis_server.url)
    pubsub = client.pubsub()
    pubsub.subscribe("voxgate:tag:tester:desk-7")
    pubsub.get_message(timeout=2.0)
    out = run(session(gw.url, audio.speech(2), query="sample_rate=16000&voxgate_tag=desk-7"))
    assert out.code == 1000
    turns: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        item = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if item is None:
            continue
        envelope = json.loads(item["data"])
        if envelope["event"] == "session.ended":
            break
        if envelope.get("message", {}).get("type") == "Turn":
            turns.append(envelope["message"])
    pubsub.close()
    client.close()
    assert any(t["end_of_turn"] for t in turns)
    assert any(not t["end_of_turn"] for t in turns)


def test_a_consumer_group_reads_every_final_exactly_once(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """Two consumers of one group share the stream: together they read each final
    turn once, and the stream holds finals only (by default)."""
    gw = gateway_factory(VOXGATE_REDIS_URL=redis_server.url)
    client = redis.Redis.from_url(redis_server.url)
    client.xgroup_create(STREAM_KEY, "workers", id="$", mkstream=True)
    outcomes = [run(session(gw.url, audio.speech(2))) for _ in range(2)]
    wait_backlog_empty(gw)
    seen: list[dict[str, Any]] = []
    consumer = 0
    while True:
        name = f"worker-{consumer % 2}"
        consumer += 1
        batch: Any = client.xreadgroup("workers", name, {STREAM_KEY: ">"}, count=3)
        if not batch:
            break
        for _stream, entries in batch:
            for entry_id, fields in entries:
                seen.append(json.loads(fields[b"envelope"]))
                client.xack(STREAM_KEY, "workers", entry_id)
    client.close()
    keys = [(e["session_id"], e["seq"]) for e in seen]
    assert len(keys) == len(set(keys)), "an entry was read twice"
    finals_sent = sum(len(o.finals) for o in outcomes)
    finals_read = [e for e in seen if e.get("message", {}).get("type") == "Turn"]
    assert len(finals_read) == finals_sent
    assert all(e["message"]["end_of_turn"] for e in finals_read)
    for sid, envelopes in by_session(seen).items():
        assert [e["stream_seq"] for e in envelopes] == list(range(len(envelopes))), sid


def test_redis_outage_mid_session_costs_the_client_nothing_and_loses_no_final(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """Redis stopped mid-session and started again: the client's messages keep
    coming without a stall, and afterwards the stream holds every final with
    consecutive stream_seq."""
    gw = gateway_factory(VOXGATE_REDIS_URL=redis_server.url)
    frames = audio.frames(audio.utterance(0.6, 0.6) * 4)
    arrivals: list[float] = []

    async def scenario() -> Outcome:
        out = Outcome()
        ws = await open_client(gw.url)

        async def timed() -> None:
            await collect(ws, out)

        reader = asyncio.create_task(timed())
        for i, frame in enumerate(frames):
            if i == 5:
                await asyncio.to_thread(redis_server.stop)
            if i == 60:
                await asyncio.to_thread(redis_server.start)
            await ws.send(frame)
            arrivals.append(len(out.messages))
            await asyncio.sleep(0.05)
        await ws.send(json.dumps({"type": "Terminate"}))
        await reader
        return out

    out = run(scenario())
    assert out.code == 1000
    # Turns kept arriving while Redis was down (frames 5..60 cover ~2.7 s).
    assert arrivals[55] > arrivals[10], "no messages reached the client while Redis was down"
    wait_backlog_empty(gw)
    client = redis.Redis.from_url(redis_server.url)
    entries = client.xrange(STREAM_KEY)
    client.close()
    sid = out.messages[0]["id"]
    mine = [json.loads(f[b"envelope"]) for _id, f in entries]
    mine = [e for e in mine if e["session_id"] == sid]
    finals_in_stream = [e for e in mine if e.get("message", {}).get("type") == "Turn"]
    assert len(finals_in_stream) == len(out.finals)
    assert [e["stream_seq"] for e in mine] == list(range(len(mine)))
    assert mine[-1]["event"] == "session.ended"


def test_a_full_backlog_sheds_partials_first_and_counts_them(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """Redis down, a small backlog: partials are dropped and counted, no final is."""
    redis_server.stop()
    gw = gateway_factory(VOXGATE_REDIS_URL=redis_server.url, VOXGATE_REDIS_BACKLOG="12")
    out = run(session(gw.url, audio.frames(audio.utterance(1.2, 0.6) * 2)))
    assert out.code == 1000
    partials = len([t for t in out.of_type("Turn") if not t["end_of_turn"]])
    assert partials > 0
    assert metric(gw, "voxgate_redis_dropped_envelopes_total", kind="partial") > 0
    assert metric(gw, "voxgate_redis_dropped_envelopes_total", kind="final") == 0
    redis_server.start()
    wait_backlog_empty(gw)
    client = redis.Redis.from_url(redis_server.url)
    entries = [json.loads(f[b"envelope"]) for _id, f in client.xrange(STREAM_KEY)]
    client.close()
    finals = [e for e in entries if e.get("message", {}).get("type") == "Turn"]
    assert len(finals) == len(out.finals)


@pytest.mark.parametrize(
    "query",
    [
        "sample_rate=16000&voxgate_tag=a%20b",
        "sample_rate=16000&voxgate_tag=" + "x" * 65,
        "sample_rate=16000&voxgate_tag=voxgate:*",
        "sample_rate=16000&voxgate_tagg=call-1",
    ],
)
def test_invalid_tags_are_refused_with_a_clear_3006(gateway: Server, query: str) -> None:
    """Tags with spaces, too long, with glob characters, or a misspelt gateway
    parameter: 3006 naming the parameter, before any upstream session."""
    out = run(session(gateway.url, [], query=query))
    assert out.code == 3006
    assert "voxgate_tag" in out.reason


def test_the_publish_script_splits_each_envelope_by_byte_lengths(
    redis_server: RedisServer,
) -> None:
    """One script argument per envelope carries the session id and channels by their
    UTF-8 byte lengths: with non-ASCII ids and a tag, every envelope reaches both
    channels and the stream intact, with the stream's session_id and seq fields, in
    order; a partial goes to pub/sub only."""
    from voxgate.metrics.gateway import Metrics
    from voxgate.transcripts.publisher import Publisher

    sid, tag = "sé-1 ü", "déskø"
    client = redis.Redis.from_url(redis_server.url)
    pubsub = client.pubsub()
    pubsub.subscribe(f"voxgate:session:{sid}", f"voxgate:tag:clïent:{tag}")
    pubsub.get_message(timeout=1.0)
    pubsub.get_message(timeout=1.0)  # the two subscribe confirmations
    turns = [
        {"type": "Turn", "end_of_turn": False, "transcript": "hé"},
        {"type": "Turn", "end_of_turn": True, "transcript": "hé lo\n"},
    ]

    async def publish() -> None:
        publisher = Publisher(
            redis_server.url, Metrics(), backlog=100, stream_maxlen=100, stream_partials=False
        )
        publisher.start()
        session = publisher.session(sid, "clïent", tag)
        session.started({"sample_rate": "16000"})
        for turn in turns:
            session.message(json.dumps(turn, ensure_ascii=False), turn)
        session.ended(outcome="completed")
        await publisher.close()  # flushes the backlog (within its own deadline)
        assert publisher.backlog == 0

    asyncio.run(publish())
    seen: dict[str, list[dict[str, Any]]] = {}
    deadline = time.monotonic() + 5.0
    while sum(map(len, seen.values())) < 8 and time.monotonic() < deadline:
        item = pubsub.get_message(timeout=0.5)
        if item is not None and item["type"] == "message":
            seen.setdefault(item["channel"].decode(), []).append(json.loads(item["data"]))
    entries = client.xrange(STREAM_KEY)
    pubsub.close()
    client.close()
    for channel in (f"voxgate:session:{sid}", f"voxgate:tag:clïent:{tag}"):
        envelopes = seen[channel]
        assert [e["seq"] for e in envelopes] == [0, 1, 2, 3]
        assert {(e["session_id"], e["client"], e["tag"]) for e in envelopes} == {
            (sid, "clïent", tag)
        }
        assert [e.get("message") for e in envelopes[1:3]] == turns
    fields = [
        (f[b"session_id"].decode(), int(f[b"seq"]), json.loads(f[b"envelope"]))
        for _id, f in entries
    ]
    assert [(s, seq, e["seq"], e["stream_seq"]) for s, seq, e in fields] == [
        (sid, 0, 0, 0),
        (sid, 2, 2, 1),
        (sid, 3, 3, 2),
    ]
    assert fields[1][2]["message"] == turns[1]
