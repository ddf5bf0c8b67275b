"""Our WebSocket client against real loopback servers: a refusal on a kept-alive
connection, and TLS to a wss:// upstream (with a certificate openssl makes)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from pathlib import Path

from voxgate.ws import client
from websockets.asyncio.server import ServerConnection, serve

from tests.support.wsclient import run

#: Deadline for a whole async scenario (each await in it is bounded by it).
WAIT = 5.0


def test_a_chunked_refusal_on_a_kept_alive_connection_is_read_at_once() -> None:
    """A 402 with a chunked body whose server keeps the connection open is reported as
    InvalidStatus with the decoded body (not a handshake timeout)."""

    async def scenario() -> tuple[int, bytes]:
        async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 402 Payment Required\r\nTransfer-Encoding: chunked\r\n\r\n"
                b'19\r\n{"error": "not upgraded"}\r\n0\r\n\r\n'
            )
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(WAIT)  # keep-alive: the connection stays open

        server = await asyncio.start_server(refuse, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with asyncio.timeout(2.0):
                await client.connect(
                    f"ws://127.0.0.1:{port}/v3/ws",
                    headers={},
                    max_size=1 << 20,
                    max_queue=4,
                    close_timeout=1.0,
                )
        except client.InvalidStatus as refused:
            return refused.status, refused.body
        finally:
            server.close()
        raise AssertionError("the upgrade was not refused")

    assert run(scenario(), WAIT) == (402, b'{"error": "not upgraded"}')


def test_the_client_speaks_tls_to_a_wss_upstream(tmp_path: Path) -> None:
    """AssemblyAI is reached over wss://: the client does TLS with the host name
    checked against the certificate, then the WebSocket over it."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            *subject,
            *files,
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))

    async def scenario() -> bytes | str:
        async def echo(ws: ServerConnection) -> None:
            await ws.send(await ws.recv())

        async with serve(echo, "localhost", 0, ssl=server_tls) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            connection = await client.connect(
                f"wss://localhost:{port}/v3/ws",
                headers={},
                max_size=1 << 20,
                max_queue=4,
                close_timeout=1.0,
                ssl_context=client_tls,
            )
            await connection.send("over TLS")
            answer = await connection.recv()
            await connection.close()
            return answer

    assert run(scenario(), WAIT) == "over TLS"
