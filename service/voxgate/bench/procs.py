"""The processes a bench run measures: started, pinned to a core, read from /proc.

Each server is ``python -m ...`` printing one ``listening on ws://HOST:PORT`` line;
it is pinned with ``os.sched_setaffinity`` right after it starts (its threads
inherit the mask). CPU is ``utime + stime`` from ``/proc/PID/stat``, memory
``VmRSS`` from ``/proc/PID/status``: what the kernel charged, not what we guess.
The integration tests start their servers and redis-server with these helpers too
(tests/support/procs.py), unpinned.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Time a server may take to say it listens.
START_TIMEOUT = 20.0
#: Time a server gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 15.0
_LISTENING = re.compile(r"listening on (wss?://\S+)")
_TICKS = os.sysconf("SC_CLK_TCK")
#: Redis options: no snapshots, no append-only file (a throwaway server).
REDIS_EPHEMERAL = ("--save", "", "--appendonly", "no")
#: Redis options: persistent like production (compose runs it so), a restart keeps the data.
REDIS_APPEND_ONLY = ("--save", "", "--appendonly", "yes")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (all its threads)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    # After "pid (comm)": state is field 3, utime field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def machine_busy_seconds() -> float:
    """CPU time all processes of the machine used (all cores), from /proc/stat."""
    with open("/proc/stat", "rb") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / _TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def usable_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def pin(pid: int, cpus: Iterable[int] | None) -> None:
    if cpus is not None:
        os.sched_setaffinity(pid, set(cpus))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    name: str
    popen: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def http_url(self) -> str:
        return "http" + self.url[2:]  # ws:// -> http://, wss:// -> https://

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def stderr(self) -> str:
        """What the server has written to its stderr (the log file) so far."""
        return self.log_path.read_text(errors="replace")

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Its exit status, once it has exited."""
        return self.popen.wait(timeout=timeout)

    def stop(self) -> None:
        stop_process(self.popen)


def stop_process(popen: subprocess.Popen[bytes]) -> None:
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=STOP_TIMEOUT)
    if popen.stdout is not None:
        popen.stdout.close()


def start_server(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    cpus: Iterable[int] | None = None,
    *,
    cwd: Path | None = None,
    timeout: float = START_TIMEOUT,
) -> Server:
    """Run ``python ARGV`` in ``cwd`` with ``env`` added (and this process's VOXGATE_*
    variables left out), pin it, wait for its listening line; stderr goes to ``log_path``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VOXGATE_")}
    full_env.update(env)
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, *argv], cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=log
        )
    pin(popen.pid, cpus)
    assert popen.stdout is not None
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    with selectors.DefaultSelector() as selector:
        selector.register(popen.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or popen.poll() is not None:
                popen.kill()
                popen.wait()
                raise RuntimeError(
                    f"{name} did not start: {seen}\n{log_path.read_text(errors='replace')[-2000:]}"
                )
            if selector.select(timeout=min(left, 0.5)):
                line = popen.stdout.readline().decode(errors="replace")
                seen.append(line)
                match = _LISTENING.search(line)
                if match:
                    return Server(name, popen, match.group(1), log_path)


class RedisServer:
    """A ``redis-server`` on a free port, started at once with ``options``
    (REDIS_EPHEMERAL: a throwaway; REDIS_APPEND_ONLY: its data survives a restart).
    ``stop()`` then ``start()`` bring it back on the same port and directory."""

    def __init__(
        self,
        workdir: Path,
        cpus: Iterable[int] | None = None,
        options: Sequence[str] = REDIS_EPHEMERAL,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self.argv = [binary, *options, "--port", str(self.port), "--bind", "127.0.0.1"]
        self.argv += ["--dir", str(workdir)]
        self.cpus = None if cpus is None else list(cpus)
        self.popen: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.popen is not None, "redis-server is stopped"
        return self.popen.pid

    def start(self) -> None:
        """Start the server (again, if stopped) and wait until it answers PING."""
        if self.popen is not None and self.popen.poll() is None:
            return
        popen = self.popen = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        pin(popen.pid, self.cpus)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ping():
            if time.monotonic() > deadline or popen.poll() is not None:
                self.stop()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.05)

    def ping(self) -> bool:
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
