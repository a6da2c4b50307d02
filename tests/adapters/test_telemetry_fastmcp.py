"""FastMCP's own tracing with excepthub in place, and excepthub's hooks on FastMCP's spans,
through FastMCP's `Client` (in memory and over streamable HTTP on uvicorn), measured with
opentelemetry-sdk's in-memory span exporter and with Sentry's MCP integration enabled.

An error excepthub answers with a masked result or MCP error reads as FastMCP's own masked
answer; an error no handler takes, exactly as without excepthub.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from mcp import MCPError
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import excepthub.otel
import excepthub.sentry
import excepthub_fastmcp
from excepthub import ExceptionMiddleware

from ._servers import uvicorn_on_loopback
from ._telemetry import InMemory, exception_types, only_in_child, run_in_child, sentry

pytestmark = pytest.mark.anyio

SECRET = "hunter2-do-not-leak"


class Declined(Exception):
    """An error no framework knows."""


@pytest.fixture
def anyio_backend() -> str:
    """FastMCP's client runs on asyncio only."""
    return "asyncio"


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """FastMCP's spans, in memory: FastMCP traces with the global tracer provider, which can be
    set once per process (other test modules add their exporter to the same one)."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@pytest.fixture
def otel() -> Iterator[InMemory]:
    telemetry = InMemory()
    yield telemetry
    telemetry.shutdown()


class Raising(Middleware):
    """A middleware inside excepthub's that fails every tool call."""

    async def on_call_tool(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        raise Declined(SECRET)


def server(exc: ExceptionMiddleware | None, *, inner: Middleware | None = None) -> FastMCP:
    """A server whose tool and resource raise `Declined`; with excepthub's adapter or not."""
    middleware: list[Middleware] = []
    if exc is not None:
        middleware.append(excepthub_fastmcp.middleware(exc))
    if inner is not None:
        middleware.append(inner)
    mcp = FastMCP("svc", middleware=middleware, mask_error_details=True)

    @mcp.tool
    def charge(order: str) -> str:
        raise Declined(SECRET)

    @mcp.resource("svc://balance")
    def balance() -> str:
        raise Declined(SECRET)

    return mcp


async def call(target: Any, method: str, exporter: InMemorySpanExporter) -> ReadableSpan:
    """Call the tool (`tools/call`) or read the resource (`resources/read`); FastMCP's server
    span of that request."""
    exporter.clear()
    async with Client(target) as client:
        with contextlib.suppress(MCPError):  # resources fail with an MCP error
            if method == "tools/call":
                await client.call_tool_mcp("charge", {"order": "o-1"})
            else:
                await client.read_resource_mcp("svc://balance")
    [span] = [
        s
        for s in exporter.get_finished_spans()
        if s.kind is SpanKind.SERVER and s.name.startswith(method)
    ]
    return span


def read(span: ReadableSpan) -> tuple[Any, ...]:
    """What an operator reads off a server span: `error.type`, status, its exception events."""
    attributes = span.attributes or {}
    events = [
        (e.attributes or {}).get("exception.type")
        for e in span.events
        if e.name == "exception" and "excepthub.outcome" not in (e.attributes or {})
    ]
    return attributes.get("error.type"), span.status.status_code.name, events


def side_effect(error: Declined) -> None:
    return None


@pytest.mark.parametrize("method", ["tools/call", "resources/read"])
async def test_an_error_excepthub_answers_masked_reads_as_fastmcps_masked_answer(
    spans: InMemorySpanExporter, method: str
) -> None:
    native = read(await call(server(None), method, spans))
    handled = read(await call(server(ExceptionMiddleware({Declined: side_effect})), method, spans))

    assert handled == native
    assert native[1] == "ERROR"


@pytest.mark.parametrize(
    "handlers",
    [{Declined: side_effect}, {Declined: lambda error: 1 / 0}],
    ids=["handled", "failed"],
)
async def test_another_middlewares_error_answered_masked_ends_the_span_as_unanswered(
    spans: InMemorySpanExporter, handlers: dict[type[Exception], Any]
) -> None:
    """Natively FastMCP's span records the error escaping to it; excepthub answers a masked
    `isError` result instead, and records the error on the span as FastMCP would."""
    error_type, status, events = read(
        await call(server(None, inner=Raising()), "tools/call", spans)
    )
    hub = server(ExceptionMiddleware(handlers), inner=Raising())
    answered = read(await call(hub, "tools/call", spans))
    # the same reading; the native span has the event twice (its context manager records too)
    assert answered == (error_type, status, sorted(set(events)))
    assert (error_type, status) == ("Declined", "ERROR")


@pytest.mark.parametrize("method", ["tools/call", "resources/read"])
async def test_an_error_no_handler_takes_reads_exactly_as_without_excepthub(
    spans: InMemorySpanExporter, method: str
) -> None:
    native = read(await call(server(None), method, spans))
    hub = read(await call(server(ExceptionMiddleware({KeyError: print})), method, spans))
    assert hub == native


async def test_over_streamable_http_too(spans: InMemorySpanExporter) -> None:
    found = []
    for exc in (None, ExceptionMiddleware({Declined: side_effect})):
        app = server(exc).http_app()
        with uvicorn_on_loopback(app, access_log=False) as port:
            found.append(read(await call(f"http://127.0.0.1:{port}/mcp", "tools/call", spans)))
    assert found[0] == found[1] == ("tool_error", "ERROR", ["fastmcp.exceptions.ToolError"])


async def test_the_otel_hook_puts_its_event_on_fastmcps_server_span(
    spans: InMemorySpanExporter, otel: InMemory
) -> None:
    hook = excepthub.otel.hook(meter_provider=otel.meter_provider)
    exc = ExceptionMiddleware(handlers={Declined: side_effect}, on_error=[hook])

    span = await call(server(exc), "tools/call", spans)

    [event] = [
        dict(e.attributes or {})
        for e in span.events
        if e.name == "exception" and "excepthub.outcome" in (e.attributes or {})
    ]
    assert event["exception.type"] == f"{__name__}.Declined"
    assert (event["excepthub.outcome"], event["excepthub.framework"]) == ("handled", "fastmcp")
    assert event["excepthub.correlation_id"]  # the MCP request id
    assert SECRET not in str(event)
    [count] = otel.points(excepthub.otel.COUNTER)
    assert dict(count.attributes or {})["excepthub.framework"] == "fastmcp"


@only_in_child
@pytest.mark.parametrize(
    ("handlers", "inner", "expected"),
    [
        ({}, Raising(), [(["Declined"], "unhandled")]),
        # FastMCP logs it before excepthub sees it: its event, once, not excepthub's too
        ({}, None, [(["Declined"], None)]),
        ({Declined: side_effect}, Raising(), []),
        ({Declined: side_effect}, None, []),
        ({Declined: lambda error: 1 / 0}, None, [(["Declined", "ZeroDivisionError"], "failed")]),
    ],
    ids=[
        "unhandled in a middleware",
        "unhandled in the tool",
        "handled in a middleware",
        "handled in the tool",
        "failed",
    ],
)
async def test_sentry_captures_a_failure_once_alongside_its_mcp_integration(
    spans: InMemorySpanExporter,
    handlers: dict[type[Exception], Any],
    inner: Middleware | None,
    expected: list[Any],
) -> None:
    exc = ExceptionMiddleware(handlers=handlers, on_error=[excepthub.sentry.hook()])
    with sentry() as captured:  # Sentry's MCP and logging integrations: enabled as installed
        await call(server(exc, inner=inner), "tools/call", spans)

    found = [
        (exception_types(e), e.get("tags", {}).get("excepthub.outcome")) for e in captured.events
    ]
    assert found == expected
    assert all(
        e["tags"]["excepthub.framework"] == "fastmcp" for e in captured.events if "tags" in e
    )


def test_sentry_with_its_fastmcp_integrations_in_a_process_of_its_own() -> None:
    """Sentry's MCP integration patches classes for the rest of the process: the Sentry
    tests above run in a pytest process of their own."""
    run_in_child(__file__, "sentry_captures")
