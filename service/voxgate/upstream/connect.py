"""Opening an upstream AssemblyAI session, up to and including its ``Begin``.

Every way this can fail is raised as a classified
:class:`~voxgate.upstream.failures.UpstreamFailure`; the socket is never left open on failure.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from urllib.parse import urlencode

from voxgate import __version__
from voxgate.protocol import StreamParams
from voxgate.settings import DEFAULT_UPSTREAM_MAX_MESSAGE_BYTES, UpstreamKey
from voxgate.upstream.failures import FailureClass, UpstreamFailure, close_failure, http_failure
from voxgate.ws.client import ClientWebSocket, InvalidStatus, connect
from voxgate.ws.connection import ConnectionClosed
from voxgate.ws.handshake import HandshakeError

#: The version header the official SDK sends; forwarded when a client sends its own.
ASSEMBLYAI_VERSION = "2025-05-12"
#: Messages queued from upstream before reading from it pauses (backpressure).
UPSTREAM_QUEUE_FRAMES = 32
#: Seconds a closing handshake may take before the TCP connection is dropped.
UPSTREAM_CLOSE_TIMEOUT = 1.0
USER_AGENT = f"voxgate/{__version__}"


@dataclass(frozen=True, slots=True)
class UpstreamSession:
    connection: ClientWebSocket
    begin_text: str
    begin: dict[str, object]
    connect_seconds: float


def upstream_uri(base_url: str, params: StreamParams) -> str:
    query = urlencode(params.forward)
    return f"{base_url}?{query}" if query else base_url


async def open_session(
    base_url: str,
    key: UpstreamKey,
    params: StreamParams,
    *,
    connect_timeout: float,
    begin_timeout: float,
    api_version: str | None = None,
    max_message_bytes: int = DEFAULT_UPSTREAM_MAX_MESSAGE_BYTES,
) -> UpstreamSession:
    """Connect with ``key`` and wait for ``Begin``; raise UpstreamFailure otherwise.
    Messages from upstream up to ``max_message_bytes`` are taken (the setting
    ``VOXGATE_UPSTREAM_MAX_MESSAGE_BYTES``); a larger one closes the connection."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    headers = {
        "Authorization": key.secret,
        "AssemblyAI-Version": api_version or ASSEMBLYAI_VERSION,
    }
    try:
        async with asyncio.timeout(connect_timeout):
            connection = await connect(
                upstream_uri(base_url, params),
                headers={**headers, "User-Agent": USER_AGENT},
                max_size=max_message_bytes,
                max_queue=UPSTREAM_QUEUE_FRAMES,
                close_timeout=UPSTREAM_CLOSE_TIMEOUT,
            )
    except InvalidStatus as exc:
        raise http_failure(exc.status, exc.body) from None
    except TimeoutError:
        raise UpstreamFailure(
            FailureClass.TRANSIENT, 1006, f"no handshake within {connect_timeout:g} s"
        ) from None
    except (OSError, HandshakeError, ValueError) as exc:
        raise UpstreamFailure(FailureClass.TRANSIENT, 1006, type(exc).__name__) from None
    connect_seconds = loop.time() - started
    try:
        asked = [name for name, _ in params.forward]
        begin_text, begin = await _await_begin(connection, begin_timeout, asked)
    except BaseException:
        await _abort(connection)
        raise
    return UpstreamSession(connection, begin_text, begin, connect_seconds)


async def _await_begin(
    connection: ClientWebSocket, timeout: float, asked: list[str]
) -> tuple[str, dict[str, object]]:
    error_text = ""
    try:
        async with asyncio.timeout(timeout):
            while True:
                raw = await connection.recv()
                if not isinstance(raw, str):
                    continue
                message = json.loads(raw)
                kind = message.get("type") if isinstance(message, dict) else None
                if kind == "Begin":
                    return raw, message
                if kind == "Error" or (isinstance(message, dict) and "error" in message):
                    error_text = str(message.get("error", ""))
    except ConnectionClosed as exc:
        code = exc.code
        reason = error_text or (exc.rcvd.reason if exc.rcvd is not None else "")
        raise close_failure(code, reason, asked) from None
    except TimeoutError:
        raise UpstreamFailure(
            FailureClass.TRANSIENT, 1006, f"no Begin within {timeout:g} s"
        ) from None
    except ValueError:
        raise UpstreamFailure(FailureClass.TRANSIENT, 1006, "Begin was not JSON") from None


async def _abort(connection: ClientWebSocket) -> None:
    await connection.close()  # within UPSTREAM_CLOSE_TIMEOUT, else dropped
