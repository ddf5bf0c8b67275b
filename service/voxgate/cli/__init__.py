"""The ``voxgate`` command: serve, sandbox, stream, demo."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from voxgate.settings import Settings, SettingsError


def _serve(ns: argparse.Namespace) -> int:
    from voxgate.logs import configure_logging
    from voxgate.server import run_gateway

    env = None
    if ns.host or ns.port is not None:
        import os

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
    run_gateway(settings)
    return 0


def _sandbox(ns: argparse.Namespace) -> int:
    from voxgate.cli.sandbox import config_from_args
    from voxgate.sandbox.server import run_sandbox

    try:
        config = config_from_args(ns)
    except ValueError as exc:
        print(f"voxgate sandbox: {exc}", file=sys.stderr)
        return 2
    run_sandbox(config, ns.host, ns.port)
    return 0


def _stream(ns: argparse.Namespace) -> int:
    from voxgate.cli.stream import run_stream_command

    return asyncio.run(run_stream_command(ns))


def _demo(ns: argparse.Namespace) -> int:
    from voxgate.cli.demo import run_demo

    return asyncio.run(run_demo(ns))


def build_parser() -> argparse.ArgumentParser:
    from voxgate.bench.runner import add_bench_arguments, run_bench_command
    from voxgate.cli.demo import add_demo_arguments
    from voxgate.cli.sandbox import add_sandbox_arguments
    from voxgate.cli.stream import add_stream_arguments
    from voxgate.cli.tail import add_tail_arguments, run_tail_command
    from voxgate.routes.admin import add_keys_arguments, run_keys_command

    parser = argparse.ArgumentParser(
        prog="voxgate", description="An AssemblyAI Universal Streaming (v3) compatible gateway."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway (settings from VOXGATE_* vars)")
    serve.add_argument("--host", help="overrides VOXGATE_HOST")
    serve.add_argument("--port", type=int, help="overrides VOXGATE_PORT (0: any free port)")
    serve.set_defaults(run=_serve)

    sandbox = commands.add_parser(
        "sandbox", help="run the AssemblyAI-compatible upstream simulator"
    )
    add_sandbox_arguments(sandbox)
    sandbox.set_defaults(run=_sandbox)

    stream = commands.add_parser("stream", help="stream a WAV file at real-time pace")
    add_stream_arguments(stream)
    stream.set_defaults(run=_stream)

    keys = commands.add_parser("keys", help="show the upstream key pool of a running gateway")
    add_keys_arguments(keys)
    keys.set_defaults(run=run_keys_command)

    tail = commands.add_parser("tail", help="follow transcripts published to Redis")
    add_tail_arguments(tail)
    tail.set_defaults(run=run_tail_command)

    demo = commands.add_parser(
        "demo", help="simulator + gateway + a sample stream, all on this machine, no key needed"
    )
    add_demo_arguments(demo)
    demo.set_defaults(run=_demo)

    bench = commands.add_parser("bench", help="measure what the gateway adds (README: Performance)")
    add_bench_arguments(bench)
    bench.set_defaults(run=run_bench_command)
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
