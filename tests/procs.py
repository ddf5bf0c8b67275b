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
