"""A handler that declines, end to end in each framework: the next candidate answers, and when
none is left the error goes on exactly as if nothing were registered. FastAPI over httpx's ASGI
transport, FastStream through its TestBroker and a real Redis, FastMCP through its `Client`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import mcp_types
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastmcp import Client, FastMCP
from faststream.redis import RedisBroker, TestRedisBroker
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

import excepthub_fastapi
import excepthub_fastmcp
import excepthub_faststream
from excepthub import Decline, ErrorEvent, ExceptionMiddleware

pytestmark = pytest.mark.anyio
WAIT = 10  # seconds a broker round trip may take before the test fails


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # FastStream and FastMCP's client run on asyncio only


class Upstream(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"upstream answered {status_code}")
        self.status_code = status_code


async def only_429(error: Upstream) -> dict[str, str]:
    """A fallback that takes the 429s and declines the rest."""
    if error.status_code != 429:
        raise Decline
    return {"error": "busy"}


async def sorry(error: Exception) -> dict[str, str]:
    return {"error": "sorry"}


def registries() -> tuple[ExceptionMiddleware, ExceptionMiddleware, list[ErrorEvent]]:
    """A registry whose declining handler has a next candidate, one where it has none, and the
    events of the first."""
    events: list[ErrorEvent] = []
    with_next = ExceptionMiddleware(publish_handlers={Exception: sorry}, on_error=[events.append])
    with_next.add_handler(Upstream, publish=True)(only_429)
    alone = ExceptionMiddleware()
    alone.add_handler(Upstream, publish=True)(only_429)
    return with_next, alone, events


# -- FastAPI --------------------------------------------------------------------------------


def fastapi_app(middleware: list[Middleware], **kwargs: Any) -> FastAPI:
    app = FastAPI(middleware=middleware, **kwargs)

    @app.get("/upstream/{code}")
    async def upstream(code: int) -> None:
        raise Upstream(code)

    return app


async def get(app: FastAPI, path: str) -> tuple[int, str] | type[BaseException]:
    """The status and body a client gets, or the class of what the app raises to the server."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        try:
            response = await http.get(path)
        except Exception as raised:
            return type(raised)
    return response.status_code, response.text


async def test_fastapi_a_declining_handler_passes_the_error_to_the_next_candidate() -> None:
    with_next, _, events = registries()
    app = fastapi_app([excepthub_fastapi.middleware(with_next)])

    assert await get(app, "/upstream/429") == (429, '{"error":"busy"}')
    assert await get(app, "/upstream/500") == (500, '{"error":"sorry"}')
    assert [(e.handler, e.declined) for e in events] == [(only_429, ()), (sorry, (only_429,))]


async def test_fastapi_with_no_candidate_left_the_error_goes_on_as_without_excepthub() -> None:
    _, alone, _ = registries()
    hub = fastapi_app([excepthub_fastapi.middleware(alone)])
    native = fastapi_app([])

    assert await get(hub, "/upstream/500") is await get(native, "/upstream/500") is Upstream
    assert await get(hub, "/upstream/429") == (429, '{"error":"busy"}')


async def test_fastapi_a_status_code_condition_answers_as_a_starlette_status_handler() -> None:
    async def not_found(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"missing": request.url.path}, status_code=404)

    exc = ExceptionMiddleware()
    exc.add_handler(HTTPException, publish=True, when=excepthub_fastapi.status_code(404))(not_found)
    hub = fastapi_app([excepthub_fastapi.middleware(exc)])
    native = fastapi_app([], exception_handlers={404: not_found})

    assert await get(hub, "/nowhere") == await get(native, "/nowhere")
    assert await get(hub, "/nowhere") == (404, '{"missing":"/nowhere"}')
    # FastAPI's own answer when the condition does not hold: 405 for the wrong method
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=hub), base_url="http://test"
    ) as http:
        wrong = await http.post("/upstream/1")
    assert (wrong.status_code, wrong.json()) == (405, {"detail": "Method Not Allowed"})


async def test_fastapi_a_native_status_handler_still_answers_below_the_routes() -> None:
    def teapot(request: Request, error: Exception) -> PlainTextResponse:
        return PlainTextResponse("native 404", status_code=404)

    exc = ExceptionMiddleware(publish_handlers={Exception: sorry})
    app = fastapi_app([excepthub_fastapi.middleware(exc)], exception_handlers={404: teapot})

    assert await get(app, "/nowhere") == (404, "native 404")


def test_status_code_takes_status_codes_only() -> None:
    assert excepthub_fastapi.status_code(404) is excepthub_fastapi.status_code(404)
    assert excepthub_fastapi.status_code(404, 410)(HTTPException(410))
    assert not excepthub_fastapi.status_code(404)(HTTPException(500))
    with pytest.raises(TypeError, match="takes HTTP status codes"):
        excepthub_fastapi.status_code("404")  # type: ignore[arg-type]


