"""Fixtures that run the real parts: the upstream simulator, gateways and redis-server,
as processes. Every test in this folder is marked ``integration``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from voxgate.bench.procs import REDIS_APPEND_ONLY, RedisServer, Server

from tests.support.gateway import CLIENT_KEYS, SANDBOX_KEYS, TEST_PACE_BURST, GatewayFactory
from tests.support.procs import start

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of this folder ``integration`` (``-m "not integration"`` leaves them)."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
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
    """A real redis-server for one test, append-only: a test may stop and start it again
    and find its data."""
    server = RedisServer(tmp_path, options=REDIS_APPEND_ONLY)
    yield server
    server.stop()


@pytest.fixture
def gateway_factory(sandbox: Server, tmp_path: Path) -> Iterator[GatewayFactory]:
    """Start gateways on port 0 in front of the module's simulator; all stopped after."""
    started: list[Server] = []

    def make(upstream_keys: str = "main=good-key", **env: str) -> Server:
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
def gateway(gateway_factory: GatewayFactory) -> Server:
    """A gateway with one working upstream key."""
    return gateway_factory()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for localhost and 127.0.0.1, and its key."""
    from voxgate.edge.tls import self_signed

    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_gateway_factory(
    gateway_factory: GatewayFactory, tls_files: tuple[Path, Path]
) -> GatewayFactory:
    """Like ``gateway_factory``, serving wss:// and https:// with ``tls_files``."""

    def make(upstream_keys: str = "main=good-key", **env: str) -> Server:
        cert, key = tls_files
        return gateway_factory(
            upstream_keys, VOXGATE_TLS_CERT=str(cert), VOXGATE_TLS_KEY=str(key), **env
        )

    return make
