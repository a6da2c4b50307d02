"""With excepthub's adapter and nothing registered, FastMCP answers as it does on its own with
`mask_error_details=True`: to the client (both protocol eras), to in-process callers, in its
traces and its log. Each test compares a server with the adapter to the same server without.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import mcp_types
import pydantic
import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import PromptError, ResourceError, ToolError
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.server.middleware.logging import LoggingMiddleware
from fastmcp.tools import Tool, ToolResult
from mcp import MCPError
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import excepthub_fastmcp
from excepthub import ExceptionMiddleware

pytestmark = pytest.mark.anyio

SECRET = "hunter2-do-not-leak"


@pytest.fixture
def anyio_backend() -> str:
    """FastMCP's client runs on asyncio only."""
    return "asyncio"


@pytest.fixture(params=["legacy", "auto"])
def era(request: pytest.FixtureRequest) -> str:
    """The client's `mode`: the handshake era, or the modern one."""
    return str(request.param)


@pytest.fixture(params=[True, False], ids=["adapter", "without"])
def adapter(request: pytest.FixtureRequest) -> bool:
    """The same server with excepthub's adapter (nothing registered), or without it."""
    return bool(request.param)


def upstream_429() -> Exception:
    request = httpx.Request("GET", "https://api.example.org/quota")
    response = httpx.Response(429, request=request, text=SECRET)
    return httpx.HTTPStatusError(f"429 {SECRET}", request=request, response=response)


def upstream_timeout() -> Exception:
    return httpx.ReadTimeout(f"read timed out: {SECRET}")


def server(
    fail: Any, *, adapter: bool, mask_error_details: bool = True, inner: Middleware | None = None
) -> FastMCP:
    """A server whose tool, resource and prompt raise `fail()`."""
    middleware: list[Middleware] = []
    if adapter:
        middleware.append(excepthub_fastmcp.middleware(ExceptionMiddleware()))
    if inner is not None:
        middleware.append(inner)
    mcp = FastMCP("svc", middleware=middleware, mask_error_details=mask_error_details)

    @mcp.tool
    def fetch(url: str) -> str:
        raise fail()

    @mcp.resource("svc://quota")
    def quota() -> str:
        raise fail()

    @mcp.prompt
    def summary() -> str:
        raise fail()

    return mcp


def text(result: mcp_types.CallToolResult) -> str:
    [block] = result.content
    assert isinstance(block, mcp_types.TextContent)
    return block.text


async def tool_answer(mcp: FastMCP, era: str) -> tuple[bool, str]:
    async with Client(mcp, mode=era) as client:
        result = await client.call_tool_mcp("fetch", {"url": "https://api.example.org"})
    return result.is_error, text(result)


async def resource_answer(mcp: FastMCP, era: str) -> tuple[int, str]:
    async with Client(mcp, mode=era) as client:
        with pytest.raises(MCPError) as raised:
            await client.read_resource_mcp("svc://quota")
    return raised.value.error.code, raised.value.error.message


# -- 1. FastMCP's safe answers for upstream errors -------------------------------------------


@pytest.mark.parametrize("mask_error_details", [True, False])
async def test_an_upstream_429_from_a_tool_keeps_fastmcps_rate_limit_answer(
    era: str, adapter: bool, mask_error_details: bool
) -> None:
    mcp = server(upstream_429, adapter=adapter, mask_error_details=mask_error_details)
    answer = await tool_answer(mcp, era)
    assert answer == (True, "Rate limited by upstream API, please retry later")


@pytest.mark.parametrize("mask_error_details", [True, False])
async def test_an_upstream_timeout_from_a_tool_keeps_fastmcps_retry_answer(
    era: str, adapter: bool, mask_error_details: bool
) -> None:
    mcp = server(upstream_timeout, adapter=adapter, mask_error_details=mask_error_details)
    answer = await tool_answer(mcp, era)
    assert answer == (True, "Upstream request timed out, please retry")


async def test_an_upstream_429_from_a_resource_keeps_fastmcps_rate_limit_answer(
    era: str, adapter: bool
) -> None:
    answer = await resource_answer(server(upstream_429, adapter=adapter), era)
    assert answer == (-32603, "Rate limited by upstream API, please retry later")


