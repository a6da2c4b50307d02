"""Per-router handlers (fastapi#1667): `excepthub_fastapi.router_handlers(registry)` as a router's
dependency. A router's registry is asked first about its routes' errors, innermost router
first; what none takes reaches the app's registry, which alone reports it.

httpx's ASGI transport raises whatever the app re-raises into the server, so a test that gets
a response also shows that the error never reached the server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, BackgroundTasks, FastAPI, HTTPException, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.params import Depends
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response
from starlette.testclient import TestClient
from starlette.websockets import WebSocketClose

import excepthub_fastapi
from excepthub import ExceptionMiddleware


class Boom(Exception):
    """An error no framework knows."""


def answer(value: str) -> Callable[[Exception], dict[str, str]]:
    """A fallback handler answering `{"by": value}`."""
    return lambda error: {"by": value}


def make_app(exc: ExceptionMiddleware, *middleware: Middleware) -> FastAPI:
    return FastAPI(middleware=[excepthub_fastapi.middleware(exc), *middleware])


def routed(exc: ExceptionMiddleware, *, prefix: str = "/r") -> APIRouter:
    """A router with `exc` as its registry and `GET {prefix}/boom`, which raises `Boom`."""
    router = APIRouter(prefix=prefix, dependencies=[excepthub_fastapi.router_handlers(exc)])

    @router.get("/boom")
    async def boom() -> None:
        raise Boom("password=hunter2")

    return router


async def send(app: FastAPI, method: str, path: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.request(method, path, **kwargs)


async def get(app: FastAPI, path: str, **kwargs: Any) -> httpx.Response:
    return await send(app, "GET", path, **kwargs)


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Callable[[], list[logging.LogRecord]]:
    """excepthub's log records (every registry logs to "excepthub" here)."""
    caplog.set_level(logging.DEBUG, logger="excepthub")
    return lambda: [r for r in caplog.records if r.name == "excepthub"]


# -- plug-in --------------------------------------------------------------------------------


def test_router_handlers_is_what_a_router_dependencies_list_takes() -> None:
    assert isinstance(excepthub_fastapi.router_handlers(ExceptionMiddleware()), Depends)


def test_router_handlers_rejects_anything_but_a_registry() -> None:
    with pytest.raises(TypeError, match=r"excepthub\.ExceptionMiddleware"):
        excepthub_fastapi.router_handlers({Boom: print})  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_router_handlers_without_the_app_middleware_fails_loudly() -> None:
    app = FastAPI()
    app.include_router(routed(ExceptionMiddleware(publish_handlers={Boom: answer("router")})))

    with pytest.raises(RuntimeError, match=r"needs the app's excepthub middleware"):
        await get(app, "/r/boom")


# -- which registry answers -----------------------------------------------------------------


@pytest.mark.anyio
async def test_router_fallback_answers_its_routes_errors() -> None:
    app = make_app(ExceptionMiddleware(publish_handlers={Boom: answer("app")}))
    app.include_router(routed(ExceptionMiddleware(publish_handlers={Boom: answer("router")})))

    response = await get(app, "/r/boom")

    assert (response.status_code, response.json()) == (500, {"by": "router"})


@pytest.mark.anyio
async def test_app_handler_answers_what_the_router_registry_does_not_take() -> None:
    app = make_app(ExceptionMiddleware(publish_handlers={Boom: answer("app")}))
    app.include_router(routed(ExceptionMiddleware(publish_handlers={KeyError: answer("router")})))

    response = await get(app, "/r/boom")

    assert response.json() == {"by": "app"}


@pytest.mark.anyio
async def test_other_routes_do_not_see_the_router_handlers() -> None:
    app = make_app(ExceptionMiddleware(publish_handlers={Boom: answer("app")}))
    app.include_router(
        routed(ExceptionMiddleware(publish_handlers={Boom: answer("a")}), prefix="/a")
    )
    app.include_router(routed(ExceptionMiddleware(), prefix="/b"))

    @app.get("/boom")
    async def boom() -> None:
        raise Boom()

    answers = [(await get(app, path)).json() for path in ("/a/boom", "/b/boom", "/boom")]

    assert answers == [{"by": "a"}, {"by": "app"}, {"by": "app"}]


