"""The seam across upstream reconnects: replay buffer, renumbering, no duplicate finals."""

from __future__ import annotations

import json
from typing import Any

from voxgate.relay.configuration import Configuration
from voxgate.relay.continuity import Seam

FRAME = bytes(1600)  # 50 ms of 16 kHz PCM


def seam(format_turns: bool = True, max_bytes: int = 64_000) -> Seam:
    return Seam(bytes_per_ms=32.0, format_turns=format_turns, max_replay_bytes=max_bytes)


def turn(order: int, *, final: bool, formatted: bool = False, end: int = 0) -> dict[str, Any]:
    return {
        "type": "Turn",
        "turn_order": order,
        "end_of_turn": final,
        "turn_is_formatted": formatted,
        "transcript": "x",
        "words": [{"text": "x", "start": max(0, end - 300), "end": end}],
    }


def test_replay_holds_the_audio_since_the_last_completed_turn() -> None:
    """After a completed turn ending at 500 ms, frames wholly before it are dropped;
    an unformatted final alone (format_turns) does not complete the turn."""
    s = seam()
    for _ in range(20):  # 1 s
        s.sent(FRAME)
    s.delivered(turn(0, final=True, end=500))
    assert s.replay_bytes == 20 * 1600  # waits for the formatted repeat
    s.delivered(turn(0, final=True, formatted=True, end=500))
    assert s.replay_bytes == 10 * 1600
    assert s.completed_turns == 1


def test_the_buffer_is_bounded_and_drops_the_oldest() -> None:
    """With room for 5 frames, 8 sent keep the last 5; the replay starts at 150 ms."""
    s = seam(max_bytes=5 * 1600)
    for i in range(8):
        s.sent(bytes([i]) * 1600)
    frames = s.replay()
    assert [f[0] for f in frames] == [3, 4, 5, 6, 7]


def test_a_replacement_s_turns_are_renumbered_and_retimed() -> None:
    """The new upstream's turn 0 becomes the next client turn; its word times are
    shifted to where the replay began."""
    s = seam(format_turns=False)
    for _ in range(20):
        s.sent(FRAME)
    s.delivered(turn(0, final=True, end=400))
    s.delivered(turn(1, final=True, end=800))
    s.replay(elapsed_ms=5000)  # frames from 800 ms on
    out = s.rewrite(turn(0, final=False, end=300))
    assert out is not None and out["turn_order"] == 2
    assert out["words"][0] == {"text": "x", "start": 800, "end": 1100}


def replaced_at_800_ms(elapsed_ms: float = 5000) -> Seam:
    """Two turns completed (the second ending at 800 ms), then a replacement opened
    ``elapsed_ms`` into the session."""
    s = seam(format_turns=False)
    for _ in range(20):
        s.sent(FRAME)
    s.delivered(turn(0, final=True, end=400))
    s.delivered(turn(1, final=True, end=800))
    s.replay(elapsed_ms=elapsed_ms)
    return s


def test_every_message_naming_a_turn_is_renumbered() -> None:
    """SpeakerRevision (each revision and its words) and LLMGatewayResponse refer to
    the replacement's turn 0: the client's turn 2."""
    s = replaced_at_800_ms()
    revision = s.rewrite(
        {
            "type": "SpeakerRevision",
            "revisions": [
                {"turn_order": 0, "speaker_label": "B", "words": [{"start": 10, "end": 90}]},
                {"turn_order": 1, "speaker_label": "A", "words": []},
            ],
        }
    )
    assert revision is not None
    assert [r["turn_order"] for r in revision["revisions"]] == [2, 3]
    assert revision["revisions"][0]["words"] == [{"start": 810, "end": 890}]
    llm = s.rewrite({"type": "LLMGatewayResponse", "turn_order": 0, "transcript": "x"})
    assert llm is not None and llm["turn_order"] == 2


