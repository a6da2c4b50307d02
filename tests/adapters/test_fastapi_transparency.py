"""Transparent where it takes nothing: an error no user handler takes goes on exactly as without
excepthub. Most tests build the same app twice, with and without the adapter, and compare what
the client, the server, the test client and FastAPI's telemetry get.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI, Request, WebSocket
from fastapi.exceptions import ResponseValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

import excepthub_fastapi
from excepthub import ExceptionMiddleware

from ._servers import uvicorn_on_loopback

# Features of the newer releases the supported range spans (the matrix's lowest cells lack them)
HAS_TELEMETRY = importlib.util.find_spec("fastapi.telemetry") is not None
TAKES_MAX_BODY_SIZE = "max_body_size" in inspect.signature(FastAPI).parameters

pytestmark = pytest.mark.anyio


class Boom(Exception):
    """An error no framework knows."""


class Item(BaseModel):
    name: str
    price: float


def with_and_without(
    build: Callable[[list[Middleware]], ASGIApp], exc: ExceptionMiddleware | None = None
) -> tuple[ASGIApp, ASGIApp]:
    """The app `build` makes without excepthub, and with its middleware (registry `exc`)."""
    hub = excepthub_fastapi.middleware(exc or ExceptionMiddleware())
    return build([]), build([hub])


@asynccontextmanager
async def client(app: ASGIApp, *, raises: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raises)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def answer(app: ASGIApp, method: str, path: str, **kwargs: Any) -> tuple[Any, ...]:
    """What a client gets (status, content type, body, allow header) when nothing re-raises."""
    async with client(app, raises=False) as http:
        response = await http.request(method, path, **kwargs)
    headers = response.headers
    return response.status_code, headers.get("content-type"), response.text, headers.get("allow")


async def raised(app: ASGIApp, path: str) -> BaseException:
    """What the app re-raises into the server for `GET path`."""
    with pytest.raises(BaseException) as caught:
        async with client(app) as http:
            await http.get(path)
    return caught.value


# -- 1. an unhandled error reaches ServerErrorMiddleware --------------------------------------


def failing_app(middleware: list[Middleware]) -> FastAPI:
    app = FastAPI(middleware=middleware)

    @app.get("/ok")
    async def ok() -> str:
        return "ok"

    @app.get("/boom")
    async def boom() -> None:
        raise Boom("db-7 refused")

    @app.get("/item", response_model=Item)
    async def item() -> Any:
        return {"name": "pen", "price": "not a number"}

    return app


@pytest.mark.parametrize("path", ["/boom", "/item"])
async def test_unhandled_error_is_raised_to_the_server_as_without_excepthub(path: str) -> None:
    native, hub = with_and_without(failing_app, ExceptionMiddleware({KeyError: print}))

    assert type(await raised(hub, path)) is type(await raised(native, path))
    assert await answer(hub, "GET", path) == await answer(native, "GET", path)


def test_unhandled_error_is_raised_by_the_test_client_by_default() -> None:
    native, hub = with_and_without(failing_app)

    for app in (native, hub):
        with TestClient(app) as http, pytest.raises(ResponseValidationError):
            http.get("/item")


class Spans(trace.TracerProvider):
    """A tracer provider that keeps the attributes and status each span ended with."""

    def __init__(self) -> None:
        self.ended: list[tuple[dict[str, Any], StatusCode]] = []

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _Tracer(self.ended)


class _Tracer(trace.NoOpTracer):
    def __init__(self, ended: list[tuple[dict[str, Any], StatusCode]]) -> None:
        self.ended = ended

    def start_span(self, name: str, *args: Any, **kwargs: Any) -> trace.Span:
        return _Span(self.ended, dict(kwargs.get("attributes") or {}))


class _Span(trace.NonRecordingSpan):
    def __init__(self, ended: list[tuple[dict[str, Any], StatusCode]], attributes: dict[str, Any]):
        super().__init__(trace.INVALID_SPAN_CONTEXT)
        self.ended, self.attributes, self.status = ended, attributes, StatusCode.UNSET

    def is_recording(self) -> bool:
        return True

    def set_attributes(self, attributes: Any) -> None:
        self.attributes.update(attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        self.status = status.status_code if isinstance(status, Status) else status

    def end(self, end_time: int | None = None) -> None:
        self.ended.append((self.attributes, self.status))


@pytest.mark.skipif(not HAS_TELEMETRY, reason="FastAPI before its built-in telemetry")
async def test_unhandled_error_reaches_fastapis_telemetry_with_its_error_type() -> None:
    ended = {}
    hub = excepthub_fastapi.middleware(ExceptionMiddleware({KeyError: print}))
    for name, middleware in [("native", []), ("hub", [hub])]:
        spans = Spans()
        app = FastAPI(middleware=middleware, telemetry={"tracer_provider": spans})

        @app.get("/boom")
        async def boom() -> None:
            raise Boom()

        await raised(app, "/boom")
        ended[name] = [(a.get("error.type"), status) for a, status in spans.ended]

    assert ended["hub"] == ended["native"]
    assert (f"{__name__}.Boom", StatusCode.ERROR) in ended["hub"]


# -- 2. after the response started, the native 500 handler is still called ------------------


def late_failing_app(seen: list[BaseException]) -> Callable[[list[Middleware]], FastAPI]:
    def build(middleware: list[Middleware]) -> FastAPI:
        app = FastAPI(middleware=middleware)

        @app.exception_handler(Exception)
        async def last_resort(request: Request, error: Exception) -> PlainTextResponse:
            seen.append(error)
            return PlainTextResponse("never sent", status_code=500)

        def task() -> None:
            raise Boom("late")

        @app.get("/late")
        async def late(tasks: BackgroundTasks) -> dict[str, bool]:
            tasks.add_task(task)
            return {"ok": True}

        return app

    return build


async def test_native_500_handler_sees_an_error_after_the_response_as_without_excepthub() -> None:
    native_seen: list[BaseException] = []
    hub_seen: list[BaseException] = []
    native = late_failing_app(native_seen)([])
    hub = late_failing_app(hub_seen)([excepthub_fastapi.middleware(ExceptionMiddleware())])

    assert await answer(hub, "GET", "/late") == await answer(native, "GET", "/late")
    assert [(type(e), e.args) for e in hub_seen] == [(type(e), e.args) for e in native_seen]
    assert [type(e) for e in hub_seen] == [Boom]  # not "response already started"


def raw_app_answering_then_raising(middleware: list[Middleware]) -> FastAPI:
    """A mounted plain ASGI app (no route of FastAPI's) that answers, then raises."""
    app = FastAPI(middleware=middleware)

    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("sent", status_code=201)(scope, receive, send)
        raise HTTPException(409)

    app.mount("/raw", raw)
    return app


async def test_error_below_the_routes_after_the_response_goes_on_as_starlette_raises_it() -> None:
    native, hub = with_and_without(raw_app_answering_then_raising)

    native_error, hub_error = await raised(native, "/raw/x"), await raised(hub, "/raw/x")

    assert (type(hub_error), hub_error.args) == (type(native_error), native_error.args)
    assert type(hub_error.__cause__) is type(native_error.__cause__) is HTTPException


def test_unhandled_websocket_error_goes_on_to_the_server_as_without_excepthub() -> None:
    def build(middleware: list[Middleware]) -> FastAPI:
        app = FastAPI(middleware=middleware)

        @app.websocket("/ws")
        async def chat(websocket: WebSocket) -> None:
            await websocket.accept()
            raise Boom("after accept")

        return app

    for app in with_and_without(build, ExceptionMiddleware({KeyError: print})):
        with (
            TestClient(app) as http,
            pytest.raises(Boom, match="after accept"),
            http.websocket_connect("/ws") as ws,
        ):
            ws.receive()


# -- 3. Starlette-style handlers come over whatever the first parameter is called ------------


@pytest.mark.parametrize("style", ["_", "req", "conn", "unannotated"])
async def test_starlette_style_handler_comes_over_unchanged(style: str) -> None:
    def annotated(_: Request, exc: ResponseValidationError) -> JSONResponse:
        return JSONResponse({"by": type(_).__name__}, status_code=502)

    def req(req: Request, exc: ResponseValidationError) -> JSONResponse:
        return JSONResponse({"by": type(req).__name__}, status_code=502)

    def conn(conn: Request, exc: ResponseValidationError) -> JSONResponse:
        return JSONResponse({"by": type(conn).__name__}, status_code=502)

    def unannotated(request, exc):  # type: ignore[no-untyped-def]
        return JSONResponse({"by": type(request).__name__}, status_code=502)

    handlers = {"_": annotated, "req": req, "conn": conn, "unannotated": unannotated}
    exc = ExceptionMiddleware()
    exc.add_handler(ResponseValidationError, publish=True)(handlers[style])
    app = failing_app([excepthub_fastapi.middleware(exc)])

    async with client(app) as http:
        response = await http.get("/item")

    assert (response.status_code, response.json()) == (502, {"by": "Request"})


# -- 4. middleware built with functools.wraps, and middleware hiding its inner app -----------


def wrapping(app: ASGIApp) -> ASGIApp:
    """A middleware factory as many are written: `functools.wraps` copies `app`'s attributes,
    its own inner `app` included, onto the wrapper."""

    @functools.wraps(app)
    async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
        await app(scope, receive, send)

    return wrapper


async def test_middleware_built_with_functools_wraps_listed_after_excepthub_works() -> None:
    exc = ExceptionMiddleware(publish_handlers={Boom: lambda error: {"taken": True}})
    app = failing_app([excepthub_fastapi.middleware(exc), Middleware(wrapping)])

    async with client(app) as http:
        response = await http.get("/boom")

    assert (response.status_code, response.json()) == (500, {"taken": True})


def hiding(app: ASGIApp) -> ASGIApp:
    """A middleware factory that keeps its inner app in a closure, out of sight."""

    async def hidden_app_middleware(scope: Scope, receive: Receive, send: Send) -> None:
        await app(scope, receive, send)

    return hidden_app_middleware


async def test_middleware_hiding_its_inner_app_leaves_starlettes_answers_as_they_are() -> None:
    native, hub = with_and_without(lambda mw: failing_app([*mw, Middleware(hiding)]))

    for method, path in [("GET", "/missing"), ("POST", "/ok"), ("GET", "/item")]:
        assert await answer(hub, method, path) == await answer(native, method, path)


async def test_middleware_hiding_its_inner_app_still_lets_excepthub_take_what_reaches_it() -> None:
    exc = ExceptionMiddleware(publish_handlers={Boom: lambda error: {"taken": True}})
    app = failing_app([excepthub_fastapi.middleware(exc), Middleware(hiding)])

    async with client(app) as http:
        response = await http.get("/boom")

    assert (response.status_code, response.json()) == (500, {"taken": True})


# -- 5. plain Starlette apps get Starlette's own answers -------------------------------------


def starlette_app(middleware: list[Middleware]) -> Starlette:
    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("home")

    async def teapot(request: Request) -> PlainTextResponse:
        raise HTTPException(418, "short and stout", headers={"X-Tea": "earl grey"})

    async def empty(request: Request) -> PlainTextResponse:
        raise HTTPException(304)

    async def boom(request: Request) -> PlainTextResponse:
        raise Boom()

    routes = [
        Route("/", home, methods=["GET"]),
        Route("/teapot", teapot),
        Route("/empty", empty),
        Route("/boom", boom),
    ]
    return Starlette(routes=routes, middleware=middleware)


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/"), ("GET", "/missing"), ("GET", "/teapot"), ("GET", "/empty"), ("GET", "/boom")],
)
async def test_starlette_app_gets_starlettes_own_answers(method: str, path: str) -> None:
    native, hub = with_and_without(starlette_app, ExceptionMiddleware({KeyError: print}))

    assert await answer(hub, method, path) == await answer(native, method, path)


