"""FastAPI through httpx's ASGI transport (and Starlette's TestClient for WebSockets): where
each error comes from, which handler takes it, what the client receives, what is logged.

The transport raises whatever the app re-raises into the server, so every test that does not
expect an exception also checks that a handled error never reaches the server.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from fastapi import (
    BackgroundTasks,
    Depends,
    FastAPI,
    HTTPException,
    Request,
    WebSocket,
    WebSocketException,
)
from fastapi.exceptions import RequestValidationError, ResponseValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware as StarletteExceptionMiddleware
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose, WebSocketDisconnect

import excepthub
import excepthub_fastapi
from excepthub import ErrorEvent, ExceptionMiddleware

ORIGIN = {"Origin": "http://client.example"}


class Boom(Exception):
    """An error no framework knows."""


class NotFound(Exception):
    """An application error that says which HTTP status it means."""

    status_code = 404
    headers = {"X-Reason": "missing"}  # noqa: RUF012 - read as HTTPException's


class Item(BaseModel):
    name: str
    price: float


def make_app(exc: ExceptionMiddleware, *middleware: Middleware, **kwargs: Any) -> FastAPI:
    """An app with excepthub first in `middleware=`, as the docs show."""
    return FastAPI(middleware=[excepthub_fastapi.middleware(exc), *middleware], **kwargs)


@asynccontextmanager
async def client(
    app: ASGIApp, *, raise_app_exceptions: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def get(app: ASGIApp, path: str, **kwargs: Any) -> httpx.Response:
    async with client(app) as http:
        return await http.get(path, **kwargs)


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Callable[[], list[logging.LogRecord]]:
    """excepthub's log records, as the test reads them."""
    caplog.set_level(logging.DEBUG, logger="excepthub")
    return lambda: [r for r in caplog.records if r.name == "excepthub"]


def raising(app: FastAPI, path: str, error: Exception) -> None:
    """Add `GET path`, which raises `error`."""

    @app.get(path)
    async def endpoint() -> None:
        raise error


# -- plug-in --------------------------------------------------------------------------------


def test_middleware_is_what_the_fastapi_constructor_takes() -> None:
    exc = ExceptionMiddleware()

    entry = excepthub_fastapi.middleware(exc)

    assert isinstance(entry, Middleware)
    assert entry.cls is excepthub_fastapi.ExcepthubMiddleware
    assert entry.kwargs["registry"] is exc


def test_middleware_rejects_anything_but_a_registry() -> None:
    with pytest.raises(TypeError, match=r"excepthub\.ExceptionMiddleware"):
        excepthub_fastapi.middleware({Boom: print})  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_add_middleware_on_an_existing_app_plugs_in_the_same_way() -> None:
    exc = ExceptionMiddleware(publish_handlers={Boom: lambda error: {"caught": True}})
    app = FastAPI()
    app.add_middleware(excepthub_fastapi.ExcepthubMiddleware, registry=exc)
    raising(app, "/boom", Boom())

    response = await get(app, "/boom")

    assert response.json() == {"caught": True}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("between", "layer_runs"),
    [((), False), ((Middleware(CORSMiddleware, allow_origins=["*"]),), True)],
)
async def test_right_above_starlettes_exception_middleware_it_serves_in_its_place(
    monkeypatch: pytest.MonkeyPatch, between: tuple[Middleware, ...], layer_runs: bool
) -> None:
    """One layer fewer per request when nothing stands between them; the answers are the same."""
    calls: list[str] = []
    serve = StarletteExceptionMiddleware.__call__

    async def counted(self: Any, scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope["path"])
        await serve(self, scope, receive, send)

    monkeypatch.setattr(StarletteExceptionMiddleware, "__call__", counted)
    exc = ExceptionMiddleware(publish_handlers={Boom: lambda error: {"caught": True}})
    app = make_app(exc, *between)
    raising(app, "/boom", Boom())

    async with client(app) as http:
        answers = [(await http.get(path)).status_code for path in ("/boom", "/nowhere")]

    assert answers == [500, 404]
    assert calls == (["/boom", "/nowhere"] if layer_runs else [])


