"""The deployment files, checked with the tools that read them, no Docker engine needed:
hadolint for the Dockerfile, Docker Compose v2 (`docker-compose config`) for the
compose file, the Kubernetes API schemas (kubernetes-validate) for deploy/kubernetes,
and promtool for the Prometheus config; and the Dockerfile's health check against a
live gateway. Each tool comes from a test dependency (pyproject.toml) or
scripts/bootstrap."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import redis
import yaml
from voxgate.bench.procs import RedisServer, Server
from voxgate.settings import Settings
from voxgate.shutdown import stop_budget_seconds
from voxgate.transcripts.publisher import STREAM_KEY

from tests.support import ROOT, audio
from tests.support.deploy import (
    K8S,
    TEST_KEYS,
    compose_config,
    config_with_example,
    gateway_services,
    k8s_documents,
    run_tool,
    tool,
)
from tests.support.gateway import GatewayFactory
from tests.support.http import get_json
from tests.support.wsclient import Outcome, collect, open_client, run


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


def health_checks() -> dict[str, list[str]]:
    """Every health check the deploy files give a gateway: the Dockerfile's and each
    compose gateway service's, as argv (CMD dropped)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    (line,) = [ln for ln in text.splitlines() if ln.startswith("HEALTHCHECK")]
    checks = {"Dockerfile": json.loads(line.split(" CMD ", 1)[1])}
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in raw["services"].items():
        if re.fullmatch(r"voxgate-\d+", name):
            test = service["healthcheck"]["test"]
            assert test[0] == "CMD", (name, test)
            checks[f"compose {name}"] = test[1:]
    return checks


def test_gateway_healthchecks_pass_on_a_live_gateway_and_fail_on_a_stopped_one(
    gateway: Server,
) -> None:
    """Each health check command itself, run as Docker would (with the gateway's
    VOXGATE_PORT, and an http_proxy in the environment, as many hosts pass on to
    containers: a dead one here): exit 0 while the gateway serves, 1 once it is gone."""
    checks = health_checks()
    assert len(checks) >= 3
    env = {
        **os.environ,
        "VOXGATE_PORT": str(urllib.parse.urlsplit(gateway.url).port),
        "http_proxy": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)

    def argv(command: list[str]) -> list[str]:
        if command[0] == "voxgate":
            return [sys.executable, "-m", "voxgate", *command[1:]]
        assert command[0] == "python", command
        return [sys.executable, *command[1:]]

    for where, command in checks.items():
        result = run_tool(argv(command), env)
        assert result.returncode == 0, (where, result.stdout + result.stderr)
    gateway.stop()
    for where, command in checks.items():
        result = run_tool(argv(command), env)
        assert result.returncode == 1, (where, result.stdout + result.stderr)
        assert "healthz" in result.stderr and "\n" not in result.stderr.strip(), result.stderr


# ---------------------------------------------------------------- compose


