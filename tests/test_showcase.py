"""The README's first command: the showcase runs, and says what each client received."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

SHOWCASE = Path(__file__).resolve().parent.parent / "examples" / "showcase.py"


def _run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(SHOWCASE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _check(output: str) -> None:
    for framework in ("FastAPI", "FastStream", "FastMCP"):
        assert f"\n{framework} (" in output
    assert output.count("published by out_of_stock") == 6  # the task-group case included
    assert output.count("handled by alert_on_call") == 3
    assert output.count("unhandled by no handler") == 3
    assert "reached a client: no" in output


def test_the_showcase_serves_three_frameworks_from_one_registry() -> None:
    _check(_run())


def test_the_showcase_runs_on_a_real_redis(
    require_service: Callable[[str], tuple[str, int]],
) -> None:
    host, port = require_service("redis")
    output = _run("--redis", f"redis://{host}:{port}")
    assert "FastStream (Redis at" in output
    _check(output)
