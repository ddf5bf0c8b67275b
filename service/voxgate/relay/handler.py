"""``/v3/ws``: one client connection's whole life at the gateway.

Refused while draining; admitted (origin, then token or client key) and its query
checked before anything is spent upstream; an upstream session opened through the
key pool (failover included); its :class:`~voxgate.relay.session.Session` run; and
in every case the key lease and the registry entry given back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
from dataclasses import dataclass

import structlog

from voxgate.access.admission import Gatekeeper
from voxgate.access.spent import SpentTokens
from voxgate.access.tokens import reused
from voxgate.logs import get_logger
from voxgate.metrics.gateway import Metrics, Outcome
from voxgate.protocol import CloseCode, ProtocolViolation, gateway_params
from voxgate.relay import closes
from voxgate.relay.closes import Close
from voxgate.relay.session import Session
from voxgate.relay.sessions import SessionRegistry
from voxgate.relay.ticker import Ticker
from voxgate.settings import Settings
from voxgate.tenants.service import Tenants, Ticket
from voxgate.transcripts.publisher import Publisher
from voxgate.upstream.connector import Connector, NoUpstream, UpstreamHold
from voxgate.ws.connection import ConnectionClosed
from voxgate.ws.server import ServerWebSocket

log = get_logger("voxgate.app")


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamHandler:
    settings: Settings
    metrics: Metrics
    gatekeeper: Gatekeeper
    connector: Connector
    registry: SessionRegistry
    ticker: Ticker
    publisher: Publisher | None
    tenants: Tenants | None = None
    #: Temporary tokens spent once across replicas (None: no Redis).
    spent: SpentTokens | None = None

    async def __call__(self, websocket: ServerWebSocket) -> None:
        # Every log line of this connection (pool, publisher, session) carries its id.
        with structlog.contextvars.bound_contextvars(request_id=secrets.token_hex(8)):
            await self._handle(websocket)

    async def _handle(self, websocket: ServerWebSocket) -> None:
        loop = asyncio.get_running_loop()
        requested_at = loop.time()
        if self.registry.draining:
            await refuse(websocket, closes.DRAINING)
            return
        try:
            admission = self.gatekeeper.admit(websocket.headers, websocket.query_params)
            params = gateway_params(websocket.query_params.multi_items())
            if admission.token_id is not None and self.spent is not None:
                first = await self.spent.spend(admission.token_id, admission.token_expires_at)
                if first is False:
                    raise reused()
        except ProtocolViolation as violation:
            self.metrics.client_rejections.labels(violation.violation.value).inc()
            log.info("client_refused", reason=violation.reason, code=violation.code)
            await refuse(websocket, closes.for_violation(violation))
            return
        client_name = admission.client
        api_version = websocket.headers.get("assemblyai-version")
        ticket: Ticket | None = None
        if self.tenants is not None:  # the client's limits, before any upstream cost
            admitted = await self.tenants.admit(client_name, params.speech_model)
            if isinstance(admitted, Close):
                await refuse(websocket, admitted)
                return
            ticket = admitted
        accepted_at = loop.time()  # the client may stream from now on (its pace clock)
        try:
            await websocket.accept()
            accepted_at = loop.time()
            opened = await self.connector.open(params, api_version=api_version)
        except NoUpstream as refused:
            self._release(ticket)
            if admission.token_id is not None:  # no session began: the token is not spent
                await self._give_back(admission.token_id)
            close = closes.for_no_upstream(refused.cause)
            self.metrics.sessions_ended.labels(Outcome.UPSTREAM_ERROR).inc()
            log.warning("session_refused", client=client_name, reason=close.text)
            await refuse(websocket, close)
            return
        except BaseException:
            self._release(ticket)  # the lease booked above
            raise
        hold = UpstreamHold(self.connector, params, api_version, opened)
        ended = False
        try:
            alias = opened.lease.alias
            self.metrics.key_changed(self.connector.pool.record(alias))
            self.metrics.upstream_connect_seconds.labels(alias).observe(
                opened.upstream.connect_seconds
            )
            self.metrics.upstream_begin_seconds.labels(alias).observe(loop.time() - requested_at)
            session_id = str(opened.upstream.begin.get("id", ""))
            structlog.contextvars.bind_contextvars(session_id=session_id)
            publisher = (
                self.publisher.session(session_id, client_name, params.tag)
                if self.publisher is not None
                else None
            )
            if publisher is not None:
                publisher.started(dict(params.forward))
                publisher.message(opened.upstream.begin_text, dict(opened.upstream.begin))
            session = Session(
                client=websocket,
                upstream=opened.upstream,
                params=params,
                key_alias=alias,
                client_name=client_name,
                settings=self.settings,
                metrics=self.metrics,
                on_upstream_failure=hold.dropped,
                publisher=publisher,
                reopen=hold.reopen,
                max_seconds=admission.max_session_seconds,
                failovers=opened.attempts - 1,
                ticker=self.ticker,
                on_usage=(
                    functools.partial(self.tenants.usage, ticket)
                    if ticket is not None and self.tenants is not None
                    else None
                ),
                client_since=accepted_at,
            )
            if ticket is not None and self.tenants is not None:
                self.tenants.attach(ticket, session, alias)
            self.metrics.sessions_started.inc()
            self.metrics.sessions_active.inc()
            self.registry.add(session)
            try:
                session.log.info(
                    "session_started", params=dict(params.forward), attempts=opened.attempts
                )
                await session.run()
                ended = True
            finally:
                self.registry.discard(session)
                self.metrics.sessions_active.dec()
        finally:
            hold.release()
            if not ended:
                # Something failed between upstream's Begin and the session's end (a bug,
                # or the task cancelled): upstream must not stay open (it bills by time).
                hold.opened.upstream.connection.fail(CloseCode.INTERNAL, "")
            self._release(ticket)

    async def _give_back(self, token_id: str) -> None:
        """The session a token was redeemed for never began: the token may be presented
        again (on this replica, and on every replica when Redis keeps spent tokens)."""
        self.gatekeeper.tokens.give_back(token_id)
        if self.spent is not None:
            await self.spent.give_back(token_id)

    def _release(self, ticket: Ticket | None) -> None:
        if ticket is not None and self.tenants is not None:
            self.tenants.release(ticket)


async def refuse(websocket: ServerWebSocket, close: Close) -> None:
    """Accept only to say why: an Error frame, then the close (as AssemblyAI does)."""
    with contextlib.suppress(ConnectionClosed, OSError):
        await websocket.accept()  # nothing when already accepted
        await websocket.send_text(close.error_frame())
        await websocket.close(close.code, close.reason)
