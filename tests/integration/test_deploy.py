"""The deployment files, checked with the tools that read them, no Docker engine needed:
hadolint for the Dockerfile, Docker Compose v2 (`docker-compose config`) for the
compose file, the Kubernetes API schemas (kubernetes-validate) for deploy/kubernetes,
and promtool for the Prometheus config; and the Dockerfile's health check against a
live gateway. Each tool comes from a test dependency (pyproject.toml) or
scripts/bootstrap."""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.parse
from pathlib import Path

import yaml
from voxgate.bench.procs import Server
from voxgate.server import stop_budget_seconds
from voxgate.settings import Settings

from tests.support import ROOT
from tests.support.deploy import (
    K8S,
    TEST_KEYS,
    compose_config,
    config_with_example,
    k8s_documents,
    run_tool,
    tool,
)


def duration_seconds(text: str) -> float:
    """Compose's Go durations (``1m0s``, ``45s``, ``1m30s``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"bad duration {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_is_hadolint_clean() -> None:
    """hadolint finds nothing to say about the Dockerfile (warnings included)."""
    result = run_tool(
        [tool("hadolint"), "--no-color", "--failure-threshold", "style", "Dockerfile"]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_dockerfile_healthcheck_passes_on_a_live_gateway_and_fails_on_a_stopped_one(
    gateway: Server,
) -> None:
    """The HEALTHCHECK command itself, run as Docker would (with the gateway's
    VOXGATE_PORT): exit 0 while the gateway serves, non-zero once it is gone."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    (line,) = [ln for ln in text.splitlines() if ln.startswith("HEALTHCHECK")]
    command = json.loads(line.split(" CMD ", 1)[1])
    assert command[0] == "python"
    command[0] = sys.executable
    env = {**os.environ, "VOXGATE_PORT": str(urllib.parse.urlsplit(gateway.url).port)}
    assert run_tool(command, env).returncode == 0
    gateway.stop()
    assert run_tool(command, env).returncode != 0


# ---------------------------------------------------------------- compose


def test_compose_file_is_valid_and_describes_the_stack() -> None:
    """`docker-compose config` (Compose v2, schema included) accepts the file as .env.example
    fills it: two gateway replicas on Redis with an append-only volume, Prometheus with its
    config and rules, Grafana with provisioning; the simulator only with its profile."""
    config = config_with_example()
    assert set(config["services"]) == {"voxgate", "redis", "prometheus", "grafana"}
    gateway = config["services"]["voxgate"]
    assert gateway["deploy"]["replicas"] == 2
    assert gateway["environment"]["VOXGATE_REDIS_URL"] == "redis://redis:6379/0"
    assert gateway["stop_signal"] == "SIGTERM"
    redis = config["services"]["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert any(v["type"] == "volume" and v["target"] == "/data" for v in redis["volumes"])
    targets = {
        name: {v["target"] for v in service.get("volumes", [])}
        for name, service in config["services"].items()
    }
    assert {"/etc/prometheus/prometheus.yml", "/etc/prometheus/alerts.yml"} <= targets["prometheus"]
    assert {"/etc/grafana/provisioning", "/var/lib/grafana/dashboards"} <= targets["grafana"]
    # The rule files prometheus.yml names (relative to itself) are mounted beside it.
    prometheus_yml = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    for rule_file in prometheus_yml.get("rule_files", []):
        assert f"/etc/prometheus/{rule_file}" in targets["prometheus"], rule_file

    with_sandbox = config_with_example("sandbox")
    sandbox = with_sandbox["services"]["sandbox"]
    assert sandbox["command"] == ["sandbox", "--host", "0.0.0.0", "--port", "8081"]
    # .env.example runs the stack against the simulator: no AssemblyAI key needed.
    env = with_sandbox["services"]["voxgate"]["environment"]
    assert env["VOXGATE_UPSTREAM_URL"] == "ws://sandbox:8081/v3/ws"


def test_compose_without_env_defaults_to_assemblyai_and_demands_the_secrets(
    tmp_path: Path,
) -> None:
    """With no .env, compose refuses to start and names the missing secret; once the
    secrets are given, the upstream defaults to AssemblyAI (never silently the simulator)."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = compose_config(empty)
    assert result.returncode != 0
    # Which missing variable is named first varies (compose reads a map).
    assert re.search(
        r"(VOXGATE_UPSTREAM_KEYS|VOXGATE_CLIENT_KEYS|GRAFANA_ADMIN_PASSWORD) is missing",
        result.stderr,
    ), result.stderr
    secrets = tmp_path / "secrets.env"
    secrets.write_text(
        "VOXGATE_UPSTREAM_KEYS=x\nVOXGATE_CLIENT_KEYS=a=b\nGRAFANA_ADMIN_PASSWORD=p\n"
    )
    result = compose_config(secrets)
    assert result.returncode == 0, result.stderr
    env = json.loads(result.stdout)["services"]["voxgate"]["environment"]
    assert env["VOXGATE_UPSTREAM_URL"] == "wss://streaming.assemblyai.com/v3/ws"


def test_every_file_the_compose_file_mounts_or_builds_exists_in_the_repo() -> None:
    """Each bind mount's source and each build context is a path inside the repository
    that exists (a missing one would be created empty by Docker, silently)."""
    for profiles in ((), ("sandbox",)):
        config = config_with_example(*profiles)
        for name, service in config["services"].items():
            for volume in service.get("volumes", []):
                if volume["type"] != "bind":
                    continue
                source = Path(volume["source"])
                assert source.is_relative_to(ROOT), f"{name}: {source} is outside the repo"
                assert source.exists(), f"{name} mounts {source}, which does not exist"
            if "build" in service:
                context = Path(service["build"]["context"])
                assert (context / service["build"]["dockerfile"]).exists(), name


def test_compose_stop_grace_covers_the_gateway_drain() -> None:
    """The gateway gets at least its whole stop budget (drain, Terminate deadline,
    uvicorn's shutdown) between SIGTERM and SIGKILL, for the settings compose gives it."""
    for profiles in ((), ("sandbox",)):
        gateway = config_with_example(*profiles)["services"]["voxgate"]
        settings = Settings.from_env({**gateway["environment"], **TEST_KEYS})
        grace = duration_seconds(gateway["stop_grace_period"])
        assert grace >= stop_budget_seconds(settings), (grace, stop_budget_seconds(settings))


def test_prometheus_config_and_rules_load() -> None:
    """promtool accepts deploy/prometheus/prometheus.yml and the rule files it names."""
    result = run_tool([tool("promtool"), "check", "config", "deploy/prometheus/prometheus.yml"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alerts.yml" in result.stdout + result.stderr, "the rules file was not loaded"


# ---------------------------------------------------------------- Kubernetes


def test_kubernetes_manifests_validate_against_the_api_schemas() -> None:
    """Every manifest under deploy/kubernetes is a valid Kubernetes object, strictly (an
    unknown or misspelt field fails)."""
    files = sorted(str(p) for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")
    assert len(files) >= 6
    result = run_tool([tool("kubernetes-validate"), "--strict", "--no-warn", *files])
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {d["kind"] for d in k8s_documents()}
    assert {
        "Deployment",
        "Service",
        "StatefulSet",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ConfigMap",
        "Secret",
    } <= kinds
