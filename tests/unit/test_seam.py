"""The seam across upstream reconnects: replay buffer, renumbering, no duplicate finals."""

from __future__ import annotations

from typing import Any

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
    shifted to where the replay began; other messages pass untouched."""
    s = seam(format_turns=False)
    for _ in range(20):
        s.sent(FRAME)
    s.delivered(turn(0, final=True, end=400))
    s.delivered(turn(1, final=True, end=800))
    s.replay()  # frames from 800 ms on
    out = s.rewrite(turn(0, final=False, end=300))
    assert out is not None and out["turn_order"] == 2
    assert out["words"][0] == {"text": "x", "start": 800, "end": 1100}
    assert s.rewrite({"type": "Termination", "audio_duration_seconds": 1}) == {
        "type": "Termination",
        "audio_duration_seconds": 1,
    }


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
