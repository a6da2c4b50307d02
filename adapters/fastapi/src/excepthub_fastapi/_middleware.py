"""The FastAPI adapter: one registry for every error a FastAPI (or Starlette) app raises.

Two places catch errors, both owned by `ExcepthubMiddleware`:

- route level: when FastAPI builds its middleware stack, the middleware registers its
  dispatcher in Starlette's `ExceptionMiddleware` for `Exception` (and in place of the
  framework's default handlers). Errors from endpoints, dependencies, validation, routing
  (404/405) and `HTTPException` are answered there, with the endpoint's own `Request`, inside
  every user middleware (CORS headers included);
- its own place in `middleware=[...]`: errors raised by the user middleware listed after it,
  and errors raised after the response started (yield-dependency teardown, background tasks,
  streaming bodies), which only the handlers see. Listed last, right above Starlette's
  `ExceptionMiddleware`, it does that middleware's work in its place (the routes' handler
  table; what escapes below the routes, to the user's handler for it if any): a layer fewer.

What no user handler takes goes on exactly as without excepthub: the framework's own answer
(FastAPI's for a FastAPI app, Starlette's for a Starlette app), or the error raised on to
`ServerErrorMiddleware`, the telemetry middleware, the server and the test client, which log
and report it (excepthub only counts it and shows it to hooks).

A router's own registry comes in as a dependency, `router_handlers(registry)`: it marks the
request, and the dispatcher asks the registries of the routers the request went through first,
innermost first; only the app's registry reports what none of them took.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from fastapi import params
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
    websocket_request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError
from fastapi.routing import APIRouter
from fastapi.utils import is_body_allowed_for_status_code
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException, WebSocketException
from starlette.middleware import Middleware
from starlette.middleware.exceptions import ExceptionMiddleware as StarletteExceptionMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketClose, WebSocketDisconnect, WebSocketState

import excepthub
from excepthub import Outcome

from ._problem import Problem

_log: Final = logging.getLogger("excepthub")

__all__ = [
    "DEFAULTS",
    "STARLETTE_DEFAULTS",
    "ExcepthubMiddleware",
    "middleware",
    "StatusCode",
    "router_handlers",
    "starlette_http_exception_handler",
    "status_code",
    "websocket_exception_handler",
]

# -- status codes as conditions -------------------------------------------------------------


@dataclass(frozen=True)
class StatusCode:
    """The condition of a Starlette status-code handler: an `HTTPException` with one of
    `codes` (made by `status_code(...)`)."""

    codes: frozenset[int]

    def __call__(self, error: Exception) -> bool:
        return isinstance(error, HTTPException) and error.status_code in self.codes


def status_code(*codes: int) -> StatusCode:
    """A condition that holds for an `HTTPException` with one of `codes`: what Starlette's
    `exception_handlers={404: handler}` expresses, as a registration of the registry.

    ```python
    @exc.add_handler(HTTPException, publish=True, when=excepthub_fastapi.status_code(404))
    async def not_found(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": "nothing here"}, status_code=404)
    ```
    """
    found = _STATUS_CODES.get(codes)
    if found is None:
        if not codes or not all(type(code) is int for code in codes):
            raise TypeError(f"status_code() takes HTTP status codes, got {codes!r}")
        found = _STATUS_CODES.setdefault(codes, StatusCode(frozenset(codes)))
    return found


# one condition per status code: the same object for the same codes, built once
_STATUS_CODES: Final[dict[tuple[int, ...], StatusCode]] = {}


# -- framework defaults ---------------------------------------------------------------------


async def websocket_exception_handler(websocket: WebSocket, exc: WebSocketException) -> None:
    """Starlette's answer to a `WebSocketException`: close the socket with its code and reason."""
    await websocket.close(code=exc.code, reason=exc.reason)


async def starlette_http_exception_handler(request: Request, exc: HTTPException) -> Response:
    """Starlette's own answer to an `HTTPException` (what its `ExceptionMiddleware` sends): the
    status, its headers and the detail as plain text (no body for 204 and 304)."""
    if exc.status_code in {204, 304}:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)


try:  # Starlette 1.6 added the request body limiter; before it, there is no signal to pass on
    from starlette.middleware import body_limit
except ImportError:
    body_limit = None  # type: ignore[assignment]

