"""Find the oldest release of a framework that an adapter's tests pass on (a bisection).

    python3 .ci/floors.py fastapi --drop starlette    all releases the index lists
    python3 .ci/floors.py starlette --since 0.40 --pin fastapi==0.120.0
    python3 .ci/floors.py fastmcp --since 3.0.0 --until 4.1.2

It copies the tracked tree to a scratch folder, takes the package's floor out of the
adapters' pyproject files there, and runs the adapter's tests and documentation examples in
the matrix's lowest cell (`.ci/matrix.py`) with the package pinned to one release at a time,
bisecting over the stable releases `pip index versions` lists. It prints the oldest release
that passes: the floor to write in the adapter's pyproject.toml. It assumes that a release
that passes is followed by releases that pass; the lowest cell of the matrix checks the floor.
Not part of CI: run it when an adapter starts to use something a floor may not have.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from matrix import ROOT, SCRATCH

ADAPTER = {"fastapi": "fastapi", "starlette": "fastapi", "faststream": "faststream"}
ADAPTER |= {"fastmcp": "fastmcp", "mcp": "fastmcp", "mcp-types": "fastmcp"}


def releases(package: str, since: str | None, until: str | None) -> list[str]:
    """The package's stable releases, oldest first (from `since` to `until`, when given)."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", package],
        capture_output=True,
        text=True,
        check=True,
    )
    listed = done.stdout.split("Available versions:", 1)[1].splitlines()[0]
    stable = [v.strip() for v in listed.split(",") if re.fullmatch(r"[\d.]+", v.strip())]

    def key(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split("."))

    found = sorted(stable, key=key)
    return [
        v
        for v in found
        if (since is None or key(v) >= key(since)) and (until is None or key(v) <= key(until))
    ]


def scratch_tree(floorless: list[str], drop: list[str]) -> Path:
    """The tracked tree, copied: the floors of `floorless`, the `drop` requirements taken out."""
    tree = SCRATCH / f"floors-{floorless[0]}"
    shutil.rmtree(tree, ignore_errors=True)
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, tracked):
        target = tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    for pyproject in tree.glob("adapters/*/pyproject.toml"):
        text = pyproject.read_text()
        for name in floorless:
            text = re.sub(rf'"{re.escape(name)}>=[^"]*"', f'"{name}"', text)
        for name in drop:  # left to the framework's own range, as a transitive dependency
            text = re.sub(rf',\s*"{re.escape(name)}(>=[^"]*)?"', "", text)
        pyproject.write_text(text)
    return tree


def passes(tree: Path, package: str, version: str, pins: list[str], python: str) -> bool:
    """Whether the adapter's tests pass with `package` pinned to `version`."""
    command = [
        sys.executable, str(tree / ".ci" / "matrix.py"), f"{python}:lowest",
        "--adapter", ADAPTER[package], "--pin", f"{package}=={version}",
        *(arg for pin in pins for arg in ("--pin", pin)),
    ]  # fmt: skip
    envs = {**os.environ, "EXCEPTHUB_MATRIX_SCRATCH": str(tree.with_name(f"{tree.name}-envs"))}
    done = subprocess.run(command, cwd=tree, env=envs, capture_output=True, text=True, check=False)
    print(f"  {package}=={version}: {'passes' if done.returncode == 0 else 'fails'}", flush=True)
    if done.returncode:
        print("    " + "\n    ".join(done.stdout.strip().splitlines()[-12:]), flush=True)
    return done.returncode == 0


def main() -> int:
    """Bisect and print the floor."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("package", choices=sorted(ADAPTER))
    parser.add_argument("--since", help="the oldest release to consider")
    parser.add_argument("--until", help="the newest release to consider (one that passes)")
    parser.add_argument("--pin", action="append", default=[], help="another requirement")
    parser.add_argument("--drop", action="append", default=[], help="a requirement to drop")
    parser.add_argument("--python", default="3.11")
    args = parser.parse_args()
    candidates = releases(args.package, args.since, args.until)
    pinned = [re.split(r"[=<>!~]", pin, maxsplit=1)[0] for pin in args.pin]
    tree = scratch_tree([args.package, *pinned], args.drop)
    print(f"{args.package}: {len(candidates)} releases, {candidates[0]} to {candidates[-1]}")
    low, high = 0, len(candidates) - 1  # invariant: candidates[high] passes
    if not passes(tree, args.package, candidates[high], args.pin, args.python):
        print(f"{args.package}: even the latest release fails")
        return 1
    while low < high:
        middle = (low + high) // 2
        if passes(tree, args.package, candidates[middle], args.pin, args.python):
            high = middle
        else:
            low = middle + 1
    print(f"{args.package}: the oldest release that passes is {candidates[high]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
