"""The gateway end to end: a real uvicorn gateway in front of the real simulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from typing import Any

import pytest
from voxgate.bench.procs import Server
from voxgate.relay.session import MAX_RECONNECTS
from websockets.exceptions import ConnectionClosed

from tests.support import audio
from tests.support.gateway import (
    ADMIN_KEY,
    CLIENT_KEY,
    GatewayFactory,
    admin_keys,
    metric,
    sandbox_sessions,
)
from tests.support.http import get_json, get_text
from tests.support.wsclient import Outcome, collect, open_client, run, session


def test_full_session_relays_begin_turns_termination_and_forwards_parameters(
    gateway: Server, sandbox: Server
) -> None:
    """Begin, partial and final (formatted) Turns, Termination, close 1000; the query
    reaches upstream with unknown parameters and without gateway-only ones."""
    before = len(sandbox_sessions(sandbox))
    query = (
        "sample_rate=16000&format_turns=true&speech_model=universal-streaming-english"
        "&brand_new_param=42&voxgate_tag=abc"
    )
    out = run(session(gateway.url, audio.speech(2), query=query))
    assert out.code == 1000, out
    kinds = [m["type"] for m in out.messages]
    assert kinds[0] == "Begin" and kinds[-1] == "Termination"
    turns = out.of_type("Turn")
    assert any(not t["end_of_turn"] for t in turns), "no partial turn"
    assert any(t["end_of_turn"] and t["turn_is_formatted"] for t in turns)
    orders = [t["turn_order"] for t in out.finals]
    assert orders == sorted(orders) and orders[0] == 0
    upstream = sandbox_sessions(sandbox)[before:]
    assert len(upstream) == 1
    params = dict(upstream[0]["params"])
    assert params["brand_new_param"] == "42"
    assert "voxgate_tag" not in params
    assert upstream[0]["end"] == "terminated"
    assert "good-key" not in json.dumps(out.messages)
    assert metric(gateway, "voxgate_sessions_ended_total", outcome="completed") == 1.0


@pytest.mark.parametrize(
    ("key", "reason_word", "label"),
    [(None, "missing", "missing_key"), ("wrong-key", "invalid", "invalid_key")],
)
def test_bad_client_key_is_refused_before_any_upstream_session(
    gateway: Server, sandbox: Server, key: str | None, reason_word: str, label: str
) -> None:
    """No or a wrong client key: Error frame + close 1008, counted, nothing upstream."""
    before = len(sandbox_sessions(sandbox))
    out = run(session(gateway.url, audio.speech(), key=key))
    assert out.code == 1008
    assert reason_word in out.reason
    assert out.of_type("Error")[0]["error_code"] == 1008
    assert len(sandbox_sessions(sandbox)) == before
    assert metric(gateway, "voxgate_client_rejections_total", reason=label) == 1.0


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("sample_rate=16000&voxgate_colour=red", "voxgate_colour"),
        ("sample_rate=16000&voxgate_tag=a&voxgate_tag=b", "voxgate_tag"),
        ("&".join(["x=1"] * 300), "parameters"),
    ],
)
def test_bad_parameters_get_3006_before_any_upstream_session(
    gateway: Server, sandbox: Server, query: str, needle: str
) -> None:
    """What the gateway refuses itself (its own namespace and limits; AssemblyAI's
    parameters are upstream's to judge, test_passthrough.py) is a 3006 naming it."""
    before = len(sandbox_sessions(sandbox))
    out = run(session(gateway.url, [], query=query))
    assert out.code == 3006
    assert needle in out.reason
    assert len(sandbox_sessions(sandbox)) == before
    assert metric(gateway, "voxgate_client_rejections_total", reason="bad_parameter") == 1.0


def ended_upstream_session(sandbox: Server, before: int) -> dict[str, Any]:
    """The first upstream session opened after ``before``, once ended (3 s at most)."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        upstream = sandbox_sessions(sandbox)[before:]
        if upstream and upstream[0]["closed_at"]:
            break
        time.sleep(0.05)
    assert upstream and upstream[0]["closed_at"], "upstream session left open"
    first: dict[str, Any] = upstream[0]
    return first


@pytest.mark.parametrize(
    ("frame", "code", "label"),
    [
        (bytes(640), 3007, "frame_duration"),  # 20 ms
        (bytes(1601), 3007, "frame_misaligned"),
        (bytes(128 * 1024 + 2), 1009, "frame_too_big"),
        ("this is not json", 3006, "bad_json"),
        (b"\xff" * 3, 3007, "frame_misaligned"),
    ],
)
def test_bad_frames_close_with_aai_codes_and_end_the_upstream_session(
    gateway: Server, sandbox: Server, frame: bytes | str, code: int, label: str
) -> None:
    """Each bad frame: Error + the code AssemblyAI uses, a metric, upstream ended."""
    before = len(sandbox_sessions(sandbox))
    out = run(session(gateway.url, [*audio.frames(audio.tone(0.2)), frame], terminate=False))
    assert out.code == code, out
    assert out.of_type("Error")[-1]["error_code"] == code
    assert metric(gateway, "voxgate_client_rejections_total", reason=label) == 1.0
    ended_upstream_session(sandbox, before)


def test_audio_faster_than_real_time_is_3007(gateway_factory: GatewayFactory) -> None:
    """A client more than the pace burst ahead of real time gets 3007."""
    gw = gateway_factory(VOXGATE_PACE_BURST_SECONDS="0.5")
    out = run(session(gw.url, audio.frames(audio.tone(2.0)), terminate=False))
    assert out.code == 3007
    assert "Rate Exceeded" in out.reason
    assert metric(gw, "voxgate_client_rejections_total", reason="too_fast") == 1.0


def test_client_that_vanishes_mid_stream_has_its_upstream_session_ended_within_a_second(
    gateway: Server, sandbox: Server
) -> None:
    """Dropping the TCP connection without Terminate ends upstream in under 1 s."""
    before = len(sandbox_sessions(sandbox))

    async def vanish() -> float:
        ws = await open_client(gateway.url)
        await ws.recv()  # Begin
        for frame in audio.frames(audio.tone(0.5)):
            await ws.send(frame)
        await asyncio.sleep(0.2)
        ws.transport.abort()
        return time.time()

    gone_at = run(vanish())
    deadline = time.monotonic() + 3
    closed_at = None
    while time.monotonic() < deadline and closed_at is None:
        upstream = sandbox_sessions(sandbox)[before:]
        closed_at = upstream[0]["closed_at"] if upstream else None
        time.sleep(0.05)
    assert closed_at is not None, "upstream session still open after 3 s"
    assert closed_at - gone_at < 1.0
    assert metric(gateway, "voxgate_sessions_ended_total", outcome="client_gone") == 1.0


@pytest.mark.parametrize(
    ("alias_key", "code", "word", "failure"),
    [
        ("pay=pay-key", 1008, "payment", "payment_required"),
        ("bal=balance-key", 1008, "payment", "payment_required"),
        ("funds=funds-key", 1008, "payment", "payment_required"),
        ("lim=limited-key", 3009, "rate limited", "rate_limited"),
        ("bad=unauth-key", 1008, "unauthorized", "unauthorized"),
    ],
)
def test_upstream_refusals_reach_the_client_in_operator_words_and_are_counted(
    gateway_factory: GatewayFactory, alias_key: str, code: int, word: str, failure: str
) -> None:
    """402 at upgrade, 1008-balance, 4002, 3009, 401: right close, Error frame, metrics."""
    gw = gateway_factory(alias_key)
    alias = alias_key.split("=")[0]
    out = run(session(gw.url, audio.speech()))
    assert out.code == code, out
    assert word in out.reason.lower()
    assert out.of_type("Error")[0]["error_code"] == code
    assert metric(gw, "voxgate_upstream_errors_total", key=alias, failure=failure) == 1.0
    expected_402 = 1.0 if failure == "payment_required" else 0.0
    assert metric(gw, "voxgate_upstream_402_total", key=alias) == expected_402
    assert "-key" not in out.reason and "-key" not in json.dumps(out.messages)


@pytest.mark.parametrize(
    ("alias_key", "setting"),
    [("hang=hang-key", "VOXGATE_CONNECT_TIMEOUT"), ("quiet=silent-key", "VOXGATE_BEGIN_TIMEOUT")],
)
def test_upstream_that_never_answers_is_cut_at_its_deadline(
    gateway_factory: GatewayFactory, alias_key: str, setting: str
) -> None:
    """No handshake, or no Begin: the client gets 1013 after the deadline, not a hang."""
    gw = gateway_factory(alias_key, **{setting: "1"})
    started = time.monotonic()
    out = run(session(gw.url, []))
    assert out.code == 1013
    assert 0.9 < time.monotonic() - started < 5


def test_upstream_that_keeps_failing_mid_session_ends_with_its_error_after_bounded_retries(
    gateway_factory: GatewayFactory,
) -> None:
    """An upstream 1011 after Begin, on every replacement too, on a one-key pool: the
    session tries MAX_RECONNECTS replacements on that key (its own drops count once
    against the key: they do not cool the only key for everyone), then the client
    gets upstream's Error and 1011; the key stays in rotation."""
    gw = gateway_factory("drop=drop-key", VOXGATE_ADMIN_KEY=ADMIN_KEY)
    out = run(session(gw.url, audio.frames(audio.tone(1.5)), terminate=False, frame_interval=0.05))
    assert out.code == 1011, out
    assert out.of_type("Error")[-1]["error_code"] == 1011
    assert len(out.of_type("Error")) == 1
    assert len(out.of_type("Begin")) == 1
    drops = metric(gw, "voxgate_upstream_errors_total", key="drop", failure="transient")
    assert drops == 1 + MAX_RECONNECTS
    assert metric(gw, "voxgate_failovers_total", phase="mid_session") == MAX_RECONNECTS
    assert admin_keys(gw)["drop"]["state"] == "healthy"


def test_upstream_tcp_drop_mid_session_reaches_the_client_as_1011(
    gateway_factory: GatewayFactory,
) -> None:
    """An upstream connection lost without a close frame (1006), with no replacement
    that lasts: the client gets an Error frame and 1011 (1006 cannot be sent)."""
    gw = gateway_factory("abort=abort-key")
    out = run(session(gw.url, audio.frames(audio.tone(1.5)), terminate=False, frame_interval=0.05))
    assert out.code == 1011, out
    assert out.of_type("Error")[-1]["error_code"] == 1011


def test_sigterm_drains_open_sessions_without_losing_a_final_transcript(
    gateway_factory: GatewayFactory,
) -> None:
    """SIGTERM mid-speech: the client still gets its final Turn and Termination, then
    1012; a new connection is refused meanwhile; the gateway exits 0."""
    gw = gateway_factory(VOXGATE_DRAIN_TIMEOUT="1")

    async def scenario() -> tuple[Outcome, float]:
        out = Outcome()
        ws = await open_client(gw.url)
        reader = asyncio.create_task(collect(ws, out))
        frames = audio.frames(audio.tone(4.0))
        started = time.monotonic()
        for i, frame in enumerate(frames):
            if i == 10:
                gw.send_signal()
            try:
                await ws.send(frame)
            except Exception:
                break
            await asyncio.sleep(0.05)
        await reader
        return out, time.monotonic() - started

    out, _ = run(scenario())
    assert out.code == 1012, out
    finals = out.finals
    assert finals, "final transcript lost in the drain"
    assert out.messages[-1]["type"] == "Termination"
    assert gw.wait() == 0
    assert "drain_finished" in gw.stderr()


def test_health_readiness_and_metrics_are_served(gateway: Server) -> None:
    """/healthz and /readyz answer 200 and /metrics exposes the 402 counter per key."""
    assert get_json(gateway.http_url + "/healthz")["status"] == "ok"
    assert get_json(gateway.http_url + "/readyz")["status"] == "ready"
    text = get_text(gateway.http_url + "/metrics")
    assert re.search(r'^voxgate_upstream_402_total\{key="main"\} 0\.0$', text, re.M)


def test_logs_never_contain_keys(gateway_factory: GatewayFactory) -> None:
    """Neither upstream keys nor client keys appear in the gateway's logs."""
    gw = gateway_factory("pay=pay-key,main=good-key")
    run(session(gw.url, audio.speech()))
    run(session(gw.url, audio.speech(), key="wrong-key"))
    gw.stop()
    logs = gw.stderr()
    assert "session_ended" in logs or "upstream_refused" in logs
    for secret in ("pay-key", "good-key", CLIENT_KEY, "wrong-key"):
        assert secret not in logs


def test_an_open_session_shows_in_the_per_key_counters_before_it_ends(gateway: Server) -> None:
    """Audio and open seconds are added while a session runs (an abandoned session
    is visible on the dashboard while upstream bills it), and not twice at its end."""

    async def scenario() -> tuple[float, float]:
        ws = await open_client(gateway.url)
        await ws.recv()  # Begin
        for frame in audio.frames(audio.tone(1.0)):
            await ws.send(frame)
        await asyncio.sleep(2.0)
        audio_open = metric(gateway, "voxgate_audio_seconds_total", key="main")
        open_seconds = metric(gateway, "voxgate_upstream_session_seconds_total", key="main")
        await ws.close()
        return audio_open, open_seconds

    audio_open, open_seconds = run(scenario())
    assert audio_open == pytest.approx(1.0, abs=0.01)
    assert open_seconds >= 1.0
    deadline = time.monotonic() + 5
    while metric(gateway, "voxgate_sessions_ended_total", outcome="client_gone") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert metric(gateway, "voxgate_audio_seconds_total", key="main") == pytest.approx(
        1.0, abs=0.01
    )


def test_a_frame_breaking_rfc6455_is_closed_by_the_connection_and_counted(
    gateway: Server, sandbox: Server
) -> None:
    """A text frame that is not UTF-8 breaks the WebSocket framing rules: the
    gateway's connection closes with 1007 itself (no Error frame: the framing is
    broken), counts it as ``bad_frame``, and the upstream session is ended; the audio
    before it was relayed."""
    before = len(sandbox_sessions(sandbox))

    async def broken() -> int | None:
        ws = await open_client(gateway.url)
        await ws.recv()  # Begin
        for frame in audio.frames(audio.tone(0.2)):
            await ws.send(frame)
        await ws.send(b"\xff\xfe not utf-8", text=True)
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(5):
                async for _ in ws:
                    pass
        return ws.close_code

    assert run(broken()) == 1007
    assert metric(gateway, "voxgate_client_rejections_total", reason="bad_frame") == 1.0
    upstream = ended_upstream_session(sandbox, before)
    assert upstream["audio_seconds"] > 0.15, upstream


def test_upgrade_requests_breaking_rfc6455_get_an_http_error_and_are_counted(
    gateway: Server,
) -> None:
    """Before any WebSocket exists: no Host gives 400, another protocol version 426
    (naming 13). Each is counted as ``bad_handshake`` and no session starts."""
    host, port = re.match(r"ws://([^:/]+):(\d+)", gateway.url).groups()  # type: ignore[union-attr]

    async def status_of(request: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request)
        async with asyncio.timeout(5):
            answer = await reader.read()  # the gateway closes after its answer
        writer.close()
        return answer

    def upgrade(*, host_line: str, version: str) -> bytes:
        return (
            f"GET /v3/ws?sample_rate=16000 HTTP/1.1\r\n{host_line}"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Authorization: {CLIENT_KEY}\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: {version}\r\n\r\n"
        ).encode()

    before = metric(gateway, "voxgate_client_rejections_total", reason="bad_handshake")
    started = metric(gateway, "voxgate_sessions_started_total")
    no_host = run(status_of(upgrade(host_line="", version="13")))
    assert no_host.startswith(b"HTTP/1.1 400") and b"missing Host" in no_host, no_host
    old = run(status_of(upgrade(host_line=f"Host: {host}\r\n", version="8")))
    assert old.startswith(b"HTTP/1.1 426") and b"Sec-WebSocket-Version: 13" in old, old
    after = metric(gateway, "voxgate_client_rejections_total", reason="bad_handshake")
    assert after - before == 2.0
    assert metric(gateway, "voxgate_sessions_started_total") == started
