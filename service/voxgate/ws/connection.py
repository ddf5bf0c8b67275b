"""One WebSocket connection after (or during) its handshake, as an asyncio protocol.

Frames are parsed in ``data_received`` (no task per frame); ``recv`` hands out
whole messages from a queue bounded in messages and in bytes, and reading from the
socket pauses while the queue is full by either, so a slow reader slows its peer down
(TCP backpressure). ``send``
writes at once and waits only while the transport's write buffer is over its high
water mark. Pings keep an idle connection honest: a peer silent for a whole
``ping_interval`` after a ping is dropped. A fragmented message must be complete
within ``message_timeout`` (else 1008); its size and frames are bounded by the
reader (1009); either is told to ``on_limit``. A connection that fails sends its close
frame, then shuts down writing and reads (and drops) what the peer still sends until
the peer closes or ``close_timeout`` passes, so the close frame is not lost to a TCP
reset. Subclasses (``client``, ``server``) do the opening handshake, then call
``_opened``.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Callable
from typing import Final, NamedTuple

from voxgate.logs import get_logger
from voxgate.ws.frames import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    FrameError,
    FrameReader,
    close_payload,
    parse_close,
)
from voxgate.ws.frames import encode as encode_frame

log = get_logger("voxgate.ws")

#: Named defaults (those of the websockets package, which the gateway used before).
PING_INTERVAL: Final = 20.0
CLOSE_TIMEOUT: Final = 2.0
#: Messages received and not yet taken by ``recv`` before reading pauses; it
#: resumes once the queue is down to a quarter of that.
MAX_QUEUE: Final = 32
#: The least byte bound of that queue: reading pauses once the queued messages hold
#: more than max(max_size, MIN_QUEUE_BYTES) (a few large messages fill it as 32 small
#: ones do) and resumes once they are down to a quarter of that, in messages and bytes.
#: Text is counted in characters.
MIN_QUEUE_BYTES: Final = 1 << 20
#: Seconds a fragmented message may take from its first frame to its last.
MESSAGE_TIMEOUT: Final = 10.0

#: Told which bound a peer's message went over: "size", "fragments" (1009) or
#: "deadline" (1008), for a metric.
OnLimit = Callable[[str], None]


class State(enum.IntEnum):
    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


_OPEN: Final = State.OPEN  # (a global is found faster than an enum member)


class Closed(NamedTuple):
    code: int
    reason: str


class ConnectionClosed(Exception):
    """The connection is closed (or closing): ``rcvd`` is the peer's close frame, if
    one came, ``sent`` ours. With neither, the TCP connection simply went away."""

    def __init__(self, rcvd: Closed | None, sent: Closed | None) -> None:
        self.rcvd = rcvd
        self.sent = sent
        super().__init__(f"received {rcvd}, sent {sent}")

    @property
    def code(self) -> int:
        """The peer's close code; 1006 when it sent none."""
        return self.rcvd.code if self.rcvd is not None else 1006


