"""Client text messages (``Terminate``, ``ForceEndpoint``, ``KeepAlive``,
``UpdateConfiguration``) and the size limit of any message (pure).

The gateway reads a text message with :func:`client_text`: it must be JSON (else 3006,
as AssemblyAI answers); ``Terminate`` is the one type the gateway acts on, every other
message (a new type, ``UpdateConfiguration`` with any values, a JSON value that is not
an object) goes upstream as it came, and upstream answers for it (AssemblyAI clamps
out-of-range ``UpdateConfiguration`` values rather than closing). :func:`parse_control`
is the strict reading the simulator uses until it has its own (issue 16).
"""

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


def client_text(text: str) -> ControlType | None:
    """The gateway's reading of a client text frame: its known type, or None (forward it
    as it is). Raise 3006 only for text that is not JSON (or nested too deep to read)."""
    return read_client_text(text)[0]


def read_client_text(text: str) -> tuple[ControlType | None, dict[str, Any]]:
    """As :func:`client_text`, with the message itself ({} when it is not an object)."""
    message = _loads(text)
    if not isinstance(message, dict):
        return None, {}
    kind = message.get("type")
    if not isinstance(kind, str):
        return None, message
    try:
        return ControlType(kind), message
    except ValueError:
        return None, message


def _loads(text: str) -> Any:
    try:
        return loads_bounded(text)
    except UnsafeJson as unsafe:
        raise ProtocolViolation(
            CloseCode.INVALID_MESSAGE, Violation.BAD_JSON, f"Invalid Message: {unsafe}"
        ) from None
    except ValueError:
        raise ProtocolViolation(
            CloseCode.INVALID_MESSAGE, Violation.BAD_JSON, "Invalid Message: not valid JSON"
        ) from None


def parse_control(text: str) -> tuple[ControlType, dict[str, Any]]:
    """Parse a client text frame strictly; raise 3006 for bad JSON or an unknown type."""
    message = _loads(text)
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
