"""``voxgate bench``: one run, every target measured under the same conditions.

Per number of streams the same load goes straight to the simulator (``direct``),
through the minimal relay (``relay``), through a byte pipe (``pipe``: the floor of
any Python relay) and through the gateway (``gateway``), one after the other, each
target a fresh process. The load generator, the simulator
and Redis share one core; the relay or the gateway gets the other, so its CPU is
its own. The gateway runs as ``voxgate serve`` with metrics, JSON logging (to a
file) and Redis publishing on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from voxgate.bench import load, stats
from voxgate.bench.procs import (
    RedisServer,
    Server,
    cpu_seconds,
    machine_busy_seconds,
    start_server,
    usable_cpus,
)
from voxgate.bench.report import render
from voxgate.bench.stub import start_stub

SIM_ECHO_KEY = "bench-echo"
SIM_OK_KEY = "bench-ok"
CLIENT_SECRET = "bench-client-secret"
#: Time a just-started server gets to settle before its idle memory is read.
SETTLE_SECONDS = 0.5


@dataclass
class Plan:
    streams: list[int]
    realistic: list[int]
    seconds: float
    warmup: float
    pin: bool
    variants: list[str]
    variant_streams: int
    scale_out: int
    workdir: Path


def run_bench_command(ns: argparse.Namespace) -> int:
    """``voxgate bench`` with the arguments :mod:`voxgate.cli.bench` defines."""
    import uvloop

    workdir = ns.keep_logs or Path(tempfile.mkdtemp(prefix="voxgate-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    plan = Plan(
        streams=ns.streams,
        realistic=ns.realistic,
        seconds=ns.seconds,
        warmup=ns.warmup,
        pin=not ns.no_pin,
        variants=[v for v in ns.variants.split(",") if v],
        variant_streams=ns.variant_streams,
        scale_out=ns.scale_out,
        workdir=workdir,
    )
    report, rows = uvloop.run(run_bench(plan))
    report["command"] = "voxgate bench " + " ".join(sys.argv[2:])
    print(render(report, *rows))
    if ns.json:
        ns.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nJSON written to {ns.json}")
    return 0


class Bench:
    """The processes of one run and the phases measured against them."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        cpus = self.cpus = usable_cpus()
        self.harness_cpus: list[int] | None = None
        self.relay_cpus: list[int] | None = None
        if plan.pin and len(cpus) >= 2:
            self.harness_cpus, self.relay_cpus = [cpus[0]], [cpus[1]]
            os.sched_setaffinity(0, self.harness_cpus)
        self.redis = RedisServer(plan.workdir, self.harness_cpus)
        keys = f"{SIM_ECHO_KEY}=echo,{SIM_OK_KEY}=ok"
        self.sim = start_server(
            "simulator",
            ["-m", "voxgate", "sandbox", "--port", "0", "--keys", keys],
            {},
            plan.workdir / "simulator.log",
            self.harness_cpus,
        )
        self.redis_published = 0.0
        self._logs = 0

    def close(self) -> None:
        self.sim.stop()
        self.redis.stop()

    # ------------------------------------------------------------------ targets

    def gateway_env(self, upstream_key: str, upstream: str | None = None) -> dict[str, str]:
        return {
            "VOXGATE_UPSTREAM_URL": (upstream or self.sim.url) + "/v3/ws",
            "VOXGATE_UPSTREAM_KEYS": f"sim={upstream_key}",
            "VOXGATE_CLIENT_KEYS": f"bench={CLIENT_SECRET}",
            "VOXGATE_REDIS_URL": self.redis.url,
            "VOXGATE_PORT": "0",
            "VOXGATE_LOG_FORMAT": "json",
            "VOXGATE_LOG_LEVEL": "info",
            "VOXGATE_KEY_MAX_SESSIONS": "100000",
            "VOXGATE_KEY_SESSIONS_PER_MINUTE": "100000",
            "VOXGATE_INSTANCE": "bench",
        }

    def start_gateway(
        self,
        upstream_key: str,
        variant: str | None = None,
        cpus: Iterable[int] | None = None,
        upstream: str | None = None,
    ) -> Server:
        self._logs += 1
        argv = ["-m", "voxgate", "serve"]
        if variant:
            loop, http, ws = variant.split("/")
            argv = ["-m", "voxgate.bench.variant", "--loop", loop, "--http", http, "--ws", ws]
        return start_server(
            "gateway",
            argv,
            self.gateway_env(upstream_key, upstream),
            self.plan.workdir / f"gateway-{self._logs}.log",
            cpus if cpus is not None else self.relay_cpus,
        )

    def start_relay(self) -> Server:
        return self.start_floor("relay")

    def start_floor(self, name: str) -> Server:
        """``bench/relay.py`` or ``bench/pipe.py`` in front of the simulator."""
        self._logs += 1
        return start_server(
            name,
            ["-m", f"voxgate.bench.{name}", "--upstream", self.sim.url],
            {},
            self.plan.workdir / f"{name}-{self._logs}.log",
            self.relay_cpus,
        )

    # ------------------------------------------------------------------ phases

    async def phase(
        self,
        kind: str,
        streams: int,
        *,
        profile: str,
        servers: Sequence[Server] = (),
        keys: Sequence[str] = (CLIENT_SECRET,),
    ) -> stats.Phase:
        """Run the load against ``servers`` (the simulator when none), stream ``i`` on
        ``servers[i % len]`` with ``keys[i % len]``; CPU per frame for each server."""
        echo = profile == "echo"
        urls = [s.url for s in servers] or [self.sim.url]
        if servers:
            await asyncio.sleep(SETTLE_SECONDS)
        rss_idle = sum(s.rss() for s in servers) if servers else None
        me = os.getpid()

        def sample() -> dict[str, Any]:
            each = [s.cpu() for s in servers]
            return {
                "servers": each,
                "server": sum(each),
                "load": cpu_seconds(me),
                "simulator": self.sim.cpu(),
                "redis": cpu_seconds(self.redis.pid),
                "rss": float(sum(s.rss() for s in servers)),
                "machine": machine_busy_seconds(),
            }

        result = await load.run_load(
            urls,
            keys,
            streams,
            seconds=self.plan.seconds,
            warmup=self.plan.warmup,
            echo=echo,
            frames=load.silence_frames() if echo else load.speech_like_frames(),
            sample=sample,
        )
        if len(result.samples) == 2:
            before, after = result.samples
        else:  # the load failed before its window: nothing measured
            before = after = sample()
        spent = {k: after[k] - before[k] for k in before if k != "servers"}
        harness = {name: spent[name] for name in ("load", "simulator", "redis")}
        # Other processes on this machine during the window (other users of a shared box).
        others = spent["machine"] - spent["server"] - sum(harness.values())
        phase = stats.summarize(
            kind,
            result,
            echo=echo,
            server_cpu=spent["server"] if servers else None,
            harness_cpu=harness,
            rss_idle=rss_idle,
            rss_loaded=int(after["rss"]) if servers else None,
            others_cpu=max(0.0, others),
        )
        window = result.window_seconds or 1.0
        phase.cpu_percent_each = [
            100.0 * (a - b) / window
            for a, b in zip(after["servers"], before["servers"], strict=True)
        ]
        phase.cpu_us_per_frame_each = [
            1e6 * (a - b) / frames if frames else 0.0
            for a, b, frames in zip(
                after["servers"], before["servers"], result.frames_by_target, strict=False
            )
        ]
        return phase

    async def row(self, profile: str, streams: int) -> stats.Row:
        """Direct, relay, byte pipe, gateway one after the other (latency, set-up,
        memory), then relay and gateway side by side on the same core (their CPU ratio)."""
        upstream_key = SIM_ECHO_KEY if profile == "echo" else SIM_OK_KEY
        phases: dict[str, stats.Phase] = {}
        phases["direct"] = await self.phase("direct", streams, profile=profile, keys=[upstream_key])
        for floor in ("relay", "pipe"):
            server = self.start_floor(floor)
            try:
                phases[floor] = await self.phase(
                    floor, streams, profile=profile, servers=[server], keys=[upstream_key]
                )
            finally:
                server.stop()
        gateway = self.start_gateway(upstream_key)
        try:
            phases["gateway"] = await self.phase(
                "gateway", streams, profile=profile, servers=[gateway]
            )
            self.redis_published += await asyncio.to_thread(_redis_published, gateway)
        finally:
            gateway.stop()
        relay, gateway = self.start_relay(), self.start_gateway(upstream_key)
        try:
            phases["side_by_side"] = await self.phase(
                "relay+gateway",
                streams,
                profile=profile,
                servers=[relay, gateway],
                keys=[upstream_key, CLIENT_SECRET],
            )
        finally:
            relay.stop()
            gateway.stop()
        return stats.Row(profile, streams, phases)

    async def variants(self, variants: Sequence[str], streams: int) -> list[dict[str, Any]]:
        """Each uvicorn set-up beside the minimal relay on the same core, sharing the load:
        a shared box changes CPU per frame by tens of percent from minute to minute, but
        alike for two processes running side by side, so their ratio holds still."""
        out = []
        for variant in variants:
            servers = [self.start_relay()]
            try:
                servers.append(self.start_gateway(SIM_ECHO_KEY, variant=variant))
                phase = await self.phase(
                    "variant",
                    streams,
                    profile="echo",
                    servers=servers,
                    keys=[SIM_ECHO_KEY, CLIENT_SECRET],
                )
            finally:
                for server in servers:
                    server.stop()
            relay_cost, cost = phase.cpu_us_per_frame_each
            out.append(
                {
                    "variant": variant,
                    "streams": streams // 2,
                    "cpu_us_per_frame": cost,
                    "ratio_to_relay": cost / relay_cost if relay_cost else None,
                    "relay_cpu_us_per_frame": relay_cost,
                    "rtt_p50_ms": phase.rtt_p50_ms,
                    "rtt_p99_ms": phase.rtt_p99_ms,
                    "setup_per_second": phase.setup_per_second,
                    "echoed_share": phase.echoed_share,
                    "closed_early": phase.closed_early,
                    "pace_held": phase.pace_held,
                    "others_cpu_percent": phase.others_cpu_percent,
                    "core_saturated": (phase.server_cpu_percent or 0.0)
                    >= 100 * stats.SIDE_BY_SIDE_SATURATED,
                }
            )
        return out

    async def scale_out(self, streams: int) -> list[dict[str, Any]]:
        """The same echo load on one gateway process, then on two (one per core).

        The upstream is the lean in-process stub (see ``stub.py``), so the harness
        leaves room on its core for the second gateway process.
        """
        stub, stub_url = await start_stub()
        out = []
        try:
            for processes in (1, 2):
                pins: list[list[int] | None] = [self.relay_cpus, self.harness_cpus][:processes]
                if not self.plan.pin:
                    pins = [None] * processes
                gateways = [
                    self.start_gateway(SIM_ECHO_KEY, cpus=p, upstream=stub_url) for p in pins
                ]
                try:
                    phase = await self.phase("gateway", streams, profile="echo", servers=gateways)
                finally:
                    for gateway in gateways:
                        gateway.stop()
                out.append({"processes": processes, **asdict(phase)})
        finally:
            stub.close()
        return out


