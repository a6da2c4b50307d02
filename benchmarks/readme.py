"""Write the README's performance table, and the scaling chart, from the latest full run
(benchmarks/results/latest.json).

uv run python -m benchmarks.readme

The table is a selection of the rows `benchmarks.run` prints, between two markers in README.md,
so that the figures the README quotes are always those of one run, copied by no hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent
RESULTS = Path(__file__).parent / "results" / "latest.json"
SCALING_CHART = RESULTS.with_name("scaling.png")
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"

# (group, case as `benchmarks.run` names it) -> how the README names it
ROWS: dict[tuple[str, str], tuple[str, str]] = {
    ("core", "happy path"): ("core", "happy path"),
    ("core", "error, async fallback"): ("core", "error, async fallback"),
    ("core", "error, Context() value"): ("core", "error, `Context()` value"),
    ("scaling", "depth 20, 200 handlers"): ("core", "same error, 20-deep hierarchy, 200 handlers"),
    ("core", "error, 2 Depends (1 yield)"): (
        "core",
        "error, async handler, a sync yield and an async `Depends`",
    ),
    ("injection", "error, sync handler, 2 sync Depends (1 yield)"): (
        "core",
        "error, sync handler, two sync `Depends` (one yield): one thread hop",
    ),
    ("injection", "error, sync handler, 2 sync Depends (1 yield), inline"): (
        "core",
        "the same, `inline=True`: no hop",
    ),
    ("injection", "error, async handler, 2 async Depends (1 yield)"): (
        "core",
        "error, async handler, two async `Depends` (one yield): no hop",
    ),
    ("faststream", "happy path"): ("FastStream", "happy path, per message"),
    ("faststream", "error, async fallback"): ("FastStream", "error, async fallback"),
    ("faststream", "error, fallback with message=Context()"): (
        "FastStream",
        "error, fallback with `message=Context()`",
    ),
    ("faststream", "error, fallback with an async Depends"): (
        "FastStream",
        "error, fallback with an async `Depends`",
    ),
    ("faststream", "TestRedisBroker request, happy path"): (
        "FastStream",
        "request through `TestRedisBroker`, happy path",
    ),
    ("fastapi", "happy path (ASGI)"): ("FastAPI", "happy path (ASGI)"),
    ("fastapi", "happy path (httpx)"): ("FastAPI", "happy path (httpx)"),
    ("fastapi", "error, fallback JSONResponse (ASGI)"): (
        "FastAPI",
        "error, fallback `JSONResponse` (ASGI)",
    ),
    ("fastapi", "error, side-effect handler -> masked 500 (ASGI)"): (
        "FastAPI",
        "error, side-effect handler, masked 500 (ASGI)",
    ),
    ("fastapi", "error, fallback with request injected (ASGI)"): (
        "FastAPI",
        "error, fallback with `request` injected (ASGI)",
    ),
    ("fastapi", "error, fallback JSONResponse (httpx)"): (
        "FastAPI",
        "error, fallback `JSONResponse` (httpx)",
    ),
    ("fastapi", "error, fallback JSONResponse (uvicorn)"): (
        "FastAPI",
        "error, fallback `JSONResponse` (uvicorn, for reference)",
    ),
    ("fastmcp", "happy path (call_tool)"): ("FastMCP", "happy path (`call_tool`)"),
    ("fastmcp", "error, side-effect handler -> masked isError (call_tool)"): (
        "FastMCP",
        "error, side effect, masked `isError` result (`call_tool`)",
    ),
    ("fastmcp", "error, fallback value -> result (call_tool)"): (
        "FastMCP",
        "error, fallback value converted to the tool's result (`call_tool`)",
    ),
    ("fastmcp", "error, fallback value -> result (call_tool), against hand-written"): (
        "FastMCP",
        "the same, against a hand-written middleware giving that result",
    ),
    ("fastmcp", "error, side-effect handler -> masked isError (in-memory Client)"): (
        "FastMCP",
        "error, side effect, masked `isError` result (in-memory `Client`)",
    ),
}

LABELS = {
    "try/except": "hand-written try/except",
    "faststream.ExceptionMiddleware": "`faststream.ExceptionMiddleware`",
    "@app.exception_handler": "`@app.exception_handler`",
    "ErrorHandlingMiddleware": "`ErrorHandlingMiddleware`",
}


def table(results: list[dict[str, Any]]) -> str:
    by_case = {(r["group"], r["name"]): r for r in results}
    lines = [
        "| | case | baseline | baseline µs | excepthub µs | ratio | target |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for key, (group, name) in ROWS.items():
        r = by_case[key]  # a KeyError names a row the benchmarks no longer measure
        ratio = r["paired_ratio"] or r["ratio"]  # unrounded, as `benchmarks.run` prints it
        low, high = r["ratio_range"]
        target = "" if r["target"] is None else f"≤ {r['target']:.2f}x: {r['verdict']}"
        if r["own_target"] is not None:
            low_own, high_own = r["own_ratio_range"]
            own = f"own cost {r['own_ratio']:.2f}x ({low_own:.2f}-{high_own:.2f})"
            target = f"{own} ≤ {r['own_target']:.2f}x: {r['verdict']}"
        baseline = LABELS.get(r["baseline_label"], r["baseline_label"])
        lines.append(
            f"| {group} | {name} | {baseline} | {r['baseline_ns'] / 1000:,.2f} "
            f"| {r['ours_ns'] / 1000:,.2f} | {ratio:.2f}x ({low:.2f}-{high:.2f}) | {target} |"
        )
    return "\n".join(lines)


def scaling_chart(results: list[dict[str, Any]], path: Path) -> None:
    """The cost of a handled error as the hierarchy deepens, handlers multiply and groups grow,
    one panel per series of `benchmarks.core.SERIES`: excepthub / the same work by hand, the
    median of the rounds' paired ratios with its ~95% range (the ratio, not the µs, because
    timings on a shared machine drift with its load while a paired ratio does much less)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .core import SERIES

    by_name = {r["name"]: r for r in results if r["group"] == "scaling"}
    medians = [r["paired_ratio"] or r["ratio"] for r in by_name.values()]
    top = 2 * sorted(medians)[len(medians) // 2]  # ranges that reach past it: a noisy machine
    fig, axes = plt.subplots(1, len(SERIES), figsize=(11, 3.4), sharey=True)
    for ax, (label, values) in zip(axes, SERIES.values(), strict=True):
        rows = [by_name[f"{label} {value}"] for value in values]
        ratios = [r["paired_ratio"] or r["ratio"] for r in rows]
        low = [ratio - r["ratio_range"][0] for ratio, r in zip(ratios, rows, strict=True)]
        high = [r["ratio_range"][1] - ratio for ratio, r in zip(ratios, rows, strict=True)]
        ax.errorbar(values, ratios, yerr=[low, high], fmt="o-", capsize=3)
        for value, r, ratio in zip(values, rows, ratios, strict=True):
            note = f"{ratio:.1f}x\n{r['ours_ns'] / 1000:.2f} µs"
            ax.annotate(note, (value, ratio), textcoords="offset points", xytext=(6, 4), fontsize=7)
        ax.set_xscale("log")
        ax.set_xticks(list(values), [str(v) for v in values])
        ax.set_xlabel(label)
        ax.set_ylim(0, top)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("excepthub / by hand (paired ratio)")
    fig.suptitle(
        "A handled error as things grow: excepthub against the same work by hand "
        "(try/except, except* for groups); median µs per error beside each point",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    results = json.loads(RESULTS.read_text())
    readme.write_text(f"{before}{START}\n{table(results)}\n{END}{after}")
    scaling_chart(results, SCALING_CHART)
    print(f"wrote the performance table of {readme} and {SCALING_CHART} from {RESULTS}")


if __name__ == "__main__":
    main()
