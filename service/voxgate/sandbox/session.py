"""One simulated upstream session: ``Begin``, then audio and control messages until
``Termination``, a refusal or a scripted failure. The sockets come from ``server``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from voxgate.sandbox.behaviours import Behaviour, Kind
from voxgate.sandbox.engine import HEARTBEAT_AUDIO_MS, Transcriber
from voxgate.sandbox.rules import (
    Close,
    Pace,
    Refusal,
    SessionConfig,
    apply_update,
    audio_ms,
    close_reason,
    parse_client_message,
)

#: Deadline of any one send to a client that stopped reading.
SEND_TIMEOUT = 10.0


@dataclass(slots=True)
class SessionRecord:
    """What a test can see of one upstream session (never the key itself)."""

    id: str
    behaviour: str
    params: list[tuple[str, str]]
    opened_at: float
    closed_at: float | None = None
    end: str | None = None
    close_code: int | None = None
    audio_seconds: float = 0.0
    turns: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "behaviour": self.behaviour,
            "params": self.params,
            "opened_at": self.opened_at,
            "closed_at": self.closed_at,
            "end": self.end,
            "close_code": self.close_code,
            "audio_seconds": round(self.audio_seconds, 3),
            "turns": self.turns,
        }


@dataclass(slots=True)
class Admission:
    """What the upgrade decided for a connection: its key's behaviour and parameters."""

    behaviour: Behaviour
    config: SessionConfig | None
    refusal: Refusal | None
    max_session_seconds: float


async def send_error(connection: ServerConnection, code: int, reason: str) -> None:
    message = json.dumps({"type": "Error", "error_code": code, "error": reason})
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        async with asyncio.timeout(SEND_TIMEOUT):
            await connection.send(message)


async def close_with_error(connection: ServerConnection, code: int, reason: str) -> None:
    """``Error`` then the close, as AssemblyAI ends a session it refuses.

    What the client already sent is read and dropped while the close handshake runs:
    unread, it would fill the connection's queue, stop its reading, and the client's
    close frame would wait behind it until the close timeout (10 s)."""
    await send_error(connection, code, reason)

    async def drain() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for _ in connection:
                pass

    reader = asyncio.create_task(drain())
    try:
        await connection.close(code, close_reason(reason))
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


