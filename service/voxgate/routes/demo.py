"""The demo page: its files at ``/demo/`` and its same-origin token helper,
``POST /demo/token`` (off unless ``VOXGATE_DEMO_CLIENT`` names a client)."""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.staticfiles import StaticFiles

from voxgate.access.origins import OriginPolicy
from voxgate.access.tokens import MintLimiter, TokenRequestError
from voxgate.protocol import Violation
from voxgate.routes.tokens import NO_STORE, TokenMinter

#: Demo helper tokens: one minute to open the socket, sessions of at most ten
#: minutes, thirty tokens a minute for everyone together. Anyone who can reach
#: the helper can use the demo client, so its damage is kept small.
DEMO_EXPIRES_IN_SECONDS = 60
DEMO_MAX_SESSION_SECONDS = 600
DEMO_TOKENS_PER_MINUTE = 30


def static_files() -> StaticFiles:
    """The demo page (``voxgate/static``), served at ``/demo/``."""
    directory = resources.files("voxgate") / "static"
    return StaticFiles(directory=str(directory), html=True)


class DemoRoutes:
    def __init__(self, demo_client: str | None, origins: OriginPolicy, minter: TokenMinter) -> None:
        self.demo_client = demo_client
        self.origins = origins
        self.minter = minter
        self._mints = MintLimiter(DEMO_TOKENS_PER_MINUTE)

    async def token(self, request: Request) -> Response:
        """``POST /demo/token``: a token for ``VOXGATE_DEMO_CLIENT``, for the demo page."""
        if self.demo_client is None:
            return JSONResponse(
                {
                    "error": "The demo token helper is off. The operator can turn it on with "
                    "VOXGATE_DEMO_CLIENT=<client name>, or paste a temporary token below."
                },
                status_code=404,
                headers=NO_STORE,
            )
        if not self.origins.allows(request.headers.get("origin"), request.headers.get("host")):
            return self.minter.refused(
                TokenRequestError(403, Violation.BAD_ORIGIN, "Origin not allowed")
            )
        return self.minter.mint(
            self.demo_client, DEMO_EXPIRES_IN_SECONDS, DEMO_MAX_SESSION_SECONDS, self._mints
        )
