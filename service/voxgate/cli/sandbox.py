"""``voxgate sandbox``: run the AssemblyAI-compatible upstream simulator."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voxgate.sandbox.server import SandboxConfig

#: The environment variable compose files use for ``--keys``.
KEYS_ENV = "VOXGATE_SANDBOX_KEYS"


HELP = "run the AssemblyAI-compatible upstream simulator"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8081, help="port (0: any free port)")
    parser.add_argument(
        "--keys",
        help=(
            "key=behaviour,... (ok, echo, 401, 402, 429, 500, 503, 1008-balance, "
            "1008-concurrent, 1008-auth, 4001, 4002, 4003, 4102, 3009, drop-CODE@SECONDS, "
            "drop-CODE@Nf, 402-after-M, revise@BYTES, late-begin@S, hang, no-begin, junk-*); "
            f"default: env {KEYS_ENV}, else any key works"
        ),
    )
    parser.add_argument(
        "--pace-burst",
        type=float,
        default=None,
        help="seconds a client may run ahead of real time before 3007 (default: 310, AssemblyAI's)",
    )


def config_from_args(ns: argparse.Namespace) -> SandboxConfig:
    """Raise ValueError with a message for a bad ``--keys``."""
    from voxgate.sandbox.behaviours import parse_key_spec
    from voxgate.sandbox.server import PACE_BURST_SECONDS, SandboxConfig

    spec = ns.keys if ns.keys is not None else os.environ.get(KEYS_ENV, "")
    burst = ns.pace_burst if ns.pace_burst is not None else PACE_BURST_SECONDS
    if burst <= 0:
        raise ValueError("--pace-burst must be more than 0")
    return SandboxConfig(keys=parse_key_spec(spec), pace_burst_seconds=burst)


def run(ns: argparse.Namespace) -> int:
    from voxgate.sandbox.server import run_sandbox

    try:
        config = config_from_args(ns)
    except ValueError as exc:
        print(f"voxgate sandbox: {exc}", file=sys.stderr)
        return 2
    run_sandbox(config, ns.host, ns.port)
    return 0
