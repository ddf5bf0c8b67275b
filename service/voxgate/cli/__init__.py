"""The ``voxgate`` command: one module per subcommand.

Each module defines ``HELP``, ``add_arguments(parser)`` and ``run(namespace) -> int``,
and imports what only its command needs inside ``run`` (``voxgate serve`` never
imports the benchmark or the simulator).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from voxgate.cli import bench, clients, demo, keys, sandbox, serve, stream, tail, usage

COMMANDS = {
    "serve": serve,
    "sandbox": sandbox,
    "stream": stream,
    "keys": keys,
    "clients": clients,
    "usage": usage,
    "tail": tail,
    "demo": demo,
    "bench": bench,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxgate", description="An AssemblyAI Universal Streaming (v3) compatible gateway."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        sub = commands.add_parser(name, help=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        code: int = ns.run(ns)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
