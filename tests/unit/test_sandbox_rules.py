"""The simulator's own model of AssemblyAI's rules (``voxgate.sandbox.rules``), the
compressed-audio meter and today's message types."""

from __future__ import annotations

import json
from typing import Any

import pytest
from voxgate.sandbox import compressed, rules
from voxgate.sandbox.engine import SILENCE_ACK_MS, Transcriber
from voxgate.sandbox.rules import Close, Refusal, apply_update, parse_connection

from tests.support import audio


def connect(query: str, version: str | None = None) -> rules.SessionConfig:
    pairs = [tuple(p.split("=", 1)) for p in query.split("&") if p]
    return parse_connection([(k, v) for k, v in pairs], version)


@pytest.mark.parametrize(
    "query",
    [
        "sample_rate=96000",  # ref B sample_rate: 8000-96000
        "sample_rate=8000",
        "encoding=opus",  # compressed: sample_rate not needed
        "encoding=aac&sample_rate=44100",
        "sample_rate=16000&speaker_labels_revision_interval_ms=7200000",
        "sample_rate=16000&redact_pii_policies=person_name,phone_number",
        'sample_rate=16000&redact_pii_policies=["person_name"]',
        "sample_rate=16000&format_turns=1",  # pydantic-lax spellings [inf]
        "sample_rate=16000&format_turns=yes",
        "sample_rate=16000&min_turn_silence=400.0",
        "sample_rate=16000&sample_rate=16000",  # twice: the last one
        "sample_rate=16000&some_future_parameter=x",  # unknown: ignored
        "sample_rate=16000&speech_model=u3-rt-pro",
        "sample_rate=16000&min_turn_silence=70000",  # clamped, not refused
        "sample_rate=16000&llm_gateway=" + json.dumps({"model": "m", "x": "y" * 9000}),
    ],
)
def test_what_assemblyai_accepts(query: str) -> None:
    """Each of these is accepted, as the reference says AssemblyAI does."""
    connect(query)


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("encoding=pcm_s16le", "sample_rate"),
        ("sample_rate=96001", "sample_rate"),
        ("sample_rate=7999", "sample_rate"),
        ("sample_rate=16000&encoding=pcm_s24le", "encoding"),
        ("sample_rate=16000&speech_model=universal-4-pro", "speech_model"),
        ("sample_rate=16000&format_turns=maybe", "format_turns"),
        ("sample_rate=16000&speaker_labels_revision_interval_ms=86400001", "revision"),
        ("sample_rate=16000&max_speakers=11", "max_speakers"),
        ("sample_rate=16000&inactivity_timeout=4", "inactivity_timeout"),
        ("sample_rate=16000&vad_threshold=1.5", "vad_threshold"),
        ("sample_rate=16000&keyterms_prompt=not-json", "keyterms_prompt"),
        ("sample_rate=16000&prompt=" + "p" * 1751, "prompt"),
        ("sample_rate=16000&mode=fastest", "mode"),
        ("sample_rate=16000&llm_gateway=" + "[" * 3000 + "]" * 3000, "llm_gateway"),
        ("sample_rate=16000&language_codes=" + "[" * 3000 + "]" * 3000, "language_codes"),
    ],
)
def test_what_assemblyai_refuses_with_3006(query: str, needle: str) -> None:
    with pytest.raises(Refusal) as caught:
        connect(query)
    assert caught.value.code == Close.INVALID_MESSAGE and needle in caught.value.reason


def test_defaults_clamps_and_begin_configuration() -> None:
    """No speech_model: universal-3-6-pro; no version header: the latest; clamps for
    min_turn_silence and the revision interval, each clamp and deprecation a Warning."""
    config = connect("sample_rate=16000")
    assert config.speech_model == "universal-3-6-pro" and config.u3_pro
    assert config.begin_configuration()["api_version"] == rules.LATEST_API_VERSION
    assert connect("sample_rate=16000", "2025-05-12").begin_configuration()["api_version"] == (
        "2025-05-12"
    )
    clamped = connect(
        "sample_rate=16000&min_turn_silence=20&speaker_labels_revision_interval_ms=1000"
        "&end_of_turn_confidence_threshold=0.5"
    )
    assert clamped.min_turn_silence_ms == 50 and clamped.revision_interval_ms == 120_000
    assert [n.code for n in clamped.notices] == [rules.WARNING_DEPRECATED, rules.WARNING_CLAMPED]
    assert connect("sample_rate=16000&min_turn_silence=70000").min_turn_silence_ms == 10_000


