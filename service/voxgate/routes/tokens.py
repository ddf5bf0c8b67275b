"""``GET /v3/token``: a temporary token for a client key, as AssemblyAI answers it.

The pure parts (the token format, request checks, the mint limiter) live in
:mod:`voxgate.access.tokens`; this module reads requests and answers them.
:class:`TokenMinter` is shared with the demo page's helper (:mod:`voxgate.routes.demo`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

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
from voxgate.protocol import ProtocolViolation, Violation

log = get_logger("voxgate.tokens")

NO_STORE = {"Cache-Control": "no-store"}


class TokenMinter:
    """Mints a token for a client under a limiter; answers refusals (counted)."""

    def __init__(self, tokens: TokenAuthority, metrics: Metrics) -> None:
        self.tokens = tokens
        self.metrics = metrics

    def mint(
        self, client: str, expires_in: int, max_session: int, limiter: MintLimiter
    ) -> Response:
        if not limiter.allow(client):
            return self.refused(
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
                headers=NO_STORE,
            )
        log.info(
            "token_minted", client=client, expires_in_seconds=expires_in, max_session=max_session
        )
        return JSONResponse({"token": token, "expires_in_seconds": expires_in}, headers=NO_STORE)

    def refused(self, refused: TokenRequestError) -> Response:
        self.metrics.client_rejections.labels(refused.violation.value).inc()
        log.info("token_refused", status=refused.status, reason=refused.message)
        return JSONResponse(
            {"error": refused.message}, status_code=refused.status, headers=NO_STORE
        )


class TokenRoutes:
    def __init__(
        self, auth: ClientAuthenticator, origins: OriginPolicy, minter: TokenMinter
    ) -> None:
        self.auth = auth
        self.origins = origins
        self.minter = minter
        self._mints = MintLimiter()

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
            return self.minter.mint(client, expires_in, max_session, self._mints)
        except TokenRequestError as refused:
            return self.minter.refused(refused)
