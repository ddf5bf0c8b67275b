"""What recording costs on the per-frame path: ns per observation (prints figures only).

Run: .venv/bin/python scripts/bench_metrics.py
Compares a pre-bound histogram child (what the session uses) with calling
.labels() every time (what it must not do), plus the clock read the relay adds.
"""

from __future__ import annotations

import time
import timeit

from voxgate.metrics.gateway import Metrics

N = 200_000
REPEAT = 5


def best_ns(stmt: object, number: int = N) -> float:
    times = timeit.repeat(stmt, number=number, repeat=REPEAT)  # type: ignore[arg-type]
    return min(times) / number * 1e9


def main() -> None:
    metrics = Metrics()
    child = metrics.relay_up
    observe = child.observe
    family = metrics.relay_overhead_seconds

    def labels_each_time() -> None:
        family.labels("up").observe(0.00004)

    lag = metrics.lag_partial.observe
    clock = time.perf_counter

    def relay_observation() -> None:
        received = clock()
        observe(clock() - received)

    rows = [
        ("time.perf_counter() (one read; the relay does two per message)", lambda: clock()),
        ("histogram child .observe() (pre-bound, per message)", lambda: observe(0.00004)),
        ("2 clock reads + observe (what one relayed message adds)", relay_observation),
        ("transcript lag .observe() (per Turn)", lambda: lag(0.4)),
        ("family .labels('up').observe() (NOT used per frame)", labels_each_time),
    ]
    for name, stmt in rows:
        print(f"{best_ns(stmt):8.0f} ns  {name}")


if __name__ == "__main__":
    main()
