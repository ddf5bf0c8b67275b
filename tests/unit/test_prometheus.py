"""deploy/'s Prometheus and Grafana files read as data (no Prometheus running): the
metrics they name exist, the alerts are there in the checkable form, the provisioning
fits the dashboard. (promtool and a real Prometheus: integration/test_prometheus.py.)"""

from __future__ import annotations

import json
import re

import yaml
from prometheus_client import generate_latest
from voxgate.metrics.gateway import Metrics
from voxgate.tenants.metrics import TenantMetrics

from tests.support.deploy import (
    DASHBOARD,
    DEPLOY,
    PAY_ALERT,
    PROMETHEUS_YML,
    alert_rules,
    dashboard_exprs,
    measure_of,
)

#: The compose service Prometheus scrapes (docker-compose.yml names it so), as host:port.
COMPOSE_TARGET = "voxgate:8080"


def test_deploy_files_name_only_metrics_the_gateway_exports() -> None:
    """Every voxgate_* series the dashboard and the alerts use exists in /metrics (a
    renamed metric would leave a panel or an alert silently empty)."""
    metrics = Metrics()
    metrics.register_key("main")
    for histogram in (
        metrics.upstream_connect_seconds,
        metrics.upstream_begin_seconds,
    ):
        histogram.labels("main").observe(0.1)
    metrics.redis_publish_seconds.observe(0.001)
    metrics.key_state.labels("main", "healthy").set(1)
    metrics.key_sessions_active.labels("main").set(0)
    tenants = TenantMetrics(metrics.registry)  # the clients' and spend series
    tenants.client_label("tester")
    tenants.client_audio.labels("tester", "default").inc(1)
    tenants.client_session.labels("tester", "default").inc(1)
    tenants.client_spend.labels("tester", "default").inc(1)
    tenants.key_spend.labels("main", "default").inc(1)
    tenants.key_budget_used.labels("main").set(0)
    tenants.key_budget_alert.labels("main").set(0.8)
    exported = set(re.findall(r"^(voxgate_\w+)", generate_latest(metrics.registry).decode(), re.M))
    used = {expr for _, expr in dashboard_exprs()} | {r["expr"] for r in alert_rules()}
    names = {name for expr in used for name in re.findall(r"\bvoxgate_\w+", expr)}
    assert names, "no voxgate metric found in deploy/"
    assert names <= exported, sorted(names - exported)
    groups = [
        "voxgate_sessions_active",
        "voxgate_upstream_402_total",
        "voxgate_upstream_key_state",
        "voxgate_transcript_lag_seconds_bucket",
        "voxgate_relay_overhead_seconds_bucket",
        "voxgate_redis_backlog_envelopes",
        "voxgate_upstream_session_seconds_total",
        "voxgate_reconnects_total",
        "voxgate_client_audio_seconds_total",
        "voxgate_key_spend_usd_total",
        "voxgate_key_budget_used_ratio",
    ]
    panel_names = {n for _, e in dashboard_exprs() for n in re.findall(r"\bvoxgate_\w+", e)}
    assert set(groups) <= panel_names, sorted(set(groups) - panel_names)


def test_alert_rules_have_the_required_alerts_and_form() -> None:
    """402, no usable key, transcript lag, connect time, Redis backlog and error close
    rate are alerted on; the 402 alert fires at once (for: 0s); each expression has a
    measure that can be checked for data."""
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for name in (
        PAY_ALERT,
        "VoxgateNoUsableUpstreamKey",
        "VoxgateTranscriptLagHigh",
        "VoxgateUpstreamConnectSlow",
        "VoxgateRedisBacklogGrowing",
        "VoxgateErrorCloseRate",
    ):
        assert name in rules, name
    assert "increase(voxgate_upstream_402_total[5m])" in rules[PAY_ALERT]["expr"]
    assert rules[PAY_ALERT]["for"] in ("0s", "0m")
    for rule in rules.values():
        measure_of(rule["expr"])
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "voxgate"]
    found = [t for c in job.get("static_configs", []) for t in c["targets"]]
    found += [f"{n}:{c['port']}" for c in job.get("dns_sd_configs", []) for n in c["names"]]
    assert found == [COMPOSE_TARGET], job


def test_grafana_provisioning_fits_the_dashboard() -> None:
    """The provisioned datasource's uid is the dashboard's default datasource, the
    provider loads JSON dashboards from a file path, panel ids are unique and every
    non-row panel queries that datasource with at least one expression."""
    provisioning = DEPLOY / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "voxgate.yml").read_text())[
        "providers"
    ]
    assert provider["type"] == "file" and provider["options"]["path"]
    dashboard = json.loads(DASHBOARD.read_text())
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
    assert variable["current"]["value"] == source["uid"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["description"], panel["title"]
