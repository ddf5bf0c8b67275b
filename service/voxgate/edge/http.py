"""The HTTP/1.1 protocol of the gateway's listening socket: uvicorn's httptools
protocol with the edge limits applied as bytes arrive.

Every connection is admitted or refused (503) before anything is read: the process
holds at most ``max_connections`` connections and ``max_handshakes`` still sending
their head, and stays clear of its descriptor limit; a full process still serves
health probes and scrapes on a few reserved slots. The request head is fed to the
parser in slices no larger than what is left of ``max_head_bytes``, so the parser
never holds more than that (httptools joins a header's pieces by copying, which is
quadratic in the number of pieces) and the head's header count is checked as each
header completes. The whole head, and the body if any, must arrive within
``handshake_timeout`` of the accept or of the request's first byte (408); the route's
own time is not counted. A body is capped at ``max_body_bytes`` (413, from its
Content-Length or as it arrives), and a connection whose answer is complete while its
body is still arriving is closed. Requests are parsed one at a time: once a request is
complete and its answer is not, the parser is not fed and reading is paused; what was
read meanwhile (at most ``max_head_bytes``, else the connection is closed after the
answer in progress) is fed once the answer is complete, so a pipelining client never
queues more than one request. A refusal is written, the write side shut, what the peer still sends
discarded for a moment, then the socket closed (so the answer is not lost to a reset).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from voxgate.edge.limits import (
    PROBE_PATHS,
    PROBE_TIMEOUT,
    STATUS,
    EdgeLimits,
    Refusal,
    Throttle,
    Tier,
    admission,
)
from voxgate.logs import get_logger

log = get_logger("voxgate.edge")

#: How long a refused connection's later bytes are read and dropped before it is closed,
#: and how many refused connections may do so at a time (the rest are closed at once).
REFUSAL_LINGER: Final = 1.0
LINGER_SLOTS: Final = 64
#: At most one log line per reason this often (each says how many it stands for).
LOG_PERIOD: Final = 10.0
_REASONS: Final = {
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


class HeadRefused(Exception):
    """Raised from a parser callback to stop the parser: the head broke a limit."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.value)
        self.refusal = refusal