# Starlette's body limiter signals "413 already sent" with a private exception; FastAPI reads
# it the same way (fastapi/_body_limit.py), and it must reach the limiter untouched.
_BODY_LIMIT_SENT: Final[tuple[type[Exception], ...]] = tuple(
    cls for cls in (getattr(body_limit, "_RequestBodyLimitResponseSent", None),) if cls
)
# Control flow, not errors: a client gone away, the body limiter's signal.
_LET_THROUGH: Final[dict[excepthub.ExceptionKey, Callable[..., Any]]] = dict.fromkeys(
    (WebSocketDisconnect, *_BODY_LIMIT_SENT), excepthub.reraise
)
# Nothing but the user's handlers takes it: it goes on as without excepthub.
_GOES_ON: Final[dict[excepthub.ExceptionKey, Callable[..., Any]]] = {
    **_LET_THROUGH,
    Exception: excepthub.reraise,
}

# The context values handlers can ask for by name (see `_Failures._handle`).
_SUPPLIES: Final = ("request", "websocket", "correlation_id")


class _Framework:
    """A framework's own answers (`answers`, layered under the user's handlers) and the other
    ways the registries are asked: a router's registry, the app's once a router's handler
    re-raised the error, and after the response started (nothing can be answered then)."""

    __slots__ = ("answered", "answers", "own", "reported", "router", "started")

    def __init__(
        self, name: str, answers: dict[excepthub.ExceptionKey, Callable[..., Any]]
    ) -> None:
        passing = dict.fromkeys([*answers, *_LET_THROUGH], excepthub.reraise)
        # what no user handler takes goes on to the server, which logs it: excepthub does not
        self.answers = excepthub.Defaults(
            name,
            supplies=_SUPPLIES,
            publish_handlers={**answers, **_LET_THROUGH},
            handlers=_LET_THROUGH,
            logs_unhandled=True,
        )
        self.answered = tuple(answers)  # a quick `isinstance` before walking the MRO
        self.own = frozenset(answers.values())  # the framework's own answers, as it sends them
        # a broad handler of a router never takes the framework's own exceptions; they, and what
        # none of its handlers takes, go on unreported to the app's registry
        self.router = excepthub.Defaults(
            f"{name}, router",
            framework=name,
            supplies=_SUPPLIES,
            publish_handlers=passing,
            handlers=_GOES_ON,
            logs_unhandled=True,
        )
        # a router's handler re-raised the error (the core reported it unhandled then)
        self.reported = excepthub.Defaults(
            f"{name}, reported",
            framework=name,
            supplies=_SUPPLIES,
            publish_handlers=self.answers.publish_handlers,
            handlers=_GOES_ON,
            logs_unhandled=True,
        )
        # the framework's answers cannot be sent: its exceptions go on as Starlette sends them
        self.started = excepthub.Defaults(
            f"{name}, response started",
            framework=name,
            supplies=_SUPPLIES,
            publish_handlers=passing,
            handlers=_LET_THROUGH,
            logs_unhandled=True,
        )


_FASTAPI: Final = _Framework(
    "fastapi",
    {
        HTTPException: http_exception_handler,  # FastAPI's HTTPException subclasses Starlette's
        RequestValidationError: request_validation_exception_handler,
        WebSocketRequestValidationError: websocket_request_validation_exception_handler,
        WebSocketException: websocket_exception_handler,
    },
)
_STARLETTE: Final = _Framework(
    "starlette",
    {
        HTTPException: starlette_http_exception_handler,
        WebSocketException: websocket_exception_handler,
    },
)

DEFAULTS: Final = _FASTAPI.answers
"""FastAPI's own answers, layered under the user's handlers: `HTTPException` -> its status,
`{"detail": ...}` and headers; `RequestValidationError` -> 422 `{"detail": [...]}`;
`WebSocketRequestValidationError` -> close 1008; `WebSocketException` -> close with its code.
`WebSocketDisconnect` passes through. A user handler for the same class replaces the answer.
What no user handler takes goes on to Starlette's `ServerErrorMiddleware` and the server."""

STARLETTE_DEFAULTS: Final = _STARLETTE.answers
"""Plain Starlette's own answers, used for a Starlette app: `HTTPException` -> its status and
detail as plain text, `WebSocketException` -> close with its code."""

# What FastAPI answers for an error it knows nothing about.
_INTERNAL_ERROR: Final = "Internal Server Error"
_WS_INTERNAL_ERROR: Final = 1011

# -- plug-in --------------------------------------------------------------------------------


