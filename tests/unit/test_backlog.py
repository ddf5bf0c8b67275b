"""The publishing backlog: bounded, ordered, and shedding partials before finals."""

from __future__ import annotations

import json

import pytest
from voxgate.transcripts.backlog import Backlog


def items(backlog: Backlog[str]) -> list[str]:
    return [e.item for e in backlog.peek(len(backlog))]


def test_order_is_kept_and_pop_takes_from_the_front() -> None:
    """Envelopes leave in the order they came."""
    b: Backlog[str] = Backlog(10)
    for name in "abc":
        assert b.push(name, final=True) is None
    assert items(b) == ["a", "b", "c"]
    b.pop(2)
    assert items(b) == ["c"]


def test_full_backlog_sheds_the_oldest_partial_first() -> None:
    """When full, the oldest partial goes, even if finals are older."""
    b: Backlog[str] = Backlog(3)
    b.push("F1", final=True)
    b.push("p1", final=False)
    b.push("p2", final=False)
    dropped = b.push("F2", final=True)
    assert dropped is not None and dropped.item == "p1"
    assert items(b) == ["F1", "p2", "F2"]


def test_only_finals_waiting_sheds_an_incoming_partial_not_a_final() -> None:
    """A partial never pushes out a final."""
    b: Backlog[str] = Backlog(2)
    b.push("F1", final=True)
    b.push("F2", final=True)
    dropped = b.push("p", final=False)
    assert dropped is not None and dropped.item == "p"
    assert items(b) == ["F1", "F2"]


def test_finals_only_drop_the_oldest_final_when_nothing_else_can_go() -> None:
    """Last resort: the oldest final makes room for a newer final."""
    b: Backlog[str] = Backlog(2)
    b.push("F1", final=True)
    b.push("F2", final=True)
    dropped = b.push("F3", final=True)
    assert dropped is not None and dropped.item == "F1"
    assert items(b) == ["F2", "F3"] and len(b) == 2


def test_capacity_must_be_positive() -> None:
    """A zero-size backlog is a configuration error."""
    with pytest.raises(ValueError):
        Backlog(0)


def test_what_the_stream_keeps_and_what_is_live_only() -> None:
    """Final turns, Begin, Termination and Error go to the stream and are not shed
    first; partials, Heartbeats and unknown types are live only (pub/sub) and shed first."""
    from voxgate.metrics.gateway import Metrics
    from voxgate.transcripts.publisher import Publisher

    publisher = Publisher(
        "redis://127.0.0.1:1/0", Metrics(), backlog=100, stream_maxlen=10, stream_partials=False
    )
    session = publisher.session("s1", "tester", None)
    for message in [
        {"type": "Begin", "id": "s1"},
        {"type": "Turn", "end_of_turn": False},
        {"type": "Turn", "end_of_turn": True},
        {"type": "Heartbeat"},
        {"type": "Echo", "n": "00"},
        {"type": "Error", "error_code": 1011},
        {"type": "Termination"},
    ]:
        session.message(json.dumps(message), message)
    entries = publisher._backlog.peek(10)
    kept = [
        (json.loads(e.item.text)["message"]["type"], e.final, e.item.to_stream) for e in entries
    ]
    assert kept == [
        ("Begin", True, True),
        ("Turn", False, False),
        ("Turn", True, True),
        ("Heartbeat", False, False),
        ("Echo", False, False),
        ("Error", True, True),
        ("Termination", True, True),
    ]


def test_the_batch_in_flight_is_never_shed() -> None:
    """While a batch is being sent (peek .. pop), a full backlog sheds partials behind
    it, then the incoming entry; pop after the send removes exactly the batch."""
    backlog: Backlog[str] = Backlog(4)
    for name, final in [("p1", False), ("f1", True), ("p2", False), ("f2", True)]:
        backlog.push(name, final=final)
    batch = [e.item for e in backlog.peek(2)]  # p1, f1 on their way
    assert backlog.push("f3", final=True).item == "p2"  # type: ignore[union-attr]
    assert backlog.push("p3", final=False).item == "p3"  # type: ignore[union-attr]
    assert backlog.push("f4", final=True).item == "f2"  # type: ignore[union-attr]
    backlog.pop(len(batch))
    assert [e.item for e in backlog.peek(10)] == ["f3", "f4"]
    assert batch == ["p1", "f1"]


def test_when_everything_is_in_flight_the_incoming_entry_is_shed() -> None:
    """A full backlog that is all in flight keeps its batch and sheds the newcomer."""
    backlog: Backlog[str] = Backlog(2)
    backlog.push("a", final=True)
    backlog.push("b", final=True)
    backlog.peek(2)
    dropped = backlog.push("c", final=True)
    assert dropped is not None and dropped.item == "c"
    assert len(backlog) == 2
