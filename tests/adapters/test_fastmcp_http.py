"""excepthub_fastmcp end to end: the server over streamable HTTP on 127.0.0.1, a real client.

One uvicorn server runs for the module, on a free port, started and stopped by its fixture.
Between the app and uvicorn sits a recorder that keeps every byte the server sends (status,
headers, bodies) and every request body, so the tests sweep what actually went on the wire.
Both protocol eras: `mode="legacy"` (the initialize handshake, a session, SSE) and
`mode="auto"` (2026-07-28, one request per exchange).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import mcp_types
import pytest
from fastmcp import Client, FastMCP
from fastmcp.server.middleware import Middleware, MiddlewareContext
from mcp import MCPError

import excepthub_fastmcp
from excepthub import ExceptionMiddleware
from excepthub_fastmcp import deny

from ._servers import Recorder, uvicorn_on_loopback

pytestmark = pytest.mark.anyio

SECRET = "hunter2-do-not-leak"


@pytest.fixture
def anyio_backend() -> str:
    """FastMCP's client runs on asyncio only."""
    return "asyncio"


@pytest.fixture(params=["legacy", "auto"])
def era(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- the server: one error class per path, for tools, resources, templates and prompts ------


class Unavailable(Exception):
    """Taken by a fallback handler."""


class Handled(Exception):
    """Taken by a side-effect handler."""


class Unhandled(Exception):
    """No handler takes it."""


class BreaksHandler(Exception):
    """Its handler raises."""


class Leaky(Exception):
    """Its fallback handler puts the message in the answer, on purpose."""


ERRORS: dict[str, type[Exception]] = {
    "fallback": Unavailable,
    "handled": Handled,
    "unhandled": Unhandled,
    "handler-raises": BreaksHandler,
    "leaky": Leaky,
}


def upstream_429() -> Exception:
    request = httpx.Request("GET", "https://api.example.org/quota")
    response = httpx.Response(429, request=request, text=SECRET)
    return httpx.HTTPStatusError(f"429 {SECRET}", request=request, response=response)


def upstream_timeout() -> Exception:
    return httpx.ReadTimeout(f"read timed out: {SECRET}")


# Upstream failures no handler takes: FastMCP's own safe answers, sent even when masking.
UPSTREAM: dict[str, Callable[[], Exception]] = {
    "upstream-429": upstream_429,
    "upstream-timeout": upstream_timeout,
}
SAFE_ANSWERS = {
    "upstream-429": "Rate limited by upstream API, please retry later",
    "upstream-timeout": "Upstream request timed out, please retry",
}


def registry() -> ExceptionMiddleware:
    exc = ExceptionMiddleware(handlers={Handled: lambda error: None})

    @exc.add_handler(Unavailable, publish=True)
    def fallback(error: Unavailable, context: MiddlewareContext[Any]) -> Any:
        return {
            "tools/call": 7,
            "resources/read": "cached",
            "prompts/get": "Say it is unavailable.",
        }[context.method]  # type: ignore[index]

    @exc.add_handler(BreaksHandler)
    def broken(error: BreaksHandler) -> None:
        raise RuntimeError(f"handler bug {SECRET}")

    @exc.add_handler(Leaky, publish=True)
    def leaky(error: Leaky) -> excepthub_fastmcp.Denial:
        return deny(f"told on purpose: {error}")

    return exc


def app_server(exc: ExceptionMiddleware) -> FastMCP:
    mcp = FastMCP("e2e", middleware=[excepthub_fastmcp.middleware(exc)])
    for path, cls in ERRORS.items():

        def raiser(cls: type[Exception] = cls) -> Any:
            raise cls(SECRET)

        name = path.replace("-", "_")
        mcp.tool(name=name)(_typed(raiser, int))
        mcp.resource(f"e2e://{path}", name=f"{name}_resource")(_typed(raiser, str))
        mcp.resource(f"e2e://{path}/{{key}}", name=f"{name}_template")(_keyed(cls))
        mcp.prompt(name=name)(_typed(raiser, str))

    for path, upstream in UPSTREAM.items():

        def failing(upstream: Callable[[], Exception] = upstream) -> Any:
            raise upstream()

        name = path.replace("-", "_")
        mcp.tool(name=name)(_typed(failing, int))
        mcp.resource(f"e2e://{path}", name=f"{name}_resource")(_typed(failing, str))

    class Explode(Middleware):
        async def on_list_prompts(self, context: Any, call_next: Any) -> Any:
            raise RuntimeError(SECRET)

    mcp.add_middleware(Explode())
    return mcp


def _typed(raiser: Callable[[], Any], returns: type) -> Callable[[], Any]:
    def component() -> Any:
        return raiser()

    component.__annotations__ = {"return": returns}
    return component


def _keyed(cls: type[Exception]) -> Callable[[str], str]:
    def component(key: str) -> str:
        raise cls(SECRET)

    return component


class Served:
    def __init__(self, url: str, recorder: Recorder, exc: ExceptionMiddleware) -> None:
        self.url, self.recorder, self.exc = url, recorder, exc


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    exc = registry()
    recorder = Recorder(app_server(exc).http_app(path="/mcp"))
    with uvicorn_on_loopback(recorder, lifespan="on") as port:
        yield Served(f"http://127.0.0.1:{port}/mcp", recorder, exc)


@pytest.fixture
def wire(served: Served) -> Recorder:
    served.recorder.sent.clear()
    served.recorder.requests.clear()
    served.exc.reset_error_stats()
    return served.recorder


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


def about(logs: pytest.LogCaptureFixture, cls: type[Exception]) -> list[logging.LogRecord]:
    """Records at INFO or above, from any logger, that mention `cls`'s error."""
    formatter = logging.Formatter()
    return [
        r
        for r in logs.records
        if r.levelno >= logging.INFO
        and (
            cls.__name__ in r.getMessage()
            or SECRET in r.getMessage()
            or (r.exc_info is not None and cls.__name__ in formatter.formatException(r.exc_info))
        )
    ]


# -- outcomes over HTTP ----------------------------------------------------------------------


async def test_a_fallback_value_is_the_tool_result(
    served: Served, wire: Recorder, era: str
) -> None:
    async with Client(served.url, mode=era) as client:
        result = await client.call_tool("fallback", {})
    assert (result.is_error, result.data) == (False, 7)


async def test_a_handled_error_is_a_masked_is_error_result(
    served: Served, wire: Recorder, era: str
) -> None:
    async with Client(served.url, mode=era) as client:
        result = await client.call_tool_mcp("handled", {})
    assert result.is_error
    assert [c.text for c in result.content] == ["Error calling tool 'handled'"]


async def test_resource_and_prompt_fallbacks_are_contents_and_messages(
    served: Served, wire: Recorder, era: str
) -> None:
    async with Client(served.url, mode=era) as client:
        contents = await client.read_resource_mcp("e2e://fallback/k")
        prompt = await client.get_prompt_mcp("fallback", {})
    assert [c.text for c in contents.contents] == ["cached"]
    assert [m.content.text for m in prompt.messages] == ["Say it is unavailable."]


async def test_an_unhandled_resource_error_is_a_masked_mcp_error(
    served: Served, wire: Recorder, era: str
) -> None:
    async with Client(served.url, mode=era) as client:
        with pytest.raises(MCPError) as raised:
            await client.read_resource_mcp("e2e://unhandled")
    assert raised.value.error.code == mcp_types.INTERNAL_ERROR
    assert raised.value.error.message == "Error reading resource 'e2e://unhandled'"


# -- logged once, end to end -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "cls", "level", "outcome"),
    [
        ("fallback", Unavailable, logging.INFO, "published"),
        ("handled", Handled, logging.WARNING, "handled"),
        ("handler_raises", BreaksHandler, logging.ERROR, "failed"),
    ],
)
async def test_a_tool_error_is_logged_once_end_to_end_with_the_json_rpc_id(
    served: Served,
    wire: Recorder,
    logs: pytest.LogCaptureFixture,
    era: str,
    path: str,
    cls: type[Exception],
    level: int,
    outcome: str,
) -> None:
    async with Client(served.url, mode=era) as client:
        await client.call_tool_mcp(path, {})
    [record] = about(logs, cls)
    assert (record.name, record.levelno, record.excepthub_outcome) == (  # type: ignore[attr-defined]
        "excepthub",
        level,
        outcome,
    )
    assert record.correlation_id == wire.request_ids("tools/call")[-1]  # type: ignore[attr-defined]
    assert not [
        r for r in logs.records if r.name.startswith("uvicorn") and r.levelno >= logging.WARNING
    ]