async def test_starlette_405_is_plain_text_not_fastapis_json() -> None:
    _, hub = with_and_without(starlette_app)

    status, content_type, body, allow = await answer(hub, "POST", "/")

    assert (status, content_type, body) == (405, "text/plain; charset=utf-8", "Method Not Allowed")
    assert set(allow.split(", ")) == {"GET", "HEAD"}


async def test_starlette_app_error_reaches_the_users_handler() -> None:
    exc = ExceptionMiddleware(publish_handlers={Boom: lambda error: {"taken": True}})
    app = starlette_app([excepthub_fastapi.middleware(exc)])

    async with client(app) as http:
        response = await http.get("/boom")

    assert (response.status_code, response.json()) == (500, {"taken": True})


# -- 6. exception groups of Starlette's body limit -------------------------------------------


def limited_app(middleware: list[Middleware]) -> FastAPI:
    """Bodies read in a task group, as concurrent middleware does: the limit's error arrives
    inside an exception group, alone or beside another error."""
    app = FastAPI(middleware=middleware, max_body_size=8)

    @app.post("/alone")
    async def alone(request: Request) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(request.body)

    @app.post("/mixed")
    async def mixed(request: Request) -> None:
        async def fail() -> None:
            raise Boom()

        async with anyio.create_task_group() as tg:
            tg.start_soon(request.body)
            tg.start_soon(fail)

    return app


