"""FastAPI end to end: a real uvicorn on 127.0.0.1, real HTTP and WebSocket clients, and every
log record of the process, uvicorn's included: each error is logged once, by excepthub."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI, HTTPException, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import StreamingResponse
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import excepthub_fastapi
from excepthub import ExceptionMiddleware

from ._servers import uvicorn_on_loopback

pytestmark = pytest.mark.anyio

ORIGIN = "http://client.example"
# uvicorn's websockets-sansio logs this after any denial response (Kludex/uvicorn#3138).
SANSIO_DENIAL_NOISE = "ASGI callable returned without completing handshake."


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the `websockets` client runs on asyncio


class Boom(Exception):
    """Handled by a side-effect handler."""


class NotFound(Exception):
    """Handled by a fallback handler; a 404."""

    status_code = 404


class Gone(Exception):
    """On a WebSocket, answered with a close code."""


class Broken(Exception):
    """Its handler fails."""


class Watch:
    """The outermost ASGI layer: counts calls in flight and keeps what escapes the app, which
    is exactly what the server would log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.escaped: list[BaseException] = []
        self._active = 0
        self._changed = threading.Condition()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        with self._changed:
            self._active += 1
        try:
            await self.app(scope, receive, send)
        except BaseException as error:
            self.escaped.append(error)
            raise
        finally:
            with self._changed:
                self._active -= 1
                self._changed.notify_all()

    def wait_idle(self) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._active == 0, timeout=10)


@dataclass
class Served:
    """The app under test, served by uvicorn, and what its handlers saw."""

    url: str
    watch: Watch
    seen: list[BaseException] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")

    async def settle(self) -> None:
        """Wait until every call has returned and the server has logged what it logs after a
        call (it does so in the same event-loop step, before it serves the next request)."""
        assert await anyio.to_thread.run_sync(self.watch.wait_idle)
        async with httpx.AsyncClient(base_url=self.url) as fresh:  # the server may close others
            assert (await fresh.get("/ping")).text == "pong"


def build_app(seen: list[BaseException]) -> FastAPI:
    exc = ExceptionMiddleware()

    @exc.add_handler(Boom)
    def on_boom(error: Boom) -> None:
        seen.append(error)

    @exc.add_handler(NotFound, publish=True)
    def on_not_found(error: NotFound) -> dict[str, bool]:
        seen.append(error)
        return {"missing": True}

    @exc.add_handler(Gone, publish=True)
    def on_gone(error: Gone) -> WebSocketClose:
        seen.append(error)
        return WebSocketClose(4000, "gone")

    @exc.add_handler(Broken)
    def on_broken(error: Broken) -> None:
        raise ValueError("handler bug")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.ready = True
        yield

    cors = Middleware(CORSMiddleware, allow_origins=[ORIGIN])
    app = FastAPI(middleware=[cors, excepthub_fastapi.middleware(exc)], lifespan=lifespan)

    @app.get("/ping")
    async def ping() -> Any:
        return StreamingResponse(iter([b"pong"]))

    @app.get("/ready")
    async def ready() -> bool:
        return bool(app.state.ready)

    def raising(path: str, error: Exception) -> None:
        @app.get(path)
        async def endpoint() -> None:
            raise error

    raising("/fallback", NotFound())
    raising("/side-effect", Boom("password=hunter2"))
    raising("/unhandled", KeyError("password=hunter2"))
    raising("/broken", Broken())
    raising("/http", HTTPException(418, "teapot"))

    @app.get("/background")
    async def background(tasks: BackgroundTasks) -> dict[str, bool]:
        def send_mail() -> None:
            raise Boom("smtp down")

        tasks.add_task(send_mail)
        return {"queued": True}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def rows() -> AsyncIterator[bytes]:
            yield b"first row\n"
            raise Boom("cursor lost")

        return StreamingResponse(rows())

    @app.websocket("/ws/after-accept")
    async def after_accept(websocket: WebSocket) -> None:
        await websocket.accept()
        raise Boom("after accept")

    @app.websocket("/ws/fallback")
    async def fallback(websocket: WebSocket) -> None:
        await websocket.accept()
        raise Gone()

    @app.websocket("/ws/before-accept")
    async def before_accept(websocket: WebSocket) -> None:
        raise Boom("before accept")

    @app.websocket("/ws/validated")
    async def validated(websocket: WebSocket, room: int) -> None:
        await websocket.accept()

    return app


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """uvicorn on a free port of 127.0.0.1, in a thread, for the module; stopped after it."""
    seen: list[BaseException] = []
    watch = Watch(build_app(seen))
    with uvicorn_on_loopback(watch, access_log=False, lifespan="on") as port:
        yield Served(f"http://127.0.0.1:{port}", watch, seen)


@pytest.fixture(autouse=True)
async def settled(served: Served) -> None:
    """Each test starts once the calls of the one before (and their logs) are over."""
    await served.settle()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Callable[[str], list[logging.LogRecord]]:
    """Every record of the process at INFO and above, by logger-name prefix."""
    caplog.set_level(logging.INFO)
    return lambda prefix: [r for r in caplog.records if r.name.startswith(prefix)]


def problems(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.levelno >= logging.WARNING]


