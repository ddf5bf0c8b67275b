"""Starting the project's real servers as processes for tests.

Each server prints one ``... listening on ws://HOST:PORT`` line when ready (it
binds port 0, so tests never collide on ports). Everything waits with a deadline.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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
    """Run ``python -m voxgate ARGS`` and wait for its listening line."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VOXGATE_")}
    full_env.update(env)
    full_env.setdefault("VOXGATE_LOG_FORMAT", "json")
    stderr = stderr_path.open("w")
    popen = subprocess.Popen(
        [sys.executable, "-m", "voxgate", *args],
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


PROMETHEUS_YML = ROOT / "deploy" / "prometheus" / "prometheus.yml"
#: Time a test may wait for Prometheus to see something (scrapes and rules every 1 s).
PROMETHEUS_WAIT = 60.0


def _get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


class PrometheusServer:
    """A real prometheus on a free port, configured from deploy/ with 1 s intervals:
    the same jobs and rules, the compose discovery replaced by local ``targets``."""

    def __init__(self, workdir: Path, targets: list[str]) -> None:
        self.workdir = workdir
        config = yaml.safe_load(PROMETHEUS_YML.read_text())
        config["global"]["scrape_interval"] = "1s"
        config["global"]["evaluation_interval"] = "1s"
        # rule_files are relative to the config file: point at deploy/'s own rules.
        config["rule_files"] = [str(PROMETHEUS_YML.parent / f) for f in config["rule_files"]]
        # The compose discovery (DNS name voxgate, port 8080) becomes the local gateway.
        (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "voxgate"]
        for discovery in [k for k in job if k.endswith("_sd_configs") or k == "static_configs"]:
            del job[discovery]
        job["static_configs"] = [{"targets": targets}]
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.popen: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("prometheus")
        assert binary is not None, "prometheus missing (apt-get install prometheus)"
        for _ in range(3):  # a free port can be taken between the probe and the bind
            self.port = free_port()
            log = (self.workdir / "prometheus.log").open("wb")
            self.popen = subprocess.Popen(
                [
                    binary,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--web.enable-lifecycle",
                    "--log.level=warn",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            log.close()
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self.popen.poll() is None:
                try:
                    _get_json(self.url + "/api/v1/status/buildinfo", timeout=1.0)
                    return
                except OSError:
                    time.sleep(0.1)
            self.stop()
        raise RuntimeError(f"prometheus did not start: {self.log()}")

    def log(self) -> str:
        return (self.workdir / "prometheus.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        self.popen = None

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; raise on an error answer (a bad expression)."""
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            answer = _get_json(url)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{expr}: {exc.code} {exc.read()[:300]!r}") from None
        assert answer["status"] == "success", (expr, answer)
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, what: str, check: Any, timeout: float = PROMETHEUS_WAIT) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            got = check()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"prometheus: {what} not seen in {timeout:g} s\n{self.log()}")
            time.sleep(0.25)
