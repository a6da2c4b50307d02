"""FastAPI's own telemetry with excepthub in place, and excepthub's hooks on FastAPI's spans,
measured on uvicorn with opentelemetry-sdk's in-memory span, metric and log exporters and with
sentry-sdk's FastAPI and Starlette integrations enabled.

An error excepthub answers with a 5xx carries the exception's class as `error.type` on the
request's span and `http.server.request.duration`, as FastAPI records it when a 500 handler
answers; an error no handler takes reads exactly as without excepthub.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.middleware import Middleware

import excepthub.otel
import excepthub.sentry
import excepthub_fastapi
from excepthub import ExceptionMiddleware

from ._servers import uvicorn_on_loopback
from ._telemetry import InMemory, exception_types, only_in_child, run_in_child, sentry

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        importlib.util.find_spec("fastapi.telemetry") is None,
        reason="FastAPI before its built-in telemetry",
    ),
]


class Boom(Exception):
    """An error no framework knows."""


BOOM = f"{__name__}.Boom"
SECRET = "db-7 refused the password hunter2"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # one backend is enough: the server runs on its own loop, in a thread


@pytest.fixture
def otel() -> Iterator[InMemory]:
    telemetry = InMemory()
    yield telemetry
    telemetry.shutdown()


def build(
    otel: InMemory, middleware: list[Middleware], setup: Callable[[FastAPI], Any] | None = None
) -> FastAPI:
    """An app with FastAPI's telemetry exporting to memory, whose `/boom` raises `Boom`."""
    app = FastAPI(
        middleware=middleware,
        telemetry={
            "tracer_provider": otel.tracer_provider,
            "meter_provider": otel.meter_provider,
            "logger_provider": otel.logger_provider,
        },
    )

    @app.get("/boom")
    async def boom() -> None:
        raise Boom(SECRET)

    if setup is not None:
        setup(app)
    return app


def hub(exc: ExceptionMiddleware) -> list[Middleware]:
    return [excepthub_fastapi.middleware(exc)]


async def get(app: FastAPI, path: str = "/boom") -> int:
    """`GET path` from a real client to the app on uvicorn; the status answered."""
    with uvicorn_on_loopback(app, access_log=False) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            response = await http.get(path)
    return response.status_code


def observed(otel: InMemory) -> dict[str, Any]:
    """What FastAPI's telemetry made of the request: its server span's `error.type`, status
    code attribute and status; the duration metric's attributes; the log events."""
    [span] = [s for s in otel.spans() if s.name.startswith("GET")]
    attributes = dict(span.attributes or {})
    [point] = otel.points("http.server.request.duration")
    return {
        "span": (
            attributes.get("error.type"),
            attributes.get("http.response.status_code"),
            span.status.status_code.name,
        ),
        "metric": (
            (point.attributes or {}).get("error.type"),
            (point.attributes or {}).get("http.response.status_code"),
        ),
        "logs": otel.log_events(),
    }


def last_resort(app: FastAPI) -> None:
    """The app's own 500 handler, as FastAPI users write it without excepthub."""

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> PlainTextResponse:
        return PlainTextResponse("Internal Server Error", status_code=500)


# -- FastAPI's telemetry with excepthub in place ----------------------------------------------


async def test_an_error_excepthub_answers_with_a_500_reads_as_when_a_500_handler_answers() -> None:
    native, with_hub = InMemory(), InMemory()
    assert await get(build(native, [], last_resort)) == 500
    exc = ExceptionMiddleware(handlers={Boom: lambda error: None})
    assert await get(build(with_hub, hub(exc))) == 500

    expected = {
        "span": (BOOM, 500, "ERROR"),
        "metric": (BOOM, 500),
        "logs": [("http.server.request.exception", BOOM)],
    }
    assert observed(native) == expected
    assert observed(with_hub) == expected


async def test_a_fallback_answered_with_a_5xx_carries_the_class_as_error_type(
    otel: InMemory,
) -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(Boom, publish=True)
    def unavailable(error: Boom) -> JSONResponse:
        return JSONResponse({"detail": "try later"}, status_code=503)

    assert await get(build(otel, hub(exc))) == 503
    assert observed(otel)["span"] == (BOOM, 503, "ERROR")
    assert observed(otel)["metric"] == (BOOM, 503)