@pytest.mark.skipif(not TAKES_MAX_BODY_SIZE, reason="FastAPI before max_body_size")
@pytest.mark.parametrize("path", ["/alone", "/mixed"])
async def test_body_limit_groups_go_on_as_without_excepthub(path: str) -> None:
    native, hub = with_and_without(limited_app, ExceptionMiddleware({KeyError: print}))
    body = {"content": b"x" * 64}

    assert await answer(hub, "POST", path, **body) == await answer(native, "POST", path, **body)


@pytest.mark.skipif(not TAKES_MAX_BODY_SIZE, reason="FastAPI before max_body_size")
async def test_body_limit_group_alone_is_answered_413_as_without_excepthub() -> None:
    _, hub = with_and_without(limited_app)

    status, *_ = await answer(hub, "POST", "/alone", content=b"x" * 64)

    assert status == 413


# -- over the wire ----------------------------------------------------------------------------


LATE_SEEN: list[BaseException] = []  # what the app's native Exception handler was called with


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    app = failing_app([excepthub_fastapi.middleware(ExceptionMiddleware({KeyError: print}))])

    @app.exception_handler(Exception)
    async def last_resort(request: Request, error: Exception) -> PlainTextResponse:
        LATE_SEEN.append(error)
        return PlainTextResponse("Internal Server Error", status_code=500)

    def task() -> None:
        raise Boom("late")

    @app.get("/late")
    async def late(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(task)
        return {"ok": True}

    with uvicorn_on_loopback(app, access_log=False) as port:
        yield f"http://127.0.0.1:{port}"


async def test_error_after_the_response_over_the_wire_reaches_the_native_handler_and_uvicorn(
    served: str, caplog: pytest.LogCaptureFixture
) -> None:
    LATE_SEEN.clear()
    async with httpx.AsyncClient(base_url=served, timeout=10) as http:
        response = await http.get("/late")
    async with httpx.AsyncClient(base_url=served, timeout=10) as fresh:  # the call has ended
        assert (await fresh.get("/ok")).status_code == 200

    assert (response.status_code, response.json()) == (200, {"ok": True})
    assert [(type(e), str(e)) for e in LATE_SEEN] == [(Boom, "late")]
    [record] = [r for r in caplog.records if r.name == "uvicorn.error"]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], Boom)


