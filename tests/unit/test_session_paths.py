"""A session's per-message work is the same whichever path a message takes: handed over
by the connection's callback as it is parsed, or taken by the pump after ``recv``
(sans-I/O: recording transports, no sockets)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from voxgate.metrics.gateway import Metrics
from voxgate.protocol import parse_stream_params
from voxgate.relay.session import WATCHDOG_INTERVAL, End, Session
from voxgate.relay.ticker import Ticker
from voxgate.settings import Settings
from voxgate.upstream.connect import UpstreamSession
from voxgate.ws.connection import WebSocket
from voxgate.ws.frames import BINARY, CLOSE, TEXT, close_payload, encode

from tests.support.sansio import ClientSide, ServerSide, frames_of, opened
from tests.support.wsclient import run

#: Deadline for one scenario.
WAIT = 5.0
#: 16 kHz 16-bit mono: 50 ms is 1600 bytes.
FRAME = bytes(range(256)) * 8
SETTINGS = Settings.from_env(
    {
        "VOXGATE_UPSTREAM_KEYS": "main=secret",
        "VOXGATE_CLIENT_KEYS": "tester=client-secret",
        "VOXGATE_PACE_BURST_SECONDS": "30",
    }
)


def make_session(
    wire: list[tuple[str, bytes]], query: list[tuple[str, str]] | None = None
) -> tuple[Session, WebSocket, WebSocket]:
    """A session between two recording connections, as the handler would start it
    (after Begin), with a replacement upstream allowed after a drop."""
    client = opened(ServerSide, "client", wire)
    upstream = opened(ClientSide, "upstream", wire)

    async def no_replacement() -> tuple[UpstreamSession, str]:
        raise AssertionError("the relay itself never opens a replacement")

    session = Session(
        client=client,  # type: ignore[arg-type]
        upstream=UpstreamSession(upstream, '{"type":"Begin"}', {"id": "s1"}, 0.01),  # type: ignore[arg-type]
        params=parse_stream_params(query or [("sample_rate", "16000")]),
        key_alias="main",
        client_name="tester",
        settings=SETTINGS,
        metrics=Metrics(),
        on_upstream_failure=lambda alias, failure: None,
        reopen=no_replacement,
        ticker=Ticker(WATCHDOG_INTERVAL),
    )
    return session, client, upstream


def relay(frames: list[bytes], *, upstream_ready: bool, one_read: bool = False) -> dict[str, Any]:
    """Feed ``frames`` from the client while the relay runs (``one_read``: all in one
    read); with ``upstream_ready`` False, upstream's write buffer is over its high
    mark, so the frames queue and the pump takes them (and waits for upstream after
    each write)."""

    async def scenario() -> dict[str, Any]:
        wire: list[tuple[str, bytes]] = []
        session, client, upstream = make_session(wire)
        metrics = session.metrics
        if not upstream_ready:
            upstream.pause_writing()
        relaying = asyncio.create_task(session._relay())
        await asyncio.sleep(0)
        reads = [encode(BINARY, frame, mask=True) for frame in frames]
        for read in [b"".join(reads)] if one_read else reads:
            client.data_received(read)
        await asyncio.sleep(0.01)
        queued = len(client._messages)
        upstream.resume_writing()
        await asyncio.sleep(0.01)
        ended: End | None = None
        if relaying.done():
            ended = relaying.result()
        else:
            relaying.cancel()
        sent = [payload for _, payload in frames_of(wire, "upstream", masked=True)]
        family = metrics.relay_overhead_seconds
        (up_count,) = [
            s.value
            for m in family.collect()
            for s in m.samples
            if s.name.endswith("_count") and s.labels["direction"] == "up"
        ]
        client_frames = frames_of(wire, "client", masked=False)
        return {
            "queued_while_paused": queued,
            "sent_upstream": sent,
            "bytes_up": session.bytes_up,
            "replay": session.seam.replay(),
            "audio_seconds": round(session.audio_seconds, 6),
            "relay_up_observations": up_count,
            "ended": (ended.outcome, ended.close.code if ended.close else None) if ended else None,
            "to_client": [p for _, p in client_frames],
        }

    result: dict[str, Any] = run(scenario(), WAIT)
    return result


def test_audio_gets_the_same_work_through_the_callback_and_through_the_pump() -> None:
    """Four frames relayed at once (the callback) and the same four queued behind a
    paused upstream (the pump): both write them upstream in order, count their bytes,
    keep them for a replay, add their audio to the pace, and time each once."""
    frames = [FRAME[:1600], FRAME[1:1601], FRAME[2:1602], FRAME[3:1603]]
    fast = relay(frames, upstream_ready=True)
    pumped = relay(frames, upstream_ready=False)
    assert fast["queued_while_paused"] == 0
    # The pump took the first, wrote it and waits for upstream; the rest wait for it.
    assert pumped["queued_while_paused"] == 3
    for result in (fast, pumped):
        assert result["sent_upstream"] == frames
        assert result["bytes_up"] == 4 * 1600
        assert result["replay"] == frames
        assert result["audio_seconds"] == 0.2
        assert result["relay_up_observations"] == 4
        assert result["ended"] is None


def test_a_frame_breaking_the_rules_ends_the_session_alike_on_either_path() -> None:
    """A 10 ms frame (under the 50 ms minimum) after a good one: on either path the
    good one goes upstream, the bad one does not, and the session ends as the
    client's error with 3007."""
    frames = [FRAME[:1600], FRAME[:320]]
    for ready in (True, False):
        result = relay(frames, upstream_ready=ready)
        assert result["sent_upstream"] == frames[:1], ready
        assert result["ended"] == ("client_error", 3007), ready


