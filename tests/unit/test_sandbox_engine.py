"""The simulator's pure parts: key behaviours and the energy-based turn engine."""

from __future__ import annotations

import json

import pytest
from voxgate.sandbox.behaviours import Kind, parse_behaviour, parse_key_spec
from voxgate.sandbox.engine import SCRIPT, WORD_MS, Transcriber, loudness
from voxgate.sandbox.session import speaker_revision

from tests.support import audio


def transcriber(format_turns: bool = True, **kw: float) -> Transcriber:
    return Transcriber(encoding="pcm_s16le", bytes_per_ms=32.0, format_turns=format_turns, **kw)


def feed_all(t: Transcriber, pcm: bytes) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for frame in audio.frames(pcm):
        out.extend(t.feed(frame))
    return out


def test_loudness_tells_tone_from_silence_in_both_pcm_encodings() -> None:
    """A tone is loud and silence is quiet, for s16le and for mu-law (0xFF is silence)."""
    assert loudness(audio.tone(0.05), "pcm_s16le") > 3000
    assert loudness(audio.silence(0.05), "pcm_s16le") == 0.0
    assert loudness(b"\xff" * 400, "pcm_mulaw") == 0.0
    assert loudness(b"\x10" * 400, "pcm_mulaw") > 3000
    assert loudness(b"\x00" * 40, "opus") == 0.0


