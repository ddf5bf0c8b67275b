"""One relayed session: client audio up, upstream messages down, then a clean end.

Two pumps run as tasks, beside a watchdog (a function the process's one ``Ticker``
calls every WATCHDOG_INTERVAL); the first to finish decides how the session ends
and the others are cancelled. A pump does not read again while the other side's
write buffer is over its high mark, so a slow side slows the other (backpressure end
to end: each connection's queue is small and bounded, and reading pauses when it is
full).
Each direction's per-message work is written once (``_audio`` up, ``_downstream``
down). The pumps call it after each ``recv``; in the common case the connections
call it sooner, from their callbacks, as each message is parsed (``_fast_audio`` /
``_fast_message``, while nothing is queued and the other side can take more), so
a relayed frame costs no task switch (docs/performance.md). A callback runs only
while the other side can take more; a pump that wrote and left the other side over
its high mark waits for it before it reads again.
The watchdog holds the deadlines that are not on the per-frame path:
a send that does not finish, Terminate without Termination, a token's session cap,
and adds the session's use to the per-key counters every second. When upstream
drops with a transient failure, the same loop goes on with a replacement upstream
(see ``continuity.py``), at most MAX_RECONNECTS times. The replacement gets the
client's UpdateConfiguration fields (``configuration.py``), the replay, and then the
client's audio, for the rest of its life no faster than real time plus its burst
(VOXGATE_REPLACEMENT_BURST_SECONDS, at least the pace burst: room to catch up)
counted from its own Begin (replay included): a frame that would put it ahead goes to
the pump, which waits (the session-wide PaceGuard alone would let a client with pace
credit burst into a replacement only seconds old).
An upstream message over the size limit ends the session (1011) without a
replacement: a replacement would be sent the same message again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from voxgate.logs import get_logger
from voxgate.metrics.gateway import Metrics, Outcome
from voxgate.protocol import (
    MAX_MESSAGE_BYTES,
    CloseCode,
    ControlType,
    PaceGuard,
    ProtocolViolation,
    StreamParams,
    Violation,
    check_audio_frame,
    read_client_text,
)
from voxgate.protocol.jsonguard import loads_bounded
from voxgate.relay import closes
from voxgate.relay.closes import Close
from voxgate.relay.configuration import Configuration
from voxgate.relay.continuity import Seam
from voxgate.relay.control_rate import ControlRate
from voxgate.relay.ticker import Ticker
from voxgate.settings import Settings
from voxgate.transcripts.publisher import SessionPublisher
from voxgate.upstream.connect import UpstreamSession
from voxgate.upstream.failures import FailureClass, UpstreamFailure, close_failure
from voxgate.ws.connection import ConnectionClosed
from voxgate.ws.server import ServerWebSocket

#: How often the watchdog looks at the deadlines.
WATCHDOG_INTERVAL = 0.25
#: How often a running session adds its audio and open seconds to the per-key
#: counters (so a session left open shows up while it is open, not when it ends).
ACCOUNT_INTERVAL = 1.0
#: After a client vanished: how long upstream may take to send its final turns
#: before its socket is closed (upstream bills the time a session is open).
ABANDON_GRACE = 0.8
#: Deadline for sending the client its close, and for any send during clean-up.
CLEANUP_TIMEOUT = 2.0
#: Replacement upstream sessions one client session may use after upstream drops.
MAX_RECONNECTS = 3
_TERMINATE = json.dumps({"type": "Terminate"})
_perf = time.perf_counter
#: Framing errors the client's connection answers with a close code itself.
_FRAMING_VIOLATIONS = {
    1002: Violation.BAD_FRAME,
    1007: Violation.BAD_FRAME,
    1009: Violation.FRAME_TOO_BIG,
}

#: Opens a replacement upstream session (through the key pool): (session, key alias).
Reopen = Callable[[], Awaitable[tuple[UpstreamSession, str]]]


@dataclass(slots=True)
class End:
    """How a pump ended the session. ``close`` is None when the client is already gone."""

    outcome: str
    close: Close | None
    error_frame: bool = True
    #: Upstream dropped and a replacement may carry on (else end as above).
    reconnect: bool = False
    #: Upstream's own Error frame, sent to the client instead of the gateway's.
    upstream_error: str | None = None


class Session:
    def __init__(
        self,
        *,
        client: ServerWebSocket,
        upstream: UpstreamSession,
        params: StreamParams,
        key_alias: str,
        client_name: str,
        settings: Settings,
        metrics: Metrics,
        on_upstream_failure: Callable[[str, UpstreamFailure], None],
        publisher: SessionPublisher | None = None,
        reopen: Reopen | None = None,
        max_seconds: float | None = None,
        failovers: int = 0,
        ticker: Ticker,
        on_usage: Callable[[str, float, float], None] | None = None,
        client_since: float | None = None,
    ) -> None:
        self.client = client
        self.upstream = upstream
        self.params = params
        self.key_alias = key_alias
        self.client_name = client_name
        self.settings = settings
        self.metrics = metrics
        self._on_upstream_failure = on_upstream_failure
        self.publisher = publisher
        self._reopen = reopen
        self.failovers = failovers  # keys tried in vain before this session began
        per_second = params.bytes_per_second
        self.seam = Seam(
            bytes_per_ms=per_second / 1000.0 if per_second else None,
            format_turns=params.format_turns(),
            max_replay_bytes=int((per_second or 0) * settings.replay_seconds),
        )
        self.id = str(upstream.begin.get("id", ""))
        self.log = get_logger("voxgate.session").bind(
            session_id=self.id, client=client_name, key=key_alias
        )
        self._loop = asyncio.get_running_loop()
        # The pace clock: AssemblyAI's runs from its Begin, and the time the client
        # waited for it (the upstream connect, a failover) is not held against the
        # client, so it runs from the client's accept (``client_since``); what the client
        # sent meanwhile waited in its bounded queue and socket (backpressure).
        self._pace = PaceGuard(settings.pace_burst_seconds, start=client_since)
        # Audio whose duration its size does not tell is paced by a bound that holds
        # for any encoding (and not counted as audio seconds).
        self._pace_rate = params.pace_bytes_per_second
        self._timed_audio = params.bytes_per_second is not None
        self._terminate_sent = False
        self._terminate_deadline: float | None = None
        self._draining = False
        self._drain_task: asyncio.Task[None] | None = None
        # The gateway's stop: Termination is awaited until then at the latest (loop time).
        self._drain_deadline: float | None = None
        self._terminate_wait = settings.terminate_timeout  # the last deadline's length
        # When a send started (0.0: none in flight); read by the watchdog.
        self._up_send_started = 0.0
        self._down_send_started = 0.0
        self.turns = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.opened_at = self._loop.time()
        # When the client last sent something (audio or a text message): the watchdog
        # ends the session after VOXGATE_IDLE_TIMEOUT without (one store per frame).
        self._active_at = self.opened_at
        # When the client last sent audio: after VOXGATE_NO_AUDIO_TIMEOUT without, the
        # session is ended as an idle one (text messages alone do not keep it).
        self._audio_at = self.opened_at
        self._idle = False
        self._idle_close = closes.idle(settings.idle_timeout)
        self._controls = ControlRate(settings.max_control_rate, self.opened_at)
        self._idle_task: asyncio.Task[None] | None = None
        # What _account has added to the counters so far.
        self._counted_at = self.opened_at
        self._counted_audio = 0.0
        self._counted_up = self._counted_down = 0
        # A temporary token's session cap (AssemblyAI ends such a session with 3008).
        self._expires_at = self.opened_at + max_seconds if max_seconds is not None else None
        self._begin_text = upstream.begin_text
        if max_seconds is not None:
            self._begin_text = _capped_begin(upstream.begin_text, time.time() + max_seconds)
        self.upstream_close: tuple[int, str] | None = None
        # Upstream's Error, held back until it is known whether a replacement carries on.
        self._held_error: tuple[str, dict[str, Any]] | None = None
        # The last frame size _audio checked, and its audio seconds.
        self._frame_size = -1
        self._frame_seconds = 0.0
        # The watchdog: checked by the shared ticker, ends the relay through _watch.
        self._ticker = ticker
        self._watch: asyncio.Future[End] | None = None
        # A replacement upstream's own pace (see _reconnect): whether it applies, and
        # when the audio sent to it (from its Begin, the replay counted) is within the
        # pace burst of real time (its Begin + seconds sent - burst): a frame of S
        # seconds may go at once from _fits_after + S on.
        self._pace_bound = False
        self._fits_after = 0.0
        # The frame the pump holds while it waits for the replacement (checked and
        # counted as received; replayed if the relay ends meanwhile, see _reconnect).
        self._pacing: bytes | None = None
        # The client's UpdateConfiguration fields, for a replacement upstream.
        self.configuration = Configuration(MAX_MESSAGE_BYTES)
        self._relay_up = metrics.relay_up.observe
        self._relay_down = metrics.relay_down.observe
        # The client's usage (voxgate.tenants): (key alias, audio s, session s) deltas.
        self._on_usage = on_usage
        # Audio seconds this session may send (a client's audio budget, see limit_audio).
        self._audio_allowance = math.inf
        self._limit_close: Close | None = None
        self.limit_reached = False
        # Audio seconds written upstream (what usage, spend and the allowance count; the
        # pace guard counts what was received, dropped frames too).
        self._sent_audio = 0.0

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio written upstream (a frame not sent is not counted)."""
        return self._sent_audio if self._timed_audio else 0.0

    # ------------------------------------------------------------------ control

    def drain(self, deadline: float | None = None) -> None:
        """Gateway shutdown: end upstream cleanly, relay the rest, close with 1012.
        Upstream's Termination is awaited until ``deadline`` (loop time) at the latest,
        so that the session ends before the runtime's SIGKILL (then with 1013)."""
        if self._draining:
            return
        self._draining = True
        self._drain_deadline = deadline
        if self._terminate_deadline is not None:  # Terminate already sent (idle)
            self._terminate_deadline = self._termination_due()
        self._drain_task = self._loop.create_task(self._send_terminate())

    def _termination_due(self) -> float:
        """When upstream's Termination is due for a Terminate sent now."""
        due = self._loop.time() + self.settings.terminate_timeout
        if self._drain_deadline is not None:
            due = min(due, self._drain_deadline)
        if self._terminate_deadline is not None and self._draining:
            due = min(due, self._terminate_deadline)
        self._terminate_wait = max(0.0, due - self._loop.time())
        return due

    def limit_audio(self, seconds: float, close: Close) -> None:
        """The client may send ``seconds`` of audio in all in this session: the frame
        that would cross it is not sent; upstream gets Terminate, the client its final
        turns, the Termination and ``close`` (its budget, voxgate.tenants). ``inf``:
        no bound any more (the budget was removed)."""
        if not self.limit_reached:  # (a frame's float sum a hair over is not over)
            self._audio_allowance = seconds + 1e-6
            self._limit_close = close if seconds != math.inf else None

    def _over_limit(self) -> None:
        self.limit_reached = True
        self.log.info("audio_budget_reached", audio_seconds=round(self.audio_seconds, 3))
        self._drain_task = self._loop.create_task(self._send_terminate())

    async def _send_terminate(self) -> None:
        if self._terminate_sent:
            return
        self._terminate_sent = True
        self._terminate_deadline = self._termination_due()
        with contextlib.suppress(ConnectionClosed, OSError, TimeoutError):
            async with asyncio.timeout(self.settings.send_timeout):  # upstream not reading
                await self.upstream.connection.send(_TERMINATE)

    # ------------------------------------------------------------------ run

    async def run(self) -> End:
        try:
            await self.client.send_text(self._begin_text)
        except (ConnectionClosed, OSError):
            await self._abandon_upstream()
            end = End(Outcome.CLIENT_GONE, None)
            self._record(end)
            return end
        while True:
            end = await self._relay()
            if not end.reconnect:
                break
            if await self._reconnect():
                continue
            held = _parse(end.upstream_error) if end.upstream_error else None
            if held is not None:
                self._observe(end.upstream_error or "", held)  # the end is upstream's
            break
        if end.outcome in (Outcome.CLIENT_GONE, Outcome.CLIENT_ERROR, Outcome.EXPIRED):
            await self._abandon_upstream()
        else:
            await self._close_upstream()
        if end.close is not None:
            await self._close_client(end)
        self._record(end)
        return end

    async def _relay(self) -> End:
        """Run both pumps and the watchdog on the current upstream until one ends."""
        self._held_error = None  # an Error of the upstream before is not this one's
        self._watch = watch = self._loop.create_future()
        up = asyncio.create_task(self._client_to_upstream(watch), name="client->upstream")
        down = asyncio.create_task(self._upstream_to_client(), name="upstream->client")
        tasks: list[asyncio.Future[End]] = [up, down, watch]
        self._ticker.add(self._tick)
        # Only while this upstream relays (after, messages wait in the queues).
        self.client.on_message = self._fast_audio
        self.upstream.connection.on_message = self._fast_message
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            # What a callback raised (a rule broken, a bug) comes first: it happened
            # before whatever ended beside it. Else upstream's end says most.
            if watch in done and watch.exception() is not None:
                first = watch
            else:
                first = down if down in done else done.pop()
            lost = up.exception() if first is up else None
            if isinstance(lost, ConnectionClosed):
                # Upstream went away under a send: the downstream pump says how (it
                # may have held upstream's Error); if it is stuck on the client, the
                # send's own exception does.
                await asyncio.wait([down], timeout=CLEANUP_TIMEOUT)
                if down.done():
                    return self._end_of(down)
                return self._upstream_closed(lost, self._held_error)
            return self._end_of(first)
        finally:
            self._ticker.discard(self._tick)
            self.client.on_message = self.upstream.connection.on_message = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _reconnect(self) -> bool:
        """Upstream dropped: carry on with a replacement, replaying the turn in progress."""
        assert self._reopen is not None
        lost = self.key_alias
        self.metrics.failovers.labels("mid_session").inc()
        await self._close_upstream()
        try:
            upstream, alias = await self._reopen()
        except Exception as exc:  # NoUpstream, or anything else: end as upstream did
            self.log.warning("upstream_reconnect_failed", lost=lost, reason=str(exc)[:200])
            return False
        self._account()  # what the lost upstream served is billed to its key
        self.upstream = upstream
        self.key_alias = alias
        self.log = self.log.bind(key=alias)
        self.metrics.reconnects.labels("upstream").inc()
        self._up_send_started = self._down_send_started = 0.0  # sends to the lost one
        if self._pacing is not None:  # the pump was cancelled holding it: replay it too
            if not self._terminate_sent:  # (checked when received; counted as sent now)
                self._sent_audio += len(self._pacing) / self._pace_rate
                self.bytes_up += len(self._pacing)
                self.seam.sent(self._pacing)
            self._pacing = None
        frames = self.seam.replay(elapsed_ms=(self._loop.time() - self.opened_at) * 1000)
        per_second = self.params.bytes_per_second
        # Compressed audio has no pace to keep (and nothing is replayed).
        self._pace_bound = bool(per_second)
        burst = max(self.settings.pace_burst_seconds, self.settings.replacement_burst_seconds)
        self._fits_after = self._loop.time() - burst
        try:
            async with asyncio.timeout(self.settings.send_timeout + self.settings.replay_seconds):
                if self.configuration:  # as the client set it, before the replay is heard
                    await upstream.connection.send(self.configuration.message())
                for frame in frames:
                    seconds = len(frame) / per_second if per_second else 0.0
                    wait = self._fits_after + seconds - self._loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    self._fits_after += seconds
                    await upstream.connection.send(frame)
                if self._terminate_sent:
                    await upstream.connection.send(_TERMINATE)
        except (TimeoutError, ConnectionClosed, OSError):
            self.log.warning("upstream_replay_failed", key=alias)
        if self._terminate_sent:
            self._terminate_deadline = self._termination_due()
        self.log.info(
            "upstream_reconnected",
            lost=lost,
            key=alias,
            replayed_seconds=round(sum(map(len, frames)) / (self.params.bytes_per_second or 1), 3),
            reconnects=self.seam.replacements,
        )
        return True

    def _end_of(self, task: asyncio.Future[End]) -> End:
        try:
            return task.result()
        except ProtocolViolation as violation:
            self.metrics.client_rejections.labels(violation.violation.value).inc()
            self.log.info("client_violation", reason=violation.reason, code=violation.code)
            return End(Outcome.CLIENT_ERROR, closes.for_violation(violation))
        except (ConnectionClosed, OSError):  # the client's (upstream's are handled)
            return End(Outcome.CLIENT_GONE, None)
        except Exception:
            self.log.exception("session_failed")
            return End(Outcome.INTERNAL, closes.INTERNAL)

    # ------------------------------------------------------------------ pumps

    async def _client_to_upstream(self, watch: asyncio.Future[End]) -> End:
        receive = self.client.recv
        upstream = self.upstream.connection
        while True:
            try:
                data = await receive()
            except ConnectionClosed as gone:
                return self._client_gone(gone)
            if watch.done():  # the relay is ending (a rule broken in a callback, a deadline):
                return await watch  # no audio after that goes upstream
            if isinstance(data, bytes):
                seconds = self._check_audio(data)
                if self._pace_bound:  # a replacement: wait while this frame is ahead
                    wait = self._fits_after + seconds - self._loop.time()
                    if wait > 0:
                        self._pacing = data  # if the relay ends meanwhile, it is replayed
                        await asyncio.sleep(wait)
                        self._pacing = None
                wrote = self._write_audio(data, seconds, _perf())
            else:
                wrote = await self._control(data)
            if wrote and not upstream.writable:  # over its high mark: wait (watchdog deadline)
                self._up_send_started = self._loop.time()
                await upstream.drained()
                self._up_send_started = 0.0

    async def _upstream_to_client(self) -> End:
        receive = self.upstream.connection.recv
        client = self.client
        while True:
            try:
                raw = await receive()
            except ConnectionClosed as exc:
                return self._upstream_closed(exc, self._held_error)
            try:
                if self._downstream(raw) and not client.writable:  # a slow client: wait
                    self._down_send_started = self._loop.time()
                    await client.drained()
                    self._down_send_started = 0.0
            except ConnectionClosed as gone:
                return self._client_gone(gone)

    def _fast_audio(self, data: bytes | str) -> bool:
        """The client's connection calls this with each message as it is parsed, when
        none is queued: audio goes through ``_audio`` at once. Text, and audio while
        upstream cannot take more, are left to the pump (False: queued for it); so is
        a frame that would put a replacement upstream ahead of its pace (a frame of a
        new size too, its duration not known yet)."""
        if not isinstance(data, bytes) or not self.upstream.connection.writable:
            return False
        if self._pace_bound and (
            len(data) != self._frame_size
            or self._fits_after + self._frame_seconds > self._loop.time()
        ):
            return False
        return self._now(self._audio, data)

    def _fast_message(self, raw: bytes | str) -> bool:
        """Upstream's connection calls this with each message as it is parsed, when none
        is queued: it goes through ``_downstream`` at once. Left to the pump: anything
        while the client cannot take more, or while the pump waits for it (so the
        order on the wire, in Redis and in the seam is upstream's)."""
        if self._down_send_started or not self.client.writable:
            return False
        return self._now(self._downstream, raw)

    def _now(self, work: Callable[[Any], object], message: bytes | str) -> bool:
        """Do one message's work in a connection's callback. What it raises ends the
        relay as it would in a pump (through the watchdog's future, see ``_end_of``):
        a violation closes the client with its code, anything else is a gateway bug.
        Once the relay is ending, nothing more is done here: messages wait in the
        queue (for a replacement upstream's relay, or for nobody)."""
        watch = self._watch
        if watch is None or watch.done():
            return False
        try:
            work(message)
        except Exception as exc:
            watch.set_exception(exc)
        return True

    # ------------------------------------------------------------------ per message

    def _audio(self, data: bytes) -> bool:
        """One audio frame from the client: checked against the session's format and
        real-time pace, kept for a replay, written upstream (after Terminate, or a
        drain, it has nowhere to go). Whether it was written; raises ProtocolViolation (the
        client's fault), or ConnectionClosed when upstream is closing (the frame is kept
        for the replay)."""
        received = _perf()
        return self._write_audio(data, self._check_audio(data), received)

    def _check_audio(self, data: bytes) -> float:
        """An audio frame's checks (size, format, the session's real-time pace), as it
        is received: its seconds of audio; raises ProtocolViolation."""
        size = len(data)
        if size == self._frame_size:  # clients send frames of one size: checked once
            seconds = self._frame_seconds
        else:
            seconds = check_audio_frame(size, self.params) or size / self._pace_rate
            self._frame_size, self._frame_seconds = size, seconds
        now = self._loop.time()
        self._pace.feed(seconds, now)
        self._audio_at = now
        return seconds

    def _write_audio(self, data: bytes, seconds: float, received: float) -> bool:
        """A checked audio frame kept for a replay and written upstream."""
        if self._terminate_sent:
            return False
        # Nothing past the client's audio budget (None: no budget, one check per frame).
        sent = self._sent_audio + seconds
        if self._limit_close is not None and sent > self._audio_allowance:
            if not self.limit_reached:
                self._over_limit()
            return False
        self._sent_audio = sent
        self.bytes_up += len(data)
        self._fits_after += seconds
        self.seam.sent(data)
        self.upstream.connection.write(data)
        self._relay_up(_perf() - received)
        return True

    async def _control(self, text: str) -> bool:
        """A text message from the client: Terminate ends upstream cleanly; the others
        go up as they are, until Terminate. Whether it was written (Terminate waits for
        its own send); raises ProtocolViolation for a bad one."""
        received = _perf()
        now = self._loop.time()
        limit = self.settings.max_control_chars
        if len(text) > limit:  # checked before it is parsed
            raise ProtocolViolation(
                CloseCode.TOO_BIG,
                Violation.MESSAGE_TOO_BIG,
                f"Message too big: a text message over {limit} characters",
            )
        if not self._controls.admit(now):
            raise ProtocolViolation(
                CloseCode.POLICY,
                Violation.MESSAGE_RATE,
                f"Too many messages: over {self._controls.rate} text messages a second",
            )
        kind, message = read_client_text(text)  # all but Terminate goes up as it came
        self._active_at = now
        if kind is ControlType.UPDATE_CONFIGURATION and not self._terminate_sent:
            # Kept for a replacement upstream; the seam follows format_turns.
            format_turns = self.configuration.update(message)
            if format_turns is not None:
                self.seam.format_turns = format_turns
        if kind is ControlType.TERMINATE:
            await self._send_terminate()
            return False
        if self._terminate_sent:
            return False
        if kind is ControlType.KEEP_ALIVE and not self._controls.keepalive_due(now):
            self.metrics.keepalives_coalesced.inc()
            return False
        self.upstream.connection.write(text)
        self._relay_up(_perf() - received)
        return True

    def _downstream(self, raw: bytes | str) -> bool:
        """One message from upstream: after a reconnect, renumbered onto the client's
        session (see ``continuity``); an Error held back (upstream closes right after
        it; if a replacement carries on, the client never sees it); anything else
        written to the client, then counted and published. Whether it was written;
        ConnectionClosed when the client is gone."""
        received = _perf()
        message = _parse(raw) if isinstance(raw, str) else None
        if message is not None:
            if self.seam.rewriting:
                message = self.seam.rewrite(message)
                if message is None:
                    return False
                raw = json.dumps(message)
            if message.get("type") == "Error":
                assert isinstance(raw, str)  # only text parses to a message
                self._held_error = (raw, message)
                return False
        self.client.write(raw)
        if isinstance(raw, str):
            self.bytes_down += len(raw)
            if message is not None:
                self.seam.delivered(message)
                self._observe(raw, message)
        self._relay_down(_perf() - received)
        return True

    def _client_gone(self, gone: ConnectionClosed) -> End:
        """The client closed, vanished, or broke the framing rules (then the
        connection already answered with 1002, 1007 or 1009 and is closed)."""
        if gone.sent is not None and gone.sent.code in _FRAMING_VIOLATIONS:
            violation = _FRAMING_VIOLATIONS[gone.sent.code]
            self.metrics.client_rejections.labels(violation.value).inc()
            self.log.info("client_violation", reason=gone.sent.reason, code=gone.sent.code)
        return End(Outcome.CLIENT_GONE, None)

    def _upstream_closed(
        self, exc: ConnectionClosed, held_error: tuple[str, dict[str, Any]] | None = None
    ) -> End:
        """How the session goes on after upstream closed (or dropped) its connection."""
        code = exc.code
        reason = exc.rcvd.reason if exc.rcvd is not None else ""
        self.upstream_close = (code, reason)
        if exc.sent is not None and exc.sent.code == CloseCode.TOO_BIG:
            # The gateway refused an upstream message over its limit: not the key's
            # fault, and a replacement would be sent the same message again.
            limit = self.settings.upstream_max_message_bytes
            self.log.warning("upstream_message_too_big", limit=limit)
            if held_error is not None:
                self._observe(*held_error)
            return End(Outcome.UPSTREAM_ERROR, closes.UPSTREAM_TOO_BIG)
        if code == 1000:
            if self._draining:
                return End(Outcome.DRAINED, closes.DRAINING, error_frame=False)
            if self._idle:
                return End(Outcome.IDLE, self._idle_close)
            if self.limit_reached and self._limit_close is not None:
                return End(Outcome.LIMITED, self._limit_close, error_frame=False)
            return End(Outcome.COMPLETED, Close(1000, ""), error_frame=False)
        asked = [name for name, _ in self.params.forward] + self.configuration.names
        failure = close_failure(code, reason, asked)
        self._on_upstream_failure(self.key_alias, failure)
        retry = (
            failure.failure is FailureClass.TRANSIENT
            and self._reopen is not None
            and not self._draining
            and self.seam.replacements < MAX_RECONNECTS
        )
        outcome = (
            Outcome.CLIENT_ERROR
            if failure.failure is FailureClass.CLIENT_FAULT
            else Outcome.UPSTREAM_ERROR
        )
        if held_error is not None and not retry:
            self._observe(*held_error)
        return End(
            outcome,
            closes.for_upstream_close(code, reason),
            reconnect=retry,
            upstream_error=held_error[0] if held_error is not None else None,
        )

    def _tick(self, now: float) -> None:
        """The watchdog, called by the shared ticker while a relay runs: ends the
        relay (through ``_watch``) when a deadline has passed, or as a gateway bug
        (``Outcome.INTERNAL``, see ``_end_of``) when the checks themselves fail."""
        watch = self._watch
        if watch is None or watch.done():
            return
        try:
            end = self._overdue(now)
        except Exception as bug:
            watch.set_exception(bug)
            self._ticker.discard(self._tick)
            return
        if end is not None:
            watch.set_result(end)
            self._ticker.discard(self._tick)

    def _overdue(self, now: float) -> End | None:
        send_timeout = self.settings.send_timeout
        if now - self._counted_at >= ACCOUNT_INTERVAL:
            self._account()
        if self._up_send_started and now - self._up_send_started > send_timeout:
            self.log.warning("upstream_stuck", seconds=send_timeout)
            return End(Outcome.UPSTREAM_ERROR, closes.UPSTREAM_STUCK)
        if self._down_send_started and now - self._down_send_started > send_timeout:
            self.log.warning("client_stuck", seconds=send_timeout)
            return End(Outcome.CLIENT_GONE, None)
        if self._expires_at is not None and now >= self._expires_at:
            self.log.info("session_cap_reached")
            return End(Outcome.EXPIRED, closes.SESSION_CAP)
        if self._terminate_deadline is not None and now > self._terminate_deadline:
            self.log.warning(
                "termination_missing",
                seconds=round(self._terminate_wait, 3),
                draining=self._draining,
            )
            if self._idle:
                return End(Outcome.IDLE, self._idle_close)
            return End(Outcome.UPSTREAM_ERROR, closes.UPSTREAM_SILENT)
        if not self._terminate_sent and not self._idle:
            audio_at = self._audio_at
            if now - max(self._active_at, audio_at) > self.settings.idle_timeout:
                self._end_idle(now, max(self._active_at, audio_at), "nothing")
            elif now - audio_at > self.settings.no_audio_timeout:
                self._idle_close = closes.no_audio(self.settings.no_audio_timeout)
                self._end_idle(now, audio_at, "no_audio")
        return None

    def _end_idle(self, now: float, since: float, what: str) -> None:
        """The client sent nothing for VOXGATE_IDLE_TIMEOUT, or no audio for
        VOXGATE_NO_AUDIO_TIMEOUT (``what``: nothing, no_audio): end upstream as Terminate
        would. Its final turns and Termination are relayed as they come, then the
        client gets 3006 (see ``_upstream_closed``)."""
        self._idle = True
        self.metrics.idle_sessions.inc()
        self.log.info("session_idle", idle_seconds=round(now - since, 3), without=what)
        self._idle_task = self._loop.create_task(self._send_terminate())

    # ------------------------------------------------------------------ endings

    async def _abandon_upstream(self) -> None:
        """The client is gone or broke the rules: end upstream now (it bills while open)."""
        connection = self.upstream.connection
        await self._send_terminate()
        try:
            async with asyncio.timeout(ABANDON_GRACE):
                async for raw in connection:
                    # Final turns after Terminate: no client to relay them to, but
                    # they still reach Redis.
                    if isinstance(raw, str):
                        message = _parse(raw)
                        if message is not None:
                            self._observe(raw, message)
        except (TimeoutError, OSError):
            pass
        await self._close_upstream()

    async def _close_upstream(self) -> None:
        await self.upstream.connection.close()  # within its close timeout, else dropped

    async def _close_client(self, end: End) -> None:
        assert end.close is not None
        try:
            async with asyncio.timeout(CLEANUP_TIMEOUT):
                if end.error_frame and end.close.code != 1000:
                    await self.client.send_text(end.upstream_error or end.close.error_frame())
                await self.client.close(end.close.code, end.close.reason)
        except (TimeoutError, ConnectionClosed, OSError):
            pass

    def _observe(self, raw: str, message: dict[str, Any]) -> object:
        """Count and publish one upstream message; return its ``type``."""
        kind = message.get("type")
        if kind == "Turn":
            self.turns += 1
            self.metrics.turn_received(message, self.audio_seconds)
        if self.publisher is not None:
            self.publisher.message(raw, message)
        return kind

    def _account(self) -> None:
        """Add what the session used since the last call to the counters, under the
        key serving it now (called every ACCOUNT_INTERVAL, at a key change, at the end)."""
        m = self.metrics
        now = self._loop.time()
        audio = self.audio_seconds
        audio_counter, seconds_counter = m.usage(self.key_alias)
        audio_counter.inc(audio - self._counted_audio)
        seconds_counter.inc(now - self._counted_at)
        if self._on_usage is not None:
            self._on_usage(self.key_alias, audio - self._counted_audio, now - self._counted_at)
        m.bytes_up.inc(self.bytes_up - self._counted_up)
        m.bytes_down.inc(self.bytes_down - self._counted_down)
        self._counted_at, self._counted_audio = now, audio
        self._counted_up, self._counted_down = self.bytes_up, self.bytes_down

    def _record(self, end: End) -> None:
        duration = self._loop.time() - self.opened_at
        self.metrics.sessions_ended.labels(end.outcome).inc()
        self._account()
        self.log.info(
            "session_ended",
            outcome=end.outcome,
            close_code=end.close.code if end.close else None,
            duration_seconds=round(duration, 3),
            audio_seconds=round(self.audio_seconds, 3),
            turns=self.turns,
            failovers=self.failovers,
            reconnects=self.seam.replacements,
            upstream_close=self.upstream_close[0] if self.upstream_close else None,
        )
        if self.publisher is not None:
            self.publisher.ended(
                duration_seconds=round(duration, 3),
                audio_seconds=round(self.audio_seconds, 3),
                turns=self.turns,
                outcome=end.outcome,
                close_code=end.close.code if end.close else None,
                close_reason=end.close.text if end.close else None,
            )


def _capped_begin(begin_text: str, cap: float) -> str:
    """Upstream's Begin with ``expires_at`` no later than ``cap`` (unix seconds): a
    session opened with a token that caps its duration ends at the cap (3008), and the
    client learns when from Begin, as from AssemblyAI. Unchanged when already earlier."""
    begin = _parse(begin_text)
    if begin is None:
        return begin_text
    expires = begin.get("expires_at")
    if isinstance(expires, int | float) and not isinstance(expires, bool) and expires <= cap:
        return begin_text
    begin["expires_at"] = int(cap)
    return json.dumps(begin)


def _parse(raw: str) -> dict[str, Any] | None:
    """An upstream text message as a dict (None when it is not a JSON object)."""
    try:
        message = loads_bounded(raw)
    except ValueError:  # not JSON, or nested too deep (relayed as it came, not parsed)
        return None
    return message if isinstance(message, dict) else None
