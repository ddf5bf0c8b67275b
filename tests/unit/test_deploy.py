"""The deployment files read as data, no tool run: the Dockerfile's pins, user and
health check, constraints.txt against what is installed, the compose file's secrets,
the Kubernetes manifests' probes, drain and selectors, image versions. (The files
checked by their tools, hadolint, Docker Compose, kubernetes-validate and promtool:
integration/test_deploy.py.)"""

from __future__ import annotations

import re
from importlib import metadata

import pytest
import yaml
from packaging.requirements import Requirement
from voxgate.server import stop_budget_seconds
from voxgate.settings import Settings

from tests.support import ROOT
from tests.support.deploy import K8S, TEST_KEYS, k8s_object

# ---------------------------------------------------------------- Dockerfile


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


# ---------------------------------------------------------------- Kubernetes


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
    settings = Settings.from_env({**config, **TEST_KEYS})
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
