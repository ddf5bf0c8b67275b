"""The lean RFC 6455 WebSocket (voxgate/ws) without sockets: the frame codec, the
handshake's parsing, and what our client refuses before it connects."""

from __future__ import annotations

import asyncio
import struct
import tracemalloc

import pytest
from voxgate.ws import client
from voxgate.ws.connection import State
from voxgate.ws.frames import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    TEXT,
    FrameError,
    FrameReader,
    apply_mask,
    close_payload,
    default_max_fragments,
    encode,
    parse_close,
)
from voxgate.ws.handshake import (
    HandshakeError,
    Response,
    accept_value,
    check_accept,
    client_request,
    new_key,
    parse_request,
    parse_response_head,
)

from tests.support.sansio import RecordingTransport, ServerSide, frames_of
from tests.support.wsclient import run

#: Deadline for a whole async scenario (each await in it is bounded by it).
WAIT = 5.0
MAX_SIZE = 1024


# ---------------------------------------------------------------------- frames


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv: int = 0
) -> bytes:
    """A frame built by hand (short lengths only), fin/rsv/mask as asked."""
    assert len(payload) < 126
    first = (0x80 if fin else 0) | rsv | opcode
    if not mask:
        return bytes([first, len(payload)]) + payload
    key = b"\x01\x02\x03\x04"
    return bytes([first, 0x80 | len(payload)]) + key + apply_mask(payload, key)


def server_reader(max_size: int = MAX_SIZE) -> FrameReader:
    return FrameReader(masked=True, max_size=max_size)


def code_of(reader: FrameReader, data: bytes) -> int:
    """The close code the reader answers ``data`` with (it stops at the first error)."""
    assert reader.feed(data) == []
    assert reader.error is not None
    assert reader.feed(encode(TEXT, b"later", mask=True)) == []  # stopped for good
    return reader.error.code


def test_masked_frames_round_trip_text_as_str_binary_as_bytes() -> None:
    """A client's masked frames parse back on the server side: text as str, binary as
    bytes, several in one feed, in order."""
    data = encode(TEXT, "héllo".encode(), mask=True) + encode(BINARY, b"\x00\xff", mask=True)
    assert server_reader().feed(data) == [(TEXT, "héllo"), (BINARY, b"\x00\xff")]


def test_frames_fed_one_byte_at_a_time_come_out_whole() -> None:
    """Partial frames wait for the rest: byte by byte, nothing comes out until each
    frame's last byte, then exactly that message."""
    reader = server_reader()
    data = encode(TEXT, b"abc", mask=True) + encode(BINARY, b"xyz" * 50, mask=True)
    out = []
    for i in range(len(data)):
        out.extend(reader.feed(data[i : i + 1]))
    assert out == [(TEXT, "abc"), (BINARY, b"xyz" * 50)]


def test_unmasked_frames_round_trip_on_the_client_side() -> None:
    """A server's unmasked frames parse on the client side (masked=False)."""
    reader = FrameReader(masked=False, max_size=MAX_SIZE)
    assert reader.feed(encode(TEXT, b"hi", mask=False)) == [(TEXT, "hi")]


def test_16_and_64_bit_lengths() -> None:
    """200 bytes use the 16-bit length (126), 70000 the 64-bit one (127); both parse."""
    small, big = bytes(range(200)), b"q" * 70_000
    small_frame, big_frame = encode(BINARY, small, mask=True), encode(BINARY, big, mask=True)
    assert small_frame[1] & 0x7F == 126 and struct.unpack("!H", small_frame[2:4]) == (200,)
    assert big_frame[1] & 0x7F == 127 and struct.unpack("!Q", big_frame[2:10]) == (70_000,)
    reader = server_reader(max_size=100_000)
    assert reader.feed(small_frame + big_frame) == [(BINARY, small), (BINARY, big)]
    client_side = FrameReader(masked=False, max_size=100_000)
    assert client_side.feed(encode(BINARY, big, mask=False)) == [(BINARY, big)]