def middleware(
    registry: excepthub.ExceptionMiddleware, *, request_id_header: str = "X-Request-ID"
) -> Middleware:
    """What `FastAPI(middleware=[...])` takes to send every error of the app to `registry`.

    ```python
    app = FastAPI(middleware=[excepthub_fastapi.middleware(exc)])
    ```

    Errors from endpoints, dependencies, validation and routing are answered at route level,
    inside every middleware, wherever this one is listed; errors raised by middleware are
    answered when that middleware is listed after this one. `request_id_header` names the
    header whose value becomes the `correlation_id` (a random one is made when it is absent).
    """
    if not isinstance(registry, excepthub.ExceptionMiddleware):
        raise TypeError(f"middleware() takes an excepthub.ExceptionMiddleware, got {registry!r}")
    registry.plug_in(DEFAULTS)  # now, so that a handler nothing can fill is refused here
    return Middleware(ExcepthubMiddleware, registry=registry, request_id_header=request_id_header)


class ExcepthubMiddleware:
    """A pure ASGI middleware that hands the app's errors to an excepthub registry.

    Built by FastAPI from `excepthub_fastapi.middleware(registry)`; equivalently
    `app.add_middleware(ExcepthubMiddleware, registry=registry)` before the app starts. On
    construction it finds Starlette's `ExceptionMiddleware` below it and registers its
    route-level dispatcher there: for `Exception`, and in place of the framework's default
    handlers, also wrapped (by `functools.wraps` or by Sentry's Starlette integration: what no
    user handler takes goes to the wrapper); handlers the user registered with
    `@app.exception_handler` stay and win for their classes. Right above that middleware, it
    also does its work in its place.
    """

    def __init__(
        self,
        app: ASGIApp,
        registry: excepthub.ExceptionMiddleware,
        *,
        request_id_header: str = "X-Request-ID",
    ) -> None:
        self.app = app
        self.registry = registry
        registry.plug_in(DEFAULTS)  # for `app.add_middleware(...)`; `middleware()` did already
        self._inner: ASGIApp = app
        self._handlers: _StarletteHandlers | None = None
        try:
            route_level = _exception_layer(app)
        except LookupError as hidden:
            # Position-independent: only the errors that reach this middleware are its own
            # (what Starlette's ExceptionMiddleware answers stays as without excepthub).
            _log.warning("%s", hidden)
            self._failures = _Failures(registry, request_id_header, None, None)
            return
        handlers = _starlette_handlers(route_level)
        self._failures = _Failures(registry, request_id_header, handlers, route_level)
        _install(route_level, self._failures.dispatch)
        # Right above Starlette's ExceptionMiddleware, whose every handler but the user's is
        # excepthub's now, this middleware does its work in its place: one layer fewer on
        # every request. Else it calls the middleware below, as any middleware does.
        if route_level is app and handlers is not None:
            self._inner, self._handlers = route_level.app, handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" and scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        if self._handlers is not None:  # what Starlette's ExceptionMiddleware sets for routes
            scope["starlette.exception_handlers"] = self._handlers
        progress = _Progress(send)
        try:
            await self._inner(scope, receive, progress)
        except Exception as error:
            await self._failures.escaped(error, scope, receive, send, progress, self._handlers)


class _Progress:
    """`send`, remembering the last message type, to tell whether an answer is still possible."""

    __slots__ = ("last", "send")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.last = ""

    async def __call__(self, message: Message) -> None:
        self.last = message["type"]
        await self.send(message)

    @property
    def responded(self) -> bool:
        last = self.last
        return last.startswith("http.") or last == "websocket.close" or ".http.response" in last

    @property
    def accepted(self) -> bool:
        return self.last.startswith("websocket.") and not self.responded


# Starlette's ExceptionMiddleware's handlers: (by exception class, by HTTP status code).
_StarletteHandlers = tuple[dict[Any, Any], dict[int, Any]]


def _starlette_handlers(layer: StarletteExceptionMiddleware) -> _StarletteHandlers | None:
    """The handler maps Starlette's ExceptionMiddleware serves, if it keeps them as it does
    today (`starlette.middleware.exceptions`); `None` otherwise."""
    handlers = getattr(layer, "_exception_handlers", None)
    status_handlers = getattr(layer, "_status_handlers", None)
    if isinstance(handlers, dict) and isinstance(status_handlers, dict):
        return handlers, status_handlers
    return None


def _exception_layer(app: ASGIApp) -> StarletteExceptionMiddleware:
    """The Starlette `ExceptionMiddleware` below `app`, found along each layer's inner app;
    `LookupError` naming the layer that hides its inner app."""
    layer: Any = app
    seen: set[int] = set()
    while not isinstance(layer, StarletteExceptionMiddleware):
        seen.add(id(layer))
        # `functools.wraps(app)` copies the wrapped app's attributes, its own `app` included,
        # onto the wrapper: `__wrapped__` is the layer right below, `app` would skip it
        inner = getattr(layer, "__wrapped__", None) or getattr(layer, "app", None)
        if inner is None or id(inner) in seen:
            raise LookupError(
                f"excepthub_fastapi cannot find Starlette's ExceptionMiddleware below {layer!r}: "
                "that middleware keeps the app it wraps out of sight (no `app` or `__wrapped__` "
                "attribute), so excepthub takes only the errors that reach its own place in the "
                "stack, not the routes' errors that Starlette answers itself. List excepthub's "
                "middleware after it in `middleware=[...]`, or keep the inner app as its `app` "
                "attribute"
            )
        layer = inner
    return layer