@pytest.fixture
async def http(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        yield client


# -- HTTP -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "outcome", "level"),
    [
        ("/fallback", 404, "published", logging.INFO),
        ("/side-effect", 500, "handled", logging.WARNING),
        ("/http", 418, "published", logging.INFO),
    ],
)
async def test_each_outcome_is_logged_once_end_to_end(
    served: Served,
    http: httpx.AsyncClient,
    logs: Callable[[str], list[logging.LogRecord]],
    path: str,
    status: int,
    outcome: str,
    level: int,
) -> None:
    response = await http.get(path, headers={"X-Request-ID": f"req{path}"})
    await served.settle()

    assert response.status_code == status
    assert "hunter2" not in response.text
    [record] = logs("excepthub")
    assert (record.excepthub_outcome, record.levelno) == (outcome, level)
    assert record.correlation_id == f"req{path}"
    assert problems(logs("uvicorn")) == []
    assert served.watch.escaped == []


async def test_unhandled_error_goes_on_to_the_server_which_logs_it_once(
    served: Served, http: httpx.AsyncClient, logs: Callable[[str], list[logging.LogRecord]]
) -> None:
    served.watch.escaped.clear()

    response = await http.get("/unhandled")
    await served.settle()

    assert (response.status_code, response.text) == (500, "Internal Server Error")
    assert logs("excepthub") == []
    [record] = logs("uvicorn.error")
    assert record.getMessage().strip() == "Exception in ASGI application"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], KeyError)
    assert served.watch.escaped == [record.exc_info[1]]
    served.watch.escaped.clear()


async def test_failing_handler_exception_is_logged_once_by_the_server(
    served: Served, http: httpx.AsyncClient, logs: Callable[[str], list[logging.LogRecord]]
) -> None:
    served.watch.escaped.clear()

    response = await http.get("/broken")
    await served.settle()

    assert (response.status_code, response.text) == (500, "Internal Server Error")
    assert [r.excepthub_outcome for r in logs("excepthub")] == ["failed"]
    [record] = logs("uvicorn.error")
    assert record.exc_info is not None
    failure = record.exc_info[1]
    assert isinstance(failure, ValueError)
    assert isinstance(failure.__context__, Broken)
    assert served.watch.escaped == [failure]
    served.watch.escaped.clear()


async def test_error_answer_carries_cors_headers_over_the_wire(http: httpx.AsyncClient) -> None:
    response = await http.get("/side-effect", headers={"Origin": ORIGIN})

    assert response.status_code == 500
    assert response.headers["access-control-allow-origin"] == ORIGIN


async def test_lifespan_passes_through_the_middleware(http: httpx.AsyncClient) -> None:
    assert (await http.get("/ready")).json() is True


async def test_background_task_error_is_observed_once_after_the_answer(
    served: Served, http: httpx.AsyncClient, logs: Callable[[str], list[logging.LogRecord]]
) -> None:
    served.seen.clear()

    response = await http.get("/background")
    await served.settle()

    assert (response.status_code, response.json()) == (200, {"queued": True})
    assert [str(e) for e in served.seen] == ["smtp down"]
    assert [r.excepthub_outcome for r in logs("excepthub")] == ["handled"]
    assert problems(logs("uvicorn")) == []
    assert served.watch.escaped == []


async def test_streaming_body_error_is_observed_once_and_the_client_sees_the_stream_cut(
    served: Served, http: httpx.AsyncClient, logs: Callable[[str], list[logging.LogRecord]]
) -> None:
    served.seen.clear()

    async with http.stream("GET", "/stream") as response:
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            await response.aread()
    await served.settle()

    assert [str(e) for e in served.seen] == ["cursor lost"]
    assert [r.excepthub_outcome for r in logs("excepthub")] == ["handled"]
    # uvicorn reports the cut connection, one line without the error or its traceback.
    assert problems(logs("uvicorn")) == ["ASGI callable returned without completing response."]
    assert served.watch.escaped == []


# -- WebSocket ------------------------------------------------------------------------------


async def close_of(served: Served, path: str) -> tuple[int, str]:
    async with connect(served.ws_url + path) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_websocket_error_after_accept_closes_with_1011_and_is_logged_once(
    served: Served, logs: Callable[[str], list[logging.LogRecord]]
) -> None:
    assert await close_of(served, "/ws/after-accept") == (1011, "Internal Server Error")
    await served.settle()

    assert [r.excepthub_outcome for r in logs("excepthub")] == ["handled"]
    assert problems(logs("uvicorn")) == []
    assert served.watch.escaped == []


async def test_websocket_fallback_closes_with_the_code_it_returned(served: Served) -> None:
    assert await close_of(served, "/ws/fallback") == (4000, "gone")


async def test_websocket_validation_error_is_refused_as_fastapi_refuses_it(served: Served) -> None:
    # FastAPI closes with 1008 before the handshake, which the server sends as a 403.
    with pytest.raises(InvalidStatus) as refused:
        async with connect(served.ws_url + "/ws/validated?room=abc"):
            pass

    assert refused.value.response.status_code == 403


async def test_websocket_error_before_accept_is_denied_with_a_500(
    served: Served, logs: Callable[[str], list[logging.LogRecord]]
) -> None:
    with pytest.raises(InvalidStatus) as denied:
        async with connect(served.ws_url + "/ws/before-accept"):
            pass
    await served.settle()

    assert denied.value.response.status_code == 500
    assert [r.excepthub_outcome for r in logs("excepthub")] == ["handled"]
    assert set(problems(logs("uvicorn"))) <= {SANSIO_DENIAL_NOISE}  # no traceback, no error
    assert served.watch.escaped == []
