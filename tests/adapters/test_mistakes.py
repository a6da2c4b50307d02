"""Easy mistakes with a registry, made against the real frameworks: each message says the fix.

The registry itself given where a framework takes a middleware fails where that framework
first touches it; a handler parameter the framework cannot fill is refused when the adapter
is built; a fallback value the framework cannot send is counted `failed`, never `published`.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fastmcp import Client, FastMCP
from faststream import BaseMiddleware
from faststream.redis import RedisBroker, TestRedisBroker
from mcp import MCPError

import excepthub_fastapi
import excepthub_fastmcp
import excepthub_faststream
from excepthub import ExceptionMiddleware

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """FastMCP's client and FastStream's test brokers run on asyncio."""
    return "asyncio"


class OutOfStock(LookupError):
    """A business error."""


async def typo(error: Exception, requets: Any) -> None:
    """`request` misspelt."""


async def stock_message(error: OutOfStock, message: Any) -> None:
    """A side effect that needs FastStream's message: it runs only where one is supplied."""
    seen.append(("message", message))


async def not_found(error: LookupError) -> dict[str, str]:
    return {"detail": "not found"}


seen: list[tuple[str, Any]] = []

# -- FastAPI ---------------------------------------------------------------------------------


def test_fastapi_given_the_registry_itself_fails_at_startup_naming_the_plug_in() -> None:
    app = FastAPI(middleware=[ExceptionMiddleware()])  # type: ignore[list-item]

    with pytest.raises(TypeError) as caught, TestClient(app):
        pass

    assert str(caught.value) == (
        "an excepthub.ExceptionMiddleware is a registry, not a middleware: plug it into "
        "FastAPI with FastAPI(middleware=[excepthub_fastapi.middleware(exc)])"
    )


def test_fastapi_plug_in_refuses_a_parameter_it_cannot_fill_with_the_nearest_name() -> None:
    exc = ExceptionMiddleware(handlers={KeyError: typo})

    with pytest.raises(TypeError) as caught:
        excepthub_fastapi.middleware(exc)

    assert "nothing fills its parameter 'requets'" in str(caught.value)
    assert "fastapi supplies correlation_id, request, websocket" in str(caught.value)
    assert "did you mean 'request'?" in str(caught.value)


def test_fastapi_once_plugged_a_registration_refuses_a_parameter_it_cannot_fill() -> None:
    exc = ExceptionMiddleware()
    FastAPI(middleware=[excepthub_fastapi.middleware(exc)])

    with pytest.raises(TypeError, match="did you mean 'request'"):
        exc.add_handler(KeyError)(typo)


def test_fastapi_router_handlers_refuses_it_too() -> None:
    with pytest.raises(TypeError, match="did you mean 'request'"):
        excepthub_fastapi.router_handlers(ExceptionMiddleware(handlers={KeyError: typo}))


async def test_fastapi_a_fallback_value_json_cannot_encode_is_a_masked_500_counted_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    exc = ExceptionMiddleware(publish_handlers={OutOfStock: lambda error: {"sku": object()}})
    app = FastAPI(middleware=[excepthub_fastapi.middleware(exc)])

    @app.get("/order")
    async def order() -> None:
        raise OutOfStock("sku-1")

    transport = httpx.ASGITransport(app=app)  # raises what the app re-raises into the server
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/order")

    assert (response.status_code, response.text) == (500, "Internal Server Error")
    assert exc.get_error_stats() == {f"{__name__}.OutOfStock": {"failed": 1}}
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]  # logged once
    assert record.name == "excepthub"
    assert "OutOfStock failed by" in record.getMessage()
    assert "its value could not be sent" in record.getMessage()


# -- FastStream ------------------------------------------------------------------------------


async def test_faststream_given_the_registry_itself_fails_at_the_first_message() -> None:
    broker = RedisBroker(middlewares=[ExceptionMiddleware()])  # type: ignore[list-item]

    @broker.subscriber("orders")
    async def on_order(sku: str) -> str:
        return sku

    async with TestRedisBroker(broker) as br:
        with pytest.raises(TypeError) as caught:
            await br.publish("sku-1", "orders")

    assert str(caught.value) == (
        "an excepthub.ExceptionMiddleware is a registry, not a middleware: plug it into "
        "FastStream with Broker(middlewares=[excepthub_faststream.middleware(exc)]), or build "
        "it as excepthub_faststream.ExceptionMiddleware"
    )


