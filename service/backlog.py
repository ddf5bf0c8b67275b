"""A bounded, ordered backlog that sheds partial transcripts before final ones.

Pure data structure (no I/O). Envelopes wait here while Redis is slow or down.
When full, the oldest *partial* goes first; a final is dropped only when the
backlog holds nothing but finals. Every drop is reported to the caller.
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

    def __len__(self) -> int:
        return len(self._entries)

    def push(self, item: T, *, final: bool) -> Entry[T] | None:
        """Append ``item``; return what was dropped to make room (None if nothing)."""
        dropped: Entry[T] | None = None
        if len(self._entries) >= self.capacity:
            if self._partials:
                dropped = self._drop_oldest_partial()
            elif not final:
                return Entry(item, final)  # only finals wait: shed the incoming partial
            else:
                dropped = self._pop_left()
        self._entries.append(Entry(item, final))
        if not final:
            self._partials += 1
        return dropped

    def _drop_oldest_partial(self) -> Entry[T]:
        for index, entry in enumerate(self._entries):
            if not entry.final:
                del self._entries[index]
                self._partials -= 1
                return entry
        raise AssertionError("partials counted but none found")

    def peek(self, count: int) -> list[Entry[T]]:
        return [self._entries[i] for i in range(min(count, len(self._entries)))]

    def pop(self, count: int) -> None:
        for _ in range(min(count, len(self._entries))):
            self._pop_left()

    def _pop_left(self) -> Entry[T]:
        entry = self._entries.popleft()
        if not entry.final:
            self._partials -= 1
        return entry
