"""``voxgate healthcheck``: the address it asks, its answers against a real HTTP server
on loopback (200, an error status, silence, nobody), no proxy, and its light start."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from voxgate.cli import main
from voxgate.cli.healthcheck import check, target

from tests.support import ROOT


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/healthz" else 404
        body = b'{"status":"ok"}'
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    _Health.status = 200


def test_the_check_asks_the_gateway_s_own_address() -> None:
    """VOXGATE_HOST/VOXGATE_PORT as the gateway reads them; a wildcard is loopback."""
    assert target({}) == ("127.0.0.1", 8080)
    assert target({"VOXGATE_HOST": "0.0.0.0", "VOXGATE_PORT": "9000"}) == ("127.0.0.1", 9000)
    assert target({"VOXGATE_HOST": "::"}) == ("::1", 8080)
    assert target({"VOXGATE_HOST": "10.1.2.3"}, port=81) == ("10.1.2.3", 81)
    with pytest.raises(ValueError):
        target({"VOXGATE_PORT": "http"})


def test_healthy_is_200_and_anything_else_is_one_line(
    health_server: http.server.HTTPServer,
) -> None:
    port = health_server.server_address[1]
    assert check("127.0.0.1", port, 2.0) is None
    _Health.status = 503
    assert check("127.0.0.1", port, 2.0) == "/healthz answered 503"


def test_silence_and_nobody_fail_within_the_timeout() -> None:
    """A socket that accepts and never answers: "no answer within"; nothing listening:
    the error's words."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        assert check("127.0.0.1", port, 0.3) == "no answer within 0.3 s"
    problem = check("127.0.0.1", port, 2.0)
    assert problem is not None and "refused" in problem.lower()


def test_the_command_exits_0_or_1_and_ignores_a_proxy(
    health_server: http.server.HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`voxgate healthcheck` with VOXGATE_PORT and a (dead) http_proxy set, as a
    container may have: 0 while /healthz answers, 1 and one line when it does not."""
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("VOXGATE_PORT", str(health_server.server_address[1]))
    monkeypatch.delenv("VOXGATE_HOST", raising=False)
    assert main(["healthcheck"]) == 0
    _Health.status = 500
    assert main(["healthcheck", "--timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("voxgate healthcheck: http://127.0.0.1:") and err.count("\n") == 1


def test_the_command_imports_nothing_but_itself() -> None:
    """It runs every few seconds in every container: no framework, no settings, none of
    the other commands (each would add tenths of a second of imports)."""
    code = (
        "import sys\n"
        "from voxgate.cli import main\n"
        "main(['healthcheck', '--port', '9', '--timeout', '0.2'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('voxgate') or m in "
        "('websockets', 'redis', 'starlette', 'uvicorn', 'structlog', 'prometheus_client')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    loaded = result.stdout.strip()
    assert loaded == "['voxgate', 'voxgate.cli', 'voxgate.cli.healthcheck']", result
