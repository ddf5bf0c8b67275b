"""TLS on the listening socket: the server context from ``VOXGATE_TLS_CERT`` and
``VOXGATE_TLS_KEY``, and a throwaway self-signed certificate for ``voxgate demo``
and the tests (docs/deployment.md, "TLS").

The same port then speaks ``https://`` and ``wss://`` only: uvicorn wraps each accepted
connection in TLS before the edge's HTTP protocol sees a byte (so the edge's head
limits and deadlines count from the end of the TLS handshake, which asyncio bounds
at 60 s), and the WebSocket takes over the same TLS transport on upgrade.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

#: Deadline for openssl to make a certificate.
OPENSSL_TIMEOUT = 30.0


class TlsError(ValueError):
    """The certificate or key cannot be used; the message says which and why."""


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context with the certificate chain and key (TLS 1.2 or newer, HTTP/1.1)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(
            f"VOXGATE_TLS_CERT / VOXGATE_TLS_KEY: cannot load {cert!r} with {key!r}: {exc}"
        ) from None
    return context


def self_signed(
    directory: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")
) -> tuple[Path, Path]:
    """Make a throwaway self-signed certificate (1 day, EC P-256) for ``hosts`` in
    ``directory``; return (certificate, key). Clients trust it by its certificate
    file: ``SSL_CERT_FILE`` (Python), ``NODE_EXTRA_CA_CERTS`` (Node), or a browser's
    ``--ignore-certificate-errors`` for a test."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TlsError("openssl is not installed (apt-get install openssl)")
    cert, key = directory / "voxgate-cert.pem", directory / "voxgate-key.pem"
    names = ",".join(("IP:" if _is_ip(h) else "DNS:") + h for h in hosts)
    try:
        subprocess.run(
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                f"/CN={hosts[0]}",
                "-addext",
                f"subjectAltName={names}",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
            timeout=OPENSSL_TIMEOUT,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        raise TlsError(f"openssl could not make a certificate: {exc}") from None
    return cert, key


def _is_ip(host: str) -> bool:
    return host.replace(".", "").isdigit() or ":" in host
