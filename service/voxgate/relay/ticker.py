"""One timer for the periodic checks of every session, instead of a task per session.

A task that sleeps and wakes four times a second costs a future, a timer and a task
step each time; with hundreds of sessions that was 2-3 % of the gateway's CPU
(docs/performance.md). Here one ``call_later`` timer calls each registered function
with the loop's time, and re-arms itself while any is registered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from voxgate.logs import get_logger

log = get_logger("voxgate.ticker")

#: Called with the loop's time at each tick.
Tick = Callable[[float], None]


class Ticker:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._ticks: dict[Tick, None] = {}  # ordered, so sessions are checked in turn
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._ticks)

    def add(self, tick: Tick) -> None:
        """Call ``tick`` every ``interval`` seconds (from the next tick) until discarded."""
        self._ticks[tick] = None
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._run)

    def discard(self, tick: Tick) -> None:
        self._ticks.pop(tick, None)
        if not self._ticks and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _run(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for tick in list(self._ticks):  # a tick may discard itself
            try:
                tick(now)
            except Exception:  # one session's bug must not stop the others' checks
                log.exception("tick_failed")
        self._timer = loop.call_later(self.interval, self._run) if self._ticks else None
