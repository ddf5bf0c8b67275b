"""Client text messages (``Terminate``, ``ForceEndpoint``, ``KeepAlive``,
``UpdateConfiguration``) and the size limit of any message (pure)."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from voxgate.protocol.errors import CloseCode, ProtocolViolation, Violation
from voxgate.protocol.jsonguard import UnsafeJson, loads_bounded
from voxgate.protocol.params import check_param

#: AssemblyAI refuses a message over 128 KB with close 1009.
MAX_MESSAGE_BYTES = 128 * 1024


class ControlType(StrEnum):
    TERMINATE = "Terminate"
    FORCE_ENDPOINT = "ForceEndpoint"
    KEEP_ALIVE = "KeepAlive"
    UPDATE_CONFIGURATION = "UpdateConfiguration"


def parse_control(text: str) -> tuple[ControlType, dict[str, Any]]:
    """Parse a client text frame; raise 3006 for bad JSON or an unknown type."""
    try:
        message = loads_bounded(text)
    except UnsafeJson as unsafe:
        raise ProtocolViolation(
            CloseCode.INVALID_MESSAGE, Violation.BAD_JSON, f"Invalid Message: {unsafe}"
        ) from None
    except ValueError:
        raise ProtocolViolation(
            CloseCode.INVALID_MESSAGE, Violation.BAD_JSON, "Invalid Message: not valid JSON"
        ) from None
    if not isinstance(message, dict):
        raise ProtocolViolation(
            CloseCode.INVALID_MESSAGE, Violation.BAD_JSON, "Invalid Message: not a JSON object"
        )
    raw_type = message.get("type")
    try:
        kind = ControlType(str(raw_type))
    except ValueError:
        shown = str(raw_type)[:40]
        raise ProtocolViolation(
            CloseCode.INVALID_MESSAGE,
            Violation.UNKNOWN_MESSAGE,
            f"Invalid Message Type: {shown}",
        ) from None
    if kind is ControlType.UPDATE_CONFIGURATION:
        for name, value in message.items():
            if name == "type" or value is None:
                continue
            check_param(name, _as_param_text(value))
    return kind, message


def _as_param_text(value: Any) -> str:
    """Render a JSON value the way it would arrive as a query parameter."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)
