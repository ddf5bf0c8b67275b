"""deploy/ proven: promtool accepts it, and a real Prometheus scraping a real gateway
answers every dashboard and alert expression, counts the 402s and fires the 402 alert."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from voxgate.metrics.gateway import Metrics

from tests.conftest import GatewayFactory, get_json
from tests.procs import PROMETHEUS_YML, ROOT, Proc, PrometheusServer, RedisServer
from tests.test_gateway import metric, speech_frames
from tests.wsclient import run, session

DEPLOY = ROOT / "deploy"
ALERTS_YML = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "voxgate.json"
#: The compose service Prometheus scrapes (docker-compose.yml names it so), as host:port.
COMPOSE_TARGET = "voxgate:8080"
#: Grafana's interval variables, as Prometheus gets them in this test.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "5m"}
#: An alert expression is "<measure> <comparison> <number>" (see alerts.yml).
ALERT_FORM = re.compile(r"^(?P<measure>.+?)\s*(?:>|<|==|!=|>=|<=)\s*[-+0-9.e]+\s*$", re.S)
PAY_ALERT = "VoxgateUpstreamPaymentRequired"


def dashboard_exprs() -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` for every target of every panel, Grafana variables set."""
    dashboard = json.loads(DASHBOARD.read_text())
    out: list[tuple[str, str]] = []
    panels: list[dict[str, Any]] = list(dashboard["panels"])
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            out.append((panel["title"], expr))
    return out


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS_YML.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def measure_of(expr: str) -> str:
    match = ALERT_FORM.match(expr.strip())
    assert match is not None, f"alert expression not of the form '<measure> <op> <n>': {expr}"
    return match.group("measure")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary is not None, "promtool missing (apt-get install prometheus; scripts/bootstrap)"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)


# ---------------------------------------------------------------------- static checks


def test_promtool_accepts_the_config_and_the_rules() -> None:
    """`promtool check config` (which also loads the rule_files) and `check rules` pass."""
    config = promtool("check", "config", str(PROMETHEUS_YML))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "1 rule files found" in config.stdout, config.stdout
    rules = promtool("check", "rules", str(ALERTS_YML))
    assert rules.returncode == 0, rules.stdout + rules.stderr


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


# ---------------------------------------------------------------------- a real Prometheus


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[PrometheusServer] = []

    def make(target: str) -> PrometheusServer:
        workdir = tmp_path / f"prometheus-{len(started)}"
        workdir.mkdir()
        prometheus = PrometheusServer(workdir, [target])
        started.append(prometheus)
        prometheus.start()
        return prometheus

    yield make
    for prometheus in started:
        prometheus.stop()


def count_402_logged(gw: Proc, alias: str) -> int:
    """402s the gateway logged for ``alias``: failed connects and failed probes."""
    count = 0
    for line in gw.stderr().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("key") != alias or event.get("failure") != "payment_required":
            continue
        if event.get("event") in ("upstream_failure", "key_probe_failed"):
            count += 1
    return count


@pytest.mark.integration
def test_real_prometheus_answers_every_dashboard_and_alert_expression(
    gateway_factory: GatewayFactory, redis_server: RedisServer, prometheus_factory: Any
) -> None:
    """A real Prometheus, configured from deploy/ (1 s intervals, the compose target
    replaced), scrapes a gateway whose first key answers 402: every dashboard panel
    query and every alert measure returns data without error, the 402 counter holds
    the gateway's count for key "pay" and zero for "main", and the 402 alert fires
    for "pay" only."""
    gw = gateway_factory(
        "pay=pay-key,main=good-key",
        VOXGATE_REDIS_URL=redis_server.url,
    )
    target = urllib.parse.urlsplit(gw.http_url).netloc
    prom = prometheus_factory(target)
    prom.wait_for(
        "the first scrape of voxgate",
        lambda: prom.value('voxgate_upstream_402_total{key="pay"}') == 0.0,
    )
    # Sessions: the first goes to "pay" (402: taken out, failover to "main").
    for _ in range(3):
        out = run(session(gw.url, speech_frames(2)))
        assert out.code == 1000, out
        assert out.finals, "no final turn: transcript lag would have no data"

    expected = count_402_logged(gw, "pay")
    assert expected >= 1
    assert metric(gw, "voxgate_upstream_402_total", key="pay") == expected
    prom.wait_for(
        f"voxgate_upstream_402_total{{key='pay'}} == {expected}",
        lambda: prom.value('voxgate_upstream_402_total{key="pay"}') == expected,
    )
    assert prom.value('voxgate_upstream_402_total{key="main"}') == 0.0
    # The per-message and per-Turn recordings reached Prometheus (a quantile panel alone
    # would show NaN, not nothing, if they were never observed).
    for series in (
        'voxgate_relay_overhead_seconds_count{direction="up"}',
        'voxgate_relay_overhead_seconds_count{direction="down"}',
        'voxgate_transcript_lag_seconds_count{turn="partial"}',
        'voxgate_transcript_lag_seconds_count{turn="final"}',
    ):
        prom.wait_for(f"{series} > 0", lambda s=series: (prom.value(s) or 0.0) > 0)
    prom.wait_for(
        "3 completed sessions",
        lambda: prom.value('voxgate_sessions_ended_total{outcome="completed"}') == 3.0,
    )

    def firing() -> list[dict[str, Any]]:
        alerts = get_json(prom.url + "/api/v1/alerts")["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == PAY_ALERT]

    alerts = prom.wait_for(
        "the 402 alert firing", lambda: [a for a in firing() if a["state"] == "firing"]
    )
    assert [a["labels"]["key"] for a in alerts] == ["pay"], alerts
    assert all(a["labels"]["key"] == "pay" for a in firing()), firing()

    # Every expression: no error; data wherever data is expected (panels: always;
    # alerts: the measure before the threshold).
    exprs = [(f"panel {title!r}", expr) for title, expr in dashboard_exprs()]
    exprs += [(f"alert {r['alert']} measure", measure_of(r["expr"])) for r in alert_rules()]

    def empty() -> list[str]:
        return [f"{name}: {expr}" for name, expr in exprs if not prom.query(expr)]

    # Rates need two scrapes after the sessions: give Prometheus a moment, not forever.
    deadline = time.monotonic() + 15.0
    missing = empty()
    while missing and time.monotonic() < deadline:
        time.sleep(0.5)
        missing = empty()
    assert not missing, "\n".join(missing)
    for rule in alert_rules():
        prom.query(rule["expr"])  # the full rule evaluates without error
    rules = get_json(prom.url + "/api/v1/rules")["data"]["groups"]
    health = {r["name"]: r["health"] for g in rules for r in g["rules"]}
    assert set(health) == {r["alert"] for r in alert_rules()}
    assert all(h == "ok" for h in health.values()), health


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
