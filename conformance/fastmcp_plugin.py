"""A pytest plugin for FastMCP's own tests: in mode "injected", every `FastMCP` server they build
gets excepthub's adapter as its outermost middleware, with nothing registered.

The rig patches FastMCP's constructor (the product never does): a server built anywhere in the
tests, by a fixture, a helper or FastMCP itself (mounted and proxy servers), is covered.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import pytest

MODE = os.environ.get("EXCEPTHUB_CONFORMANCE_MODE", "unchanged")


def pytest_configure(config: pytest.Config) -> None:
    if MODE == "unchanged":
        return
    if MODE != "injected":
        raise pytest.UsageError(f"conformance.fastmcp_plugin: no mode {MODE!r} for FastMCP")
    from fastmcp import FastMCP

    import excepthub_fastmcp
    from excepthub import ExceptionMiddleware

    built = FastMCP.__init__

    @functools.wraps(built)
    def with_excepthub(self: FastMCP, *args: Any, **kwargs: Any) -> None:
        built(self, *args, **kwargs)
        self.middleware.insert(0, excepthub_fastmcp.middleware(ExceptionMiddleware()))

    FastMCP.__init__ = with_excepthub  # type: ignore[method-assign]