async def test_an_unhandled_tool_error_is_logged_once_end_to_end_by_fastmcp(
    served: Served, logs: pytest.LogCaptureFixture, era: str
) -> None:
    async with Client(served.url, mode=era) as client:
        await client.call_tool_mcp("unhandled", {})
    [record] = about(logs, Unhandled)
    assert (record.name, record.levelno) == ("fastmcp.server.server", logging.ERROR)
    assert record.getMessage() == "Error calling tool 'unhandled'"


# -- no detail on the wire -------------------------------------------------------------------


PATHS = ["handled", "unhandled", "handler-raises"]


@pytest.mark.parametrize("path", PATHS)
async def test_a_secret_in_an_exception_never_goes_on_the_wire(
    served: Served, wire: Recorder, era: str, path: str
) -> None:
    name = path.replace("-", "_")
    async with Client(served.url, mode=era) as client:
        tool = await client.call_tool_mcp(name, {})
        answers: list[Any] = [tool]
        reads: list[Callable[[], Awaitable[Any]]] = [
            lambda: client.read_resource_mcp(f"e2e://{path}"),
            lambda: client.read_resource_mcp(f"e2e://{path}/k"),
            lambda: client.get_prompt_mcp(name, {}),
        ]
        for read in reads:
            with pytest.raises(MCPError) as raised:
                await read()
            answers.append(raised.value.error)
    assert tool.is_error
    assert [a.message for a in answers[1:]] == [
        f"Error reading resource 'e2e://{path}'",
        f"Error reading resource 'e2e://{path}/k'",
        f"Error rendering prompt '{name}'",
    ]
    assert SECRET.encode() not in wire.wire()