def test_nothing_after_a_rule_breaking_frame_is_relayed_in_the_same_read() -> None:
    """A good frame, a 10 ms one, then five good ones, all in one read (the
    connection hands each to the session's callback in turn): only the first goes
    upstream or counts, and the session ends with 3007."""
    frames = [FRAME[:1600], FRAME[:320], *[FRAME[:1600]] * 5]
    result = relay(frames, upstream_ready=True, one_read=True)
    assert result["sent_upstream"] == frames[:1]
    assert result["bytes_up"] == 1600
    assert result["ended"] == ("client_error", 3007)


def test_upstreams_error_is_held_without_waiting_for_a_slow_client() -> None:
    """Upstream sends an Error and closes with 1011 while the client is not reading
    (its buffer over the high mark): nothing was written to the client, so nothing
    waits for it; the relay ends at once, asking for a replacement upstream, with
    upstream's Error held for the client (not after the send deadline as "client gone")."""

    async def scenario() -> End:
        wire: list[tuple[str, bytes]] = []
        session, client, upstream = make_session(wire)
        client.pause_writing()  # a slow client
        relaying = asyncio.create_task(session._relay())
        await asyncio.sleep(0)
        error = '{"type": "Error", "error_code": 1011, "error": "upstream hiccup"}'
        upstream.data_received(encode(TEXT, error.encode(), mask=False))
        upstream.data_received(encode(CLOSE, close_payload(1011, "hiccup"), mask=False))
        # Well under the send deadline (10 s) the watchdog would otherwise end it on.
        return await asyncio.wait_for(relaying, 3.0)

    end: End = run(scenario(), WAIT)
    assert end.reconnect
    assert end.upstream_error is not None and "upstream hiccup" in end.upstream_error


def test_format_turns_turned_off_mid_session_is_followed_by_the_seam() -> None:
    """format_turns=true at connect, then an UpdateConfiguration turns it off: each
    final from then on is single (unformatted) and completes its turn. After two
    such turns and a drop, the replacement's turn 0 is the client's turn 2 (not a
    duplicate 0), and the replacement is sent the configuration first."""

    def final(order: int, end: int) -> str:
        words = [{"text": "x", "start": end - 300, "end": end}]
        return json.dumps(
            {
                "type": "Turn",
                "turn_order": order,
                "end_of_turn": True,
                "turn_is_formatted": False,
                "transcript": "x",
                "words": words,
            }
        )

    async def scenario() -> tuple[Session, dict[str, Any] | None]:
        session, _, _ = make_session([], [("sample_rate", "16000"), ("format_turns", "true")])
        await session._control('{"type": "UpdateConfiguration", "format_turns": false}')
        for _ in range(20):
            session._audio(FRAME[:1600])
        session._downstream(final(0, 400))
        session._downstream(final(1, 800))
        session.seam.replay()
        return session, session.seam.rewrite(json.loads(final(0, 300)))

    session, first = run(scenario(), WAIT)
    assert first is not None and first["turn_order"] == 2
    assert json.loads(session.configuration.message()) == {
        "type": "UpdateConfiguration",
        "format_turns": False,
    }
