"""The installable package: its name, its files, and what each command imports."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support import ROOT

#: Building the wheel (setuptools in an isolated build) takes a few seconds.
BUILD_TIMEOUT = 300.0


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=BUILD_TIMEOUT,
    )
    (built,) = out.glob("voxgate-*.whl")
    return built


def test_the_wheel_installs_voxgate_and_nothing_named_service(wheel: Path) -> None:
    """The distribution's only top-level package is ``voxgate`` (no ``service``), and it
    carries its data files: the Lua scripts, the demo page and the sample WAV."""
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"voxgate"}
    for data in (
        "voxgate/keys/lua/acquire.lua",
        "voxgate/keys/lua/heartbeat.lua",
        "voxgate/keys/lua/set_state.lua",
        "voxgate/transcripts/lua/publish.lua",
        "voxgate/static/index.html",
        "voxgate/samples/hello.wav",
    ):
        assert data in names, data


def test_voxgate_imports_from_the_built_package_with_its_scripts(wheel: Path) -> None:
    """``import voxgate`` works from the wheel alone (not the source tree), and the Lua
    scripts load from the package's own files."""
    code = (
        "import voxgate, voxgate.app\n"
        "from voxgate.keys.layout import ACQUIRE_LUA\n"
        "from voxgate.transcripts.publisher import PUBLISH_LUA\n"
        "assert 'redis.call' in ACQUIRE_LUA and 'XADD' in PUBLISH_LUA\n"
        "print(voxgate.__file__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(wheel), "PATH": "/usr/bin:/bin"},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(wheel)), result.stdout


def test_the_command_line_does_not_import_the_benchmark_or_the_simulator() -> None:
    """Building the ``voxgate`` command line (what every command does first, ``serve``
    included) imports neither the benchmark nor the simulator: each is imported by
    its own command when that runs."""
    code = (
        "import sys\n"
        "from voxgate.cli import build_parser\n"
        "build_parser()\n"
        "loaded = [m for m in sys.modules if m.startswith(('voxgate.bench', 'voxgate.sandbox'))]\n"
        "print(sorted(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout
