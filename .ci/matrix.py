"""The version matrix: the adapter tests on each Python, against three sets of versions.

    python3 .ci/matrix.py                        every cell in CELLS
    python3 .ci/matrix.py 3.13:latest 3.11:lowest   the cells named
    python3 .ci/matrix.py 3.11:lowest --pin fastapi==0.150.0 -- tests/adapters/test_fastapi.py

A cell is a Python and a resolution:
- locked: uv.lock, as every developer runs it (`uv sync --locked` into a scratch environment);
- lowest: each distribution's direct dependencies at their floors (uv `lowest-direct`): the
  oldest framework releases the pyproject files claim to support;
- latest: the newest releases the index serves today.
The test tools (pytest, uvicorn, httpx...) stay at their locked versions in every cell, so that
a cell tells about the frameworks, not about the tools. Each cell runs in its own scratch
virtual environment outside the tree, with the workspace installed editable.

Exit status: 1 when a locked or lowest cell fails; a failing latest cell is reported loudly
and does not fail the run (a framework's new release must not block unrelated work).
Standard library only: it runs under whatever python3 starts .ci/run.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = Path(tempfile.gettempdir()) / "excepthub-matrix"

# What each cell runs (see CONTRIBUTING.md, "The version matrix"): the adapter tests and the
# documentation's examples everywhere; the load test, which proves no framework fact, only
# in the main locked run of .ci/run.
TESTS = [
    "tests/adapters",
    "tests/test_docs.py",
    "--ignore=tests/adapters/test_fastapi_load.py",
]
CELLS = [
    "3.12:locked",
    "3.13:locked",
    "3.11:lowest",
    "3.12:lowest",
    "3.13:lowest",
    "3.11:latest",
    "3.12:latest",
    "3.13:latest",
]
BLOCKING = {"locked", "lowest"}
REPORTED = ["fastapi", "starlette", "faststream", "fastmcp", "mcp", "fast-depends", "anyio"]
WORKSPACE = [".", "adapters/fastapi", "adapters/faststream[redis,rabbit]", "adapters/fastmcp"]


def uv(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run uv from the python3 that runs this script, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "uv", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def interpreter(version: str) -> str:
    """The machine's Python `version` (uv never downloads one; pyenv keeps the others)."""
    found = uv("python", "find", "--no-python-downloads", version)
    if found.returncode == 0:
        return found.stdout.strip()
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"))
    if candidates:
        return candidates[-1]
    raise SystemExit(f"matrix: Python {version} is not installed on this machine")


def test_tool_pins() -> list[str]:
    """The `test` dependency group, each tool pinned to its version in uv.lock."""
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]
    names = {re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0].lower() for req in groups["test"]}
    exported = uv(
        "export", "--locked", "--only-group", "test", "--no-hashes", "--no-emit-workspace",
        "--no-header", "--no-annotate",
    )  # fmt: skip
    if exported.returncode != 0:
        raise SystemExit(f"matrix: uv export failed\n{exported.stderr}")
    pins = []
    for line in exported.stdout.splitlines():
        name = line.split("==", 1)[0].strip().lower()
        if name in names:
            pins.append(line.split(";", 1)[0].strip())
    return pins


def prepare(python: str, resolution: str, venv: Path, pins: list[str]) -> str:
    """Build the cell's environment; return its interpreter, or raise with uv's output."""
    if resolution == "locked":
        env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}
        done = uv("sync", "--locked", "--python", python, env=env)
    else:
        done = uv("venv", "--clear", "--python", python, str(venv))
        if done.returncode == 0:
            editable = [arg for path in WORKSPACE for arg in ("--editable", path)]
            how = ["--resolution", "lowest-direct"] if resolution == "lowest" else ["--upgrade"]
            done = uv(
                "pip", "install", "--python", str(venv / "bin" / "python"), *how,
                *editable, *test_tool_pins(), *pins,
            )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stdout + done.stderr)
    return str(venv / "bin" / "python")


def versions(python: str) -> str:
    """The versions the cell resolved, of the packages the matrix is about."""
    script = (
        "import importlib.metadata as m\n"
        f"for name in {REPORTED!r}:\n"
        "    print(f'{name} {m.version(name)}')\n"
    )
    done = subprocess.run([python, "-c", script], capture_output=True, text=True, check=False)
    return ", ".join(done.stdout.split("\n")[:-1]) if done.returncode == 0 else done.stderr


def run_cell(cell: str, pins: list[str], tests: list[str]) -> tuple[bool, str, float]:
    """Build one cell and run its tests; return (passed, summary, seconds)."""
    version, resolution = cell.split(":")
    started = time.monotonic()
    venv = SCRATCH / f"{version}-{resolution}"
    print(f"\n== matrix {cell}: Python {version}, {resolution} versions", flush=True)
    try:
        python = prepare(interpreter(version), resolution, venv, pins)
    except RuntimeError as failure:
        print(failure, flush=True)
        return False, "could not install", time.monotonic() - started
    resolved = versions(python)
    print(resolved, flush=True)
    command = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    print("\n".join(lines[-25:] if done.returncode else lines[-1:]), flush=True)
    summary = (lines[-1].strip("= ") if lines else "no output") + f" [{resolved}]"
    return done.returncode == 0, summary, time.monotonic() - started


def main() -> int:
    """Run the cells asked for (all by default) and print a table of what passed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("cells", nargs="*", default=CELLS, help="PYTHON:locked|lowest|latest")
    parser.add_argument("--pin", action="append", default=[], help="an extra requirement")
    parser.add_argument("tests", nargs=argparse.REMAINDER, help="after --: pytest arguments")
    args = parser.parse_args()
    tests = [arg for arg in args.tests if arg != "--"] or TESTS
    for cell in args.cells:
        if not re.fullmatch(r"3\.\d+:(locked|lowest|latest)", cell):
            parser.error(f"cell {cell!r}: write it PYTHON:RESOLUTION, e.g. 3.12:lowest")
    SCRATCH.mkdir(parents=True, exist_ok=True)
    results = [(cell, *run_cell(cell, args.pin, tests)) for cell in args.cells]

    print("\n== matrix results")
    for cell, passed, summary, seconds in results:
        print(f"{'ok  ' if passed else 'FAIL'} {cell:<12} {seconds:5.0f}s  {summary}")
    failed = [cell for cell, passed, *_ in results if not passed]
    blocking = [cell for cell in failed if cell.split(":")[1] in BLOCKING]
    latest = [cell for cell in failed if cell.endswith(":latest")]
    if latest:
        banner = "!" * 78
        print(f"\n{banner}\n!! The LATEST framework releases break excepthub: {', '.join(latest)}")
        print("!! This does not fail the run; fix it as work of its own.\n" + banner)
    if blocking:
        print(f"\nmatrix: failed: {', '.join(blocking)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
