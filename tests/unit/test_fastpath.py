"""The pieces of the per-frame fast path (docs/performance.md): the one-frame parse
``FrameReader.whole``, the shared watchdog ticker, envelopes of odd session ids.
(The masking keys across a fork: integration/test_fastpath.py.)"""

from __future__ import annotations

import asyncio
import json

import pytest
from voxgate.logs import get_logger
from voxgate.metrics.gateway import Metrics, Outcome
from voxgate.relay import closes
from voxgate.relay.session import Session
from voxgate.relay.ticker import Ticker
from voxgate.transcripts.publisher import Publisher
from voxgate.ws.frames import (
    BINARY,
    CONTINUATION,
    PING,
    TEXT,
    FrameReader,
    apply_mask,
    encode,
)

MAX_SIZE = 70_000


def reader(masked: bool = True) -> FrameReader:
    return FrameReader(masked=masked, max_size=MAX_SIZE)


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("size", [0, 1, 125, 126, 1600, 65535])
@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_whole_gives_what_feed_gives_for_one_whole_frame(
    masked: bool, size: int, opcode: int
) -> None:
    """Every 7- and 16-bit length, both roles, text and binary: the same message as
    the general parser, and the reader is left as fresh (the next frame parses)."""
    payload = b"a" * size
    data = encode(opcode, payload, mask=masked)
    fast, general = reader(masked), reader(masked)
    message = fast.whole(data)
    assert message is not None
    assert [(opcode, message)] == general.feed(data)
    assert fast.feed(encode(BINARY, b"next", mask=masked)) == [(BINARY, b"next")]


def hand_frame(first: int, payload: bytes, *, second_bit: int = 0x80) -> bytes:
    key = b"\x09\x08\x07\x06"
    body = apply_mask(payload, key) if second_bit else payload
    return bytes([first, second_bit | len(payload)]) + (key if second_bit else b"") + body


@pytest.mark.parametrize(
    ("why", "data"),
    [
        ("not final", hand_frame(0x02, b"part")),
        ("a control frame", encode(PING, b"hi", mask=True)),
        ("a reserved bit", hand_frame(0xC2, b"x")),
        ("not masked by a client", hand_frame(0x82, b"x", second_bit=0)),
        ("two frames in one read", encode(BINARY, b"a", mask=True) * 2),
        ("a partial frame", encode(BINARY, b"abcdef", mask=True)[:-1]),
        ("a 64-bit length", encode(BINARY, b"x" * 65536, mask=True)),
        ("text that is not UTF-8", encode(TEXT, b"\xff\xfe", mask=True)),
        ("empty", b""),
        ("one byte", b"\x82"),
    ],
)
def test_whole_leaves_everything_else_to_feed(why: str, data: bytes) -> None:
    """Anything but one whole, final, rule-abiding data frame is not taken (None), and
    the reader is untouched, so ``feed`` still parses it or finds what is wrong."""
    fast = reader()
    assert fast.whole(data) is None, why
    assert fast.feed(data) == reader().feed(data)


def test_whole_leaves_a_message_over_max_size_to_feed() -> None:
    """Over ``max_size`` (with a 16-bit length): not taken; ``feed`` answers 1009."""
    small = FrameReader(masked=True, max_size=1000)
    data = encode(BINARY, b"x" * 1001, mask=True)
    assert small.whole(data) is None
    assert small.feed(data) == [] and small.error is not None and small.error.code == 1009


def test_whole_waits_while_a_frame_or_a_fragmented_message_is_pending() -> None:
    """With part of a frame buffered, or inside a fragmented message, a whole frame
    must go through ``feed`` (which joins, or refuses a message inside another)."""
    partial = reader()
    assert partial.feed(encode(BINARY, b"abcdef", mask=True)[:3]) == []
    assert partial.whole(encode(BINARY, b"x", mask=True)) is None

    fragmented = reader()
    assert fragmented.feed(hand_frame(0x01, b"he")) == []  # TEXT, not final
    assert fragmented.whole(encode(BINARY, b"x", mask=True)) is None
    assert fragmented.feed(hand_frame(0x80 | CONTINUATION, b"llo")) == [(TEXT, "hello")]


def test_ticker_calls_each_function_until_discarded_and_survives_a_failing_one() -> None:
    """One timer for all: each registered function gets the loop's time every
    interval; one that raises does not stop the others; with none left, no timer."""

    async def scenario() -> None:
        ticker = Ticker(0.01)
        seen: list[float] = []
        three = asyncio.Event()

        def record(now: float) -> None:
            seen.append(now)
            if len(seen) >= 3:
                three.set()

        def broken(now: float) -> None:
            raise RuntimeError("a bug in one session")

        ticker.add(broken)
        ticker.add(record)
        async with asyncio.timeout(2.0):
            await three.wait()
        assert seen == sorted(seen) and seen[-1] <= asyncio.get_running_loop().time()
        ticker.discard(record)
        ticker.discard(broken)
        assert len(ticker) == 0 and ticker._timer is None
        count = len(seen)
        await asyncio.sleep(0.05)
        assert len(seen) == count

    asyncio.run(scenario())


def test_a_failing_watchdog_ends_its_session_as_a_gateway_bug() -> None:
    """The watchdog runs in the shared ticker, which carries on past one session's
    exception; that session must still end (INTERNAL, as when the watchdog was its
    own task), not run on with no deadline enforced."""

    async def scenario() -> tuple[str, bool, int]:
        session = Session.__new__(Session)  # only what the watchdog uses
        session._ticker = Ticker(0.01)
        session._watch = asyncio.get_running_loop().create_future()
        session.log = get_logger("test")
        session._counted_at = -1e9  # per-second accounting is due, and fails:
        session.metrics = None  # type: ignore[assignment]
        session._ticker.add(session._tick)
        async with asyncio.timeout(2.0):
            end = await asyncio.wait([session._watch])
        assert end
        result = session._end_of(session._watch)
        return result.outcome, result.close is closes.INTERNAL, len(session._ticker)

    assert asyncio.run(scenario()) == (Outcome.INTERNAL, True, 0)


def test_an_upstream_session_id_redis_cannot_encode_is_escaped() -> None:
    """Upstream's Begin id may hold a lone surrogate (JSON allows "\\ud800"): its
    envelopes still encode for Redis (else the publishing task would fail on them)."""
    publisher = Publisher(
        "redis://127.0.0.1:1/0", Metrics(), backlog=10, stream_maxlen=10, stream_partials=False
    )
    session = publisher.session("\ud800-id", "tester", None)
    session.started({})
    turn = {"type": "Turn", "end_of_turn": True}
    session.message(json.dumps(turn), turn)
    for entry in publisher._backlog.peek(10):
        arg = entry.item.script_arg().encode()  # strict UTF-8, as redis-py encodes
        assert b"voxgate:session:\\ud800-id" in arg
        assert json.loads(entry.item.text)["session_id"] == "\\ud800-id"