async def typo_message(error: Exception, mesage: Any) -> None:
    """`message` misspelt."""


def test_faststream_plug_in_refuses_a_parameter_it_cannot_fill_with_the_nearest_name() -> None:
    exc = ExceptionMiddleware(handlers={KeyError: typo_message})

    with pytest.raises(TypeError) as caught:
        excepthub_faststream.middleware(exc)

    assert "nothing fills its parameter 'mesage'" in str(caught.value)
    assert "faststream supplies context, correlation_id, message" in str(caught.value)
    assert "did you mean 'message'?" in str(caught.value)


def test_faststreams_drop_in_refuses_it_when_it_is_built() -> None:
    with pytest.raises(TypeError, match="did you mean 'message'"):
        excepthub_faststream.ExceptionMiddleware(handlers={KeyError: typo_message})


async def test_faststreams_drop_in_is_still_a_faststream_middleware() -> None:
    exc = excepthub_faststream.ExceptionMiddleware(publish_handlers={OutOfStock: not_found})
    broker = RedisBroker(middlewares=[exc])

    @broker.subscriber("orders")
    async def on_order(sku: str) -> str:
        raise OutOfStock(sku)

    async with TestRedisBroker(broker) as br:
        reply = await br.request("sku-1", "orders")

    assert await reply.decode() == {"detail": "not found"}
    assert isinstance(exc(None, context=broker.context), BaseMiddleware)


# -- FastMCP ---------------------------------------------------------------------------------


async def test_fastmcp_given_the_registry_itself_fails_naming_the_plug_in(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mcp = FastMCP("shop", middleware=[ExceptionMiddleware()])  # type: ignore[list-item]
    fix = "FastMCP(middleware=[excepthub_fastmcp.middleware(exc)])"

    with pytest.raises(MCPError) as caught:  # the handshake era: the client is told
        async with Client(mcp, mode="legacy"):
            pass
    assert fix in str(caught.value)

    with pytest.raises(MCPError):  # the modern era: the server's log says it
        async with Client(mcp, mode="auto"):
            pass
    logged = [r for r in caplog.records if r.exc_info and fix in str(r.exc_info[1])]
    assert logged


async def typo_context(error: Exception, contxt: Any) -> None:
    """`context` misspelt."""


def test_fastmcp_plug_in_refuses_a_parameter_it_cannot_fill_with_the_nearest_name() -> None:
    exc = ExceptionMiddleware(handlers={KeyError: typo_context})

    with pytest.raises(TypeError) as caught:
        excepthub_fastmcp.middleware(exc)

    assert "nothing fills its parameter 'contxt'" in str(caught.value)
    assert "fastmcp supplies context, correlation_id, fastmcp_context" in str(caught.value)
    assert "did you mean 'context'?" in str(caught.value)


# -- one registry, two frameworks ------------------------------------------------------------


async def test_a_handler_for_faststreams_message_runs_for_faststream_and_not_for_fastapi() -> None:
    seen.clear()
    exc = ExceptionMiddleware(
        handlers={OutOfStock: stock_message}, publish_handlers={KeyError: not_found}
    )
    app = FastAPI(middleware=[excepthub_fastapi.middleware(exc)])  # `message`: not FastAPI's
    broker = RedisBroker(middlewares=[excepthub_faststream.middleware(exc)])

    @app.get("/order")
    async def order() -> None:
        raise OutOfStock("sku-1")

    @broker.subscriber("orders")
    async def on_order(sku: str) -> None:
        raise OutOfStock(sku)

    async with TestRedisBroker(broker) as br:
        await br.publish("sku-1", "orders")
    assert [name for name, _ in seen] == ["message"]

    seen.clear()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/order")
    assert response.status_code == 500  # no FastAPI handler takes it: as without excepthub
    assert seen == []
