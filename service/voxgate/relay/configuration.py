"""What a client set with ``UpdateConfiguration``, kept for a replacement upstream (pure).

Upstream applies an ``UpdateConfiguration`` to the running session only; a replacement
opened after a drop knows only the connection's query. The session keeps the merged
latest value of every field the client set (a later message's value replaces an
earlier one's) and sends it to the replacement as one ``UpdateConfiguration`` right
after its ``Begin``, before the replay, so the replayed audio is heard as the client
configured it.

Bounded: the merged fields, as JSON, stay within the client message limit (128 KB,
``MAX_MESSAGE_BYTES``); a message that would take them over starts afresh from that
message's fields alone (each message is within that limit itself).
"""

from __future__ import annotations

import json
from typing import Any


class Configuration:
    __slots__ = ("_fields", "_limit")

    def __init__(self, limit: int) -> None:
        self._fields: dict[str, Any] = {}
        self._limit = limit

    def __bool__(self) -> bool:
        return bool(self._fields)

    @property
    def names(self) -> list[str]:
        """The fields the client set (they count as "asked for" when upstream refuses
        one, see ``voxgate.upstream.failures``)."""
        return list(self._fields)

    def update(self, message: dict[str, Any]) -> bool | None:
        """Merge one ``UpdateConfiguration`` message (already checked). Returns the
        ``format_turns`` it sets, if it sets one (None otherwise)."""
        fields = {name: value for name, value in message.items() if name != "type"}
        merged = {**self._fields, **fields}
        if len(json.dumps(merged)) > self._limit:
            merged = fields
        self._fields = merged
        return _as_bool(fields.get("format_turns"))

    def message(self) -> str:
        """The ``UpdateConfiguration`` a replacement upstream is sent first."""
        return json.dumps({"type": "UpdateConfiguration", **self._fields})


def _as_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None
