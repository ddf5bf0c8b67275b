"""The deployment files read as data, no tool run: the Dockerfile's pins, user and
health check, constraints.txt against what is installed, the compose file's secrets,
what the compose file must be to run on both Docker Compose v2 and podman-compose
(health checks in exec form with no whitespace inside an argument, no port range, no
dependency on an optional service, a stop grace on every service), the stop budget fitted
into each runtime's stop timeout, the Kubernetes manifests' probes, drain and selectors,
image versions, and /readyz's documented states. (The files checked by their tools,
hadolint, Docker Compose, kubernetes-validate and promtool: integration/test_deploy.py;
the whole stack run with podman: scripts/test-containers.)"""

from __future__ import annotations

import asyncio
import json
import re
from importlib import metadata
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from voxgate.app import create_app
from voxgate.redis_client import REDIS_TIMEOUT
from voxgate.settings import Settings, SettingsError
from voxgate.shutdown import (
    DEFAULT_STOP_TIMEOUTS,
    EXIT_MARGIN,
    GRACEFUL_MIN,
    LIFESPAN_MAX,
    LIFESPAN_MIN,
    clean_end_seconds,
    drain_seconds,
    min_stop_seconds,
    stop_budget_seconds,
    stop_fitting,
    stop_plan,
    stop_warning,
    terminate_seconds,
)
from voxgate.transcripts.publisher import FLUSH_TIMEOUT

from tests.support import ROOT
from tests.support.deploy import K8S, TEST_KEYS, k8s_object

#: Docker's and podman's stop timeout when nobody sets it: what the image must live with.
SHORTEST_STOP_TIMEOUT = min(DEFAULT_STOP_TIMEOUTS.values())


