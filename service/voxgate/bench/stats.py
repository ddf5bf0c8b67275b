"""Figures from a bench run, and the performance targets, as pure functions (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from voxgate.bench.load import FRAME_SECONDS, MIN_ECHOED_SHARE, PACE_LATENESS, LoadResult

#: Above this share of a core, servers side by side get the scheduler's fair share, not
#: what they ask for, and their CPU ratio means nothing.
SIDE_BY_SIDE_SATURATED = 0.85
#: Above this share of its core, the harness (load generator + simulator + Redis)
#: is saturated and the figures measure it, not the relay.
HARNESS_SATURATED = 0.85

# The performance targets (docs/performance.md).
TARGET_CPU_RATIO = 1.5
TARGET_ADDED_P50_MS = 1.0
TARGET_ADDED_P99_MS = 3.0
TARGET_STREAMS_PER_CORE = 600
TARGET_SESSION_OVERHEAD_BYTES = 64 * 1024


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of ``values`` (0.0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100.0 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class Phase:
    """One kind of target (direct, relay, gateway) at one number of streams."""

    kind: str
    streams: int
    opened: int
    failed_open: int
    setup_per_second: float
    setup_p50_ms: float
    frames_per_second: float
    round_trips_per_second: float
    rtt_p50_ms: float
    rtt_p90_ms: float
    rtt_p99_ms: float
    lateness_p99_ms: float
    echoed_share: float
    pace_held: bool
    closed_early: int
    turns_per_stream_second: float
    #: CPU of the measured server in the window (None for direct: there is none).
    server_cpu_percent: float | None
    server_cpu_us_per_frame: float | None
    server_cpu_ms_per_stream_second: float | None
    streams_per_core: float | None
    rss_idle_mb: float | None
    rss_per_session_kb: float | None
    #: The harness's own CPU in the window: load generator, simulator, Redis.
    harness_cpu_percent: dict[str, float] = field(default_factory=dict)
    harness_saturated: bool = False
    close_codes: dict[int, int] = field(default_factory=dict)
    #: CPU other processes of the machine used in the window (a shared box is noisy).
    others_cpu_percent: float = 0.0
    #: CPU per frame, and share of a core, of each server when several shared the load.
    cpu_us_per_frame_each: list[float] = field(default_factory=list)
    cpu_percent_each: list[float] = field(default_factory=list)


def summarize(
    kind: str,
    result: LoadResult,
    *,
    echo: bool,
    server_cpu: float | None,
    harness_cpu: Mapping[str, float],
    rss_idle: int | None,
    rss_loaded: int | None,
    others_cpu: float = 0.0,
) -> Phase:
    """``server_cpu`` and ``harness_cpu`` are CPU seconds spent in the window."""
    window = result.window_seconds or 1.0
    frames = result.frames_sent
    round_trips = result.frames_echoed
    echoed_share = round_trips / frames if echo and frames else 1.0
    lateness_p99 = percentile(result.lateness, 99)
    expected = result.opened * window / FRAME_SECONDS
    pace_held = (
        result.opened == result.streams
        and result.closed_early == 0
        and lateness_p99 < PACE_LATENESS
        and frames >= 0.98 * expected
        and echoed_share >= MIN_ECHOED_SHARE
    )
    stream_seconds = result.opened * window
    cpu_us = cpu_ms = per_core = cpu_pct = None
    if server_cpu is not None and frames:
        cpu_pct = 100.0 * server_cpu / window
        cpu_us = 1e6 * server_cpu / frames
        cpu_ms = 1e3 * server_cpu / stream_seconds if stream_seconds else None
        per_core = stream_seconds / server_cpu if server_cpu > 0 else None
    rss_per_session = None
    if rss_idle is not None and rss_loaded is not None and result.opened:
        rss_per_session = (rss_loaded - rss_idle) / result.opened / 1024
    harness = {name: 100.0 * cpu / window for name, cpu in harness_cpu.items()}
    rtts = result.rtts
    return Phase(
        kind=kind,
        streams=result.streams,
        opened=result.opened,
        failed_open=len(result.failed_open),
        setup_per_second=result.opened / result.open_wall_seconds
        if result.open_wall_seconds
        else 0.0,
        setup_p50_ms=1e3 * percentile(result.setup_seconds, 50),
        frames_per_second=frames / window,
        round_trips_per_second=round_trips / window,
        rtt_p50_ms=1e3 * percentile(rtts, 50),
        rtt_p90_ms=1e3 * percentile(rtts, 90),
        rtt_p99_ms=1e3 * percentile(rtts, 99),
        lateness_p99_ms=1e3 * lateness_p99,
        echoed_share=echoed_share,
        pace_held=pace_held,
        closed_early=result.closed_early,
        turns_per_stream_second=result.turns / stream_seconds if stream_seconds else 0.0,
        server_cpu_percent=cpu_pct,
        server_cpu_us_per_frame=cpu_us,
        server_cpu_ms_per_stream_second=cpu_ms,
        streams_per_core=per_core,
        rss_idle_mb=rss_idle / 2**20 if rss_idle is not None else None,
        rss_per_session_kb=rss_per_session,
        harness_cpu_percent=harness,
        harness_saturated=sum(harness.values()) > 100.0 * HARNESS_SATURATED,
        close_codes=dict(result.close_codes),
        others_cpu_percent=100.0 * others_cpu / window,
    )


@dataclass
class Row:
    """One number of streams: the gateway and the minimal relay against direct."""

    profile: str
    streams: int
    phases: dict[str, Phase]

    def added_ms(self, kind: str, p: int) -> float:
        direct = getattr(self.phases["direct"], f"rtt_p{p}_ms")
        other = getattr(self.phases[kind], f"rtt_p{p}_ms")
        return float(other - direct)

    def cpu_ratio(self) -> float | None:
        """Gateway over relay CPU per frame, measured side by side when that ran
        (same core, same moment: the noise of a shared box cancels out)."""
        side = self.phases.get("side_by_side")
        if (
            side is not None
            and len(side.cpu_us_per_frame_each) == 2
            and (side.server_cpu_percent or 0.0) < 100 * SIDE_BY_SIDE_SATURATED
        ):
            relay, gateway = side.cpu_us_per_frame_each
            if relay:
                return gateway / relay
        # Not run, saturated, or too short to charge the relay a clock tick.
        return self.sequential_cpu_ratio()

    def sequential_cpu_ratio(self) -> float | None:
        gateway = self.phases["gateway"].server_cpu_us_per_frame
        relay = self.phases["relay"].server_cpu_us_per_frame
        if gateway is None or not relay:
            return None
        return gateway / relay

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "profile": self.profile,
            "streams": self.streams,
            "phases": {k: asdict(v) for k, v in self.phases.items()},
            "gateway_cpu_ratio_to_relay": self.cpu_ratio(),
            "gateway_cpu_ratio_to_relay_sequential": self.sequential_cpu_ratio(),
        }
        if self.profile == "echo":
            for kind in ("gateway", "relay"):
                out[f"{kind}_added_ms"] = {f"p{p}": self.added_ms(kind, p) for p in (50, 90, 99)}
        return out


def targets(rows: Sequence[Row], replay_buffer_bytes: int = 0) -> list[dict[str, Any]]:
    """Each performance target with what was measured and whether it was met."""
    checks: list[dict[str, Any]] = []
    for row in rows:
        gateway = row.phases["gateway"]
        ratio = row.cpu_ratio()
        if row.profile == "echo":
            checks.append(
                _check(
                    f"CPU per frame <= {TARGET_CPU_RATIO}x minimal relay ({row.streams} streams)",
                    ratio,
                    ratio is not None and ratio <= TARGET_CPU_RATIO,
                )
            )
            if row.streams in (50, 150):
                p50, p99 = row.added_ms("gateway", 50), row.added_ms("gateway", 99)
                checks.append(
                    _check(
                        f"added p50 < {TARGET_ADDED_P50_MS} ms ({row.streams} streams)",
                        p50,
                        p50 < TARGET_ADDED_P50_MS,
                    )
                )
                checks.append(
                    _check(
                        f"added p99 < {TARGET_ADDED_P99_MS} ms ({row.streams} streams)",
                        p99,
                        p99 < TARGET_ADDED_P99_MS,
                    )
                )
        elif row is _capacity_row(rows):
            per_core = gateway.streams_per_core
            checks.append(
                _check(
                    f">= {TARGET_STREAMS_PER_CORE} real-time streams per core "
                    f"(realistic, {row.streams} streams: the most that held pace)",
                    per_core,
                    per_core is not None
                    and per_core >= TARGET_STREAMS_PER_CORE
                    and gateway.pace_held,
                )
            )
        per_session = gateway.rss_per_session_kb
        limit_kb = (replay_buffer_bytes + TARGET_SESSION_OVERHEAD_BYTES) / 1024
        checks.append(
            _check(
                f"memory per session <= {limit_kb:.0f} KB ({row.profile}, {row.streams} streams)",
                per_session,
                per_session is not None and per_session <= limit_kb,
            )
        )
    return checks


def _capacity_row(rows: Sequence[Row]) -> Row | None:
    """The realistic row that tells a core's capacity: the most streams for which every
    phase held real-time pace (else the most streams, which then fails the target).
    CPU per stream falls as the load grows, for the relay and byte pipe too (fewer
    wake-ups per message, warmer caches), so a lighter row understates what a full
    core carries; the table shows every row."""
    realistic = sorted((r for r in rows if r.profile == "realistic"), key=lambda r: r.streams)
    held = [r for r in realistic if all(p.pace_held for p in r.phases.values())]
    return held[-1] if held else (realistic[-1] if realistic else None)


def _check(name: str, value: float | None, met: bool) -> dict[str, Any]:
    return {"target": name, "measured": None if value is None else round(value, 3), "met": met}
