"""Type tests: `mypy --strict` accepts the public API used right, and rejects it used wrong.

`tests/typing/accepted.py` must check clean; every line of `tests/typing/rejected.py` marked
`# E: <code>` must be an error with that code, and no other line may be.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parent.parent
SNIPPETS = ROOT / "tests" / "typing"
ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")
EXPECTED = re.compile(r"# E: (?P<code>[a-z-]+)")


@cache
def mypy_errors() -> dict[str, set[tuple[int, str]]]:
    """One mypy run over the snippets: `{file name: {(line, code)}}`."""
    stdout, stderr, _ = api.run(
        [
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            "--no-pretty",
            "--show-error-codes",
            str(SNIPPETS / "accepted.py"),
            str(SNIPPETS / "adapters.py"),
            str(SNIPPETS / "rejected.py"),
        ]
    )
    assert not stderr, stderr
    errors: dict[str, set[tuple[int, str]]] = {
        "accepted.py": set(),
        "adapters.py": set(),
        "rejected.py": set(),
    }
    for line in stdout.splitlines():
        if match := ERROR.match(line):
            errors[Path(match["file"]).name].add((int(match["line"]), match["code"]))
    return errors


def test_the_public_api_used_right_passes_mypy_strict() -> None:
    assert mypy_errors()["accepted.py"] == set()


def test_each_adapter_plugs_in_where_its_framework_takes_middleware_under_mypy_strict() -> None:
    assert mypy_errors()["adapters.py"] == set()


def test_the_public_api_used_wrong_is_rejected_where_marked() -> None:
    source = (SNIPPETS / "rejected.py").read_text(encoding="utf-8").splitlines()
    expected = {
        (number, match["code"])
        for number, text in enumerate(source, start=1)
        if (match := EXPECTED.search(text))
    }

    assert expected, "rejected.py lost its markers"
    assert mypy_errors()["rejected.py"] == expected
