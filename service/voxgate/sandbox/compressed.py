"""How long compressed audio lasts and whether it is sound, without decoding it. Pure.

The simulator has no Opus or AAC decoder (none is installed, and a codec is a large
dependency for a test double). It reads what the containers say instead:

* ``opus``: each message is taken as one raw Opus packet [inf: the reference does not
  say how AssemblyAI frames raw Opus]; its TOC byte (RFC 6716 section 3.1) gives the
  frame length and count, so the duration.
* ``ogg_opus``: Ogg pages (RFC 3533) across messages; a page's granule position counts
  48 kHz samples (RFC 7845), so the difference between pages is the duration.
* ``aac``: ADTS frames across messages; each holds 1024 samples at the rate its header
  names.

Loudness is judged by bitrate: an encoder spends a few bytes on silence (Opus DTX and
comfort noise, AAC's near-empty frames) and many on speech, so payload bytes per
millisecond above ``SOUND_BYTES_PER_MS`` (8 kbit/s) count as sound. Bytes that parse
as none of this are taken at ``NOMINAL_BYTES_PER_MS`` (32 kbit/s) and as sound.
"""

from __future__ import annotations

#: Payload bytes per millisecond above which compressed audio counts as sound.
SOUND_BYTES_PER_MS = 1.0
#: What unparseable compressed bytes are taken to be worth.
NOMINAL_BYTES_PER_MS = 4.0
#: Carry-over between messages stays bounded without a check: an Ogg page is at most
#: 65 307 bytes, an ADTS frame 8191, and bytes with no sync pattern are dropped.

_SILK_MS = (10.0, 20.0, 40.0, 60.0)
_HYBRID_MS = (10.0, 20.0)
_CELT_MS = (2.5, 5.0, 10.0, 20.0)
_ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000,
               11025, 8000, 7350)  # fmt: skip


def opus_packet_ms(packet: bytes) -> float:
    """Duration of one raw Opus packet from its TOC byte (0.0 when it has none)."""
    if not packet:
        return 0.0
    toc = packet[0]
    config = toc >> 3
    if config < 12:
        frame = _SILK_MS[config % 4]
    elif config < 16:
        frame = _HYBRID_MS[config % 2]
    else:
        frame = _CELT_MS[config % 4]
    code = toc & 0x03
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        count = packet[1] & 0x3F if len(packet) > 1 else 0
    return frame * count


class Meter:
    """One session's compressed stream: ``feed(message)`` -> (milliseconds, is sound)."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._carry = b""
        self._granule: int | None = None
        #: Whether anything in the stream has parsed yet (else bytes are nominal).
        self._structured = False

    def feed(self, message: bytes) -> tuple[float, bool]:
        if self.encoding == "opus":
            millis = opus_packet_ms(message)
            payload = max(0, len(message) - 1)
        elif self.encoding == "ogg_opus":
            millis, payload = self._ogg(message)
        elif self.encoding == "aac":
            millis, payload = self._adts(message)
        else:
            millis, payload = 0.0, 0
        if millis > 0.0 or payload:
            self._structured = True
        if millis <= 0.0:
            if message and not self._structured and len(self._carry) < len(message):
                return len(message) / NOMINAL_BYTES_PER_MS, True
            return 0.0, False
        return millis, payload / millis >= SOUND_BYTES_PER_MS

    def _ogg(self, message: bytes) -> tuple[float, int]:
        data = self._carry + message
        millis = 0.0
        payload = 0
        pos = 0
        while True:
            start = data.find(b"OggS", pos)
            if start < 0 or len(data) - start < 27:
                pos = start if start >= 0 else max(0, len(data) - 3)
                break
            segments = data[start + 26]
            head = 27 + segments
            if len(data) - start < head:
                pos = start
                break
            body = sum(data[start + 27 : start + head])
            if len(data) - start < head + body:
                pos = start
                break
            self._structured = True
            granule = int.from_bytes(data[start + 6 : start + 14], "little", signed=True)
            if granule > 0:
                if self._granule is not None and granule > self._granule:
                    millis += (granule - self._granule) / 48.0
                    payload += body
                self._granule = granule
            pos = start + head + body
        self._carry = data[pos:]
        return millis, payload

    def _adts(self, message: bytes) -> tuple[float, int]:
        data = self._carry + message
        millis = 0.0
        payload = 0
        pos = 0
        while len(data) - pos >= 7:
            if not (data[pos] == 0xFF and data[pos + 1] & 0xF0 == 0xF0):
                pos += 1
                continue
            rate_index = (data[pos + 2] >> 2) & 0x0F
            length = ((data[pos + 3] & 0x03) << 11) | (data[pos + 4] << 3) | (data[pos + 5] >> 5)
            if rate_index >= len(_ADTS_RATES) or length < 7:
                pos += 1
                continue
            if len(data) - pos < length:
                break
            millis += 1024 * 1000.0 / _ADTS_RATES[rate_index]
            payload += length - 7
            pos += length
        self._carry = data[pos:]
        return millis, payload