def refusal_response(refusal: Refusal) -> bytes:
    status = STATUS[refusal]
    body = f"{refusal.value}\n".encode()
    return (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        "content-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body


class Edge:
    """What the connections of one listener share: the limits, the counts, and what
    to tell (``on_refused`` for a metric). ``probe_listener``: every connection may
    only GET one of ``PROBE_PATHS`` (VOXGATE_PROBE_PORT), else 404."""

    def __init__(
        self,
        limits: EdgeLimits,
        on_refused: Callable[[Refusal], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        probe_listener: bool = False,
    ) -> None:
        self.limits = limits
        self.probe_listener = probe_listener
        self.on_refused = on_refused
        self.clock = clock
        self.handshakes = 0
        self.probes = 0
        self.lingering = 0
        self.connections: set[Any] = set()  # uvicorn's, once the first connection comes
        self._throttles = {reason: Throttle(LOG_PERIOD) for reason in Refusal}
        self._full = {reason: Throttle(LOG_PERIOD) for reason in Refusal}

    @property
    def open_connections(self) -> int:
        return len(self.connections)

    def refused(self, refusal: Refusal, **context: object) -> None:
        if self.on_refused is not None:
            self.on_refused(refusal)
        count = self._throttles[refusal].hit(self.clock())
        if count:
            level = log.info if STATUS[refusal] in (400, 404, 408, 413, 431) else log.warning
            level(
                "edge_refused",
                reason=refusal.value,
                status=STATUS[refusal],
                count=count,
                open_connections=self.open_connections,
                handshakes=self.handshakes,
                **context,
            )

    def full(self, reason: Refusal, **context: object) -> None:
        """A connection let in for probes only: the process is at a limit."""
        count = self._full[reason].hit(self.clock())
        if count:
            log.warning(
                "edge_full",
                reason=reason.value,
                count=count,
                open_connections=self.open_connections,
                handshakes=self.handshakes,
                max_connections=self.limits.max_connections,
                fd_limit=self.limits.fd_limit,
                **context,
            )


class EdgeHttpProtocol(HttpToolsProtocol):
    def __init__(self, edge: Edge, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._edge = edge
        self._limits = edge.limits
        self._in_head = False
        self._head_bytes = 0
        self._header_count = 0
        self._probe_only = False
        self._full_reason = Refusal.CONNECTION_CAP  # the limit that made it probe-only
        self._refused = False
        self._lingering = False
        self._deadline: asyncio.TimerHandle | None = None
        self._in_body = False  # a request's head is complete, its body is not
        self._body_bytes = 0
        self._held = b""  # read while a complete request waits for its answer

    # ------------------------------------------------------------- the connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        edge = self._edge
        edge.connections = self.connections
        open_before = len(self.connections)
        super().connection_made(transport)  # type: ignore[arg-type]
        sock = transport.get_extra_info("socket")
        fd = sock.fileno() if sock is not None else -1
        tier, reason = admission(self._limits, open_before, edge.handshakes, edge.probes, fd)
        if tier is Tier.REFUSED:
            assert reason is not None
            self._refuse(reason, linger=reason is not Refusal.DESCRIPTORS, fd=fd)
            return
        if tier is Tier.PROBES_ONLY:
            assert reason is not None
            self._probe_only = True
            self._full_reason = reason
            edge.probes += 1
            edge.full(reason, fd=fd)
        elif edge.probe_listener:
            self._probe_only = True
            self._full_reason = Refusal.NOT_PROBE
            edge.probes += 1
        self._begin_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self.pipeline.clear()  # requests queued behind the answer in progress never run
        self._held = b""
        self._end_head()
        self._cancel_deadline()
        self._release_probe()
        if self._lingering:
            self._lingering = False
            self._edge.lingering -= 1
        super().connection_lost(exc)

    def eof_received(self) -> None:
        return None  # the transport closes

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: dropped
        self._unset_keepalive_if_required()
        if self._held:
            data = self._held + data
            self._held = b""
        self._consume(data)

    def _waiting(self) -> bool:
        """A complete request waits for its answer: the parser is not fed meanwhile."""
        if self.pipeline:
            return True
        cycle = self.cycle
        return (
            cycle is not None
            and not cycle.response_complete
            and not self._in_head
            and not self._in_body
        )

    def _consume(self, data: bytes) -> None:
        step = self._limits.max_head_bytes
        pos, size = 0, len(data)
        while pos < size:
            if self._waiting():
                self._hold(data[pos:])
                return
            if self._in_head:
                room = step - self._head_bytes
                if room <= 0:
                    self._refuse(Refusal.HEAD_TOO_LARGE)
                    return
                piece = data[pos : pos + room]
                self._head_bytes += len(piece)
            else:
                piece = data[pos : pos + step]  # a new head may start inside it
            # End the piece where a head may end, so that at most one more request
            # completes in it (a cut elsewhere costs the parser nothing).
            piece = piece[: _head_end(piece)]
            pos += len(piece)
            self._feed(piece)
            if self._refused or self.transport.get_protocol() is not self:
                return  # refused, or upgraded (what follows the head is dropped, as before)
        if self._in_head and self._head_bytes >= step:
            self._refuse(Refusal.HEAD_TOO_LARGE)

    def _hold(self, rest: bytes) -> None:
        """Keep what follows a request waiting for its answer, reading paused; more
        than a head's worth closes the connection once the answer is written."""
        self.flow.pause_reading()
        if len(rest) > self._limits.max_head_bytes:
            self._refuse(Refusal.HEAD_TOO_LARGE)
            return
        self._held = rest

    def _feed(self, piece: bytes) -> None:
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, HeadRefused):
                self._refuse(cause.refusal)
            else:
                log.warning("http_callback_failed", error=repr(cause))
                self._refuse(Refusal.BAD_REQUEST)
        except httptools.HttpParserError:
            self._refuse(Refusal.BAD_REQUEST)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self._end_head()
                self._cancel_deadline()  # the WebSocket handler answers now
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    # ------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:
            self._begin_head()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self._limits.max_headers:
            raise HeadRefused(Refusal.TOO_MANY_HEADERS)
        if len(name) == 14 and name.lower() == b"content-length":
            length = value.strip()
            if not length.isdigit() or int(length[:20]) > self._limits.max_body_bytes:
                raise HeadRefused(Refusal.BODY_TOO_LARGE)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._probe_only:
            path = self.url.partition(b"?")[0]
            if (
                self.parser.get_method() != b"GET"
                or self.parser.should_upgrade()
                or path.decode("latin-1") not in PROBE_PATHS
            ):
                raise HeadRefused(self._full_reason)
        self._end_head()
        self._in_body = True
        self._body_bytes = 0
        super().on_headers_complete()
        if self._probe_only and self.cycle is not None:
            self.cycle.keep_alive = False  # a probe slot serves one request

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._limits.max_body_bytes:
            raise HeadRefused(Refusal.BODY_TOO_LARGE)  # chunked: no Content-Length
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        self._cancel_deadline()  # head and body are in: the route takes its own time
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._in_body and not self.transport.is_closing():
            # Answered before its body was all in (a GET with a huge Content-Length,
            # trickled): what is left of the body is not worth waiting for.
            self.transport.close()
            return
        super().on_response_complete()
        if self._held and not self._refused and not self.transport.is_closing():
            self._unset_keepalive_if_required()
            held, self._held = self._held, b""
            self._consume(held)

    # ------------------------------------------------------------- head and deadline

    def _begin_head(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._edge.handshakes += 1
        if self._deadline is None:
            self._arm_deadline()

    def _arm_deadline(self) -> None:
        timeout = PROBE_TIMEOUT if self._probe_only else self._limits.handshake_timeout
        self._deadline = self.loop.call_later(timeout, self._expired)

    def _end_head(self) -> None:
        if self._in_head:
            self._in_head = False
            self._edge.handshakes -= 1

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        """The deadline from accept (or from a keep-alive request's first byte) to the
        whole request: a head still incomplete gets a 408; a request whose body is
        still arriving is closed (408 when its answer has not started)."""
        self._deadline = None
        if self._refused or self.transport.is_closing():
            return
        if self._in_head:
            self._refuse(Refusal.HANDSHAKE_TIMEOUT)
        elif self._in_body:
            self._refused = True
            self._edge.refused(Refusal.BODY_TIMEOUT)
            if self.cycle is not None and not self.cycle.response_started:
                self.transport.write(refusal_response(Refusal.BODY_TIMEOUT))
            self.transport.close()

    # ------------------------------------------------------------- refusals

    def _refuse(self, refusal: Refusal, *, linger: bool = True, **context: object) -> None:
        """Answer ``refusal`` and end the connection. It stops counting at once (its
        connection, head and probe slots are free); while a few refused connections
        linger (the peer reads the answer instead of a reset), more are closed at once."""
        if self._refused:
            return
        self._refused = True
        self._end_head()
        self._cancel_deadline()
        self._release_probe()
        self.connections.discard(self)
        edge = self._edge
        edge.refused(refusal, **context)
        transport = self.transport
        if transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if self._in_body and refusal is Refusal.BODY_TOO_LARGE:
                # The request being answered sent too much body: it is cut off.
                if not cycle.response_started:
                    transport.write(refusal_response(refusal))
                transport.close()
                return
            cycle.keep_alive = False  # a pipelined head: closed after the answer in progress
            return
        transport.write(refusal_response(refusal))
        if linger and edge.lingering < LINGER_SLOTS and transport.can_write_eof():
            edge.lingering += 1
            self._lingering = True
            transport.write_eof()
            self.loop.call_later(REFUSAL_LINGER, transport.close)
        else:
            transport.close()

    def _release_probe(self) -> None:
        if self._probe_only:
            self._probe_only = False
            self._edge.probes -= 1


def _head_end(piece: bytes) -> int:
    """Where the first head in ``piece`` may end (after an empty line), else its length."""
    end = piece.find(b"\n\r\n")
    if end >= 0:
        end += 3
    bare = piece.find(b"\n\n", 0, end if end >= 0 else len(piece))
    if bare >= 0:
        return bare + 2
    return end if end >= 0 else len(piece)


def protocol_factory(edge: Edge) -> Callable[..., EdgeHttpProtocol]:
    """What to pass uvicorn as ``http``: it calls it with its config and state."""

    def make(
        *, config: Any, server_state: Any, app_state: Any, _loop: Any = None
    ) -> EdgeHttpProtocol:
        return EdgeHttpProtocol(
            edge, config=config, server_state=server_state, app_state=app_state, _loop=_loop
        )

    return make
