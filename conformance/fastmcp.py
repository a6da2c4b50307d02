"""FastMCP's own tests about tool, resource and prompt errors, masking, `isError` results,
upstream HTTP errors, tracing, `ErrorHandlingMiddleware` and `RetryMiddleware`."""

from __future__ import annotations

SUITES: dict[str, list[str]] = {
    "fastmcp": [
        "tests/test_exceptions.py",
        "tests/client/client/test_error_handling.py",
        "tests/server/middleware/test_error_handling.py",
        "tests/server/test_legacy_httpx_errors.py",
        "tests/server/providers/openapi/test_http_errors.py",
        "tests/server/test_input_validation.py",
        "tests/server/test_protocol_eras.py",
        "tests/server/telemetry/test_server_tracing.py",
        "tests/server/mount/test_mount.py",
        "tests/tools/tool/test_results.py",
        "tests/prompts/test_prompt.py",
        "tests/resources/test_resources.py",
        "tests/server/middleware/test_middleware.py",
        "tests/server/middleware/test_middleware_nested.py",
        "tests/server/middleware/test_tool_injection.py",
        "tests/server/middleware/test_logging.py",
        "tests/server/test_logging.py",
        "tests/server/providers/proxy/test_proxy_server.py",
        "tests/server/telemetry",
        "tests/tools/test_tool_timeout.py",
    ],
}
MODES: tuple[str, ...] = ("unchanged", "injected")
PLUGIN = "conformance.fastmcp_plugin"
# FastMCP's own options, less its `pythonpath` (the sdist's copy of the package: the installed
# FastMCP is the one under test) and its coverage and parallel runs
PYTEST_ARGS = [
    "-o",
    "addopts=--inline-snapshot=disable",
    "-o",
    "pythonpath=",
    "-p",
    "no:cacheprovider",
    "-q",
]
