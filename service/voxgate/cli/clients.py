"""``voxgate clients``: the clients of a running gateway, through ``/admin/clients``.

``voxgate clients`` lists them; ``set NAME --max-sessions 5 ...`` creates or updates
one's limits (``none`` removes a limit); ``delete NAME``; ``add-key NAME
[--expires-in S]`` prints a new secret once; ``delete-key NAME KEY_ID``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

HELP = "list and manage the clients of a running gateway (keys, limits)"

_LIMITS = (
    ("max_sessions", int),
    ("sessions_per_minute", int),
    ("audio_hours_per_day", float),
    ("audio_hours_per_month", float),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from voxgate.cli.admin import add_connection

    add_connection(parser)
    actions = parser.add_subparsers(dest="action")
    actions.add_parser("list", help="every client, its limits and keys (the default)")
    setter = actions.add_parser("set", help="create a client or change its limits")
    setter.add_argument("name")
    for name, _ in _LIMITS:
        setter.add_argument("--" + name.replace("_", "-"), metavar="N|none")
    actions.add_parser("delete", help="delete a client (its keys stop working)").add_argument(
        "name"
    )
    add_key = actions.add_parser("add-key", help="a new key for a client (shown once)")
    add_key.add_argument("name")
    add_key.add_argument("--expires-in", type=float, help="seconds until the key stops working")
    delete_key = actions.add_parser("delete-key", help="revoke one key of a client")
    delete_key.add_argument("name")
    delete_key.add_argument("key_id")


def _limits(ns: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind in _LIMITS:
        raw = getattr(ns, name)
        if raw is None:
            continue
        out[name] = None if raw.lower() == "none" else kind(raw)
    return out


def run(ns: argparse.Namespace) -> int:
    from voxgate.cli.admin import AdminError, call

    action = ns.action or "list"
    try:
        if action == "list":
            body = call(ns, "GET", "/admin/clients")
        elif action == "set":
            body = call(ns, "PUT", f"/admin/clients/{ns.name}", {"limits": _limits(ns)})
        elif action == "delete":
            body = call(ns, "DELETE", f"/admin/clients/{ns.name}")
        elif action == "add-key":
            request = {} if ns.expires_in is None else {"expires_in": ns.expires_in}
            body = call(ns, "POST", f"/admin/clients/{ns.name}/keys", request)
        else:
            body = call(ns, "DELETE", f"/admin/clients/{ns.name}/keys/{ns.key_id}")
    except (AdminError, ValueError) as exc:
        print(f"voxgate clients: {exc}", file=sys.stderr)
        return 1
    if ns.json or action not in ("list", "set", "add-key"):
        print(json.dumps(body, indent=2))
    elif action == "add-key":
        print(f"client {body['client']}: key {body['key_id']}")
        print(f"secret (shown once, keep it now): {body['secret']}")
    else:
        print(render_table(body["clients"] if action == "list" else [body]))
    return 0


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def render_table(clients: list[dict[str, Any]]) -> str:
    from voxgate.cli.admin import table

    now = time.time()
    rows = []
    for client in clients:
        limits = client["limits"]
        keys = [k for k in client["keys"] if k["expires_at"] is None or k["expires_at"] > now]
        rows.append(
            [
                client["name"],
                client.get("source", ""),
                str(client.get("active_sessions", "")),
                _hours(limits["max_sessions"]),
                _hours(limits["sessions_per_minute"]),
                _hours(limits["audio_hours_per_day"]),
                _hours(limits["audio_hours_per_month"]),
                ",".join(k["id"] for k in keys) or "-",
            ]
        )
    headers = ["CLIENT", "SOURCE", "ACTIVE", "MAX", "PER_MIN", "H/DAY", "H/MONTH", "KEYS"]
    return table(headers, rows)
