"""What the adversarial tests share: a process's memory watched while an attack runs,
and a well-behaved SDK client streaming beside the attack, whose turns must keep coming.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from tests.support import audio
from tests.support.sdk import PARAMS, Recorder, sdk_client

#: How often the memory watcher samples.
RSS_PERIOD = 0.05


def rss_bytes(pid: int) -> int:
    """The resident set size of a process (Linux /proc), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class RssWatch:
    """Samples a process's RSS in a thread from ``start()`` to ``stop()``; ``growth`` is
    the peak over the sample taken at start, in bytes."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssWatch:
        self.baseline = self.peak = rss_bytes(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(RSS_PERIOD):
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except (OSError, RuntimeError):
                return  # the process is gone: the test sees that itself

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


@dataclass
class BystanderSession:
    began_after: float | None = None  # seconds from connect() to Begin
    finals: int = 0
    terminated: bool = False
    errors: list[str] = field(default_factory=list)


class Bystander:
    """A well-behaved client beside an attack: official SDK sessions one after another,
    each streaming ``utterances`` turns at real-time pace and waiting (up to
    ``turn_timeout`` each) for its final turns, until ``stop()``. Use as a context
    manager around the attack; then check ``sessions``."""

    def __init__(
        self,
        url: str,
        key: str,
        utterances: int = 2,
        turn_timeout: float = 10.0,
        max_sessions: int = 50,
    ) -> None:
        self.url = url
        self.key = key
        self.utterances = utterances
        self.turn_timeout = turn_timeout
        self.max_sessions = max_sessions
        self.sessions: list[BystanderSession] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Bystander:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.turn_timeout * (self.utterances + 2) + 15)

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.sessions) < self.max_sessions:
            self.sessions.append(self._one())

    def _one(self) -> BystanderSession:
        rec = Recorder()
        result = BystanderSession()
        client = sdk_client(self.url, self.key, rec)
        started = time.monotonic()
        try:
            client.connect(PARAMS)
            if rec.wait_for(lambda r: bool(r.of("Begin")), timeout=self.turn_timeout):
                result.began_after = time.monotonic() - started
            for frame in audio.speech(self.utterances):
                client.stream(frame)
                time.sleep(audio.FRAME_MS / 1000)
            rec.wait_for(
                lambda r: sum(1 for t in r.of("Turn") if t.end_of_turn) >= self.utterances,
                timeout=self.turn_timeout,
            )
            client.disconnect(terminate=True)
        except Exception as exc:  # recorded: the test asserts on it
            result.errors.append(repr(exc))
        result.finals = sum(1 for t in rec.of("Turn") if t.end_of_turn)
        result.terminated = bool(rec.of("Termination"))
        result.errors += [repr(e) for e in rec.of("Error")]
        return result

    @property
    def completed(self) -> list[BystanderSession]:
        """Sessions that got every final turn and their Termination, without error."""
        return [
            s
            for s in self.sessions
            if s.finals >= self.utterances and s.terminated and not s.errors
        ]
