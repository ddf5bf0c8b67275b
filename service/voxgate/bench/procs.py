"""The processes a bench run measures: started, pinned to a core, read from /proc.

Each server is ``python -m ...`` printing one ``listening on ws://HOST:PORT`` line;
it is pinned with ``os.sched_setaffinity`` right after it starts (its threads
inherit the mask). CPU is ``utime + stime`` from ``/proc/PID/stat``, memory
``VmRSS`` from ``/proc/PID/status``: what the kernel charged, not what we guess.
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
STOP_TIMEOUT = 10.0
_LISTENING = re.compile(r"listening on (ws://\S+)")
_TICKS = os.sysconf("SC_CLK_TCK")
#: No snapshots, no append-only file: a throwaway server (then ``--dir``'s value).
_REDIS_EPHEMERAL = ("--save", "", "--appendonly", "no", "--dir")


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

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def http_url(self) -> str:
        return "http" + self.url[2:]

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_bytes(self.pid)

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
    cpus: Iterable[int] | None,
) -> Server:
    """Run ``python ARGV`` with ``env`` added, pin it, wait for its listening line."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VOXGATE_")}
    full_env.update(env)
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, *argv], env=full_env, stdout=subprocess.PIPE, stderr=log
        )
    pin(popen.pid, cpus)
    assert popen.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
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
                    return Server(name, popen, match.group(1))


class Redis:
    """A throwaway ``redis-server`` (no persistence) on a free port."""

    def __init__(self, workdir: Path, cpus: Iterable[int] | None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self.popen = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                *_REDIS_EPHEMERAL,
                str(workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        pin(self.popen.pid, cpus)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ping():
            if time.monotonic() > deadline or self.popen.poll() is not None:
                self.stop()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            self.popen.wait(timeout=STOP_TIMEOUT)