async def test_a_secret_raised_by_another_middleware_never_goes_on_the_wire(
    served: Served, wire: Recorder, era: str
) -> None:
    async with Client(served.url, mode=era) as client:
        with pytest.raises(MCPError) as raised:
            await client.list_prompts_mcp()
    assert raised.value.error.message == "Internal server error"
    assert SECRET.encode() not in wire.wire()


async def test_what_a_handler_puts_in_the_answer_goes_on_the_wire(
    served: Served, wire: Recorder, era: str
) -> None:
    # the sweep sees the wire: a handler that tells the secret on purpose is caught by it
    async with Client(served.url, mode=era) as client:
        result = await client.call_tool_mcp("leaky", {})
    assert result.is_error
    assert SECRET.encode() in wire.wire()


# -- what no handler takes: as FastMCP sends it ---------------------------------------------


@pytest.mark.parametrize("path", UPSTREAM)
async def test_an_upstream_failure_of_a_tool_keeps_fastmcps_safe_answer_on_the_wire(
    served: Served, wire: Recorder, era: str, path: str
) -> None:
    async with Client(served.url, mode=era) as client:
        result = await client.call_tool_mcp(path.replace("-", "_"), {})
    assert result.is_error
    assert [block.text for block in result.content] == [SAFE_ANSWERS[path]]  # type: ignore[union-attr]
    assert SECRET.encode() not in wire.wire()


@pytest.mark.parametrize("path", UPSTREAM)
async def test_an_upstream_failure_of_a_resource_keeps_fastmcps_safe_answer_on_the_wire(
    served: Served, wire: Recorder, era: str, path: str
) -> None:
    async with Client(served.url, mode=era) as client:
        with pytest.raises(MCPError) as raised:
            await client.read_resource_mcp(f"e2e://{path}")
    assert (raised.value.error.code, raised.value.error.message) == (-32603, SAFE_ANSWERS[path])
    assert SECRET.encode() not in wire.wire()