async def test_a_fallback_answered_below_500_is_no_error_as_in_fastapi() -> None:
    native, with_hub = InMemory(), InMemory()

    def conflict(app: FastAPI) -> None:
        @app.exception_handler(Boom)
        async def on_boom(request: Request, error: Boom) -> JSONResponse:
            return JSONResponse({"detail": "conflict"}, status_code=409)

    exc = ExceptionMiddleware(
        publish_handlers={Boom: lambda error: JSONResponse({"detail": "conflict"}, 409)}
    )
    assert await get(build(native, [], conflict)) == await get(build(with_hub, hub(exc))) == 409

    assert observed(with_hub) == observed(native)
    assert observed(with_hub)["span"] == (None, 409, "UNSET")


async def test_an_http_exception_fastapi_answers_with_a_5xx_reads_exactly_as_natively() -> None:
    native, with_hub = InMemory(), InMemory()

    def unavailable(app: FastAPI) -> None:
        @app.get("/busy")
        async def busy() -> None:
            raise HTTPException(503, "busy")

    hubbed = build(with_hub, hub(ExceptionMiddleware({Boom: print})), unavailable)
    assert await get(build(native, [], unavailable), "/busy") == 503
    assert await get(hubbed, "/busy") == 503

    assert observed(with_hub) == observed(native)
    assert observed(native)["logs"] == []  # a status, no exception telemetry


async def test_an_error_no_handler_takes_reads_exactly_as_without_excepthub() -> None:
    native, with_hub = InMemory(), InMemory()
    await get(build(native, []))
    await get(build(with_hub, hub(ExceptionMiddleware({KeyError: print}))))

    assert observed(with_hub) == observed(native)
    assert observed(native)["span"] == (BOOM, 500, "ERROR")
    assert [s.name for s in with_hub.spans()] == [s.name for s in native.spans()]


# -- excepthub's hooks on FastAPI's request ---------------------------------------------------


async def test_the_otel_hook_puts_its_event_on_fastapis_request_span(otel: InMemory) -> None:
    exc = ExceptionMiddleware(
        handlers={Boom: lambda error: None},
        on_error=[excepthub.otel.hook(meter_provider=otel.meter_provider)],
    )
    app = build(otel, hub(exc))

    with uvicorn_on_loopback(app, access_log=False) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            await http.get("/boom", headers={"X-Request-ID": "req-41"})

    [span] = [s for s in otel.spans() if s.name == "GET /boom"]
    [event] = [dict(e.attributes or {}) for e in span.events if e.name == "exception"]
    assert event["exception.type"] == BOOM
    assert (event["excepthub.outcome"], event["excepthub.framework"]) == ("handled", "fastapi")
    assert event["excepthub.correlation_id"] == "req-41"
    assert SECRET not in str(event)
    [count] = otel.points(excepthub.otel.COUNTER)
    assert dict(count.attributes or {}) == {
        "error.type": BOOM,
        "excepthub.outcome": "handled",
        "excepthub.framework": "fastapi",
    }


async def fails(error: Boom) -> None:
    raise RuntimeError("the alerting service is down")


@only_in_child
@pytest.mark.parametrize(
    ("handlers", "events"),
    [
        ({}, [(["Boom"], "unhandled")]),
        ({Boom: fails}, [(["Boom", "RuntimeError"], "failed")]),
        ({Boom: lambda error: None}, []),  # handled: a breadcrumb
    ],
    ids=["unhandled", "failed", "handled"],
)
async def test_sentry_captures_a_failure_once_alongside_its_fastapi_integration(
    otel: InMemory, handlers: dict[type[Exception], Any], events: list[Any]
) -> None:
    exc = ExceptionMiddleware(handlers=handlers, on_error=[excepthub.sentry.hook()])
    with sentry() as captured:  # FastAPI's and Starlette's integrations: enabled as installed
        await get(build(otel, hub(exc)))

    assert [(exception_types(e), e["tags"]["excepthub.outcome"]) for e in captured.events] == (
        events
    )
    for event in captured.events:
        assert event["tags"]["correlation_id"]


@only_in_child
async def test_without_excepthub_sentrys_fastapi_integration_captures_it_once_too(
    otel: InMemory,
) -> None:
    with sentry() as captured:
        await get(build(otel, []))
    assert [exception_types(e) for e in captured.events] == [["Boom"]]


def test_sentry_with_its_fastapi_integrations_in_a_process_of_its_own() -> None:
    """Sentry's FastAPI and Starlette integrations patch Starlette's classes for the rest of
    the process: the Sentry tests above run in a pytest process of their own."""
    run_in_child(__file__, "sentry_captures or without_excepthub_sentry")