def test_one_word_per_word_ms_of_sound_then_a_final_and_its_formatted_repeat() -> None:
    """1 s of sound gives 2 partials (350 and 700 ms), then silence ends the turn with
    the remaining 300 ms as a third word, a final turn and its formatted repeat."""
    out = feed_all(transcriber(), audio.utterance(1.0, 0.6))
    partials = [m for m in out if not m["end_of_turn"]]
    finals = [m for m in out if m["end_of_turn"]]
    assert len(partials) == int(1000 // WORD_MS)
    assert [m["turn_is_formatted"] for m in finals] == [False, True]
    assert finals[0]["transcript"] == " ".join(SCRIPT[:3])
    assert finals[1]["transcript"] == "Hello from the."
    assert {m["turn_order"] for m in out} == {0}
    words = finals[0]["words"]
    assert isinstance(words, list)
    assert words[0]["start"] == 0 and words[0]["end"] == 350
    assert all(w["word_is_final"] for w in words)
    assert partials[-1]["words"][-1]["word_is_final"] is False  # type: ignore[index]


def test_turn_order_grows_and_the_script_goes_on_across_turns() -> None:
    """Two utterances are two turns, 0 and 1; the second continues the script."""
    out = feed_all(transcriber(format_turns=False), audio.utterance(0.7, 0.5) * 2)
    finals = [m for m in out if m["end_of_turn"]]
    assert [m["turn_order"] for m in finals] == [0, 1]
    assert finals[1]["transcript"] == " ".join(SCRIPT[2:4])


def test_min_turn_silence_decides_when_a_turn_ends() -> None:
    """With min_turn_silence=1000, 600 ms of silence does not end the turn."""
    t = transcriber(min_turn_silence_ms=1000, max_turn_silence_ms=1500)
    out = feed_all(t, audio.utterance(0.8, 0.6))
    assert not [m for m in out if m["end_of_turn"]]
    out = feed_all(t, audio.silence(0.5))
    assert [m for m in out if m["end_of_turn"]]


def test_force_endpoint_and_update_configuration() -> None:
    """ForceEndpoint ends the current turn at once; UpdateConfiguration changes the
    silence that ends a turn from then on; with nothing said, ForceEndpoint is silent."""
    t = transcriber(format_turns=False)
    assert t.force_endpoint() == []
    feed_all(t, audio.tone(0.8))
    forced = t.force_endpoint()
    assert len(forced) == 1 and forced[0]["end_of_turn"]
    t.update({"min_turn_silence": 2000, "max_turn_silence": 2500})
    out = feed_all(t, audio.utterance(0.8, 1.0))
    assert not [m for m in out if m["end_of_turn"]]


def test_a_blip_shorter_than_a_word_makes_no_turn() -> None:
    """Sound under MIN_WORD_MS followed by silence produces no message at all."""
    t = transcriber()
    assert feed_all(t, audio.tone(0.05) + audio.silence(1.5)) == []


def test_finish_flushes_the_turn_in_progress() -> None:
    """Terminate mid-speech: the words so far come out as a final turn."""
    t = transcriber(format_turns=False)
    feed_all(t, audio.tone(0.5))
    out = t.finish()
    assert len(out) == 1 and out[0]["end_of_turn"] and out[0]["transcript"] == "hello from"


def test_compressed_audio_shorter_than_a_word_makes_no_turn() -> None:
    """An Opus packet's duration comes from its TOC byte (here 2 x 10 ms): too short
    for a word, so no message yet (longer speech: test_sandbox_rules)."""
    t = Transcriber(encoding="opus", bytes_per_ms=None, format_turns=True)
    assert t.feed(b"\x01" * 500) == []
    assert t.audio_ms == 20.0


@pytest.mark.parametrize(
    ("name", "kind", "code"),
    [
        ("ok", Kind.OK, 0),
        ("echo", Kind.ECHO, 0),
        ("402", Kind.HTTP, 402),
        ("1008-balance", Kind.CLOSE, 1008),
        ("4002", Kind.CLOSE, 4002),
        ("3009", Kind.CLOSE, 3009),
        ("drop-1011@1.5", Kind.DROP, 1011),
        ("drop-1006@2", Kind.DROP, 1006),
        ("hang", Kind.HANG, 0),
        ("no-begin", Kind.NO_BEGIN, 0),
        ("drop-1011@25f", Kind.DROP, 1011),
        ("402-after-5", Kind.QUOTA, 402),
        ("revise@700000", Kind.REVISE, 0),
        ("1008-padding", Kind.CLOSE, 1008),
        ("4003-speaker_labels", Kind.CLOSE, 4003),
        ("late-begin@2.5", Kind.OK, 0),
    ],
)
def test_behaviours_parse(name: str, kind: Kind, code: int) -> None:
    """Each documented behaviour name parses to its kind and close/HTTP code."""
    behaviour = parse_behaviour(name)
    assert behaviour.kind is kind and behaviour.code == code and behaviour.name == name


def test_bad_key_specs_are_refused_with_the_reason() -> None:
    """Unknown behaviours, unsendable drop codes, keys named twice: ValueError."""
    for spec, needle in [
        ("a=teapot", "unknown behaviour"),
        ("a=drop-999@1", "unknown behaviour"),
        ("a=drop-5001@1", "not sendable"),
        ("a=ok,a=402", "twice"),
        ("a=drop-1011@0f", "at least one frame"),
        ("a=revise@999999999", "at most"),
        ("a=late-begin@61", "at most"),
        ("a=drop-1011@2.5f", "whole number of frames"),
        ("=ok", "no key"),
    ]:
        with pytest.raises(ValueError, match=needle):
            parse_key_spec(spec)
    assert parse_key_spec("a, b=402")["a"].kind is Kind.OK


def test_the_402_body_is_the_documented_shape() -> None:
    """HTTP 402 answers {"error": "Account not upgraded", "status": 402}."""
    assert parse_behaviour("402").http_body == b'{"error": "Account not upgraded", "status": 402}'


def test_the_fault_modes_carry_their_numbers() -> None:
    """Frames to drop after, sessions before the 402s, revision size, and the
    parameter a paid-only refusal applies to."""
    assert parse_behaviour("drop-1011@25f").after_frames == 25
    assert parse_behaviour("drop-1011@2.5").after_frames == 0
    assert parse_behaviour("402-after-5").sessions == 5
    assert parse_behaviour("revise@700000").size == 700_000
    assert parse_behaviour("4003-speaker_labels").when == "speaker_labels"
    assert parse_behaviour("4003").when == ""
    assert parse_behaviour("late-begin@2.5").begin_after == 2.5


def test_a_speaker_revision_relabels_every_final_and_reaches_its_size() -> None:
    """One revision per final turn, its words those of the turn with speaker B; the
    last one's words repeated until the message is about the size asked."""
    finals = [
        {"turn_order": i, "words": [{"text": "x", "start": 10 * i, "end": 10 * i + 5}]}
        for i in range(2)
    ]
    small = speaker_revision(finals, 0)
    assert small == {
        "type": "SpeakerRevision",
        "revisions": [
            {
                "turn_order": i,
                "speaker_label": "B",
                "words": [{"text": "x", "start": 10 * i, "end": 10 * i + 5, "speaker": "B"}],
            }
            for i in range(2)
        ],
    }
    big = json.dumps(speaker_revision(finals, 100_000))
    assert 99_000 <= len(big) <= 100_000
