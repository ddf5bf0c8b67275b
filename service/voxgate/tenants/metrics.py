"""Prometheus series of clients and spend, in the gateway's registry.

Labels are bounded: ``client`` is a client name the operator created (at most
MAX_CLIENT_LABELS distinct ones, the rest count as "other"), ``key`` an upstream key
alias, ``model`` a known or priced model (see ``limits.model_label``), ``limit`` a
:class:`~voxgate.tenants.limits.Limit`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from voxgate.tenants.limits import Limit

NAMESPACE = "voxgate"
#: Distinct client label values one process exports; more clients share "other".
MAX_CLIENT_LABELS = 500
#: The label of the clients past MAX_CLIENT_LABELS (no client record may take it).
OVERFLOW_LABEL = "other"


class TenantMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.client_audio = Counter(
            "client_audio_seconds",
            "Seconds of audio relayed upstream, by client and model",
            ["client", "model"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.client_session = Counter(
            "client_session_seconds",
            "Seconds upstream sessions were open, by client and model",
            ["client", "model"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.client_sessions = Counter(
            "client_sessions",
            "Sessions admitted, by client",
            ["client"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.client_refused = Counter(
            "client_limit_refusals",
            "Sessions refused or ended by a client limit, by client and limit",
            ["client", "limit"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.client_spend = Counter(
            "client_spend_usd",
            "Estimated upstream cost (USD, VOXGATE_PRICES), by client and model",
            ["client", "model"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.key_spend = Counter(
            "key_spend_usd",
            "Estimated upstream cost (USD, VOXGATE_PRICES), by upstream key and model",
            ["key", "model"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.key_budget_used = Gauge(
            "key_budget_used_ratio",
            "Share of each upstream key's budget spent in its period (1: all; keys with a budget)",
            ["key"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.key_budget_alert = Gauge(
            "key_budget_alert_share",
            "Share of each upstream key's budget at which its alert fires",
            ["key"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.limits_redis_up = Gauge(
            "client_limits_redis_up",
            "0 while Redis (client records, limits, usage) is unreachable; 1 otherwise",
            namespace=NAMESPACE,
            registry=r,
        )
        self._clients: set[str] = set()

    def client_label(self, client: str) -> str:
        if client in self._clients:
            return client
        if len(self._clients) >= MAX_CLIENT_LABELS:
            return OVERFLOW_LABEL
        self._clients.add(client)
        for limit in Limit:
            self.client_refused.labels(client, limit.value)
        self.client_sessions.labels(client)
        return client