class SandboxSession:
    """One accepted session: Begin, then audio and control messages until the end."""

    def __init__(
        self,
        connection: ServerConnection,
        record: SessionRecord,
        admission: Admission,
        pace_lookahead_seconds: float,
    ) -> None:
        assert admission.config is not None
        self.connection = connection
        self.record = record
        self.config = config = admission.config
        self.behaviour = admission.behaviour
        self.max_seconds = admission.max_session_seconds
        self.transcriber = Transcriber(
            encoding=config.encoding,
            bytes_per_ms=config.bytes_per_ms,
            format_turns=config.format_turns,
            min_turn_silence_ms=config.min_turn_silence_ms,
            max_turn_silence_ms=config.max_turn_silence_ms,
            u3_pro=config.u3_pro,
            speaker_labels=config.speaker_labels,
            max_speakers=config.max_speakers,
            language=(config.language_codes or ("en",))[0] if config.language_detection else None,
            acknowledge_silence=config.acknowledge_silence,
            speech_started=config.u3_pro,
        )
        self.inactivity = config.inactivity_timeout
        self.pace = Pace(pace_lookahead_seconds)
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()
        self._next_heartbeat = HEARTBEAT_AUDIO_MS
        self._finals: list[dict[str, Any]] = []  # ``revise@BYTES``: the turns to revise

    async def send(self, message: dict[str, Any]) -> None:
        async with asyncio.timeout(SEND_TIMEOUT):
            await self.connection.send(json.dumps(message))

    async def run(self) -> None:
        record = self.record
        if self.behaviour.begin_after:
            await asyncio.sleep(self.behaviour.begin_after)
            self.started = self.loop.time()
        await self.send(
            {
                "type": "Begin",
                "id": record.id,
                "expires_at": int(time.time() + self.max_seconds),
                "configuration": self.config.begin_configuration(),
            }
        )
        for notice in self.config.notices:
            await self.send(notice.message())
        deadline = self.started + self.max_seconds
        try:
            async with asyncio.timeout_at(deadline):
                await self._receive()
        except TimeoutError:
            if self.loop.time() >= deadline:
                await self._close(
                    Close.SESSION_EXPIRED, "Session Expired: maximum session duration reached"
                )
            else:
                await self._close(Close.INVALID_MESSAGE, "Session idle for too long")
        except Refusal as refusal:
            record.end = "violation"
            await self._close(refusal.code, refusal.reason)
        finally:
            record.audio_seconds = self._audio_seconds()
            record.turns = self.transcriber.turns_sent

    async def _receive(self) -> None:
        connection = self.connection
        echo = self.behaviour.kind is Kind.ECHO
        dropping = self.behaviour.kind is Kind.DROP
        drop_after = self.behaviour.after_seconds if dropping else None
        drop_after_frames = self.behaviour.after_frames if dropping else 0
        frames = 0
        while True:
            if self.inactivity is not None:
                async with asyncio.timeout(self.inactivity):
                    message = await connection.recv()
            else:
                message = await connection.recv()
            if isinstance(message, bytes):
                millis = audio_ms(len(message), self.config)
                if millis is not None:
                    self.pace.feed(millis / 1000.0, self.loop.time())
                if echo:
                    await connection.send('{"type":"Echo","n":"' + message[:8].hex() + '"}')
                    continue
                frames += 1
                before = self.transcriber.audio_ms
                turns = self.transcriber.feed(message)
                if millis is None:  # compressed: what the meter read counts
                    gained = self.transcriber.audio_ms - before
                    self.pace.feed(gained / 1000.0, self.loop.time())
                started = self.transcriber.speech_started()
                if (
                    started is not None
                    and self.behaviour.kind is Kind.REVISE
                    and not self.transcriber.announce_speech
                ):
                    await self.send(
                        {"type": "SpeechStarted", "timestamp": started, "confidence": 0.9}
                    )
                await self._send_turns(turns)
                if self.config.session_heartbeat:
                    await self._heartbeat()
                if drop_after_frames:
                    if frames >= drop_after_frames:
                        await self._drop()
                        return
                elif drop_after is not None and self._audio_seconds() >= drop_after:
                    await self._drop()
                    return
                continue
            fields = parse_client_message(message)
            kind = fields["type"]
            if kind == "Terminate":
                if self.behaviour.kind is Kind.NO_TERMINATION:
                    self.record.end = "terminate_ignored"
                    continue  # read on, answer never: the client's deadline must end it
                await self._terminate()
                return
            if kind == "ForceEndpoint":
                await self._send_turns(self.transcriber.force_endpoint())
            elif kind == "UpdateConfiguration":
                self.config, notices = apply_update(self.config, fields)
                self.transcriber.min_silence = self.config.min_turn_silence_ms
                self.transcriber.max_silence = self.config.max_turn_silence_ms
                self.transcriber.format_turns = self.config.format_turns
                self.transcriber.acknowledge_silence = self.config.acknowledge_silence
                for notice in notices:
                    await self.send(notice.message())

    def _audio_seconds(self) -> float:
        """Audio received so far: PCM by its size, compressed by what the meter read."""
        return self.transcriber.audio_ms / 1000.0

    async def _heartbeat(self) -> None:
        """``session_heartbeat``: one Heartbeat per HEARTBEAT_AUDIO_MS of audio."""
        received = self.transcriber.audio_ms
        if received < self._next_heartbeat:
            return
        self._next_heartbeat = (received // HEARTBEAT_AUDIO_MS + 1) * HEARTBEAT_AUDIO_MS
        elapsed_ms = max(1.0, (self.loop.time() - self.started) * 1000.0)
        await self.send(
            {
                "type": "Heartbeat",
                "total_audio_received_ms": int(received),
                "total_duration_ms": int(elapsed_ms),
                "realtime_factor": round(received / elapsed_ms, 3),
                "max_speech_probability": 0.95 if self.transcriber.heard_speech() else 0.02,
            }
        )

    async def _send_turns(self, turns: list[dict[str, Any]]) -> None:
        """Send the engine's messages; after each turn's last final an
        LLMGatewayResponse with ``llm_gateway`` (and for ``revise@BYTES`` keys)."""
        revise = self.behaviour.kind is Kind.REVISE
        llm = self.config.llm_gateway
        for turn in turns:
            await self.send(turn)
            if turn["type"] != "Turn" or not _completes(turn, self.transcriber):
                continue
            if revise:
                self._finals.append(turn)
                await self.send(
                    {
                        "type": "LLMGatewayResponse",
                        "turn_order": turn["turn_order"],
                        "transcript": turn["transcript"],
                        "data": {"summary": turn["transcript"][:40]},
                    }
                )
            elif llm is not None:
                await self.send(llm_response(turn, llm))

    async def _terminate(self) -> None:
        await self._send_turns(self.transcriber.finish())
        if self.behaviour.kind is Kind.REVISE:
            await self.send(speaker_revision(self._finals, self.behaviour.size))
        elif self.config.speaker_labels:
            revision = self.transcriber.revision()
            if revision is not None:
                await self.send(revision)
        await self.send(
            {
                "type": "Termination",
                "audio_duration_seconds": round(self._audio_seconds()),
                "session_duration_seconds": round(self.loop.time() - self.started),
            }
        )
        self.record.end = "terminated"
        self.record.close_code = 1000
        await self.connection.close(1000)

    async def _drop(self) -> None:
        code, reason = self.behaviour.code, self.behaviour.reason
        self.record.end = "dropped"
        self.record.close_code = code
        if code == Close.ABNORMAL:
            self.connection.transport.abort()  # no close frame: the peer sees 1006
            return
        await self._close(code, reason)

    async def _close(self, code: int, reason: str) -> None:
        self.record.close_code = code
        await close_with_error(self.connection, code, reason)


def _completes(turn: dict[str, Any], transcriber: Transcriber) -> bool:
    """Whether ``turn`` is its turn's last final (the formatted one with format_turns;
    U3 Pro sends one final only, formatted)."""
    if not turn.get("end_of_turn"):
        return False
    return bool(turn.get("turn_is_formatted")) or not transcriber.format_turns


def llm_response(turn: dict[str, Any], llm: Mapping[str, Any]) -> dict[str, Any]:
    """``LLMGatewayResponse`` for a finished turn (ref D): the reply a chat-completion
    model would give, scripted (the simulator runs no model)."""
    return {
        "type": "LLMGatewayResponse",
        "turn_order": turn["turn_order"],
        "transcript": turn["transcript"],
        "data": {
            "model": str(llm.get("model", ""))[:100],
            "choices": [
                {
                    "message": {
                        "role": "assistant",
                        "content": f"You said: {turn['transcript'][:200]}",
                    }
                }
            ],
        },
    }


def speaker_revision(finals: list[dict[str, Any]], size: int) -> dict[str, Any]:
    """A ``SpeakerRevision`` relabelling every final turn as speaker B; the last
    revision's words are repeated until the message is about ``size`` bytes (a long
    diarized call's revision is large). Word times stay those of the turn."""
    revisions = [
        {
            "turn_order": turn["turn_order"],
            "speaker_label": "B",
            "words": [{**word, "speaker": "B"} for word in turn["words"]],
        }
        for turn in finals
    ]
    message: dict[str, Any] = {"type": "SpeakerRevision", "revisions": revisions}
    if revisions and revisions[-1]["words"]:
        words = revisions[-1]["words"]
        one = len(json.dumps(words[0])) + 2
        missing = size - len(json.dumps(message))
        if missing > 0:
            words.extend(dict(words[i % len(words)]) for i in range(missing // one))
    return message
