"""``voxgate tail``: transcripts followed from Redis, live and from the stream."""

from __future__ import annotations

import subprocess
import sys
import time

from voxgate.bench.procs import RedisServer

from tests.support import ROOT, audio
from tests.support.gateway import GatewayFactory, wait_backlog_empty
from tests.support.wsclient import DEFAULT_QUERY, run, session


def tail(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "voxgate", "tail", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_tail_follows_a_tag_live_and_reads_the_stream_from_the_start(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """A live `tail --tag` started before the session prints its start, its final
    turns (formatted ones marked) and its end; `tail --stream --from-start` later
    prints the same finals from the durable stream."""
    gw = gateway_factory(VOXGATE_REDIS_URL=redis_server.url)
    live = tail("--redis", redis_server.url, "--tag", "desk-9", "--limit", "100")
    time.sleep(1.0)  # let it subscribe: pub/sub keeps nothing for late listeners
    query = DEFAULT_QUERY + "&voxgate_tag=desk-9"
    out = run(session(gw.url, audio.frames(audio.utterance(0.8, 0.6) * 2), query=query))
    assert out.code == 1000
    wait_backlog_empty(gw)
    time.sleep(0.5)
    live.terminate()
    printed, _ = live.communicate(timeout=10)
    lines = printed.splitlines()
    assert "session started (client tester)" in lines[0]
    finals = [line for line in lines if " final" in line]
    assert len(finals) == len(out.finals) == 4
    assert sum("final*" in line for line in finals) == 2
    assert "session ended: completed" in lines[-1] and "desk-9" in lines[-1]

    stream = tail("--redis", redis_server.url, "--stream", "--from-start", "--limit", "6")
    printed, err = stream.communicate(timeout=20)
    assert stream.returncode == 0, err
    lines = printed.splitlines()
    assert [line for line in lines if " final" in line] == finals


def test_tail_refuses_a_bad_tag_and_says_when_redis_is_down() -> None:
    """An invalid --tag exits 2; an unreachable Redis exits 1 with a message."""
    bad = tail("--tag", "a b")
    _, err = bad.communicate(timeout=20)
    assert bad.returncode == 2 and "not a valid tag" in err
    down = tail("--redis", "redis://127.0.0.1:1/0", "--stream")
    _, err = down.communicate(timeout=30)
    assert down.returncode == 1 and "Redis at redis://127.0.0.1:1/0" in err
