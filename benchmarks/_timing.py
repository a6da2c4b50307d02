"""Timing: medians of batches, in one process, one event loop."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Work = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Case:
    """One comparison: `ours` against `baseline`, both doing the same unit of work."""

    group: str
    name: str
    baseline_label: str
    baseline: Work
    ours: Work
    batch: int = 2_000


@dataclass(frozen=True)
class Result:
    group: str
    name: str
    baseline_label: str
    baseline_ns: float
    ours_ns: float

    @property
    def ratio(self) -> float:
        """ours / baseline: below 1 means excepthub is cheaper."""
        return self.ours_ns / self.baseline_ns


async def median_ns(work: Work, batch: int, rounds: int) -> float:
    """Median time of one call of `work`, over `rounds` batches of `batch` calls."""
    for _ in range(max(1, batch // 10)):  # warm caches, memos and lazy imports
        await work()
    samples = []
    gc.collect()
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(batch):
            await work()
        samples.append((time.perf_counter_ns() - start) / batch)
    return statistics.median(samples)


async def compare(case: Case, rounds: int) -> Result:
    # interleave the two sides so that a noisy neighbour hurts both alike
    base, ours = [], []
    for _ in range(rounds):
        base.append(await median_ns(case.baseline, case.batch, 1))
        ours.append(await median_ns(case.ours, case.batch, 1))
    return Result(
        case.group,
        case.name,
        case.baseline_label,
        statistics.median(base),
        statistics.median(ours),
    )
