"""FastMCP: excepthub's middleware against FastMCP's own `ErrorHandlingMiddleware`, per tool call.

Servers with the same async tools: `ErrorHandlingMiddleware` (the baseline; its one
`error_callback` calls the same handler functions as ours, picked by the exception behind
FastMCP's `ToolError`), `excepthub_fastmcp.middleware(registry)`, and, for the rows "against
hand-written", a hand-written `Middleware` that catches FastMCP's `ToolError` and answers what
excepthub answers (the masked `isError` result; the fallback value converted by the tool, as
FastMCP converts a return value): the least code that does the same work. No floor column: a
middleware's few µs are within the noise of a ~300 µs FastMCP tool call.
Tool calls go through `FastMCP.call_tool` (the whole middleware chain, the least noise), and
through the in-memory `fastmcp.Client` (the MCP protocol, both sessions in this process).

What each side answers differs, by design: on an error `ErrorHandlingMiddleware` raises an MCP
error (-32603, the exception's text in it) and cannot return a fallback value (its callback's
value is dropped); excepthub answers a tool result. The unit of work is the same: one failed
tool call, its handler run, an answer for the client.

Logging is off: the registry has `logger=None`, the baseline gets a logger that is off, and
FastMCP's and the MCP SDK's loggers are raised above CRITICAL, so that FastMCP's "Error calling
tool" record with its traceback is never built, on any side. The shared handlers are sync
(`ErrorHandlingMiddleware` calls its callback synchronously), so the registry calls them
inline, on the event loop, as FastMCP does.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.server import create_proxy
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.server.middleware.error_handling import ErrorHandlingMiddleware
from fastmcp.tools import ToolResult
from mcp import MCPError
from mcp_types import TextContent

import excepthub
import excepthub_fastmcp

from ._timing import Case, Work

GROUP = "fastmcp"
BASELINE = "ErrorHandlingMiddleware"
QUIET = logging.CRITICAL + 1


class RateLimited(Exception):
    pass


class UpstreamDown(ConnectionError):
    pass


_SIDE_EFFECTS = itertools.count()  # what a side-effect handler does: cheap, no memory growth


def on_error(error: Exception, context: Any = None) -> None:
    """Our side-effect handler, and the baseline's `error_callback(error, context)`."""
    next(_SIDE_EFFECTS)


def from_cache(error: Exception, context: Any = None) -> str:
    """Our fallback handler."""
    return "cached: sunny"


def callback(error: Exception, context: Any = None) -> None:
    """The baseline's one `error_callback`: the same handlers, dispatched by hand on the
    exception behind FastMCP's `ToolError` (the value of `from_cache` has nowhere to go)."""
    cause = error.__cause__ if isinstance(error.__cause__, Exception) else error
    if isinstance(cause, RateLimited):
        from_cache(cause, context)
    else:
        on_error(cause, context)


# What a client learns (see `_summary`)
_OK = (False, ["Lyon: sunny"])
_MASKED = (True, ["Error calling tool 'upstream_down'"])
_CACHED = (False, ["cached: sunny"])
_PROTOCOL_ERROR = ("MCP error", -32603)


class HandWritten(Middleware):
    """The floor for the error paths: what excepthub answers, written by hand for these tools."""

    async def on_call_tool(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        try:
            return await call_next(context)
        except ToolError as wrapper:
            error = wrapper.__cause__
            if isinstance(error, RateLimited):
                value = from_cache(error, context)
                assert context.fastmcp_context is not None
                tool = await context.fastmcp_context.fastmcp.get_tool(context.message.name)
                assert tool is not None
                return tool.convert_result(value)
            if isinstance(error, UpstreamDown):
                on_error(error, context)
                text = f"Error calling tool {context.message.name!r}"
                return ToolResult(content=[TextContent(type="text", text=text)], is_error=True)
            raise


def _server(name: str, middleware: list[Middleware]) -> FastMCP:
    mcp = FastMCP(name, middleware=middleware)

    @mcp.tool
    async def forecast(city: str) -> str:
        return f"{city}: sunny"

    @mcp.tool
    async def rate_limited(city: str) -> str:
        raise RateLimited("upstream quota 'prod-key-7' exhausted")

    @mcp.tool
    async def upstream_down(city: str) -> str:
        raise UpstreamDown("weather-api.internal:8443 refused the connection")

    return mcp


def _quiet() -> logging.Logger:
    """FastMCP's and the SDK's loggers off; the logger handed to the baseline, off too."""
    for name in ("fastmcp", "mcp", "mcp_types"):
        logging.getLogger(name).setLevel(QUIET)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("fastmcp.", "mcp.")):  # some set a level of their own
            logging.getLogger(name).setLevel(QUIET)
    quiet = logging.getLogger("benchmarks.fastmcp.baseline")
    quiet.setLevel(QUIET)
    return quiet


def _summary(result: Any) -> object:
    """What a client learns: an MCP error's code, or the result's error flag and texts."""
    is_error = getattr(result, "is_error", None)
    if is_error is None:
        is_error = result.isError  # the wire type, from the client
    return (bool(is_error), [getattr(block, "text", None) for block in result.content])


def called(server: FastMCP, tool: str) -> Work:
    """One tool call through `FastMCP.call_tool`: the middleware chain, the tool, conversion."""

    async def one() -> object:
        try:
            result = await server.call_tool(tool, {"city": "Lyon"})
        except MCPError as error:
            return ("MCP error", error.code)
        except ToolError as error:  # in process, FastMCP's answer: the client's isError result
            return (True, [str(error)])
        return _summary(result)

    return one