def dockerfile_instructions() -> list[list[str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    return [ln.split(None, 1) for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for op, rest in dockerfile_instructions():
        if op == "ENV":
            env.update(pair.split("=", 1) for pair in rest.split())
    return env


def compose() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return raw


def default_of(value: str) -> str:
    """``${NAME:-default}`` as compose reads it with NAME unset (values as written)."""
    match = re.fullmatch(r"\$\{\w+:-([^}]*)\}", value)
    return match.group(1) if match else value


def gateway_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return {n: s for n, s in services.items() if re.fullmatch(r"voxgate-\d+", n)}


def check_exec_form(where: str, test: Any) -> None:
    """A health check a runtime runs as written: a list starting with CMD (no shell),
    and no argument with whitespace in it (podman's Docker API splits them)."""
    assert isinstance(test, list) and test[0] == "CMD", f"{where}: not exec form: {test!r}"
    split = [arg for arg in test if re.search(r"\s", arg)]
    assert not split, f"{where}: arguments with whitespace {split}"


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_is_pinned_non_root_healthchecked_and_stops_with_sigterm() -> None:
    """Every stage's base is pinned to an exact version, dependencies are installed from
    constraints.txt, the gateway runs as a numeric non-root user, the HEALTHCHECK is
    `voxgate healthcheck` (GET /healthz, tests/unit/test_healthcheck.py) and the stop
    signal is SIGTERM (what the drain listens for)."""
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
    assert len(health) == 1 and health[0].endswith('CMD ["voxgate", "healthcheck"]')
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


# ---------------------------------------------------------------- both compose runtimes


def test_every_health_check_is_exec_form_with_no_argument_a_runtime_could_split() -> None:
    """The Dockerfile's HEALTHCHECK and every compose health check: CMD and a list, each
    argument free of whitespace."""
    (health,) = [rest for op, rest in dockerfile_instructions() if op == "HEALTHCHECK"]
    check_exec_form("Dockerfile", ["CMD", *json.loads(health.split(" CMD ", 1)[1])])
    checked = []
    for name, service in compose()["services"].items():
        if "healthcheck" in service:
            check_exec_form(f"compose {name}", service["healthcheck"]["test"])
            checked.append(name)
    assert set(gateway_services()) | {"redis", "sandbox"} <= set(checked)


def test_compose_runs_replicas_without_a_port_range_and_needs_no_optional_service() -> None:
    """At least two gateway services, each publishing one port of its own (no host port
    range: podman refuses one, podman-compose then hangs); prometheus scrapes them under
    one alias; nothing depends on a service of a profile (podman-compose crashes when the
    profile is off), and nothing relies on deploy.replicas (podman-compose needs a mode)."""
    services = compose()["services"]
    gateways = gateway_services()
    assert len(gateways) >= 2
    published = []
    for name, service in services.items():
        for port in service.get("ports", []):
            host = default_of(str(port).rpartition(":")[0])
            assert "-" not in host.rpartition(":")[2], f"{name}: port range {port}"
            published.append(host)
        assert "replicas" not in service.get("deploy", {}), name
        deps = service.get("depends_on", [])
        for dep in deps:
            assert "profiles" not in services[dep], f"{name} depends on optional {dep}"
            assert not (isinstance(deps, dict) and deps[dep].get("required") is False), name
    assert len(set(published)) == len(published), published
    for name, service in gateways.items():
        assert "voxgate" in service["networks"]["default"]["aliases"], name
        assert service["environment"]["VOXGATE_INSTANCE"] == name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["dns_sd_configs"][0]["names"] == ["voxgate"]
    assert set(gateways) <= set(services["prometheus"]["depends_on"])


def test_every_compose_service_has_a_stop_grace_period() -> None:
    """Written out, Docker's 10 s at least: podman's Docker API otherwise stops a
    container with 0 s (SIGKILL at once)."""
    for name, service in compose()["services"].items():
        assert "stop_grace_period" in service, name


# ---------------------------------------------------------------- the stop budget


def settings_with(**env: str) -> Settings:
    return Settings.from_env({**TEST_KEYS, **{f"VOXGATE_{k.upper()}": v for k, v in env.items()}})


def test_a_declared_stop_timeout_cuts_the_drain_so_that_the_clean_end_fits() -> None:
    """The drain proper shrinks to what the stop timeout leaves after the clean end
    (never below 0); undeclared, the drain is whole and nothing is said."""
    whole = settings_with()
    assert whole.stop_timeout is None and stop_warning(whole) is None
    assert stop_fitting(whole) is None
    assert drain_seconds(whole) == whole.drain_timeout == 30
    roomy = settings_with(stop_timeout="60")
    assert drain_seconds(roomy) == 30 and stop_budget_seconds(roomy) <= 60
    assert stop_warning(roomy) is None and stop_fitting(roomy) is None
    tight = settings_with(stop_timeout="40")
    assert drain_seconds(tight) == 40 - EXIT_MARGIN - clean_end_seconds(tight) == 24
    assert stop_budget_seconds(tight) == 40
    assert stop_warning(tight) is None
    fitting = stop_fitting(tight)
    assert fitting is not None and "24 s to end by themselves" in fitting
    podman = settings_with(stop_timeout="10")
    assert drain_seconds(podman) == 0 and terminate_seconds(podman) == 4
    assert stop_budget_seconds(podman) == 10
    assert stop_warning(podman) is None  # the image's and compose's default fits
    fitting = stop_fitting(podman)
    assert fitting is not None and "0 s to end by themselves" in fitting
    assert "4 s for upstream's final turns" in fitting and "\n" not in fitting
    short = settings_with(stop_timeout="10", terminate_timeout="1", drain_timeout="30")
    assert drain_seconds(short) == 3 and stop_budget_seconds(short) == 10


@pytest.mark.parametrize("limit", [1, 5, 6.5, 7, 8, 10, 15, 30, 45, 60, 120])
def test_the_whole_stop_fits_a_declared_stop_timeout_or_warns(limit: float) -> None:
    """Every part of the stop, the lifespan's flush to Redis included, fits inside
    VOXGATE_STOP_TIMEOUT; only a stop timeout under the clean end's minimum warns."""
    settings = settings_with(stop_timeout=f"{limit:g}")
    plan = stop_plan(settings)
    assert plan.lifespan >= LIFESPAN_MIN and plan.graceful >= GRACEFUL_MIN
    assert plan.terminate <= settings.terminate_timeout
    assert plan.drain <= settings.drain_timeout
    if limit >= min_stop_seconds():
        assert stop_budget_seconds(settings) <= limit
        assert plan.terminate >= 1
        assert stop_warning(settings) is None
    else:
        warning = stop_warning(settings)
        assert warning is not None and f"under the {min_stop_seconds():g} s" in warning


def test_the_stop_budget_counts_the_lifespan_shutdown() -> None:
    """Undeclared, the budget holds every part at its longest: the drain, the Terminate
    deadline and its margin, uvicorn's graceful shutdown, and the lifespan shutdown
    (the publisher's FLUSH_TIMEOUT beside the shared pool's Redis calls)."""
    whole = settings_with()
    plan = stop_plan(whole)
    assert plan.lifespan == LIFESPAN_MAX >= FLUSH_TIMEOUT + REDIS_TIMEOUT
    assert stop_budget_seconds(whole) == 30 + 10 + plan.close_margin + plan.graceful + plan.lifespan


@pytest.mark.parametrize("value", ["0", "-1", "ten"])
def test_a_bad_stop_timeout_fails_fast_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="VOXGATE_STOP_TIMEOUT"):
        settings_with(stop_timeout=value)


def test_the_image_declares_the_stop_timeout_it_cannot_change() -> None:
    """The image's VOXGATE_STOP_TIMEOUT is at most Docker's and podman's default stop
    timeout (an image cannot set its own): a plain `podman stop` ends the drain cleanly."""
    env = dockerfile_env()
    assert float(env["VOXGATE_STOP_TIMEOUT"]) <= SHORTEST_STOP_TIMEOUT
    assert [rest.strip() for op, rest in dockerfile_instructions() if op == "STOPSIGNAL"] == [
        "SIGTERM"
    ]


def test_compose_grace_covers_the_stop_budget_and_the_declared_stop_timeout() -> None:
    """Each gateway: SIGTERM as stop signal; VOXGATE_STOP_TIMEOUT at most podman's 10 s
    (podman-compose does not pass stop_grace_period on, so a plain `podman stop` gives
    10 s); stop_grace_period at least the stop budget and the declared stop timeout."""
    assert gateway_services()
    for name, service in gateway_services().items():
        env = {k: default_of(str(v)) for k, v in service["environment"].items()}
        settings = Settings.from_env({**env, **TEST_KEYS})
        assert settings.stop_timeout is not None
        assert settings.stop_timeout <= SHORTEST_STOP_TIMEOUT, name
        grace = default_of(service["stop_grace_period"])
        assert grace.endswith("s") and grace[:-1].isdigit(), grace
        assert float(grace[:-1]) >= max(stop_budget_seconds(settings), settings.stop_timeout)
        assert service["stop_signal"] == "SIGTERM"


def test_kubernetes_gives_the_whole_drain_and_declares_the_time_it_gives() -> None:
    """VOXGATE_STOP_TIMEOUT in the ConfigMap is what the pod gets after its preStop
    pause (terminationGracePeriodSeconds minus the pause), and the whole drain fits."""
    pod = k8s_object("Deployment", "voxgate")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pause = float(container["lifecycle"]["preStop"]["exec"]["command"][1])
    config = k8s_object("ConfigMap", "voxgate-config")["data"]
    settings = Settings.from_env({**config, **TEST_KEYS})
    assert settings.stop_timeout == pod["terminationGracePeriodSeconds"] - pause
    assert drain_seconds(settings) == settings.drain_timeout
    assert stop_budget_seconds(settings) <= settings.stop_timeout


def test_the_image_carries_only_what_voxgate_uses() -> None:
    """constraints.txt (what the image installs) has none of uvicorn[standard]'s extras
    that voxgate never imports."""
    pins = {
        _normal(line.split("==")[0])
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert not pins & {"watchfiles", "python-dotenv", "pyyaml", "websockets-proxy"}


# ---------------------------------------------------------------- /readyz


def test_readyz_reports_only_states_the_operations_guide_documents() -> None:
    """Every value /readyz can report for status, redis and pool (driven through the
    real route with each state set) is in docs/operations.md's /readyz row."""
    row = next(
        ln
        for ln in (ROOT / "docs/operations.md").read_text().splitlines()
        if ln.startswith("| `GET /readyz`")
    )
    documented = set(re.findall(r"`(\w+)`", row)) | set(re.findall(r'"(\w+)"', row))
    seen: set[str] = set()

    def ready(settings: Settings, setup: Any) -> dict[str, Any]:
        gateway = create_app(settings).state.gateway
        setup(gateway)
        response = asyncio.run(gateway.health.ready(None))
        body: dict[str, Any] = json.loads(response.body)
        for field in ("status", "redis", "pool"):
            if field in body:
                seen.add(body[field])
        return body

    with_redis = settings_with(redis_url="redis://127.0.0.1:1/0")
    for up in (None, True, False):
        for shared in (True, False):

            def setup(gw: Any, up: bool | None = up, shared: bool = shared) -> None:
                gw.publisher.up = up
                gw.shared.shared = shared

            ready(with_redis, setup)
    ready(settings_with(), lambda gw: None)
    assert ready(settings_with(), lambda gw: setattr(gw.registry, "draining", True)) == {
        "status": "draining"
    }
    assert seen == {"ready", "draining", "up", "down", "unknown", "disabled", "shared", "local"}
    assert seen <= documented, seen - documented
