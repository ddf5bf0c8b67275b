"""Who may open a session on ``/v3/ws``: every client passes here, SDKs and services
as well as browsers.

The origin is checked first (browsers send one; other clients none), then the
credential: a temporary token or a client key, from ``Authorization`` or
``?token=``. Pure: the request's headers and query come in, an :class:`Admission`
or a :class:`~voxgate.protocol.ProtocolViolation` goes out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from voxgate.access.clientkeys import ClientAuthenticator, presented_credential
from voxgate.access.origins import OriginPolicy
from voxgate.access.tokens import TokenAuthority, looks_like_token
from voxgate.protocol import CloseCode, ProtocolViolation, Violation


@dataclass(frozen=True, slots=True)
class Admission:
    """Who a WebSocket client is, and the session cap its token carries (None: none)."""

    client: str
    max_session_seconds: int | None = None
    #: The temporary token's id and expiry (unix time) when it came with one: the
    #: handler spends it in Redis too, once across replicas (access/spent.py).
    token_id: str | None = None
    token_expires_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Gatekeeper:
    auth: ClientAuthenticator
    tokens: TokenAuthority
    origins: OriginPolicy

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
            return Admission(
                grant.client, grant.max_session_seconds, grant.token_id, grant.expires_at
            )
        return Admission(self.auth.check(credential))
