"""A pytest plugin for the FastAPI and Starlette suites: in every app the tests build, it puts
excepthub's middleware first (mode `injected`, nothing registered), or last with the tests' own
class handlers moved into excepthub with `add_handler(cls, publish=True)` (mode `moved`).

The rig patches `build_middleware_stack` of both application classes, for the length of the
build only: the tests see `app.user_middleware` and `app.exception_handlers` as they made them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
    websocket_request_validation_exception_handler,
)
from starlette.applications import Starlette
from starlette.types import ASGIApp

import excepthub
import excepthub_fastapi

MODE = os.environ.get("EXCEPTHUB_CONFORMANCE_MODE", "unchanged")

# FastAPI's own defaults are the framework's behaviour, not the tests' handlers: never moved.
_FRAMEWORK_HANDLERS = {
    http_exception_handler,
    request_validation_exception_handler,
    websocket_request_validation_exception_handler,
}


def _with_excepthub(build: Callable[[Any], ASGIApp]) -> Callable[[Any], ASGIApp]:
    def build_middleware_stack(app: Starlette) -> ASGIApp:
        registry = excepthub.ExceptionMiddleware()
        middleware, handlers = app.user_middleware, app.exception_handlers
        if MODE == "moved":
            kept: dict[Any, Any] = {}
            for key, handler in handlers.items():
                if isinstance(key, type) and handler not in _FRAMEWORK_HANDLERS:
                    registry.add_handler(key, publish=True)(handler)
                else:  # status-code keys have no class to move
                    kept[key] = handler
            app.exception_handlers = kept
        hub = excepthub_fastapi.middleware(registry)
        # first in `injected`, last (right above Starlette's ExceptionMiddleware, which it then
        # serves in place of) in `moved`: both positions the docs allow
        app.user_middleware = [hub, *middleware] if MODE == "injected" else [*middleware, hub]
        try:
            return build(app)
        finally:
            app.user_middleware, app.exception_handlers = middleware, handlers

    return build_middleware_stack


def pytest_configure(config: pytest.Config) -> None:
    if MODE not in ("unchanged", "injected", "moved"):
        raise pytest.UsageError(f"EXCEPTHUB_CONFORMANCE_MODE={MODE!r}: unchanged, injected, moved")
    if MODE == "unchanged":
        return
    for cls in (Starlette, FastAPI):
        cls.build_middleware_stack = _with_excepthub(  # type: ignore[method-assign, assignment]
            cls.__dict__["build_middleware_stack"]
        )
