"""``voxgate serve``: run the gateway, with settings from the ``VOXGATE_*`` variables."""

from __future__ import annotations

import argparse
import os
import sys

from voxgate.settings import Settings, SettingsError

HELP = "run the gateway (settings from VOXGATE_* vars)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="overrides VOXGATE_HOST")
    parser.add_argument("--port", type=int, help="overrides VOXGATE_PORT (0: any free port)")


def run(ns: argparse.Namespace) -> int:
    from voxgate.edge.tls import TlsError
    from voxgate.logs import configure_logging
    from voxgate.server import run_gateway

    env = None
    if ns.host or ns.port is not None:
        env = dict(os.environ)
        if ns.host:
            env["VOXGATE_HOST"] = ns.host
        if ns.port is not None:
            env["VOXGATE_PORT"] = str(ns.port)
    try:
        settings = Settings.from_env(env)
    except SettingsError as exc:
        print(f"voxgate: bad setting: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    try:
        run_gateway(settings)
    except TlsError as exc:
        print(f"voxgate: bad setting: {exc}", file=sys.stderr)
        return 2
    return 0