def _install(
    layer: StarletteExceptionMiddleware, dispatch: Callable[[HTTPConnection, Exception], Any]
) -> None:
    """Register `dispatch` in Starlette's `ExceptionMiddleware` `layer`."""
    registered: Mapping[Any, Any] = getattr(layer, "_exception_handlers", {})
    for key, handler in list(registered.items()):
        # The framework's defaults (FastAPI's, or Starlette's bound methods), also wrapped, give
        # way to excepthub; a handler the user registered with `@app.exception_handler` stays.
        if _framework_default(handler, layer):
            layer.add_exception_handler(key, dispatch)
        elif key in _FRAMEWORK_CLASSES:  # the user's, or a default wrapped past seeing
            layer.add_exception_handler(key, _Undisclosed(key, handler, dispatch))
    layer.add_exception_handler(Exception, dispatch)


def _unwrapped(handler: Any) -> Any:
    """`handler` without the `functools.wraps` wrappers around it (their `__wrapped__`)."""
    try:
        return inspect.unwrap(handler)
    except ValueError:  # a cycle of `__wrapped__`: no handler of the framework's inside
        return handler


def _framework_default(handler: Any, layer: StarletteExceptionMiddleware) -> bool:
    """Whether `handler` is the framework's default, itself or behind `functools.wraps`
    wrappers: FastAPI's, or Starlette's (a method of `layer`)."""
    inner = _unwrapped(handler)
    return inner in _FRAMEWORK_HANDLERS or getattr(inner, "__self__", None) is layer


class _Undisclosed:
    """In Starlette's table at one of the framework's classes, in place of a handler excepthub
    cannot place: the user's own, or a wrapper that hides the framework's default it wraps (as
    Sentry's Starlette integration wraps every handler). On each error the app's public
    `exception_handlers` tell which: the default's place is excepthub's, the user's handler
    answers as before."""

    __slots__ = ("dispatch", "key", "native")

    def __init__(self, key: type[Exception], native: Any, dispatch: Callable[..., Any]) -> None:
        self.key, self.native, self.dispatch = key, native, dispatch

    async def __call__(self, conn: HTTPConnection, error: Exception) -> Any:
        if _app_default(conn, self.key):
            return await self.dispatch(conn, error)
        return await _call(self.native, conn, error)


def _app_default(conn: HTTPConnection, key: type[Exception]) -> bool:
    """Whether the app's public `exception_handlers` leave `key` to the framework: no handler
    (Starlette's own) or FastAPI's, also wrapped."""
    registered = getattr(conn.scope.get("app"), "exception_handlers", None)
    return isinstance(registered, Mapping) and (
        key not in registered or _unwrapped(registered[key]) in _FRAMEWORK_HANDLERS
    )


def _native_answer(
    key: type[Exception], native: Any, default: Callable[..., Any], *, disclosed: bool
) -> Callable[..., Any]:
    """The framework's answer to `key` given by the wrapper Starlette's table had in its place
    (`native`), so that what no user handler takes is answered as without excepthub;
    `default` where a wrapper that hides what it wraps (not `disclosed`) is the user's own."""

    async def answer(request: HTTPConnection, exc: Exception) -> Any:
        if disclosed or _app_default(request, key):
            return await _call(native, request, exc)
        return await _call(default, request, exc)

    # named as the default it gives (on events and in logs); no `__wrapped__`: its own signature
    answer.__module__, answer.__name__ = default.__module__, default.__name__
    answer.__qualname__ = default.__qualname__
    return answer


