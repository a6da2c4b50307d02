"""excepthub_fastmcp on a gateway: a FastMCP proxy in front of a real backend, both over HTTP.

The backend is a plain FastMCP server over streamable HTTP on 127.0.0.1; the proxy
(`create_proxy`, the adapter first in its middleware) is served the same way, behind the
recorder that keeps every byte it sends, and the front client talks to it in both protocol
eras. A secret sits in each kind of upstream failure: the text of an `isError` result, a JSON-RPC
error's message and data, the host name of an upstream that cannot be reached.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import httpx
import httpx2
import mcp_types
import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.server import create_proxy
from fastmcp.server.middleware import Middleware, MiddlewareContext
from fastmcp.server.providers import LocalProvider
from fastmcp.server.providers.proxy import ProxyClient, ProxyProvider
from fastmcp.tools import Tool, ToolResult
from fastmcp.utilities.versions import VersionSpec
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from mcp import MCPError

import excepthub_fastmcp
from excepthub import ExceptionMiddleware
from excepthub_fastmcp import (
    Denial,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamToolError,
    UpstreamUnavailable,
    deny,
)
from excepthub_fastmcp._gateway import may_be_upstream

from ._servers import Recorder, uvicorn_on_loopback

pytestmark = pytest.mark.anyio

SECRET = "hunter2-upstream-secret"
REJECTED_CODE = -32042


@pytest.fixture
def anyio_backend() -> str:
    """FastMCP's client runs on asyncio only."""
    return "asyncio"


