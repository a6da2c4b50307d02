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
    to check once that every side gives the expected answer.
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
    """Medians per side, and the ratios taken round by round (each round measures the sides
    back to back, so a neighbour's load that comes and goes cancels out of a round's ratio)."""

    group: str
    name: str
    baseline_label: str
    baseline_ns: float
    ours_ns: float
    floor_ns: float | None = None
    target: float | None = None
    own_target: float | None = None
    paired_ratio: float | None = None
    paired_own_ratio: float | None = None
    ratio_range: tuple[float, float] | None = None
    own_ratio_range: tuple[float, float] | None = None

    @property
    def ratio(self) -> float:
        """ours / baseline (the median of the rounds' ratios): below 1, excepthub is cheaper."""
        if self.paired_ratio is not None:
            return self.paired_ratio
        return self.ours_ns / self.baseline_ns

    @property
    def own_ratio(self) -> float | None:
        """ours' own cost / baseline's own cost (time above the floor), when there is a floor
        and both sides measured above it (else the difference is below the noise)."""
        if self.floor_ns is None or min(self.ours_ns, self.baseline_ns) <= self.floor_ns:
            return None
        if self.paired_own_ratio is not None:
            return self.paired_own_ratio
        return (self.ours_ns - self.floor_ns) / (self.baseline_ns - self.floor_ns)

    @property
    def verdict(self) -> str | None:
        """ "met", "not met", or "within noise" when the target lies inside the ratio's ~95%
        range (the machine's noise cannot tell); None without a target."""
        verdicts = []
        if self.target is not None:
            verdicts.append(_verdict(self.ratio, self.ratio_range, self.target))
        if self.own_target is not None:
            own = self.own_ratio  # not measurable above the floor: not shown to hold
            verdicts.append(
                "not met" if own is None else _verdict(own, self.own_ratio_range, self.own_target)
            )
        for verdict in ("not met", "within noise", "met"):
            if verdict in verdicts:
                return verdict
        return None


def _verdict(ratio: float, spread: tuple[float, float] | None, target: float) -> str:
    low, high = spread or (ratio, ratio)
    if high <= target:
        return "met"
    if low > target:
        return "not met"
    return "within noise"


def _median_range(values: list[float]) -> tuple[float, float]:
    """A ~95% confidence range of the median, from order statistics (no normality assumed)."""
    ranked = sorted(values)
    k = max(0, int(len(ranked) / 2 - 0.98 * len(ranked) ** 0.5))
    return ranked[k], ranked[len(ranked) - 1 - k]


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
    # interleave the sides so that a noisy neighbour hurts them alike; every other round in
    # the reverse order, so that a drift within a round favours no side
    sides = {"floor": case.floor, "baseline": case.baseline, "ours": case.ours}
    order = [(name, work) for name, work in sides.items() if work is not None]
    times: dict[str, list[float]] = {name: [] for name, _ in order}
    async with case.setup() if case.setup is not None else nullcontext():
        for round_ in range(rounds):
            for name, work in order if round_ % 2 == 0 else order[::-1]:
                times[name].append(await median_ns(work, case.batch, 1))
    base, ours, floor = times["baseline"], times["ours"], times.get("floor")
    ratios = [o / b for o, b in zip(ours, base, strict=True)]
    own = None
    if floor is not None:
        pairs = [(o - f, b - f) for o, b, f in zip(ours, base, floor, strict=True)]
        own = [o / b for o, b in pairs] if all(b > 0 for _, b in pairs) else None
    return Result(
        case.group,
        case.name,
        case.baseline_label,
        statistics.median(base),
        statistics.median(ours),
        statistics.median(floor) if floor else None,
        case.target,
        case.own_target,
        statistics.median(ratios),
        statistics.median(own) if own else None,
        _median_range(ratios),
        _median_range(own) if own else None,
    )
