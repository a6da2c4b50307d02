"""`python -m conformance [NAME ...]`: run the frameworks' own tests with the adapter injected.

For each framework module (`conformance/<NAME>.py`): every suite it names runs once per mode in
a subprocess, from the root of the framework's extracted sdist; each test's outcome in a mode is
compared with its outcome in the "unchanged" run. A difference must be listed, with its reason,
in `differences.toml`; an unlisted difference fails the run, and so does a listed one that no
longer differs (the list stays true). One summary line per framework.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from ._sdist import ROOT, extracted

FRAMEWORKS = ("fastapi", "fastmcp", "faststream")
KINDS = frozenset({"masking", "log-once", "handled-500", "private-attribute"})
"""The differences a framework's tests may show with excepthub in place, each for its reason:
FastMCP's masking of exception text, a log record excepthub writes instead of the framework's
(once), a handled error no longer re-raised into the server, FastStream's private attributes."""
DIFFERENCES = Path(__file__).with_name("differences.toml")
SUITE_TIMEOUT = 600  # seconds for one suite in one mode: a hang fails, it never blocks CI


@dataclass(frozen=True)
class Difference:
    """A test allowed to differ from its unchanged run, in some modes, for a reason."""

    framework: str
    test: str  # "<sdist>:<pytest node id>"
    modes: tuple[str, ...]
    kind: str
    reason: str


@dataclass
class Summary:
    """What one framework's run found, per mode."""

    tests: int = 0
    same: dict[str, int] = field(default_factory=dict)
    deliberate: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def differences(path: Path = DIFFERENCES) -> list[Difference]:
    """The listed differences, checked: a malformed entry is an error naming it."""
    if not path.exists():
        return []
    found = []
    for at, entry in enumerate(tomllib.loads(path.read_text()).get("difference", [])):
        where = f"{path.name}, difference #{at + 1}"
        missing = {"framework", "test", "modes", "kind", "reason"} - entry.keys()
        if missing:
            raise ValueError(f"{where}: missing {sorted(missing)}")
        if entry["framework"] not in FRAMEWORKS:
            raise ValueError(f"{where}: framework must be one of {FRAMEWORKS}")
        if entry["kind"] not in KINDS:
            raise ValueError(f"{where}: kind {entry['kind']!r} is not one of {sorted(KINDS)}")
        if ":" not in entry["test"] or not entry["reason"].strip() or not entry["modes"]:
            raise ValueError(f"{where}: test is '<sdist>:<node id>', reason and modes non-empty")
        found.append(
            Difference(
                entry["framework"],
                entry["test"],
                tuple(entry["modes"]),
                entry["kind"],
                entry["reason"],
            )
        )
    return found


def _pythonpath(scratch: Path) -> str:
    """A folder holding only `conformance`: importable by the framework's tests, without putting
    this repository's own `tests` package in the way of theirs."""
    link = scratch / "conformance"
    if not link.exists():
        link.symlink_to(Path(__file__).resolve().parent)
    return os.pathsep.join(filter(None, [str(scratch), os.environ.get("PYTHONPATH")]))


def run_suite(
    spec: ModuleType, cwd: Path, tests: Sequence[str], mode: str, scratch: Path
) -> dict[str, str]:
    """One suite in one mode: `{node id: outcome}`."""
    report = scratch / f"{spec.__name__.rsplit('.', 1)[-1]}-{cwd.name}-{mode}.json"
    report.unlink(missing_ok=True)
    env = {
        **os.environ,
        "EXCEPTHUB_CONFORMANCE_MODE": mode,
        "EXCEPTHUB_CONFORMANCE_REPORT": str(report),
        "PYTHONPATH": _pythonpath(scratch),
    }
    plugins = ["-p", "conformance._report", *(["-p", spec.PLUGIN] if spec.PLUGIN else [])]
    command = [sys.executable, "-m", "pytest", *plugins, *spec.PYTEST_ARGS, *tests]
    log = report.with_suffix(".log")
    with log.open("w") as out:
        try:
            subprocess.run(
                command,
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=SUITE_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"<suite>": f"timed out after {SUITE_TIMEOUT}s"}
    if not report.exists():
        tail = log.read_text().splitlines()[-15:]
        return {"<suite>": "pytest wrote no report:\n    " + "\n    ".join(tail)}
    outcomes: dict[str, str] = json.loads(report.read_text())
    if not outcomes:
        return {"<suite>": "no test ran"}
    return outcomes


