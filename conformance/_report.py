"""A pytest plugin that writes each test's outcome to `$EXCEPTHUB_CONFORMANCE_REPORT` (JSON).

One outcome per node id: `failed` or `error` wins over a later phase's `passed`, so a test whose
teardown fails counts as failed, as pytest's own summary counts it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

_outcomes: dict[str, str] = {}
_RANK = {"passed": 0, "skipped": 1, "xfailed": 1, "xpassed": 2, "failed": 3, "error": 3}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call" and report.passed:
        _outcomes.setdefault(report.nodeid, "passed")
        return
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
    elif report.failed and report.when != "call":
        outcome = "error"
    else:
        outcome = report.outcome
    previous = _outcomes.get(report.nodeid)
    if previous is None or previous == "passed" or _RANK[outcome] > _RANK[previous]:
        _outcomes[report.nodeid] = outcome


def pytest_sessionfinish(session: pytest.Session, exitstatus: Any) -> None:
    path = os.environ.get("EXCEPTHUB_CONFORMANCE_REPORT")
    if path:
        with open(path, "w") as file:
            json.dump(_outcomes, file, indent=0, sort_keys=True)
