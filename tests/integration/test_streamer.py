"""``voxgate stream`` and ``voxgate demo``: the README's first command, for real."""

from __future__ import annotations

import subprocess
import sys

from voxgate.bench.procs import Server
from voxgate.cli.demo import sample_wav

from tests.support import ROOT
from tests.support.gateway import CLIENT_KEY


def test_voxgate_stream_prints_the_turns_of_a_wav(gateway: Server) -> None:
    """`voxgate stream sample.wav` through a real gateway prints formatted turns and
    the end of the session, and exits 0."""
    done = subprocess.run(
        [sys.executable, "-m", "voxgate", "stream", str(sample_wav()), "--url", gateway.url],
        env={"VOXGATE_CLIENT_KEY": CLIENT_KEY, "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("session ") and lines[-1].startswith("session ended: 12 s")
    turns = [line for line in lines if line.startswith("[turn ")]
    assert len(turns) == 3 and turns[0] == "[turn 0] Hello from the voxgate."


def test_voxgate_stream_exits_1_with_the_gateway_s_words_on_a_bad_key(gateway: Server) -> None:
    """A wrong client key: exit 1 and the 1008 reason on stderr. The URL is a bare
    HOST:PORT, as `podman port` prints it: it reaches the gateway all the same."""
    bare = gateway.url.removeprefix("ws://")
    done = subprocess.run(
        [sys.executable, "-m", "voxgate", "stream", str(sample_wav()), "--url", bare],
        env={"VOXGATE_CLIENT_KEY": "nope", "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "1008" in done.stderr and "invalid client key" in done.stderr
    assert "Traceback" not in done.stderr


def test_voxgate_demo_runs_the_whole_path_with_no_key() -> None:
    """The README's first command: simulator + gateway + sample, turns printed, exit 0."""
    done = subprocess.run(
        [sys.executable, "-m", "voxgate", "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert "[turn 2]" in done.stdout and "session ended" in done.stdout


def test_voxgate_stream_refuses_a_url_that_is_no_gateway_in_one_line() -> None:
    """A URL it cannot use: exit 2 and one line on stderr, no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "voxgate", "stream", str(sample_wav()), "--url", "ftp://h:21"],
        env={"VOXGATE_CLIENT_KEY": "k", "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "--url" in done.stderr, done.stderr