def test_update_configuration_clamps_and_never_refuses() -> None:
    """ref C: an out-of-range min_turn_silence is clamped to 50-10000 with the session
    going on; wrong types and unknown fields are ignored."""
    config = connect("sample_rate=16000&speech_model=universal-streaming-english")
    updated, notices = apply_update(
        config,
        {"type": "UpdateConfiguration", "min_turn_silence": 70000, "max_turn_silence": "x",
         "future_field": 1, "mode": ["not", "a", "mode"]},
    )  # fmt: skip
    assert updated.min_turn_silence_ms == 10_000 and updated.max_turn_silence_ms == 10_000
    assert [n.code for n in notices] == [rules.WARNING_CLAMPED]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"type": "FutureControl"}', "Invalid Message Type: FutureControl"),
        ("[]", "not a JSON object"),
        ("{", "not valid JSON"),
        ("[" * 100 + "]" * 100, "nested"),
    ],
)
def test_client_messages_outside_the_four_types_are_3006(text: str, needle: str) -> None:
    with pytest.raises(Refusal) as caught:
        rules.parse_client_message(text)
    assert caught.value.code == 3006 and needle in caught.value.reason


def test_brackets_inside_strings_are_not_nesting() -> None:
    text = '{"type": "KeepAlive", "x": "' + "[" * 200 + '"}'
    assert rules.parse_client_message(text)["type"] == "KeepAlive"


def test_a_client_text_message_over_128_kb_is_1009() -> None:
    with pytest.raises(Refusal) as caught:
        rules.parse_client_message('{"type": "KeepAlive", "pad": "' + "x" * 131_072 + '"}')
    assert caught.value.code == 1009


def test_audio_limits_in_assemblyais_words() -> None:
    """50-1000 ms per PCM message (3007), 128 KB per message (1009), the look-ahead."""
    config = connect("sample_rate=16000")
    assert rules.audio_ms(1600, config) == 50.0
    with pytest.raises(Refusal, match="Input duration violation: 20 ms") as short:
        rules.audio_ms(640, config)
    assert short.value.code == 3007
    with pytest.raises(Refusal) as big:
        rules.audio_ms(140_000, connect("encoding=opus"))
    assert big.value.code == 1009
    pace = rules.Pace(300.0)
    pace.feed(299.0, 0.0)
    with pytest.raises(Refusal, match=r"Received 302\.0 sec\. audio in 1\.00 sec"):
        pace.feed(3.0, 1.0)


def opus_packet(size: int) -> bytes:
    """A raw Opus packet: TOC config 1 (SILK, 20 ms), one frame, ``size`` bytes."""
    return bytes([1 << 3]) + b"\x55" * (size - 1)