@pytest.mark.anyio
async def test_happy_path_answers_as_without_excepthub(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    app = make_app(ExceptionMiddleware())

    @app.get("/items/{item_id}")
    async def read(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    response = await get(app, "/items/3")

    assert (response.status_code, response.json()) == (200, {"item_id": 3})
    assert records() == []


@pytest.mark.anyio
async def test_native_exception_handler_still_answers_its_class(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    exc = ExceptionMiddleware(publish_handlers={Exception: lambda error: {"excepthub": True}})
    app = make_app(exc)

    @app.exception_handler(Boom)
    async def native(request: Request, error: Boom) -> PlainTextResponse:
        return PlainTextResponse("native", status_code=409)

    raising(app, "/boom", Boom())

    response = await get(app, "/boom")

    assert (response.status_code, response.text) == (409, "native")
    assert records() == []


@pytest.mark.anyio
async def test_native_handler_for_http_exception_stays_in_place() -> None:
    app = make_app(ExceptionMiddleware())

    @app.exception_handler(StarletteHTTPException)
    async def native(request: Request, error: StarletteHTTPException) -> PlainTextResponse:
        return PlainTextResponse(f"native {error.status_code}", status_code=error.status_code)

    response = await get(app, "/nowhere")

    assert (response.status_code, response.text) == (404, "native 404")


@pytest.mark.anyio
async def test_native_status_code_handler_stays_in_place() -> None:
    app = make_app(ExceptionMiddleware())

    @app.exception_handler(404)
    async def native(request: Request, error: StarletteHTTPException) -> PlainTextResponse:
        return PlainTextResponse("no page here", status_code=404)

    response = await get(app, "/nowhere")

    assert (response.status_code, response.text) == (404, "no page here")


@pytest.mark.anyio
async def test_middleware_hiding_its_inner_app_is_reported_by_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Opaque:
        def __init__(self, app: ASGIApp) -> None:
            self._inner = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await self._inner(scope, receive, send)

    app = make_app(ExceptionMiddleware(), Middleware(Opaque))

    with caplog.at_level(logging.WARNING, logger="excepthub"):
        assert (await get(app, "/")).status_code == 404

    [record] = caplog.records
    assert re.search(r"cannot find Starlette's ExceptionMiddleware below <.*Opaque", record.message)


# -- where errors come from -----------------------------------------------------------------


@pytest.mark.anyio
async def test_async_endpoint_error_reaches_its_handler() -> None:
    exc = ExceptionMiddleware(publish_handlers={Boom: lambda error: {"caught": str(error)}})
    app = make_app(exc)
    raising(app, "/boom", Boom("async"))

    assert (await get(app, "/boom")).json() == {"caught": "async"}


@pytest.mark.anyio
async def test_sync_endpoint_error_reaches_its_handler() -> None:
    exc = ExceptionMiddleware(publish_handlers={Boom: lambda error: {"caught": str(error)}})
    app = make_app(exc)

    @app.get("/boom")
    def endpoint() -> None:
        raise Boom("sync")

    assert (await get(app, "/boom")).json() == {"caught": "sync"}


@pytest.mark.anyio
async def test_dependency_error_reaches_its_handler() -> None:
    exc = ExceptionMiddleware(publish_handlers={Boom: lambda error: {"caught": str(error)}})
    app = make_app(exc)

    def dependency() -> None:
        raise Boom("dependency")

    @app.get("/boom", dependencies=[Depends(dependency)])
    async def endpoint() -> None:
        return None

    assert (await get(app, "/boom")).json() == {"caught": "dependency"}


@pytest.mark.anyio
async def test_yield_dependency_setup_error_reaches_its_handler() -> None:
    exc = ExceptionMiddleware(publish_handlers={Boom: lambda error: {"caught": str(error)}})
    app = make_app(exc)

    async def dependency() -> AsyncIterator[None]:
        raise Boom("setup")
        yield

    @app.get("/boom", dependencies=[Depends(dependency)])
    async def endpoint() -> None:
        return None

    assert (await get(app, "/boom")).json() == {"caught": "setup"}


@pytest.mark.anyio
async def test_yield_dependency_sees_the_endpoint_error_before_the_handler() -> None:
    seen: list[str] = []
    exc = ExceptionMiddleware()

    @exc.add_handler(Boom, publish=True)
    def on_boom(error: Boom) -> dict[str, list[str]]:
        return {"seen": [*seen, "handler"]}

    app = make_app(exc)

    async def dependency() -> AsyncIterator[None]:
        try:
            yield
        except Boom:
            seen.append("dependency")
            raise

    @app.get("/boom", dependencies=[Depends(dependency)])
    async def endpoint() -> None:
        raise Boom()

    assert (await get(app, "/boom")).json() == {"seen": ["dependency", "handler"]}


@pytest.mark.anyio
async def test_error_raised_by_a_middleware_listed_after_it_reaches_its_handler() -> None:
    exc = ExceptionMiddleware(publish_handlers={Boom: lambda error: {"caught": str(error)}})

    async def dispatch(request: Request, call_next: Any) -> Any:
        raise Boom("middleware")

    app = make_app(exc, Middleware(BaseHTTPMiddleware, dispatch=dispatch))

    assert (await get(app, "/anything")).json() == {"caught": "middleware"}


@pytest.mark.anyio
async def test_error_raised_by_a_pure_asgi_middleware_listed_after_it_reaches_its_handler() -> None:
    exc = ExceptionMiddleware(publish_handlers={Boom: lambda error: {"caught": str(error)}})

    class Raising:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            raise Boom("asgi")

    app = make_app(exc, Middleware(Raising))

    assert (await get(app, "/anything")).json() == {"caught": "asgi"}


@pytest.mark.anyio
async def test_middleware_error_after_its_response_started_is_observed_not_answered_again() -> None:
    seen: list[BaseException] = []
    exc = ExceptionMiddleware(publish_handlers={Boom: seen.append})

    class AnswersThenRaises:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await PlainTextResponse("sent", status_code=201)(scope, receive, send)
            raise Boom("late")

    app = make_app(exc, Middleware(AnswersThenRaises))

    response = await get(app, "/anything")

    assert (response.status_code, response.text) == (201, "sent")
    assert [str(e) for e in seen] == ["late"]


def mount_raising(app: FastAPI, path: str, error: Exception, *, answer_first: bool = False) -> None:
    """Mount at `path` a plain ASGI app (no route of FastAPI's, so no route-level handling)
    that raises `error`, after sending a 201 if `answer_first`."""

    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        if answer_first:
            await PlainTextResponse("sent", status_code=201)(scope, receive, send)
        raise error

    app.mount(path, raw)


@pytest.mark.anyio
async def test_error_raised_outside_any_route_reaches_its_handler(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    exc = ExceptionMiddleware(publish_handlers={Boom: lambda error: {"caught": str(error)}})
    app = make_app(exc)
    mount_raising(app, "/raw", Boom("outside"))

    response = await get(app, "/raw/x")

    assert (response.status_code, response.json()) == (500, {"caught": "outside"})
    assert [r.excepthub_outcome for r in records()] == ["published"]


@pytest.mark.anyio
async def test_error_raised_outside_any_route_goes_to_the_users_native_handlers() -> None:
    app = make_app(ExceptionMiddleware(publish_handlers={Exception: lambda error: "excepthub"}))

    @app.exception_handler(Boom)
    async def by_class(request: Request, error: Boom) -> PlainTextResponse:
        return PlainTextResponse("native class", status_code=409)

    @app.exception_handler(410)
    async def by_status(request: Request, error: StarletteHTTPException) -> PlainTextResponse:
        return PlainTextResponse("native status", status_code=410)

    mount_raising(app, "/boom", Boom())
    mount_raising(app, "/gone", StarletteHTTPException(410))

    assert (await get(app, "/boom/x")).text == "native class"
    assert (await get(app, "/gone/x")).text == "native status"


@pytest.mark.anyio
async def test_error_raised_outside_any_route_unhandled_goes_on_to_the_server(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    exc = ExceptionMiddleware()
    app = make_app(exc)
    mount_raising(app, "/raw", Boom("db-7.internal refused"))

    with pytest.raises(Boom, match="refused"):
        await get(app, "/raw/x")

    assert records() == []  # the server logs it
    assert exc.get_error_stats() == {f"{__name__}.Boom": {"unhandled": 1}}


@pytest.mark.anyio
async def test_error_raised_outside_any_route_after_its_response_started_is_only_observed() -> None:
    seen: list[BaseException] = []
    app = make_app(ExceptionMiddleware(handlers={Boom: seen.append}))
    mount_raising(app, "/raw", Boom("late"), answer_first=True)

    response = await get(app, "/raw/x")

    assert (response.status_code, response.text) == (201, "sent")
    assert [str(e) for e in seen] == ["late"]


@pytest.mark.anyio
async def test_unknown_route_gets_fastapi_404(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    app = make_app(ExceptionMiddleware())

    response = await get(app, "/nowhere")

    assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})
    assert [r.excepthub_handler for r in records()] == ["http_exception_handler"]


@pytest.mark.anyio
async def test_wrong_method_gets_fastapi_405_with_its_allow_header() -> None:
    app = make_app(ExceptionMiddleware())

    @app.get("/only-get")
    async def endpoint() -> None:
        return None

    async with client(app) as http:
        response = await http.post("/only-get")

    assert (response.status_code, response.json()) == (405, {"detail": "Method Not Allowed"})
    assert response.headers["allow"] == "GET"


@pytest.mark.anyio
@pytest.mark.parametrize("cls", [HTTPException, StarletteHTTPException])
async def test_http_exception_gets_fastapi_answer_with_status_detail_and_headers(
    cls: type[StarletteHTTPException],
) -> None:
    app = make_app(ExceptionMiddleware())
    raising(app, "/teapot", cls(418, "short and stout", headers={"X-Tea": "earl grey"}))

    response = await get(app, "/teapot")

    assert (response.status_code, response.json()) == (418, {"detail": "short and stout"})
    assert response.headers["x-tea"] == "earl grey"


@pytest.mark.anyio
async def test_http_exception_without_a_body_status_gets_an_empty_answer() -> None:
    app = make_app(ExceptionMiddleware())
    raising(app, "/unchanged", HTTPException(304))

    response = await get(app, "/unchanged")

    assert (response.status_code, response.content) == (304, b"")


@pytest.mark.anyio
async def test_query_validation_error_gets_fastapi_422() -> None:
    app = make_app(ExceptionMiddleware())

    @app.get("/items/{item_id}")
    async def read(item_id: int) -> None:
        return None

    response = await get(app, "/items/three")

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "item_id"]


@pytest.mark.anyio
async def test_body_validation_error_gets_fastapi_422() -> None:
    app = make_app(ExceptionMiddleware())

    @app.post("/items")
    async def create(item: Item) -> Item:
        return item

    async with client(app) as http:
        response = await http.post("/items", json={"name": "pen"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "price"]


@pytest.mark.anyio
async def test_response_validation_error_goes_on_to_the_server_as_without_excepthub() -> None:
    app = make_app(ExceptionMiddleware())

    @app.get("/item", response_model=Item)
    async def read() -> Any:
        return {"name": "pen", "price": "secret-not-a-number"}

    with pytest.raises(ResponseValidationError):
        await get(app, "/item")
    async with client(app, raise_app_exceptions=False) as http:
        response = await http.get("/item")

    assert (response.status_code, response.text) == (500, "Internal Server Error")


# -- resolution across the user's handlers and FastAPI's defaults ---------------------------


@pytest.mark.anyio
async def test_user_handler_for_http_exception_replaces_fastapi_answer() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(StarletteHTTPException, publish=True)
    async def problem(error: StarletteHTTPException) -> dict[str, object]:
        return {"title": error.detail, "status": error.status_code}

    app = make_app(exc)

    response = await get(app, "/nowhere")

    assert (response.status_code, response.json()) == (404, {"title": "Not Found", "status": 404})


@pytest.mark.anyio
async def test_broad_user_handler_leaves_http_exception_to_fastapi() -> None:
    exc = ExceptionMiddleware(publish_handlers={Exception: lambda error: {"broad": True}})
    app = make_app(exc)

    response = await get(app, "/nowhere")

    assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})


@pytest.mark.anyio
async def test_user_handler_for_validation_error_replaces_fastapi_answer_keeping_422() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(RequestValidationError, publish=True)
    async def invalid(error: RequestValidationError) -> dict[str, int]:
        return {"problems": len(error.errors())}

    app = make_app(exc)

    @app.get("/items/{item_id}")
    async def read(item_id: int) -> None:
        return None

    response = await get(app, "/items/three")

    assert (response.status_code, response.json()) == (422, {"problems": 1})


@pytest.mark.anyio
async def test_side_effect_handler_for_http_exception_keeps_fastapi_answer() -> None:
    seen: list[int] = []
    exc = ExceptionMiddleware()

    @exc.add_handler(StarletteHTTPException)
    def count(error: StarletteHTTPException) -> None:
        seen.append(error.status_code)

    app = make_app(exc)

    response = await get(app, "/nowhere")

    assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})
    assert seen == [404]