@pytest.mark.anyio
async def test_nested_routers_are_asked_innermost_first() -> None:
    outer_exc = ExceptionMiddleware(publish_handlers={Exception: answer("outer")})
    inner = routed(ExceptionMiddleware(publish_handlers={Boom: answer("inner")}), prefix="/in")

    @inner.get("/key")
    async def key() -> None:
        raise KeyError("k")

    outer = APIRouter(dependencies=[excepthub_fastapi.router_handlers(outer_exc)])
    outer.include_router(inner)
    app = make_app(ExceptionMiddleware(publish_handlers={Exception: answer("app")}))
    app.include_router(outer, prefix="/out")

    assert (await get(app, "/out/in/boom")).json() == {"by": "inner"}
    assert (await get(app, "/out/in/key")).json() == {"by": "outer"}


@pytest.mark.anyio
async def test_include_router_dependencies_scope_a_registry_the_same_way() -> None:
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> None:
        raise Boom()

    app = make_app(ExceptionMiddleware())
    registry = ExceptionMiddleware(publish_handlers={Boom: answer("included")})
    app.include_router(router, dependencies=[excepthub_fastapi.router_handlers(registry)])

    assert (await get(app, "/boom")).json() == {"by": "included"}


@pytest.mark.anyio
async def test_router_side_effect_handler_takes_the_error_and_fastapi_answers_it(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    seen: list[Exception] = []
    app = make_app(ExceptionMiddleware(publish_handlers={Boom: answer("app")}))
    app.include_router(routed(ExceptionMiddleware(handlers={Boom: seen.append})))

    response = await get(app, "/r/boom")

    assert (response.status_code, response.text) == (500, "Internal Server Error")
    assert [type(e) for e in seen] == [Boom]
    assert [r.excepthub_outcome for r in records()] == ["handled"]


@pytest.mark.anyio
async def test_validation_error_goes_to_the_router_handler_registered_for_it() -> None:
    registry = ExceptionMiddleware()

    @registry.add_handler(RequestValidationError, publish=True)
    def invalid(error: RequestValidationError) -> dict[str, str]:
        return {"by": "router"}

    router = APIRouter(dependencies=[excepthub_fastapi.router_handlers(registry)])

    @router.get("/items")
    async def items(limit: int) -> None: ...

    app = make_app(ExceptionMiddleware())
    app.include_router(router)

    response = await get(app, "/items", params={"limit": "many"})

    assert (response.status_code, response.json()) == (422, {"by": "router"})


@pytest.mark.anyio
async def test_broad_router_handler_leaves_http_exception_to_the_app_handler() -> None:
    app_exc = ExceptionMiddleware()

    @app_exc.add_handler(HTTPException, publish=True)
    def problem(error: HTTPException) -> dict[str, object]:
        return {"title": error.detail}

    router = APIRouter(
        dependencies=[excepthub_fastapi.router_handlers(ExceptionMiddleware({Exception: print}))]
    )

    @router.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(418, "I'm a teapot")

    app = make_app(app_exc)
    app.include_router(router)

    response = await get(app, "/teapot")

    assert (response.status_code, response.json()) == (418, {"title": "I'm a teapot"})


@pytest.mark.anyio
async def test_http_exception_raised_by_a_router_handler_is_answered_by_the_app() -> None:
    registry = ExceptionMiddleware()

    @registry.add_handler(Boom)
    def to_http(error: Boom) -> None:
        raise HTTPException(409, "conflict")

    app = make_app(ExceptionMiddleware())
    app.include_router(routed(registry))

    response = await get(app, "/r/boom")

    assert (response.status_code, response.json()) == (409, {"detail": "conflict"})


@pytest.mark.anyio
async def test_handler_added_to_the_router_registry_at_runtime_counts_from_the_next_request() -> (
    None
):
    registry = ExceptionMiddleware()
    app = make_app(ExceptionMiddleware(publish_handlers={Boom: answer("app")}))
    app.include_router(routed(registry))
    before = await get(app, "/r/boom")

    registry.add_handler(Boom, publish=True)(answer("router"))
    after = await get(app, "/r/boom")

    assert (before.json(), after.json()) == ({"by": "app"}, {"by": "router"})


# -- what is the app's alone ----------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/r/nowhere", 404), ("POST", "/r/boom", 405)]
)
async def test_routing_errors_under_the_router_prefix_are_the_app_errors(
    method: str, path: str, status: int
) -> None:
    router_exc = ExceptionMiddleware(publish_handlers={HTTPException: answer("router")})
    app = make_app(ExceptionMiddleware())
    app.include_router(routed(router_exc))

    response = await send(app, method, path)

    assert (response.status_code, response.json()) == (
        status,
        {"detail": HTTPStatus(status).phrase},
    )


