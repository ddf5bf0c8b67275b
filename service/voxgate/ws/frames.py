"""The WebSocket frame codec (RFC 6455 section 5), pure: bytes in, messages out.

``FrameReader.feed`` takes whatever the socket delivered and returns the complete
messages and control frames in it; partial frames wait for the next call. The first
rule a peer breaks stops the reader: it keeps a :class:`FrameError` in ``error``,
with the close code to answer with: 1002 (protocol), 1007 (text not UTF-8), 1009
(message too big, or in too many fragments). What came before the offending frame is
still returned.

A message being assembled from fragments is bounded three ways: its payload by
``max_size``, its frames by ``max_fragments`` (empty ones count: each costs a parse),
and its memory by the payload alone (fragments are appended to one buffer, so a
fragment holds no object of its own). Fragmented text is UTF-8 checked as it comes,
so invalid text fails at the fragment that breaks it, not at the end.
"""

from __future__ import annotations

import codecs
import os
import struct
from collections.abc import Callable
from typing import Final


def _py_apply_mask(data: bytes, mask: bytes) -> bytes:  # pragma: no cover - see below
    n = len(data)
    repeated = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


apply_mask: Callable[[bytes, bytes], bytes]
"""XOR ``data`` with the 4-byte ``mask`` (the same call masks and unmasks): the C
routine of the websockets package (a dependency anyway), else pure Python."""
try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - only without its compiled extension
    apply_mask = _py_apply_mask

CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA
_DATA = (TEXT, BINARY)
_CONTROL = (CLOSE, PING, PONG)
#: RFC 6455 5.5: control frames carry at most 125 bytes; a close reason 123.
MAX_CONTROL_PAYLOAD: Final = 125
MAX_CLOSE_REASON: Final = 123

#: Close codes a peer may send (RFC 6455 7.4, plus the registered 1012-1014 and the
#: 3000-4999 application range); 1005 and 1006 must never appear on the wire.
_WIRE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})

#: A message may come in at most one frame per this many bytes of ``max_size`` (so
#: 8192 frames for 1 MiB, 131072 for 16 MiB: a 4 MiB message in 64-byte fragments, as
#: Autobahn's section 9 sends, fits a 16 MiB hop), and never fewer than MIN_FRAGMENTS.
FRAGMENT_BYTES: Final = 128
MIN_FRAGMENTS: Final = 16
#: The highest bit of a 64-bit payload length must be 0 (RFC 6455 5.2).
_LENGTH_TOP_BIT: Final = 1 << 63
_utf8_decoder = codecs.getincrementaldecoder("utf-8")