def test_fragmented_text_is_reassembled_and_utf8_checked_as_a_whole() -> None:
    """TEXT fin=0 + CONTINUATION fin=1 give one message; a character split across the
    fragments (é = C3 A9) is fine since UTF-8 is checked on the whole message."""
    reader = server_reader()
    assert reader.feed(frame(TEXT, b"caf\xc3", fin=False)) == []
    assert reader.feed(frame(CONTINUATION, b"\xa9 ", fin=False)) == []
    assert reader.feed(frame(CONTINUATION, b"noir", fin=True)) == [(TEXT, "café noir")]
    # the reader is ready for the next message afterwards
    assert reader.feed(frame(BINARY, b"z")) == [(BINARY, b"z")]


def test_a_ping_inside_a_fragmented_message_comes_out_as_a_control_frame() -> None:
    """A control frame between fragments is delivered at once; the message follows."""
    data = frame(TEXT, b"ab", fin=False) + frame(PING, b"p") + frame(CONTINUATION, b"cd", fin=True)
    assert server_reader().feed(data) == [(PING, b"p"), (TEXT, "abcd")]


def test_masking_rules_are_enforced_both_ways() -> None:
    """Unmasked to a server-side reader, or masked to a client-side one: 1002."""
    assert code_of(server_reader(), encode(TEXT, b"x", mask=False)) == 1002
    client_side = FrameReader(masked=False, max_size=MAX_SIZE)
    assert code_of(client_side, encode(TEXT, b"x", mask=True)) == 1002


@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10])
def test_reserved_bits_are_a_protocol_error(rsv: int) -> None:
    """RSV1-3 set without a negotiated extension: 1002."""
    assert code_of(server_reader(), frame(TEXT, b"x", rsv=rsv)) == 1002


def test_control_frames_over_125_bytes_or_fragmented_are_refused() -> None:
    """A 126-byte ping is 1002 as soon as its header is in; so is a ping with fin=0."""
    assert code_of(server_reader(), encode(PING, b"x" * 126, mask=True)[:4]) == 1002
    assert code_of(server_reader(), frame(PING, b"x", fin=False)) == 1002


def test_a_message_over_max_size_is_refused_at_its_header() -> None:
    """A 2000-byte frame against max_size 1024: 1009 from the 4 header bytes alone,
    before any payload (so it is never buffered); exactly max_size is accepted."""
    data = encode(BINARY, b"x" * 2000, mask=True)
    assert code_of(server_reader(), data[:4]) == 1009
    big = encode(BINARY, b"y" * MAX_SIZE, mask=True)
    assert server_reader().feed(big) == [(BINARY, b"y" * MAX_SIZE)]


def test_a_fragmented_message_cannot_grow_past_max_size() -> None:
    """Two 100-byte fragments fit max_size 150 each, not together: 1009 at the second
    fragment's header."""
    reader = server_reader(max_size=150)
    first = encode(BINARY, b"a" * 100, mask=True)
    first = bytes([first[0] & 0x7F]) + first[1:]  # clear FIN: a first fragment
    assert reader.feed(first) == []
    second = bytes([0x80 | CONTINUATION, 0x80 | 100])
    assert code_of(reader, second) == 1009


def test_invalid_utf8_text_is_1007() -> None:
    """A text message that is not UTF-8: 1007; the same bytes as binary are fine."""
    assert code_of(server_reader(), frame(TEXT, b"ok\xff")) == 1007
    assert server_reader().feed(frame(BINARY, b"ok\xff")) == [(BINARY, b"ok\xff")]


def test_fragmentation_order_errors_are_1002() -> None:
    """A continuation with no message to continue, and a new data frame inside a
    fragmented message, are both 1002."""
    assert code_of(server_reader(), frame(CONTINUATION, b"x")) == 1002
    reader = server_reader()
    reader.feed(frame(TEXT, b"a", fin=False))
    assert code_of(reader, frame(BINARY, b"b")) == 1002


@pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF])
def test_unknown_opcodes_are_1002(opcode: int) -> None:
    """Reserved data (3-7) and control (B-F) opcodes: 1002."""
    assert code_of(server_reader(), frame(opcode, b"x")) == 1002


def test_parse_close_codes() -> None:
    """An empty close is 1005; one byte, the never-on-the-wire 1006 and an unassigned
    999 are 1002; a reason that is not UTF-8 is 1007; an application code round-trips
    with its reason through close_payload."""
    assert parse_close(b"") == (1005, "")
    for payload in (b"\x03", struct.pack("!H", 1006), struct.pack("!H", 999)):
        with pytest.raises(FrameError) as caught:
            parse_close(payload)
        assert caught.value.code == 1002, payload
    with pytest.raises(FrameError) as bad_reason:
        parse_close(struct.pack("!H", 1000) + b"\xff")
    assert bad_reason.value.code == 1007
    assert parse_close(close_payload(4001, "reason ✓")) == (4001, "reason ✓")
    assert parse_close(close_payload(1000, "")) == (1000, "")


def test_close_payload_cuts_a_long_reason_on_a_character_boundary() -> None:
    """200 bytes of two-byte characters: cut to 61 characters (122 bytes), never half
    a character, so the frame stays within the 125-byte control limit."""
    payload = close_payload(1008, "é" * 100)
    assert len(payload) <= 125 and len(payload) - 2 <= 123
    assert parse_close(payload) == (1008, "é" * 61)
    # three-byte characters: 41 of them fill exactly 123 bytes
    assert parse_close(close_payload(1000, "€" * 50)) == (1000, "€" * 41)


# ---------------------------------------------------------------------- handshake


def upgrade_request(*, version: str = "13", key: str | None = None) -> bytes:
    """A raw upgrade request as uvicorn hands it over."""
    return (
        "GET /v3/ws?sample_rate=16000 HTTP/1.1\r\n"
        "host: example\r\n"
        "upgrade: websocket\r\n"
        "connection: Upgrade\r\n"
        f"sec-websocket-key: {key if key is not None else new_key()}\r\n"
        f"sec-websocket-version: {version}\r\n\r\n"
    ).encode()


def test_accept_value_matches_the_rfc_example() -> None:
    """RFC 6455 section 1.3's key gives its documented accept value."""
    assert accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_parse_request_reads_path_query_headers_and_key() -> None:
    """A valid request: path and query split, header names lower case, key kept."""
    key = new_key()
    request = parse_request(upgrade_request(key=key))
    assert request.path == "/v3/ws" and request.query_string == b"sample_rate=16000"
    assert (b"host", b"example") in request.headers and request.key == key


def test_parse_request_refusals_carry_their_status() -> None:
    """Version 8: 426; a key that is not 16 base64 bytes: 400; a POST: 400."""
    with pytest.raises(HandshakeError) as version:
        parse_request(upgrade_request(version="8"))
    assert version.value.status == 426
    for key in ("not base64!", "c2hvcnQ=", ""):
        with pytest.raises(HandshakeError) as bad_key:
            parse_request(upgrade_request(key=key))
        assert bad_key.value.status == 400, key
    with pytest.raises(HandshakeError) as post:
        parse_request(upgrade_request().replace(b"GET", b"POST", 1))
    assert post.value.status == 400
    for missing in (b"connection: Upgrade\r\n", b"host: example\r\n"):
        with pytest.raises(HandshakeError) as incomplete:
            parse_request(upgrade_request().replace(missing, b""))
        assert incomplete.value.status == 400, missing
    with pytest.raises(HandshakeError):
        parse_request(upgrade_request().replace(b"connection: Upgrade", b"connection: close"))