@pytest.mark.anyio
async def test_body_fastapi_cannot_parse_is_the_app_error() -> None:
    router_exc = ExceptionMiddleware(publish_handlers={RequestValidationError: answer("router")})
    router = APIRouter(dependencies=[excepthub_fastapi.router_handlers(router_exc)])

    @router.post("/items")
    async def create(item: dict[str, int]) -> None: ...

    app = make_app(ExceptionMiddleware())
    app.include_router(router)

    response = await send(
        app, "POST", "/items", content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.anyio
async def test_middleware_error_after_a_router_route_ran_is_the_app_error() -> None:
    async def fail_after(request: Request, call_next: RequestResponseEndpoint) -> Response:
        await call_next(request)
        raise Boom("in middleware")

    app = make_app(
        ExceptionMiddleware(publish_handlers={Boom: answer("app")}),
        Middleware(BaseHTTPMiddleware, dispatch=fail_after),
    )
    router = APIRouter(
        dependencies=[
            excepthub_fastapi.router_handlers(ExceptionMiddleware({Boom: answer("router")}))
        ]
    )

    @router.get("/fine")
    async def fine() -> dict[str, bool]:
        return {"ok": True}

    app.include_router(router)

    assert (await get(app, "/fine")).json() == {"by": "app"}


# -- logged once ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_error_nobody_takes_goes_on_to_the_server_which_logs_it(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    outer = APIRouter(
        dependencies=[excepthub_fastapi.router_handlers(ExceptionMiddleware({KeyError: print}))]
    )
    outer.include_router(routed(ExceptionMiddleware(publish_handlers={KeyError: answer("in")})))
    app = make_app(ExceptionMiddleware())
    app.include_router(outer)

    with pytest.raises(Boom):
        await get(app, "/r/boom")

    assert records() == []


@pytest.mark.anyio
async def test_error_a_router_handler_re_raises_goes_on_to_the_server_which_logs_it(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    registry = ExceptionMiddleware()

    @registry.add_handler(Boom)
    def decline(error: Boom) -> None:
        raise error

    app = make_app(ExceptionMiddleware())
    app.include_router(routed(registry))

    with pytest.raises(Boom):
        await get(app, "/r/boom")

    assert records() == []
    assert registry.get_error_stats() == {f"{__name__}.Boom": {"unhandled": 1}}


# -- after the response, WebSockets ---------------------------------------------------------


@pytest.mark.anyio
async def test_background_task_error_of_a_router_route_is_shown_to_the_router_handler() -> None:
    seen: list[Exception] = []
    router = APIRouter(
        dependencies=[excepthub_fastapi.router_handlers(ExceptionMiddleware({Boom: seen.append}))]
    )

    def send_mail() -> None:
        raise Boom("smtp down")

    @router.get("/signup")
    async def signup(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(send_mail)
        return {"ok": True}

    app = make_app(ExceptionMiddleware())
    app.include_router(router)

    response = await get(app, "/signup")

    assert response.json() == {"ok": True}
    assert [str(e) for e in seen] == ["smtp down"]


def test_websocket_route_error_goes_to_the_router_handler() -> None:
    registry = ExceptionMiddleware(publish_handlers={Boom: lambda error: WebSocketClose(4000, "r")})
    router = APIRouter(dependencies=[excepthub_fastapi.router_handlers(registry)])

    @router.websocket("/ws")
    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        raise Boom()

    app = make_app(ExceptionMiddleware())
    app.include_router(router)

    with TestClient(app) as http, http.websocket_connect("/ws") as ws:
        message = ws.receive()

    assert (message["code"], message["reason"]) == (4000, "r")
