"""Opening an upstream AssemblyAI session, up to and including its ``Begin``.

Every way this can fail is raised as a classified
:class:`~voxgate.upstream.failures.UpstreamFailure`; the socket is never left open on failure.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlencode

from voxgate import __version__
from voxgate.protocol import StreamParams
from voxgate.protocol.jsonguard import UnsafeJson, loads_bounded
from voxgate.settings import DEFAULT_UPSTREAM_MAX_MESSAGE_BYTES, UpstreamKey
from voxgate.upstream.failures import FailureClass, UpstreamFailure, close_failure, http_failure
from voxgate.ws.client import ClientWebSocket, InvalidStatus, connect
from voxgate.ws.connection import ConnectionClosed, OnLimit
from voxgate.ws.handshake import HandshakeError

#: Messages queued from upstream before reading from it pauses (backpressure).
UPSTREAM_QUEUE_FRAMES = 32
#: Seconds a closing handshake may take before the TCP connection is dropped.
UPSTREAM_CLOSE_TIMEOUT = 1.0
USER_AGENT = f"voxgate/{__version__}"
#: Close codes our side sends when upstream breaks the WebSocket rules (bad framing,
#: bad UTF-8, a message over the size limit).
_UPSTREAM_BROKE_FRAMING = frozenset({1002, 1007, 1009})


@dataclass(frozen=True, slots=True)
class UpstreamSession:
    connection: ClientWebSocket
    begin_text: str
    begin: dict[str, object]
    connect_seconds: float


def upstream_headers(key: UpstreamKey, api_version: str | None) -> dict[str, str]:
    """The upgrade's headers: the pool key, and the client's ``AssemblyAI-Version`` when
    it sent one (none: upstream uses its latest, as for a client reaching it directly)."""
    headers = {"Authorization": key.secret, "User-Agent": USER_AGENT}
    if api_version:
        headers["AssemblyAI-Version"] = api_version
    return headers


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
    on_limit: OnLimit | None = None,
) -> UpstreamSession:
    """Connect with ``key`` and wait for ``Begin``; raise UpstreamFailure otherwise.
    Messages from upstream up to ``max_message_bytes`` are taken (the setting
    ``VOXGATE_UPSTREAM_MAX_MESSAGE_BYTES``); a larger one closes the connection, and
    ``on_limit`` is told which limit upstream broke (size, fragments or deadline)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(connect_timeout):
            connection = await connect(
                upstream_uri(base_url, params),
                headers=upstream_headers(key, api_version),
                max_size=max_message_bytes,
                max_queue=UPSTREAM_QUEUE_FRAMES,
                close_timeout=UPSTREAM_CLOSE_TIMEOUT,
                on_limit=on_limit,
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
    """Read up to ``Begin``. Whatever upstream sends instead (an Error and a close,
    bad or hostile JSON, a message that is not a JSON object, a binary frame, a
    message over ``max_message_bytes``, nothing in time) is raised as an
    UpstreamFailure, so the caller releases the key's lease and counts it."""
    error_text = ""
    try:
        async with asyncio.timeout(timeout):
            while True:
                raw = await connection.recv()
                if not isinstance(raw, str):
                    raise _broken("a binary message before Begin")
                message = loads_bounded(raw)
                if not isinstance(message, dict):
                    raise _broken("a message before Begin that is not a JSON object")
                kind = message.get("type")
                if kind == "Begin":
                    return raw, message
                if kind == "Error" or "error" in message:
                    error_text = str(message.get("error", ""))[:200]
    except ConnectionClosed as exc:
        sent = exc.sent
        if sent is not None and sent.code in _UPSTREAM_BROKE_FRAMING:
            # Our side closed: upstream broke the framing rules or sent a message over
            # the size limit. That is upstream's fault, whatever it answered.
            raise _broken(
                f"close {sent.code} sent to upstream before Begin: {sent.reason}"
            ) from None
        code = exc.code
        reason = error_text or (exc.rcvd.reason if exc.rcvd is not None else "")
        raise close_failure(code, reason, asked) from None
    except TimeoutError:
        raise UpstreamFailure(
            FailureClass.TRANSIENT, 1006, f"no Begin within {timeout:g} s"
        ) from None
    except UnsafeJson as exc:
        raise _broken(f"Begin refused: {exc}") from None
    except ValueError:
        raise _broken("Begin was not JSON") from None


def _broken(detail: str) -> UpstreamFailure:
    """Upstream broke the protocol before Begin: a transient failure of its key (the
    key cools down; the session tries another)."""
    return UpstreamFailure(FailureClass.TRANSIENT, 1006, detail)


async def _abort(connection: ClientWebSocket) -> None:
    await connection.close()  # within UPSTREAM_CLOSE_TIMEOUT, else dropped
