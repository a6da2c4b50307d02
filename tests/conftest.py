"""Shared fixtures: both anyio backends for the core, and the real services on loopback."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import pytest

SERVICES = {
    "redis": ("127.0.0.1", 6379),
    "rabbitmq": ("127.0.0.1", 5672),
    "nats": ("127.0.0.1", 4222),
    "mqtt": ("127.0.0.1", 1883),
}
REQUIRE_SERVICES = os.environ.get("EXCEPTHUB_REQUIRE_SERVICES") == "1"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every `@pytest.mark.anyio` test runs on asyncio and on trio."""
    return str(request.param)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def require_service() -> Callable[[str], tuple[str, int]]:
    """`require_service("redis")` -> (host, port), or skip with a reason where it does not run.

    CI sets EXCEPTHUB_REQUIRE_SERVICES=1, which turns that skip into a failure.
    """

    def require(name: str) -> tuple[str, int]:
        host, port = SERVICES[name]
        if not _reachable(host, port):
            reason = f"{name} is not running on {host}:{port}"
            if REQUIRE_SERVICES:
                pytest.fail(f"{reason}, and EXCEPTHUB_REQUIRE_SERVICES=1 requires it")
            pytest.skip(reason)
        return host, port

    return require