class WebSocket(asyncio.Protocol):
    #: Whether this end is the client (it masks what it sends).
    is_client = False

    def __init__(
        self,
        *,
        max_size: int,
        max_queue: int = MAX_QUEUE,
        ping_interval: float | None = PING_INTERVAL,
        close_timeout: float = CLOSE_TIMEOUT,
        max_fragments: int | None = None,
        message_timeout: float | None = MESSAGE_TIMEOUT,
        on_limit: OnLimit | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._reader = FrameReader(
            masked=not self.is_client, max_size=max_size, max_fragments=max_fragments
        )
        self._message_timeout = message_timeout
        self._on_limit = on_limit
        self._partial = 0  # the reader's fragmented message the deadline below is for
        self._partial_timer: asyncio.TimerHandle | None = None
        self._partial_since = 0.0  # when the pending one began
        self._max_queue = max_queue
        self._max_queue_bytes = max(max_size, MIN_QUEUE_BYTES)
        self._queued_bytes = 0  # of the messages in self._messages
        self._ping_interval = ping_interval
        self._close_timeout = close_timeout
        self.state = State.CONNECTING
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # connection_made
        self.rcvd: Closed | None = None
        self.sent: Closed | None = None
        self._messages: deque[bytes | str] = deque()
        self._reading_paused = False
        self._writing_paused = False
        self._waiter: asyncio.Future[None] | None = None
        # One future all senders waiting for the write buffer share (replaced once done).
        self._drain_waiter: asyncio.Future[None] | None = None
        # The latest ping not yet answered because writing was paused (RFC 6455 5.5.3:
        # answering only the most recent ping is enough), so a ping flood from a peer
        # that does not read cannot grow the write buffer.
        self._pong_owed: bytes | None = None
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._heard = False  # anything received since the last ping
        #: Called with each message as it is parsed, when none is queued; a true
        #: result means it was dealt with, else it is queued for ``recv`` as usual.
        #: (The gateway relays audio this way without a task switch per frame.)
        self.on_message: Callable[[bytes | str], bool] | None = None

    # ------------------------------------------------------------------ asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        handler = self.on_message
        if handler is not None and self.state is _OPEN and not self._messages:
            # The usual read while relaying: one whole data frame, handed on at once.
            message = self._reader.whole(data)
            if message is not None:
                self._heard = True
                try:
                    taken = handler(message)
                except Exception:  # a bug there must not cost the message: recv gets it
                    log.exception("websocket_message_handler_failed")
                    taken = False
                if not taken:
                    self._messages.append(message)
                    self._queued_bytes += len(message)
                    self._queued()
                return
        if self.state is State.CONNECTING:
            self._handshake_data(data)
            return
        self._heard = True
        reader = self._reader
        events = reader.feed(data)
        if reader.partial != self._partial:
            self._partial_changed(reader.partial)
        messages = self._messages
        for opcode, payload in events:
            if opcode <= BINARY:
                if self.state is State.OPEN:  # after a close, data is discarded
                    handler = self.on_message
                    if handler is None or messages or not self._offer(handler, payload):
                        messages.append(payload)
                        self._queued_bytes += len(payload)
            elif opcode == PING:
                if self.state is State.OPEN:
                    assert isinstance(payload, bytes)
                    if self._writing_paused:
                        self._pong_owed = payload
                    else:
                        self.transport.write(encode_frame(PONG, payload, mask=self.is_client))
            elif opcode == CLOSE:
                assert isinstance(payload, bytes)
                self._close_received(payload)
                break
        error = reader.error
        if error is not None and self.state is State.OPEN:
            if error.limit is not None:
                self._limit(error.limit)
            self.fail(error.code, error.reason)  # what came before it is still delivered
        if messages:
            self._queued()

    def _queued(self) -> None:
        """Messages wait for ``recv``: wake it; pause reading once the queue is full."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        full = len(self._messages) >= self._max_queue or self._queued_bytes > self._max_queue_bytes
        if full and not self._reading_paused and self.state is State.OPEN:
            self._reading_paused = True  # (once closing, nothing more is queued)
            self.transport.pause_reading()

    @staticmethod
    def _offer(handler: Callable[[bytes | str], bool], payload: bytes | str) -> bool:
        try:
            return handler(payload)
        except Exception:  # a bug there must not cost the message: recv gets it
            log.exception("websocket_message_handler_failed")
            return False

    def eof_received(self) -> bool | None:
        return None  # close the transport: a half-closed WebSocket is of no use

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = State.CLOSED
        if self._timer is not None:
            self._timer.cancel()
        if self._partial_timer is not None:
            self._partial_timer.cancel()
        if not self._lost.done():
            self._lost.set_result(None)
        for waiter in (self._waiter, self._drain_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        self._connection_lost()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._pong_owed is not None and self.state is State.OPEN:
            self.transport.write(encode_frame(PONG, self._pong_owed, mask=self.is_client))
        self._pong_owed = None
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # ------------------------------------------------------------------ API

    @property
    def closed(self) -> ConnectionClosed:
        return ConnectionClosed(self.rcvd, self.sent)

    async def recv(self) -> bytes | str:
        """The next message; ConnectionClosed once none is left and the connection is
        closing or closed."""
        messages = self._messages
        while not messages:
            if self.state is not State.OPEN:
                raise self.closed
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message = messages.popleft()
        self._queued_bytes -= len(message)
        if (
            self._reading_paused
            and len(messages) <= self._max_queue // 4
            and self._queued_bytes <= self._max_queue_bytes // 4
        ):
            self._reading_paused = False
            self.transport.resume_reading()
        return message

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> bytes | str:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def send(self, message: bytes | str) -> None:
        """Send one message; waits only while the write buffer is over its high mark."""
        self.write(message)
        if self._writing_paused:
            await self._drain()

    @property
    def writable(self) -> bool:
        """Open, and the write buffer under its high mark: ``write`` will not pile up."""
        return self.state is _OPEN and not self._writing_paused

    def write(self, message: bytes | str) -> None:
        """Send one message now, without waiting; ConnectionClosed once the connection is
        closing. Check ``writable`` first, or await ``drained`` after."""
        if self.state is not _OPEN:
            raise self.closed
        if isinstance(message, str):
            self.transport.write(encode_frame(TEXT, message.encode(), mask=self.is_client))
        else:
            self.transport.write(encode_frame(BINARY, message, mask=self.is_client))

    async def drained(self) -> None:
        """Until the write buffer is under its low mark (at once when it is already);
        ConnectionClosed if the connection is lost meanwhile."""
        if self._writing_paused:
            await self._drain()

    async def _drain(self) -> None:
        """Until the write buffer is under its low mark (no deadline of its own: the
        session's watchdog holds the send deadline). Any number of senders may wait."""
        while self._writing_paused and self.state is not State.CLOSED:
            if self._drain_waiter is None or self._drain_waiter.done():
                self._drain_waiter = self._loop.create_future()
            await asyncio.shield(self._drain_waiter)  # a cancelled sender leaves it to others
        if self.state is State.CLOSED:
            raise self.closed

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """The closing handshake: send our close, wait (``close_timeout``) for the
        peer's and for the TCP connection to end, then drop it if need be."""
        if self.state is State.CLOSED:
            return
        if self.state is State.CONNECTING:
            self.abort()
            return
        self._send_close(code, reason)
        try:
            async with asyncio.timeout(self._close_timeout):
                await asyncio.shield(self._lost)
        except TimeoutError:
            self.abort()

    def fail(self, code: int, reason: str) -> None:
        """End now: our close frame (if not sent yet), then the end of our writing (the
        peer reads the close, then EOF); what the peer still sends is read and dropped
        until it closes too, for at most ``close_timeout``. Closing with unread data
        would reset the connection, and a reset can destroy the close frame in flight."""
        if self.state is State.CLOSED:
            return
        if self.state is State.CONNECTING:
            self.transport.close()
            return
        if self.state is State.OPEN:
            self._send_close(code, reason)
        transport = self.transport
        if self._timer is not None:
            self._timer.cancel()  # no more keepalive; this is the deadline now
        self._timer = self._loop.call_later(self._close_timeout, self.abort)
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        if not self._eof_written and transport.can_write_eof():
            self._eof_written = True
            try:
                transport.write_eof()
            except (OSError, RuntimeError):  # already closing: nothing more to say
                self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._lost)

    # ------------------------------------------------------------------ internals

    def _partial_changed(self, partial: int) -> None:
        """A fragmented message, or an incomplete frame, began (or ended): it has
        ``message_timeout`` from now. One timer serves them all (reads that end inside
        a frame change ``partial`` at every read): it is armed when none is, and when
        it fires it looks at the one pending then."""
        self._partial = partial
        if partial:
            self._partial_since = self._loop.time()
            if (
                self._partial_timer is None
                and self._message_timeout is not None
                and self.state is State.OPEN
            ):
                self._partial_timer = self._loop.call_later(
                    self._message_timeout, self._message_late
                )

    def _message_late(self) -> None:
        self._partial_timer = None
        timeout = self._message_timeout
        if not self._reader.partial or timeout is None or self.state is not State.OPEN:
            return
        left = self._partial_since + timeout - self._loop.time()
        if left > 0:  # the pending one began after the timer was armed
            self._partial_timer = self._loop.call_later(left, self._message_late)
            return
        self._limit("deadline")
        self.fail(1008, f"message not complete within {timeout:g} s")

    def _limit(self, limit: str) -> None:
        if self._on_limit is not None:
            try:
                self._on_limit(limit)
            except Exception:  # a metric must not stop the close
                log.exception("websocket_limit_callback_failed")

    def _opened(self) -> None:
        self.state = State.OPEN
        if self._ping_interval:
            self._timer = self._loop.call_later(self._ping_interval, self._keepalive)

    def _handshake_data(self, data: bytes) -> None:
        raise NotImplementedError

    def _connection_lost(self) -> None:
        """For subclasses: the TCP connection is gone."""

    def _send_close(self, code: int, reason: str) -> None:
        if self.sent is not None or self.state is State.CLOSED:
            return
        self.sent = Closed(code, reason)
        payload = close_payload(code, reason) if code != 1005 else b""
        self.transport.write(encode_frame(CLOSE, payload, mask=self.is_client))
        self.state = State.CLOSING
        if self._reading_paused:  # the peer's close must get through a full queue;
            self._reading_paused = False  # data from now on is discarded, not queued
            self.transport.resume_reading()
        if self.rcvd is not None:
            self._both_closed()

    def _close_received(self, payload: bytes) -> None:
        try:
            self.rcvd = Closed(*parse_close(payload))
        except FrameError as exc:
            self.fail(exc.code, exc.reason)
            return
        if self.sent is None:
            self._send_close(self.rcvd.code, "")  # echo the code (RFC 6455 5.5.1)
        else:
            self._both_closed()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _both_closed(self) -> None:
        """Both close frames are out: the server ends TCP; a client gives it a moment."""
        if not self.is_client:
            self.transport.close()
        else:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_later(self._close_timeout, self.abort)

    def _keepalive(self) -> None:
        if self.state is not State.OPEN:
            return
        if self._pinged and not self._heard:
            self.sent = Closed(1011, "keepalive ping timeout")
            self.abort()
            return
        self._heard = False
        self._pinged = True
        self.transport.write(encode_frame(PING, b"", mask=self.is_client))
        assert self._ping_interval is not None
        self._timer = self._loop.call_later(self._ping_interval, self._keepalive)

    _pinged = False
    _eof_written = False
