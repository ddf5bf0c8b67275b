"""Fixtures that run the real parts: the upstream simulator and gateways, as processes."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.procs import Proc, RedisServer, start

CLIENT_KEY = "test-client-key"
CLIENT_KEYS = f"tester={CLIENT_KEY}"
#: The simulator's keys, one per behaviour the tests need.
SANDBOX_KEYS = ",".join(
    [
        "good-key=ok",
        "good-key-2=ok",
        "pay-key=402",
        "balance-key=1008-balance",
        "funds-key=4002",
        "limited-key=3009",
        "unauth-key=401",
        "drop-key=drop-1011@1.0",
        "abort-key=drop-1006@1.0",
        "flaky-key=drop-1011@2.0",
        "late-flaky-key=drop-1011@3.5",
        "upgrade-key=402",
        "flaky-abort-key=drop-1006@2.0",
        "hang-key=hang",
        "silent-key=no-begin",
    ]
)


#: Tests send a few seconds of audio at once instead of at real-time pace (a 3 s
#: session would otherwise take 3 s): their gateways and simulator allow that burst.
#: The pace rule itself is tested with a small burst (test_audio_faster_than_real_time).
TEST_PACE_BURST = 10.0


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """One upstream simulator per test module, with a key per failure mode."""
    log = tmp_path_factory.mktemp("sandbox") / "stderr.log"
    proc = start(
        [
            "sandbox",
            "--port",
            "0",
            "--keys",
            SANDBOX_KEYS,
            "--pace-burst",
            str(TEST_PACE_BURST * 2),
        ],
        {},
        log,
    )
    yield proc
    proc.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server for one test."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


GatewayFactory = Callable[..., Proc]


@pytest.fixture
def gateway_factory(sandbox: Proc, tmp_path: Path) -> Iterator[GatewayFactory]:
    """Start gateways on port 0 in front of the module's simulator; all stopped after."""
    started: list[Proc] = []

    def make(upstream_keys: str = "main=good-key", **env: str) -> Proc:
        full = {
            "VOXGATE_UPSTREAM_URL": sandbox.url + "/v3/ws",
            "VOXGATE_UPSTREAM_KEYS": upstream_keys,
            "VOXGATE_CLIENT_KEYS": CLIENT_KEYS,
            "VOXGATE_PORT": "0",
            "VOXGATE_PACE_BURST_SECONDS": str(TEST_PACE_BURST),
            **env,
        }
        proc = start(["serve"], full, tmp_path / f"gateway-{len(started)}.log")
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture
def gateway(gateway_factory: GatewayFactory) -> Proc:
    """A gateway with one working upstream key."""
    return gateway_factory()


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def get_text(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text: str = response.read().decode()
        return text
