"""Highly available Redis topologies on one machine, for the integration tests: a
3-primary, 3-replica Redis Cluster made with ``redis-cli --cluster create``, and a
primary, a replica and three sentinels (``redis-server --sentinel``).

Every process is a real ``redis-server`` (``voxgate.bench.procs.RedisServer``) on a
free port; failure detection is shortened (node timeout, down-after) so that a killed
primary is replaced within a few seconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis
from voxgate.bench.procs import REDIS_EPHEMERAL, RedisServer, free_port

#: How long a topology may take to form, or to fail over, on a busy machine.
FORM_TIMEOUT = 60.0
#: Cluster node timeout and sentinel down-after (ms): a killed primary is replaced in a
#: few seconds (production defaults are 15 s and 30 s).
NODE_TIMEOUT_MS = 1500
#: Replication acknowledgements are sent every second by default; the tests' WAIT
#: timeout is well above that.
SENTINEL_MASTER = "vgmaster"
#: Every server: ephemeral, and a replica's full sync starts at once (not after 5 s).
OPTIONS = (*REDIS_EPHEMERAL, "--repl-diskless-sync-delay", "0")


def command(port: int, *args: str, timeout: float = 5.0) -> str:
    """One command through redis-cli; its reply as text ('' on a connection error)."""
    cli = shutil.which("redis-cli")
    assert cli is not None, "redis-cli is not installed"
    done = subprocess.run(
        [cli, "-p", str(port), *args], capture_output=True, timeout=timeout, check=False
    )
    return done.stdout.decode().strip()


def _wait(what: str, check: object, timeout: float = FORM_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def kill(server: RedisServer) -> None:
    """SIGKILL: the process dies without a word to its replicas or clients."""
    assert server.popen is not None
    os.kill(server.popen.pid, signal.SIGKILL)
    server.popen.wait(timeout=10)
    server.popen = None


def replica_of(primary: RedisServer, servers: list[RedisServer]) -> RedisServer:
    """The (one) replica the primary streams its writes to."""
    with redis.Redis(port=primary.port, socket_timeout=5) as client:
        role = client.execute_command("ROLE")
    ((_host, port, _offset),) = role[2]
    return next(s for s in servers if s.port == int(port))


def cut_and_kill(primary: RedisServer, servers: list[RedisServer], pause: float) -> None:
    """The worst failover for a write: the replica is frozen (SIGSTOP) for ``pause`` s,
    so writes reach its socket but are not applied or acknowledged; then its link is
    cut (CLIENT KILL on the primary) and for ``pause`` s more writes reach the primary
    only; then the primary is killed and the replica thawed. The replica comes back
    with the first part of the writes (unacknowledged, so a careful client sends them
    again) and without the second part (lost unless the client kept them)."""
    replica = replica_of(primary, servers)
    assert replica.popen is not None
    os.kill(replica.popen.pid, signal.SIGSTOP)
    try:
        time.sleep(pause)
        command(primary.port, "CLIENT", "KILL", "TYPE", "replica")
        time.sleep(pause)
        kill(primary)
    finally:
        os.kill(replica.popen.pid, signal.SIGCONT)


class Cluster:
    """Six nodes; ``redis-cli --cluster create`` makes three primaries with a replica each."""

    def __init__(self, workdir: Path) -> None:
        options = (
            *OPTIONS,
            "--cluster-enabled",
            "yes",
            "--cluster-node-timeout",
            str(NODE_TIMEOUT_MS),
            "--cluster-config-file",
            "nodes.conf",
        )
        self.nodes: list[RedisServer] = []
        try:
            for index in range(6):
                folder = workdir / f"node{index}"
                folder.mkdir()
                # The bus port defaults to port + 10000: past 65535 for a high free port.
                bus = ("--cluster-port", str(free_port()))
                self.nodes.append(RedisServer(folder, options=(*options, *bus)))
            cli = shutil.which("redis-cli")
            assert cli is not None, "redis-cli is not installed"
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *addresses,
                    "--cluster-replicas",
                    "1",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=FORM_TIMEOUT,
            )
            _wait("the cluster", self.healthy)
            # A replica that never synced is not promoted: wait for every link.
            _wait("the replicas to sync", self.synced)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def healthy(self) -> bool:
        live = [n for n in self.nodes if n.popen is not None]
        return all("cluster_state:ok" in command(n.port, "CLUSTER", "INFO") for n in live)

    def synced(self) -> bool:
        replicas = [n for n in self.nodes if command(n.port, "ROLE").startswith("slave")]
        return len(replicas) == 3 and all(
            "master_link_status:up" in command(n.port, "INFO", "replication") for n in replicas
        )

    def owner(self, key: str) -> RedisServer:
        """The primary that holds ``key``'s slot now (as the first live node says)."""
        for node in self.nodes:
            if node.popen is None:
                continue
            with redis.Redis(port=node.port, socket_timeout=5) as client:
                slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                for first, last, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if first <= slot <= last:
                        port = int(primary[1])
                        return next(n for n in self.nodes if n.port == port)
        raise AssertionError(f"no primary serves {key!r}")

    def wait_failover(self, dead: RedisServer, key: str) -> None:
        """Until a replica took over ``key``'s slot from the dead primary, and every
        live node says the cluster is whole."""

        def promoted() -> bool:
            try:
                return self.owner(key) is not dead and self.healthy()
            except (AssertionError, OSError, redis.RedisError):
                return False

        _wait("the cluster to fail over", promoted)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class SentinelGroup:
    """A primary, its replica, and three sentinels watching them (quorum 2)."""

    def __init__(self, workdir: Path) -> None:
        self.servers: list[RedisServer] = []
        self.sentinels: list[RedisServer] = []
        try:
            first = workdir / "primary"
            first.mkdir()
            self.primary = RedisServer(first, options=OPTIONS)
            self.servers.append(self.primary)
            second = workdir / "replica"
            second.mkdir()
            self.replica = RedisServer(
                second,
                options=(*OPTIONS, "--replicaof", "127.0.0.1", str(self.primary.port)),
            )
            self.servers.append(self.replica)
            _wait(
                "the replica to sync",
                lambda: (
                    "master_link_status:up" in command(self.replica.port, "INFO", "replication")
                ),
            )
            for index in range(3):
                folder = workdir / f"sentinel{index}"
                folder.mkdir()
                conf = folder / "sentinel.conf"
                conf.write_text(
                    f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {self.primary.port} 2\n"
                    f"sentinel down-after-milliseconds {SENTINEL_MASTER} {NODE_TIMEOUT_MS}\n"
                    f"sentinel failover-timeout {SENTINEL_MASTER} 10000\n"
                    f"sentinel parallel-syncs {SENTINEL_MASTER} 1\n"
                )
                self.sentinels.append(RedisServer(folder, options=(str(conf), "--sentinel")))
            _wait("the sentinels to see each other", self._sentinels_ready)
        except BaseException:
            self.stop()
            raise

    @property
    def addresses(self) -> str:
        """VOXGATE_REDIS_SENTINELS."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            info = command(sentinel.port, "SENTINEL", "MASTER", SENTINEL_MASTER).splitlines()
            fields = dict(zip(info[::2], info[1::2], strict=False))
            if fields.get("num-other-sentinels") != "2" or fields.get("num-slaves") != "1":
                return False
        return True

    def master_port(self) -> int:
        reply = command(
            self.sentinels[0].port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER
        )
        return int(reply.splitlines()[1])

    def wait_failover(self, dead: RedisServer) -> None:
        def promoted() -> bool:
            try:
                port = self.master_port()
            except (IndexError, ValueError):
                return False
            if port == dead.port:
                return False
            role = command(port, "ROLE").splitlines()
            return bool(role) and role[0] == "master"

        _wait("the sentinels to fail over", promoted)

    def stop(self) -> None:
        for server in [*self.sentinels, *self.servers]:
            server.stop()


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