def test_compressed_audio_is_timed_by_its_container_and_heard_by_its_bitrate() -> None:
    """Opus by its TOC byte, Ogg by its granule positions, ADTS by its frames: loud
    packets (speech bitrate) make words and turns, tiny ones (DTX) are silence."""
    assert compressed.opus_packet_ms(opus_packet(60)) == 20.0
    assert compressed.opus_packet_ms(bytes([(16 << 3) | 3, 4])) == 10.0  # CELT 2.5 ms x4
    t = Transcriber(encoding="opus", bytes_per_ms=None, format_turns=False)
    out: list[dict[str, Any]] = []
    for _ in range(50):  # 1 s of speech-sized packets
        out.extend(t.feed(opus_packet(60)))
    for _ in range(30):  # 600 ms of DTX-sized ones
        out.extend(t.feed(opus_packet(3)))
    finals = [m for m in out if m.get("end_of_turn")]
    assert len(finals) == 1 and len(finals[0]["words"]) == 3
    assert abs(t.audio_ms - 1600.0) < 1e-6

    def ogg_page(granule: int, body: bytes) -> bytes:
        return (
            b"OggS\x00\x00"
            + granule.to_bytes(8, "little")
            + bytes(12)
            + b"\x01"
            + (bytes([len(body)]) + body)
        )

    meter = compressed.Meter("ogg_opus")
    stream = ogg_page(0, b"OpusHead") + ogg_page(960, b"x" * 80) + ogg_page(1920, b"x" * 80)
    first, second = stream[:40], stream[40:]
    assert meter.feed(first) == (0.0, False)
    assert meter.feed(second) == (20.0, True)

    def adts(length: int) -> bytes:  # 16 kHz (index 8)
        head = bytes([0xFF, 0xF1, (1 << 6) | (8 << 2), (length >> 11) & 0x03,
                      (length >> 3) & 0xFF, (length & 0x07) << 5, 0xFC])  # fmt: skip
        return head + bytes(length - 7)

    millis, loud = compressed.Meter("aac").feed(adts(200) + adts(10))
    assert millis == 128.0 and loud


def pcm_transcriber(**kw: Any) -> Transcriber:
    kw.setdefault("format_turns", True)
    return Transcriber(encoding="pcm_s16le", bytes_per_ms=32.0, **kw)


def feed(t: Transcriber, pcm: bytes) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for frame in audio.frames(pcm):
        out.extend(t.feed(frame))
    return out


def test_u3_pro_sends_one_formatted_final_per_turn() -> None:
    """U3 Pro: no per-word partials, one partial at the pause (confidence 0), one final,
    formatted, confidence 1, with the utterance; SpeechStarted where the sound began."""
    out = feed(pcm_transcriber(u3_pro=True, speech_started=True), audio.utterance(1.0, 0.6))
    assert [m["type"] for m in out] == ["SpeechStarted", "Turn", "Turn"]
    partial, final = out[1], out[2]
    assert not partial["end_of_turn"] and partial["end_of_turn_confidence"] == 0.0
    assert partial["utterance"] == ""
    assert final["end_of_turn"] and final["turn_is_formatted"]
    assert final["transcript"] == "Hello from the." == final["utterance"]
    assert final["end_of_turn_confidence"] == 1.0


def test_universal_streaming_keeps_the_unformatted_then_formatted_pair() -> None:
    out = feed(pcm_transcriber(), audio.utterance(1.0, 0.6))
    finals = [m for m in out if m["end_of_turn"]]
    assert [m["turn_is_formatted"] for m in finals] == [False, True]
    assert finals[0]["utterance"] == "Hello from the." and finals[1]["utterance"] == ""


def test_speaker_labels_language_and_silence() -> None:
    """Turns alternate speakers A/B with words labelled; the end's revision relabels
    where its second pass (A, A, B, B) differs; language fields on finals; a Silence
    for each silence of at least SILENCE_ACK_MS."""
    t = pcm_transcriber(
        speaker_labels=True, language="es", acknowledge_silence=True, format_turns=False
    )
    out = feed(t, audio.utterance(0.8, 1.2) * 2)
    out.extend(t.finish())
    finals = [m for m in out if m.get("end_of_turn")]
    assert [f["speaker_label"] for f in finals] == ["A", "B"]
    assert {w["speaker"] for w in finals[1]["words"]} == {"B"}
    assert finals[0]["language_code"] == "es" and "language_code" not in out[0]
    silences = [m for m in out if m["type"] == "Silence"]
    assert silences and all(s["end_ms"] - s["start_ms"] >= SILENCE_ACK_MS for s in silences)
    revision = t.revision()
    assert revision is not None
    assert [(r["turn_order"], r["speaker_label"]) for r in revision["revisions"]] == [(1, "A")]