async def test_an_upstream_timeout_from_a_resource_keeps_fastmcps_retry_answer(
    era: str, adapter: bool
) -> None:
    answer = await resource_answer(server(upstream_timeout, adapter=adapter), era)
    assert answer == (-32603, "Upstream request timed out, please retry")


async def test_an_unmasked_server_answers_as_fastmcp_answers_when_masking(era: str) -> None:
    def fail() -> Exception:
        return ValueError(SECRET)

    masked = await tool_answer(server(fail, adapter=False, mask_error_details=True), era)
    with_adapter = await tool_answer(server(fail, adapter=True, mask_error_details=False), era)
    assert with_adapter == masked == (True, "Error calling tool 'fetch'")


# -- 2. in-process callers get FastMCP's own errors -------------------------------------------


async def test_call_tool_in_process_raises_fastmcps_masked_tool_error(adapter: bool) -> None:
    mcp = server(lambda: LookupError(SECRET), adapter=adapter)
    with pytest.raises(ToolError) as raised:
        await mcp.call_tool("fetch", {"url": "x"})
    assert str(raised.value) == "Error calling tool 'fetch'"
    assert isinstance(raised.value.__cause__, LookupError)


async def test_read_resource_in_process_raises_fastmcps_resource_error(adapter: bool) -> None:
    mcp = server(lambda: LookupError(SECRET), adapter=adapter)
    with pytest.raises(ResourceError) as raised:
        await mcp.read_resource("svc://quota")
    assert str(raised.value) == "Error reading resource 'svc://quota'"
    assert isinstance(raised.value.__cause__, LookupError)


async def test_render_prompt_in_process_raises_a_prompt_error() -> None:
    mcp = server(lambda: LookupError(SECRET), adapter=True)
    with pytest.raises(PromptError) as raised:
        await mcp.render_prompt("summary")
    assert str(raised.value) == "Error rendering prompt 'summary'"  # FastMCP's leaks SECRET
    assert isinstance(raised.value.__cause__, LookupError)


async def test_a_handled_error_in_process_raises_the_same_masked_tool_error() -> None:
    seen: list[BaseException] = []
    exc = ExceptionMiddleware(handlers={LookupError: seen.append})
    mcp = FastMCP("svc", middleware=[excepthub_fastmcp.middleware(exc)])

    @mcp.tool
    def fetch(url: str) -> str:
        raise LookupError(SECRET)

    with pytest.raises(ToolError, match=r"^Error calling tool 'fetch'$"):
        await mcp.call_tool("fetch", {"url": "x"})
    assert len(seen) == 1


async def test_what_another_middleware_raises_reaches_an_in_process_caller_unchanged(
    adapter: bool,
) -> None:
    boom = RuntimeError(SECRET)
    mcp = server(lambda: ValueError(), adapter=adapter, inner=Raising(boom))
    with pytest.raises(RuntimeError) as raised:
        await mcp.call_tool("fetch", {"url": "x"})
    assert raised.value is boom


class Raising(Middleware):
    """A middleware inside excepthub's that fails every tool call."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def on_call_tool(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        raise self.error


# -- 3. tracing -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """FastMCP's spans, in memory (the tracer provider can be set once per process)."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


def server_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    [span] = [
        s
        for s in exporter.get_finished_spans()
        if s.kind is SpanKind.SERVER and s.name.startswith("tools/call")
    ]
    return span


async def traced(mcp: FastMCP, exporter: InMemorySpanExporter, era: str) -> ReadableSpan:
    exporter.clear()
    async with Client(mcp, mode=era) as client:
        with contextlib.suppress(MCPError):  # the handshake era's masked answer
            await client.call_tool_mcp("fetch", {"url": "x"})
    return server_span(exporter)


async def test_the_span_of_a_failing_tool_ends_as_fastmcp_ends_it(
    spans: InMemorySpanExporter, era: str
) -> None:
    without = await traced(server(lambda: ValueError(SECRET), adapter=False), spans, era)
    span = await traced(server(lambda: ValueError(SECRET), adapter=True), spans, era)
    assert span.status.status_code is without.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert without.attributes is not None
    assert span.attributes["error.type"] == without.attributes["error.type"] == "tool_error"


