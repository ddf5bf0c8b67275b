"""``voxgate keys``: the upstream key pool of a running gateway, from ``GET /admin/keys``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

HELP = "show the upstream key pool of a running gateway"
#: Deadline for ``voxgate keys`` to hear back from the gateway (probes take a while).
CLI_TIMEOUT = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway's base URL")
    parser.add_argument("--admin-key", help="default: env VOXGATE_ADMIN_KEY")
    parser.add_argument("--probe", action="store_true", help="probe every key now")
    parser.add_argument("--json", action="store_true", help="print the raw JSON")


def run(ns: argparse.Namespace) -> int:
    admin_key = ns.admin_key or os.environ.get("VOXGATE_ADMIN_KEY", "")
    url = ns.url.rstrip("/") + "/admin/keys" + ("?probe=1" if ns.probe else "")
    request = urllib.request.Request(url, headers={"Authorization": admin_key})
    try:
        with urllib.request.urlopen(request, timeout=CLI_TIMEOUT) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        print(f"voxgate keys: {url}: HTTP {exc.code} {exc.read(500).decode()}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"voxgate keys: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    if ns.json:
        print(json.dumps(body, indent=2))
        return 0
    print(render_table(body["keys"]))
    return 0


def render_table(keys: list[dict[str, Any]]) -> str:
    lines = [f"{'KEY':<20} {'STATE':<26} {'ACTIVE':>6} {'SESSIONS':>8} {'402s':>5}  REASON"]
    for key in keys:
        lines.append(
            f"{key['key']:<20} {key['state']:<26} {key['active_sessions']:>6} "
            f"{key['sessions_total']:>8} {key['payment_required_total']:>5}  {key['reason']}"
        )
    for key in keys:
        if key.get("remedy"):
            lines.append(f"\n{key['key']}: {key['remedy']}")
    return "\n".join(lines)