def test_parse_request_takes_connection_as_a_token_list() -> None:
    """Browsers may send "Connection: keep-alive, Upgrade": that is an upgrade."""
    listed = upgrade_request().replace(b"connection: Upgrade", b"Connection: keep-alive, UPGRADE")
    assert parse_request(listed).path == "/v3/ws"


def switching(key: str, **extra: str) -> Response:
    headers = {
        "upgrade": "websocket",
        "connection": "Upgrade",
        "sec-websocket-accept": accept_value(key),
    }
    headers.update(extra)
    return Response(101, headers, None)


def test_check_accept_wants_our_key_and_no_extension() -> None:
    """The right accept passes; another key's accept, or an extension we never
    offered, raise HandshakeError."""
    key = new_key()
    check_accept(switching(key), key)
    with pytest.raises(HandshakeError):
        check_accept(switching(key, **{"sec-websocket-accept": accept_value(new_key())}), key)
    with pytest.raises(HandshakeError):
        check_accept(switching(key, **{"sec-websocket-extensions": "permessage-deflate"}), key)


def test_parse_response_head_reads_status_headers_and_length() -> None:
    """Status, header names lower-cased, Content-Length as a number (None without)."""
    head = b"HTTP/1.1 402 Payment Required\r\nContent-Type: text/plain\r\nContent-Length: 12"
    response = parse_response_head(head)
    assert response.status == 402 and response.body_length == 12
    assert response.headers == {"content-type": "text/plain", "content-length": "12"}
    assert parse_response_head(b"HTTP/1.1 101 Switching Protocols").body_length is None
    for bad in (b"garbage", b"HTTP/1.1 abc OK", b"HTTP/1.1 200 OK\r\nno colon"):
        with pytest.raises(HandshakeError):
            parse_response_head(bad)


def test_client_request_refuses_header_injection() -> None:
    """A header value with a line break is refused rather than sent."""
    with pytest.raises(ValueError):
        client_request("h", "/", new_key(), {"Authorization": "k\r\nX-Evil: 1"})


# ---------------------------------------------------------------------- our client


def test_client_rejects_non_websocket_urls() -> None:
    """Only ws:// and wss:// URLs with a host are accepted."""

    async def scenario() -> None:
        for url in ("http://example.com/", "ws:///path"):
            with pytest.raises(ValueError):
                await client.connect(
                    url, headers={}, max_size=1 << 20, max_queue=16, close_timeout=1
                )

    run(scenario(), WAIT)


def test_messages_before_a_framing_error_are_still_delivered() -> None:
    """A frame that breaks the rules stops the reader, but the messages that arrived
    before it in the same read are not lost."""
    reader = FrameReader(masked=True, max_size=10)
    good = encode(TEXT, b"ok", mask=True)
    too_big = encode(BINARY, b"x" * 11, mask=True)
    assert reader.feed(good + too_big) == [(TEXT, "ok")]
    assert reader.error is not None and reader.error.code == 1009


# ---------------------------------------------------------------------- messages in progress


def first_fragment(opcode: int, payload: bytes) -> bytes:
    return frame(opcode, payload, fin=False)


def test_a_64_bit_length_with_its_top_bit_set_is_a_protocol_error() -> None:
    """RFC 6455 5.2: the most significant bit of a 64-bit length must be 0, so such a
    header is 1002 (not 1009, as if it were merely a big message)."""
    head = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", (1 << 63) | 5) + b"\x01\x02\x03\x04"
    assert code_of(server_reader(), head) == 1002
    client_side = FrameReader(masked=False, max_size=MAX_SIZE)
    assert code_of(client_side, bytes([0x82, 127]) + struct.pack("!Q", 1 << 63)) == 1002


