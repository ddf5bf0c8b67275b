"""The bench's judgement of its targets, on made-up rows (no processes). (A run of
``voxgate bench`` itself: integration/test_bench.py.)"""

from __future__ import annotations

import dataclasses

from voxgate.bench import stats


def _phase(kind: str, *, per_core: float, held: bool) -> stats.Phase:
    return stats.Phase(
        kind=kind, streams=0, opened=0, failed_open=0, setup_per_second=0.0,
        setup_p50_ms=0.0, frames_per_second=0.0, round_trips_per_second=0.0,
        rtt_p50_ms=0.0, rtt_p90_ms=0.0, rtt_p99_ms=0.0, lateness_p99_ms=0.0,
        echoed_share=1.0, pace_held=held, closed_early=0, turns_per_stream_second=3.0,
        server_cpu_percent=50.0, server_cpu_us_per_frame=80.0,
        server_cpu_ms_per_stream_second=1000 / per_core, streams_per_core=per_core,
        rss_idle_mb=30.0, rss_per_session_kb=80.0,
    )  # fmt: skip


def _realistic(streams: int, per_core: float, *, held: bool = True) -> stats.Row:
    phases = {k: _phase(k, per_core=per_core, held=held) for k in ("direct", "relay", "gateway")}
    return stats.Row("realistic", streams, phases)


def test_capacity_target_is_judged_on_the_most_streams_that_held_pace() -> None:
    """Streams per core is a capacity, judged at the heaviest load every phase kept
    real-time pace under: a lighter row (costlier per stream) is not judged, and a
    heavier row that fell behind does not count; when none held pace, it fails."""

    def capacity(rows: list[stats.Row]) -> list[tuple[str, float, bool]]:
        checks = stats.targets(rows)
        return [(c["target"], c["measured"], c["met"]) for c in checks if "per core" in c["target"]]

    rows = [_realistic(150, 520.0), _realistic(300, 650.0), _realistic(400, 900.0, held=False)]
    ((name, measured, met),) = capacity(rows)
    assert "300 streams" in name and measured == 650.0 and met
    ((name, measured, met),) = capacity([_realistic(150, 700.0), _realistic(300, 590.0)])
    assert "300 streams" in name and not met
    ((name, _, met),) = capacity([_realistic(150, 900.0, held=False)])
    assert "150 streams" in name and not met


def test_cpu_ratio_is_side_by_side_unless_the_relay_was_charged_nothing() -> None:
    """The gateway-to-relay CPU ratio comes from the side-by-side phase; when that phase
    charged the relay no clock tick (a short, light run), the ratio measured in turn
    stands in instead of no ratio at all."""
    phases = {k: _phase(k, per_core=600.0, held=True) for k in ("direct", "relay", "gateway")}
    phases["gateway"] = dataclasses.replace(phases["gateway"], server_cpu_us_per_frame=120.0)
    side = _phase("side_by_side", per_core=600.0, held=True)
    row = stats.Row("echo", 2, {**phases, "side_by_side": side})
    side.cpu_us_per_frame_each = [80.0, 72.0]
    assert row.cpu_ratio() == 0.9
    side.cpu_us_per_frame_each = [0.0, 40.0]
    assert row.cpu_ratio() == 1.5  # 120 / 80, in turn