@pytest.mark.anyio
async def test_handler_added_after_the_app_started_takes_effect_on_the_next_request() -> None:
    exc = ExceptionMiddleware()
    app = make_app(exc)
    raising(app, "/boom", Boom())

    async with client(app, raise_app_exceptions=False) as http:
        before = await http.get("/boom")
        exc.add_handler(Boom, publish=True)(lambda error: {"late": True})
        after = await http.get("/boom")

    assert (before.status_code, before.text) == (500, "Internal Server Error")
    assert (after.status_code, after.json()) == (500, {"late": True})


# -- outcome -> response --------------------------------------------------------------------


@pytest.mark.anyio
async def test_fallback_response_is_sent_as_is() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(Boom, publish=True)
    async def teapot(error: Boom) -> PlainTextResponse:
        return PlainTextResponse("as is", status_code=418, headers={"X-Mine": "1"})

    app = make_app(exc)
    raising(app, "/boom", Boom())

    response = await get(app, "/boom")

    assert (response.status_code, response.text, response.headers["x-mine"]) == (418, "as is", "1")


@pytest.mark.anyio
async def test_fallback_value_is_rendered_with_fastapi_json_encoder() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    exc = ExceptionMiddleware()

    @exc.add_handler(Boom, publish=True)
    async def fallback(error: Boom) -> dict[str, object]:
        return {"at": when, "item": Item(name="pen", price=1.5), "tags": ("a",)}

    app = make_app(exc)
    raising(app, "/boom", Boom())

    response = await get(app, "/boom")

    assert response.json() == {
        "at": "2026-01-02T03:04:05+00:00",
        "item": {"name": "pen", "price": 1.5},
        "tags": ["a"],
    }


