"""The server half of AssemblyAI's browser example, pointed at voxgate: it serves the
page (tests/seed/) and the JS SDK's browser build from npm, and its ``/token`` mints a
temporary token from the gateway's ``/v3/token`` over https with a client key (the
example's server does the same with an AssemblyAI key), so the key never reaches the
page. A thread of the test process, on a free port, with a deadline on every call."""

from __future__ import annotations

import json
import ssl
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from tests.support import ROOT
from tests.support.node import NODE_DIR, ensure_installed

PAGE_DIR = ROOT / "tests" / "seed"
SDK_BUILD = NODE_DIR / "node_modules" / "assemblyai" / "dist" / "assemblyai.streaming.umd.min.js"
#: Deadline of the token call to the gateway.
TOKEN_TIMEOUT = 10.0


class TokenServer:
    def __init__(self, gateway_https: str, client_key: str, ca_file: Path) -> None:
        ensure_installed()
        files = {
            "/": (PAGE_DIR / "index.html", "text/html"),
            "/app.js": (PAGE_DIR / "app.js", "text/javascript"),
            "/assemblyai.streaming.umd.min.js": (SDK_BUILD, "text/javascript"),
        }
        context = ssl.create_default_context(cafile=str(ca_file))
        self.tokens_minted = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path == "/token":
                    self._token()
                elif path == "/favicon.ico":
                    self._answer(200, "image/x-icon", b"")
                elif path in files:
                    file, kind = files[path]
                    self._answer(200, kind, file.read_bytes())
                else:
                    self._answer(404, "text/plain", b"not found")

            def _token(self) -> None:
                request = urllib.request.Request(
                    gateway_https + "/v3/token?expires_in_seconds=60",
                    headers={"Authorization": client_key},
                )
                try:
                    with urllib.request.urlopen(
                        request, timeout=TOKEN_TIMEOUT, context=context
                    ) as answer:
                        body, status = answer.read(), 200
                    outer.tokens_minted += 1
                except urllib.error.HTTPError as refused:
                    body, status = refused.read(), refused.code
                token = json.loads(body)
                self._answer(status, "application/json", json.dumps(token).encode())

            def _answer(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> TokenServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