@pytest.fixture(params=["legacy", "auto"])
def era(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- the backend: one component per kind of failure -------------------------------------------


class RejectUpstream(Middleware):
    """The backend answers every call named `rejected` with a JSON-RPC error."""

    async def __call__(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        message = context.message
        named = getattr(message, "name", None) or str(getattr(message, "uri", ""))
        if context.method in {"tools/call", "resources/read", "prompts/get"} and (
            "rejected" in named
        ):
            raise MCPError(REJECTED_CODE, f"rejected: {SECRET}", {"detail": SECRET})
        return await call_next(context)


def backend_server() -> FastMCP:
    backend = FastMCP("backend", middleware=[RejectUpstream()])

    @backend.tool
    def forecast(city: str) -> ToolResult:
        return ToolResult(
            content=[mcp_types.TextContent(type="text", text=f"{city}: sunny")],
            structured_content={"city": city, "sky": "sunny"},
            meta={"trace": "abc", "cost": 3},
        )

    @backend.tool
    def failing() -> int:
        raise ToolError(f"database says {SECRET}")

    @backend.tool
    def rejected() -> int:
        return 1

    @backend.resource("backend://rejected")
    def rejected_resource() -> str:
        return "never"

    @backend.resource("backend://rejected/{item}")
    def rejected_item(item: str) -> str:
        return item

    @backend.prompt(name="rejected")
    def rejected_prompt() -> str:
        return "never"

    return backend


@pytest.fixture(scope="module")
def backend_url() -> Iterator[str]:
    with uvicorn_on_loopback(backend_server().http_app(path="/mcp"), lifespan="on") as port:
        yield f"http://127.0.0.1:{port}/mcp"


UNREACHABLE = f"http://{SECRET}.invalid:9/mcp"


class Gateway:
    """A proxy served over HTTP, its registry, and what it sent."""

    def __init__(self, url: str, recorder: Recorder, exc: ExceptionMiddleware) -> None:
        self.url, self.recorder, self.exc = url, recorder, exc

    def wire(self) -> bytes:
        return self.recorder.wire()


def serve(target: str, exc: ExceptionMiddleware, **settings: Any) -> Any:
    proxy = create_proxy(target, middleware=[excepthub_fastmcp.middleware(exc)], **settings)
    recorder = Recorder(proxy.http_app(path="/mcp"))
    return recorder, uvicorn_on_loopback(recorder, lifespan="on")


@pytest.fixture
def gateway(backend_url: str) -> Iterator[Gateway]:
    exc = ExceptionMiddleware()
    recorder, running = serve(backend_url, exc)
    with running as port:
        yield Gateway(f"http://127.0.0.1:{port}/mcp", recorder, exc)


@pytest.fixture
def cut_off() -> Iterator[Gateway]:
    """A proxy whose upstream host does not resolve; it reports what listing it fails on."""
    exc = ExceptionMiddleware()
    recorder, running = serve(UNREACHABLE, exc, provider_error_strategy="raise")
    with running as port:
        yield Gateway(f"http://127.0.0.1:{port}/mcp", recorder, exc)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record from every thread, FastMCP's included (its logger does not propagate)."""
    fastmcp_logger = logging.getLogger("fastmcp")
    fastmcp_logger.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="fastmcp")
    try:
        yield caplog
    finally:
        fastmcp_logger.removeHandler(caplog.handler)


def telling(logs: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records at INFO or above that hold the secret, in their message or traceback (the
    transports' DEBUG records show the upstream hop's bytes, as they do without excepthub)."""
    formatter = logging.Formatter()
    return [
        r
        for r in logs.records
        if r.levelno >= logging.INFO
        and (
            SECRET in r.getMessage()
            or (r.exc_info and SECRET in formatter.formatException(r.exc_info))
        )
    ]


# -- each failure: how the client asks, what it gets with no handler ---------------------------

Ask = Callable[[Client[Any]], Awaitable[Any]]


def call_tool(name: str) -> Ask:
    return lambda client: client.call_tool_mcp(name, {})


def read_resource(uri: str) -> Ask:
    return lambda client: client.read_resource_mcp(uri)


def get_prompt(name: str) -> Ask:
    return lambda client: client.get_prompt_mcp(name, {})


# (ask, JSON-RPC method, what the front client gets: an isError text or an MCP error message)
FAILURES: dict[str, tuple[Ask, str, str]] = {
    "error result": (call_tool("failing"), "tools/call", "Error calling tool 'failing'"),
    "JSON-RPC error, tool": (call_tool("rejected"), "tools/call", "Error calling tool 'rejected'"),
    "JSON-RPC error, resource": (
        read_resource("backend://rejected"),
        "resources/read",
        "-32603 Error reading resource 'backend://rejected'",
    ),
    "JSON-RPC error, prompt": (
        get_prompt("rejected"),
        "prompts/get",
        "-32603 Error rendering prompt 'rejected'",
    ),
}
UNREACHABLE_FAILURES: dict[str, tuple[Ask, str, str]] = {
    "unreachable, tool": (call_tool("forecast"), "tools/call", "Error calling tool 'forecast'"),
    "unreachable, resource": (
        read_resource("backend://rejected"),
        "resources/read",
        "-32603 Error reading resource 'backend://rejected'",
    ),
    "unreachable, prompt": (
        get_prompt("rejected"),
        "prompts/get",
        "-32603 Error rendering prompt 'rejected'",
    ),
}


async def answer(client: Client[Any], ask: Ask) -> str:
    """What the front client is told: an isError result's text, or an MCP error's code and
    message."""
    try:
        result = await ask(client)
    except MCPError as error:
        return f"{error.code} {error.message}"
    assert result.is_error
    [block] = result.content
    return str(block.text)


async def sweep(
    gateway: Gateway, logs: pytest.LogCaptureFixture, era: str, failure: tuple[Ask, str, str]
) -> None:
    ask, method, masked = failure
    async with Client(gateway.url, mode=era) as client:
        assert await answer(client, ask) == masked
    assert SECRET.encode() not in gateway.wire()
    [record] = telling(logs)  # once, by excepthub, with the front request's id
    assert (record.name, record.excepthub_outcome) == ("excepthub", "unhandled")  # type: ignore[attr-defined]
    assert record.correlation_id == gateway.recorder.request_ids(method)[-1]  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", FAILURES)
async def test_no_byte_of_an_upstream_failure_reaches_the_front_client(
    gateway: Gateway, logs: pytest.LogCaptureFixture, era: str, kind: str
) -> None:
    await sweep(gateway, logs, era, FAILURES[kind])


@pytest.mark.parametrize("kind", UNREACHABLE_FAILURES)
async def test_no_byte_of_an_unreachable_upstream_reaches_the_front_client(
    cut_off: Gateway, logs: pytest.LogCaptureFixture, era: str, kind: str
) -> None:
    await sweep(cut_off, logs, era, UNREACHABLE_FAILURES[kind])


async def test_a_listing_an_unreachable_upstream_fails_is_a_masked_mcp_error(
    cut_off: Gateway, logs: pytest.LogCaptureFixture, era: str
) -> None:
    async with Client(cut_off.url, mode=era) as client:
        with pytest.raises(MCPError) as raised:
            await client.list_tools_mcp()
    # FastMCP's words for a dead upstream, without the failure's text
    assert (raised.value.code, raised.value.message) == (
        mcp_types.INTERNAL_ERROR,
        "Client failed to connect",
    )
    assert SECRET.encode() not in cut_off.wire()
    [record] = telling(logs)
    assert record.excepthub_exception == "excepthub_fastmcp.UpstreamUnavailable"  # type: ignore[attr-defined]


async def test_the_sweep_sees_the_secret_when_a_plain_proxy_relays_it(
    backend_url: str, era: str
) -> None:
    # without excepthub the proxy sends the upstream's text: the sweep above can fail
    recorder = Recorder(create_proxy(backend_url).http_app(path="/mcp"))
    with uvicorn_on_loopback(recorder, lifespan="on") as port:
        async with Client(f"http://127.0.0.1:{port}/mcp", mode=era) as client:
            result = await client.call_tool_mcp("failing", {})
    assert result.is_error
    assert SECRET.encode() in recorder.wire()


# -- handlers take them ------------------------------------------------------------------------


async def test_a_handler_sees_the_upstream_error_result_and_answers_for_it(
    gateway: Gateway, logs: pytest.LogCaptureFixture, era: str, backend_url: str
) -> None:
    seen: list[UpstreamToolError] = []

    @gateway.exc.add_handler(UpstreamToolError, publish=True)
    def upstream_failed(error: UpstreamToolError) -> Denial:
        seen.append(error)
        return deny(f"{error.name} is unavailable right now")

    async with Client(gateway.url, mode=era) as client:
        result = await client.call_tool_mcp("failing", {})
    assert result.is_error
    assert [block.text for block in result.content] == ["failing is unavailable right now"]
    [error] = seen
    assert (error.method, error.name) == ("tools/call", "failing")
    assert error.server is not None
    assert backend_url in error.server
    assert [block.text for block in error.content] == [f"database says {SECRET}"]
    assert SECRET in str(error)
    assert SECRET.encode() not in gateway.wire()
    [record] = [r for r in logs.records if r.name == "excepthub"]
    assert record.excepthub_outcome == "published"  # type: ignore[attr-defined]
    assert record.correlation_id == gateway.recorder.request_ids("tools/call")[-1]  # type: ignore[attr-defined]
    assert telling(logs) == []  # FastMCP's record of the relayed error was not written


async def test_a_handler_sees_the_upstream_json_rpc_error_with_its_code(
    gateway: Gateway, logs: pytest.LogCaptureFixture, era: str
) -> None:
    seen: list[UpstreamProtocolError] = []
    gateway.exc.add_handler(UpstreamProtocolError)(seen.append)

    async with Client(gateway.url, mode=era) as client:
        result = await client.call_tool_mcp("rejected", {})
        with pytest.raises(MCPError) as raised:
            await client.read_resource_mcp("backend://rejected")
    assert result.is_error
    assert result.content[0].text == "Error calling tool 'rejected'"
    assert raised.value.message == "Error reading resource 'backend://rejected'"
    assert [(e.method, e.name, e.code) for e in seen] == [
        ("tools/call", "rejected", REJECTED_CODE),
        ("resources/read", "backend://rejected", REJECTED_CODE),
    ]
    assert seen[0].upstream_message == f"rejected: {SECRET}"
    assert seen[0].data == {"detail": SECRET}
    assert isinstance(seen[0].__cause__, MCPError)
    assert SECRET.encode() not in gateway.wire()
    assert telling(logs) == []  # the handled records carry no upstream text; FastMCP's dropped


async def test_a_resource_of_an_upstream_template_is_relayed_too(
    gateway: Gateway, logs: pytest.LogCaptureFixture, era: str
) -> None:
    seen: list[UpstreamProtocolError] = []
    gateway.exc.add_handler(UpstreamProtocolError)(seen.append)

    async with Client(gateway.url, mode=era) as client:
        with pytest.raises(MCPError) as raised:
            await client.read_resource_mcp("backend://rejected/7")
    assert raised.value.message == "Error reading resource 'backend://rejected/7'"
    assert [(e.method, e.name, e.code) for e in seen] == [
        ("resources/read", "backend://rejected/7", REJECTED_CODE)
    ]
    assert SECRET.encode() not in gateway.wire()
    assert telling(logs) == []


async def test_one_handler_for_upstream_error_takes_every_kind(cut_off: Gateway, era: str) -> None:
    seen: list[UpstreamError] = []

    @cut_off.exc.add_handler(UpstreamError, publish=True)
    def upstream_failed(error: UpstreamError) -> Denial:
        seen.append(error)
        return deny("The weather service is unreachable; try again in a minute.")

    async with Client(cut_off.url, mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert result.content[0].text == "The weather service is unreachable; try again in a minute."
    # the modern era's server lists the tools first (for its header checks): that failed too
    assert all(isinstance(error, UpstreamUnavailable) for error in seen)
    error = seen[-1]
    assert isinstance(error, UpstreamUnavailable)
    assert (error.method, error.name) == ("tools/call", "forecast")
    assert error.server is not None
    assert SECRET in error.server
    assert error.reason
    assert SECRET not in result.model_dump_json()


async def test_an_upstream_that_goes_down_after_listing_is_unavailable(era: str) -> None:
    seen: list[UpstreamUnavailable] = []
    exc = ExceptionMiddleware(handlers={UpstreamUnavailable: seen.append})
    with uvicorn_on_loopback(backend_server().http_app(path="/mcp"), lifespan="on") as port:
        proxy = create_proxy(
            f"http://127.0.0.1:{port}/mcp", middleware=[excepthub_fastmcp.middleware(exc)]
        )
        async with Client(proxy, mode=era) as client:
            await client.list_tools()  # the proxy keeps the list: the call below finds the tool
    async with Client(proxy, mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert result.is_error
    assert result.content[0].text == "Error calling tool 'forecast'"
    [error] = seen
    assert (error.method, error.name) == ("tools/call", "forecast")


# -- what is not an upstream failure -----------------------------------------------------------


async def test_a_successful_upstream_result_passes_through_untouched(
    backend_url: str, era: str
) -> None:
    # one name: FastMCP 4.2 puts the proxy's name in the result's meta, a random one by default
    plain = create_proxy(backend_url, name="gateway")
    guarded = create_proxy(
        backend_url,
        name="gateway",
        middleware=[excepthub_fastmcp.middleware(ExceptionMiddleware())],
    )
    results = []
    for proxy in (plain, guarded):
        async with Client(proxy, mode=era) as client:
            results.append(await client.call_tool_mcp("forecast", {"city": "Oslo"}))
    assert results[1].structured_content == {"city": "Oslo", "sky": "sunny"}
    assert results[1].meta is not None
    assert results[1].meta["trace"] == "abc"
    assert results[1].model_dump() == results[0].model_dump()


async def test_a_local_tools_error_result_on_a_proxy_is_its_own_answer(
    backend_url: str, era: str
) -> None:
    seen: list[Exception] = []
    exc = ExceptionMiddleware(handlers={Exception: seen.append})
    proxy = create_proxy(backend_url, middleware=[excepthub_fastmcp.middleware(exc)])

    @proxy.tool
    def local() -> ToolResult:
        return ToolResult(
            content=[mcp_types.TextContent(type="text", text="told on purpose")], is_error=True
        )

    async with Client(proxy, mode=era) as client:
        result = await client.call_tool_mcp("local", {})
    assert result.is_error
    assert result.content[0].text == "told on purpose"
    assert seen == []


async def test_a_connection_failure_of_a_local_tool_on_a_proxy_is_its_own(
    backend_url: str, era: str, logs: pytest.LogCaptureFixture
) -> None:
    seen: list[Exception] = []
    exc = ExceptionMiddleware(handlers={UpstreamError: seen.append})
    proxy = create_proxy(backend_url, middleware=[excepthub_fastmcp.middleware(exc)])

    @proxy.tool
    def local() -> int:
        raise ConnectionRefusedError(f"local cache at {SECRET} refused")

    async with Client(proxy, mode=era) as client:
        result = await client.call_tool_mcp("local", {})
    assert result.content[0].text == "Error calling tool 'local'"
    assert seen == []
    [record] = telling(logs)  # no handler takes it: FastMCP logs it, as without excepthub
    assert (record.name, record.getMessage()) == (
        "fastmcp.server.server",
        "Error calling tool 'local'",
    )
    assert exc.get_error_stats() == {"ConnectionRefusedError": {"unhandled": 1}}


class CountingTools(LocalProvider):
    """Local tools that count their lookups, FastMCP's and the adapter's, in `seen`."""

    def __init__(self, seen: list[str]) -> None:
        super().__init__()
        self.seen = seen

    async def get_tool(self, name: str, version: VersionSpec | None = None) -> Tool | None:
        self.seen.append(name)
        return await super().get_tool(name, version)


class CountingUpstream(ProxyProvider):
    """An upstream's tools that count their lookups in `seen`."""

    def __init__(self, url: str, seen: list[str]) -> None:
        super().__init__(lambda: ProxyClient(url))
        self.seen = seen

    async def get_tool(self, name: str, version: VersionSpec | None = None) -> Tool | None:
        self.seen.append(name)
        return await super().get_tool(name, version)


def local_bug() -> int:
    raise ValueError("a bug")


def local_refused() -> int:
    raise ConnectionRefusedError("refused")


@pytest.mark.parametrize(
    ("tool", "looked_up"), [("forecast", False), ("local_bug", False), ("local_refused", True)]
)
async def test_the_adapter_looks_a_tool_up_only_for_an_error_an_upstream_failure_can_be(
    backend_url: str, era: str, tool: str, looked_up: bool
) -> None:
    # a proxied success: no lookup; a ValueError: none either; a connection failure: the
    # adapter looks the tool up, to tell a proxy's from the server's own
    lookups = {}
    for guarded in (False, True):
        seen: list[str] = []
        exc = ExceptionMiddleware(handlers={ValueError: lambda _: None, OSError: lambda _: None})
        server = FastMCP(
            "gateway", middleware=[excepthub_fastmcp.middleware(exc)] if guarded else []
        )
        server.add_provider(CountingUpstream(backend_url, seen))
        tools = CountingTools(seen)
        tools.add_tool(local_bug)
        tools.add_tool(local_refused)
        server.add_provider(tools)

        async with Client(server, mode=era) as client:
            seen.clear()
            await client.call_tool_mcp(tool, {"city": "Oslo"} if tool == "forecast" else {})
        lookups[guarded] = len(seen)
    assert lookups[False] > 0  # FastMCP's own: the count sees lookups
    assert (lookups[True] > lookups[False]) is looked_up


# -- gateway policy: a middleware denies before the call goes upstream -------------------------


class NotAllowed(Exception):
    """A tool outside the gateway's allow-list."""


class AllowList(Middleware):
    def __init__(self, *allowed: str) -> None:
        self.allowed = frozenset(allowed)

    async def on_call_tool(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        if context.message.name not in self.allowed:
            raise NotAllowed(context.message.name)
        return await call_next(context)


async def test_a_policy_denial_never_goes_upstream(
    gateway: Gateway, backend_url: str, era: str
) -> None:
    exc = ExceptionMiddleware()
    exc.add_handler(NotAllowed, publish=True)(
        lambda error: deny(f"{error} is not available through this gateway")
    )
    reached: list[str] = []

    class Counting(Middleware):
        async def on_call_tool(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
            reached.append(context.message.name)
            return await call_next(context)

    proxy = create_proxy(
        backend_url,
        middleware=[excepthub_fastmcp.middleware(exc), AllowList("forecast"), Counting()],
    )
    async with Client(proxy, mode=era) as client:
        denied = await client.call_tool_mcp("failing", {})
        allowed = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert denied.is_error
    assert denied.content[0].text == "failing is not available through this gateway"
    assert not allowed.is_error
    assert reached == ["forecast"]


# -- what an upstream failure arrives as: told without a lookup ---------------------------------


def caused(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


def status_error(module: Any) -> BaseException:
    request = module.Request("GET", "http://127.0.0.1:9/mcp")
    response = module.Response(503, request=request)
    error: BaseException = module.HTTPStatusError("503", request=request, response=response)
    return error


@pytest.mark.parametrize(
    "error",
    [
        MCPError(REJECTED_CODE, "rejected"),
        TimeoutError(),
        ConnectionRefusedError(),
        anyio.ClosedResourceError(),
        anyio.EndOfStream(),
        anyio.BrokenResourceError(),
        httpx2.ConnectError("refused"),
        httpx2.ReadTimeout("slow"),
        status_error(httpx2),
        httpx.ConnectError("refused"),  # an httpx of the older line, as FastMCP still tells it
        status_error(httpx),
        caused(RuntimeError("Client failed to connect"), httpx2.ConnectError("refused")),
    ],
    ids=repr,
)
def test_an_error_an_upstream_failure_arrives_as_is_looked_into(error: BaseException) -> None:
    assert may_be_upstream(error)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug"),
        RuntimeError("a bug"),
        KeyError("a bug"),
        caused(RuntimeError("a bug"), ValueError("a bug")),
        ToolError("told on purpose"),
    ],
    ids=repr,
)
def test_any_other_error_is_not(error: BaseException) -> None:
    assert not may_be_upstream(error)


# -- every way a server proxies ----------------------------------------------------------------


async def test_a_namespaced_proxy_provider_on_a_plain_server_is_a_gateway_too(
    backend_url: str, era: str
) -> None:
    seen: list[UpstreamError] = []
    exc = ExceptionMiddleware(handlers={UpstreamError: seen.append})
    server = FastMCP("gateway", middleware=[excepthub_fastmcp.middleware(exc)])
    server.add_provider(ProxyProvider(lambda: ProxyClient(backend_url)), namespace="weather")

    async with Client(server, mode=era) as client:
        failed = await client.call_tool_mcp("weather_failing", {})
        rejected = await client.call_tool_mcp("weather_rejected", {})
    assert [r.content[0].text for r in (failed, rejected)] == [
        "Error calling tool 'weather_failing'",
        "Error calling tool 'weather_rejected'",
    ]
    assert [(type(e), e.name, e.server) for e in seen] == [
        (UpstreamToolError, "weather_failing", None),  # which upstream: not told by a namespace
        (UpstreamProtocolError, "weather_rejected", None),
    ]


async def test_a_mounted_proxy_with_the_adapter_answers_for_its_upstream(
    backend_url: str, era: str
) -> None:
    seen: list[UpstreamError] = []
    exc = ExceptionMiddleware(handlers={UpstreamError: seen.append})
    main = FastMCP("main")
    main.mount(
        create_proxy(backend_url, middleware=[excepthub_fastmcp.middleware(exc)]),
        namespace="weather",
    )

    async with Client(main, mode=era) as client:
        result = await client.call_tool_mcp("weather_failing", {})
    assert result.is_error
    assert SECRET not in result.model_dump_json()
    assert [(type(e), e.name) for e in seen] == [(UpstreamToolError, "failing")]


async def test_an_mcp_error_of_a_local_tool_on_a_proxy_keeps_fastmcps_meaning(
    backend_url: str, era: str
) -> None:
    seen: list[Exception] = []
    exc = ExceptionMiddleware(handlers={UpstreamError: seen.append})
    proxy = create_proxy(backend_url, middleware=[excepthub_fastmcp.middleware(exc)])

    @proxy.tool
    def local() -> int:
        raise MCPError(REJECTED_CODE, "not from upstream")

    async with Client(proxy, mode=era) as client:
        result = await client.call_tool_mcp("local", {})
    assert result.is_error
    assert result.content[0].text == "Error calling tool 'local'"
    assert seen == []


class Refuses(Middleware):
    """A middleware after the adapter that answers every call and listing with an MCPError."""

    async def on_call_tool(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        raise MCPError(REJECTED_CODE, f"refused: {SECRET}")

    async def on_list_tools(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        raise MCPError(REJECTED_CODE, f"refused: {SECRET}")


async def test_an_mcp_error_for_a_proxied_tool_is_taken_for_the_upstreams(
    backend_url: str, era: str
) -> None:
    # told by the component the call targets, not by where the error was raised: a middleware
    # after the adapter that raises an MCPError for a proxied tool reads as its upstream's
    seen: list[UpstreamError] = []
    exc = ExceptionMiddleware(handlers={UpstreamError: seen.append})
    proxy = create_proxy(backend_url, middleware=[excepthub_fastmcp.middleware(exc), Refuses()])

    @proxy.tool
    def local() -> int:
        return 1

    async with Client(proxy, mode=era) as client:
        proxied = await client.call_tool_mcp("forecast", {"city": "Oslo"})
        with pytest.raises(MCPError) as own:
            await client.call_tool_mcp("local", {})
        with pytest.raises(MCPError) as listing:
            await client.list_tools_mcp()
    assert proxied.content[0].text == "Error calling tool 'forecast'"
    assert (own.value.code, own.value.message) == (REJECTED_CODE, f"refused: {SECRET}")  # as ever
    assert (listing.value.code, listing.value.message) == (
        mcp_types.INTERNAL_ERROR,
        "Internal server error",
    )
    assert [(type(e), e.method, e.name) for e in seen] == [
        (UpstreamProtocolError, "tools/call", "forecast"),
        (UpstreamProtocolError, "tools/list", None),
    ]


async def test_a_listing_mcp_error_on_a_server_that_proxies_nothing_keeps_fastmcps_meaning(
    era: str,
) -> None:
    seen: list[UpstreamError] = []
    exc = ExceptionMiddleware(handlers={UpstreamError: seen.append})
    server = FastMCP("plain", middleware=[excepthub_fastmcp.middleware(exc), Refuses()])

    async with Client(server, mode=era) as client:
        with pytest.raises(MCPError) as listing:
            await client.list_tools_mcp()
    assert (listing.value.code, listing.value.message) == (REJECTED_CODE, f"refused: {SECRET}")
    assert seen == []


async def test_a_parents_adapter_masks_a_mounted_proxys_failure_without_taking_it_for_upstream(
    backend_url: str, era: str
) -> None:
    # the parent finds FastMCP's wrapper of the mounted tool, not a ProxyTool: give the mounted
    # proxy the adapter to have its upstream failures as UpstreamError
    seen: list[Exception] = []
    exc = ExceptionMiddleware(handlers={UpstreamError: seen.append})
    main = FastMCP("main", middleware=[excepthub_fastmcp.middleware(exc)])
    main.mount(create_proxy(backend_url), namespace="weather")

    async with Client(main, mode=era) as client:
        result = await client.call_tool_mcp("weather_rejected", {})
    assert result.is_error
    assert result.content[0].text == "Error calling tool 'rejected'"  # the mounted proxy's words
    assert SECRET not in result.model_dump_json()
    assert seen == []


# -- for every upstream text and code ----------------------------------------------------------


def strings(value: Any) -> Iterator[str]:
    """Every string in a dumped MCP answer, keys included (`meta` names the servers: left out)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


class Echo(Middleware):
    """An in-memory backend's JSON-RPC error: the code and message the call asks for."""

    async def on_call_tool(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        arguments = context.message.arguments or {}
        if context.message.name == "rejected":
            raise MCPError(arguments["code"], arguments["text"])
        return await call_next(context)


def echoing_backend() -> FastMCP:
    backend = FastMCP("echo", middleware=[Echo()])

    @backend.tool
    def failing(text: str, code: int) -> int:
        raise ToolError(text)

    @backend.tool
    def rejected(text: str, code: int) -> int:
        return code

    return backend


@settings(max_examples=20, deadline=None)
@given(
    text=st.text(st.characters(exclude_categories=("Cs",)), min_size=12, max_size=60),
    code=st.integers(min_value=-31999, max_value=2**31 - 1),
)
def test_for_every_upstream_text_the_handler_sees_it_and_the_client_does_not(
    text: str, code: int
) -> None:
    seen: list[UpstreamError] = []
    exc = ExceptionMiddleware(handlers={UpstreamError: seen.append}, logger=None)
    proxy = create_proxy(echoing_backend(), middleware=[excepthub_fastmcp.middleware(exc)])

    async def ask() -> list[Any]:
        async with Client(proxy) as client:
            return [
                await client.call_tool_mcp(name, {"text": text, "code": code})
                for name in ("failing", "rejected")
            ]

    assume(all(text not in f"Error calling tool '{name}'" for name in ("failing", "rejected")))
    answers = anyio.run(ask)
    for answer in answers:
        assert answer.is_error
        told = answer.model_dump(include={"content", "structured_content", "is_error"})
        assert not [s for s in strings(told) if text in s]
    failed, rejected = seen
    assert isinstance(failed, UpstreamToolError)
    assert [block.text for block in failed.content] == [text]
    assert isinstance(rejected, UpstreamProtocolError)
    assert (rejected.code, rejected.upstream_message) == (code, text)