@pytest.mark.anyio
async def test_fallback_value_takes_status_and_headers_from_the_exception() -> None:
    exc = ExceptionMiddleware(publish_handlers={NotFound: lambda error: {"missing": True}})
    app = make_app(exc)
    raising(app, "/item", NotFound())

    response = await get(app, "/item")

    assert (response.status_code, response.json()) == (404, {"missing": True})
    assert response.headers["x-reason"] == "missing"


@pytest.mark.anyio
async def test_fallback_value_for_an_exception_without_a_status_is_a_500() -> None:
    exc = ExceptionMiddleware(publish_handlers={Boom: lambda error: ["still", "json"]})
    app = make_app(exc)
    raising(app, "/boom", Boom())

    response = await get(app, "/boom")

    assert (response.status_code, response.json()) == (500, ["still", "json"])


@pytest.mark.anyio
async def test_fallback_value_for_a_status_without_a_body_sends_no_body() -> None:
    class Gone(Exception):
        status_code = 204

    exc = ExceptionMiddleware(publish_handlers={Gone: lambda error: {"ignored": True}})
    app = make_app(exc)
    raising(app, "/gone", Gone())

    response = await get(app, "/gone")

    assert (response.status_code, response.content) == (204, b"")


@pytest.mark.anyio
async def test_side_effect_handled_error_gets_a_masked_500() -> None:
    exc = ExceptionMiddleware(handlers={Boom: lambda error: None})
    app = make_app(exc)
    raising(app, "/boom", Boom("password=hunter2"))

    response = await get(app, "/boom")

    assert (response.status_code, response.text) == (500, "Internal Server Error")


