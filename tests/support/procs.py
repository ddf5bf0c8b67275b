"""The project's servers as processes for the integration tests.

Starting, waiting and stopping are ``voxgate.bench.procs``'s (the bench runs the same
servers): each server binds port 0 and prints one ``... listening on ws://HOST:PORT``
line when ready, so tests never collide on ports; everything waits with a deadline.
Here: ``python -m voxgate`` from the repository root, and a real Prometheus.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from voxgate.bench.procs import START_TIMEOUT, Server, free_port, start_server, stop_process

from tests.support import ROOT
from tests.support.deploy import PROMETHEUS_YML
from tests.support.http import get_json

#: Time a test may wait for Prometheus to see something (scrapes and rules every 1 s).
PROMETHEUS_WAIT = 60.0


def start(
    args: Sequence[str], env: Mapping[str, str], stderr_path: Path, timeout: float = START_TIMEOUT
) -> Server:
    """Run ``python -m voxgate ARGS`` (JSON logs unless ``env`` says otherwise) and wait
    for its listening line."""
    return start_server(
        args[0],
        ["-m", "voxgate", *args],
        {"VOXGATE_LOG_FORMAT": "json", **env},
        stderr_path,
        cwd=ROOT,
        timeout=timeout,
    )


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
                    get_json(self.url + "/api/v1/status/buildinfo", timeout=1.0)
                    return
                except OSError:
                    time.sleep(0.1)
            self.stop()
        raise RuntimeError(f"prometheus did not start: {self.log()}")

    def log(self) -> str:
        return (self.workdir / "prometheus.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.popen is not None:
            stop_process(self.popen)
        self.popen = None

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; raise on an error answer (a bad expression)."""
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            answer = get_json(url)
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
