"""The simulator on a socket: AssemblyAI v3's ``/v3/ws`` and ``/v3/token``, plus a
small inspection API for tests (``/sandbox/sessions``, ``/sandbox/keys``).

One ``websockets`` server does it all: plain HTTP GETs are answered from
``process_request`` before any upgrade, which is also where a key's HTTP failure
(401/402/429/5xx) or ``hang`` happens, exactly where AssemblyAI's would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from voxgate.sandbox.behaviours import JUNK, OK, UNKNOWN_KEY, Behaviour, Kind, parse_behaviour
from voxgate.sandbox.rules import (
    MAX_MESSAGE_BYTES,
    MAX_SESSION_SECONDS,
    PACE_LOOKAHEAD_SECONDS,
    TOKEN_EXPIRES_RANGE,
    TOKEN_SESSION_RANGE,
    Close,
    Refusal,
    SessionConfig,
    parse_connection,
)
from voxgate.sandbox.session import Admission, SandboxSession, SessionRecord, close_with_error

#: Tokens held at once; the oldest unused one is forgotten past this.
MAX_TOKENS = 100_000
#: Session records kept for ``/sandbox/sessions``.
MAX_SESSION_RECORDS = 100_000
#: A client may run ahead of real time by this much: AssemblyAI's look-ahead (rules).
PACE_BURST_SECONDS = PACE_LOOKAHEAD_SECONDS
#: ``hang``: how long an upgrade stays unanswered before a 503 (below the handshake
#: deadline, so the server itself never leaves a connection hanging for ever).
HANG_SECONDS = 25.0
HANDSHAKE_TIMEOUT = HANG_SECONDS + 5.0
#: The simulator accepts larger messages so it can answer 1009 with an Error frame.
WS_MAX_SIZE = 8 * MAX_MESSAGE_BYTES


@dataclass(slots=True)
class SandboxConfig:
    """Which keys exist and how each behaves. ``keys`` empty: any key is ``ok``."""

    keys: dict[str, Behaviour] = field(default_factory=dict)
    pace_burst_seconds: float = PACE_BURST_SECONDS
    max_session_seconds: float = MAX_SESSION_SECONDS

    @classmethod
    def open(cls) -> SandboxConfig:
        return cls()

    def behaviour(self, key: str) -> Behaviour:
        if not self.keys:
            return OK
        return self.keys.get(key, UNKNOWN_KEY)


@dataclass(slots=True)
class _Token:
    key: str
    expires_at: float
    max_session_seconds: int


def _json(status: int, body: Any) -> Response:
    headers = Headers([("Content-Type", "application/json")])
    return Response(status, HTTPStatus(status).phrase, headers, json.dumps(body).encode())


def _refusal(behaviour: Behaviour) -> Response:
    """A key's HTTP failure, with the body AssemblyAI sends for it."""
    headers = Headers([("Content-Type", "application/json")])
    return Response(behaviour.code, HTTPStatus(behaviour.code).phrase, headers, behaviour.http_body)


def _error(status: int, text: str) -> Response:
    return _json(status, {"error": text})


def _int_in(query: dict[str, str], name: str, bounds: tuple[int, int], default: int | None) -> int:
    raw = query.get(name)
    if raw is None:
        if default is None:
            raise ValueError(f"{name} is required")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{name} must be between {bounds[0]} and {bounds[1]}")
    return value


