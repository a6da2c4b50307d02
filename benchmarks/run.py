"""Run every comparison in one process; print medians and ratios; write JSON and a chart.

uv run python -m benchmarks.run            # everything
uv run python -m benchmarks.run core       # only some groups
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
    return (
        f"| {r.group} | {r.name} | {r.baseline_label} | {r.baseline_ns / 1000:,.2f} "
        f"| {r.ours_ns / 1000:,.2f} | {r.ratio:.2f}x |"
    )


def _chart(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.group}: {r.name}" for r in results]
    fig, ax = plt.subplots(figsize=(9, 0.38 * len(results) + 1.2))
    ys = range(len(results))
    ax.barh([y + 0.2 for y in ys], [r.baseline_ns / 1000 for r in results], 0.4, label="baseline")
    ax.barh([y - 0.2 for y in ys], [r.ours_ns / 1000 for r in results], 0.4, label="excepthub")
    ax.set_yticks(list(ys), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median µs per unit of work (log scale; lower is better)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", choices=[[], *GROUPS], default=list(GROUPS))
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per case")
    args = parser.parse_args()
    groups = args.groups or list(GROUPS)
    where = f"Python {platform.python_version()} on {platform.machine()}"
    print(f"{where}; medians of {args.rounds} interleaved rounds\n")
    print("| group | case | baseline | baseline µs | excepthub µs | ratio |")
    print("|---|---|---|---:|---:|---:|")
    results = asyncio.run(measure(groups, args.rounds))
    RESULTS.mkdir(exist_ok=True)
    data = [{**r.__dict__, "ratio": round(r.ratio, 3)} for r in results]
    (RESULTS / "latest.json").write_text(json.dumps(data, indent=2) + "\n")
    _chart(results, RESULTS / "latest.png")
    print(f"\nwrote {RESULTS / 'latest.json'} and {RESULTS / 'latest.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