def test_every_time_is_on_the_session_clock() -> None:
    """SpeechStarted and Silence times move to where the replay began (800 ms)."""
    s = replaced_at_800_ms()
    started = s.rewrite({"type": "SpeechStarted", "timestamp": 120, "confidence": 0.8})
    assert started == {"type": "SpeechStarted", "timestamp": 920, "confidence": 0.8}
    silence = s.rewrite({"type": "Silence", "start_ms": 100, "end_ms": 700})
    assert silence == {"type": "Silence", "start_ms": 900, "end_ms": 1500}


def test_totals_cover_the_whole_session() -> None:
    """Termination and Heartbeat count the audio before the replay and the session's
    time before the replacement; integers stay integers."""
    s = replaced_at_800_ms(elapsed_ms=2400)
    termination = s.rewrite(
        {"type": "Termination", "audio_duration_seconds": 1, "session_duration_seconds": 1}
    )
    assert termination == {
        "type": "Termination",
        "audio_duration_seconds": 2,  # 0.8 + 1, rounded
        "session_duration_seconds": 3,  # 2.4 + 1, rounded
    }
    heartbeat = s.rewrite(
        {
            "type": "Heartbeat",
            "total_audio_received_ms": 1000,
            "total_duration_ms": 1100,
            "realtime_factor": 0.9,
        }
    )
    assert heartbeat == {
        "type": "Heartbeat",
        "total_audio_received_ms": 1800,
        "total_duration_ms": 3500,
        "realtime_factor": 0.9,
    }


def test_other_and_malformed_messages_pass_untouched() -> None:
    """Unknown types, and known ones with fields of the wrong type, are left alone."""
    s = replaced_at_800_ms()
    for message in (
        {"type": "Warning", "warning_code": 1, "warning": "x"},
        {"type": "FutureThing", "turn_order": 0, "timestamp": 5},
        {"type": "SpeechStarted", "timestamp": "soon"},
        {"type": "LLMGatewayResponse", "turn_order": True},
        {"type": "SpeakerRevision", "revisions": "none"},
    ):
        assert s.rewrite(dict(message)) == message


def test_an_unformatted_final_the_client_has_is_not_sent_twice() -> None:
    """The drop fell between a final and its formatted repeat: the replacement's
    repeat of the unformatted final is dropped, its formatted one goes through."""
    s = seam()
    for _ in range(20):
        s.sent(FRAME)
    s.delivered(turn(0, final=True, end=600))  # unformatted; formatted lost with upstream
    frames = s.replay()
    assert len(frames) == 20  # the whole turn is replayed
    assert s.rewrite(turn(0, final=True, end=600)) is None
    formatted = s.rewrite(turn(0, final=True, formatted=True, end=600))
    assert formatted is not None and formatted["turn_order"] == 0


def test_compressed_audio_is_not_replayed() -> None:
    """Without a byte rate (opus) nothing is kept: a replay is empty."""
    s = Seam(bytes_per_ms=None, format_turns=True, max_replay_bytes=64_000)
    s.sent(b"\x01" * 100)
    assert s.replay() == [] and s.replay_bytes == 0


def test_the_configuration_kept_for_a_replacement_is_merged_and_bounded() -> None:
    """Later fields replace earlier ones; a message that would take the merged fields
    over the limit starts afresh from its own; format_turns is reported when set."""
    kept = Configuration(limit=200)
    assert not kept
    assert kept.update({"type": "UpdateConfiguration", "min_turn_silence": 400}) is None
    assert kept.update({"type": "UpdateConfiguration", "min_turn_silence": 900}) is None
    assert kept.update({"type": "UpdateConfiguration", "format_turns": "false"}) is False
    assert json.loads(kept.message()) == {
        "type": "UpdateConfiguration",
        "min_turn_silence": 900,
        "format_turns": "false",
    }
    assert kept.names == ["min_turn_silence", "format_turns"]
    kept.update({"type": "UpdateConfiguration", "prompt": "p" * 150})
    assert kept.names == ["prompt"]
