"""Run every comparison in one process; print medians and ratios; write JSON and a chart.

uv run python -m benchmarks.run            # everything
uv run python -m benchmarks.run core       # only some groups

Each round times every side of a case back to back (in alternating order); the µs columns are
the medians per side, "ratio" the median of the rounds' excepthub / baseline (below 1:
excepthub is cheaper), with a ~95% range for that median in brackets. Where a case has a floor
(the same work with no exception middleware), "own-cost ratio" compares the time each
middleware adds above it, round by round. A target whose value lies inside the range is
reported "within noise": this machine could not tell.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import platform
import sys
from pathlib import Path

from ._timing import Result, compare

GROUPS = ("core", "faststream", "fastapi", "fastmcp")
RESULTS = Path(__file__).parent / "results"


async def measure(groups: list[str], rounds: int) -> list[Result]:
    results = []
    for group in groups:
        module = importlib.import_module(f"benchmarks.{group}")
        for case in module.cases():
            result = await compare(case, rounds)
            results.append(result)
            print(_row(result), flush=True)
    return results


def _row(r: Result) -> str:
    floor = "" if r.floor_ns is None else f"{r.floor_ns / 1000:,.2f}"
    own = "" if r.floor_ns is None else _ratio(r.own_ratio, r.own_ratio_range)
    return (
        f"| {r.group} | {r.name} | {r.baseline_label} | {floor} | {r.baseline_ns / 1000:,.2f} "
        f"| {r.ours_ns / 1000:,.2f} | {_ratio(r.ratio, r.ratio_range)} | {own} | {_target(r)} |"
    )


def _ratio(ratio: float | None, spread: tuple[float, float] | None) -> str:
    if ratio is None:
        return "n/a"
    return f"{ratio:.2f}x" + ("" if spread is None else f" ({spread[0]:.2f}-{spread[1]:.2f})")


def _target(r: Result) -> str:
    wanted = []
    if r.target is not None:
        wanted.append(f"≤ {r.target:.2f}x")
    if r.own_target is not None:
        wanted.append(f"own ≤ {r.own_target:.2f}x")
    if not wanted:
        return ""
    verdict = r.verdict or ""
    return f"{', '.join(wanted)}: {'**not met**' if verdict == 'not met' else verdict}"


def _chart(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.group}: {r.name}" for r in results]
    fig, ax = plt.subplots(figsize=(9, 0.38 * len(results) + 1.2))
    ys = range(len(results))
    ax.barh([y + 0.2 for y in ys], [r.baseline_ns / 1000 for r in results], 0.4, label="baseline")
    ax.barh([y - 0.2 for y in ys], [r.ours_ns / 1000 for r in results], 0.4, label="excepthub")
    floors = [(y, r.floor_ns / 1000) for y, r in zip(ys, results, strict=True) if r.floor_ns]
    if floors:  # the same work with no middleware: what is above it is a middleware's own cost
        ax.scatter([f for _, f in floors], [y for y, _ in floors], marker="|", s=300, c="k")
        ax.scatter([], [], marker="|", c="k", label="floor (no middleware)")
    ax.set_yticks(list(ys), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median µs per unit of work (log scale; lower is better)")
    ax.legend(loc="upper right")  # the first rows (the core) are short bars
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", choices=[[], *GROUPS], default=[])
    parser.add_argument("--rounds", type=int, default=21, help="interleaved rounds per case")
    args = parser.parse_args()
    groups = args.groups or list(GROUPS)
    where = f"Python {platform.python_version()} on {platform.machine()}"
    print(f"{where}; medians of {args.rounds} interleaved rounds\n")
    print(
        "| group | case | baseline | floor µs | baseline µs | excepthub µs | ratio "
        "| own-cost ratio | target |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    results = asyncio.run(measure(groups, args.rounds))
    RESULTS.mkdir(exist_ok=True)
    data = [
        {
            **r.__dict__,
            "ratio": round(r.ratio, 3),
            "own_ratio": None if r.own_ratio is None else round(r.own_ratio, 3),
            "verdict": r.verdict,
        }
        for r in results
    ]
    # a run of some groups must not overwrite the full results the README shows
    stem = "latest" if groups == list(GROUPS) else "latest-" + "-".join(groups)
    (RESULTS / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    _chart(results, RESULTS / f"{stem}.png")
    print(f"\nwrote {RESULTS / stem}.json and .png", file=sys.stderr)


if __name__ == "__main__":
    main()
