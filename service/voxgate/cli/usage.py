"""``voxgate usage``: audio, session time and estimated cost per client or upstream key,
for a UTC day or month, from a running gateway's ``GET /admin/usage``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

HELP = "usage and estimated spend per client or upstream key (day or month)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from voxgate.cli.admin import add_connection

    add_connection(parser)
    parser.add_argument("--by", choices=("client", "key"), default="client")
    parser.add_argument("--period", choices=("day", "month"), default="day")
    parser.add_argument("--date", help="YYYY-MM-DD or YYYY-MM (default: the current one, UTC)")


def run(ns: argparse.Namespace) -> int:
    from voxgate.cli.admin import AdminError, call

    path = f"/admin/usage?by={ns.by}&period={ns.period}" + (f"&date={ns.date}" if ns.date else "")
    try:
        body = call(ns, "GET", path)
    except AdminError as exc:
        print(f"voxgate usage: {exc}", file=sys.stderr)
        return 1
    if ns.json:
        print(json.dumps(body, indent=2))
    else:
        print(render_table(body))
    return 0


def render_table(body: dict[str, Any]) -> str:
    from voxgate.cli.admin import table

    by = body["by"]
    rows = [
        [
            row[by],
            str(row["sessions"]),
            f"{row['audio_seconds'] / 3600:.3f}",
            f"{row['session_seconds'] / 3600:.3f}",
            f"{row['cost_usd']:.2f}",
        ]
        for row in body["rows"]
    ]
    title = f"{body['period']} {body['date']} (UTC), by {by}"
    headers = [by.upper(), "SESSIONS", "AUDIO_H", "SESSION_H", "COST_USD"]
    return title + "\n" + table(headers, rows)
