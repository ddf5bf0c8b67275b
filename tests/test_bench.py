"""A smoke run of ``voxgate bench``: the harness works end to end (no timing thresholds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from voxgate.bench import stats

from tests.procs import ROOT

pytestmark = pytest.mark.integration

#: The whole smoke run: 6 phases of 1 s plus the start of each process.
BENCH_TIMEOUT = 100.0


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("bench")
    small = ["--streams", "2", "--realistic", "2", "--seconds", "1.5", "--warmup", "0.5"]
    files = ["--json", str(out / "bench.json"), "--keep-logs", str(out / "logs")]
    result = subprocess.run(
        [sys.executable, "-m", "voxgate", "bench", *small, *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "targets (issue 8)" in result.stdout
    data: dict[str, object] = json.loads((out / "bench.json").read_text())
    return data


def test_echo_row_measures_round_trips_through_every_target(report: dict[str, object]) -> None:
    """Each phase opened its streams, kept pace and got every frame back from the echo
    upstream; the relay and the gateway were charged CPU and memory from /proc."""
    (row,) = report["echo"]  # type: ignore[misc]
    assert row["streams"] == 2
    for kind in ("direct", "relay", "gateway"):
        phase = row["phases"][kind]
        assert phase["opened"] == 2 and phase["failed_open"] == 0, phase
        assert phase["round_trips_per_second"] > 0, phase
        assert phase["echoed_share"] > 0.9, phase
        assert 0 < phase["rtt_p50_ms"] <= phase["rtt_p99_ms"], phase
        assert phase["setup_per_second"] > 0, phase
        assert phase["closed_early"] == 0, phase
        assert set(phase["harness_cpu_percent"]) == {"load", "simulator", "redis"}
    for kind in ("relay", "gateway"):
        phase = row["phases"][kind]
        assert phase["server_cpu_us_per_frame"] > 0, phase
        assert phase["rss_idle_mb"] > 1, phase
        assert phase["rss_per_session_kb"] is not None, phase
    assert row["phases"]["direct"]["server_cpu_us_per_frame"] is None
    assert row["gateway_cpu_ratio_to_relay"] > 0
    assert set(row["gateway_added_ms"]) == {"p50", "p90", "p99"}


def test_realistic_row_and_report_fields(report: dict[str, object]) -> None:
    """The realistic profile gets simulated turns through the gateway and estimates
    streams per core; the gateway published to Redis; targets name what they measured."""
    (row,) = report["realistic"]  # type: ignore[misc]
    gateway = row["phases"]["gateway"]
    assert gateway["opened"] == 2
    assert gateway["turns_per_stream_second"] > 0, gateway
    assert gateway["streams_per_core"] > 0, gateway
    assert report["redis_envelopes_published"] > 0  # type: ignore[operator]
    assert report["gateway_defaults"]["loop"] in ("uvloop", "asyncio")  # type: ignore[index]
    targets = report["targets"]
    assert isinstance(targets, list) and targets
    assert all({"target", "measured", "met"} <= set(t) for t in targets)
    assert Path(str(report["logs"])).is_dir()


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
