"""excepthub_fastapi.testing: what an HTTP client received, so that "this secret reaches no
client" is one assertion; and recording the errors of an app served by uvicorn in a thread."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

import excepthub_fastapi
from excepthub import ExceptionMiddleware
from excepthub.testing import recording
from excepthub_fastapi.testing import Received, request

from ._servers import uvicorn_on_loopback

pytestmark = pytest.mark.anyio
SECRET = "password=hunter2"


class Leaky(Exception):
    pass


class Masked(Exception):
    pass


class Unhandled(Exception):
    pass


def app_with(exc: ExceptionMiddleware) -> FastAPI:
    app = FastAPI(middleware=[excepthub_fastapi.middleware(exc)])

    @app.get("/masked")
    async def masked() -> None:
        raise Masked(f"database {SECRET}")

    @app.get("/leaky")
    async def leaky() -> None:
        raise Leaky(f'database "{SECRET}"')

    @app.get("/unhandled")
    async def unhandled() -> None:
        raise Unhandled(f"database {SECRET}")

    return app


def registry() -> ExceptionMiddleware:
    exc = ExceptionMiddleware(logger=None)

    @exc.add_handler(Masked)
    def masked(error: Masked) -> None: ...

    @exc.add_handler(Leaky, publish=True)
    def leaky(error: Leaky) -> JSONResponse:  # a planted leak: the message, in body and header
        return JSONResponse({"detail": str(error)}, headers={"x-debug": SECRET}, status_code=503)

    return exc


async def test_a_masked_error_carries_no_secret() -> None:
    received = await request(app_with(registry()), "GET", "/masked")

    assert (received.status, received.body) == (500, b"Internal Server Error")
    assert SECRET not in received
    assert received.raised is None  # handled: nothing goes on to the server


async def test_a_secret_in_the_body_or_a_header_is_found() -> None:
    received = await request(app_with(registry()), "GET", "/leaky")

    assert received.status == 503
    assert SECRET in received  # JSON-escaped in the body, plain in the header
    assert received.header("X-Debug") == SECRET
    assert received.json() == {"detail": f'database "{SECRET}"'}


async def test_a_secret_only_in_a_header_is_found() -> None:
    received = Received(200, (("x-debug", SECRET),), b"{}")

    assert SECRET in received
    assert SECRET.encode() in received
    assert "hunter3" not in received


async def test_an_unhandled_error_is_answered_and_raised_to_the_server() -> None:
    received = await request(app_with(registry()), "GET", "/unhandled")

    assert (received.status, received.body) == (500, b"Internal Server Error")
    assert SECRET not in received
    assert isinstance(received.raised, Unhandled)


async def test_an_app_that_answers_nothing_gets_the_servers_answer() -> None:
    async def silent(scope: object, receive: object, send: object) -> None:
        raise Unhandled(SECRET)

    received = await request(silent, "GET", "/")  # type: ignore[arg-type]

    assert (received.status, received.body) == (500, b"Internal Server Error")
    assert isinstance(received.raised, Unhandled)


async def test_the_request_carries_method_query_headers_and_body() -> None:
    app = FastAPI()

    @app.post("/echo")
    async def echo(q: str, payload: dict[str, str]) -> dict[str, str]:
        return {"q": q, **payload}

    received = await request(
        app, "post", "/echo?q=1", headers={"Content-Type": "application/json"}, body='{"a": "b"}'
    )

    assert (received.status, received.json()) == (200, {"q": "1", "a": "b"})


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_on_uvicorn_the_client_gets_what_the_direct_request_gets() -> None:
    exc = registry()
    app = app_with(exc)
    direct = await request(app, "GET", "/leaky")

    with uvicorn_on_loopback(app) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            served = Received.of(await client.get("/leaky"))

    assert (served.status, served.body) == (direct.status, direct.body)
    assert served.header("x-debug") == direct.header("x-debug") == SECRET
    assert SECRET in served


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_uvicorn_in_a_thread_is_recorded_with_the_registry_scope_only() -> None:
    exc = registry()
    app = app_with(exc)

    with (
        uvicorn_on_loopback(app) as port,
        recording(exc) as mine,
        recording(exc, scope="registry") as everything,
    ):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await client.get("/masked")

    assert len(mine) == 0  # the server's thread does not run in the test's context
    event = everything.only
    assert (type(event.error), event.outcome, event.framework) == (Masked, "handled", "fastapi")


async def test_an_in_process_request_is_recorded_with_the_task_scope() -> None:
    exc = registry()

    with recording(exc) as events:
        await request(app_with(exc), "GET", "/masked")

    assert (type(events.only.error), events.only.framework) == (Masked, "fastapi")
