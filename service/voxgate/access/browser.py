"""Browsers: who may open a session (origin, token or client key), ``GET /v3/token``,
and the demo page's same-origin token helper.

The pure parts live in :mod:`voxgate.access.tokens` and :mod:`voxgate.access.origins`; this
module only reads requests and answers them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.staticfiles import StaticFiles

from voxgate.access.clientkeys import ClientAuthenticator, presented_credential
from voxgate.access.origins import OriginPolicy
from voxgate.access.tokens import (
    MintLimiter,
    TokenAuthority,
    TokenRequestError,
    looks_like_token,
    parse_token_request,
)
from voxgate.logs import get_logger
from voxgate.metrics.gateway import Metrics
from voxgate.protocol import CloseCode, ProtocolViolation, Violation
from voxgate.settings import Settings

log = get_logger("voxgate.browser")

#: Demo helper tokens: one minute to open the socket, sessions of at most ten
#: minutes, thirty tokens a minute for everyone together. Anyone who can reach
#: the helper can use the demo client, so its damage is kept small.
DEMO_EXPIRES_IN_SECONDS = 60
DEMO_MAX_SESSION_SECONDS = 600
DEMO_TOKENS_PER_MINUTE = 30
_NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True, slots=True)
class Admission:
    """Who a WebSocket client is, and the session cap its token carries (None: none)."""

    client: str
    max_session_seconds: int | None = None


def static_files() -> StaticFiles:
    """The demo page (``voxgate/static``), served at ``/demo/``."""
    directory = resources.files("voxgate") / "static"
    return StaticFiles(directory=str(directory), html=True)


class BrowserRoutes:
    def __init__(self, settings: Settings, auth: ClientAuthenticator, metrics: Metrics) -> None:
        self.auth = auth
        self.metrics = metrics
        self.tokens = TokenAuthority(settings.token_secret)
        self.origins = OriginPolicy(settings.allowed_origins)
        self.demo_client = settings.demo_client
        self._mints = MintLimiter()
        self._demo_mints = MintLimiter(DEMO_TOKENS_PER_MINUTE)

    # ------------------------------------------------------------------ /v3/ws

    def admit(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Admission:
        """Check the origin, then the token or client key; raise a ProtocolViolation."""
        if not self.origins.allows(headers.get("origin"), headers.get("host")):
            raise ProtocolViolation(
                CloseCode.POLICY,
                Violation.BAD_ORIGIN,
                "Unauthorized Connection: this origin may not use the gateway "
                "(VOXGATE_ALLOWED_ORIGINS)",
            )
        credential = presented_credential(headers, query)
        if looks_like_token(credential):
            grant = self.tokens.redeem(credential, self.auth.names)
            return Admission(grant.client, grant.max_session_seconds)
        return Admission(self.auth.check(credential))

    # ------------------------------------------------------------------ HTTP

    async def token(self, request: Request) -> Response:
        """``GET /v3/token``, as AssemblyAI answers it, for a client key."""
        try:
            if not self.origins.allows(request.headers.get("origin"), request.headers.get("host")):
                raise TokenRequestError(403, Violation.BAD_ORIGIN, "Origin not allowed")
            credential = presented_credential(request.headers, {})
            if looks_like_token(credential):
                raise TokenRequestError(
                    401,
                    Violation.INVALID_KEY,
                    "Authentication error: a temporary token can not mint tokens; use a client key",
                )
            try:
                client = self.auth.check(credential)
            except ProtocolViolation as refused:
                why = "missing" if refused.violation is Violation.MISSING_KEY else "invalid"
                raise TokenRequestError(
                    401, refused.violation, f"Authentication error: {why} client key"
                ) from None
            expires_in, max_session = parse_token_request(request.query_params)
            return self._mint(client, expires_in, max_session, self._mints)
        except TokenRequestError as refused:
            return self._refused(refused)

    async def demo_token(self, request: Request) -> Response:
        """``POST /demo/token``: a token for ``VOXGATE_DEMO_CLIENT``, for the demo page."""
        if self.demo_client is None:
            return JSONResponse(
                {
                    "error": "The demo token helper is off. The operator can turn it on with "
                    "VOXGATE_DEMO_CLIENT=<client name>, or paste a temporary token below."
                },
                status_code=404,
                headers=_NO_STORE,
            )
        if not self.origins.allows(request.headers.get("origin"), request.headers.get("host")):
            return self._refused(TokenRequestError(403, Violation.BAD_ORIGIN, "Origin not allowed"))
        return self._mint(
            self.demo_client, DEMO_EXPIRES_IN_SECONDS, DEMO_MAX_SESSION_SECONDS, self._demo_mints
        )

    def _mint(
        self, client: str, expires_in: int, max_session: int, limiter: MintLimiter
    ) -> Response:
        if not limiter.allow(client):
            return self._refused(
                TokenRequestError(
                    429, Violation.TOKEN_RATE, "Too many temporary tokens; retry in a minute"
                )
            )
        try:
            token = self.tokens.mint(client, expires_in, max_session)
        except Exception:
            log.exception("token_mint_failed", client=client)
            return JSONResponse(
                {"error": "Internal error while creating a token"},
                status_code=500,
                headers=_NO_STORE,
            )
        log.info(
            "token_minted", client=client, expires_in_seconds=expires_in, max_session=max_session
        )
        return JSONResponse({"token": token, "expires_in_seconds": expires_in}, headers=_NO_STORE)

    def _refused(self, refused: TokenRequestError) -> Response:
        self.metrics.client_rejections.labels(refused.violation.value).inc()
        log.info("token_refused", status=refused.status, reason=refused.message)
        return JSONResponse(
            {"error": refused.message}, status_code=refused.status, headers=_NO_STORE
        )
