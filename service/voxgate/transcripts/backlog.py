"""A bounded, ordered backlog that sheds partial transcripts before final ones.

Pure data structure (no I/O). Envelopes wait here while Redis is slow or down.
When full, the oldest *partial* goes first; a final is dropped only when the
backlog holds nothing but finals. Every drop is reported to the caller.

The batch being sent (:meth:`peek` up to :meth:`pop`) is never shed: it is on its
way to Redis, and popping it after the send must remove exactly what was sent.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Entry(Generic[T]):
    item: T
    final: bool


class Backlog(Generic[T]):
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._entries: deque[Entry[T]] = deque()
        self._partials = 0
        self._in_flight = 0  # the first entries, handed out by peek and not yet popped

    def __len__(self) -> int:
        return len(self._entries)

    def push(self, item: T, *, final: bool) -> Entry[T] | None:
        """Append ``item``; return what was dropped to make room (None if nothing)."""
        dropped: Entry[T] | None = None
        if len(self._entries) >= self.capacity:
            dropped = self._drop_oldest(final=False)
            if dropped is None:
                if not final:
                    return Entry(item, final)  # only finals wait: shed the incoming partial
                dropped = self._drop_oldest(final=True)
                if dropped is None:
                    return Entry(item, final)  # everything is in flight
        self._entries.append(Entry(item, final))
        if not final:
            self._partials += 1
        return dropped

    def _drop_oldest(self, *, final: bool) -> Entry[T] | None:
        """Remove the oldest entry of that kind that is not in flight."""
        if not final and not self._partials:
            return None
        for index in range(self._in_flight, len(self._entries)):
            entry = self._entries[index]
            if entry.final is final:
                del self._entries[index]
                if not final:
                    self._partials -= 1
                return entry
        return None

    def peek(self, count: int) -> list[Entry[T]]:
        """The first ``count`` entries, kept from shedding until :meth:`pop`."""
        self._in_flight = min(count, len(self._entries))
        return [self._entries[i] for i in range(self._in_flight)]

    def pop(self, count: int) -> None:
        for _ in range(min(count, len(self._entries))):
            entry = self._entries.popleft()
            if not entry.final:
                self._partials -= 1
        self._in_flight = 0
