"""The gateway's reading of what a client sends (issue 16): only its own limits and
what it needs for pace accounting; everything else is AssemblyAI's to judge."""

from __future__ import annotations

import json

import pytest
from voxgate.protocol import (
    GATEWAY_MAX_QUERY_PARAMS,
    GATEWAY_MAX_VALUE_CHARS,
    MAX_BYTES_PER_SECOND,
    CloseCode,
    ControlType,
    PaceGuard,
    ProtocolViolation,
    Violation,
    check_audio_frame,
    client_text,
    gateway_params,
)
from voxgate.relay.session import _capped_begin


@pytest.mark.parametrize(
    "query",
    [
        [("sample_rate", "96000")],
        [("sample_rate", "16000"), ("encoding", "pcm_s24le")],
        [("sample_rate", "16000"), ("speaker_labels_revision_interval_ms", "7200000")],
        [("sample_rate", "16000"), ("redact_pii_policies", "person_name,phone_number")],
        [("sample_rate", "16000"), ("format_turns", "yes"), ("min_turn_silence", "400.0")],
        [("sample_rate", "16000"), ("sample_rate", "8000")],
        [("sample_rate", "16000"), ("llm_gateway", json.dumps({"system": "x" * 9000}))],
        [("encoding", "pcm_s16le")],  # no sample_rate: upstream says what it wants
        [("sample_rate", "nonsense"), ("inactivity_timeout", "2")],
    ],
)
def test_what_assemblyai_judges_is_forwarded_as_spelled(query: list[tuple[str, str]]) -> None:
    """The reference's "refused wrongly" rows: every one forwarded, in order."""
    assert gateway_params(query).forward == tuple(query)


def test_pace_accounting_reads_rate_and_encoding_leniently() -> None:
    """96 kHz PCM is paced by its byte rate; a new encoding, or a rate the gateway
    cannot read, by the bound that holds for any encoding; the last duplicate counts."""
    assert gateway_params([("sample_rate", "96000")]).bytes_per_second == 192_000
    assert gateway_params([("sample_rate", "16000"), ("sample_rate", "8000")]).sample_rate == 8000
    assert gateway_params([("sample_rate", "16000.0")]).sample_rate == 16000
    for query in (
        [("sample_rate", "16000"), ("encoding", "pcm_s24le")],
        [("sample_rate", "abc")],
        [("sample_rate", "200000")],
        [("encoding", "opus")],
    ):
        p = gateway_params(query)
        assert p.bytes_per_second is None and p.pace_bytes_per_second == MAX_BYTES_PER_SECOND
        assert check_audio_frame(10, p) == 0.0  # no duration rule it cannot know
    assert gateway_params([("format_turns", "1")]).format_turns() is True
    assert gateway_params([("format_turns", "False")]).format_turns() is False


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ([("x", "1")] * (GATEWAY_MAX_QUERY_PARAMS + 1), "parameters"),
        ([("prompt", "x" * (GATEWAY_MAX_VALUE_CHARS + 1))], "prompt"),
        ([("voxgate_other", "1")], "voxgate_other"),
        ([("voxgate_tag", "a"), ("voxgate_tag", "b")], "voxgate_tag"),
        ([("voxgate_tag", "no spaces")], "voxgate_tag"),
    ],
)
def test_the_gateways_own_limits_are_3006(query: list[tuple[str, str]], needle: str) -> None:
    with pytest.raises(ProtocolViolation) as caught:
        gateway_params(query)
    assert caught.value.code == CloseCode.INVALID_MESSAGE
    assert needle in caught.value.reason


def test_client_text_refuses_only_what_is_not_json() -> None:
    """Terminate is known; a new type, any UpdateConfiguration value and a JSON value
    that is not an object go upstream as they are; text that is not JSON is 3006."""
    assert client_text('{"type": "Terminate"}') is ControlType.TERMINATE
    update = json.dumps({"type": "UpdateConfiguration", "min_turn_silence": 70000})
    assert client_text(update) is ControlType.UPDATE_CONFIGURATION
    for text in ('{"type": "FutureControl"}', "[]", '{"type": 3}', "{}"):
        assert client_text(text) is None, text
    with pytest.raises(ProtocolViolation) as caught:
        client_text("{nope")
    assert caught.value.code == CloseCode.INVALID_MESSAGE
    assert caught.value.violation is Violation.BAD_JSON


def test_the_pace_clock_can_start_before_the_first_frame() -> None:
    """Started at the client's accept, audio sent while waiting for Begin is not a burst:
    2.5 s of real-time audio processed at once, 2.5 s after the accept, passes a 1 s
    burst; counted from the first frame it would be 3007."""
    waited = PaceGuard(burst_seconds=1.0, start=0.0)
    for _ in range(50):
        waited.feed(0.05, now=2.5)
    from_first = PaceGuard(burst_seconds=1.0)
    with pytest.raises(ProtocolViolation):
        for _ in range(50):
            from_first.feed(0.05, now=2.5)


def test_begin_expires_at_is_capped_by_a_token() -> None:
    """A later expires_at is lowered to the cap, other fields kept; an earlier one, or a
    Begin that is not JSON, is left byte for byte."""
    begin = json.dumps({"type": "Begin", "id": "x", "expires_at": 2_000_000_000, "new": [1]})
    capped = json.loads(_capped_begin(begin, 1_000_000_060.5))
    assert capped == {"type": "Begin", "id": "x", "expires_at": 1_000_000_060, "new": [1]}
    early = '{"type":"Begin","expires_at":100}'
    assert _capped_begin(early, 1_000_000_060.0) == early
    assert _capped_begin("nope", 5.0) == "nope"


def test_the_version_header_is_the_clients_or_none() -> None:
    """AssemblyAI-Version goes upstream only when the client sent one: without it
    AssemblyAI uses its latest version, and so must a client of the gateway."""
    from voxgate.settings import UpstreamKey
    from voxgate.upstream.connect import upstream_headers

    key = UpstreamKey("main", "secret")
    assert "AssemblyAI-Version" not in upstream_headers(key, None)
    assert upstream_headers(key, "2026-09-01")["AssemblyAI-Version"] == "2026-09-01"
    assert upstream_headers(key, None)["Authorization"] == "secret"
