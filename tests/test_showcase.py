"""The README's first command: the showcase runs, and says what each client received."""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

SHOWCASE = Path(__file__).resolve().parent.parent / "examples" / "showcase.py"


@functools.cache  # one run answers every test of the in-memory showcase
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
    assert output.count("excepthub:  RuntimeError unhandled\n") == 3  # reads as the log does
    assert "by no handler" not in output
    assert "reached a client: no" in output


def test_the_showcase_serves_three_frameworks_from_one_registry() -> None:
    _check(_run())


def test_the_showcase_answers_business_errors_over_http_with_meaningful_statuses() -> None:
    http = _run().split("\nFastStream (")[0]

    assert "out-of-stock     client got: 409 " in http  # a conflict
    assert "declined         client got: 422 " in http  # understood, cannot be processed
    assert "crash            client got: 500 Internal Server Error" in http


def test_the_showcase_runs_on_a_real_redis(
    require_service: Callable[[str], tuple[str, int]],
) -> None:
    host, port = require_service("redis")
    output = _run("--redis", f"redis://{host}:{port}")
    assert "FastStream (Redis at" in output
    _check(output)