@pytest.mark.anyio
async def test_unhandled_error_goes_on_to_the_server_as_without_excepthub() -> None:
    app = make_app(ExceptionMiddleware())
    error = Boom("password=hunter2")
    raising(app, "/boom", error)

    with pytest.raises(Boom) as raised:  # the transport raises what reaches the server
        await get(app, "/boom")

    assert raised.value is error


@pytest.mark.anyio
async def test_unhandled_error_gets_starlettes_masked_500() -> None:
    app = make_app(ExceptionMiddleware())
    raising(app, "/boom", Boom("password=hunter2"))

    async with client(app, raise_app_exceptions=False) as http:
        response = await http.get("/boom")

    assert (response.status_code, response.text) == (500, "Internal Server Error")


def test_unhandled_error_is_raised_by_the_test_client() -> None:
    app = make_app(ExceptionMiddleware(handlers={KeyError: lambda error: None}))
    raising(app, "/boom", Boom("seen by the test"))

    with TestClient(app) as http, pytest.raises(Boom, match="seen by the test"):
        http.get("/boom")


def test_unhandled_error_is_answered_500_by_a_test_client_that_does_not_raise() -> None:
    app = make_app(ExceptionMiddleware())
    raising(app, "/boom", Boom())

    with TestClient(app, raise_server_exceptions=False) as http:
        response = http.get("/boom")

    assert (response.status_code, response.text) == (500, "Internal Server Error")


@pytest.mark.anyio
async def test_failing_handler_exception_goes_on_to_the_server_which_logs_it() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(Boom, publish=True)
    def broken(error: Boom) -> None:
        raise ValueError("handler bug")

    app = make_app(exc)
    raising(app, "/boom", Boom())

    with pytest.raises(ValueError, match="handler bug") as raised:
        await get(app, "/boom")

    assert isinstance(raised.value.__context__, Boom)


@pytest.mark.anyio
async def test_unhandled_error_goes_on_to_the_server_when_excepthub_does_not_log_it() -> None:
    app = make_app(ExceptionMiddleware(log_levels={"unhandled": None}))
    raising(app, "/boom", Boom("logged by the server instead"))

    with pytest.raises(Boom):
        await get(app, "/boom")


@pytest.mark.anyio
async def test_unhandled_error_in_debug_mode_reaches_starlette_debug_page() -> None:
    app = make_app(ExceptionMiddleware(), debug=True)
    raising(app, "/boom", Boom("shown in debug"))

    async with client(app, raise_app_exceptions=False) as http:
        response = await http.get("/boom")

    assert response.status_code == 500
    assert "Boom: shown in debug" in response.text


@pytest.mark.anyio
async def test_app_exception_handler_for_exception_answers_unhandled_errors_as_natively() -> None:
    calls: list[BaseException] = []
    app = make_app(ExceptionMiddleware())

    @app.exception_handler(Exception)
    async def last_resort(request: Request, error: Exception) -> JSONResponse:
        calls.append(error)
        return JSONResponse({"sorry": True}, status_code=503)

    raising(app, "/boom", Boom())

    async with client(app, raise_app_exceptions=False) as http:  # ServerErrorMiddleware re-raises
        response = await http.get("/boom")

    assert (response.status_code, response.json()) == (503, {"sorry": True})
    assert [type(e) for e in calls] == [Boom]


@pytest.mark.anyio
@pytest.mark.parametrize("cors_first", [True, False], ids=["cors-before", "cors-after"])
@pytest.mark.parametrize(
    ("path", "status"),
    [("/fallback", 404), ("/side-effect", 500), ("/http", 418)],
)
async def test_error_answers_carry_cors_headers_wherever_cors_is_listed(
    cors_first: bool, path: str, status: int
) -> None:
    exc = ExceptionMiddleware(
        handlers={Boom: lambda error: None}, publish_handlers={NotFound: lambda error: {}}
    )
    cors = Middleware(CORSMiddleware, allow_origins=["http://client.example"])
    hub = excepthub_fastapi.middleware(exc)
    app = FastAPI(middleware=[cors, hub] if cors_first else [hub, cors])
    raising(app, "/fallback", NotFound())
    raising(app, "/side-effect", Boom())
    raising(app, "/unhandled", KeyError("x"))
    raising(app, "/http", HTTPException(418))

    response = await get(app, path, headers=ORIGIN)

    assert response.status_code == status
    assert response.headers["access-control-allow-origin"] == "http://client.example"


@pytest.mark.anyio
async def test_answer_to_a_middleware_error_carries_cors_headers_when_cors_is_listed_before() -> (
    None
):
    exc = ExceptionMiddleware(handlers={Boom: lambda error: None})

    async def dispatch(request: Request, call_next: Any) -> Any:
        raise Boom()

    cors = Middleware(CORSMiddleware, allow_origins=["http://client.example"])
    hub = excepthub_fastapi.middleware(exc)
    app = FastAPI(middleware=[cors, hub, Middleware(BaseHTTPMiddleware, dispatch=dispatch)])

    response = await get(app, "/", headers=ORIGIN)

    assert response.status_code == 500
    assert response.headers["access-control-allow-origin"] == "http://client.example"


