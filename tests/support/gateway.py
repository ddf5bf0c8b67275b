"""What the integration tests know of the gateway and the simulator they start: the
client key, the simulator's keys, and the gateway's and simulator's HTTP endpoints."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from voxgate.bench.procs import Server

from tests.support.http import get_json, get_text

CLIENT_KEY = "test-client-key"
CLIENT_KEYS = f"tester={CLIENT_KEY}"
#: The admin key of gateways started with VOXGATE_ADMIN_KEY=ADMIN_KEY.
ADMIN_KEY = "test-admin-key"
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
        "deaf-key=no-termination",
    ]
)
#: Tests send a few seconds of audio at once instead of at real-time pace (a 3 s
#: session would otherwise take 3 s): their gateways and simulator allow that burst.
#: The pace rule itself is tested with a small burst (test_audio_faster_than_real_time).
TEST_PACE_BURST = 10.0

#: Starts a gateway: ``factory(upstream_keys="main=good-key", **VOXGATE_env)``.
GatewayFactory = Callable[..., Server]


def sandbox_sessions(sandbox: Server) -> list[dict[str, Any]]:
    """Every session the simulator has seen (oldest first), from /sandbox/sessions."""
    sessions: list[dict[str, Any]] = get_json(sandbox.http_url + "/sandbox/sessions")
    return sessions


def metric(proc: Server, name: str, **labels: str) -> float:
    """One sample's value from the gateway's /metrics (0.0 when absent)."""
    text = get_text(proc.http_url + "/metrics")
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        base, _, rest = series.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if base == name and got == want:
            return float(value)
    return 0.0


def admin_keys(gw: Server) -> dict[str, dict[str, Any]]:
    """The gateway's /admin/keys (it runs with VOXGATE_ADMIN_KEY=ADMIN_KEY), by alias."""
    request = urllib.request.Request(
        gw.http_url + "/admin/keys", headers={"Authorization": ADMIN_KEY}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return {k["key"]: k for k in json.loads(response.read())["keys"]}


def wait_backlog_empty(gw: Server, timeout: float = 15.0) -> None:
    """Until the gateway says Redis is up and its publishing backlog is empty."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = get_json(gw.http_url + "/readyz")
        if ready["redis"] == "up" and ready["redis_backlog"] == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"backlog not delivered: {ready}")