async def test_the_span_records_what_another_middleware_raises(
    spans: InMemorySpanExporter,
) -> None:
    inner = Raising(RuntimeError(SECRET))
    without = await traced(server(ValueError, adapter=False, inner=inner), spans, "auto")
    span = await traced(server(ValueError, adapter=True, inner=inner), spans, "auto")
    assert span.status.status_code is without.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert without.attributes is not None
    assert span.attributes["error.type"] == without.attributes["error.type"] == "RuntimeError"


async def test_the_span_ends_in_error_when_the_handshake_era_answer_is_masked(
    spans: InMemorySpanExporter,
) -> None:
    inner = Raising(RuntimeError(SECRET))
    span = await traced(server(ValueError, adapter=True, inner=inner), spans, "legacy")
    assert span.status.status_code is StatusCode.ERROR
    assert SECRET not in (span.status.description or "")


async def test_the_handshake_era_gets_the_modern_masked_answer_for_another_middlewares_error(
    era: str,
) -> None:
    mcp = server(ValueError, adapter=True, inner=Raising(RuntimeError(SECRET)))
    async with Client(mcp, mode=era) as client:
        with pytest.raises(MCPError) as raised:
            await client.call_tool_mcp("fetch", {"url": "x"})
    assert (raised.value.error.code, raised.value.error.message) == (
        -32603,
        "Internal server error",
    )


# -- 4. a raw pydantic error from a custom tool ------------------------------------------------


class Payload(pydantic.BaseModel):
    token: int


class RawValidationTool(Tool):
    """A custom tool that validates its arguments itself, raising pydantic's error."""

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        Payload.model_validate(arguments)
        return ToolResult(content="ok")


async def test_a_raw_pydantic_error_from_a_custom_tool_is_invalid_params(
    era: str, adapter: bool
) -> None:
    middleware = [excepthub_fastmcp.middleware(ExceptionMiddleware())] if adapter else []
    mcp = FastMCP("svc", middleware=middleware)
    mcp.add_tool(RawValidationTool(name="submit", parameters={"type": "object"}))
    async with Client(mcp, mode=era) as client:
        with pytest.raises(MCPError) as raised:
            await client.call_tool_mcp("submit", {"token": SECRET})
    assert (raised.value.error.code, raised.value.error.message) == (
        -32602,
        "Invalid request parameters",
    )
    assert SECRET not in raised.value.error.model_dump_json()


# -- 5. the tool found through FastMCP's public API --------------------------------------------


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # the first value misfits
async def test_a_fallback_is_converted_by_the_tool_registered_now(era: str) -> None:
    class Stock(pydantic.BaseModel):
        sku: str
        count: int

    exc = ExceptionMiddleware(publish_handlers={LookupError: lambda error: {"sku": "-"}})
    mcp = FastMCP("svc", middleware=[excepthub_fastmcp.middleware(exc)])

    @mcp.tool(name="stock")
    def stock_count(sku: str) -> int:
        raise LookupError(sku)

    async with Client(mcp, mode=era) as client:
        before = await client.call_tool_mcp("stock", {"sku": "a"})
        mcp.local_provider.remove_tool("stock")

        @mcp.tool(name="stock")
        def stock_record(sku: str) -> dict[str, str]:
            raise LookupError(sku)

        after = await client.call_tool_mcp("stock", {"sku": "a"})
    assert before.is_error  # {"sku": "-"} does not fit an int result: masked
    assert (after.is_error, after.structured_content) == (False, {"sku": "-"})


# -- log records: once, in FastMCP's order -----------------------------------------------------


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record FastMCP writes (its logger does not propagate to the root)."""
    logger = logging.getLogger("fastmcp")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="fastmcp")
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


async def test_an_unhandled_error_is_logged_as_fastmcp_logs_it_in_its_order(
    logs: pytest.LogCaptureFixture,
) -> None:
    async def run(adapter: bool) -> list[tuple[str, int]]:
        logs.clear()
        mcp = server(lambda: ValueError(SECRET), adapter=adapter, inner=LoggingMiddleware())
        await tool_answer(mcp, "auto")
        return [(r.name, r.levelno) for r in logs.records if r.levelno >= logging.WARNING]

    without = await run(False)
    assert await run(True) == without
    assert without == [
        ("fastmcp.server.server", logging.ERROR),
        ("fastmcp.middleware.logging", logging.ERROR),
    ]