class Sandbox:
    def __init__(self, config: SandboxConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self._tokens: dict[str, _Token] = {}
        self._admitted: dict[ServerConnection, Admission] = {}
        # ``402-after-M``: sessions served per key since its behaviour was set.
        self._served: dict[str, int] = {}
        self.sessions: deque[SessionRecord] = deque(maxlen=MAX_SESSION_RECORDS)
        self.server: Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = next(iter(self.server.sockets)).getsockname()[1]
        return port

    async def start(self, host: str, port: int) -> None:
        self.server = await serve(
            self._handle,
            host,
            port,
            process_request=self._process_request,
            max_size=WS_MAX_SIZE,
            open_timeout=HANDSHAKE_TIMEOUT,
            compression=None,
            server_header="voxgate-sandbox",
        )

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    # ------------------------------------------------------------------ HTTP

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        url = urlsplit(request.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path == "/v3/ws":
            return await self._admit(connection, request, url.query)
        if url.path == "/v3/token":
            return self._token(request, query)
        if url.path == "/sandbox/sessions":
            return _json(200, [s.as_json() for s in self.sessions])
        if url.path == "/sandbox/keys":
            return self._keys(query)
        if url.path == "/healthz":
            return _json(200, {"status": "ok"})
        return _error(404, f"no route {url.path[:80]}")

    def _token(self, request: Request, query: dict[str, str]) -> Response:
        key = request.headers.get("Authorization", "").strip()
        if not key:
            return _error(401, "Missing Authorization header")
        behaviour = self._quota(key, self.config.behaviour(key), serve=False)
        if behaviour.kind is Kind.HTTP:
            return _refusal(behaviour)
        if behaviour is UNKNOWN_KEY:
            return _error(401, "Invalid API key")
        try:
            expires = _int_in(query, "expires_in_seconds", TOKEN_EXPIRES_RANGE, None)
            cap = _int_in(
                query, "max_session_duration_seconds", TOKEN_SESSION_RANGE, MAX_SESSION_SECONDS
            )
        except ValueError as exc:
            return _error(400, str(exc))
        now = self._clock()
        for stale in [t for t, v in self._tokens.items() if v.expires_at < now]:
            del self._tokens[stale]
        while len(self._tokens) >= MAX_TOKENS:
            del self._tokens[next(iter(self._tokens))]
        token = secrets.token_urlsafe(32)
        self._tokens[token] = _Token(key, now + expires, cap)
        return _json(200, {"token": token, "expires_in_seconds": expires})

    def _keys(self, query: dict[str, str]) -> Response:
        """List behaviours; ``?set=KEY&behaviour=NAME`` changes one (e.g. "upgraded")."""
        if "set" in query:
            try:
                self.config.keys[query["set"]] = parse_behaviour(query.get("behaviour", "ok"))
                self._served.pop(query["set"], None)
            except ValueError as exc:
                return _error(400, str(exc))
        return _json(200, {"keys": {k: b.name for k, b in self.config.keys.items()}})

    async def _admit(
        self, connection: ServerConnection, request: Request, raw_query: str
    ) -> Response | None:
        pairs = parse_qsl(raw_query, keep_blank_values=True)
        token = dict(pairs).get("token")
        key = request.headers.get("Authorization", "").strip()
        max_session = self.config.max_session_seconds
        if token is not None or (key and key in self._tokens):
            found = self._tokens.pop(token or key, None)
            if found is None:
                behaviour = Behaviour(
                    Kind.CLOSE,
                    Close.POLICY,
                    "Unauthorized Connection: Invalid or expired temporary token",
                    name="bad-token",
                )
            elif found.expires_at < self._clock():
                # ref E: AssemblyAI's own error table gives 3008 for an expired token.
                behaviour = Behaviour(
                    Kind.CLOSE,
                    Close.SESSION_EXPIRED,
                    "Session Expired: temporary token expired",
                    name="expired-token",
                )
            else:
                behaviour = self._quota(found.key, self.config.behaviour(found.key))
                max_session = min(max_session, found.max_session_seconds)
        elif not key:
            behaviour = Behaviour(
                Kind.CLOSE,
                Close.POLICY,
                "Unauthorized Connection: Missing Authorization header",
                name="no-key",
            )
        else:
            behaviour = self._quota(key, self.config.behaviour(key))
        if behaviour.kind is Kind.HTTP:
            return _refusal(behaviour)
        if behaviour.kind is Kind.HANG:
            await asyncio.sleep(HANG_SECONDS)
            return _error(503, "Service unavailable")
        config: SessionConfig | None = None
        refusal: Refusal | None = None
        try:
            config = parse_connection(pairs, request.headers.get("AssemblyAI-Version"))
        except Refusal as exc:
            refusal = exc
        self._admitted[connection] = Admission(behaviour, config, refusal, max_session)
        return None

    def _quota(self, key: str, behaviour: Behaviour, *, serve: bool = True) -> Behaviour:
        """``402-after-M``: ``ok`` (counted when ``serve``) for M sessions, then the 402."""
        if behaviour.kind is not Kind.QUOTA:
            return behaviour
        served = self._served.get(key, 0)
        if served >= behaviour.sessions:
            return Behaviour(Kind.HTTP, 402, behaviour.reason, name=behaviour.name)
        if serve:
            self._served[key] = served + 1
        return behaviour

    # ------------------------------------------------------------------ WebSocket

    async def _handle(self, connection: ServerConnection) -> None:
        admission = self._admitted.pop(connection, None)
        if admission is None:
            return
        behaviour = admission.behaviour
        assert connection.request is not None
        url = urlsplit(connection.request.path)
        pairs = [(k, v) for k, v in parse_qsl(url.query) if k != "token"]
        record = SessionRecord(str(uuid.uuid4()), behaviour.name, pairs, self._clock())
        self.sessions.append(record)
        try:
            asked = {name for name, _ in pairs}
            if behaviour.kind is Kind.CLOSE and (not behaviour.when or behaviour.when in asked):
                await self._refuse(connection, record, behaviour.code, behaviour.reason)
            elif admission.refusal is not None:
                refusal = admission.refusal
                await self._refuse(connection, record, refusal.code, refusal.reason)
            elif behaviour.kind is Kind.NO_BEGIN:
                await self._idle(connection, record, admission.max_session_seconds)
            elif behaviour.kind is Kind.JUNK:
                await connection.send(JUNK[behaviour.name])
                await self._idle(connection, record, admission.max_session_seconds)
                record.end = "junk"
            else:
                assert admission.config is not None
                await SandboxSession(
                    connection, record, admission, self.config.pace_burst_seconds
                ).run()
        except ConnectionClosed:
            record.end = record.end or "client_closed"
        finally:
            record.closed_at = record.closed_at or self._clock()
            if record.close_code is None and connection.close_code is not None:
                record.close_code = connection.close_code

    async def _refuse(
        self, connection: ServerConnection, record: SessionRecord, code: int, reason: str
    ) -> None:
        record.end = "refused"
        record.close_code = code
        await close_with_error(connection, code, reason)

    async def _idle(self, connection: ServerConnection, record: SessionRecord, cap: float) -> None:
        """``no-begin``: read and ignore everything until the client gives up."""
        record.end = "no_begin"
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(cap):
                async for _ in connection:
                    pass


# --------------------------------------------------------------------------- running


async def serve_sandbox(config: SandboxConfig, host: str, port: int) -> Sandbox:
    sandbox = Sandbox(config)
    await sandbox.start(host, port)
    return sandbox


async def _main(config: SandboxConfig, host: str, port: int) -> None:
    sandbox = await serve_sandbox(config, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    shown = "[::1]" if ":" in host else host
    print(f"voxgate sandbox listening on ws://{shown}:{sandbox.port}", flush=True)
    await stop.wait()
    await sandbox.close()


def run_sandbox(config: SandboxConfig, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT. Prints one line when listening."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(_main(config, host, port))
    else:
        uvloop.run(_main(config, host, port))