async def test_unhandled_error_over_the_wire_is_answered_by_starlette_and_logged_by_uvicorn(
    served: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with httpx.AsyncClient(base_url=served, timeout=10) as http:
        response = await http.get("/boom")
    # uvicorn logs a call's error in the event-loop step the call ends in, before the next one
    async with httpx.AsyncClient(base_url=served, timeout=10) as fresh:
        assert (await fresh.get("/ok")).status_code == 200

    assert (response.status_code, response.text) == (500, "Internal Server Error")
    assert [r.name for r in caplog.records if r.name.startswith("excepthub")] == []
    [record] = [r for r in caplog.records if r.name == "uvicorn.error"]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], Boom)


# -- Starlette's handler tables out of sight (feature detection's other branch) ---------------


async def test_without_starlettes_handler_tables_errors_still_go_on_as_without_excepthub(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # as a Starlette that kept its ExceptionMiddleware's tables elsewhere would leave them
    monkeypatch.setattr(excepthub_fastapi._middleware, "_starlette_handlers", lambda layer: None)
    native, hub = with_and_without(late_failing_app([]))
    native_raw, hub_raw = with_and_without(raw_app_answering_then_raising)

    assert await answer(hub, "GET", "/late") == await answer(native, "GET", "/late")
    assert type(await raised(hub, "/late")) is type(await raised(native, "/late")) is Boom
    hub_error, native_error = await raised(hub_raw, "/raw/x"), await raised(native_raw, "/raw/x")
    assert type(hub_error.__cause__) is type(native_error.__cause__) is HTTPException