def _redis_published(gateway: Server) -> float:
    """Envelopes the gateway delivered to Redis (proof that publishing was on)."""
    with urllib.request.urlopen(gateway.http_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith("voxgate_redis_published_envelopes_total"):
            return float(line.split()[-1])
    return 0.0


Rows = tuple[list[stats.Row], list[stats.Row]]


async def run_bench(plan: Plan) -> tuple[dict[str, Any], Rows]:
    """Every measurement of ``plan``: the JSON report, and the rows for the tables."""
    bench = Bench(plan)
    try:
        echo_rows = [await bench.row("echo", n) for n in plan.streams]
        realistic_rows = [await bench.row("realistic", n) for n in plan.realistic]
        variants = (
            await bench.variants(plan.variants, plan.variant_streams) if plan.variants else []
        )
        scale = await bench.scale_out(plan.scale_out) if plan.scale_out else []
    finally:
        bench.close()
    from voxgate.server import uvicorn_config  # the defaults measured, as the gateway runs them

    return {
        "machine": {
            "cpus": len(bench.cpus),
            "pinned": {"harness": bench.harness_cpus, "relay_or_gateway": bench.relay_cpus},
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "gateway_defaults": _defaults(uvicorn_config),
        "seconds": plan.seconds,
        "echo": [r.as_dict() for r in echo_rows],
        "realistic": [r.as_dict() for r in realistic_rows],
        "variants": variants,
        "scale_out": scale,
        "redis_envelopes_published": bench.redis_published,
        "replay_buffer_bytes": _replay_bytes(),
        "targets": stats.targets(echo_rows + realistic_rows, _replay_bytes()),
        "logs": str(plan.workdir),
    }, (echo_rows, realistic_rows)


def _replay_bytes() -> int:
    """The gateways' replay buffer at the bench's 16 kHz PCM (default VOXGATE_REPLAY_SECONDS)."""
    from voxgate.settings import DEFAULT_REPLAY_SECONDS

    return int(DEFAULT_REPLAY_SECONDS * load.SAMPLE_RATE * 2)


def _defaults(factory: Any) -> dict[str, str]:
    from voxgate.settings import Settings

    settings = Settings.from_env({"VOXGATE_UPSTREAM_KEYS": "a=b", "VOXGATE_CLIENT_KEYS": "c=d"})
    from voxgate.app import create_app

    config = factory(create_app(settings), settings)
    ws = config.ws if isinstance(config.ws, str) else "voxgate"  # voxgate.ws, its own
    http = config.http if isinstance(config.http, str) else "voxgate.edge (httptools)"
    return {"loop": config.loop, "http": http, "ws": ws}
