"""excepthub_fastmcp against a real FastMCP server, through FastMCP's in-memory `Client`.

Every client-facing test runs in both protocol eras: `mode="legacy"` negotiates the
initialize handshake (2025-11-25), `mode="auto"` the modern era (2026-07-28). They answer an
exception that escapes the server differently (code 0 with `str(e)` against -32603), so each
behaviour is checked in both.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import mcp_types
import pydantic
import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import NotFoundError, PromptError, ResourceError, ToolError
from fastmcp.prompts import PromptResult
from fastmcp.resources import ResourceResult
from fastmcp.server.context import Context as FastMCPContext
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools import ToolResult
from mcp import MCPError

import excepthub_fastmcp
from excepthub import (
    Context,
    ExceptionKey,
    ExceptionMiddleware,
    RedeliveryUnsupported,
    Retry,
    reraise,
)
from excepthub_fastmcp import Denial, Guided, MCPErrorReply, deny, guide, mcp_error

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


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record, FastMCP's included (its logger does not propagate to the root)."""
    fastmcp_logger = logging.getLogger("fastmcp")
    fastmcp_logger.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="fastmcp")
    try:
        yield caplog
    finally:
        fastmcp_logger.removeHandler(caplog.handler)


# -- the server under test ------------------------------------------------------------------


class Outage(Exception):
    """A user's error: the weather service is down."""


class Declined(ValueError):
    """A user's error, a subclass: resolution walks its MRO."""


class Flaky(ConnectionError):
    """A user's transient error."""


class Forecast(pydantic.BaseModel):
    city: str
    celsius: float


Fail = Callable[[], Exception]


def weather(
    exc: ExceptionMiddleware,
    fail: Fail | None = None,
    *,
    inner: Middleware | None = None,
    mask_error_details: bool | None = None,
) -> FastMCP:
    """A server whose every component raises `fail()` (when given), behind the adapter."""
    middleware: list[Middleware] = [excepthub_fastmcp.middleware(exc)]
    if inner is not None:
        middleware.append(inner)
    mcp = FastMCP("weather", middleware=middleware, mask_error_details=mask_error_details)

    def check() -> None:
        if fail is not None:
            raise fail()

    @mcp.tool
    def forecast(city: str) -> Forecast:
        check()
        return Forecast(city=city, celsius=21.5)

    @mcp.tool
    async def temperature(city: str) -> float:
        check()
        return 21.5

    @mcp.resource("weather://stations", mime_type="application/json")
    def stations() -> str:
        check()
        return '["LHR"]'

    @mcp.resource("weather://stations/{code}")
    def station(code: str) -> str:
        check()
        return code

    @mcp.prompt
    def briefing(city: str) -> str:
        check()
        return f"Brief me on {city}."

    return mcp


def text(result: mcp_types.CallToolResult) -> str:
    return " ".join(
        block.text for block in result.content if isinstance(block, mcp_types.TextContent)
    )


def received(value: Any) -> str:
    """Everything a client got, as JSON: a result, or the error data it raised."""
    if isinstance(value, MCPError):
        return value.error.model_dump_json()
    return str(value.model_dump_json())


# -- plugging in ----------------------------------------------------------------------------


def test_middleware_is_a_fastmcp_middleware() -> None:
    assert isinstance(excepthub_fastmcp.middleware(ExceptionMiddleware()), Middleware)


def test_middleware_refuses_what_is_not_a_registry() -> None:
    with pytest.raises(TypeError, match=r"excepthub\.ExceptionMiddleware"):
        excepthub_fastmcp.middleware({})  # type: ignore[arg-type]


async def test_add_middleware_plugs_it_in_as_well(era: str) -> None:
    exc = ExceptionMiddleware(
        publish_handlers={Outage: lambda error: Forecast(city="-", celsius=0)}
    )
    mcp = FastMCP("weather")
    mcp.add_middleware(excepthub_fastmcp.middleware(exc))

    @mcp.tool
    def forecast(city: str) -> Forecast:
        raise Outage(SECRET)

    async with Client(mcp, mode=era) as client:
        result = await client.call_tool("forecast", {"city": "Oslo"})
    assert result.structured_content == {"city": "-", "celsius": 0.0}


# -- tools: what the handler sees ----------------------------------------------------------


async def test_handler_sees_the_exception_the_tool_raised_not_fastmcps_wrapper(era: str) -> None:
    seen: list[BaseException] = []
    exc = ExceptionMiddleware(handlers={Exception: seen.append})
    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert [type(error) for error in seen] == [Outage]
    assert str(seen[0]) == SECRET


async def test_a_subclass_reaches_the_handler_of_its_base_class(era: str) -> None:
    seen: list[BaseException] = []
    exc = ExceptionMiddleware(handlers={ValueError: seen.append})
    async with Client(weather(exc, lambda: Declined(SECRET)), mode=era) as client:
        await client.call_tool_mcp("temperature", {"city": "Oslo"})
    assert [type(error) for error in seen] == [Declined]


