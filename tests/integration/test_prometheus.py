"""deploy/ proven: promtool accepts it, and a real Prometheus scraping a real gateway
answers every dashboard and alert expression, counts the 402s and fires the 402 alert."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from voxgate.bench.procs import RedisServer, Server

from tests.support import audio
from tests.support.deploy import (
    ALERTS_YML,
    PAY_ALERT,
    PROMETHEUS_YML,
    alert_rules,
    dashboard_exprs,
    measure_of,
    promtool,
)
from tests.support.gateway import GatewayFactory, metric
from tests.support.http import get_json
from tests.support.procs import PrometheusServer
from tests.support.wsclient import run, session


def test_promtool_accepts_the_config_and_the_rules() -> None:
    """`promtool check config` (which also loads the rule_files) and `check rules` pass."""
    config = promtool("check", "config", str(PROMETHEUS_YML))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "1 rule files found" in config.stdout, config.stdout
    rules = promtool("check", "rules", str(ALERTS_YML))
    assert rules.returncode == 0, rules.stdout + rules.stderr


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


def count_402_logged(gw: Server, alias: str) -> int:
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
        out = run(session(gw.url, audio.speech(2)))
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
    # The clients' and keys' usage panels (issue 17) show the sessions' audio and spend.
    for series in (
        'sum(voxgate_client_audio_seconds_total{client="tester"})',
        'sum(voxgate_client_spend_usd_total{client="tester"})',
        'sum(voxgate_key_spend_usd_total{key="main"})',
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