def default_max_fragments(max_size: int) -> int:
    """The frame bound of one message for a given ``max_size``."""
    return max(MIN_FRAGMENTS, max_size // FRAGMENT_BYTES)


_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")
_HEAD = struct.Struct("!BB")
_HEAD16 = struct.Struct("!BBH")
_HEAD64 = struct.Struct("!BBQ")


class FrameError(Exception):
    """The peer broke the framing rules: close the connection with ``code``. ``limit``
    names the bound a message went over ("size", "fragments"), None for other errors."""

    def __init__(self, code: int, reason: str, limit: str | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.limit = limit


#: Masking keys are read from the OS's random source this many bytes at a time (one
#: ``getrandom`` per 1024 frames, not one per frame).
_KEY_BLOCK = 4096
_key_block = b""
_key_pos = 0


def mask_key() -> bytes:
    """A fresh, unpredictable 4-byte masking key (RFC 6455 5.3). No lock: two threads
    racing here could get the same key, which stays unpredictable to anyone else."""
    global _key_block, _key_pos
    pos = _key_pos
    if pos >= len(_key_block):
        _key_block, pos = os.urandom(_KEY_BLOCK), 0
    _key_pos = pos + 4
    return _key_block[pos : pos + 4]


def _fresh_keys() -> None:  # a forked worker must not reuse its parent's keys
    global _key_block, _key_pos
    _key_block, _key_pos = b"", 0


os.register_at_fork(after_in_child=_fresh_keys)


def encode(opcode: int, payload: bytes, *, mask: bool) -> bytes:
    """One final frame. Clients mask what they send (RFC 6455 5.3), servers do not."""
    n = len(payload)
    first = 0x80 | opcode
    bit = 0x80 if mask else 0
    if n < 126:
        head = _HEAD.pack(first, bit | n)
    elif n < 65536:
        head = _HEAD16.pack(first, bit | 126, n)
    else:
        head = _HEAD64.pack(first, bit | 127, n)
    if not mask:
        return head + payload
    key = mask_key()
    return b"".join((head, key, apply_mask(payload, key)))


def close_payload(code: int, reason: str) -> bytes:
    """A close frame's payload; the reason is cut to 123 bytes on a character boundary."""
    raw = reason.encode()
    if len(raw) > MAX_CLOSE_REASON:
        raw = raw[:MAX_CLOSE_REASON].decode(errors="ignore").encode()
    return _U16.pack(code) + raw


def parse_close(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a received close frame; 1005 when it carries no code."""
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise FrameError(1002, "close frame of one byte")
    (code,) = _U16.unpack_from(payload)
    if code not in _WIRE_CODES and not 3000 <= code <= 4999:
        raise FrameError(1002, f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(1007, "close reason is not UTF-8") from None
    return code, reason


#: An incomplete frame's reads are joined into one buffer every this many reads.
_JOIN_PARTS = 64


class FrameReader:
    """Incremental parser for one direction of one connection.

    ``masked`` is what the peer must do: clients mask, servers must not. Text
    messages come out as ``str`` (UTF-8 checked), binary ones as ``bytes``; control
    frames as ``(opcode, payload)``. ``max_size`` bounds a whole message, so a
    fragmented one cannot grow past it either, and a partial frame is held only
    up to that size plus its header. ``max_fragments`` bounds the frames of one
    message (default: :func:`default_max_fragments`). ``partial`` is 0 when no
    fragmented message and no incomplete frame is pending, else a number unique to
    that message, or to that frame (so a caller can put a deadline on it: a single
    frame trickled in is under it too).
    """

    __slots__ = (
        "_buffer",
        "_decoder",
        "_fragment_count",
        "_fragment_op",
        "_fragment_size",
        "_fragments",
        "_have",
        "_mask_bit",
        "_masked",
        "_max_fragments",
        "_max_size",
        "_need",
        "_parts",
        "_started",
        "error",
        "partial",
    )

    def __init__(self, *, masked: bool, max_size: int, max_fragments: int | None = None) -> None:
        self.error: FrameError | None = None
        self._masked = masked
        self._mask_bit = 0x80 if masked else 0
        self._max_size = max_size
        self._max_fragments = (
            default_max_fragments(max_size) if max_fragments is None else max_fragments
        )
        self._buffer: bytes | bytearray = b""  # the start of an incomplete frame
        # Reads of a frame whose size is known gather here until it is complete, so a
        # big frame arriving in many reads is joined once, not once per read.
        self._parts: list[bytes] = []
        self._have = 0  # bytes in _buffer and _parts
        self._need = 0  # bytes the incomplete frame needs in all (0: not known yet)
        self._fragments = bytearray()  # the message being assembled
        self._fragment_op = 0
        self._fragment_size = 0
        self._fragment_count = 0
        self._decoder: codecs.IncrementalDecoder | None = None  # fragmented text only
        self._started = 0  # fragmented messages begun so far
        self.partial = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes | str]]:
        """Every complete message and control frame in what has arrived so far (once
        ``error`` is set, nothing more)."""
        if self.error is not None:
            return []
        out: list[tuple[int, bytes | str]] = []
        try:
            self._parse(data, out)
        except FrameError as exc:
            self.error = exc
            self._buffer, self._fragments, self._parts = b"", bytearray(), []
            self._decoder, self.partial = None, 0
        return out

    def whole(self, data: bytes) -> bytes | str | None:
        """The message when ``data`` is exactly one whole, final, rule-abiding data
        frame and nothing is pending (the usual read of a relayed stream); else None,
        and ``feed`` must take ``data`` (it also finds what, if anything, is wrong)."""
        first = data[0] if data else 0
        if (first != 0x82 and first != 0x81) or self._buffer or self._fragment_op:
            return None  # not FIN + TEXT/BINARY without reserved bits, or state pending
        second = data[1] if len(data) > 1 else 0
        if second & 0x80 != self._mask_bit:
            return None
        length = second & 0x7F
        head = 2
        if length == 126:
            if len(data) < 4:
                return None
            length = data[2] << 8 | data[3]
            head = 4
        elif length == 127:
            return None
        if length > self._max_size or self.error is not None:
            return None
        if self._mask_bit:
            if head + 4 + length != len(data):
                return None
            payload = apply_mask(data[head + 4 :], data[head : head + 4])
        elif head + length != len(data):
            return None
        else:
            payload = data[head:]
        if first == 0x81:
            try:
                return payload.decode()
            except UnicodeDecodeError:
                return None
        return payload

    def _parse(self, data: bytes, out: list[tuple[int, bytes | str]]) -> None:
        if self._buffer:
            parts = self._parts
            parts.append(data)
            self._have += len(data)
            if self._have < self._need:
                if len(parts) >= _JOIN_PARTS:  # tiny reads: ~40 bytes of overhead each
                    pending = self._buffer
                    if not isinstance(pending, bytearray):
                        pending = bytearray(pending)
                    pending += b"".join(parts)
                    self._buffer, self._parts = pending, []
                return
            buf = b"".join((self._buffer, *parts))
            self._parts = []
        else:
            buf = data
        end = len(buf)
        pos = 0
        self._need = 0
        while end - pos >= 2:
            first, second = _HEAD.unpack_from(buf, pos)
            if first & 0x70:
                raise FrameError(1002, "reserved bits set (no extension was negotiated)")
            if bool(second & 0x80) is not self._masked:
                raise FrameError(1002, "frame masked" if not self._masked else "frame not masked")
            opcode = first & 0x0F
            length = second & 0x7F
            head = 2
            if length == 126:
                if end - pos < 4:
                    break
                (length,) = _U16.unpack_from(buf, pos + 2)
                head = 4
            elif length == 127:
                if end - pos < 10:
                    break
                (length,) = _U64.unpack_from(buf, pos + 2)
                if length & _LENGTH_TOP_BIT:
                    raise FrameError(1002, "64-bit payload length with its top bit set")
                head = 10
            if opcode >= CLOSE:
                if opcode not in _CONTROL:
                    raise FrameError(1002, f"unknown opcode {opcode}")
                if length > MAX_CONTROL_PAYLOAD or not first & 0x80:
                    raise FrameError(1002, "control frame too long or fragmented")
            elif length + self._fragment_size > self._max_size:
                raise FrameError(1009, f"message over {self._max_size} bytes", "size")
            elif not opcode and self._fragment_count >= self._max_fragments:
                raise FrameError(
                    1009, f"message in over {self._max_fragments} fragments", "fragments"
                )
            start = pos + head + (4 if self._masked else 0)
            stop = start + length
            if stop > end:
                self._need = stop - pos
                break
            payload = buf[start:stop]
            if self._masked and length:
                payload = apply_mask(payload, buf[start - 4 : start])
            pos = stop
            if opcode >= CLOSE:
                out.append((opcode, payload))
                continue
            message = self._assemble(opcode, bool(first & 0x80), payload)
            if message is not None:
                out.append(message)
        if pos < end:  # an incomplete frame: from its first byte it is under a deadline
            self._buffer = buf[pos:]
            if (pos or not self.partial) and not self._fragment_op:
                self._started += 1
                self.partial = self._started
        else:
            self._buffer = b""
            if self.partial and not self._fragment_op:
                self.partial = 0
        self._have = end - pos

    def _assemble(self, opcode: int, fin: bool, payload: bytes) -> tuple[int, bytes | str] | None:
        if opcode == CONTINUATION:
            if not self._fragment_op:
                raise FrameError(1002, "continuation without a message to continue")
            self._fragment_count += 1
            if self._decoder is not None and not fin:  # (the end is decoded whole below)
                self._check_text(payload)
            if payload:
                self._fragments += payload
                self._fragment_size += len(payload)
            if not fin:
                return None
            opcode, payload = self._fragment_op, bytes(self._fragments)
            self._fragments, self._fragment_op, self._fragment_size = bytearray(), 0, 0
            self._fragment_count, self._decoder, self.partial = 0, None, 0
        elif opcode in _DATA:
            if self._fragment_op:
                raise FrameError(1002, "new message inside a fragmented one")
            if not fin:
                self._fragments = bytearray(payload)
                self._fragment_op, self._fragment_size, self._fragment_count = (
                    opcode,
                    len(payload),
                    1,
                )
                if not self.partial:  # (an incomplete first frame already started one)
                    self._started += 1
                    self.partial = self._started
                if opcode == TEXT:
                    self._decoder = _utf8_decoder()
                    self._check_text(payload)
                return None
            if self.partial:  # this frame was pending: its deadline ends with it
                self.partial = 0
        else:
            raise FrameError(1002, f"unknown opcode {opcode}")
        if opcode == TEXT:
            try:
                return TEXT, payload.decode()
            except UnicodeDecodeError:
                raise FrameError(1007, "text message is not UTF-8") from None
        return BINARY, payload

    def _check_text(self, payload: bytes) -> None:
        """Fragmented text fails at the first fragment that cannot be UTF-8 (the
        decoded text is dropped: the whole message is decoded once at its end)."""
        assert self._decoder is not None
        try:
            self._decoder.decode(payload)
        except UnicodeDecodeError:
            raise FrameError(1007, "text message is not UTF-8") from None
