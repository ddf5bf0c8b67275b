"""One simulated upstream session: ``Begin``, then audio and control messages until
``Termination``, a refusal or a scripted failure. The sockets come from ``server``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from voxgate.protocol import (
    CloseCode,
    ControlType,
    Encoding,
    PaceGuard,
    ProtocolViolation,
    StreamParams,
    check_audio_frame,
    parse_control,
    truncate_reason,
)
from voxgate.sandbox.behaviours import Behaviour, Kind
from voxgate.sandbox.engine import (
    DEFAULT_MAX_TURN_SILENCE_MS,
    DEFAULT_MIN_TURN_SILENCE_MS,
    Transcriber,
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
    params: StreamParams | None
    violation: ProtocolViolation | None
    max_session_seconds: float


async def send_error(connection: ServerConnection, code: int, reason: str) -> None:
    message = json.dumps({"type": "Error", "error_code": code, "error": reason})
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        async with asyncio.timeout(SEND_TIMEOUT):
            await connection.send(message)


class SandboxSession:
    """One accepted session: Begin, then audio and control messages until the end."""

    def __init__(
        self,
        connection: ServerConnection,
        record: SessionRecord,
        admission: Admission,
        pace_burst_seconds: float,
    ) -> None:
        assert admission.params is not None
        self.connection = connection
        self.record = record
        self.params = admission.params
        self.behaviour = admission.behaviour
        self.max_seconds = admission.max_session_seconds
        values = dict(self.params.forward)
        per_second = self.params.bytes_per_second
        self.transcriber = Transcriber(
            encoding=Encoding(self.params.encoding),  # StreamParams.encoding is a str now
            bytes_per_ms=per_second / 1000.0 if per_second else None,
            format_turns=self.params.format_turns(),
            min_turn_silence_ms=float(
                values.get(
                    "min_turn_silence",
                    values.get(
                        "min_end_of_turn_silence_when_confident", DEFAULT_MIN_TURN_SILENCE_MS
                    ),
                )
            ),
            max_turn_silence_ms=float(values.get("max_turn_silence", DEFAULT_MAX_TURN_SILENCE_MS)),
        )
        inactivity = values.get("inactivity_timeout")
        self.inactivity = float(inactivity) if inactivity else None
        self.pace = PaceGuard(pace_burst_seconds)
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()
        self._finals: list[dict[str, Any]] = []  # ``revise@BYTES``: the turns to revise

    async def send(self, message: dict[str, Any]) -> None:
        async with asyncio.timeout(SEND_TIMEOUT):
            await self.connection.send(json.dumps(message))

    async def run(self) -> None:
        record = self.record
        await self.send(
            {
                "type": "Begin",
                "id": record.id,
                "expires_at": int(time.time() + self.max_seconds),
            }
        )
        deadline = self.started + self.max_seconds
        try:
            async with asyncio.timeout_at(deadline):
                await self._receive()
        except TimeoutError:
            if self.loop.time() >= deadline:
                await self._close(3008, "Session Expired: maximum session duration reached")
            else:
                await self._close(3006, "Session idle for too long")
        except ProtocolViolation as violation:
            record.end = "violation"
            await self._close(violation.code, violation.reason)
        finally:
            record.audio_seconds = self.pace.audio_seconds
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
                seconds = check_audio_frame(len(message), self.params)
                self.pace.feed(seconds, self.loop.time())
                if echo:
                    await connection.send('{"type":"Echo","n":"' + message[:8].hex() + '"}')
                    continue
                frames += 1
                turns = self.transcriber.feed(message)
                started = self.transcriber.speech_started()
                if started is not None and self.behaviour.kind is Kind.REVISE:
                    await self.send(
                        {"type": "SpeechStarted", "timestamp": started, "confidence": 0.9}
                    )
                await self._send_turns(turns)
                if drop_after_frames:
                    if frames >= drop_after_frames:
                        await self._drop()
                        return
                elif drop_after is not None and self.pace.audio_seconds >= drop_after:
                    await self._drop()
                    return
                continue
            kind, fields = parse_control(message)
            if kind is ControlType.TERMINATE:
                if self.behaviour.kind is Kind.NO_TERMINATION:
                    self.record.end = "terminate_ignored"
                    continue  # read on, answer never: the client's deadline must end it
                await self._terminate()
                return
            if kind is ControlType.FORCE_ENDPOINT:
                await self._send_turns(self.transcriber.force_endpoint())
            elif kind is ControlType.UPDATE_CONFIGURATION:
                self.transcriber.update(fields)

    async def _send_turns(self, turns: list[dict[str, Any]]) -> None:
        """Send turns; ``revise@BYTES``: an LLMGatewayResponse after each final one."""
        for turn in turns:
            await self.send(turn)
            if self.behaviour.kind is Kind.REVISE and _completes(turn, self.transcriber):
                self._finals.append(turn)
                await self.send(
                    {
                        "type": "LLMGatewayResponse",
                        "turn_order": turn["turn_order"],
                        "transcript": turn["transcript"],
                        "data": {"summary": turn["transcript"][:40]},
                    }
                )

    async def _terminate(self) -> None:
        await self._send_turns(self.transcriber.finish())
        if self.behaviour.kind is Kind.REVISE:
            await self.send(speaker_revision(self._finals, self.behaviour.size))
        await self.send(
            {
                "type": "Termination",
                "audio_duration_seconds": round(self.pace.audio_seconds),
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
        if code == CloseCode.ABNORMAL:
            self.connection.transport.abort()  # no close frame: the peer sees 1006
            return
        await self._close(code, reason)

    async def _close(self, code: int, reason: str) -> None:
        self.record.close_code = code
        await send_error(self.connection, code, reason)
        await self.connection.close(code, truncate_reason(reason))


def _completes(turn: dict[str, Any], transcriber: Transcriber) -> bool:
    """Whether ``turn`` is its turn's last final (the formatted one with format_turns)."""
    if not turn.get("end_of_turn"):
        return False
    return bool(turn.get("turn_is_formatted")) or not transcriber.format_turns


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
