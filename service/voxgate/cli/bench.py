"""``voxgate bench``: what the gateway adds, measured (docs/performance.md).

Only the arguments are defined here: the benchmark itself (:mod:`voxgate.bench`) is
imported when this command runs, never by the others.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "measure what the gateway adds (docs/performance.md)"


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--streams", type=_ints, default=[50, 150], help="echo profile: numbers of streams"
    )
    parser.add_argument(
        "--realistic",
        type=_ints,
        default=[300],
        help="realistic profile (simulated turns on speech-like audio): numbers of streams "
        "('' skips); streams per core is judged on the most that held pace",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window per phase")
    parser.add_argument("--warmup", type=float, default=1.0, help="streaming before the window")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument(
        "--variants",
        default="",
        help="also run the gateway under these uvicorn set-ups, each beside the "
        "minimal relay, sharing --variant-streams; comma-separated LOOP/HTTP/WS, "
        "e.g. uvloop/httptools/wsproto,asyncio/h11/websockets",
    )
    parser.add_argument(
        "--variant-streams", type=int, default=100, help="streams shared by --variants"
    )
    parser.add_argument(
        "--scale-out",
        type=int,
        default=0,
        metavar="N",
        help="also run N echo streams against 1 and 2 gateway processes",
    )
    parser.add_argument("--keep-logs", type=Path, help="keep process logs in this directory")


def run(ns: argparse.Namespace) -> int:
    from voxgate.bench.runner import run_bench_command

    return run_bench_command(ns)
