"""Opening upstream sessions through the key pool: failover at connect, and probes.

A key-specific failure (payment required, unauthorized, rate limited, transient)
takes that key out as the pool decides and the next key is tried, within
``MAX_CONNECT_ATTEMPTS`` and the failover deadline. The client sees an error only
when no key can serve, and is told why. Keys out of rotation are probed in the
background through ``/v3/token`` (no billed session) and come back by themselves.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from voxgate.keys.pool import KeyPool, Lease, Transition, Unavailable
from voxgate.keys.shared import SharedPool
from voxgate.logs import get_logger
from voxgate.metrics.gateway import Metrics
from voxgate.protocol import StreamParams
from voxgate.protocol.jsonguard import loads_bounded
from voxgate.settings import Settings, UpstreamKey
from voxgate.upstream.connect import USER_AGENT, UpstreamSession, open_session
from voxgate.upstream.failures import FailureClass, UpstreamFailure, http_failure, is_paid_only

#: Keys tried for one client session before it is refused.
MAX_CONNECT_ATTEMPTS = 4
#: How often the probe loop looks for keys due a probe.
PROBE_TICK = 5.0
#: Deadline of one probe request.
PROBE_TIMEOUT = 10.0
#: A probe token lives this long (the shortest AssemblyAI allows is 1 s).
PROBE_TOKEN_SECONDS = 60

log = get_logger("voxgate.keys")


class NoUpstream(Exception):
    """No key could open a session. ``cause`` says why: the pool's reason when no key
    was usable, else upstream's failure (what the client is told is decided in
    :mod:`voxgate.relay.closes`)."""

    def __init__(self, cause: Unavailable | UpstreamFailure) -> None:
        super().__init__(str(cause.value if isinstance(cause, Unavailable) else cause))
        self.cause = cause


@dataclass(frozen=True, slots=True)
class Opened:
    upstream: UpstreamSession
    lease: Lease
    attempts: int


def token_url(ws_url: str) -> str:
    """``wss://host/v3/ws`` -> ``https://host/v3/token`` (``ws`` -> ``http``)."""
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    path = parts.path.rsplit("/", 1)[0] + "/token"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class Connector:
    def __init__(
        self,
        settings: Settings,
        pool: KeyPool,
        metrics: Metrics,
        shared: SharedPool | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.metrics = metrics
        #: Leases and key states shared with other replicas (None: this replica alone).
        self.shared = shared
        self._token_url = token_url(settings.upstream_url)
        self._probe_tick = min(PROBE_TICK, settings.probe_delay, settings.probe_interval)
        # Paid-only refusals of running sessions being confirmed (see ``dropped``).
        self._confirming: set[asyncio.Task[None]] = set()

    def _upstream_limit(self, limit: str) -> None:
        """Upstream sent a message the connection refused (over a size, fragment or
        time limit): counted as ``voxgate_ws_messages_refused_total{hop="upstream"}``."""
        self.metrics.ws_limits.labels("upstream", limit).inc()

    async def open(
        self,
        params: StreamParams,
        api_version: str | None,
        avoid: frozenset[str] = frozenset(),
        *,
        replacement: bool = False,
    ) -> Opened:
        """An upstream session through the first key that opens one. Keys in ``avoid``
        (the key that just dropped this client's session) are used only when no other
        key can take the session. A ``replacement`` (of a running session's dropped
        upstream) is not stopped by keys cooling down from drops: with no other key
        usable it takes the least recently dropped one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.failover_timeout
        tried: set[str] = set()
        last: UpstreamFailure | None = None
        paid_only: set[tuple[int, str]] = set()  # the paid-only refusals of this request
        for attempt in range(1, MAX_CONNECT_ATTEMPTS + 1):
            if deadline - loop.time() <= 0:
                break
            lease = await self._acquire_preferring(frozenset(tried), avoid, replacement)
            if isinstance(lease, Unavailable):
                raise NoUpstream(lease)
            left = max(0.001, deadline - loop.time())
            try:
                upstream = await open_session(
                    self.settings.upstream_url,
                    lease.key,
                    params,
                    connect_timeout=min(self.settings.connect_timeout, left),
                    begin_timeout=min(self.settings.begin_timeout, left),
                    api_version=api_version,
                    max_message_bytes=self.settings.upstream_max_message_bytes,
                    on_limit=self._upstream_limit,
                )
            except BaseException as exc:
                # Whatever went wrong, the lease goes back (else the key's slot leaks
                # for good); a failure that is not classified counts as transient.
                self.release(lease)
                if isinstance(exc, UpstreamFailure):
                    failure = exc
                elif isinstance(exc, Exception):
                    log.exception("upstream_open_failed", key=lease.alias)
                    failure = UpstreamFailure(FailureClass.TRANSIENT, 1006, type(exc).__name__)
                else:
                    raise  # cancelled: the client went away
                if is_paid_only(failure):
                    left = deadline - loop.time()
                    failure = await self._confirm_paid_only(lease.key, failure, left, paid_only)
                last = failure
                self.failed(lease.alias, failure)
                if failure.failure is FailureClass.CLIENT_FAULT:
                    raise NoUpstream(failure) from None
                tried.add(lease.alias)
                self.metrics.failovers.labels("connect").inc()
                continue
            self.succeeded(lease.alias)
            return Opened(upstream, lease, attempt)
        reason = self.pool.why_unavailable(frozenset(tried))
        if last is not None and reason is Unavailable.UNREACHABLE:
            raise NoUpstream(last)
        raise NoUpstream(reason)

    async def _confirm_paid_only(
        self,
        key: UpstreamKey,
        failure: UpstreamFailure,
        left: float,
        seen: set[tuple[int, str]],
    ) -> UpstreamFailure:
        """Upstream refused a session as a paid-only feature (close 4003, whose real
        text names no parameter: a client asking for a paid feature can cause it, on
        every key). Before the key is disabled on every replica and the 402 alert
        fires, the verdict is confirmed: the same code and words from a second key
        for this request, or ``/v3/token`` answering for this key (no billed session;
        the probe that would put a disabled key back), make it the request's fault (the
        client gets upstream's code and words, failover stops). A probe that finds
        payment required (or the key refused) confirms the key's fault; one that gets
        no answer cools the key briefly (``UNEXPLAINED``) and the next key is tried."""
        refusal = (failure.code, failure.detail)
        if refusal in seen:
            return UpstreamFailure(FailureClass.CLIENT_FAULT, failure.code, failure.detail)
        seen.add(refusal)
        probed = await self.probe(key, timeout=min(PROBE_TIMEOUT, max(0.5, left)))
        if probed is None:
            log.info("paid_only_refusal_is_the_request_s", key=key.alias, code=failure.code)
            return UpstreamFailure(FailureClass.CLIENT_FAULT, failure.code, failure.detail)
        if probed.failure in (FailureClass.PAYMENT_REQUIRED, FailureClass.UNAUTHORIZED):
            return failure
        return UpstreamFailure(FailureClass.UNEXPLAINED, failure.code, failure.detail)

    async def _acquire_preferring(
        self, tried: frozenset[str], avoid: frozenset[str], replacement: bool = False
    ) -> Lease | Unavailable:
        """A lease on a key not in ``avoid`` when one is usable, else on any key; for
        a ``replacement``, else on a key cooling down from drops."""
        if avoid - tried:
            lease = await self.acquire(tried | avoid)
            if not isinstance(lease, Unavailable):
                return lease
        lease = await self.acquire(tried)
        if isinstance(lease, Unavailable) and replacement:
            lease = await self.acquire(tried, fallback=True)
        return lease

    async def acquire(
        self, exclude: frozenset[str] = frozenset(), *, fallback: bool = False
    ) -> Lease | Unavailable:
        """A lease from the shared pool when there is one, else from this replica's."""
        if self.shared is not None:
            lease = await self.shared.acquire(exclude, fallback=fallback)
        else:
            lease = self.pool.acquire(exclude, fallback=fallback)
        if not isinstance(lease, Unavailable):
            self.metrics.key_changed(self.pool.record(lease.alias))
        return lease

    def release(self, lease: Lease) -> None:
        if self.shared is not None:
            self.shared.release(lease)
        else:
            self.pool.release(lease)
        self.metrics.key_changed(self.pool.record(lease.alias))

    def succeeded(self, alias: str) -> None:
        """``alias`` worked (a session opened, or a probe answered): back in rotation,
        for every replica when the pool is shared."""
        self._log(self.pool.report_success(alias))
        self.metrics.key_changed(self.pool.record(alias))

    def failed(self, alias: str, failure: UpstreamFailure) -> None:
        """Count and apply an upstream failure of ``alias`` (at connect or mid-session)."""
        self.metrics.upstream_failure(alias, failure)
        log.warning(
            "upstream_failure",
            key=alias,
            failure=failure.failure,
            code=failure.code,
            http=failure.http,
            detail=failure.detail,
        )
        self._log(self.pool.report_failure(alias, failure.failure, failure.detail))
        self.metrics.key_changed(self.pool.record(alias))

    def dropped(self, alias: str, failure: UpstreamFailure, *, count: bool = True) -> None:
        """A running session's upstream ended with an error. A transient drop is
        counted and logged; one says little about a key, but a key that keeps
        dropping sessions cools down (the pool decides, see ``KeyPool.report_drop``;
        ``count`` false: this client session had a drop counted already), and the
        session's replacement prefers another key (``UpstreamHold.reopen``). A
        paid-only 4003 is applied once a probe confirms it (``_confirm_paid_only``)."""
        if is_paid_only(failure):
            # Mid-session (an UpdateConfiguration asking for a paid feature, say): the
            # key is disabled only once a probe confirms it (see _confirm_paid_only).
            task = asyncio.get_running_loop().create_task(self._paid_only_dropped(alias, failure))
            self._confirming.add(task)
            task.add_done_callback(self._confirming.discard)
            return
        if failure.failure is not FailureClass.TRANSIENT:
            self.failed(alias, failure)
            return
        self.metrics.upstream_failure(alias, failure)
        log.warning("upstream_dropped", key=alias, code=failure.code, detail=failure.detail)
        for transition in self.pool.report_drop(alias, failure.detail, count=count):
            self._log(transition)
            self.metrics.key_changed(self.pool.record(transition.alias))
        self.metrics.key_changed(self.pool.record(alias))

    async def _paid_only_dropped(self, alias: str, failure: UpstreamFailure) -> None:
        """A running session ended with a paid-only 4003: applied once confirmed."""
        key = self.pool.record(alias).key
        try:
            confirmed = await self._confirm_paid_only(key, failure, PROBE_TIMEOUT, set())
        except Exception:
            log.exception("paid_only_confirmation_failed", key=alias)
            return
        self.failed(alias, confirmed)

    # ------------------------------------------------------------------ probes

    async def probe(
        self, key: UpstreamKey, timeout: float = PROBE_TIMEOUT
    ) -> UpstreamFailure | None:
        """Ask upstream for a short-lived token with ``key``: None when the key works."""
        url = f"{self._token_url}?expires_in_seconds={PROBE_TOKEN_SECONDS}"
        request = urllib.request.Request(
            url, headers={"Authorization": key.secret, "User-Agent": USER_AGENT}
        )

        def fetch() -> UpstreamFailure | None:
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    loads_bounded(response.read(65536))
                    return None
            except urllib.error.HTTPError as exc:
                return http_failure(exc.code, exc.read(4096))
            except (OSError, ValueError) as exc:
                return UpstreamFailure(FailureClass.TRANSIENT, 0, type(exc).__name__)

        return await asyncio.to_thread(fetch)

    def expire_cooling(self) -> None:
        """Keys whose cool-down is over shown as healthy (``KeyPool.expire_cooling``)."""
        for transition in self.pool.expire_cooling():
            log.info("key_state_changed", **transition.fields())
            self.metrics.key_changed(self.pool.record(transition.alias))

    async def probe_due(self) -> None:
        self.expire_cooling()
        for key in self.pool.due_probes():
            failure = await self.probe(key)
            record = self.pool.record(key.alias)
            if failure is None:
                log.info("key_probe_ok", key=key.alias)
                self.succeeded(key.alias)
            else:
                log.info("key_probe_failed", key=key.alias, failure=failure.failure)
                if failure.failure is FailureClass.PAYMENT_REQUIRED:
                    self.metrics.upstream_402.labels(key.alias).inc()
                self._log(self.pool.probe_failed(key.alias, failure.failure, failure.detail))
            self.metrics.key_changed(record)

    async def run_probes(self) -> None:
        """Forever: probe the keys that are due. Failures are logged, never fatal."""
        while True:
            await asyncio.sleep(self._probe_tick)
            try:
                await self.probe_due()
            except Exception:
                log.exception("probe_loop_error")

    def _log(self, transition: Transition | None) -> None:
        """Log a state change this replica saw, and share it with the others."""
        if self.shared is not None:
            self.shared.publish(transition)
        if transition is not None:
            log.warning("key_state_changed", **transition.fields())


@dataclass(slots=True)
class UpstreamHold:
    """The upstream session a client session holds, and the key lease under it.

    After a mid-session drop, :meth:`reopen` gives the lost upstream's slot back
    first (on a key at its cap the replacement takes it), then opens a replacement
    through the pool on another key when one can take it, else on the same key.
    :meth:`release` gives back whatever is held, once.
    """

    connector: Connector
    params: StreamParams
    api_version: str | None
    opened: Opened
    held: bool = True
    #: Whether a drop of this client session was counted against a key already.
    drop_counted: bool = False

    def dropped(self, alias: str, failure: UpstreamFailure) -> None:
        """The session's upstream ended with an error (``Connector.dropped``): at most
        one transient drop per client session counts against a key, so a session's
        own replacements dropping in turn do not cool the only key for everyone."""
        transient = failure.failure is FailureClass.TRANSIENT
        self.connector.dropped(alias, failure, count=not (transient and self.drop_counted))
        self.drop_counted = self.drop_counted or transient

    async def reopen(self) -> tuple[UpstreamSession, str]:
        """A replacement upstream and its key's alias (raises NoUpstream)."""
        lost = self.opened.lease.alias
        self.release()
        self.opened = await self.connector.open(
            self.params, api_version=self.api_version, avoid=frozenset({lost}), replacement=True
        )
        self.held = True
        return self.opened.upstream, self.opened.lease.alias

    def release(self) -> None:
        if self.held:
            self.held = False
            self.connector.release(self.opened.lease)
