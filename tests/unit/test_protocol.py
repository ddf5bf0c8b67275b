"""Pure protocol rules: parameters, frames, pace, control messages, close reasons."""

from __future__ import annotations

import json

import pytest
from voxgate.protocol import (
    MAX_CLOSE_REASON_BYTES,
    MAX_MESSAGE_BYTES,
    CloseCode,
    ControlType,
    Encoding,
    PaceGuard,
    ProtocolViolation,
    Violation,
    check_audio_frame,
    parse_control,
    parse_stream_params,
    truncate_reason,
)


def params(**query: str):
    return parse_stream_params(list(query.items()))


def test_defaults_and_forwarding_keep_unknown_parameters_in_order() -> None:
    """Unknown parameters are forwarded verbatim; token and voxgate_* are not."""
    p = parse_stream_params(
        [
            ("sample_rate", "16000"),
            ("brand_new_flag", "x y"),
            ("token", "secret"),
            ("voxgate_tag", "call-1"),
            ("format_turns", "True"),
        ]
    )
    assert p.encoding is Encoding.PCM_S16LE
    assert p.sample_rate == 16000
    assert p.forward == (
        ("sample_rate", "16000"),
        ("brand_new_flag", "x y"),
        ("format_turns", "True"),
    )
    assert p.gateway == {"voxgate_tag": "call-1"}
    assert p.format_turns() is True
    assert p.bytes_per_second == 32000


def test_a_tag_with_a_final_newline_is_refused() -> None:
    with pytest.raises(ProtocolViolation) as caught:
        params(sample_rate="16000", voxgate_tag="desk-1\n")
    assert caught.value.violation is Violation.BAD_TAG


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ({}, "sample_rate"),
        ({"sample_rate": "abc"}, "sample_rate"),
        ({"sample_rate": "100"}, "outside"),
        ({"sample_rate": "16000", "encoding": "mp3"}, "encoding"),
        ({"sample_rate": "16000", "format_turns": "yes"}, "format_turns"),
        ({"sample_rate": "16000", "inactivity_timeout": "2"}, "inactivity_timeout"),
        ({"sample_rate": "16000", "end_of_turn_confidence_threshold": "1.5"}, "confidence"),
        ({"sample_rate": "16000", "vad_threshold": "nan"}, "vad_threshold"),
        ({"sample_rate": "16000", "keyterms_prompt": "[1, 2]"}, "keyterms_prompt"),
        ({"sample_rate": "16000", "keyterms_prompt": "not json"}, "keyterms_prompt"),
    ],
)
def test_bad_parameters_are_refused_with_3006_naming_the_parameter(
    query: dict[str, str], needle: str
) -> None:
    """Each malformed parameter is a 3006 whose reason names it."""
    with pytest.raises(ProtocolViolation) as caught:
        params(**query)
    assert caught.value.code == CloseCode.INVALID_MESSAGE
    assert caught.value.violation is Violation.BAD_PARAMETER
    assert needle in caught.value.reason


def test_compressed_encodings_need_no_sample_rate_and_skip_duration_checks() -> None:
    """Opus frames are checked for size only (their duration is not in their size)."""
    p = params(encoding="opus")
    assert p.sample_rate is None
    assert check_audio_frame(10, p) == 0.0
    with pytest.raises(ProtocolViolation) as caught:
        check_audio_frame(MAX_MESSAGE_BYTES + 1, p)
    assert caught.value.code == CloseCode.TOO_BIG


def test_repeated_parameter_is_refused() -> None:
    """A parameter given twice is ambiguous: refused rather than guessed."""
    with pytest.raises(ProtocolViolation):
        parse_stream_params([("sample_rate", "16000"), ("sample_rate", "8000")])


@pytest.mark.parametrize(
    ("nbytes", "code", "violation"),
    [
        (640, CloseCode.AUDIO_VIOLATION, Violation.FRAME_DURATION),  # 20 ms
        (32002, CloseCode.AUDIO_VIOLATION, Violation.FRAME_DURATION),  # 1000.06 ms
        (1601, CloseCode.AUDIO_VIOLATION, Violation.FRAME_MISALIGNED),
        (MAX_MESSAGE_BYTES + 2, CloseCode.TOO_BIG, Violation.FRAME_TOO_BIG),
    ],
)
def test_frames_outside_the_rules_are_refused(nbytes: int, code: int, violation: Violation) -> None:
    """Frames under 50 ms, over 1000 ms, half-sample or over 128 KB are refused."""
    with pytest.raises(ProtocolViolation) as caught:
        check_audio_frame(nbytes, params(sample_rate="16000"))
    assert caught.value.code == code
    assert caught.value.violation is violation


def test_frame_durations_at_the_edges_are_accepted() -> None:
    """Exactly 50 ms and exactly 1000 ms are valid; mu-law counts one byte per sample."""
    pcm = params(sample_rate="16000")
    assert check_audio_frame(1600, pcm) == pytest.approx(0.05)
    assert check_audio_frame(32000, pcm) == pytest.approx(1.0)
    mulaw = params(sample_rate="8000", encoding="pcm_mulaw")
    assert check_audio_frame(400, mulaw) == pytest.approx(0.05)


def test_pace_guard_allows_real_time_and_a_bounded_burst_only() -> None:
    """Real-time audio passes; running more than the burst ahead is a 3007."""
    guard = PaceGuard(burst_seconds=1.0)
    for i in range(100):
        guard.feed(0.05, now=i * 0.05)
    assert guard.audio_seconds == pytest.approx(5.0)
    burst = PaceGuard(burst_seconds=1.0)
    with pytest.raises(ProtocolViolation) as caught:
        for _ in range(40):
            burst.feed(0.05, now=0.0)
    assert caught.value.code == CloseCode.AUDIO_VIOLATION
    assert caught.value.violation is Violation.TOO_FAST
    assert burst.audio_seconds == pytest.approx(1.05)


def test_control_messages_parse_and_bad_ones_are_3006() -> None:
    """Known control types parse; bad JSON, non-objects and unknown types are 3006."""
    assert parse_control('{"type": "Terminate"}')[0] is ControlType.TERMINATE
    kind, body = parse_control(json.dumps({"type": "UpdateConfiguration", "max_turn_silence": 800}))
    assert kind is ControlType.UPDATE_CONFIGURATION and body["max_turn_silence"] == 800
    for text, violation in [
        ("{nope", Violation.BAD_JSON),
        ("[1]", Violation.BAD_JSON),
        ('{"type": "Dance"}', Violation.UNKNOWN_MESSAGE),
        ("{}", Violation.UNKNOWN_MESSAGE),
    ]:
        with pytest.raises(ProtocolViolation) as caught:
            parse_control(text)
        assert caught.value.code == CloseCode.INVALID_MESSAGE
        assert caught.value.violation is violation


def test_update_configuration_fields_are_typed() -> None:
    """UpdateConfiguration with an ill-typed field is refused like a bad query parameter."""
    with pytest.raises(ProtocolViolation) as caught:
        parse_control(json.dumps({"type": "UpdateConfiguration", "max_turn_silence": "soon"}))
    assert "max_turn_silence" in caught.value.reason


def test_close_reasons_are_cut_to_123_bytes_on_a_character_edge() -> None:
    """Long reasons fit a close frame and stay valid UTF-8."""
    reason = truncate_reason("é" * 100)
    assert len(reason.encode()) <= MAX_CLOSE_REASON_BYTES
    assert reason == "é" * 61
    assert truncate_reason("short") == "short"
