"""CPU instructions per FastAPI request, native handler against excepthub: a count that does
not vary from run to run, where the timings of a shared machine do.

uv run python -m benchmarks.instructions                  # /ok, /fallback, /side-effect
uv run python -m benchmarks.instructions /fallback

Needs valgrind (`apt-get install valgrind`). Each side runs in a child process under callgrind,
once with no measured requests and once with `REQUESTS` of them: the difference, divided, is
what one request costs, start-up left out. Hash randomization is off so that both runs lay
their dicts out alike. About a minute and a half per side and path (both runs in parallel).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

REQUESTS = 1000
WARM_UP = 500
PATHS = ("/ok", "/fallback", "/side-effect")


def count(side: str, path: str) -> float:
    """Instructions per request of `side` ("native" or "excepthub") on `path`."""
    with ThreadPoolExecutor(2) as pool:
        start_up, measured = pool.map(lambda n: _instructions(side, path, n), (0, REQUESTS))
    return (measured - start_up) / REQUESTS


def _instructions(side: str, path: str, requests: int) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    command += ["-m", "benchmarks.instructions", "--child", side, path, str(requests)]
    run = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"}
    )
    found = re.search(r"Collected : (\d+)", run.stderr)
    if run.returncode != 0 or found is None:
        raise RuntimeError(f"{' '.join(command)} failed:\n{run.stderr[-2000:]}")
    return int(found.group(1))


def _child(side: str, path: str, requests: int) -> None:
    from . import fastapi

    app = fastapi._native() if side == "native" else fastapi._excepthub()
    one = fastapi.asgi(app, path)

    async def main() -> None:
        for _ in range(WARM_UP + requests):
            await one()

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=list(PATHS))
    parser.add_argument("--child", nargs=3, metavar=("SIDE", "PATH", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        side, path, requests = args.child
        _child(side, path, int(requests))
        return
    print("| path | native instructions | excepthub instructions | ratio |")
    print("|---|---:|---:|---:|")
    for path in args.paths:
        native, ours = count("native", path), count("excepthub", path)
        print(f"| {path} | {native:,.0f} | {ours:,.0f} | {ours / native:.3f}x |", flush=True)


if __name__ == "__main__":
    main()