# -- FastStream -----------------------------------------------------------------------------


def faststream_broker(exc: ExceptionMiddleware, url: str | None, subject: str) -> RedisBroker:
    middlewares = [excepthub_faststream.middleware(exc)]
    broker = RedisBroker(url or "redis://localhost:6379", middlewares=middlewares)

    @broker.subscriber(subject)
    async def subscriber(body: int) -> str:
        raise Upstream(body)

    return broker


async def test_faststream_a_declining_handler_passes_the_error_on_in_memory() -> None:
    with_next, alone, events = registries()
    async with TestRedisBroker(faststream_broker(with_next, None, "in")) as broker:
        busy = await broker.request(429, "in")
        other = await broker.request(500, "in")
    assert (await busy.decode(), await other.decode()) == ({"error": "busy"}, {"error": "sorry"})
    assert events[-1].declined == (only_429,)

    async with TestRedisBroker(faststream_broker(alone, None, "in")) as broker:
        with pytest.raises(Upstream):  # as FastStream's TestBroker raises an unhandled error
            await broker.request(500, "in")


@pytest.mark.broker
async def test_faststream_a_declining_handler_passes_the_error_on_over_redis(
    require_service: Callable[[str], tuple[str, int]],
) -> None:
    host, port = require_service("redis")
    subject = f"excepthub-decline-{uuid.uuid4().hex[:12]}"
    with_next, _, events = registries()
    broker = faststream_broker(with_next, f"redis://{host}:{port}", subject)

    async with broker:
        await broker.start()
        busy = await broker.request(429, subject, timeout=WAIT)
        other = await broker.request(500, subject, timeout=WAIT)

    assert (await busy.decode(), await other.decode()) == ({"error": "busy"}, {"error": "sorry"})
    assert [e.declined for e in events] == [(), (only_429,)]


# -- FastMCP --------------------------------------------------------------------------------


def mcp_server(exc: ExceptionMiddleware) -> FastMCP:
    mcp = FastMCP("svc", middleware=[excepthub_fastmcp.middleware(exc)])

    @mcp.tool
    def fetch(code: int) -> dict[str, str]:
        raise Upstream(code)

    return mcp


def text(result: mcp_types.CallToolResult) -> str:
    return " ".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))


@pytest.fixture
def fastmcp_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    fastmcp_logger = logging.getLogger("fastmcp")
    fastmcp_logger.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG, logger="fastmcp")
    try:
        yield caplog
    finally:
        fastmcp_logger.removeHandler(caplog.handler)


async def test_fastmcp_a_declining_handler_passes_the_error_to_the_next_candidate() -> None:
    with_next, _, events = registries()

    async with Client(mcp_server(with_next)) as client:
        busy = await client.call_tool_mcp("fetch", {"code": 429})
        other = await client.call_tool_mcp("fetch", {"code": 500})

    assert (busy.is_error, busy.structured_content) == (False, {"error": "busy"})
    assert (other.is_error, other.structured_content) == (False, {"error": "sorry"})
    assert events[-1].declined == (only_429,)


async def test_fastmcp_with_no_candidate_left_the_error_goes_on_as_without_handlers(
    fastmcp_logs: pytest.LogCaptureFixture,
) -> None:
    _, alone, _ = registries()
    answers, records = [], []
    for exc in (alone, ExceptionMiddleware()):  # declining, then nothing registered at all
        fastmcp_logs.clear()
        async with Client(mcp_server(exc)) as client:
            result = await client.call_tool_mcp("fetch", {"code": 500})
        answers.append((result.is_error, text(result)))
        records.append(
            [(r.name, r.levelno) for r in fastmcp_logs.records if r.levelno >= logging.ERROR]
        )

    assert answers[0] == answers[1]
    assert answers[0][0] is True
    assert records[0] == records[1]
    assert records[0]  # FastMCP's own record of the error, once


async def test_fastmcp_an_error_a_condition_takes_is_logged_once_by_excepthub(
    fastmcp_logs: pytest.LogCaptureFixture,
) -> None:
    exc = ExceptionMiddleware()
    exc.add_handler(Upstream, publish=True, when=lambda error: error.status_code == 429)(sorry)

    fastmcp_logs.set_level(logging.INFO, logger="excepthub")
    async with Client(mcp_server(exc)) as client:
        result = await client.call_tool_mcp("fetch", {"code": 429})

    assert result.structured_content == {"error": "sorry"}
    assert [r.name for r in fastmcp_logs.records if r.levelno >= logging.INFO] == ["excepthub"]
