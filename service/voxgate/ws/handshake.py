"""The WebSocket opening handshake (RFC 6455 section 4), pure, for both roles."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from typing import Final

GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: The longest response head (status line and headers) a client waits for.
MAX_HEAD_BYTES: Final = 16 * 1024
#: The most of a refusal's body kept (it is read for its error text only).
MAX_BODY_BYTES: Final = 64 * 1024


class HandshakeError(Exception):
    """The handshake broke a rule. ``status`` is the HTTP answer a server gives."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def accept_value(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


# ---------------------------------------------------------------------- client


def client_request(host: str, target: str, key: str, headers: dict[str, str]) -> bytes:
    """The upgrade request; ``target`` is the path with its query string."""
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} holds a line break")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body_length: int | None  # from Content-Length (None: read to the end)


def parse_response_head(head: bytes) -> Response:
    """The status line and headers of a response (``head`` ends before the blank line)."""
    try:
        text = head.decode("latin-1")
        status_line, *header_lines = text.split("\r\n")
        version, status, *_ = status_line.split(" ", 2)
        code = int(status)
    except ValueError:
        raise HandshakeError("malformed HTTP response") from None
    if not version.startswith("HTTP/1."):
        raise HandshakeError("malformed HTTP response")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise HandshakeError("malformed HTTP header")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    try:
        body_length = int(length) if length is not None else None
    except ValueError:
        raise HandshakeError("malformed Content-Length") from None
    return Response(code, headers, body_length)


def dechunk(data: bytes) -> bytes | None:
    """A ``Transfer-Encoding: chunked`` body decoded; None until its last chunk is in."""
    out: list[bytes] = []
    pos = 0
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            return None
        try:
            size = int(data[pos:line_end].split(b";")[0], 16)
        except ValueError:
            raise HandshakeError("malformed chunked body") from None
        if size == 0:
            return b"".join(out)  # trailers, if any, are of no interest
        start = line_end + 2
        if len(data) < start + size + 2:
            return None
        out.append(data[start : start + size])
        pos = start + size + 2


def check_accept(response: Response, key: str) -> None:
    """A 101 answer must accept exactly our key and no extension we did not offer."""
    h = response.headers
    if h.get("upgrade", "").lower() != "websocket":
        raise HandshakeError("101 without Upgrade: websocket")
    if "upgrade" not in h.get("connection", "").lower():
        raise HandshakeError("101 without Connection: Upgrade")
    if h.get("sec-websocket-accept") != accept_value(key):
        raise HandshakeError("wrong Sec-WebSocket-Accept")
    if h.get("sec-websocket-extensions"):
        raise HandshakeError("server chose an extension that was not offered")


# ---------------------------------------------------------------------- server


@dataclass(frozen=True, slots=True)
class Request:
    path: str
    query_string: bytes
    headers: list[tuple[bytes, bytes]]  # names in lower case, as sent otherwise
    key: str


def parse_request(raw: bytes) -> Request:
    """A complete upgrade request (as uvicorn hands it over) checked for RFC 6455."""
    head, _, _ = raw.partition(b"\r\n\r\n")
    request_line, *header_lines = head.split(b"\r\n")
    parts = request_line.split(b" ")
    if len(parts) != 3 or parts[0] != b"GET":
        raise HandshakeError("a WebSocket upgrade is a GET", 400)
    path, _, query = parts[1].partition(b"?")
    headers: list[tuple[bytes, bytes]] = []
    for line in header_lines:
        name, sep, value = line.partition(b":")
        if not sep:
            raise HandshakeError("malformed header", 400)
        headers.append((name.strip().lower(), value.strip()))
    found = {name: value for name, value in headers}
    if found.get(b"sec-websocket-version") != b"13":
        raise HandshakeError("Sec-WebSocket-Version must be 13", 426)
    if b"websocket" not in found.get(b"upgrade", b"").lower():
        raise HandshakeError("missing Upgrade: websocket", 400)
    connection = {token.strip() for token in found.get(b"connection", b"").lower().split(b",")}
    if b"upgrade" not in connection:  # RFC 6455 4.2.1: a token list that holds Upgrade
        raise HandshakeError("missing Connection: Upgrade", 400)
    if not found.get(b"host"):
        raise HandshakeError("missing Host", 400)
    key = found.get(b"sec-websocket-key", b"")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except (ValueError, binascii.Error):
        raise HandshakeError("invalid Sec-WebSocket-Key", 400) from None
    return Request(path.decode("latin-1"), query, headers, key.decode())


def accept_response(key: str) -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_value(key)}\r\n\r\n"
    ).encode()


def refusal(status: int, text: str) -> bytes:
    """A plain-text HTTP error answer that ends the connection."""
    reasons = {400: "Bad Request", 404: "Not Found", 426: "Upgrade Required"}
    body = (text + "\n").encode()
    extra = "Sec-WebSocket-Version: 13\r\n" if status == 426 else ""
    return (
        f"HTTP/1.1 {status} {reasons.get(status, 'Error')}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n{extra}"
        "Connection: close\r\n\r\n"
    ).encode() + body
