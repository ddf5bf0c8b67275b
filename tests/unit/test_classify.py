"""Pure classification of upstream failures, and the closes a client gets for them."""

from __future__ import annotations

import json

import pytest
from voxgate.protocol import MAX_CLOSE_REASON_BYTES
from voxgate.relay.closes import DRAINING, for_connect_failure, for_upstream_close
from voxgate.upstream.failures import FailureClass, UpstreamFailure, classify_close, classify_http

PAY = FailureClass.PAYMENT_REQUIRED


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (4002, "Insufficient Funds", PAY),
        (4003, "This feature is paid-only", PAY),
        (1008, "Unauthorized Connection: Insufficient balance", PAY),
        (1008, "Unauthorized Connection: account not upgraded, add billing", PAY),
        (1008, "Unauthorized Connection: Invalid API key", FailureClass.UNAUTHORIZED),
        (1008, "Too many concurrent sessions", FailureClass.RATE_LIMITED),
        (4001, "Not Authorized", FailureClass.UNAUTHORIZED),
        (3009, "Too many sessions", FailureClass.RATE_LIMITED),
        (4102, "exceeded streams", FailureClass.RATE_LIMITED),
        (1006, "", FailureClass.TRANSIENT),
        (1011, "Internal error", FailureClass.TRANSIENT),
        (1013, "", FailureClass.TRANSIENT),
        (3005, "", FailureClass.TRANSIENT),
        (3006, "Invalid Message", FailureClass.CLIENT_FAULT),
        (3007, "Audio chunk", FailureClass.CLIENT_FAULT),
        (1009, "", FailureClass.CLIENT_FAULT),
        (3008, "expired", FailureClass.EXPIRED),
        (1000, "", FailureClass.NORMAL),
        (4999, "something new", FailureClass.TRANSIENT),
    ],
)
def test_close_codes_classify_by_code_and_1008_by_its_words(
    code: int, reason: str, expected: FailureClass
) -> None:
    """Every form in PROTOCOL.md lands in the right class; unknown codes are transient."""
    assert classify_close(code, reason) is expected


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (402, json.dumps({"error": "Account not upgraded", "status": 402}), PAY),
        (400, json.dumps({"error": "Account not upgraded", "status": 402}), PAY),
        (401, "", FailureClass.UNAUTHORIZED),
        (403, "", FailureClass.UNAUTHORIZED),
        (429, "", FailureClass.RATE_LIMITED),
        (500, "", FailureClass.TRANSIENT),
        (503, "<html>", FailureClass.TRANSIENT),
        (400, json.dumps({"error": "bad sample_rate"}), FailureClass.CLIENT_FAULT),
    ],
)
def test_http_answers_classify_by_status_and_402_body(
    status: int, body: str, expected: FailureClass
) -> None:
    """A 402 is payment-required whether it is in the status or in the body."""
    assert classify_http(status, body.encode()) is expected


def test_connect_failures_tell_the_client_why_in_operator_words() -> None:
    """Payment, rate limit and outage get distinct codes and words, within 123 bytes."""
    pay = for_connect_failure(UpstreamFailure(PAY, 402, "Account not upgraded", http=True))
    assert pay.code == 1008 and "payment" in pay.text.lower()
    limited = for_connect_failure(UpstreamFailure(FailureClass.RATE_LIMITED, 3009, "x"))
    assert limited.code == 3009
    down = for_connect_failure(UpstreamFailure(FailureClass.TRANSIENT, 1006, "refused"))
    assert down.code == 1013
    for close in (pay, limited, down, DRAINING):
        assert len(close.reason.encode()) <= MAX_CLOSE_REASON_BYTES
        frame = json.loads(close.error_frame())
        assert frame == {"type": "Error", "error_code": close.code, "error": close.text}


def test_upstream_close_1006_becomes_1011_for_the_client() -> None:
    """1006 may not be sent on the wire; a dropped upstream reaches the client as 1011."""
    assert for_upstream_close(1006, "").code == 1011
    assert for_upstream_close(3005, "boom").code == 3005
