"""Metrics without a server: the lock-free histogram, transcript lag, the series that
exist before any event."""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from voxgate.metrics.gateway import RELAY_BUCKETS, Metrics, transcript_lag
from voxgate.metrics.histogram import LoopHistogram

SAMPLES = (0.0, 0.00001, 0.00002, 0.000021, 0.0003, 0.005, 0.0051, 0.5, 0.50001, 7.0)


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, str], float]:
    """``(sample name, sorted labels)`` -> value for one family."""
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            out[(sample.name, repr(sorted(sample.labels.items())))] = sample.value
    return out


def test_loop_histogram_exposes_what_the_stock_histogram_does() -> None:
    """Same observations, same buckets: identical _bucket{le}, _sum and _count series
    (bounds included: a value equal to a bound lands in that bound's bucket)."""
    stock_registry, loop_registry = CollectorRegistry(), CollectorRegistry()
    stock = Histogram("h", "doc", ["direction"], buckets=RELAY_BUCKETS, registry=stock_registry)
    loop = LoopHistogram("h", "doc", ["direction"], RELAY_BUCKETS, loop_registry)
    for direction in ("up", "down"):
        stock_child, loop_child = stock.labels(direction), loop.labels(direction)
        for value in SAMPLES if direction == "up" else SAMPLES[:3]:
            stock_child.observe(value)
            loop_child.observe(value)
    got, want = samples(loop_registry, "h"), samples(stock_registry, "h")
    assert got == want
    assert got[("h_count", repr([("direction", "up")]))] == len(SAMPLES)


def test_loop_histogram_children_are_reused() -> None:
    """labels() returns the same child for the same values, so binding it once is safe."""
    histogram = LoopHistogram("x", "doc", ["d"], (1.0,), CollectorRegistry())
    assert histogram.labels("a") is histogram.labels("a")


def test_transcript_lag_is_audio_clock_minus_last_word_end() -> None:
    """Lag = audio seconds relayed - the last word's end (ms) / 1000; no words, no lag;
    a word ahead of the clock counts as 0, never negative."""
    turn = {"type": "Turn", "words": [{"end": 400}, {"end": 1250}]}
    assert transcript_lag(turn, 2.0) == 0.75
    assert transcript_lag({"type": "Turn", "words": []}, 2.0) is None
    assert transcript_lag({"type": "Turn"}, 2.0) is None
    assert transcript_lag({"type": "Turn", "words": [{"text": "x"}]}, 2.0) is None
    assert transcript_lag({"type": "Turn", "words": [{"end": True}]}, 2.0) is None
    for odd in ("NaN", "Infinity"):  # JSON from upstream may hold them (json.loads takes them)
        assert transcript_lag(json.loads(f'{{"words": [{{"end": {odd}}}]}}'), 2.0) is None
    assert transcript_lag(turn, 1.0) == 0.0


def test_turns_are_observed_as_partial_or_final() -> None:
    """A Turn with end_of_turn true lands in turn="final", any other in turn="partial"."""
    metrics = Metrics()
    metrics.turn_received({"end_of_turn": True, "words": [{"end": 1000}]}, 1.5)
    metrics.turn_received({"end_of_turn": False, "words": [{"end": 1000}]}, 1.2)
    metrics.turn_received({"end_of_turn": False, "words": [{"end": 1000}]}, 1.1)
    got = samples(metrics.registry, "voxgate_transcript_lag_seconds")
    assert got[("voxgate_transcript_lag_seconds_count", repr([("turn", "final")]))] == 1
    assert got[("voxgate_transcript_lag_seconds_count", repr([("turn", "partial")]))] == 2
    total = got[("voxgate_transcript_lag_seconds_sum", repr([("turn", "partial")]))]
    assert abs(total - 0.3) < 1e-9


def test_every_labelled_family_has_series_before_any_event() -> None:
    """Dashboards and alerts see zeros, not gaps: labelled families exist from the start
    for their bounded label values (key series appear once a key is registered)."""
    metrics = Metrics()
    metrics.register_key("main")
    text = generate_latest(metrics.registry).decode()
    for series in (
        'voxgate_relay_overhead_seconds_count{direction="up"}',
        'voxgate_relay_overhead_seconds_count{direction="down"}',
        'voxgate_transcript_lag_seconds_count{turn="final"}',
        'voxgate_reconnects_total{target="redis"}',
        'voxgate_reconnects_total{target="upstream"}',
        'voxgate_upstream_402_total{key="main"}',
        'voxgate_sessions_ended_total{outcome="completed"}',
    ):
        assert series in text, series