def test_compose_file_is_valid_and_describes_the_stack() -> None:
    """`docker-compose config` (Compose v2, schema included) accepts the file as .env.example
    fills it: two gateway replicas on Redis with an append-only volume, Prometheus with its
    config and rules, Grafana with provisioning; the simulator only with its profile."""
    config = config_with_example()
    gateways = gateway_services(config)
    assert set(config["services"]) == {*gateways, "redis", "prometheus", "grafana"}
    assert len(gateways) == 2
    for gateway in gateways.values():
        assert gateway["environment"]["VOXGATE_REDIS_URL"] == "redis://redis:6379/0"
        assert gateway["stop_signal"] == "SIGTERM"
        (port,) = gateway["ports"]
        assert port["target"] == 8080 and "-" not in port["published"]
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
    for gateway in gateway_services(with_sandbox).values():
        env = gateway["environment"]
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
    for gateway in gateway_services(json.loads(result.stdout)).values():
        upstream = gateway["environment"]["VOXGATE_UPSTREAM_URL"]
        assert upstream == "wss://streaming.assemblyai.com/v3/ws"


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
    uvicorn's shutdown) between SIGTERM and SIGKILL, for the settings compose gives it,
    and at least the stop timeout it declares; every other service gets Docker's 10 s at
    least (podman's Docker API would give 0 s)."""
    for profiles in ((), ("sandbox",)):
        config = config_with_example(*profiles)
        gateways = gateway_services(config)
        assert gateways
        for gateway in gateways.values():
            settings = Settings.from_env({**gateway["environment"], **TEST_KEYS})
            grace = duration_seconds(gateway["stop_grace_period"])
            assert grace >= stop_budget_seconds(settings), (grace, stop_budget_seconds(settings))
            assert settings.stop_timeout is not None and grace >= settings.stop_timeout
        for name, service in config["services"].items():
            assert duration_seconds(service["stop_grace_period"]) >= 10, name


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


# ---------------------------------------------------------------- the stop budget


def test_a_gateway_told_its_stop_timeout_says_so_at_start_and_drains_once_within_it(
    gateway_factory: GatewayFactory,
) -> None:
    """With VOXGATE_STOP_TIMEOUT=10 (the image's: podman's and Docker's default) and the
    default 30 s drain, the gateway says at start, at info level and with the figures,
    that the drain is cut (no warning: the clean end fits); on SIGTERM it ends the
    running session at once and cleanly (final turn, Termination, 1012) rather than
    waiting out a drain that SIGKILL would cut, drains once, and exits 0."""
    gw = gateway_factory(VOXGATE_STOP_TIMEOUT="10", VOXGATE_DRAIN_TIMEOUT="30")

    async def scenario() -> Outcome:
        out = Outcome()
        ws = await open_client(gw.url)
        reader = asyncio.create_task(collect(ws, out))
        for i, frame in enumerate(audio.frames(audio.tone(4.0))):
            if i == 10:
                gw.send_signal()
            if reader.done():
                break
            try:
                await ws.send(frame)
            except Exception:
                break
            await asyncio.sleep(0.05)
        await reader
        return out

    out = run(scenario())
    assert out.code == 1012, out
    assert out.finals, "final transcript lost in the drain"
    assert out.messages[-1]["type"] == "Termination"
    assert gw.wait() == 0
    log = [json.loads(line) for line in gw.stderr().splitlines() if line.startswith("{")]
    assert not [e for e in log if e.get("level") == "warning"], log
    (fitted,) = [e for e in log if e.get("event") == "drain_fitted_to_stop_timeout"]
    assert fitted["level"] == "info"
    assert "0 s to end by themselves (VOXGATE_DRAIN_TIMEOUT 30 s)" in fitted["detail"], fitted
    assert "4 s for upstream's final turns" in fitted["detail"], fitted
    drains = [e for e in log if e.get("event") in ("drain_started", "drain_finished")]
    assert [e["event"] for e in drains] == ["drain_started", "drain_finished"], drains
    assert drains[0]["drain_timeout"] == 0.0 and drains[1]["ended"] == 1, drains


def test_a_stop_fits_the_declared_stop_timeout_when_upstream_never_answers_terminate(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """Upstream takes Terminate and never answers (``no-termination``); the gateway has
    VOXGATE_STOP_TIMEOUT=10 (the image's) and the default 10 s Terminate deadline. On
    SIGTERM mid-session it still closes the client itself with 1013 and a reason,
    publishes session.ended to Redis and exits 0 before a runtime's SIGKILL at 10 s (the
    wait below is that SIGKILL)."""
    limit = 10.0
    gw = gateway_factory(
        "main=deaf-key",
        VOXGATE_STOP_TIMEOUT=f"{limit:g}",
        VOXGATE_REDIS_URL=redis_server.url,
    )
    signalled: list[float] = []

    async def scenario() -> Outcome:
        out = Outcome()
        ws = await open_client(gw.url)
        reader = asyncio.create_task(collect(ws, out))
        for frame in audio.frames(audio.utterance(1.0, 0.6)):
            await ws.send(frame)
            await asyncio.sleep(0.02)
        gw.send_signal()
        signalled.append(time.monotonic())
        await reader
        return out

    out = run(scenario())
    assert out.messages and out.messages[0]["type"] == "Begin", out
    assert out.code == 1013 and "Terminate" in out.reason, out
    try:
        status = gw.wait(timeout=max(0.0, signalled[0] + limit - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {limit:g} s after SIGTERM: SIGKILL") from None
    assert status == 0
    client = redis.Redis.from_url(redis_server.url)
    entries = [json.loads(f[b"envelope"]) for _id, f in client.xrange(STREAM_KEY)]
    client.close()
    ended = [e for e in entries if e["event"] == "session.ended"]
    assert len(ended) == 1 and ended[0]["session_id"] == out.messages[0]["id"], entries
    assert ended[0]["close_code"] == 1013, ended


def test_a_stop_fits_the_declared_stop_timeout_when_redis_hangs_at_shutdown(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """Redis stops answering (SIGSTOP: connections open, no replies) while a session
    runs on an upstream deaf to Terminate: after the Terminate wait, the lifespan's
    flush and the shared pool's last sync and leave wait out their Redis deadlines. With
    VOXGATE_STOP_TIMEOUT=7 (the least that fits a clean end) the gateway still closes the
    client itself (1013) and exits 0 within 7 s of SIGTERM (the wait is the SIGKILL)."""
    limit = 7.0
    gw = gateway_factory(
        "main=deaf-key", VOXGATE_STOP_TIMEOUT=f"{limit:g}", VOXGATE_REDIS_URL=redis_server.url
    )
    deadline = time.monotonic() + 15
    while get_json(gw.http_url + "/readyz")["pool"] != "shared":  # Redis in use
        assert time.monotonic() < deadline, "the shared pool never reached Redis"
        time.sleep(0.1)
    signalled: list[float] = []

    async def scenario() -> Outcome:
        out = Outcome()
        ws = await open_client(gw.url)
        began = json.loads(await ws.recv())  # the key is booked in Redis by now
        assert began["type"] == "Begin", began
        reader = asyncio.create_task(collect(ws, out))
        os.kill(redis_server.pid, signal.SIGSTOP)
        for frame in audio.frames(audio.utterance(1.0, 0.6)):
            await ws.send(frame)
            await asyncio.sleep(0.02)
        gw.send_signal()
        signalled.append(time.monotonic())
        await reader
        return out

    try:
        out = run(scenario())
        assert out.code == 1013 and "Terminate" in out.reason, out
        try:
            status = gw.wait(timeout=max(0.0, signalled[0] + limit - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {limit:g} s after SIGTERM: SIGKILL") from None
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
    assert status == 0
