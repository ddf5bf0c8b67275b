"""The AssemblyAI Node SDK (npm ``assemblyai``, pinned in tests/node/package-lock.json)
as a client of the gateway: ``tests/node/stream.mjs`` runs one scenario and prints its
events as JSON lines. scripts/bootstrap installs the package (``npm ci``); a test run
without it installs it here first."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.support import ROOT

NODE_DIR = ROOT / "tests" / "node"
#: Deadline for ``npm ci`` and for one scenario.
NPM_TIMEOUT = 300.0
SCENARIO_TIMEOUT = 90.0


def ensure_installed() -> None:
    """``npm ci`` in tests/node when its node_modules is missing or older than the lock."""
    marker = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if marker.is_file() and marker.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    assert npm is not None, "npm is missing (apt-get install npm; scripts/bootstrap does)"
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NODE_DIR,
        check=True,
        timeout=NPM_TIMEOUT,
    )


def run_scenario(scenario: dict[str, Any], ca_file: Path) -> list[dict[str, Any]]:
    """Run one scenario with voxgate's certificate trusted (NODE_EXTRA_CA_CERTS); its events."""
    ensure_installed()
    node = shutil.which("node")
    assert node is not None, "node is missing (apt-get install nodejs)"
    done = subprocess.run(
        [node, "stream.mjs", json.dumps(scenario)],
        cwd=NODE_DIR,
        env={**os.environ, "NODE_EXTRA_CA_CERTS": str(ca_file)},
        capture_output=True,
        timeout=SCENARIO_TIMEOUT,
        check=False,
    )
    events = [
        json.loads(line) for line in done.stdout.decode().splitlines() if line.startswith("{")
    ]
    assert done.returncode == 0, (done.returncode, events, done.stderr.decode()[-2000:])
    return events


def of(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]