def test_empty_continuations_count_against_the_fragment_bound() -> None:
    """A text message continued by empty frames that never ends (attack H2): the 16th
    frame of a message with max_fragments 16 is the last accepted; the next is 1009,
    naming the fragments bound."""
    reader = FrameReader(masked=True, max_size=MAX_SIZE, max_fragments=16)
    assert reader.feed(first_fragment(TEXT, b"{")) == []
    assert reader.feed(frame(CONTINUATION, b"", fin=False) * 15) == []
    assert reader.error is None and reader.partial
    assert code_of(reader, frame(CONTINUATION, b"", fin=False)) == 1009
    assert reader.error is not None and reader.error.limit == "fragments"


def test_a_message_of_exactly_max_fragments_frames_is_accepted() -> None:
    """The bound is inclusive, and ends with the message: the next message starts
    its own count."""
    reader = FrameReader(masked=True, max_size=MAX_SIZE, max_fragments=4)
    data = first_fragment(BINARY, b"a") + frame(CONTINUATION, b"b", fin=False) * 2
    for _ in range(2):
        assert reader.feed(data + frame(CONTINUATION, b"c")) == [(BINARY, b"abbc")]
    assert reader.error is None and reader.partial == 0


def test_the_default_fragment_bound_scales_with_max_size() -> None:
    """One frame per 128 bytes of max_size: 8192 for 1 MiB, 131072 for 16 MiB (so a
    4 MiB message in 64-byte fragments fits a 16 MiB hop); never under 16."""
    assert default_max_fragments(1 << 20) == 8192
    assert default_max_fragments(16 << 20) == 131072
    assert default_max_fragments(100) == 16
    reader = FrameReader(masked=True, max_size=2048)  # so 16 frames
    reader.feed(first_fragment(BINARY, b"x") + frame(CONTINUATION, b"x", fin=False) * 15)
    assert code_of(reader, frame(CONTINUATION, b"x", fin=False)) == 1009


def test_a_message_in_progress_holds_its_payload_not_an_object_per_fragment() -> None:
    """50,000 one-byte fragments (a big max_fragments) are held in about their 50 KB
    of payload: under 2 bytes per fragment besides it (an object per fragment costs
    37-56 bytes each)."""
    count = 50_000
    reader = FrameReader(masked=True, max_size=1 << 20, max_fragments=count + 2)
    data = first_fragment(BINARY, b"x") + frame(CONTINUATION, b"y", fin=False) * count
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        reader.feed(data)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert reader.error is None
    assert held < 3 * count, f"{held} bytes held for {count} one-byte fragments"
    out = reader.feed(frame(CONTINUATION, b"z"))
    assert out == [(BINARY, b"x" + b"y" * count + b"z")]


def test_fragmented_text_fails_at_the_first_fragment_that_is_not_utf8() -> None:
    """Invalid UTF-8 in a middle fragment is 1007 at once (Autobahn 6.4.1-6.4.2), not at
    the end of the message; a character split across fragments is still fine."""
    reader = server_reader()
    assert reader.feed(first_fragment(TEXT, b"caf\xc3")) == []
    assert reader.feed(frame(CONTINUATION, b"\xa9", fin=False)) == []
    assert code_of(reader, frame(CONTINUATION, b"\xed\xa0\x80", fin=False)) == 1007
    first_bad = server_reader()
    assert code_of(first_bad, first_fragment(TEXT, b"ok\xff")) == 1007
    truncated = server_reader()
    truncated.feed(first_fragment(TEXT, b"a"))
    assert code_of(truncated, frame(CONTINUATION, b"\xe2\x82")) == 1007  # ends mid-character


