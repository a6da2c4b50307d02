"""FastAPI's default handlers wrapped by someone else: by a `functools.wraps` decorator, or by
sentry-sdk's Starlette integration, which wraps every handler in Starlette's
`ExceptionMiddleware` without saying what it wraps. excepthub still takes the defaults' place
(the user's handlers for `HTTPException` and `RequestValidationError` run, the app is FastAPI),
and what no user handler takes is answered by the wrapper, as without excepthub.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.websockets import WebSocketClose, WebSocketDisconnect

import excepthub_fastapi
from excepthub import ErrorEvent, ExceptionMiddleware

from ._servers import uvicorn_on_loopback
from ._telemetry import exception_types, only_in_child, run_in_child, sentry

pytestmark = pytest.mark.anyio

TEAPOT_TEXT = "I'm a Teapot"


def build(middleware: list[Middleware], setup: Callable[[FastAPI], Any] | None = None) -> FastAPI:
    """An app whose `/teapot` raises `HTTPException(418)`, `/down` `HTTPException(503)`, and
    `/items/{n}` wants an int."""
    app = FastAPI(middleware=middleware)

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(418)

    @app.get("/down")
    async def down() -> None:
        raise HTTPException(503, "down for maintenance")

    @app.get("/items/{n}")
    async def item(n: int) -> int:
        return n

    if setup is not None:
        setup(app)
    return app


def answering(exc: ExceptionMiddleware) -> ExceptionMiddleware:
    """`exc` with publish handlers for `HTTPException` and `RequestValidationError`."""

    @exc.add_handler(HTTPException, publish=True)
    async def http_error(error: HTTPException) -> JSONResponse:
        return JSONResponse({"excepthub": error.status_code}, status_code=error.status_code)

    @exc.add_handler(RequestValidationError, publish=True)
    async def invalid(error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"excepthub": "invalid"}, status_code=400)

    return exc


def counted(calls: list[str]) -> Callable[[FastAPI], None]:
    """Wrap each of the app's handlers in a `functools.wraps` decorator that counts its calls
    and marks its response, as a user's decorator may."""

    def wrap(handler: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(handler)
        async def wrapper(request: Request, error: Exception) -> Any:
            calls.append(type(error).__name__)
            response = await handler(request, error)
            response.headers["X-Wrapped"] = "yes"
            return response

        return wrapper

    def setup(app: FastAPI) -> None:
        for key, handler in list(app.exception_handlers.items()):
            app.exception_handlers[key] = wrap(handler)

    return setup


async def asgi_get(app: Starlette, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.get(path)


async def served_get(app: Starlette, path: str) -> httpx.Response:
    """`GET path` from a real client to the app on uvicorn."""
    with uvicorn_on_loopback(app, access_log=False) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            return await http.get(path)


# -- a functools.wraps wrapper ----------------------------------------------------------------


async def test_the_users_handlers_take_the_place_of_wrapped_defaults() -> None:
    calls: list[str] = []
    events: list[ErrorEvent] = []
    exc = answering(ExceptionMiddleware(on_error=[events.append]))
    app = build([excepthub_fastapi.middleware(exc)], counted(calls))

    teapot = await asgi_get(app, "/teapot")
    invalid = await asgi_get(app, "/items/x")

    assert (teapot.status_code, teapot.json()) == (418, {"excepthub": 418})
    assert (invalid.status_code, invalid.json()) == (400, {"excepthub": "invalid"})
    assert calls == []  # the wrapped defaults took nothing
    assert [e.framework for e in events] == ["fastapi", "fastapi"]


@pytest.mark.parametrize("path", ["/teapot", "/down", "/items/x"])
async def test_what_no_handler_takes_is_answered_by_the_wrapper_as_without_excepthub(
    path: str,
) -> None:
    native_calls: list[str] = []
    hub_calls: list[str] = []
    native = await asgi_get(build([], counted(native_calls)), path)
    with_hub = await asgi_get(
        build([excepthub_fastapi.middleware(ExceptionMiddleware())], counted(hub_calls)), path
    )

    assert (with_hub.status_code, with_hub.json()) == (native.status_code, native.json())
    assert with_hub.headers["X-Wrapped"] == native.headers["X-Wrapped"] == "yes"
    assert hub_calls == native_calls != []


async def test_a_wrapped_handler_of_the_users_own_stays_and_wins() -> None:
    def setup(app: FastAPI) -> None:
        @app.exception_handler(HTTPException)
        async def own(request: Request, error: HTTPException) -> JSONResponse:
            return JSONResponse({"own": error.status_code}, status_code=error.status_code)

    calls: list[str] = []

    def both(app: FastAPI) -> None:
        setup(app)
        counted(calls)(app)

    exc = answering(ExceptionMiddleware())
    response = await asgi_get(build([excepthub_fastapi.middleware(exc)], both), "/teapot")

    assert (response.status_code, response.json()) == (418, {"own": 418})
    assert calls == ["HTTPException"]


# -- sentry-sdk's Starlette integration ------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # one backend is enough: the server runs on its own loop, in a thread


@only_in_child
async def test_with_sentry_the_users_handlers_take_fastapis_errors() -> None:
    events: list[ErrorEvent] = []
    exc = answering(ExceptionMiddleware(on_error=[events.append]))
    with sentry():
        app = build([excepthub_fastapi.middleware(exc)])
        teapot = await served_get(app, "/teapot")
        invalid = await served_get(app, "/items/x")

    assert (teapot.status_code, teapot.json()) == (418, {"excepthub": 418})
    assert (invalid.status_code, invalid.json()) == (400, {"excepthub": "invalid"})
    assert [e.framework for e in events] == ["fastapi", "fastapi"]


@only_in_child
@pytest.mark.parametrize("path", ["/teapot", "/down", "/items/x"])
async def test_with_sentry_what_no_handler_takes_goes_on_as_without_excepthub(path: str) -> None:
    with sentry() as native_events:
        native = await served_get(build([]), path)
    with sentry() as hub_events:
        exc = ExceptionMiddleware({KeyError: print})
        with_hub = await served_get(build([excepthub_fastapi.middleware(exc)]), path)

    assert (with_hub.status_code, with_hub.json()) == (native.status_code, native.json())
    assert [exception_types(e) for e in hub_events.events] == [
        exception_types(e) for e in native_events.events
    ]
    if path == "/down":  # Sentry's wrapper reports a 5xx HTTPException it answers
        assert [exception_types(e) for e in hub_events.events] == [["HTTPException"]]


@only_in_child
async def test_with_sentry_the_users_own_handler_for_a_framework_class_stays() -> None:
    def setup(app: FastAPI) -> None:
        @app.exception_handler(HTTPException)
        async def own(request: Request, error: HTTPException) -> JSONResponse:
            return JSONResponse({"own": error.status_code}, status_code=error.status_code)

    exc = answering(ExceptionMiddleware())
    with sentry():
        teapot = await served_get(build([excepthub_fastapi.middleware(exc)], setup), "/teapot")

    assert (teapot.status_code, teapot.json()) == (418, {"own": 418})


def starlette_app(middleware: list[Middleware]) -> Starlette:
    """A plain Starlette app whose `/teapot` raises `HTTPException(418)`."""

    async def teapot(request: Request) -> PlainTextResponse:
        raise StarletteHTTPException(418)

    return Starlette(routes=[Route("/teapot", teapot)], middleware=middleware)


@only_in_child
async def test_with_sentry_a_starlette_app_is_starlette_and_answers_as_starlette() -> None:
    events: list[ErrorEvent] = []
    exc = ExceptionMiddleware(on_error=[events.append])
    with sentry():
        native = await served_get(starlette_app([]), "/teapot")
        plain = await served_get(starlette_app([excepthub_fastapi.middleware(exc)]), "/teapot")

        @exc.add_handler(StarletteHTTPException, publish=True)
        async def http_error(error: StarletteHTTPException) -> JSONResponse:
            return JSONResponse({"excepthub": error.status_code}, status_code=error.status_code)

        taken = await served_get(starlette_app([excepthub_fastapi.middleware(exc)]), "/teapot")

    assert (
        (plain.status_code, plain.text) == (native.status_code, native.text) == (418, TEAPOT_TEXT)
    )
    assert (taken.status_code, taken.json()) == (418, {"excepthub": 418})
    assert [e.framework for e in events] == ["starlette", "starlette"]


@only_in_child
@pytest.mark.parametrize("taken", [False, True], ids=["no handler", "a handler"])
async def test_with_sentry_a_websocket_exception_closes_the_socket_as_without_excepthub(
    taken: bool,
) -> None:
    exc = ExceptionMiddleware()
    if taken:
        exc.add_handler(WebSocketException, publish=True)(lambda error: WebSocketClose(4000))
    closes = []
    with sentry():
        for middleware in ([], [excepthub_fastapi.middleware(exc)]):
            app = build(middleware)

            @app.websocket("/ws")
            async def ws(websocket: WebSocket) -> None:
                await websocket.accept()
                raise WebSocketException(4003, "go away")

            with (
                TestClient(app) as http,
                http.websocket_connect("/ws") as socket,
                pytest.raises(WebSocketDisconnect) as closed,
            ):
                socket.receive_text()
            closes.append(closed.value.code)

    assert closes == [4003, 4000 if taken else 4003]


def test_sentry_with_its_starlette_integration_in_a_process_of_its_own() -> None:
    """Sentry's Starlette integration patches Starlette's classes for the rest of the process:
    the Sentry tests above run in a pytest process of their own."""
    run_in_child(__file__, "with_sentry")
