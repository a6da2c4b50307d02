"""excepthub's showcase: one registry serving FastAPI, FastStream and FastMCP in one process.

Each framework is driven through its real client (HTTP over loopback, the broker, the MCP
client) and made to fail in several ways; the showcase prints what the client received and
which handler took the error.

    python examples/showcase.py                                  # FastStream's in-memory broker
    python examples/showcase.py --redis redis://127.0.0.1:6379   # a real Redis instead
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
import httpx
import uvicorn
from fastapi import FastAPI
from fastmcp import Client, FastMCP
from faststream.redis import RedisBroker, TestRedisBroker

import excepthub_fastapi
import excepthub_fastmcp
import excepthub_faststream
from excepthub import ErrorEvent, ExceptionMiddleware

# -- the shop's errors, and its one registry ---------------------------------------------


class ShopError(Exception):
    """Anything that goes wrong with an order."""


class OutOfStock(ShopError):
    status_code = 409  # what FastAPI answers with a fallback value for it: a conflict

    def __init__(self, sku: str) -> None:
        super().__init__(f"{sku} is out of stock")
        self.sku = sku


class PaymentDeclined(ShopError):
    status_code = 422  # the order was understood, and cannot be processed


SECRET = "db-password=hunter2"  # put in exception messages: it must reach no client
exc = ExceptionMiddleware()


@exc.add_handler(OutOfStock, publish=True)
async def out_of_stock(error: OutOfStock) -> dict[str, str]:
    return {"error": "out of stock", "sku": error.sku}


@exc.add_handler(ShopError, publish=True)
async def order_failed(error: ShopError) -> dict[str, str]:
    return {"error": "the order could not be completed"}


@exc.add_handler(LookupError)
async def alert_on_call(error: LookupError, correlation_id: str | None = None) -> None:
    """A side effect (page someone); the error counts as handled."""


taken_by: list[ErrorEvent] = []
exc.on_error(taken_by.append)


async def order(sku: str) -> dict[str, str]:
    """The business logic every framework runs: fails differently per sku."""
    if sku == "out-of-stock":
        raise OutOfStock(sku)
    if sku == "declined":
        raise PaymentDeclined(f"card declined ({SECRET})")
    if sku == "in-a-task-group":  # an ExceptionGroup, reaching the handler inside it
        async with anyio.create_task_group() as tg:
            tg.start_soon(_fail_with, OutOfStock(sku))
    if sku == "missing":
        raise KeyError(f"no sku ({SECRET})")
    if sku == "crash":
        raise RuntimeError(f"database down ({SECRET})")
    return {"ordered": sku}


async def _fail_with(error: Exception) -> None:
    raise error


CASES = ["book", "out-of-stock", "declined", "in-a-task-group", "missing", "crash"]
Call = Callable[[str], Awaitable[str]]  # place one order through a framework's real client

# -- FastAPI, served by uvicorn on loopback ------------------------------------------------

api = FastAPI(middleware=[excepthub_fastapi.middleware(exc)])


@api.post("/orders/{sku}")
async def http_order(sku: str) -> dict[str, str]:
    return await order(sku)


@asynccontextmanager
async def fastapi_client() -> AsyncIterator[Call]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(api, host="127.0.0.1", port=port, log_level="critical")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def call(sku: str) -> str:
                response = await client.post(f"/orders/{sku}")
                return f"{response.status_code} {response.text}"

            yield call
    finally:
        server.should_exit = True
        await task


# -- FastStream, on its in-memory broker or a real Redis ----------------------------------


@asynccontextmanager
async def faststream_client(redis_url: str | None) -> AsyncIterator[Call]:
    broker = RedisBroker(
        redis_url or "redis://127.0.0.1:6379", middlewares=[excepthub_faststream.middleware(exc)]
    )

    @broker.subscriber("orders")
    async def on_order(sku: str) -> dict[str, str]:
        return await order(sku)

    async def call(sku: str) -> str:
        try:
            with anyio.fail_after(1):
                reply = await broker.request(sku, "orders")
        except Exception as error:  # no reply: a real broker times out, the in-memory one raises
            return f"no reply ({type(error).__name__})"
        body = await reply.decode()
        return f"reply {body}" if body else "acked, no reply"

    if redis_url is None:
        async with TestRedisBroker(broker):
            yield call
    else:
        async with broker:
            await broker.start()
            yield call


# -- FastMCP, through its in-memory client --------------------------------------------------

mcp = FastMCP("shop", middleware=[excepthub_fastmcp.middleware(exc)])


@mcp.tool
async def place_order(sku: str) -> dict[str, str]:
    """Order one item."""
    return await order(sku)


@asynccontextmanager
async def fastmcp_client() -> AsyncIterator[Call]:
    async with Client(mcp) as client:

        async def call(sku: str) -> str:
            result = await client.call_tool_mcp("place_order", {"sku": sku})
            text = " ".join(getattr(c, "text", "") for c in result.content)
            return f"{'is_error ' if result.is_error else ''}{text}"

        yield call


# -- the report ----------------------------------------------------------------------------


async def report(name: str, client: AbstractAsyncContextManager[Call]) -> bool:
    """Place every order through `client`; print what came back and who took the error."""
    print(f"\n{name}")
    leaked = False
    async with client as call:
        for sku in CASES:
            taken_by.clear()
            received = await call(sku)
            took = ", ".join(_outcome(event) for event in taken_by)
            print(f"  {sku:<16} client got: {received[:80]}")
            print(f"  {'':<16} excepthub:  {took or '-'}")
            leaked |= SECRET in received
    return leaked


def _outcome(event: ErrorEvent) -> str:
    """`RuntimeError unhandled`, `OutOfStock published by out_of_stock`: as excepthub logs it."""
    outcome = f"{type(event.error).__name__} {event.outcome}"
    handler = event.handler
    return outcome if handler is None else f"{outcome} by {getattr(handler, '__name__', handler)}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--redis", metavar="URL", help="a real Redis instead of the in-memory broker"
    )
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # excepthub logs each error once; here we print instead
    print("One excepthub registry, three frameworks, the same orders.")
    leaked = await report("FastAPI (uvicorn on 127.0.0.1, httpx)", fastapi_client())
    where = f"Redis at {args.redis}" if args.redis else "the in-memory broker"
    leaked |= await report(f"FastStream ({where}, request/reply)", faststream_client(args.redis))
    leaked |= await report("FastMCP (the in-memory MCP client)", fastmcp_client())
    print("\nget_error_stats():")
    for name, counts in exc.get_error_stats().items():
        print(f"  {name:<28} {counts}")
    print(f"\nThe secret in the exception messages reached a client: {'YES' if leaked else 'no'}")
    if leaked:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
