"""What ``voxgate clients`` and ``voxgate usage`` share: one admin API call."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

#: Deadline for an admin call.
CLI_TIMEOUT = 30.0


class AdminError(Exception):
    """The gateway said no, or could not be reached (the message says which)."""


def add_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway's base URL")
    parser.add_argument(
        "--admin-key",
        help="default (preferred): env VOXGATE_ADMIN_KEY (an argument shows in ps and history)",
    )
    parser.add_argument("--json", action="store_true", help="print the raw JSON")


def warnings(url: str, key_on_command_line: bool) -> list[str]:
    """What the operator is told about how the admin key travels (nothing blocks)."""
    out = []
    if key_on_command_line:
        out.append(
            "--admin-key shows in the process list and shell history: prefer env VOXGATE_ADMIN_KEY"
        )
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        out.append(f"the admin key goes to {parts.hostname} over plain http: use https")
    return out


def call(ns: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    admin_key = ns.admin_key or os.environ.get("VOXGATE_ADMIN_KEY", "")
    url = ns.url.rstrip("/") + path
    for warning in warnings(ns.url, bool(ns.admin_key)):
        print(f"voxgate: warning: {warning}", file=sys.stderr)
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={
            "Authorization": admin_key,
            "Content-Type": "application/json",
            # Who made the change, for the audit stream (the admin key is shared).
            "X-Voxgate-Actor": os.environ.get("USER", "cli"),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=CLI_TIMEOUT) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise AdminError(f"{method} {url}: HTTP {exc.code} {exc.read(500).decode()}") from None
    except OSError as exc:
        raise AdminError(f"cannot reach {url}: {exc}") from None


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns as wide as their widest cell; numbers right-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        out = []
        for cell, width in zip(cells, widths, strict=True):
            numeric = cell.replace(".", "", 1).replace("-", "", 1).isdigit()
            out.append(cell.rjust(width) if numeric else cell.ljust(width))
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])
