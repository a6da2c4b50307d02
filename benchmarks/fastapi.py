"""FastAPI: excepthub's middleware against FastAPI's native `@app.exception_handler`.

Two apps with the same endpoints: `native` registers each handler with
`app.add_exception_handler` (what `@app.exception_handler` does), `excepthub` passes
`excepthub_fastapi.middleware(registry)` to the constructor, with the same handler function
where FastAPI can call it (a Starlette-style `(request, exc)` handler is taken as is). Each
request is driven three ways: straight into the ASGI app with a prebuilt scope, `receive` and
`send` (the least noise: what is measured is FastAPI's own work per request); through
`httpx.AsyncClient` with `httpx.ASGITransport` (what a test client sees); and, for reference,
through uvicorn on 127.0.0.1 (on this event loop, one keep-alive connection per side), where a
request costs about a millisecond and what either side adds is below the noise. One more
happy-path row compares excepthub with an app whose only middleware is a pure ASGI
pass-through, the least any middleware layer costs. No floor column: FastAPI's native handling
costs about what an endpoint catching its own error costs (within this machine's noise), so an
own-cost ratio would be noise over noise.

Handlers and dependencies are async (a sync one goes to the threadpool on both sides). Logging
is off: the registry has `logger=None`, uvicorn's access log is off, and Starlette logs nothing
on these paths.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import excepthub
import excepthub_fastapi
from excepthub import Depends

from ._timing import Case, Work

GROUP = "fastapi"
NATIVE = "@app.exception_handler"


class ItemNotFound(LookupError):
    pass


class UpstreamDown(ConnectionError):
    pass


class ItemGone(LookupError):
    pass


class QuotaExceeded(Exception):
    pass


_SIDE_EFFECTS = itertools.count()  # what a side-effect handler does: cheap, no memory growth


# -- the handlers: the same function on both sides where FastAPI can call it ------------------


async def not_found(request: Request, exc: ItemNotFound) -> JSONResponse:
    """Starlette-style: FastAPI calls it natively, excepthub takes it as is."""
    return JSONResponse({"detail": "no such item"}, status_code=404)


async def alert(error: UpstreamDown) -> None:
    """excepthub's side-effect handler: the client gets FastAPI's masked 500."""
    next(_SIDE_EFFECTS)


async def alert_native(request: Request, exc: UpstreamDown) -> Response:
    """The same, natively: the handler has to build the masked 500 itself."""
    next(_SIDE_EFFECTS)
    return PlainTextResponse("Internal Server Error", status_code=500)


async def gone(error: ItemGone, request: Request) -> JSONResponse:
    """excepthub: `request` injected by name."""
    return JSONResponse({"detail": "gone", "path": request.url.path}, status_code=410)


async def gone_native(request: Request, exc: ItemGone) -> JSONResponse:
    return JSONResponse({"detail": "gone", "path": request.url.path}, status_code=410)


async def tenant(request: Request) -> str:
    """A dependency that reads the request."""
    return request.headers.get("x-tenant", "public")


async def over_quota(
    error: QuotaExceeded, request: Request, who: str = Depends(tenant)
) -> JSONResponse:
    """excepthub: the dependency injected (FastAPI cannot inject into exception handlers)."""
    return JSONResponse({"detail": "quota exceeded", "tenant": who}, status_code=429)


async def over_quota_native(request: Request, exc: QuotaExceeded) -> JSONResponse:
    """Natively: the handler calls the dependency by hand."""
    who = await tenant(request)
    return JSONResponse({"detail": "quota exceeded", "tenant": who}, status_code=429)


# -- the apps -------------------------------------------------------------------------------


def _routes(app: FastAPI) -> FastAPI:
    @app.get("/ok")
    async def ok() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/fallback")
    async def fallback() -> dict[str, bool]:
        raise ItemNotFound("item 7")

    @app.get("/side-effect")
    async def side_effect() -> dict[str, bool]:
        raise UpstreamDown("db-7.internal refused")

    @app.get("/request")
    async def by_request() -> dict[str, bool]:
        raise ItemGone("item 7")

    @app.get("/depends")
    async def by_depends() -> dict[str, bool]:
        raise QuotaExceeded("tenant acme")

    return app


def _native() -> FastAPI:
    app = FastAPI()
    # what @app.exception_handler does (Starlette types handlers as taking any Exception)
    app.add_exception_handler(ItemNotFound, not_found)  # type: ignore[arg-type]
    app.add_exception_handler(UpstreamDown, alert_native)  # type: ignore[arg-type]
    app.add_exception_handler(ItemGone, gone_native)  # type: ignore[arg-type]
    app.add_exception_handler(QuotaExceeded, over_quota_native)  # type: ignore[arg-type]
    return _routes(app)


class PassThrough:
    """The least any pure ASGI middleware costs: one more layer that only awaits the next."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def _pass_through() -> FastAPI:
    return _routes(FastAPI(middleware=[Middleware(PassThrough)]))


def _excepthub() -> FastAPI:
    exc = excepthub.ExceptionMiddleware(logger=None)
    exc.add_handler(ItemNotFound, publish=True)(not_found)
    exc.add_handler(UpstreamDown)(alert)
    exc.add_handler(ItemGone, publish=True)(gone)
    exc.add_handler(QuotaExceeded, publish=True)(over_quota)
    return _routes(FastAPI(middleware=[excepthub_fastapi.middleware(exc)]))