@pytest.mark.anyio
async def test_requests_are_never_retried_whatever_the_retry_policy() -> None:
    calls: list[int] = []
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    exc = ExceptionMiddleware(
        handlers={ConnectionError: lambda error: None},
        retry=excepthub.Retry(on=(ConnectionError,), attempts=5, sleep=sleep),
    )
    app = make_app(exc)

    @app.post("/charge")
    async def charge() -> None:
        calls.append(1)
        raise ConnectionError("bank unreachable")

    async with client(app) as http:
        response = await http.post("/charge", json={"amount": 10})

    assert response.status_code == 500
    assert (len(calls), slept) == (1, [])


# -- logged once, with the correlation id ---------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("registered", "outcome", "level"),
    [
        ("fallback", "published", logging.INFO),
        ("side-effect", "handled", logging.WARNING),
        ("broken", "failed", logging.ERROR),
    ],
)
async def test_each_outcome_is_logged_once_at_its_level(
    records: Callable[[], list[logging.LogRecord]], registered: str, outcome: str, level: int
) -> None:
    def broken(error: Boom) -> None:
        raise ValueError("handler bug")

    handlers: dict[str, Any] = {
        "fallback": {"publish_handlers": {Boom: lambda error: {}}},
        "side-effect": {"handlers": {Boom: lambda error: None}},
        "nothing": {},
        "broken": {"handlers": {Boom: broken}},
    }
    app = make_app(ExceptionMiddleware(**handlers[registered]))
    raising(app, "/boom", Boom())

    async with client(app, raise_app_exceptions=False) as http:  # a handler's failure goes on
        await http.get("/boom", headers={"X-Request-ID": "req-1"})

    [record] = records()
    assert (record.excepthub_outcome, record.levelno) == (outcome, level)
    assert record.excepthub_exception == f"{__name__}.Boom"
    assert record.correlation_id == "req-1"
    assert (record.exc_info is not None) == (outcome in ("unhandled", "failed"))


