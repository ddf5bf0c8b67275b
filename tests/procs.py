"""Starting the project's real servers as processes for tests.

Each server prints one ``... listening on ws://HOST:PORT`` line when ready (it
binds port 0, so tests never collide on ports). Everything waits with a deadline.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Time tests may wait for a server to say it is listening.
START_TIMEOUT = 20.0
#: Time a server gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 15.0
_LISTENING = re.compile(r"listening on (ws://\S+)")


@dataclass
class Proc:
    popen: subprocess.Popen[str]
    url: str
    stderr_path: Path
    lines: list[str] = field(default_factory=list)

    @property
    def http_url(self) -> str:
        return "http" + self.url[2:]

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def start(
    args: Sequence[str], env: Mapping[str, str], stderr_path: Path, timeout: float = START_TIMEOUT
) -> Proc:
    """Run ``python -m service ARGS`` and wait for its listening line."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VOXGATE_")}
    full_env.update(env)
    full_env.setdefault("VOXGATE_LOG_FORMAT", "json")
    stderr = stderr_path.open("w")
    popen = subprocess.Popen(
        [sys.executable, "-m", "service", *args],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    stderr.close()
    assert popen.stdout is not None
    deadline = time.monotonic() + timeout
    selector = selectors.DefaultSelector()
    selector.register(popen.stdout, selectors.EVENT_READ)
    lines: list[str] = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or popen.poll() is not None:
                popen.kill()
                raise RuntimeError(
                    f"{' '.join(args)} did not start: {lines}\n{stderr_path.read_text()}"
                )
            if selector.select(timeout=min(left, 0.5)):
                line = popen.stdout.readline()
                lines.append(line)
                match = _LISTENING.search(line)
                if match:
                    return Proc(popen, match.group(1), stderr_path, lines)
    finally:
        selector.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A real ``redis-server`` on a free port, which a test may stop and start again."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import shutil

        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.popen = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                # Persistent like production (compose runs it so): a restart keeps the stream.
                "--appendonly",
                "yes",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.ping():
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def ping(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            self.popen.wait(timeout=STOP_TIMEOUT)
        self.popen = None