def _framework_of(layer: StarletteExceptionMiddleware, native: _StarletteHandlers) -> _Framework:
    """FastAPI's or Starlette's: FastAPI's when the routes below `layer` are an `APIRouter` or
    its handlers are FastAPI's; its answers given by the wrappers `layer` has around them."""
    routes: Any = layer
    for _ in range(8):  # FastAPI: ExceptionMiddleware -> AsyncExitStackMiddleware -> APIRouter
        routes = getattr(routes, "app", None)
        if routes is None or isinstance(routes, Router):
            break
    fastapi = isinstance(routes, APIRouter) or any(
        _unwrapped(h) in _FRAMEWORK_HANDLERS for h in native[0].values()
    )
    framework = _FASTAPI if fastapi else _STARLETTE
    defaults: Mapping[Any, Callable[..., Any]] = framework.answers.publish_handlers
    wrapped = {
        cls: _native_answer(cls, h, defaults[cls], disclosed=_framework_default(h, layer))
        for cls, h in native[0].items()
        if cls in framework.answered
        and h not in _FRAMEWORK_HANDLERS
        and getattr(h, "__self__", None) is not layer
    }
    if not wrapped:  # the common case: the framework's own handlers, shared
        return framework
    answers = {cls: defaults[cls] for cls in framework.answered}
    return _Framework(framework.answers.framework, {**answers, **wrapped})


def router_handlers(registry: excepthub.ExceptionMiddleware) -> params.Depends:
    """What `APIRouter(dependencies=[...])` takes to give the router's routes a registry of
    their own (also `include_router(..., dependencies=[...])`, or a single route's).

    ```python
    orders = APIRouter(prefix="/orders", dependencies=[excepthub_fastapi.router_handlers(exc)])
    app = FastAPI(middleware=[excepthub_fastapi.middleware(app_exc)])
    ```

    An error of those routes goes to `registry` first; what its handlers do not take goes on
    to the registry of the enclosing router, then to the app's, which reports what none took.
    Errors raised before the dependency runs (routing, the app's middleware, a body that cannot
    be parsed, dependencies listed before it) are the app's. The app needs
    `excepthub_fastapi.middleware(...)`: without it, every request to those routes fails with a
    `RuntimeError` that says so.
    """
    if not isinstance(registry, excepthub.ExceptionMiddleware):
        raise TypeError(
            f"router_handlers() takes an excepthub.ExceptionMiddleware, got {registry!r}"
        )
    registry.plug_in(DEFAULTS)

    async def excepthub_router_handlers(connection: HTTPConnection) -> None:
        scope = connection.scope
        handlers = scope.get("starlette.exception_handlers")
        dispatch = handlers[0].get(Exception) if handlers else None
        if not isinstance(getattr(dispatch, "__self__", None), _Failures):
            raise RuntimeError(
                "excepthub_fastapi.router_handlers() needs the app's excepthub middleware: "
                "FastAPI(middleware=[excepthub_fastapi.middleware(registry)])"
            )
        routers: list[excepthub.ExceptionMiddleware] | None = scope.get(_ROUTERS)
        if routers is None:
            scope[_ROUTERS] = [registry]
        elif registry not in routers:  # the same registry at two levels: asked once
            routers.append(registry)

    # async, so that FastAPI calls it on the event loop; a parameterless dependency: no OpenAPI
    return params.Depends(excepthub_router_handlers)


# Scope key: the registries of the routers the request went through, outermost first.
_ROUTERS: Final = "excepthub.registries"


_FRAMEWORK_HANDLERS: Final = frozenset(
    {
        http_exception_handler,
        request_validation_exception_handler,
        websocket_request_validation_exception_handler,
    }
)
# The classes the frameworks answer: a handler there that hides what it wraps may be theirs.
_FRAMEWORK_CLASSES: Final = frozenset({*_FASTAPI.answered, *_STARLETTE.answered})


# -- unit of work -> handle -----------------------------------------------------------------