# -- the two ways of driving a request ------------------------------------------------------


def asgi(app: FastAPI, path: str) -> Work:
    """One GET straight into the ASGI app; answers (status, body)."""
    template = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench"), (b"user-agent", b"bench")],
        "client": ("127.0.0.1", 40000),
        "server": ("bench", 80),
    }
    request = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return request

    async def one() -> object:
        answer: list[Any] = []

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer.append(message["status"])
            elif message["type"] == "http.response.body":
                answer.append(message.get("body", b""))

        await app(dict(template), receive, send)  # a fresh scope: the app writes into it
        return answer[0], b"".join(answer[1:])

    return one


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")


def through_httpx(clients: dict[str, httpx.AsyncClient], side: str, path: str) -> Work:
    async def one() -> object:
        response = await clients[side].get(path)
        return response.status_code, response.content

    return one


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """`app` served by uvicorn on a free port of 127.0.0.1, on this event loop, until the block
    ends; yields a client of it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
            await asyncio.sleep(0.01)
        port = sock.getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            yield http
    finally:
        server.should_exit = True
        await task
        sock.close()


def cases() -> list[Case]:
    native, ours = _native(), _excepthub()

    def direct(
        name: str, path: str, expected: tuple[int, bytes], target: float | None = None
    ) -> Case:
        theirs, mine = asgi(native, path), asgi(ours, path)
        return Case(
            GROUP,
            f"{name} (ASGI)",
            NATIVE,
            theirs,
            mine,
            batch=500,
            setup=_answers(expected, theirs, mine),
            target=target,
        )

    def over_httpx(
        name: str, path: str, expected: tuple[int, bytes], target: float | None = None
    ) -> Case:
        clients = {"native": client(native), "ours": client(ours)}  # opened for this case only
        theirs = through_httpx(clients, "native", path)
        mine = through_httpx(clients, "ours", path)
        return Case(
            GROUP,
            f"{name} (httpx)",
            NATIVE,
            theirs,
            mine,
            batch=60,
            setup=_answers(expected, theirs, mine, clients=clients),
            target=target,
        )

    def over_uvicorn(
        name: str, path: str, expected: tuple[int, bytes], target: float | None = None
    ) -> Case:
        clients: dict[str, httpx.AsyncClient] = {}
        theirs = through_httpx(clients, "native", path)
        mine = through_httpx(clients, "ours", path)

        @asynccontextmanager
        async def setup() -> AsyncIterator[None]:
            async with served(native) as a, served(ours) as b:
                clients.update(native=a, ours=b)
                async with _answers(expected, theirs, mine)():
                    yield

        return Case(
            GROUP,
            f"{name} (uvicorn)",
            NATIVE,
            theirs,
            mine,
            batch=40,
            setup=setup,
            target=target,
        )

    layer, mine = asgi(_pass_through(), "/ok"), asgi(ours, "/ok")
    one_layer = Case(
        GROUP,
        "happy path (ASGI), against any one middleware layer",
        "pass-through ASGI middleware",
        layer,
        mine,
        batch=500,
        setup=_answers((200, b'{"ok":true}'), layer, mine),
    )
    found = (404, b'{"detail":"no such item"}')
    masked = (500, b"Internal Server Error")
    return [
        direct("happy path", "/ok", (200, b'{"ok":true}'), target=1.01),
        one_layer,
        over_httpx("happy path", "/ok", (200, b'{"ok":true}'), target=1.01),
        # a handled error: at most 1.05x FastAPI calling the same handler (the registry's work)
        direct("error, fallback JSONResponse", "/fallback", found, target=1.05),
        over_httpx("error, fallback JSONResponse", "/fallback", found),
        direct("error, side-effect handler -> masked 500", "/side-effect", masked, target=1.05),
        # for reference: a served request costs ~1 ms here, far above what either side adds
        over_uvicorn("happy path", "/ok", (200, b'{"ok":true}')),
        over_uvicorn("error, fallback JSONResponse", "/fallback", found),
        over_uvicorn("error, side-effect handler -> masked 500", "/side-effect", masked),
        direct(
            "error, fallback with request injected",
            "/request",
            (410, b'{"detail":"gone","path":"/request"}'),
            target=1.05,
        ),
        direct(
            "error, fallback with Depends (native: called by hand)",
            "/depends",
            (429, b'{"detail":"quota exceeded","tenant":"public"}'),
        ),
    ]


def _answers(
    expected: tuple[int, bytes], *works: Work, clients: dict[str, httpx.AsyncClient] | None = None
) -> Callable[[], Any]:
    """Before measuring: every side gives the same answer (the same unit of work); the httpx
    clients are opened for the case and closed after it."""

    @asynccontextmanager
    async def check() -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for http in (clients or {}).values():
                await stack.enter_async_context(http)
            before = next(_SIDE_EFFECTS)
            for work in works:
                got = await work()
                assert got == expected, f"{work}: {got!r} != {expected!r}"
            if expected == (500, b"Internal Server Error"):  # the side-effect handlers ran
                assert next(_SIDE_EFFECTS) == before + len(works) + 1, "a handler did not run"
            yield

    return check
