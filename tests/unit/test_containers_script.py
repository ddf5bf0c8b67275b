"""scripts/test_containers.py's own clean-up (the podman run itself is the release
check, docs/deployment.md): teardown steps that each run whatever the others do, a
SIGTERM that ends the run through them, and which leftovers count as a dead run's."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from tests.support import ROOT

SCRIPT = ROOT / "scripts" / "test_containers.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("test_containers_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_failing_teardown_step_neither_skips_the_others_nor_hides_the_failure(
    script: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    """A `down` that times out: the steps registered before it still run, and the run's
    own failure is the one that comes out."""
    ran: list[str] = []

    def hangs() -> None:
        ran.append("down")
        raise subprocess.TimeoutExpired(["podman-compose", "down"], 180)

    with (
        pytest.raises(script.Failed, match="the stream broke"),
        contextlib.ExitStack() as cleanup,
    ):
        script.teardown(cleanup, "podman rmi", lambda: ran.append("rmi"))
        script.teardown(cleanup, "down -v", hangs)
        raise script.Failed("the stream broke")
    assert ran == ["down", "rmi"]
    assert "teardown: down -v: TimeoutExpired" in capsys.readouterr().out


def test_only_a_dead_run_s_projects_and_images_are_swept(script: ModuleType) -> None:
    """Names carry the run's process id: this process is alive, a reaped child is not."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead, live = child.pid, os.getpid()
    for name in (f"vgtc{dead}", f"pod_vgdc{dead}", f"vgnp{dead}_default", f"vgtc{dead}_redis-data"):
        match = script.PROJECT_NAME.fullmatch(name)
        assert match is not None and int(match.group(2)) == dead, name
    assert script.PROJECT_NAME.fullmatch("voxgate_default") is None
    assert not script.alive(dead) and script.alive(live)
    image = script.IMAGE_NAME.fullmatch(f"localhost/voxgate:test-containers-{dead}")
    assert image is not None and int(image.group(1)) == dead


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
def test_sigterm_ends_the_run_through_its_teardown(tmp_path: Path) -> None:
    """SIGTERM while the first step runs (a stand-in `standins` that sleeps): the script
    reports the stop, runs its teardown and exits 1, rather than dying where it stood."""
    shared = tmp_path / "shared"
    (shared / "containers").mkdir(parents=True)
    standins = shared / "containers" / "standins"
    standins.write_text("#!/bin/sh\nexec sleep 60\n")
    standins.chmod(0o755)
    env = {
        **os.environ,
        "VOXGATE_SHARED_DIR": str(shared),
        "CONTAINERS_CONF": str(tmp_path / "containers.conf"),
    }
    run = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--no-build"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not any("sleep" in _cmdline(p) for p in _children(run.pid)):
            assert time.monotonic() < deadline and run.poll() is None, "standins never ran"
            time.sleep(0.1)
        run.send_signal(signal.SIGTERM)
        output, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 1, output
    assert "FAILED: stopped by SIGTERM" in output, output


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