def compare(
    summary: Summary,
    sdist: str,
    mode: str,
    baseline: dict[str, str],
    outcomes: dict[str, str],
    allowed: dict[str, Difference],
    differed: set[tuple[str, str]],
) -> None:
    """Count each test of one suite in one mode as identical, deliberate or a problem."""
    for test in sorted(baseline.keys() | outcomes.keys()):
        key = f"{sdist}:{test}"
        was, now = baseline.get(test, "absent"), outcomes.get(test, "absent")
        if was == now:
            summary.same[mode] = summary.same.get(mode, 0) + 1
            continue
        differed.add((key, mode))
        listed = allowed.get(key)
        if listed is not None and mode in listed.modes:
            summary.deliberate[mode] = summary.deliberate.get(mode, 0) + 1
        else:
            summary.problems.append(f"{key} [{mode}]: {was} unchanged, {now} here")


def stale(listed: Iterable[Difference], differed: set[tuple[str, str]]) -> list[str]:
    """The listed differences that no longer differ, in the modes they name."""
    problems = []
    for difference in listed:
        modes = [m for m in difference.modes if (difference.test, m) not in differed]
        if modes:
            problems.append(
                f"{difference.test}: listed as different in {modes}, but it is the same now"
                " (remove it from differences.toml)"
            )
    return problems


def check(name: str, scratch: Path, listed: list[Difference]) -> tuple[str, Summary]:
    """Run one framework's suites in every mode and compare; its summary line and findings."""
    spec = importlib.import_module(f"conformance.{name}")
    mine = {d.test: d for d in listed if d.framework == name}
    summary = Summary()
    pins: list[str] = []
    differed: set[tuple[str, str]] = set()
    for sdist, tests in spec.SUITES.items():
        pin, root = extracted(sdist)
        pins.append(f"{pin.name} {pin.version}")
        baseline = run_suite(spec, root, tests, spec.MODES[0], scratch)
        if "<suite>" in baseline:
            summary.problems.append(f"{sdist}, {spec.MODES[0]}: {baseline['<suite>']}")
            continue
        summary.tests += len(baseline)
        for mode in spec.MODES[1:]:
            outcomes = run_suite(spec, root, tests, mode, scratch)
            if "<suite>" in outcomes:
                summary.problems.append(f"{sdist}, {mode}: {outcomes['<suite>']}")
                continue
            compare(summary, sdist, mode, baseline, outcomes, mine, differed)
    summary.problems.extend(stale(mine.values(), differed))
    standin = list(getattr(spec, "STANDIN", ()))
    if standin:  # this project's parity tests, where the framework ships none of its own
        outcomes = run_suite(spec, ROOT, standin, "standin", scratch)
        summary.tests += len(outcomes)
        for test, outcome in sorted(outcomes.items()):
            if outcome == "passed":
                summary.same["standin"] = summary.same.get("standin", 0) + 1
            else:
                summary.problems.append(f"{test}: {outcome}")
    modes = "; ".join(
        f"{mode}: {summary.same.get(mode, 0)} identical"
        + (f", {summary.deliberate[mode]} deliberate" if summary.deliberate.get(mode) else "")
        for mode in spec.MODES[1:]
    )
    if standin:
        modes = "; ".join(
            filter(None, [modes, f"parity stand-in: {summary.same.get('standin', 0)} passed"])
        )
    pinned = ", ".join(pins) or "no sdist"
    line = f"{name} ({pinned}): {summary.tests} tests; {modes}; {len(summary.problems)} undeclared"
    return line, summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"of {', '.join(FRAMEWORKS)}")
    names = parser.parse_args(argv).names or list(FRAMEWORKS)
    unknown = sorted(set(names) - set(FRAMEWORKS))
    if unknown:
        parser.error(f"unknown framework {', '.join(unknown)}: choose from {', '.join(FRAMEWORKS)}")
    listed = differences()
    failed = False
    with tempfile.TemporaryDirectory(prefix="excepthub-conformance-") as tmp:
        for name in names:
            started = time.monotonic()
            line, summary = check(name, Path(tmp), listed)
            for problem in summary.problems:
                print(f"  {name}: {problem}")
            print(f"conformance: {line} ({time.monotonic() - started:.0f} s)", flush=True)
            failed = failed or bool(summary.problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
