"""TLS on the gateway's own port (VOXGATE_TLS_CERT / VOXGATE_TLS_KEY): the Python SDK
given ``api_host="<host>:<port>"`` with no scheme, as against AssemblyAI, connects over
wss:// and mints its temporary token over https://; the edge's refusals and the
WebSocket's closing handshake work on a TLS transport (which has no half-close)."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import pytest
from assemblyai.streaming.v3 import StreamingClient, StreamingClientOptions, StreamingEvents
from voxgate.bench.procs import Server

from tests.support import audio
from tests.support.gateway import CLIENT_KEY, GatewayFactory, sandbox_sessions
from tests.support.sdk import PARAMS, Recorder


def _host(gw: Server) -> str:
    return gw.url.split("://", 1)[1]


def test_python_sdk_token_over_https_and_stream_over_wss(
    tls_gateway_factory: GatewayFactory,
    tls_files: tuple[Path, Path],
    sandbox: Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stock SDK pointed at voxgate by host only: create_temporary_token calls
    https://<host>/v3/token, the session runs over wss:// with that token and ends
    with Termination and a clean close; upstream got the audio."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[0]))  # how a client trusts it
    gw = tls_gateway_factory()
    assert gw.url.startswith("wss://"), gw.url
    minter = StreamingClient(StreamingClientOptions(api_key=CLIENT_KEY, api_host=_host(gw)))
    token = minter.create_temporary_token(expires_in_seconds=60)
    assert token
    before = len(sandbox_sessions(sandbox))
    rec = Recorder()
    client = StreamingClient(
        StreamingClientOptions(token=token, api_host=_host(gw), connect_timeout=5.0)
    )
    for event in StreamingEvents:
        client.on(event, rec.handler(event.name))
    client.connect(PARAMS)
    for frame in audio.speech(2):
        client.stream(frame)
        time.sleep(0.005)
    assert rec.wait_for(lambda r: len([t for t in r.of("Turn") if t.end_of_turn]) >= 2)
    client.disconnect(terminate=True)
    assert len(rec.of("Begin")) == 1 and len(rec.of("Termination")) == 1
    assert rec.of("Error") == []
    upstream = sandbox_sessions(sandbox)[before:]
    assert len(upstream) == 1 and upstream[0]["end"] == "terminated", upstream


def test_edge_refusal_and_plain_http_on_the_tls_port(
    tls_gateway_factory: GatewayFactory, tls_files: tuple[Path, Path]
) -> None:
    """An oversized head over TLS gets its 431 (the refusal cannot half-close a TLS
    transport: it closes after the answer); plain HTTP on the TLS port gets no HTTP
    answer; the gateway logs no traceback and still serves /healthz over https."""
    gw = tls_gateway_factory()
    host, port = _host(gw).rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(tls_files[0]))
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(head)
        answer = b""
        while chunk := tls.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        raw.settimeout(10)
        try:
            plain = raw.recv(4096)
        except ConnectionResetError:
            plain = b""
    assert not plain.startswith(b"HTTP/1.1 200"), plain[:100]
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        ok = b""
        while chunk := tls.recv(4096):
            ok += chunk
    assert ok.startswith(b"HTTP/1.1 200"), ok[:100]
    assert "Traceback" not in gw.stderr()