class _Failures:
    """A failed request (or WebSocket session) handed to the registry: with which context
    values, from which of the two places, and what goes on to the server afterwards."""

    __slots__ = ("_header", "_native", "framework", "registry")

    def __init__(
        self,
        registry: excepthub.ExceptionMiddleware,
        request_id_header: str,
        native: _StarletteHandlers | None,
        layer: StarletteExceptionMiddleware | None,
    ) -> None:
        self.registry = registry
        self._header = request_id_header.lower().encode("latin-1")
        # the handlers Starlette's ExceptionMiddleware had before excepthub registered its own
        self._native = None if native is None else (dict(native[0]), dict(native[1]))
        self.framework = _FASTAPI  # the tables out of sight: FastAPI's defaults
        if native is not None and layer is not None:
            self.framework = _framework_of(layer, native)

    def _request_id(self, scope: Scope) -> str:
        for name, value in scope["headers"]:
            if name == self._header:  # ASGI header names arrive lower-cased
                return str(value.decode("latin-1"))
        return _ID_PREFIX + str(next(_ID_COUNTER))

    async def dispatch(
        self, conn: HTTPConnection, error: Exception, *, from_route: bool = True
    ) -> Response | None:
        """The route-level handler Starlette calls as `handler(request, exc)`; `from_route`
        false for a middleware's error, which no router's registry sees. What no user handler
        takes is raised on, to `ServerErrorMiddleware` and the server, as without excepthub.

        Requests are never retried: a request body cannot be replayed safely.
        """
        scope = conn.scope
        if scope.get(_PASSING) is error:  # let through at route level already
            raise error
        routers = scope.get(_ROUTERS) if from_route else None
        if routers is None and scope["type"] == "http":
            # `_handle`'s call, spelled out (one coroutine fewer): the common error path
            try:
                outcome = await self.registry.handle(
                    error,
                    defaults=self.framework.answers,
                    convert=_rendered,
                    request=conn,
                    websocket=None,
                    correlation_id=self._request_id(scope),
                )
            except Exception as raised:
                scope[_PASSING] = raised
                raise
        else:
            outcome = await self._handle(conn, error, routers)
        answer: Any
        if outcome.published:  # over HTTP, rendered already (inside handling)
            answer = outcome.value
        else:  # handled for its effects: the framework's answer, masked
            handler = _masked_answer(conn, outcome.error, self.framework)
            answer = (
                _InternalServerError()
                if handler is None
                else await _call(handler, conn, outcome.error)
            )
        if scope["type"] == "websocket":  # not `isinstance`: an ABC's check costs a call
            await _answer_websocket(cast(WebSocket, conn), answer)
            return None
        if (
            getattr(answer, "status_code", 0) >= 500
            and _TELEMETRY_KEY in scope
            and outcome.handler not in self.framework.own  # FastAPI's own answer: as natively
        ):
            await _show_telemetry(scope, outcome.error)
        return answer  # type: ignore[no-any-return]

    async def _handle(
        self,
        conn: HTTPConnection,
        error: Exception,
        routers: list[excepthub.ExceptionMiddleware] | None,
        *,
        started: bool = False,
    ) -> Outcome:
        """Ask the routers' registries (innermost first), then the app's: the outcome of the
        first that takes `error`; what none takes is raised on, marked to pass every layer of
        excepthub's on its way to the server. `started`: after the response started.

        The values handlers can ask for by name: `request` (the `Request`, or the `WebSocket`
        as FastAPI's own handlers get it), `websocket` (or `None` over HTTP), `correlation_id`.
        """
        scope = conn.scope
        websocket = conn if scope["type"] == "websocket" else None
        correlation_id = self._request_id(scope)
        framework = self.framework
        reported = False
        # a fallback value becomes the response inside handling: one that cannot be is `failed`
        convert = _rendered if websocket is None and not started else None
        if routers:
            context = {"request": conn, "websocket": websocket, "correlation_id": correlation_id}
            outcome, error, reported = await _ask_routers(
                routers, error, context, framework, convert
            )
            if outcome is not None:
                return outcome
        if started:
            ask = framework.router if reported else framework.started
        else:
            ask = framework.reported if reported else framework.answers
        try:
            return await self.registry.handle(
                error,
                defaults=ask,
                convert=convert,
                request=conn,
                websocket=websocket,
                correlation_id=correlation_id,
            )
        except Exception as raised:
            scope[_PASSING] = raised
            raise

    async def escaped(
        self,
        error: Exception,
        scope: Scope,
        receive: Receive,
        send: Send,
        progress: _Progress,
        starlette: _StarletteHandlers | None,
    ) -> None:
        """An error that reached this middleware: from middleware below it, from below the
        routes when it serves in place of Starlette's ExceptionMiddleware (`starlette`, its
        handlers), or after the response started (Starlette reports those as a `RuntimeError`
        caused by the error)."""
        if scope.get(_PASSING) is error:
            raise error
        conn = _connection(scope, receive, send)
        wrapped = _after_response_started(error)
        if wrapped is not None or progress.responded:
            # Nothing can be answered any more: the user's handlers see the error, and what they
            # do not take goes on as without excepthub: the error itself, or Starlette's
            # RuntimeError where it would have found a handler of its own for it.
            routers = None
            if wrapped is not None:  # the route's error: its routers' registries see it too
                wrapper, error = wrapped
                if self._natively_handled(error):
                    error = wrapper
                routers = scope.get(_ROUTERS)
            elif starlette is not None and self._natively_handled(error):
                # in place of Starlette's ExceptionMiddleware: what it raises then
                raise RuntimeError(_RESPONSE_STARTED) from error
            await self._handle(conn, error, routers, started=True)
            return
        if isinstance(conn, WebSocket) and progress.accepted:
            conn.application_state = WebSocketState.CONNECTED
        if starlette is None:
            response = await self.dispatch(conn, error, from_route=False)  # a middleware's error
        else:  # as Starlette's ExceptionMiddleware would: a handler of the user's, or excepthub
            handler = _starlette_lookup(starlette, error)
            if handler is None:
                raise error
            response = await _call(handler, conn, error)
        if response is not None:
            await response(scope, receive, send)

    def _natively_handled(self, error: Exception) -> bool:
        """Whether Starlette's ExceptionMiddleware had a handler for `error` of its own (the
        framework's or the user's) before excepthub registered its dispatcher."""
        if self._native is None:  # its tables are out of sight: the framework's defaults
            return isinstance(error, self.framework.answered)
        return _starlette_lookup(self._native, error) is not None


