"""``voxgate healthcheck``: a container's health check. Exit 0 when the gateway in this
container answers ``GET /healthz`` with 200 within the timeout, else 1 with one line on
stderr.

It runs every few seconds for the life of every container, so it starts fast: only the
standard library's ``http.client`` (no settings, no framework), and ``voxgate.cli``
imports nothing else for it. ``http.client`` talks to the address given and never to a
proxy: ``http_proxy`` in a container's environment (urllib would honour it) cannot turn
a live gateway unhealthy. The address is the gateway's own, from the variables it
listens by (``VOXGATE_HOST``, ``VOXGATE_PORT``; the wildcard 0.0.0.0 or :: means this
host's loopback).
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
from collections.abc import Sequence

HELP = "exit 0 if the gateway here answers /healthz (a container health check)"
#: Seconds for the whole check (Docker's and compose's own timeout is 3 s).
DEFAULT_TIMEOUT = 2.0
#: Where the gateway listens when nothing says (settings.py's defaults).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = "8080"
_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"the gateway's port (default: VOXGATE_PORT, else {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds (default %(default)s)"
    )


def target(environ: dict[str, str] | os._Environ[str], port: int | None = None) -> tuple[str, int]:
    """The host and port the gateway listens on, by its own variables."""
    host = environ.get("VOXGATE_HOST", DEFAULT_HOST).strip()
    host = _LOOPBACK.get(host, host).strip("[]")
    if port is None:
        port = int(environ.get("VOXGATE_PORT", DEFAULT_PORT).strip() or DEFAULT_PORT)
    return host, port


def check(host: str, port: int, timeout: float) -> str | None:
    """None when ``GET /healthz`` answers 200; else what went wrong, in one line."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", "/healthz", headers={"Connection": "close"})
        response = connection.getresponse()
        response.read(4096)
        if response.status != 200:
            return f"/healthz answered {response.status}"
        return None
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except (OSError, http.client.HTTPException) as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    finally:
        connection.close()


def run(ns: argparse.Namespace) -> int:
    try:
        host, port = target(os.environ, ns.port)
    except ValueError:
        print("voxgate healthcheck: VOXGATE_PORT is not a port number", file=sys.stderr)
        return 1
    problem = check(host, port, ns.timeout)
    if problem is not None:
        print(f"voxgate healthcheck: http://{host}:{port}/healthz: {problem}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str]) -> int:
    """The command on its own (``voxgate.cli.main`` hands it over before building the
    whole command line)."""
    parser = argparse.ArgumentParser(prog="voxgate healthcheck", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))
