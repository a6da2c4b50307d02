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
SCRATCH = Path(
    os.environ.get("EXCEPTHUB_MATRIX_SCRATCH") or Path(tempfile.gettempdir(), "excepthub-matrix")
)

# A lowest cell installs each adapter on its own, as a user would: one adapter's floor must
# not be lifted by another's (FastMCP needs Starlette 1, FastAPI does not).
ADAPTERS = {
    "fastapi": "adapters/fastapi",
    "faststream": "adapters/faststream[redis,rabbit,nats]",
    "fastmcp": "adapters/fastmcp",
}
LOAD_TEST = "tests/adapters/test_fastapi_load.py"  # proves no framework fact: main run only
# What each cell runs, to keep .ci/run under 20 minutes on 2 cores (CONTRIBUTING.md, "The
# version matrix"): "full" is the adapter tests and the documentation's examples; "examples"
# is the examples alone, each framework driven through its real client. The full suite runs
# once more on 3.11 with the locked versions, in .ci/run's test step.
CELLS = {
    "3.12:locked": "examples",
    "3.13:locked": "full",
    "3.11:lowest": "full",
    "3.12:lowest": "examples",
    "3.13:lowest": "full",
    "3.11:latest": "examples",
    "3.12:latest": "examples",
    "3.13:latest": "full",
}
BLOCKING = {"locked", "lowest"}
REPORTED = ["fastapi", "starlette", "faststream", "fastmcp", "mcp", "fast-depends", "anyio"]


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
        "export", "--frozen", "--only-group", "test", "--no-hashes", "--no-emit-workspace",
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


def selected_tests(depth: str, adapter: str | None) -> list[str]:
    """The pytest arguments of a cell's depth, for one adapter alone or for all of them."""
    examples = ["tests/test_docs.py", *(["-k", adapter] if adapter else [])]
    if depth == "examples":
        return examples
    if adapter is None:
        return ["tests/adapters", f"--ignore={LOAD_TEST}", *examples]
    files = sorted(
        str(p.relative_to(ROOT)) for p in ROOT.glob(f"tests/adapters/test_{adapter}*.py")
    )
    return [*(f for f in files if f != LOAD_TEST), *examples]


def prepare(python: str, resolution: str, venv: Path, install: list[str], pins: list[str]) -> str:
    """Build one environment; return its interpreter, or raise RuntimeError with uv's output."""
    if resolution == "locked":
        env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}
        done = uv("sync", "--locked", "--python", python, env=env)
    else:
        done = uv("venv", "--clear", "--python", python, str(venv))
        if done.returncode == 0:
            editable = [arg for path in [".", *install] for arg in ("--editable", path)]
            how = ["--resolution", "lowest-direct"] if resolution == "lowest" else ["--upgrade"]
            done = uv(
                "pip", "install", "--python", str(venv / "bin" / "python"), *how,
                *editable, *test_tool_pins(), *pins,
            )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stdout + done.stderr)
    return str(venv / "bin" / "python")


def versions(python: str) -> str:
    """The versions an environment resolved, of the packages the matrix is about."""
    script = (
        "import importlib.metadata as m\n"
        f"for name in {REPORTED!r}:\n"
        "    try:\n"
        "        print(f'{name} {m.version(name)}')\n"
        "    except m.PackageNotFoundError:\n"
        "        pass\n"
    )
    done = subprocess.run([python, "-c", script], capture_output=True, text=True, check=False)
    return ", ".join(done.stdout.splitlines()) if done.returncode == 0 else done.stderr


def run(
    name: str, resolution: str, python: str, install: list[str], tests: list[str], pins: list[str]
) -> tuple[bool, str]:
    """Build one environment and run its tests; return (passed, summary)."""
    print(f"\n== matrix {name}: {' '.join(tests)}", flush=True)
    try:
        interpreter_path = prepare(
            python, resolution, SCRATCH / name.replace(":", "-"), install, pins
        )
    except RuntimeError as failure:
        print(failure, flush=True)
        return False, "could not install"
    resolved = versions(interpreter_path)
    print(resolved, flush=True)
    command = [interpreter_path, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    print("\n".join(lines[-25:] if done.returncode else lines[-1:]), flush=True)
    if done.returncode:
        print(done.stderr[-3000:], flush=True)
    return done.returncode == 0, (
        lines[-1].strip("= ") if lines else "no output"
    ) + f" [{resolved}]"


def run_cell(
    cell: str, adapters: list[str], pins: list[str], tests: list[str] | None
) -> list[tuple[str, bool, str, float]]:
    """Run one cell: (name, passed, summary, seconds) for each of its environments."""
    version, resolution = cell.split(":")
    python = interpreter(version)
    depth = CELLS.get(cell, "full")
    if resolution == "lowest":
        plan = [(f"{cell}:{a}", [ADAPTERS[a]], tests or selected_tests(depth, a)) for a in adapters]
    else:
        plan = [(cell, list(ADAPTERS.values()), tests or selected_tests(depth, None))]
    results = []
    for name, install, selected in plan:
        started = time.monotonic()
        passed, summary = run(name, resolution, python, install, selected, pins)
        results.append((name, passed, summary, time.monotonic() - started))
    return results


def main() -> int:
    """Run the cells asked for (all by default) and print a table of what passed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("cells", nargs="*", default=list(CELLS), help="PYTHON:locked|lowest|latest")
    parser.add_argument("--pin", action="append", default=[], help="an extra requirement")
    parser.add_argument(
        "--adapter", action="append", choices=sorted(ADAPTERS), help="lowest cells: only these"
    )
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    tests = argv[split + 1 :] or None  # after --: pytest arguments instead of each cell's own
    for cell in args.cells:
        if not re.fullmatch(r"3\.\d+:(locked|lowest|latest)", cell):
            parser.error(f"cell {cell!r}: write it PYTHON:RESOLUTION, e.g. 3.12:lowest")
    SCRATCH.mkdir(parents=True, exist_ok=True)
    adapters = args.adapter or list(ADAPTERS)
    results = [run for cell in args.cells for run in run_cell(cell, adapters, args.pin, tests)]

    print("\n== matrix results")
    for cell, passed, summary, seconds in results:
        print(f"{'ok  ' if passed else 'FAIL'} {cell:<23} {seconds:4.0f}s  {summary}")
    failed = [cell for cell, passed, *_ in results if not passed]
    blocking = [cell for cell in failed if cell.split(":")[1] in BLOCKING]
    latest = [cell for cell in failed if cell.split(":")[1] == "latest"]
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
