"""The gateway under another uvicorn set-up, for ``voxgate bench --variants``.

Exactly ``voxgate serve`` (same app, same settings from the environment, same
config from :func:`voxgate.server.uvicorn_config`) except the event loop, the HTTP
parser and the WebSocket implementation, so the defaults can be chosen by
measurement: ``python -m voxgate.bench.variant --loop asyncio --http h11 --ws wsproto``.
``--ws voxgate`` is the gateway's own (the default); the others are uvicorn's, with
``/v3/ws`` served through ASGI (``asgiws.py``).
"""

from __future__ import annotations

import argparse
import logging
import sys

from starlette.routing import WebSocketRoute

from voxgate.app import create_app
from voxgate.bench.asgiws import asgi_endpoint
from voxgate.logs import configure_logging
from voxgate.server import DrainingServer, bind, uvicorn_config
from voxgate.settings import Settings

LOOPS = ("uvloop", "asyncio")
HTTPS = ("httptools", "h11")
WEBSOCKETS = ("voxgate", "websockets-sansio", "websockets", "wsproto")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=LOOPS, required=True)
    parser.add_argument("--http", choices=HTTPS, required=True)
    parser.add_argument("--ws", choices=WEBSOCKETS, required=True)
    ns = parser.parse_args()
    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    app = create_app(settings)
    config = uvicorn_config(app, settings)
    config.loop, config.http = ns.loop, ns.http
    if ns.ws != "voxgate":
        app.router.routes.insert(0, WebSocketRoute("/v3/ws", asgi_endpoint(app.state.gateway)))
        config.ws = ns.ws
    server = DrainingServer(config, app.state.gateway)
    sock = bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    print(
        f"voxgate gateway ({ns.loop}/{ns.http}/{ns.ws}) listening on ws://{host}:{port}", flush=True
    )
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
