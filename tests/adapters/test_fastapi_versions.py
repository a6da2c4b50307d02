"""What the FastAPI adapter feature-detects, tested on both sides of the detection.

Starlette 1.6 added a request body limiter that signals "413 already sent" with a private
exception; the adapter lets that signal through where it exists and imports without it on
the older Starlette releases it supports. The matrix's lowest cells run the second branch.
"""

from __future__ import annotations

import importlib.util
import inspect

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

import excepthub_fastapi
from excepthub import ExceptionMiddleware

HAS_BODY_LIMITER = importlib.util.find_spec("starlette.middleware.body_limit") is not None
TAKES_MAX_BODY_SIZE = "max_body_size" in inspect.signature(FastAPI).parameters


@pytest.mark.skipif(not TAKES_MAX_BODY_SIZE, reason="FastAPI before max_body_size")
def test_a_body_over_the_limit_is_answered_413_not_taken_by_a_broad_handler() -> None:
    exc = ExceptionMiddleware(handlers={Exception: lambda error: None})
    app = FastAPI(max_body_size=8, middleware=[excepthub_fastapi.middleware(exc)])

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"read": len(await request.body())}

    response = TestClient(app).post("/upload", content=b"x" * 64)
    assert response.status_code == 413
    assert "Content Too Large" in response.text


@pytest.mark.skipif(not TAKES_MAX_BODY_SIZE, reason="FastAPI before max_body_size")
def test_the_limiters_response_sent_signal_reaches_the_limiter_untouched() -> None:
    exc = ExceptionMiddleware(handlers={Exception: lambda error: None})
    app = FastAPI(max_body_size=8, middleware=[excepthub_fastapi.middleware(exc)])

    @app.post("/ignore-body")
    async def ignore_body() -> dict[str, str]:
        return {"read": "nothing"}  # the limiter answers 413 when the response starts

    response = TestClient(app).post("/ignore-body", content=b"x" * 64)
    assert response.status_code == 413
    assert exc.get_error_stats() == {}


@pytest.mark.skipif(HAS_BODY_LIMITER, reason="this Starlette has the body limiter")
def test_without_starlettes_body_limiter_the_adapter_serves_all_the_same() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(LookupError, publish=True)
    async def not_found(error: LookupError) -> dict[str, str]:
        return {"detail": "missing"}

    app = FastAPI(middleware=[excepthub_fastapi.middleware(exc)])

    @app.get("/")
    async def root() -> None:
        raise KeyError("x")

    response = TestClient(app).get("/")
    assert response.json() == {"detail": "missing"}