def cases() -> list[Case]:
    quiet = _quiet()
    registry = excepthub.ExceptionMiddleware(logger=None, inline=True)
    registry.add_handler(UpstreamDown)(on_error)
    registry.add_handler(RateLimited, publish=True)(from_cache)
    servers = {
        "baseline": _server(
            "baseline", [ErrorHandlingMiddleware(logger=quiet, error_callback=callback)]
        ),
        "ours": _server("excepthub", [excepthub_fastmcp.middleware(registry)]),
        "hand-written": _server("hand-written", [HandWritten()]),
    }

    def direct(
        name: str,
        tool: str,
        expected: object,
        against: str = "baseline",
        target: float | None = None,
    ) -> Case:
        baseline, ours = called(servers[against], tool), called(servers["ours"], tool)
        answers = {"baseline": _PROTOCOL_ERROR if expected != _OK else _OK, "ours": expected}
        if against != "baseline":
            answers["baseline"] = expected
        return Case(
            GROUP,
            f"{name} (call_tool)" + ("" if against == "baseline" else f", against {against}"),
            BASELINE if against == "baseline" else f"{against} middleware",
            baseline,
            ours,
            batch=60,
            setup=_answers({"baseline": baseline, "ours": ours}, answers),
            target=1.0 if against == "baseline" else target,
        )

    side_effect = "error, side-effect handler -> masked isError"
    fallback = "error, fallback value -> result"
    return [
        direct("happy path", "forecast", _OK),
        direct(side_effect, "upstream_down", _MASKED),
        direct(fallback, "rate_limited", _CACHED),
        direct(side_effect, "upstream_down", _MASKED, against="hand-written"),
        # the same answer through FastMCP's public API (which checks no output schema): no slower
        direct(fallback, "rate_limited", _CACHED, against="hand-written", target=1.0),
        *_over_client(servers),
        *_gateway(registry),
    ]


def _over_client(servers: dict[str, FastMCP]) -> list[Case]:
    """The same calls through the in-memory `Client`: a session per server, opened per case."""

    def case(name: str, tool: str, expected: dict[str, object], against: str = "baseline") -> Case:
        clients: dict[str, Client[Any]] = {}
        sides = {"baseline": against, "ours": "ours"}

        def call(side: str) -> Work:
            async def one() -> object:
                try:
                    result = await clients[side].call_tool_mcp(tool, {"city": "Lyon"})
                except MCPError as error:
                    return ("MCP error", error.code)
                return _summary(result)

            return one

        works = {side: call(side) for side in sides}
        check = _answers(works, expected)

        @asynccontextmanager
        async def connected() -> AsyncIterator[None]:
            async with AsyncExitStack() as stack:
                for side, server in sides.items():
                    clients[side] = await stack.enter_async_context(Client(servers[server]))
                async with check():
                    yield
            clients.clear()

        return Case(
            GROUP,
            f"{name} (in-memory Client)"
            + ("" if against == "baseline" else f", against {against}"),
            BASELINE if against == "baseline" else f"{against} middleware",
            works["baseline"],
            works["ours"],
            batch=15,
            setup=connected,
            target=1.0 if against == "baseline" else None,
        )

    side_effect = "error, side-effect handler -> masked isError"
    return [
        case("happy path", "forecast", {"baseline": _OK, "ours": _OK}),
        case(side_effect, "upstream_down", {"baseline": _PROTOCOL_ERROR, "ours": _MASKED}),
        # both sides answer the same isError result, which costs the session more than the
        # baseline's MCP error (stamped, serialized and parsed as a result): excepthub's own cost
        case(side_effect, "upstream_down", {"baseline": _MASKED, "ours": _MASKED}, "hand-written"),
    ]


def _gateway(registry: excepthub.ExceptionMiddleware) -> list[Case]:
    """A proxy relaying a successful upstream result, with and without excepthub: what the
    adapter adds to every relayed call is one look at the result's `is_error`. The upstream is
    an in-memory FastMCP server (each relayed call opens its own session to it, as a proxy does)."""
    backend = _server("backend", [])
    proxies = {
        "baseline": create_proxy(backend, name="plain proxy"),
        "ours": create_proxy(
            backend, name="excepthub proxy", middleware=[excepthub_fastmcp.middleware(registry)]
        ),
    }
    works = {side: called(proxy, "forecast") for side, proxy in proxies.items()}
    return [
        Case(
            GROUP,
            "gateway: upstream success relayed (call_tool on a proxy)",
            "plain proxy",
            works["baseline"],
            works["ours"],
            batch=10,
            setup=_answers(works, {"baseline": _OK, "ours": _OK}),
            target=1.0,
        )
    ]


def _answers(works: dict[str, Work], expected: dict[str, object]) -> Callable[[], Any]:
    """Before measuring: each side gives the answer expected of it."""

    @asynccontextmanager
    async def check() -> AsyncIterator[None]:
        for side, work in works.items():
            before = next(_SIDE_EFFECTS)
            got = await work()
            assert got == expected[side], f"{side}: {got!r} != {expected[side]!r}"
            if got == _MASKED or (got == _PROTOCOL_ERROR and expected["ours"] == _MASKED):
                assert next(_SIDE_EFFECTS) == before + 2, f"{side}: the handler did not run"
        yield

    return check
