"""Pure classification of upstream failures, and the closes a client gets for them."""

from __future__ import annotations

import json

import pytest
from voxgate.protocol import MAX_CLOSE_REASON_BYTES
from voxgate.relay.closes import DRAINING, for_connect_failure, for_upstream_close
from voxgate.upstream.failures import (
    FailureClass,
    UpstreamFailure,
    classify_close,
    classify_http,
    close_failure,
    http_failure,
    is_paid_only,
)

PAY = FailureClass.PAYMENT_REQUIRED


RATE = FailureClass.RATE_LIMITED
KEY = FailureClass.UNAUTHORIZED
CLIENT = FailureClass.CLIENT_FAULT
RETRY = FailureClass.TRANSIENT
UNEXPLAINED = FailureClass.UNEXPLAINED


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        # AssemblyAI's "Common session errors and closures" (v3), reason by reason.
        (1008, "Unauthorized Connection: Missing Authorization header", KEY),
        (1008, "Unauthorized Connection: Invalid API key", KEY),
        (1008, "Unauthorized Connection: Insufficient account balance", PAY),
        (1008, "Unauthorized Connection: Insufficient balance", PAY),
        (1008, "Unauthorized Connection: account not upgraded, add billing", PAY),
        (1008, "Unauthorized Connection: Too many concurrent sessions", RATE),  # older form
        (3009, "Unauthorized Connection: Too many concurrent sessions", RATE),
        (3009, "Too Many New Sessions: over the account's limit", RATE),
        (3005, "Session Cancelled: An error occurred", RETRY),
        (3008, "Session Expired: Maximum session duration exceeded", FailureClass.EXPIRED),
        (3007, "Input duration violation: 20 ms. Expected between 50 and 1000 ms", CLIENT),
        (3007, "Audio Transmission Rate Exceeded: Received 314.9 sec. audio in 1.31 sec", CLIENT),
        (3006, "Invalid Message Type: Foo", CLIENT),
        (3006, "Invalid JSON: {", CLIENT),
        (3006, "Invalid Message: x", CLIENT),
        # A sporadic 1008 that clears on a retry (assemblyai-node-sdk #97), and any
        # 1008 whose words are not known: cool the key briefly, never disable it.
        (1008, "Incorrect padding", UNEXPLAINED),
        (1008, "Unauthorized Connection: something new", UNEXPLAINED),
        (1008, "", UNEXPLAINED),
        # Temporary tokens (the simulator's words): the credential itself.
        (1008, "Unauthorized Connection: Invalid or expired temporary token", KEY),
        # The legacy real-time codes (Node SDK's StreamingErrorMessages).
        (4000, "Sample rate must be a positive integer", CLIENT),
        (4001, "Not Authorized", KEY),
        (4002, "Insufficient funds", PAY),
        (
            4003,
            "This feature is paid-only and requires you to add a credit card. Please visit "
            "https://app.assemblyai.com/ to add a credit card to your account.",
            PAY,
        ),
        (4008, "Session has expired", FailureClass.EXPIRED),
        (4029, "Rate limited", CLIENT),  # the legacy twin of 3007 (audio too fast)
        (4031, "Session Timeout", CLIENT),
        (4032, "Audio too short", CLIENT),
        (4033, "Audio too long", CLIENT),
        (4034, "Audio too small to transcode", CLIENT),
        (4101, "Bad schema", CLIENT),
        (4102, "Too many streams", RATE),
        # Codes without words to read.
        (1006, "", RETRY),
        (1011, "Internal error", RETRY),
        (1013, "", RETRY),
        (1009, "", CLIENT),
        (1000, "", FailureClass.NORMAL),
        (4999, "something new", RETRY),
    ],
)
def test_close_codes_classify_by_code_and_reason(
    code: int, reason: str, expected: FailureClass
) -> None:
    """Every reason text of AssemblyAI's known (PROTOCOL.md, the v3 reference, the
    SDKs) lands in its class; unknown codes are transient."""
    assert classify_close(code, reason) is expected


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (4003, "This feature is paid-only and requires you to add a credit card: speaker_labels"),
        (1008, "Unauthorized Connection: speaker_labels is not available on your plan"),
        (1008, "Unauthorized Connection: invalid parameter keyterms_prompt"),
    ],
)
def test_a_refusal_of_what_the_client_asked_is_the_client_s(code: int, reason: str) -> None:
    """A 4003 or 1008 whose reason names a parameter of the client's request, or
    says a parameter or feature is refused, is the request refused: the client's
    error, not the key's. A paid-only 4003 naming nothing the client asked is the
    account's."""
    assert classify_close(code, reason, asked=["sample_rate", "speaker_labels"]) is CLIENT
    if code == 4003:
        assert classify_close(code, reason, asked=["sample_rate"]) is PAY


def test_a_client_can_not_make_the_account_s_refusal_its_own() -> None:
    """Unknown parameters are forwarded, so a client may send ``balance=1``: a 1008
    about the balance is still the account's (only multi-word names count)."""
    reason = "Unauthorized Connection: Insufficient account balance"
    assert classify_close(1008, reason, asked=["balance", "account", "insufficient"]) is PAY


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


def test_only_a_4003_read_as_payment_required_is_confirmed_before_disabling() -> None:
    """AssemblyAI's paid-only 4003 names no parameter: it is classed payment required
    and marked for confirmation (the connector probes the key first); a 402 or a 1008
    about the balance is not (those are the account's, whatever the request)."""
    real = (
        "This feature is paid-only and requires you to add a credit card. Please visit "
        "https://app.assemblyai.com/ to add a credit card to your account"
    )
    paid_only = close_failure(4003, real, ["speaker_labels"])
    assert paid_only.failure is FailureClass.PAYMENT_REQUIRED
    assert is_paid_only(paid_only)
    assert not is_paid_only(close_failure(1008, "Insufficient account balance"))
    assert not is_paid_only(http_failure(402, b'{"error": "Account not upgraded"}'))
    assert not is_paid_only(close_failure(4003, real + ": speaker_labels", ["speaker_labels"]))
