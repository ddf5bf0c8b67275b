"""Prometheus metrics: one object, one registry (tests get a fresh one).

Label values come only from the gateway's own enums and the operator's key
aliases, never from client input, so cardinality stays bounded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from voxgate.edge.limits import Refusal
from voxgate.keys.pool import KeyRecord, KeyState
from voxgate.metrics.histogram import LoopHistogram
from voxgate.protocol import Violation
from voxgate.upstream.failures import FailureClass, UpstreamFailure

NAMESPACE = "voxgate"
#: Network handshakes: a LAN answers in milliseconds, a far region in a second or two.
CONNECT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)
#: Time a message spends inside the gateway: tens of microseconds when all is well,
#: milliseconds when the loop is busy, more when the receiving side pushes back.
RELAY_BUCKETS = (
    0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5
)  # fmt: skip
#: How far a Turn's last word trails the audio sent: a partial comes a few hundred ms
#: after speech, a final after the end-of-turn silence; seconds mean upstream is behind.
LAG_BUCKETS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


class Outcome:
    """How a session ended (the ``outcome`` label)."""

    COMPLETED = "completed"  # Terminate -> Termination -> 1000
    CLIENT_GONE = "client_gone"  # the client vanished without Terminate
    CLIENT_ERROR = "client_error"  # the client broke a protocol rule
    UPSTREAM_ERROR = "upstream_error"  # upstream refused or ended it with an error
    DRAINED = "drained"  # ended by a gateway shutdown
    INTERNAL = "internal"  # a gateway bug
    EXPIRED = "expired"  # reached its temporary token's session cap (3008)
    IDLE = "idle"  # the client sent nothing for VOXGATE_IDLE_TIMEOUT (3006)
    LIMITED = "limited"  # reached its client's audio budget (voxgate.tenants)

    ALL = (
        COMPLETED, CLIENT_GONE, CLIENT_ERROR, UPSTREAM_ERROR, DRAINED, INTERNAL, EXPIRED, IDLE,
        LIMITED,
    )  # fmt: skip


def transcript_lag(turn: Mapping[str, object], audio_seconds: float) -> float | None:
    """Seconds the last word of a Turn trails the audio relayed so far (None: no words).

    Word ``end`` is in ms from the start of the session's audio; a value ahead of the
    clock (audio in flight counted late) is reported as 0.
    """
    words = turn.get("words")
    if not isinstance(words, list) or not words:
        return None
    last = words[-1]
    end = last.get("end") if isinstance(last, dict) else None
    if not isinstance(end, int | float) or isinstance(end, bool) or not math.isfinite(end):
        return None
    return max(audio_seconds - end / 1000.0, 0.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.sessions_active = Gauge(
            "sessions_active", "Client sessions open now", namespace=NAMESPACE, registry=r
        )
        self.sessions_started = Counter(
            "sessions_started", "Client sessions accepted", namespace=NAMESPACE, registry=r
        )
        self.sessions_ended = Counter(
            "sessions_ended",
            "Client sessions ended, by outcome",
            ["outcome"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.client_rejections = Counter(
            "client_rejections",
            "Client requests or messages refused, by reason",
            ["reason"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.ws_limits = Counter(
            "ws_messages_refused",
            "WebSocket messages over a bound (1009: size, fragments; 1008: deadline), by hop",
            ["hop", "limit"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.upstream_errors = Counter(
            "upstream_errors",
            "Upstream refusals and error closes, by key alias and failure class",
            ["key", "failure"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.upstream_402 = Counter(
            "upstream_402",
            "Upstream payment-required answers (HTTP 402, 4002/4003, 1008 about billing)",
            ["key"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.upstream_connect_seconds = Histogram(
            "upstream_connect_seconds",
            "Upstream WebSocket handshake time",
            ["key"],
            buckets=CONNECT_BUCKETS,
            namespace=NAMESPACE,
            registry=r,
        )
        self.upstream_begin_seconds = Histogram(
            "upstream_begin_seconds",
            "Time from the client's request to upstream's Begin",
            ["key"],
            buckets=CONNECT_BUCKETS,
            namespace=NAMESPACE,
            registry=r,
        )
        self.audio_seconds = Counter(
            "audio_seconds",
            "Seconds of audio relayed upstream, by key alias",
            ["key"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.upstream_session_seconds = Counter(
            "upstream_session_seconds",
            "Seconds upstream sessions were open (what upstream bills), by key alias",
            ["key"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.bytes_relayed = Counter(
            "relayed_bytes",
            "Bytes relayed, by direction",
            ["direction"],
            namespace=NAMESPACE,
            registry=r,
        )
        # Observed for every relayed message: the lock-free histogram (voxgate.metrics.histogram).
        self.relay_overhead_seconds = LoopHistogram(
            f"{NAMESPACE}_relay_overhead_seconds",
            "Time one message spends in the gateway, from its receipt to its write onward",
            ["direction"],
            buckets=RELAY_BUCKETS,
            registry=r,
        )
        self.transcript_lag_seconds = LoopHistogram(  # also observed per message
            f"{NAMESPACE}_transcript_lag_seconds",
            "Audio seconds relayed when a Turn arrives minus its last word's end, by turn kind",
            ["turn"],
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.idle_sessions = Counter(
            "idle_sessions",
            "Sessions ended by the gateway because the client sent nothing for "
            "VOXGATE_IDLE_TIMEOUT (Terminate upstream, then close 3006)",
            namespace=NAMESPACE,
            registry=r,
        )
        self.keepalives_coalesced = Counter(
            "keepalives_coalesced",
            "Client KeepAlive messages not sent upstream: one went up less than a second before",
            namespace=NAMESPACE,
            registry=r,
        )
        self.reconnects = Counter(
            "reconnects",
            "Connections re-established after a loss, by target (upstream mid-session, redis)",
            ["target"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.failovers = Counter(
            "failovers",
            "Sessions moved to another key or reconnected, by phase (connect, mid_session)",
            ["phase"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.key_state = Gauge(
            "upstream_key_state",
            "1 for each key's current state, 0 for the others",
            ["key", "state"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.key_sessions_active = Gauge(
            "upstream_key_sessions_active",
            "Sessions open on each upstream key",
            ["key"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.redis_up = Gauge(
            "redis_up", "1 while the last Redis publish worked", namespace=NAMESPACE, registry=r
        )
        self.pool_shared = Gauge(
            "pool_shared",
            "1 while the key pool is shared with other replicas through Redis, 0 on the local view",
            namespace=NAMESPACE,
            registry=r,
        )
        self.redis_backlog = Gauge(
            "redis_backlog_envelopes",
            "Envelopes waiting to reach Redis",
            namespace=NAMESPACE,
            registry=r,
        )
        self.redis_dropped = Counter(
            "redis_dropped_envelopes",
            "Envelopes shed because the backlog was full, by kind (partial first)",
            ["kind"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.redis_published = Counter(
            "redis_published_envelopes",
            "Envelopes delivered to Redis",
            namespace=NAMESPACE,
            registry=r,
        )
        self.redis_publish_seconds = Histogram(
            "redis_publish_seconds",
            "Time of one pipelined publish batch",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            namespace=NAMESPACE,
            registry=r,
        )
        for kind in ("partial", "final"):
            self.redis_dropped.labels(kind)
        for phase in ("connect", "mid_session"):
            self.failovers.labels(phase)
        for outcome in Outcome.ALL:
            self.sessions_ended.labels(outcome)
        for violation in Violation:
            self.client_rejections.labels(violation.value)
        for direction in ("up", "down"):
            self.bytes_relayed.labels(direction)
        for hop in ("client", "upstream"):
            for limit in ("size", "fragments", "deadline"):
                self.ws_limits.labels(hop, limit)
        # Children bound once: the per-frame path never calls .labels().
        self.bytes_up = self.bytes_relayed.labels("up")
        self.bytes_down = self.bytes_relayed.labels("down")
        self._usage: dict[str, tuple[Counter, Counter]] = {}
        self._watched_keys: set[str] = set()
        self.relay_up = self.relay_overhead_seconds.labels("up")
        self.relay_down = self.relay_overhead_seconds.labels("down")
        self.lag_partial = self.transcript_lag_seconds.labels("partial")
        self.lag_final = self.transcript_lag_seconds.labels("final")
        self._edge_metrics(r)

    def _edge_metrics(self, r: CollectorRegistry) -> None:
        """The edge (docs/limits.md): refusals before any work, and what is held."""
        self.edge_refusals = Counter(
            "edge_refusals",
            "Connections or requests refused at the edge before any work, by reason",
            ["reason"],
            namespace=NAMESPACE,
            registry=r,
        )
        for reason in Refusal:
            self.edge_refusals.labels(reason.value)
        self.edge_connections = Gauge(
            "edge_connections", "Connections open now", namespace=NAMESPACE, registry=r
        )
        self.edge_handshakes = Gauge(
            "edge_handshakes",
            "Connections whose request head is not complete yet",
            namespace=NAMESPACE,
            registry=r,
        )
        self.edge_max_connections = Gauge(
            "edge_max_connections",
            "The connection cap in force (setting and descriptor limit)",
            namespace=NAMESPACE,
            registry=r,
        )
        self.open_files_limit = Gauge(
            "open_files_limit",
            "The soft descriptor limit after start",
            namespace=NAMESPACE,
            registry=r,
        )
        for target in ("upstream", "redis"):
            self.reconnects.labels(target)

    def register_key(self, alias: str) -> None:
        """Create a key's series at zero so dashboards and alerts see them before any event."""
        self.upstream_402.labels(alias)
        self.audio_seconds.labels(alias)
        self.upstream_session_seconds.labels(alias)
        for failure in FailureClass:
            if failure is not FailureClass.NORMAL:
                self.upstream_errors.labels(alias, failure.value)

    def key_changed(self, record: KeyRecord) -> None:
        """Mirror a key's state into the gauges. Its sessions gauge reads the pool's
        record itself at each scrape (bound here the first time), so it is the pool's
        truth whatever path took or gave back a lease."""
        for state in KeyState:
            self.key_state.labels(record.alias, state.value).set(
                1.0 if record.state is state else 0.0
            )
        if record.alias not in self._watched_keys:
            self._watched_keys.add(record.alias)
            self.key_sessions_active.labels(record.alias).set_function(lambda: record.active)

    def usage(self, alias: str) -> tuple[Counter, Counter]:
        """Key ``alias``'s audio seconds and session seconds counters (looked up once:
        every session adds to them every second)."""
        pair = self._usage.get(alias)
        if pair is None:
            pair = self._usage[alias] = (
                self.audio_seconds.labels(alias),
                self.upstream_session_seconds.labels(alias),
            )
        return pair

    def turn_received(self, turn: Mapping[str, object], audio_seconds: float) -> None:
        """Observe how far ``turn`` trails the session's audio clock (partial or final)."""
        lag = transcript_lag(turn, audio_seconds)
        if lag is not None:
            (self.lag_final if turn.get("end_of_turn") is True else self.lag_partial).observe(lag)

    def upstream_failure(self, alias: str, failure: UpstreamFailure) -> None:
        if failure.failure is FailureClass.NORMAL:
            return
        self.upstream_errors.labels(alias, failure.failure.value).inc()
        if failure.failure is FailureClass.PAYMENT_REQUIRED:
            self.upstream_402.labels(alias).inc()
