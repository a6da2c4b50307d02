"""excepthub_fastmcp.testing: what an MCP client received (the result, `isError` included, or
the protocol error), in memory and over streamable HTTP, so that "this secret reaches no
client" is one assertion."""

from __future__ import annotations

from typing import Any

import pytest
from fastmcp import Client, FastMCP

import excepthub_fastmcp
from excepthub import ExceptionMiddleware
from excepthub.testing import recording
from excepthub_fastmcp.testing import Received, call_tool, get_prompt, read_resource

from ._servers import uvicorn_on_loopback

pytestmark = pytest.mark.anyio
SECRET = 'password="hunter2"'  # quotes: JSON escapes them on the wire


@pytest.fixture
def anyio_backend() -> str:
    """FastMCP's client runs on asyncio only."""
    return "asyncio"


class Masked(Exception):
    pass


class Leaky(Exception):
    pass


def registry() -> ExceptionMiddleware:
    exc = ExceptionMiddleware(logger=None)

    @exc.add_handler(Masked)
    def masked(error: Masked) -> None: ...

    @exc.add_handler(Leaky, publish=True)
    def leaky(error: Leaky) -> excepthub_fastmcp.Denial:  # a planted leak: the message
        return excepthub_fastmcp.deny(f"told: {error}")

    return exc


def server(exc: ExceptionMiddleware) -> FastMCP:
    mcp = FastMCP("shop", middleware=[excepthub_fastmcp.middleware(exc)])

    @mcp.tool
    def charge() -> int:
        raise Masked(SECRET)

    @mcp.tool
    def refund() -> int:
        raise Leaky(SECRET)

    @mcp.tool
    def total() -> int:
        return 7

    @mcp.resource("shop://ledger")
    def ledger() -> str:
        raise RuntimeError(SECRET)  # no handler: FastMCP's masked protocol error

    @mcp.prompt
    def greet() -> str:
        raise Masked(SECRET)

    return mcp


async def test_a_masked_tool_error_carries_no_secret() -> None:
    received = await call_tool(server(registry()), "charge")

    assert received.is_error
    assert received.result is not None
    assert SECRET not in received


async def test_a_secret_a_handler_puts_in_the_result_is_found() -> None:
    received = await call_tool(server(registry()), "refund")

    assert received.is_error
    assert SECRET in received  # JSON-escaped on the wire, found all the same


async def test_a_result_that_is_no_error_is_received_as_such() -> None:
    received = await call_tool(server(registry()), "total")

    assert not received.is_error
    assert received.result is not None
    assert received.result.structured_content == {"result": 7}


async def test_a_resource_error_is_received_as_a_protocol_error_without_the_secret() -> None:
    received = await read_resource(server(registry()), "shop://ledger")

    assert (received.result, received.is_error) == (None, True)
    assert received.error is not None
    assert SECRET not in received


async def test_a_prompt_error_a_handler_takes_carries_no_secret() -> None:
    received = await get_prompt(server(registry()), "greet")

    assert received.is_error
    assert SECRET not in received


def test_a_secret_in_an_error_is_found() -> None:
    from mcp import MCPError

    assert SECRET in Received(error=MCPError(-32603, "boom", {"detail": SECRET}))
    assert "hunter3" not in Received(error=MCPError(-32603, "boom", {"detail": SECRET}))


async def test_an_open_client_is_used_as_it_is() -> None:
    exc = registry()

    async with Client(server(exc)) as client:
        first, second = await call_tool(client, "charge"), await call_tool(client, "total")

    assert (first.is_error, second.is_error) == (True, False)


async def test_a_closed_client_or_something_else_is_refused() -> None:
    with pytest.raises(RuntimeError, match="open the client first"):
        await call_tool(Client(server(registry())), "charge")
    with pytest.raises(TypeError, match=r"a FastMCP server or a fastmcp\.Client"):
        await call_tool("http://127.0.0.1/mcp", "charge")  # type: ignore[arg-type]


async def test_over_streamable_http_the_client_gets_what_it_gets_in_memory() -> None:
    exc = registry()
    mcp = server(exc)
    in_memory = await call_tool(mcp, "refund")

    with uvicorn_on_loopback(mcp.http_app(path="/mcp"), lifespan="on") as port:
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            masked = await call_tool(client, "charge")
            leaked = await call_tool(client, "refund")

    assert SECRET not in masked
    assert SECRET in leaked
    assert _texts(leaked) == _texts(in_memory)


async def test_an_in_memory_call_is_recorded_with_the_task_scope() -> None:
    exc = registry()

    with recording(exc) as events:
        await call_tool(server(exc), "charge")

    assert (type(events.only.error), events.only.framework) == (Masked, "fastmcp")


def _texts(received: Received) -> list[Any]:
    assert received.result is not None
    return [getattr(block, "text", None) for block in received.result.content]  # type: ignore[union-attr]
