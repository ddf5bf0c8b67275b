"""structlog set-up: JSON in containers, readable on a terminal, context per session.

Every log line is bounded, whatever a client or upstream put in it: each string value
is escaped (control and line-separator characters as ``\\xNN``/``\\uNNNN``) and cut to
``MAX_VALUE_CHARS`` with its full length logged beside it as ``<key>_len``; containers
keep ``MAX_ITEMS`` items; a rendered line longer than ``MAX_LINE_CHARS`` is replaced by
a short one that says so (see docs/limits.md).
"""

from __future__ import annotations

import logging
import re
import reprlib
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Final

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}

#: The most of one string value kept in a log line (characters).
MAX_VALUE_CHARS: Final = 200
#: Values the gateway writes itself that may run longer (a traceback).
LONG_VALUE_CHARS: Final = {"exception": 4000}
#: The most items of a list or dict value kept (and levels of nesting).
MAX_ITEMS: Final = 32
MAX_DEPTH: Final = 3
#: The longest rendered log line (characters); a longer one is replaced by a note.
MAX_LINE_CHARS: Final = 8192
#: Characters escaped: C0 and C1 controls, DEL, Unicode line and paragraph separators.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: In a traceback, line breaks and tabs are the gateway's own.
_UNSAFE_LONG = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


#: Beyond MAX_DEPTH a value is shown by a repr bounded as it is built (never the
#: whole value's repr, then cut).
_SHORT = reprlib.Repr()
_SHORT.maxlevel = 2
_SHORT.maxstring = _SHORT.maxother = MAX_VALUE_CHARS
_SHORT.maxlong = 40
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 8
_SHORT.maxfrozenset = _SHORT.maxdeque = _SHORT.maxarray = 8


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def bound_text(text: str, limit: int = MAX_VALUE_CHARS, unsafe: re.Pattern[str] = _UNSAFE) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut), then escaped."""
    cut = text if len(text) <= limit else text[:limit] + "\u2026"
    return cut if cut.isprintable() and unsafe is _UNSAFE else unsafe.sub(_escape_char, cut)


def _bound(value: object, depth: int) -> object:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return bound_text(value)
    if isinstance(value, bytes | bytearray):
        return bound_text(bytes(value[: MAX_VALUE_CHARS + 1]).decode("latin-1"))
    if depth >= MAX_DEPTH:
        return bound_text(_SHORT.repr(value)[: MAX_VALUE_CHARS + 1])
    if isinstance(value, Mapping):
        items = list(value.items())[:MAX_ITEMS]
        return {bound_text(str(k), 64): _bound(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple | set | frozenset):
        return [_bound(v, depth + 1) for v in list(value)[:MAX_ITEMS]]
    return bound_text(str(value))


def bound_values(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: every value of the line bounded and escaped; a string cut
    short gets ``<key>_len``, its full length."""
    for key, value in list(event_dict.items()):
        if isinstance(value, str):
            limit = LONG_VALUE_CHARS.get(key, MAX_VALUE_CHARS)
            unsafe = _UNSAFE_LONG if key in LONG_VALUE_CHARS else _UNSAFE
            if len(value) > limit:
                event_dict[f"{key}_len"] = len(value)
            event_dict[key] = bound_text(value, limit, unsafe)
        elif not (value is None or isinstance(value, bool | int | float)):
            if isinstance(value, bytes | bytearray) and len(value) > MAX_VALUE_CHARS:
                event_dict[f"{key}_len"] = len(value)
            event_dict[key] = _bound(value, 0)
    return event_dict


def indent_traceback(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor (console only): every line of a traceback after its first is
    indented, so text a client put in an exception message cannot pass for a log line
    of its own (JSON escapes line breaks by itself)."""
    text = event_dict.get("exception")
    if isinstance(text, str) and "\n" in text:
        event_dict["exception"] = text.replace("\n", "\n  ")
    return event_dict


class _ThroughStructlog(logging.Handler):
    """Hands a stdlib record (uvicorn's own ``uvicorn.error``) to structlog, so it is
    bounded and escaped like every other line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            get_logger(record.name).log(
                record.levelno, "uvicorn", message=record.getMessage(), exc_info=record.exc_info
            )
        except Exception:
            self.handleError(record)


class CappedRenderer:
    """A renderer whose lines are at most ``cap`` characters: a longer line is replaced
    by its event, level and time, with ``line_truncated`` and the length it had."""

    def __init__(self, renderer: structlog.typing.Processor, cap: int = MAX_LINE_CHARS) -> None:
        self.renderer = renderer
        self.cap = cap

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
        kept = {k: event_dict[k] for k in ("event", "level", "timestamp") if k in event_dict}
        line = self.renderer(logger, method, event_dict)
        if not isinstance(line, str | bytes) or len(line) <= self.cap:
            return line
        kept["line_truncated"] = True
        kept["line_chars"] = len(line)
        return self.renderer(logger, method, kept)


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    """``fmt``: ``json``, ``console``, or ``auto`` (console on a terminal, else JSON)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            bound_values,
            *([] if use_json else [indent_traceback]),
            CappedRenderer(renderer),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.ERROR)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # uvicorn's own access/error logs: keep errors, drop per-request chatter.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    error = logging.getLogger("uvicorn.error")
    error.handlers = [_ThroughStructlog()]
    error.propagate = False


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