async def test_a_tool_error_the_tool_raises_from_another_error_is_not_unwrapped(era: str) -> None:
    seen: list[BaseException] = []
    exc = ExceptionMiddleware(publish_handlers={KeyError: seen.append, ToolError: seen.append})

    def fail() -> Exception:
        try:
            raise KeyError(SECRET)
        except KeyError as error:
            wrapped = ToolError("No such city; try another spelling.")
            wrapped.__cause__ = error
            return wrapped

    async with Client(weather(exc, fail), mode=era) as client:
        await client.call_tool_mcp("forecast", {"city": "Olso"})
    assert [type(error) for error in seen] == [ToolError]


async def test_a_pydantic_error_from_a_tool_body_reaches_its_handler_as_itself(era: str) -> None:
    seen: list[BaseException] = []
    exc = ExceptionMiddleware(handlers={pydantic.ValidationError: seen.append})

    def fail() -> Exception:
        try:
            Forecast.model_validate({"city": SECRET})
        except pydantic.ValidationError as error:
            return error
        raise AssertionError("unreachable")

    async with Client(weather(exc, fail), mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert [type(error) for error in seen] == [pydantic.ValidationError]
    assert result.is_error
    assert SECRET not in received(result)


async def test_without_fastmcps_private_body_error_class_the_error_stops_at_it(
    era: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a FastMCP release without `_ToolBodyError`: that one unwrapping step is lost, no more
    monkeypatch.setattr("excepthub_fastmcp._middleware._BODY_ERROR", None)
    seen: list[BaseException] = []
    exc = ExceptionMiddleware(handlers={Exception: seen.append})

    def fail() -> Exception:
        try:
            Forecast.model_validate({"city": SECRET})
        except pydantic.ValidationError as error:
            return error
        raise AssertionError("unreachable")

    async with Client(weather(exc, fail), mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    [error] = seen
    if type(error) is pydantic.ValidationError:  # FastMCP 4.0 takes its tag off itself
        pytest.skip("this FastMCP surfaces the body's own error: no tag reaches middleware")
    assert type(error).__name__ == "_ToolBodyError"
    assert isinstance(error.__cause__, pydantic.ValidationError)
    assert (result.is_error, text(result)) == (True, "Error calling tool 'forecast'")


async def test_stats_are_keyed_on_the_users_class(era: str) -> None:
    exc = ExceptionMiddleware(handlers={Outage: lambda error: None})
    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        await client.call_tool_mcp("forecast", {"city": "Oslo"})
        await client.call_tool_mcp("temperature", {"city": "Oslo"})
    assert exc.get_error_stats() == {f"{__name__}.Outage": {"handled": 2}}


async def test_an_exception_group_is_taken_apart_leaf_by_leaf(era: str) -> None:
    seen: list[BaseException] = []
    exc = ExceptionMiddleware(
        handlers={Outage: seen.append}, publish_handlers={KeyError: lambda error: -1.0}
    )
    group = ExceptionGroup("both", [Outage(SECRET), KeyError(SECRET)])
    async with Client(weather(exc, lambda: group), mode=era) as client:
        result = await client.call_tool("temperature", {"city": "Oslo"})
    assert result.data == -1.0
    assert [type(error) for error in seen] == [Outage]


async def test_a_tool_of_a_mounted_server_is_unwrapped_and_converted_too(era: str) -> None:
    seen: list[BaseException] = []

    def zero(error: Outage) -> float:
        seen.append(error)
        return 0.0

    exc = ExceptionMiddleware(publish_handlers={Outage: zero})
    child = weather(ExceptionMiddleware(), lambda: Outage(SECRET))
    child.middleware.clear()  # the parent's middleware alone sees the child's wrapper
    parent = FastMCP("parent", middleware=[excepthub_fastmcp.middleware(exc)])
    parent.mount(child, namespace="w")
    async with Client(parent, mode=era) as client:
        result = await client.call_tool("w_temperature", {"city": "Oslo"})
    assert result.data == 0.0
    assert [type(error) for error in seen] == [Outage]


# -- tools: fallback values ------------------------------------------------------------------


async def test_a_fallback_value_becomes_a_result_satisfying_the_output_schema(era: str) -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(Outage, publish=True)
    def cached(error: Outage, context: MiddlewareContext[Any]) -> Forecast:
        return Forecast(city=context.message.arguments["city"], celsius=19.0)

    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        result = await client.call_tool("forecast", {"city": "Oslo"})  # validates the schema
    assert not result.is_error
    assert result.structured_content == {"city": "Oslo", "celsius": 19.0}


async def test_a_scalar_fallback_is_wrapped_as_fastmcp_wraps_the_tools_value(era: str) -> None:
    exc = ExceptionMiddleware(publish_handlers={Outage: lambda error: -40.0})
    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        result = await client.call_tool("temperature", {"city": "Oslo"})
    assert result.structured_content == {"result": -40.0}
    assert result.data == -40.0


async def test_a_fallback_tool_result_passes_as_it_is(era: str) -> None:
    answer = ToolResult(
        content="served from cache", structured_content={"city": "Oslo", "celsius": 3}
    )
    exc = ExceptionMiddleware(publish_handlers={Outage: lambda error: answer})
    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert text(result) == "served from cache"
    assert result.structured_content == {"city": "Oslo", "celsius": 3}


def the_failed_record(logs: pytest.LogCaptureFixture) -> logging.LogRecord:
    """excepthub's one record of an error whose fallback value could not be sent."""
    [record] = [r for r in logs.records if r.name.startswith("excepthub")]
    assert getattr(record, "excepthub_outcome", None) == "failed"
    assert record.levelno == logging.ERROR
    return record


@pytest.mark.filterwarnings("error")  # pydantic's serializer warning is not printed
async def test_a_fallback_that_breaks_the_output_schema_is_masked_and_counted_failed(
    era: str, logs: pytest.LogCaptureFixture
) -> None:
    exc = ExceptionMiddleware(publish_handlers={Outage: lambda error: {"city": SECRET}})
    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert result.is_error
    assert text(result) == "Error calling tool 'forecast'"
    record = the_failed_record(logs)
    assert "could not be sent" in record.getMessage()
    assert "output schema of tool 'forecast'" in str(record.exc_info[1] if record.exc_info else "")
    assert exc.get_error_stats() == {f"{__name__}.Outage": {"failed": 1}}


class Raise(Middleware):
    """An inner middleware that fails the tool call itself: FastMCP's `call_tool` never ran."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def on_call_tool(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        raise self.error


class Reroute(Middleware):
    """An inner middleware that runs another tool than the one the client named."""

    def __init__(self, to: str) -> None:
        self.to = to

    async def on_call_tool(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        message = context.message.model_copy(update={"name": self.to})
        return await call_next(context.copy(message=message))


async def test_a_fallback_for_an_error_raised_outside_the_tool_call_is_converted_too(
    era: str,
) -> None:
    exc = ExceptionMiddleware(publish_handlers={Outage: lambda error: -40.0})
    async with Client(weather(exc, inner=Raise(Outage(SECRET))), mode=era) as client:
        result = await client.call_tool("temperature", {"city": "Oslo"})
    assert result.structured_content == {"result": -40.0}
    assert result.data == -40.0


async def test_a_fallback_for_a_tool_error_the_tool_raises_is_converted_too(era: str) -> None:
    exc = ExceptionMiddleware(publish_handlers={ToolError: lambda error: -40.0})
    async with Client(weather(exc, lambda: ToolError("Try a bigger city.")), mode=era) as client:
        result = await client.call_tool("temperature", {"city": "Oslo"})
    assert result.structured_content == {"result": -40.0}


async def test_a_fallback_is_converted_by_the_tool_the_client_named(era: str) -> None:
    exc = ExceptionMiddleware(
        publish_handlers={Outage: lambda error: Forecast(city="Oslo", celsius=19.0)}
    )
    mcp = weather(exc, lambda: Outage(SECRET), inner=Reroute(to="temperature"))
    async with Client(mcp, mode=era) as client:
        result = await client.call_tool("forecast", {"city": "Oslo"})  # validates the schema
    assert result.structured_content == {"city": "Oslo", "celsius": 19.0}


async def test_a_fallback_that_breaks_the_output_schema_outside_the_tool_call_is_masked(
    era: str, logs: pytest.LogCaptureFixture
) -> None:
    exc = ExceptionMiddleware(publish_handlers={Outage: lambda error: {"city": SECRET}})
    async with Client(weather(exc, inner=Raise(Outage(SECRET))), mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert (result.is_error, text(result)) == (True, "Error calling tool 'forecast'")
    record = the_failed_record(logs)
    assert "output schema of tool 'forecast'" in str(record.exc_info[1] if record.exc_info else "")


async def test_a_fallback_with_no_structured_content_for_an_output_schema_is_masked(
    era: str, logs: pytest.LogCaptureFixture
) -> None:
    exc = ExceptionMiddleware(publish_handlers={Outage: lambda error: b"\x00raw"})
    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert (result.is_error, text(result)) == (True, "Error calling tool 'forecast'")
    record = the_failed_record(logs)
    assert "no structured content" in str(record.exc_info[1] if record.exc_info else "")


async def test_an_outer_middleware_sees_the_masked_tool_error_fastmcp_raises(era: str) -> None:
    seen: list[Exception] = []

    class Outer(Middleware):
        async def on_call_tool(
            self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
        ) -> Any:
            try:
                return await call_next(context)
            except Exception as error:
                seen.append(error)
                raise

    exc = ExceptionMiddleware(handlers={Outage: lambda error: None})
    mcp = weather(exc, lambda: Outage(SECRET))
    mcp.middleware.insert(0, Outer())
    async with Client(mcp, mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    [error] = seen
    assert type(error) is ToolError
    assert str(error) == text(result) == "Error calling tool 'forecast'"
    assert isinstance(error.__cause__, Outage)


async def test_deny_gives_an_is_error_result_with_the_handlers_message(era: str) -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(PermissionError, publish=True)
    def refuse(error: PermissionError) -> Denial:
        return deny("That city is not covered; ask the user for another.")

    async with Client(weather(exc, lambda: PermissionError(SECRET)), mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert result.is_error
    assert text(result) == "That city is not covered; ask the user for another."


async def test_guide_adds_guidance_after_the_converted_value(era: str) -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(Outage, publish=True)
    def stale(error: Outage) -> Guided:
        return guide(Forecast(city="Oslo", celsius=4.0), "This forecast is an hour old.")

    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        result = await client.call_tool("forecast", {"city": "Oslo"})
    assert result.structured_content == {"city": "Oslo", "celsius": 4.0}
    assert [block.text for block in result.content][-1] == "This forecast is an hour old."


async def test_guide_can_follow_a_denial(era: str) -> None:
    exc = ExceptionMiddleware(
        publish_handlers={Outage: lambda error: guide(deny("Unavailable."), "Retry in an hour.")}
    )
    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert result.is_error
    assert text(result) == "Unavailable. Retry in an hour."


async def test_mcp_error_answers_with_the_handlers_code_and_message(era: str) -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(Outage, publish=True)
    def quota(error: Outage) -> MCPErrorReply:
        return mcp_error(-32029, "Quota exceeded", {"retry_after": 60})

    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        with pytest.raises(MCPError) as raised:
            await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert (raised.value.error.code, raised.value.error.message) == (-32029, "Quota exceeded")
    assert raised.value.error.data == {"retry_after": 60}


# -- tools: handled, unhandled, failed -------------------------------------------------------


async def test_a_side_effect_handler_gives_a_masked_is_error_result(era: str) -> None:
    seen: list[BaseException] = []
    exc = ExceptionMiddleware(handlers={Outage: seen.append})
    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert len(seen) == 1
    assert result.is_error
    assert text(result) == "Error calling tool 'forecast'"


async def test_an_unhandled_error_gives_a_masked_is_error_result(era: str) -> None:
    async with Client(weather(ExceptionMiddleware(), lambda: Outage(SECRET)), mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert result.is_error
    assert text(result) == "Error calling tool 'forecast'"


async def test_a_handler_that_raises_gives_a_masked_is_error_result(era: str) -> None:
    def broken(error: Outage) -> None:
        raise RuntimeError(SECRET)

    exc = ExceptionMiddleware(handlers={Outage: broken})
    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert result.is_error
    assert text(result) == "Error calling tool 'forecast'"


async def test_a_handler_that_raises_fastmcps_tool_error_answers_with_it(era: str) -> None:
    def rephrase(error: Outage) -> None:
        raise ToolError("The weather service is down; try again in a minute.")

    exc = ExceptionMiddleware(handlers={Outage: rephrase})
    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert (result.is_error, text(result)) == (
        True,
        "The weather service is down; try again in a minute.",
    )
    assert exc.get_error_stats() == {"tests.adapters.test_fastmcp.Outage": {"handled": 1}}


async def test_an_error_raised_by_an_inner_middleware_reaches_the_handlers(era: str) -> None:
    class Gate(Middleware):
        async def on_call_tool(
            self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
        ) -> Any:
            raise PermissionError(SECRET)

    exc = ExceptionMiddleware(
        publish_handlers={PermissionError: lambda error: deny("Not allowed.")}
    )
    async with Client(weather(exc, inner=Gate()), mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert text(result) == "Not allowed."


# -- tools: FastMCP's own answers ------------------------------------------------------------


async def test_a_tool_error_from_the_tool_reaches_the_client_as_fastmcp_sends_it(era: str) -> None:
    seen: list[BaseException] = []
    exc = ExceptionMiddleware(handlers={Exception: seen.append})
    async with Client(weather(exc, lambda: ToolError("Try a bigger city.")), mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert (result.is_error, text(result)) == (True, "Try a bigger city.")
    assert seen == []  # the framework default is nearer than Exception


async def test_a_handler_for_tool_error_replaces_the_default(era: str) -> None:
    exc = ExceptionMiddleware(publish_handlers={ToolError: lambda error: deny("Rephrased.")})
    async with Client(weather(exc, lambda: ToolError("Try a bigger city.")), mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert text(result) == "Rephrased."


async def test_an_unknown_tool_is_answered_by_fastmcp(era: str) -> None:
    seen: list[BaseException] = []
    exc = ExceptionMiddleware(handlers={Exception: seen.append})
    async with Client(weather(exc), mode=era) as client:
        result = await client.call_tool_mcp("nowcast", {})
    assert (result.is_error, text(result)) == (True, "Unknown tool: 'nowcast'")
    assert seen == []


async def test_invalid_arguments_are_answered_by_fastmcp(era: str) -> None:
    seen: list[BaseException] = []
    exc = ExceptionMiddleware(handlers={Exception: seen.append})
    async with Client(weather(exc), mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": ["not", "a", "string"]})
    assert result.is_error
    assert "validation error" in text(result)
    assert seen == []


def test_fastmcps_exceptions_resolve_to_the_default_before_a_broad_user_handler() -> None:
    exc = ExceptionMiddleware(publish_handlers={Exception: print})
    for cls in (ToolError, MCPError, NotFoundError):
        resolution = exc.resolve(cls, defaults=excepthub_fastmcp.DEFAULTS)
        assert resolution is not None
        assert resolution.handler is reraise
    assert exc.resolve(Outage, defaults=excepthub_fastmcp.DEFAULTS).handler is print  # type: ignore[union-attr]


def test_unwrap_leaves_an_exception_without_a_fastmcp_wrapper_as_it_is() -> None:
    error = ToolError("mine")
    error.__cause__ = KeyError("k")
    assert excepthub_fastmcp.unwrap(error) is error


@pytest.mark.parametrize(
    ("wrapper", "text"),
    [
        (ToolError, "Error calling tool 'forecast'"),  # masked
        (ToolError, "Error calling tool 'forecast': boom"),
        (ToolError, "Rate limited by upstream API, please retry later"),
        (ResourceError, "Error reading resource 'data://x': boom"),
        (PromptError, 'Error rendering prompt "it\'s"'),
    ],
)
def test_unwrap_takes_off_a_wrapper_by_the_text_fastmcp_gives_it(
    wrapper: type[Exception], text: str
) -> None:
    error = wrapper(text)
    error.__cause__ = RuntimeError("boom")  # never raised: no traceback, no frame to read
    assert excepthub_fastmcp.unwrap(error) is error.__cause__


@pytest.mark.parametrize(
    "text",
    ["Error calling tool 'forecast': another cause", "Error calling tool forecast", "quota"],
)
def test_unwrap_leaves_a_tool_error_whose_text_fastmcp_did_not_write(text: str) -> None:
    error = ToolError(text)
    error.__cause__ = RuntimeError("boom")
    assert excepthub_fastmcp.unwrap(error) is error


# -- injection -------------------------------------------------------------------------------


async def test_handlers_get_the_middleware_context_and_fastmcp_context_by_name(era: str) -> None:
    seen: dict[str, Any] = {}

    def record(
        error: Outage,
        context: MiddlewareContext[Any],
        fastmcp_context: FastMCPContext,
        correlation_id: str,
    ) -> None:
        seen.update(
            tool=context.message.name, method=context.method, request_id=fastmcp_context.request_id
        )
        seen["correlation_id"] = correlation_id

    exc = ExceptionMiddleware(handlers={Outage: record})
    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert seen["tool"] == "forecast"
    assert seen["method"] == "tools/call"
    assert seen["correlation_id"] == seen["request_id"]


async def test_excepthub_context_reads_a_dotted_path(era: str) -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(Outage, publish=True)
    def echo(error: Outage, city: str = Context("context.message.arguments.city")) -> Forecast:
        return Forecast(city=city, celsius=0.0)

    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        result = await client.call_tool("forecast", {"city": "Lima"})
    assert result.structured_content == {"city": "Lima", "celsius": 0.0}


# -- resources and prompts -------------------------------------------------------------------


async def test_a_resource_fallback_becomes_its_contents_with_the_resources_mime_type(
    era: str,
) -> None:
    exc = ExceptionMiddleware(publish_handlers={Outage: lambda error: "[]"})
    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        result = await client.read_resource_mcp("weather://stations")
    [content] = result.contents
    assert isinstance(content, mcp_types.TextResourceContents)
    assert (content.text, content.mime_type) == ("[]", "application/json")


async def test_a_resource_template_fallback_becomes_its_contents(era: str) -> None:
    exc = ExceptionMiddleware(
        publish_handlers={Outage: lambda error: ResourceResult("closed for maintenance")}
    )
    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        result = await client.read_resource_mcp("weather://stations/LHR")
    assert [c.text for c in result.contents] == ["closed for maintenance"]


async def test_a_handled_resource_error_is_a_masked_mcp_error(era: str) -> None:
    exc = ExceptionMiddleware(handlers={Outage: lambda error: None})
    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        with pytest.raises(MCPError) as raised:
            await client.read_resource_mcp("weather://stations/LHR")
    assert raised.value.error.code == mcp_types.INTERNAL_ERROR
    assert raised.value.error.message == "Error reading resource 'weather://stations/LHR'"


async def test_a_resource_denial_is_an_mcp_error_with_the_handlers_message(era: str) -> None:
    exc = ExceptionMiddleware(publish_handlers={Outage: lambda error: deny("Station offline.")})
    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        with pytest.raises(MCPError) as raised:
            await client.read_resource_mcp("weather://stations")
    assert raised.value.error.code == mcp_types.INVALID_REQUEST
    assert raised.value.error.message == "Station offline."


async def test_a_prompt_fallback_becomes_its_messages(era: str) -> None:
    exc = ExceptionMiddleware(publish_handlers={Outage: lambda error: "Say the service is down."})
    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        result = await client.get_prompt_mcp("briefing", {"city": "Oslo"})
    assert [m.content.text for m in result.messages] == ["Say the service is down."]


async def test_prompt_guidance_follows_as_a_user_message(era: str) -> None:
    exc = ExceptionMiddleware(
        publish_handlers={
            Outage: lambda error: guide(PromptResult("Brief."), "Mention the outage.")
        }
    )
    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        result = await client.get_prompt_mcp("briefing", {"city": "Oslo"})
    assert [(m.role, m.content.text) for m in result.messages] == [
        ("user", "Brief."),
        ("user", "Mention the outage."),
    ]


async def test_an_unhandled_prompt_error_is_masked_even_where_fastmcp_leaks_it(era: str) -> None:
    # FastMCP sends a prompt's error message even with mask_error_details=True
    mcp = weather(ExceptionMiddleware(), lambda: Outage(SECRET), mask_error_details=True)
    async with Client(mcp, mode=era) as client:
        with pytest.raises(MCPError) as raised:
            await client.get_prompt_mcp("briefing", {"city": "Oslo"})
    assert raised.value.error.code == mcp_types.INTERNAL_ERROR
    assert raised.value.error.message == "Error rendering prompt 'briefing'"


# -- other requests --------------------------------------------------------------------------


async def test_an_error_listing_tools_is_handled_and_masked(era: str) -> None:
    class Broken(Middleware):
        async def on_list_tools(
            self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
        ) -> Any:
            raise Outage(SECRET)

    seen: list[BaseException] = []
    exc = ExceptionMiddleware(handlers={Outage: seen.append})
    async with Client(weather(exc, inner=Broken()), mode=era) as client:
        with pytest.raises(MCPError) as raised:
            await client.list_tools_mcp()
    assert len(seen) == 1
    assert (raised.value.error.code, raised.value.error.message) == (
        mcp_types.INTERNAL_ERROR,
        "Internal server error",
    )


# -- logging: once, by excepthub, at the outcome's level -------------------------------------


def about(logs: pytest.LogCaptureFixture, word: str) -> list[logging.LogRecord]:
    """Records that report an error (excepthub's, FastMCP's, the MCP SDK's) mentioning `word`
    in their message or anywhere in their exception's chained traceback."""
    return [
        r
        for r in logs.records
        if r.levelno >= logging.INFO
        and r.name.startswith(("excepthub", "fastmcp", "mcp"))
        and (word in r.getMessage() or word in traceback_of(r))
    ]


def traceback_of(record: logging.LogRecord) -> str:
    return logging.Formatter().formatException(record.exc_info) if record.exc_info else ""


@pytest.mark.parametrize(
    ("handlers", "publish_handlers", "level", "outcome"),
    [
        ({}, {Outage: lambda error: Forecast(city="-", celsius=0)}, logging.INFO, "published"),
        ({Outage: lambda error: None}, {}, logging.WARNING, "handled"),
    ],
    ids=["published", "handled"],
)
async def test_a_tool_error_is_logged_once_at_its_outcomes_level_with_the_request_id(
    era: str,
    logs: pytest.LogCaptureFixture,
    handlers: dict[ExceptionKey, Callable[..., Any]],
    publish_handlers: dict[ExceptionKey, Callable[..., Any]],
    level: int,
    outcome: str,
) -> None:
    ids: list[str] = []

    class RequestIds(Middleware):
        async def on_call_tool(
            self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
        ) -> Any:
            ids.append(context.fastmcp_context.request_id)  # type: ignore[union-attr]
            return await call_next(context)

    exc = ExceptionMiddleware(handlers=handlers, publish_handlers=publish_handlers)
    async with Client(weather(exc, lambda: Outage(SECRET), inner=RequestIds()), mode=era) as client:
        await client.call_tool_mcp("forecast", {"city": "Oslo"})
    [record] = about(logs, "Outage")
    assert (record.name, record.levelno) == ("excepthub", level)
    assert record.excepthub_outcome == outcome  # type: ignore[attr-defined]
    assert record.correlation_id == ids[0]  # type: ignore[attr-defined]
    assert record.exc_info is None


async def test_an_unhandled_tool_error_is_logged_once_by_fastmcp_as_without_excepthub(
    era: str, logs: pytest.LogCaptureFixture
) -> None:
    exc = ExceptionMiddleware()
    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        await client.call_tool_mcp("forecast", {"city": "Oslo"})
    [record] = about(logs, "Outage")
    assert (record.name, record.levelno) == ("fastmcp.server.server", logging.ERROR)
    assert record.getMessage() == "Error calling tool 'forecast'"
    assert "Outage" in traceback_of(record)
    assert exc.get_error_stats() == {"tests.adapters.test_fastmcp.Outage": {"unhandled": 1}}


async def test_a_handler_failure_is_logged_once_with_both_errors(
    era: str, logs: pytest.LogCaptureFixture
) -> None:
    def broken(error: Outage) -> None:
        raise RuntimeError("handler bug")

    exc = ExceptionMiddleware(handlers={Outage: broken})
    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        await client.call_tool_mcp("forecast", {"city": "Oslo"})
    [record] = about(logs, "Outage")
    assert (record.name, record.levelno, record.excepthub_outcome) == (  # type: ignore[attr-defined]
        "excepthub",
        logging.ERROR,
        "failed",
    )


@pytest.mark.parametrize("read", ["resource", "prompt"])
async def test_a_resource_or_prompt_error_is_logged_once(
    era: str, logs: pytest.LogCaptureFixture, read: str
) -> None:
    exc = ExceptionMiddleware(handlers={Outage: lambda error: None})
    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        read_it: Callable[[], Awaitable[Any]] = {
            "resource": lambda: client.read_resource_mcp("weather://stations"),
            "prompt": lambda: client.get_prompt_mcp("briefing", {"city": "Oslo"}),
        }[read]
        with pytest.raises(MCPError):
            await read_it()
    assert [(r.name, r.levelno) for r in about(logs, "Outage")] == [("excepthub", logging.WARNING)]


async def test_an_error_let_through_to_fastmcp_is_logged_by_fastmcp_alone(
    era: str, logs: pytest.LogCaptureFixture
) -> None:
    exc = ExceptionMiddleware(handlers={Exception: lambda error: None})
    async with Client(weather(exc, lambda: ToolError("Try a bigger city.")), mode=era) as client:
        await client.call_tool_mcp("forecast", {"city": "Oslo"})
    records = [
        r for r in logs.records if "forecast" in r.getMessage() and r.levelno >= logging.WARNING
    ]
    assert [r.name for r in records] == ["fastmcp.server.server"]
    assert exc.get_error_stats() == {}


async def test_an_error_an_inner_middleware_settles_keeps_fastmcps_log(
    era: str, logs: pytest.LogCaptureFixture
) -> None:
    class Settle(Middleware):
        async def on_call_tool(
            self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
        ) -> Any:
            try:
                return await call_next(context)
            except ToolError:
                return ToolResult(structured_content={"city": "-", "celsius": 0})

    exc = ExceptionMiddleware(handlers={Exception: lambda error: None})
    async with Client(weather(exc, lambda: Outage(SECRET), inner=Settle()), mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert not result.is_error
    assert [r.name for r in about(logs, "forecast")] == ["fastmcp.server.server"]
    assert exc.get_error_stats() == {}


async def test_an_outcome_the_registry_does_not_log_keeps_fastmcps_log(
    era: str, logs: pytest.LogCaptureFixture
) -> None:
    exc = ExceptionMiddleware(handlers={Outage: lambda error: None}, logger=None)
    async with Client(weather(exc, lambda: Outage(SECRET)), mode=era) as client:
        await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert [r.name for r in about(logs, "Outage")] == ["fastmcp.server.server"]


# -- retries ---------------------------------------------------------------------------------


class FakeClock:
    """Records each backoff instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


def retrying(clock: FakeClock, **kwargs: Any) -> Retry:
    return Retry(on=(ConnectionError,), sleep=clock.sleep, random=lambda: 0.5, **kwargs)


def weather_with_flaky_forecast(
    exc: ExceptionMiddleware, failures: int
) -> tuple[FastMCP, list[int]]:
    calls: list[int] = []
    mcp = FastMCP("weather", middleware=[excepthub_fastmcp.middleware(exc)])

    @mcp.tool
    def forecast(city: str) -> Forecast:
        calls.append(1)
        if len(calls) <= failures:
            raise Flaky(SECRET)
        return Forecast(city=city, celsius=12.0)

    return mcp, calls


async def test_a_transient_failure_clearing_on_the_third_attempt_succeeds_with_two_retries_logged(
    era: str, logs: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    exc = ExceptionMiddleware(retry=retrying(clock, attempts=3))
    mcp, calls = weather_with_flaky_forecast(exc, failures=2)
    async with Client(mcp, mode=era) as client:
        result = await client.call_tool("forecast", {"city": "Oslo"})
    assert result.structured_content == {"city": "Oslo", "celsius": 12.0}
    assert len(calls) == 3
    records = about(logs, "Flaky")
    assert [(r.name, r.levelno, r.excepthub_outcome) for r in records] == [  # type: ignore[attr-defined]
        ("excepthub", logging.WARNING, "retried"),
        ("excepthub", logging.WARNING, "retried"),
    ]
    assert exc.get_error_stats() == {f"{__name__}.Flaky": {"retried": 2}}


async def test_a_transient_failure_that_never_clears_reaches_its_handler_after_the_last_attempt(
    era: str,
) -> None:
    clock = FakeClock()
    seen: list[BaseException] = []
    exc = ExceptionMiddleware(handlers={Flaky: seen.append}, retry=retrying(clock, attempts=4))
    mcp, calls = weather_with_flaky_forecast(exc, failures=10)
    async with Client(mcp, mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert len(calls) == 4
    assert [type(error) for error in seen] == [Flaky]
    assert text(result) == "Error calling tool 'forecast'"
    assert exc.get_error_stats() == {f"{__name__}.Flaky": {"retried": 3, "handled": 1}}


async def test_retries_back_off_exponentially_on_the_fake_clock(era: str) -> None:
    clock = FakeClock()
    exc = ExceptionMiddleware(
        retry=retrying(clock, attempts=5, base_delay=0.1, multiplier=3, max_delay=1.0)
    )
    mcp, _ = weather_with_flaky_forecast(exc, failures=10)
    async with Client(mcp, mode=era) as client:
        await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert clock.waits == pytest.approx([0.1, 0.3, 0.9, 1.0])


async def test_an_error_that_is_not_transient_is_not_retried(era: str) -> None:
    clock = FakeClock()
    exc = ExceptionMiddleware(handlers={Outage: lambda error: None}, retry=retrying(clock))
    calls: list[int] = []

    def fail() -> Exception:
        calls.append(1)
        return Outage(SECRET)

    async with Client(weather(exc, fail), mode=era) as client:
        await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert len(calls) == 1
    assert clock.waits == []


async def test_a_resource_read_is_retried_too(era: str) -> None:
    clock = FakeClock()
    exc = ExceptionMiddleware(retry=retrying(clock, attempts=2))
    calls: list[int] = []
    mcp = FastMCP("weather", middleware=[excepthub_fastmcp.middleware(exc)])

    @mcp.resource("weather://stations")
    def stations() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise Flaky(SECRET)
        return '["LHR"]'

    async with Client(mcp, mode=era) as client:
        result = await client.read_resource_mcp("weather://stations")
    assert [c.text for c in result.contents] == ['["LHR"]']
    assert len(calls) == 2


async def test_a_let_through_error_after_retries_is_answered_by_fastmcp(era: str) -> None:
    clock = FakeClock()
    exc = ExceptionMiddleware(retry=retrying(clock, attempts=3))
    mcp = FastMCP("weather", middleware=[excepthub_fastmcp.middleware(exc)])

    @mcp.tool
    def forecast(city: str) -> Forecast:
        raise MCPError(-32001, "Upstream said no.")  # FastMCP wraps it: its wrapper answers

    async with Client(mcp, mode=era) as client:
        result = await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert result.is_error
    assert text(result) == "Error calling tool 'forecast'"  # FastMCP's wrapper, masked


def test_a_registry_retrying_through_a_broker_is_refused_when_the_middleware_is_built() -> None:
    exc = ExceptionMiddleware(retry=Retry(on=(ConnectionError,), through_broker=True))
    with pytest.raises(RedeliveryUnsupported, match=r"excepthub_fastmcp\.middleware\(\)") as raised:
        excepthub_fastmcp.middleware(exc)
    assert "dataclasses.replace(policy, through_broker=False)" in str(raised.value)


async def test_a_policy_through_a_broker_given_later_fails_the_call_before_the_tool_runs(
    era: str, logs: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    seen: list[BaseException] = []
    exc = ExceptionMiddleware(handlers={Exception: seen.append}, retry=retrying(clock))
    mcp, calls = weather_with_flaky_forecast(exc, failures=1)
    exc.retry = retrying(clock, through_broker=True)  # after FastMCP was built with it
    async with Client(mcp, mode=era) as client:
        with pytest.raises(MCPError) as raised:  # what escapes a middleware: an MCP error
            await client.call_tool_mcp("forecast", {"city": "Oslo"})
    assert calls == []  # neither run nor retried in the process
    assert seen == []  # a set-up error: the catch-all handler never hides it
    assert exc.get_error_stats() == {}
    refusals = [r for r in logs.records if r.exc_info and r.exc_info[0] is RedeliveryUnsupported]
    assert refusals  # the MCP server's own record of what escaped
    assert all(r.name != "excepthub" for r in refusals)
    assert raised.value.error.message in {str(refusals[0].exc_info[1]), "Internal server error"}


# -- no detail reaches the client ------------------------------------------------------------


def handlers_for(path: str) -> ExceptionMiddleware:
    def broken(error: Exception) -> None:
        raise RuntimeError(f"handler bug {SECRET}")

    return {
        "handled": ExceptionMiddleware(handlers={Outage: lambda error: None}),
        "unhandled": ExceptionMiddleware(),
        "handler raises": ExceptionMiddleware(handlers={Outage: broken}),
        "fallback raises": ExceptionMiddleware(publish_handlers={Outage: broken}),
    }[path]


@pytest.mark.parametrize("path", ["handled", "unhandled", "handler raises", "fallback raises"])
@pytest.mark.parametrize("component", ["tool", "template resource", "resource", "prompt"])
async def test_a_secret_in_an_exception_never_reaches_the_client(
    era: str, path: str, component: str
) -> None:
    mcp = weather(handlers_for(path), lambda: Outage(SECRET))
    async with Client(mcp, mode=era) as client:
        try:
            answer: Any = await {
                "tool": lambda: client.call_tool_mcp("forecast", {"city": "Oslo"}),
                "resource": lambda: client.read_resource_mcp("weather://stations"),
                "template resource": lambda: client.read_resource_mcp("weather://stations/LHR"),
                "prompt": lambda: client.get_prompt_mcp("briefing", {"city": "Oslo"}),
            }[component]()
        except MCPError as error:
            answer = error
    assert SECRET not in received(answer)
    assert "Error " in received(answer)


@pytest.mark.parametrize("hook", ["on_call_tool", "on_list_tools", "on_list_resources"])
async def test_a_secret_raised_by_another_middleware_never_reaches_the_client(
    era: str, hook: str
) -> None:
    async def explode(self: Any, context: Any, call_next: Any) -> Any:
        raise RuntimeError(SECRET)

    inner = type("Explode", (Middleware,), {hook: explode})()
    mcp = weather(ExceptionMiddleware(), inner=inner)
    async with Client(mcp, mode=era) as client:
        try:
            answer: Any = await {
                "on_call_tool": lambda: client.call_tool_mcp("forecast", {"city": "Oslo"}),
                "on_list_tools": client.list_tools_mcp,
                "on_list_resources": client.list_resources_mcp,
            }[hook]()
        except MCPError as error:
            answer = error
    assert SECRET not in received(answer)


async def test_without_excepthub_the_legacy_era_leaks_what_escapes() -> None:
    # the baseline: FastMCP and the SDK send str(e) with code 0 on a handshake-era connection
    class Explode(Middleware):
        async def on_list_tools(self, context: Any, call_next: Any) -> Any:
            raise RuntimeError(SECRET)

    mcp = FastMCP("weather", middleware=[Explode()])
    async with Client(mcp, mode="legacy") as client:
        with pytest.raises(MCPError) as raised:
            await client.list_tools_mcp()
    assert (raised.value.error.code, raised.value.error.message) == (0, SECRET)
