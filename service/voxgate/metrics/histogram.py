"""A histogram for the per-message path: lock-free, one bisect and two adds.

prometheus-client's Histogram takes a lock per bucket and sum update and scans its
buckets linearly: about 1.4 us per observation here (scripts/bench_metrics.py).
Every observation and every scrape of this one happens on the event loop's thread
(the /metrics route is async and renders in the loop), so it needs no lock:
about 0.3 us. It exposes the same Prometheus histogram series (``_bucket{le}``,
``_sum``, ``_count``) as a custom collector.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

#: How prometheus-client spells a bucket bound (so ``le`` matches its histograms).
_le: Callable[[float], str] = floatToGoString


class LoopHistogramChild:
    """One label combination: ``observe`` is the hot-path call; bind it once."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = tuple(bounds)
        self.counts = [0] * (len(bounds) + 1)  # the last slot is +Inf
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        # bisect_left: the first bound >= amount, i.e. the "le" bucket Prometheus means.
        self.counts[bisect_left(self._bounds, amount)] += 1
        self.sum += amount


class LoopHistogram(Collector):
    """A labelled histogram whose children are created up front (bounded labels)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        if list(buckets) != sorted(buckets):
            raise ValueError("buckets must be sorted")
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.buckets = tuple(float(b) for b in buckets)
        self._children: dict[tuple[str, ...], LoopHistogramChild] = {}
        registry.register(self)

    def labels(self, *values: str) -> LoopHistogramChild:
        """The child for ``values`` (created on first use); call it once, not per message."""
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}")
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = LoopHistogramChild(self.buckets)
        return child

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        bounds = [_le(b) for b in self.buckets] + ["+Inf"]
        for values, child in list(self._children.items()):
            counts = list(child.counts)
            cumulative = 0
            pairs = []
            for bound, count in zip(bounds, counts, strict=True):
                cumulative += count
                pairs.append((bound, float(cumulative)))
            family.add_metric(list(values), pairs, child.sum)
        return [family]
