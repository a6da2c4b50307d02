"""The conformance runner's own rules: how outcomes are compared and the list of differences
kept true. (The frameworks' suites themselves run in `python -m conformance`.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from conformance.__main__ import DIFFERENCES, Difference, Summary, compare, differences, stale


def difference(test: str = "fastapi:tests/test_a.py::test_x", *modes: str) -> Difference:
    return Difference("fastapi", test, modes or ("injected",), "handled-500", "a reason")


def test_a_test_with_the_same_outcome_counts_as_identical() -> None:
    summary = Summary()
    compare(summary, "fastapi", "injected", {"t": "passed"}, {"t": "passed"}, {}, set())

    assert summary.same == {"injected": 1}
    assert summary.problems == []


def test_an_unlisted_difference_is_a_problem_naming_the_test_and_both_outcomes() -> None:
    summary = Summary()
    compare(summary, "fastapi", "injected", {"t": "passed"}, {"t": "failed"}, {}, set())

    assert summary.problems == ["fastapi:t [injected]: passed unchanged, failed here"]


def test_a_test_missing_from_a_mode_is_a_difference() -> None:
    summary = Summary()
    compare(summary, "fastapi", "injected", {"t": "passed"}, {}, {}, set())

    assert summary.problems == ["fastapi:t [injected]: passed unchanged, absent here"]


def test_a_listed_difference_counts_as_deliberate_in_its_modes_only() -> None:
    listed = {"fastapi:t": difference("fastapi:t", "moved")}
    summary = Summary()
    differed: set[tuple[str, str]] = set()
    compare(summary, "fastapi", "moved", {"t": "passed"}, {"t": "failed"}, listed, differed)
    compare(summary, "fastapi", "injected", {"t": "passed"}, {"t": "failed"}, listed, differed)

    assert summary.deliberate == {"moved": 1}
    assert summary.problems == ["fastapi:t [injected]: passed unchanged, failed here"]


def test_a_listed_difference_that_no_longer_differs_is_a_problem() -> None:
    problems = stale([difference("fastapi:t", "injected", "moved")], {("fastapi:t", "moved")})

    assert problems == [
        "fastapi:t: listed as different in ['injected'], but it is the same now"
        " (remove it from differences.toml)"
    ]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('framework = "flask"', "framework must be one of"),
        ('kind = "other"', "kind 'other' is not one of"),
        ('test = "no-sdist"', "test is '<sdist>:<node id>'"),
        ('reason = " "', "reason and modes non-empty"),
    ],
)
def test_a_malformed_difference_is_an_error_naming_it(
    tmp_path: Path, entry: str, message: str
) -> None:
    fields = {
        "framework": '"fastapi"',
        "test": '"fastapi:tests/test_a.py::test_x"',
        "modes": '["injected"]',
        "kind": '"masking"',
        "reason": '"why"',
    }
    key, _, value = entry.partition(" = ")
    fields[key] = value
    path = tmp_path / "differences.toml"
    path.write_text("[[difference]]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items()))

    with pytest.raises(ValueError, match=message):
        differences(path)


def test_every_listed_difference_is_shown_to_users() -> None:
    page = (DIFFERENCES.parent.parent / "docs" / "compatibility.md").read_text()
    missing = [d.test for d in differences() if d.test.split(":", 1)[1] not in page]
    assert missing == []
