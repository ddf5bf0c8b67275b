"""The sessions a gateway process holds, and draining them on shutdown."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from voxgate.logs import get_logger

#: Extra time, past the Terminate deadline, for sessions to close after a drain.
DRAIN_CLOSE_MARGIN = 2.0
_POLL = 0.05

log = get_logger("voxgate.registry")


class Drainable(Protocol):
    def drain(self, deadline: float | None = None) -> None:
        """End cleanly; upstream's Termination is awaited until ``deadline`` (loop time)
        at the latest."""


class SessionRegistry:
    def __init__(self) -> None:
        self._sessions: set[Drainable] = set()
        self._empty = asyncio.Event()
        self._empty.set()
        self.draining = False
        #: When a drained session must have had upstream's Termination (loop time).
        self._terminate_by: float | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    def add(self, session: Drainable) -> None:
        self._sessions.add(session)
        self._empty.clear()
        if self.draining:
            session.drain(self._terminate_by)

    def discard(self, session: Drainable) -> None:
        self._sessions.discard(session)
        if not self._sessions:
            self._empty.set()

    async def drain(self, drain_timeout: float, terminate_timeout: float) -> None:
        """Refuse new sessions; let running ones end by themselves for ``drain_timeout``;
        then end each cleanly (Terminate upstream, relay the final turns, close 1012),
        upstream's Termination awaited ``terminate_timeout`` at most: every session,
        those that arrive during the drain too, has it by the same deadline."""
        self.draining = True
        started = time.monotonic()
        self._terminate_by = asyncio.get_running_loop().time() + drain_timeout + terminate_timeout
        log.info("drain_started", sessions=len(self._sessions), drain_timeout=drain_timeout)
        if await self._wait_empty(drain_timeout):
            log.info("drain_finished", seconds=round(time.monotonic() - started, 3), ended=0)
            return
        remaining = list(self._sessions)
        for session in remaining:
            session.drain(self._terminate_by)
        finished = await self._wait_empty(
            self._terminate_by - asyncio.get_running_loop().time() + DRAIN_CLOSE_MARGIN
        )
        log.info(
            "drain_finished",
            seconds=round(time.monotonic() - started, 3),
            ended=len(remaining),
            left_open=0 if finished else len(self._sessions),
        )

    async def _wait_empty(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._empty.wait()
        except TimeoutError:
            return False
        return True