def test_a_fragmented_message_must_finish_within_message_timeout() -> None:
    """A first fragment and then nothing: after message_timeout the connection sends
    close 1008 and tells on_limit "deadline"; a message that finishes in time does not."""
    limits: list[str] = []

    async def scenario() -> None:
        wire: list[tuple[str, bytes]] = []
        ws = ServerSide(
            max_size=MAX_SIZE, ping_interval=None, message_timeout=0.05, on_limit=limits.append
        )
        ws.connection_made(RecordingTransport("server", wire))  # type: ignore[arg-type]
        ws.state = State.OPEN
        ws.data_received(first_fragment(TEXT, b"a") + frame(CONTINUATION, b"b"))
        await asyncio.sleep(0.15)
        assert frames_of(wire, "server", masked=False) == []  # completed in time
        ws.data_received(first_fragment(TEXT, b"a"))
        await asyncio.sleep(0.15)
        assert frames_of(wire, "server", masked=False) == [
            (CLOSE, close_payload(1008, "message not complete within 0.05 s"))
        ]
        ws.connection_lost(None)

    run(scenario(), WAIT)
    assert limits == ["deadline"]


def test_a_refused_message_half_closes_instead_of_closing() -> None:
    """On 1009 the connection writes its close frame, then EOF (write_eof), and does not
    close the transport while the peer may still be sending (that would reset the
    connection and could destroy the close frame); it aborts after close_timeout."""
    calls: list[str] = []

    class Transport(RecordingTransport):
        def close(self) -> None:
            calls.append("close")

        def abort(self) -> None:
            calls.append("abort")

    async def scenario() -> None:
        wire: list[tuple[str, bytes]] = []
        ws = ServerSide(max_size=MAX_SIZE, ping_interval=None, close_timeout=0.05)
        ws.connection_made(Transport("server", wire))  # type: ignore[arg-type]
        ws.state = State.OPEN
        ws.data_received(encode(BINARY, b"x" * (MAX_SIZE + 1), mask=True))
        assert [data for _, data in wire][-1] == b""  # EOF after the close frame
        assert frames_of(wire, "server", masked=False)[0][0] == CLOSE
        assert calls == []
        await asyncio.sleep(0.2)
        assert calls == ["abort"]

    run(scenario(), WAIT)


class PausingTransport(RecordingTransport):
    """Records whether reading is paused."""

    paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def test_the_receive_queue_is_bounded_in_bytes_as_well_as_messages() -> None:
    """Two 700 KB messages (1 MiB max_size, so the queue holds at most 1 MiB) pause
    reading, far below the 32-message bound; taking them resumes it. Many small
    messages still pause at 32."""

    async def scenario() -> tuple[bool, bool, bool, bool]:
        ws = ServerSide(max_size=1 << 20, ping_interval=None)
        transport = PausingTransport("peer", [])
        ws.connection_made(transport)  # type: ignore[arg-type]
        ws.state = State.OPEN
        big = encode(BINARY, bytes(700_000), mask=True)
        ws.data_received(big)
        after_one = transport.paused
        ws.data_received(big)
        after_two = transport.paused
        await ws.recv()
        await ws.recv()
        resumed = not transport.paused
        for _ in range(32):
            ws.data_received(encode(BINARY, b"x" * 100, mask=True))
        return after_one, after_two, resumed, transport.paused

    assert run(scenario(), WAIT) == (False, True, True, True)


def test_a_frame_trickled_in_bytes_is_held_compactly_and_has_a_partial_number() -> None:
    """1-byte reads of one big frame: joined every few dozen reads (a list of 1-byte
    objects cost ~40 bytes of memory per byte), and the incomplete frame is numbered in
    ``partial`` from its first byte (the connection's message deadline), 0 once done."""
    size = 100_000
    frame = encode(BINARY, b"\x01" * size, mask=True)
    reader = FrameReader(masked=True, max_size=1 << 20)
    assert reader.partial == 0
    tracemalloc.start()
    try:
        for i in range(len(frame) - 1):
            assert reader.feed(frame[i : i + 1]) == []
            if i == 0:
                first = reader.partial
                assert first
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reader.partial == first
    assert peak < 4 * size, peak  # was ~42 bytes per byte held
    assert reader.feed(frame[-1:]) == [(BINARY, b"\x01" * size)]
    assert reader.partial == 0
