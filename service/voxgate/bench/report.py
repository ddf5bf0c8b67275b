"""The bench's report as text: tables per profile, set-ups, scale-out, targets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from voxgate.bench import stats


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _others(row: stats.Row) -> float:
    return max(p.others_cpu_percent for p in row.phases.values())


def _pipe(row: stats.Row, figure: str) -> float | None:
    """A figure of the byte pipe (the floor of any Python relay), when it ran."""
    pipe = row.phases.get("pipe")
    value: float | None = getattr(pipe, figure) if pipe is not None else None
    return value


def _saturated(harness_percent: float) -> str:
    return " SATURATED" if harness_percent > 100 * stats.HARNESS_SATURATED else ""


def echo_table(rows: Sequence[stats.Row]) -> str:
    head = (
        "streams | added p50/p90/p99 ms (gateway) | (relay) | round trips/s | pace | "
        "CPU us/frame gw / relay (ratio side by side; in turn) / byte pipe | gw CPU % | "
        "RSS/session KB gw / relay | "
        "set-up/s direct / relay / gw | harness CPU % | others CPU %"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        d, r, g = (row.phases[k] for k in ("direct", "relay", "gateway"))
        added = "/".join(_f(row.added_ms("gateway", p), 2) for p in (50, 90, 99))
        relay_added = "/".join(_f(row.added_ms("relay", p), 2) for p in (50, 90, 99))
        pace = "/".join("ok" if p.pace_held else "LATE" for p in (d, r, g))
        harness = max(sum(p.harness_cpu_percent.values()) for p in (d, r, g))
        lines.append(
            f"{row.streams:>7} | {added:>30} | {relay_added:>7} | "
            f"{_f(g.round_trips_per_second, 0):>13} | {pace} | "
            f"{_f(g.server_cpu_us_per_frame, 0)} / {_f(r.server_cpu_us_per_frame, 0)} "
            f"({_f(row.cpu_ratio(), 2)}; {_f(row.sequential_cpu_ratio(), 2)}) / "
            f"{_f(_pipe(row, 'server_cpu_us_per_frame'), 0)} | "
            f"{_f(g.server_cpu_percent, 0)} | "
            f"{_f(g.rss_per_session_kb, 0)} / {_f(r.rss_per_session_kb, 0)} | "
            f"{_f(d.setup_per_second, 0)} / {_f(r.setup_per_second, 0)} / "
            f"{_f(g.setup_per_second, 0)} | {_f(harness, 0)}{_saturated(harness)} | "
            f"{_f(_others(row), 0)}"
        )
    return "\n".join(lines)


def realistic_table(rows: Sequence[stats.Row]) -> str:
    head = (
        "streams | turns/s/stream | pace | CPU ms per stream-second gw / relay "
        "(ratio side by side) | "
        "streams per core gw / relay / byte pipe | RSS/session KB gw | harness CPU % | "
        "others CPU %"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        r, g = row.phases["relay"], row.phases["gateway"]
        pace = "/".join("ok" if p.pace_held else "LATE" for p in row.phases.values())
        harness = max(sum(p.harness_cpu_percent.values()) for p in row.phases.values())
        lines.append(
            f"{row.streams:>7} | {_f(g.turns_per_stream_second, 2):>14} | {pace} | "
            f"{_f(g.server_cpu_ms_per_stream_second, 3)} / "
            f"{_f(r.server_cpu_ms_per_stream_second, 3)} ({_f(row.cpu_ratio(), 2)}) | "
            f"{_f(g.streams_per_core, 0)} / {_f(r.streams_per_core, 0)} / "
            f"{_f(_pipe(row, 'streams_per_core'), 0)} | "
            f"{_f(g.rss_per_session_kb, 0)} | {_f(harness, 0)} | "
            f"{_f(_others(row), 0)}"
        )
    return "\n".join(lines)


def targets_table(checks: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(
        f"{'met ' if c['met'] else 'MISS'}  {c['target']}: {c['measured']}" for c in checks
    )


def render(
    report: dict[str, Any], echo_rows: Sequence[stats.Row], realistic_rows: Sequence[stats.Row]
) -> str:
    parts = [
        f"voxgate bench: {report['machine']['cpus']} CPUs, pinned {report['machine']['pinned']}, "
        f"gateway {report['gateway_defaults']}, window {report['seconds']:g} s per phase",
    ]
    if echo_rows:
        parts += [
            "",
            "echo profile (upstream answers every frame at once):",
            echo_table(echo_rows),
        ]
    if realistic_rows:
        parts += ["", "realistic profile (simulated turns on speech-like audio):"]
        parts.append(realistic_table(realistic_rows))
    if report["variants"]:
        parts += ["", "uvicorn set-ups, each beside the minimal relay (echo profile):"]
        for v in report["variants"]:
            parts.append(
                f"  {v['variant']:<36} {v['streams']} streams each, CPU "
                f"{v['cpu_us_per_frame']:.0f} us/frame, {v['ratio_to_relay']:.2f}x the relay's "
                f"({v['relay_cpu_us_per_frame']:.0f} us); relay+gateway round trip p50 "
                f"{v['rtt_p50_ms']:.2f} ms p99 {v['rtt_p99_ms']:.2f} ms"
                + (" [core saturated: fair shares, not costs]" if v["core_saturated"] else "")
            )
    if report["scale_out"]:
        parts += ["", "scale-out (gateway processes, echo profile):"]
        for s in report["scale_out"]:
            each = " + ".join(f"{c:.0f} %" for c in s["cpu_percent_each"])
            per_core = [
                1e6 / c if c else 0.0 for c in s["cpu_us_per_frame_each"]
            ]  # frames/s one fully used core would carry at that process's cost
            parts.append(
                f"  {s['processes']} process(es): {s['round_trips_per_second']:.0f} round trips/s "
                f"of {s['streams'] * 20} offered, pace {'ok' if s['pace_held'] else 'LATE'}, "
                f"rtt p50 {s['rtt_p50_ms']:.2f} ms p99 {s['rtt_p99_ms']:.2f} ms, "
                f"gateway CPU {each}; capacity at full cores "
                f"{sum(per_core):.0f} frames/s"
            )
    parts += [
        "",
        f"Redis envelopes published by the gateways: {report['redis_envelopes_published']:.0f}",
    ]
    parts += ["", "targets:", targets_table(report["targets"])]
    return "\n".join(parts)
