"""FastAPI and Starlette: their own exception-related tests, with excepthub's adapter injected.

Modes: `unchanged`; `injected` (excepthub's middleware first in every app's middleware, nothing
registered); `moved` (excepthub's middleware last, and the tests' own class handlers,
`@app.exception_handler(SomeError)`, moved into excepthub unchanged with
`add_handler(cls, publish=True)`). See `fastapi_plugin`.
"""

from __future__ import annotations

SUITES: dict[str, list[str]] = {
    "fastapi": [
        "tests/test_exception_handlers.py",
        "tests/test_custom_middleware_exception.py",
        "tests/test_starlette_exception.py",
        "tests/test_dependency_after_yield_raise.py",
        "tests/test_dependency_after_yield_streaming.py",
        "tests/test_dependency_after_yield_websockets.py",
        "tests/test_dependency_yield_except_httpexception.py",
        "tests/test_dependency_contextmanager.py",
        "tests/test_validate_response.py",
        "tests/test_response_model_invalid.py",
        "tests/test_route_handler_wrapping.py",
        "tests/test_request_body_limits.py",
        "tests/test_ws_router.py",
        "tests/test_dependency_yield_scope_websockets.py",
        "tests/test_security_websockets.py",
        "tests/test_validation_error_context.py",
        "tests/test_multi_body_errors.py",
        "tests/test_stream_json_validation_error.py",
        "tests/test_telemetry/test_exceptions.py",
        "tests/test_telemetry/test_background.py",
        # needs logfire and the OpenTelemetry contrib instrumentation, which excepthub does not use
        "--deselect=tests/test_telemetry/test_background.py::test_background_task_integrations",
        "tests/test_tutorial/test_handling_errors",
    ],
    "starlette": [
        "tests/test_exceptions.py",
        "tests/middleware/test_errors.py",
        "tests/middleware/test_body_limit.py",
        "tests/test_background.py",
        "tests/test_websockets.py",
        "tests/test_applications.py",
    ],
}

MODES: tuple[str, ...] = ("unchanged", "injected", "moved")

PLUGIN = "conformance.fastapi_plugin"

# their suites run on anyio's plugin; pytest-asyncio (FastMCP's suite needs it) stays out
PYTEST_ARGS: list[str] = ["-o", "addopts=", "-p", "no:cacheprovider", "-p", "no:asyncio", "-q"]