@pytest.mark.anyio
async def test_correlation_id_is_generated_when_the_request_has_none(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    app = make_app(ExceptionMiddleware(handlers={Boom: lambda error: None}))
    raising(app, "/boom", Boom())

    async with client(app) as http:
        await http.get("/boom")
        await http.get("/boom")

    ids = [r.correlation_id for r in records()]
    assert len(ids) == 2
    assert all(isinstance(i, str) and i for i in ids)
    assert ids[0] != ids[1]


@pytest.mark.anyio
async def test_request_id_header_is_configurable(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    exc = ExceptionMiddleware(handlers={Boom: lambda error: None})
    app = FastAPI(middleware=[excepthub_fastapi.middleware(exc, request_id_header="X-Trace")])
    raising(app, "/boom", Boom())

    await get(app, "/boom", headers={"X-Trace": "trace-9", "X-Request-ID": "not-this"})

    assert [r.correlation_id for r in records()] == ["trace-9"]


@pytest.mark.anyio
async def test_on_error_hook_sees_the_request_and_the_correlation_id() -> None:
    events: list[ErrorEvent] = []
    exc = ExceptionMiddleware(handlers={Boom: lambda error: None}, on_error=[events.append])
    app = make_app(exc)
    raising(app, "/boom", Boom())

    await get(app, "/boom", headers={"X-Request-ID": "req-2"})

    [event] = events
    assert (event.outcome, event.correlation_id) == ("handled", "req-2")
    assert event.context["request"].url.path == "/boom"


# -- what handlers can ask for --------------------------------------------------------------


@pytest.mark.anyio
async def test_request_is_the_endpoint_request_with_its_body_still_readable() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(Boom, publish=True)
    async def echo(error: Boom, request: Request) -> dict[str, object]:
        return {"body": (await request.body()).decode(), "marked": request.state.marked}

    app = make_app(exc)

    @app.post("/boom")
    async def endpoint(request: Request) -> None:
        await request.json()
        request.state.marked = True
        raise Boom()

    async with client(app) as http:
        response = await http.post("/boom", json={"a": 1})

    assert response.json() == {"body": '{"a":1}', "marked": True}


@pytest.mark.anyio
async def test_fastapi_style_handler_works_unchanged() -> None:
    async def unicorn_handler(request: Request, exc: Boom) -> JSONResponse:
        return JSONResponse(status_code=418, content={"message": f"Oops! {request.url.path}"})

    exc = ExceptionMiddleware()
    exc.add_handler(Boom, publish=True)(unicorn_handler)
    app = make_app(exc)
    raising(app, "/unicorns", Boom())

    response = await get(app, "/unicorns")

    assert (response.status_code, response.json()) == (418, {"message": "Oops! /unicorns"})


@pytest.mark.anyio
async def test_unannotated_request_exc_handler_works_unchanged() -> None:
    async def starlette_handler(request, exc):  # type: ignore[no-untyped-def]
        return JSONResponse({"path": request.url.path, "error": type(exc).__name__})

    exc = ExceptionMiddleware()
    exc.add_handler(Boom, publish=True)(starlette_handler)
    app = make_app(exc)
    raising(app, "/plain", Boom())

    assert (await get(app, "/plain")).json() == {"path": "/plain", "error": "Boom"}


@pytest.mark.anyio
async def test_websocket_is_none_over_http() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(Boom, publish=True)
    async def which(error: Boom, websocket: WebSocket | None) -> dict[str, bool]:
        return {"websocket": websocket is not None}

    app = make_app(exc)
    raising(app, "/boom", Boom())

    assert (await get(app, "/boom")).json() == {"websocket": False}


@pytest.mark.anyio
async def test_handler_dependencies_are_injected() -> None:
    def tenant(request: Request) -> str:
        return request.headers["x-tenant"]

    exc = ExceptionMiddleware()

    @exc.add_handler(Boom, publish=True)
    async def scoped(error: Boom, who: str = excepthub.Depends(tenant)) -> dict[str, str]:
        return {"tenant": who}

    app = make_app(exc)
    raising(app, "/boom", Boom())

    assert (await get(app, "/boom", headers={"X-Tenant": "acme"})).json() == {"tenant": "acme"}


# -- after the response started -------------------------------------------------------------


@pytest.mark.anyio
async def test_yield_dependency_teardown_error_is_observed_after_the_response(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    seen: list[BaseException] = []
    app = make_app(ExceptionMiddleware(handlers={Boom: seen.append}))

    async def session() -> AsyncIterator[str]:
        yield "session"
        raise Boom("teardown")

    @app.get("/data")
    async def endpoint(s: str = Depends(session)) -> dict[str, str]:
        return {"with": s}

    response = await get(app, "/data")

    assert (response.status_code, response.json()) == (200, {"with": "session"})
    assert [str(e) for e in seen] == ["teardown"]
    assert [r.excepthub_outcome for r in records()] == ["handled"]


@pytest.mark.anyio
async def test_background_task_error_is_observed_after_the_response(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    seen: list[BaseException] = []
    app = make_app(ExceptionMiddleware(handlers={Boom: seen.append}))

    def send_mail() -> None:
        raise Boom("smtp down")

    @app.post("/signup")
    async def signup(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(send_mail)
        return {"ok": True}

    async with client(app) as http:
        response = await http.post("/signup")

    assert (response.status_code, response.json()) == (200, {"ok": True})
    assert [str(e) for e in seen] == ["smtp down"]
    assert len(records()) == 1


@pytest.mark.anyio
async def test_fallback_for_an_error_after_the_response_answers_nothing_twice(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    calls: list[BaseException] = []
    exc = ExceptionMiddleware()

    @exc.add_handler(Boom, publish=True)
    def fallback(error: Boom) -> dict[str, str]:
        calls.append(error)
        return {"too": "late"}

    app = make_app(exc)

    @app.get("/data")
    async def endpoint(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(fallback_trigger)
        return {"ok": True}

    def fallback_trigger() -> None:
        raise Boom()

    response = await get(app, "/data")

    assert (response.status_code, response.json()) == (200, {"ok": True})
    assert len(calls) == 1


@pytest.mark.anyio
async def test_unhandled_error_after_the_response_goes_on_to_the_server_as_itself(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    exc = ExceptionMiddleware()
    app = make_app(exc)
    error = Boom("late")

    def task() -> None:
        raise error

    @app.get("/data")
    async def endpoint(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(task)
        return {"ok": True}

    with pytest.raises(Boom) as raised:  # not Starlette's "response already started"
        await get(app, "/data")

    assert raised.value is error
    assert records() == []  # the server logs it
    assert exc.get_error_stats() == {f"{__name__}.Boom": {"unhandled": 1}}


@pytest.mark.anyio
async def test_native_exception_handler_is_called_for_an_error_after_the_response() -> None:
    seen: list[BaseException] = []
    app = make_app(ExceptionMiddleware(handlers={KeyError: lambda error: None}))

    @app.exception_handler(Exception)
    async def last_resort(request: Request, error: Exception) -> PlainTextResponse:
        seen.append(error)
        return PlainTextResponse("never sent", status_code=500)

    def task() -> None:
        raise Boom("late")

    @app.get("/data")
    async def endpoint(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(task)
        return {"ok": True}

    async with client(app, raise_app_exceptions=False) as http:
        response = await http.get("/data")

    assert (response.status_code, response.json()) == (200, {"ok": True})
    assert [(type(e), str(e)) for e in seen] == [(Boom, "late")]


@pytest.mark.anyio
async def test_native_handler_of_the_class_makes_an_error_after_the_response_starlettes_error() -> (
    None
):
    app = make_app(ExceptionMiddleware())
    error = Boom("late")

    @app.exception_handler(Boom)
    async def by_class(request: Request, error: Boom) -> PlainTextResponse:
        return PlainTextResponse("never sent")

    def task() -> None:
        raise error

    @app.get("/data")
    async def endpoint(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(task)
        return {"ok": True}

    with pytest.raises(RuntimeError, match="response already started") as raised:  # as natively
        await get(app, "/data")

    assert raised.value.__cause__ is error


@pytest.mark.anyio
async def test_http_exception_after_the_response_goes_on_as_starlette_raises_it() -> None:
    app = make_app(ExceptionMiddleware(handlers={KeyError: lambda error: None}))

    def task() -> None:
        raise HTTPException(409)

    @app.get("/data")
    async def endpoint(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(task)
        return {"ok": True}

    with pytest.raises(RuntimeError, match="response already started") as raised:
        await get(app, "/data")

    assert isinstance(raised.value.__cause__, HTTPException)


# -- exception groups -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_task_group_error_reaches_the_handler_for_the_exception_inside() -> None:
    exc = ExceptionMiddleware(publish_handlers={NotFound: lambda error: {"inside": True}})
    app = make_app(exc)

    @app.get("/fan-out")
    async def endpoint() -> None:
        async def fetch() -> None:
            raise NotFound()

        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch)

    response = await get(app, "/fan-out")

    assert (response.status_code, response.json()) == (404, {"inside": True})


@pytest.mark.anyio
@pytest.mark.parametrize("with_excepthub", [False, True])
async def test_task_group_http_exception_no_user_handler_takes_goes_on_as_without_excepthub(
    with_excepthub: bool,
) -> None:
    app = make_app(ExceptionMiddleware()) if with_excepthub else FastAPI()

    @app.get("/fan-out")
    async def endpoint() -> None:
        async def fetch() -> None:
            raise HTTPException(409, "conflict")

        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch)

    with pytest.raises(ExceptionGroup) as raised:
        await get(app, "/fan-out")

    assert [type(e) for e in raised.value.exceptions] == [HTTPException]


@pytest.mark.anyio
async def test_group_of_two_errors_answers_the_fallback_and_shows_the_other_to_its_handler() -> (
    None
):
    seen: list[BaseException] = []
    exc = ExceptionMiddleware(
        handlers={Boom: seen.append}, publish_handlers={NotFound: lambda error: {"first": True}}
    )
    app = make_app(exc)
    raising(app, "/both", ExceptionGroup("two", [Boom("b"), NotFound()]))

    response = await get(app, "/both")

    assert response.json() == {"first": True}
    assert [str(e) for e in seen] == ["b"]


# -- WebSockets (Starlette's TestClient) ----------------------------------------------------


def ws_app(exc: ExceptionMiddleware) -> FastAPI:
    app = make_app(exc)

    @app.websocket("/after-accept")
    async def after_accept(websocket: WebSocket) -> None:
        await websocket.accept()
        raise Boom("after accept")

    @app.websocket("/before-accept")
    async def before_accept(websocket: WebSocket) -> None:
        raise Boom("before accept")

    @app.websocket("/validated")
    async def validated(websocket: WebSocket, room: int) -> None:
        await websocket.accept()

    @app.websocket("/policy")
    async def policy(websocket: WebSocket) -> None:
        await websocket.accept()
        raise WebSocketException(code=4403, reason="not yours")

    @app.websocket("/client-leaves")
    async def client_leaves(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()

    return app


def close_of(app: FastAPI, path: str) -> tuple[int, str]:
    with TestClient(app) as http, http.websocket_connect(path) as ws:
        message = ws.receive()
    assert message["type"] == "websocket.close"
    return message["code"], message.get("reason", "")


def test_websocket_error_after_accept_closes_with_1011() -> None:
    app = ws_app(ExceptionMiddleware(handlers={Boom: lambda error: None}))

    assert close_of(app, "/after-accept") == (1011, "Internal Server Error")


def test_websocket_fallback_returning_a_close_closes_with_its_code_and_reason() -> None:
    exc = ExceptionMiddleware(publish_handlers={Boom: lambda error: WebSocketClose(4000, "gone")})

    assert close_of(ws_app(exc), "/after-accept") == (4000, "gone")


def test_websocket_handler_closing_the_socket_itself_is_respected() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(Boom, publish=True)
    async def close(error: Boom, websocket: WebSocket) -> None:
        await websocket.close(code=4001, reason=str(error))

    assert close_of(ws_app(exc), "/after-accept") == (4001, "after accept")


def test_websocket_handler_gets_the_websocket_as_websocket_and_request() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(Boom, publish=True)
    async def close(error: Boom, websocket: WebSocket, request: WebSocket) -> WebSocketClose:
        return WebSocketClose(4002, f"{websocket is request}:{websocket.url.path}")

    assert close_of(ws_app(exc), "/after-accept") == (4002, "True:/after-accept")


def test_websocket_error_before_accept_is_denied_with_a_500() -> None:
    app = ws_app(ExceptionMiddleware(handlers={Boom: lambda error: None}))

    with (
        TestClient(app) as http,
        pytest.raises(WebSocketDenialResponse) as denied,
        http.websocket_connect("/before-accept"),
    ):
        pass

    assert (denied.value.status_code, denied.value.text) == (500, "Internal Server Error")


def test_websocket_validation_error_closes_with_1008() -> None:
    app = ws_app(ExceptionMiddleware())

    with (
        TestClient(app) as http,
        pytest.raises(WebSocketDisconnect) as closed,
        http.websocket_connect("/validated?room=abc"),
    ):
        pass

    assert closed.value.code == 1008


def test_websocket_exception_closes_with_its_code_and_reason() -> None:
    assert close_of(ws_app(ExceptionMiddleware()), "/policy") == (4403, "not yours")


def test_websocket_disconnect_passes_through_as_without_excepthub(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    seen: list[BaseException] = []
    app = ws_app(ExceptionMiddleware(handlers={Exception: seen.append}))

    with (
        TestClient(app) as http,
        pytest.raises(WebSocketDisconnect),
        http.websocket_connect("/client-leaves") as ws,
    ):
        ws.close()

    assert seen == []
    assert records() == []
