"""Timing: medians of batches, in one process, one event loop."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass

Work = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Case:
    """One comparison: `ours` against `baseline`, both doing the same unit of work.

    `floor` (optional) is the same unit of work with no exception middleware at all (the bare
    call, a hand-written try/except): a middleware's own cost is its time above the floor.
    `target` is the most `ours / baseline` may be; `own_target` the most the ratio of own costs
    may be (both optional, from the issues). `setup` (optional) is entered around the
    measurement: for what must be started and stopped (a test broker, a client session), and
    to check once that both sides give the expected answer.
    """

    group: str
    name: str
    baseline_label: str
    baseline: Work
    ours: Work
    batch: int = 2_000
    floor: Work | None = None
    target: float | None = None
    own_target: float | None = None
    setup: Callable[[], AbstractAsyncContextManager[object]] | None = None


@dataclass(frozen=True)
class Result:
    group: str
    name: str
    baseline_label: str
    baseline_ns: float
    ours_ns: float
    floor_ns: float | None = None
    target: float | None = None
    own_target: float | None = None

    @property
    def ratio(self) -> float:
        """ours / baseline: below 1 means excepthub is cheaper."""
        return self.ours_ns / self.baseline_ns

    @property
    def own_ratio(self) -> float | None:
        """ours' own cost / baseline's own cost (time above the floor), when there is a floor
        and both sides measured above it (else the difference is below the noise)."""
        if self.floor_ns is None or min(self.ours_ns, self.baseline_ns) <= self.floor_ns:
            return None
        return (self.ours_ns - self.floor_ns) / (self.baseline_ns - self.floor_ns)

    @property
    def met(self) -> bool | None:
        """Whether the targets hold (None: no target)."""
        checks = []
        if self.target is not None:
            checks.append(self.ratio <= self.target)
        if self.own_target is not None:  # not measurable above the floor: not shown to hold
            checks.append(self.own_ratio is not None and self.own_ratio <= self.own_target)
        return all(checks) if checks else None


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
    # interleave the sides so that a noisy neighbour hurts them alike
    base: list[float] = []
    ours: list[float] = []
    floor: list[float] = []
    async with case.setup() if case.setup is not None else nullcontext():
        for _ in range(rounds):
            if case.floor is not None:
                floor.append(await median_ns(case.floor, case.batch, 1))
            base.append(await median_ns(case.baseline, case.batch, 1))
            ours.append(await median_ns(case.ours, case.batch, 1))
    return Result(
        case.group,
        case.name,
        case.baseline_label,
        statistics.median(base),
        statistics.median(ours),
        statistics.median(floor) if floor else None,
        case.target,
        case.own_target,
    )