async def _ask_routers(
    routers: list[excepthub.ExceptionMiddleware],
    error: Exception,
    context: dict[str, Any],
    framework: _Framework,
    convert: Callable[[Any, BaseException], Response] | None,
) -> tuple[Outcome | None, Exception, bool]:
    """Ask the registries of the routers the request went through, innermost first: answer the
    first outcome, or what goes on to the app's registry and whether a router's handler
    re-raised it (reported unhandled already). What goes on is the same error, what is left of
    a group, or a handler's own exception (new to every registry).
    """
    reported = False
    for registry in reversed(routers):
        try:
            outcome = await registry.handle(
                error, defaults=framework.router, convert=convert, **context
            )
            return outcome, error, reported
        except Exception as raised:
            if raised is error:
                resolution = registry.resolve(_only_leaf(error), defaults=framework.router)
                if resolution is not None and resolution.handler is not excepthub.reraise:
                    reported = True  # its handler re-raised it: the core reported it unhandled
            elif not isinstance(raised, BaseExceptionGroup):
                reported = False
            error = raised
    return None, error, reported


# Generated correlation ids: unique per process (random prefix) and cheap (a counter).
_ID_PREFIX: Final = uuid.uuid4().hex[:12] + "-"
_ID_COUNTER: Final = itertools.count(1)
# Scope key marking the exception excepthub decided to let through, so that Starlette's second
# dispatch (route level, then ExceptionMiddleware) and this middleware pass it on untouched.
_PASSING: Final = "excepthub.passing"
# Starlette's message when a class handler exists but the response has started
# (starlette/_exception_handler.py); the error is its `__cause__`.
_RESPONSE_STARTED: Final = "Caught handled exception, but response already started."


def _after_response_started(error: Exception) -> tuple[RuntimeError, Exception] | None:
    """Starlette's "response already started" `RuntimeError` nearest the error behind it, and
    that error, if `error` is one (or a chain of them: route level, then ExceptionMiddleware)."""
    found = None
    while (
        type(error) is RuntimeError
        and error.args == (_RESPONSE_STARTED,)
        and isinstance(error.__cause__, Exception)
    ):
        found = (error, error.__cause__)
        error = error.__cause__
    return found


def _only_leaf(error: Exception) -> BaseException:
    """The leaf of a group of one (the core handles it exactly as that leaf), else `error`."""
    leaf: BaseException = error
    while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
        leaf = leaf.exceptions[0]
    return leaf if not isinstance(leaf, BaseExceptionGroup) else error


def _starlette_lookup(handlers: _StarletteHandlers, error: Exception) -> Any:
    """The handler Starlette picks for `error`: a status-code handler first, whose condition is
    `status_code(code)` as a registration of the registry writes it, else the nearest class in
    its MRO (`starlette._exception_handler`)."""
    by_class, by_status = handlers
    handler = next((h for code, h in by_status.items() if status_code(code)(error)), None)
    if handler is None:
        handler = next((by_class[cls] for cls in type(error).__mro__ if cls in by_class), None)
    return handler


def _connection(scope: Scope, receive: Receive, send: Send) -> HTTPConnection:
    if scope["type"] == "websocket":
        return WebSocket(scope, receive, send)
    return Request(scope, receive, send)


# -- outcome -> fastapi ---------------------------------------------------------------------


def _rendered(value: Any, error: BaseException) -> Response:
    """A fallback value as the `Response` sent over HTTP, converted inside handling: a value
    `jsonable_encoder` cannot encode counts as failed and is answered masked."""
    return value if isinstance(value, Response) else _render(value, error)


