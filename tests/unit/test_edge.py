"""The edge limits, pure: admission of a new connection, the cap in force, the log
throttle; and the bounds on every log line."""

from __future__ import annotations

import json

import pytest
import structlog
from voxgate.edge.http import refusal_response
from voxgate.edge.limits import (
    FD_HEADROOM,
    FD_LAST,
    PROBE_SLOTS,
    EdgeLimits,
    Refusal,
    Throttle,
    Tier,
    admission,
    connection_cap,
)
from voxgate.logs import (
    MAX_LINE_CHARS,
    MAX_VALUE_CHARS,
    CappedRenderer,
    bound_values,
    configure_logging,
    indent_traceback,
)
from voxgate.settings import Settings, SettingsError

LIMITS = EdgeLimits.build(
    max_head_bytes=16384,
    max_headers=100,
    handshake_timeout=5.0,
    max_connections=100,
    max_handshakes=10,
    fd_limit=1024,
)


def test_the_connection_cap_fits_the_descriptor_limit() -> None:
    assert connection_cap(10_000, 1024) == (1024 - FD_HEADROOM) // 2 == 480
    assert connection_cap(100, 1_048_576) == 100
    assert connection_cap(10_000, 10) == 1  # never zero
    assert LIMITS.max_connections == 100


def test_admission_lets_in_below_every_limit() -> None:
    assert admission(LIMITS, 99, 9, 0, fd=500) == (Tier.OPEN, None)


@pytest.mark.parametrize(
    ("open_connections", "handshakes", "fd", "reason"),
    [
        (100, 0, 200, Refusal.CONNECTION_CAP),
        (10, 10, 200, Refusal.HANDSHAKE_CAP),
        (10, 0, 1024 - FD_HEADROOM, Refusal.DESCRIPTORS),
    ],
)
def test_a_full_process_keeps_probe_slots_then_refuses(
    open_connections: int, handshakes: int, fd: int, reason: Refusal
) -> None:
    assert admission(LIMITS, open_connections, handshakes, 0, fd) == (Tier.PROBES_ONLY, reason)
    full = admission(LIMITS, open_connections, handshakes, PROBE_SLOTS, fd)
    assert full == (Tier.REFUSED, reason)


def test_the_last_descriptors_are_never_given_to_a_client() -> None:
    assert admission(LIMITS, 0, 0, 0, fd=1024 - FD_LAST) == (Tier.REFUSED, Refusal.DESCRIPTORS)


def test_the_throttle_logs_once_per_period_with_the_count() -> None:
    throttle = Throttle(10.0)
    assert throttle.hit(0.0) == 1
    assert [throttle.hit(t) for t in (1.0, 2.0, 9.9)] == [0, 0, 0]
    assert throttle.hit(10.0) == 4
    assert throttle.hit(10.5) == 0


def test_a_refusal_is_a_complete_http_answer_that_closes() -> None:
    head, _, body = refusal_response(Refusal.HEAD_TOO_LARGE).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    assert b"connection: close" in head
    assert b"content-length: %d" % len(body) in head


def test_log_values_are_cut_and_escaped() -> None:
    event = bound_values(
        None,
        "info",
        {
            "event": "client_refused",
            "reason": "x" * 5000 + "\n",
            "name": "a\x1b[31mb\u2028c",
            "params": {"k" * 100: "v" * 1000, "n": 3},
            "raw": b"\x00" * 300,
            "code": 1008,
        },
    )
    assert len(event["reason"]) == MAX_VALUE_CHARS + 1 and event["reason_len"] == 5001
    assert event["name"] == "a\\x1b[31mb\\u2028c"
    (key,) = [k for k in event["params"] if k != "n"]
    assert len(key) <= 65 and len(event["params"][key]) == MAX_VALUE_CHARS + 1
    assert event["params"]["n"] == 3
    assert event["raw_len"] == 300 and "\x00" not in event["raw"]
    assert event["code"] == 1008


def test_a_traceback_keeps_its_line_breaks() -> None:
    event = bound_values(None, "error", {"event": "x", "exception": "Traceback\n  line\x07"})
    assert event["exception"] == "Traceback\n  line\\x07"


class _Counted:
    reprs = 0

    def __repr__(self) -> str:
        _Counted.reprs += 1
        return "c"


def test_a_deep_value_is_cut_before_it_is_shown() -> None:
    """Below MAX_DEPTH a value is shown by a repr bounded as it is built: a deep list of
    100,000 items costs a few item reprs, not 100,000 (then cut to 200 characters)."""
    _Counted.reprs = 0
    deep = {"a": {"b": {"c": [_Counted() for _ in range(100_000)]}}}
    event = bound_values(None, "info", {"event": "x", "deep": deep})
    shown = event["deep"]["a"]["b"]["c"]
    assert isinstance(shown, str) and len(shown) <= MAX_VALUE_CHARS + 1
    assert _Counted.reprs <= 16, _Counted.reprs


def test_a_console_traceback_cannot_forge_a_log_line() -> None:
    event = indent_traceback(
        None, "error", {"exception": "Traceback\nValueError: a\n2026 [info] forged"}
    )
    assert event["exception"].splitlines()[2] == "  2026 [info] forged"


def test_uvicorn_error_lines_go_through_the_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    configure_logging("json", "info")
    try:
        logging.getLogger("uvicorn.error").error("bad %s", "x" * 5000 + "\n[forged]")
        err = capsys.readouterr().err
    finally:
        structlog.reset_defaults()
    (line,) = [json.loads(raw) for raw in err.splitlines() if raw.strip()]
    assert line["event"] == "uvicorn" and line["message_len"] == 5013
    assert len(line["message"]) == MAX_VALUE_CHARS + 1


def test_a_log_line_has_a_size_cap() -> None:
    renderer = CappedRenderer(structlog.processors.JSONRenderer())
    items = {f"k{i}": "v" * 190 for i in range(100)}
    line = renderer(None, "info", {"event": "big", "level": "info", **items})
    assert len(line) <= MAX_LINE_CHARS
    assert json.loads(line) == {
        "event": "big",
        "level": "info",
        "line_truncated": True,
        "line_chars": len(json.dumps({"event": "big", "level": "info", **items})),
    }
    small = renderer(None, "info", {"event": "small"})
    assert json.loads(small) == {"event": "small"}


BASE = {"VOXGATE_UPSTREAM_KEYS": "a=b", "VOXGATE_CLIENT_KEYS": "c=d"}


def test_edge_settings_defaults_and_bounds() -> None:
    settings = Settings.from_env(BASE)
    assert (settings.max_header_bytes, settings.max_headers) == (16384, 100)
    assert settings.handshake_timeout == 5.0
    assert (settings.max_connections, settings.max_handshakes) == (10_000, 1_000)
    with pytest.raises(SettingsError, match="VOXGATE_MAX_HEADER_BYTES"):
        Settings.from_env({**BASE, "VOXGATE_MAX_HEADER_BYTES": "100"})
    with pytest.raises(SettingsError, match="VOXGATE_HANDSHAKE_TIMEOUT"):
        Settings.from_env({**BASE, "VOXGATE_HANDSHAKE_TIMEOUT": "0"})
