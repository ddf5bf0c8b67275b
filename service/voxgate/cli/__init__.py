"""The ``voxgate`` command: one module per subcommand.

Each module defines ``HELP``, ``add_arguments(parser)`` and ``run(namespace) -> int``,
and imports what only its command needs inside ``run`` (``voxgate serve`` never
imports the benchmark or the simulator). ``voxgate healthcheck`` (a container's health
check, run every few seconds) is handed over before anything else is imported.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: The subcommands, each a module of this folder (imported when the parser is built).
COMMANDS = (
    "serve",
    "sandbox",
    "stream",
    "keys",
    "clients",
    "usage",
    "tail",
    "demo",
    "bench",
    "healthcheck",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxgate", description="An AssemblyAI Universal Streaming (v3) compatible gateway."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"voxgate.cli.{name}")
        sub = commands.add_parser(name, help=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["healthcheck"]:  # fast: nothing else imported
        from voxgate.cli import healthcheck

        return healthcheck.main(args[1:])
    ns = build_parser().parse_args(args)
    try:
        code: int = ns.run(ns)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