def _render(value: Any, error: BaseException) -> Response:
    """A fallback value that is not a `Response`, as FastAPI would send it: JSON through
    `jsonable_encoder`, with the status FastAPI gives `error` (its `status_code` attribute,
    as on `HTTPException`; 422 for validation errors; else 500) and its `headers`; a
    `Problem` as `application/problem+json`."""
    status_code = _status_code(error)
    headers = getattr(error, "headers", None)
    if headers is not None and not isinstance(headers, Mapping):
        headers = None
    if isinstance(value, Problem):  # RFC 9457: application/problem+json
        return value.response(status_code, headers)
    if not is_body_allowed_for_status_code(status_code):
        return Response(status_code=status_code, headers=headers)
    return JSONResponse(jsonable_encoder(value), status_code=status_code, headers=headers)


def _status_code(error: BaseException) -> int:
    if isinstance(error, RequestValidationError):
        return 422
    status_code = getattr(error, "status_code", None)
    if isinstance(status_code, int) and 100 <= status_code <= 599:
        return status_code
    return 500


try:  # FastAPI's own telemetry (0.142+): the middleware that observes what reaches a 500 handler
    from fastapi.telemetry._asgi import ExceptionTelemetryMiddleware as _ExceptionTelemetry
except ImportError:
    _ExceptionTelemetry = None  # type: ignore[assignment, misc]
_TELEMETRY_KEY: Final = "fastapi.telemetry" if _ExceptionTelemetry is not None else "-"


async def _show_telemetry(scope: Scope, error: BaseException) -> None:
    """Show an error answered with a 5xx to FastAPI's telemetry as it sees one on its way to the
    app's 500 handler: the request's span and duration metric then carry its class as
    `error.type`, and its `http.server.request.exception` log record is emitted."""
    traceback, context = error.__traceback__, error.__context__

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise error

    try:
        await _ExceptionTelemetry(failing)(scope, _never_receive, _never_send)
    except BaseException as seen:
        if seen is not error:
            raise
    finally:  # shown as it was raised, not as raised again here
        error.__traceback__, error.__context__ = traceback, context


async def _never_receive() -> Message:
    raise RuntimeError("excepthub shows FastAPI's telemetry an error: nothing to receive")


async def _never_send(message: Message) -> None:
    raise RuntimeError("excepthub shows FastAPI's telemetry an error: nothing to send")


class _InternalServerError(PlainTextResponse):
    """500 "Internal Server Error", FastAPI's answer to an error it knows nothing about, with
    its body and headers rendered once; each response has a header list of its own, which
    middleware may add to."""

    _HEADERS: Final = PlainTextResponse(_INTERNAL_ERROR, status_code=500).raw_headers

    def __init__(self) -> None:
        self.status_code = 500
        self.background = None
        self.body = _INTERNAL_ERROR.encode()
        self.raw_headers = [*self._HEADERS]


def _masked_answer(
    conn: HTTPConnection, error: BaseException, framework: _Framework
) -> Callable[..., Any] | None:
    """Who gives the framework's answer to `error`, handled for its effects: its default
    handler if it has one, else the app's own `Exception`/500 handler; `None`: 500 "Internal
    Server Error" (close 1011 on a WebSocket)."""
    if isinstance(error, framework.answered):
        for klass in type(error).__mro__:
            handler = framework.answers.publish_handlers.get(klass)
            if handler is not None:
                return handler
    if conn.scope["type"] != "http":
        return None
    handlers = getattr(conn.scope.get("app"), "exception_handlers", None)
    if not isinstance(handlers, dict):
        return None
    handler = handlers.get(Exception) or handlers.get(500)
    return handler if callable(handler) else None


async def _call(handler: Callable[..., Any], *args: Any) -> Any:
    """Call a Starlette-style handler: async awaited, sync in the threadpool (as Starlette does)."""
    if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - an object with `async def __call__`
    ):
        return await handler(*args)
    return await run_in_threadpool(handler, *args)


async def _answer_websocket(websocket: WebSocket, value: Any) -> None:
    """Close the socket if the handler left it open: with the `WebSocketClose` it returned,
    a `Response` as a denial before the handshake (where the server supports it), else 1011."""
    if (
        websocket.application_state not in (WebSocketState.CONNECTING, WebSocketState.CONNECTED)
        or websocket.client_state is WebSocketState.DISCONNECTED
    ):
        return
    with contextlib.suppress(WebSocketDisconnect):  # the client left first: nothing to close
        if isinstance(value, WebSocketClose):
            await websocket.close(code=value.code, reason=value.reason)
        elif (
            isinstance(value, Response)
            and websocket.application_state is WebSocketState.CONNECTING
            and "websocket.http.response" in websocket.scope.get("extensions", {})
        ):
            await websocket.send_denial_response(value)
        else:
            await websocket.close(code=_WS_INTERNAL_ERROR, reason=_INTERNAL_ERROR)
