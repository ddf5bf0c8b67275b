"""What the tests share: audio, a scripted client, the processes they start (on top of
``voxgate.bench.procs``), what they know of the gateway and the simulator, the SDK, and
the deployment files. Test modules import from here, never from one another."""

from __future__ import annotations

from pathlib import Path

#: The repository's root (where pyproject.toml is).
ROOT = Path(__file__).resolve().parents[2]
