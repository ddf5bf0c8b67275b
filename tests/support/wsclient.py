"""A minimal scripted client for gateway tests (raw websockets, full control)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.gateway import CLIENT_KEY

T = TypeVar("T")

#: Deadline for any one wait in a test session.
WAIT = 10.0
DEFAULT_QUERY = "sample_rate=16000&format_turns=true&speech_model=universal-streaming-english"


@dataclass
class Outcome:
    messages: list[dict[str, Any]] = field(default_factory=list)
    code: int | None = None
    reason: str = ""

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    @property
    def finals(self) -> list[dict[str, Any]]:
        return [m for m in self.of_type("Turn") if m["end_of_turn"]]


async def open_client(
    url: str, key: str | None = CLIENT_KEY, query: str = DEFAULT_QUERY, origin: str | None = None
) -> ClientConnection:
    headers = {"Authorization": key} if key is not None else {}
    return await connect(
        f"{url}/v3/ws?{query}",
        additional_headers=headers,
        origin=origin,  # type: ignore[arg-type]  # websockets types it as its Origin NewType
        open_timeout=WAIT,
        compression=None,
    )


async def collect(ws: ClientConnection, outcome: Outcome) -> Outcome:
    """Read until the server closes; record messages and the close."""
    try:
        async with asyncio.timeout(WAIT * 3):
            async for raw in ws:
                outcome.messages.append(json.loads(raw))
    except ConnectionClosed:
        pass
    outcome.code = ws.close_code
    outcome.reason = ws.close_reason or ""
    return outcome


async def session(
    url: str,
    frames: Sequence[bytes | str] = (),
    *,
    key: str | None = CLIENT_KEY,
    query: str = DEFAULT_QUERY,
    terminate: bool = True,
    frame_interval: float = 0.0,
    origin: str | None = None,
) -> Outcome:
    """Send ``frames`` (then Terminate), and gather everything until the close."""
    outcome = Outcome()
    ws = await open_client(url, key, query, origin)
    reader = asyncio.create_task(collect(ws, outcome))
    try:
        for frame in frames:
            await ws.send(frame)
            if frame_interval:
                await asyncio.sleep(frame_interval)
        if terminate:
            await ws.send(json.dumps({"type": "Terminate"}))
    except ConnectionClosed:
        pass
    return await reader


def run(coro: Awaitable[T], deadline: float | None = None) -> T:
    """Run ``coro`` on a fresh event loop, within ``deadline`` seconds when one is given."""

    async def bounded() -> T:
        async with asyncio.timeout(deadline):
            return await coro

    return asyncio.run(bounded())
