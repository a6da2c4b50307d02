"""RFC 9457 problem details: `excepthub_fastapi.problem_details`, the ready fallback, and a
`Problem` returned by a handler, through httpx's ASGI transport (which raises whatever the app
re-raises into the server, so each answer below is also an error that never reached it).

Masking: what the client reads is what the handler or the exception class declares public,
never the exception's message.
"""

from __future__ import annotations

import datetime as dt
import logging
from http import HTTPStatus
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

import excepthub_fastapi
from excepthub import ExceptionMiddleware
from excepthub_fastapi import PROBLEM_JSON, Problem, problem_details

pytestmark = pytest.mark.anyio

SECRET = "password=hunter2"


class Unexpected(Exception):
    """Declares nothing: its answer says only what the status says."""


class OutOfStock(Exception):
    status_code = 409
    title = "Out of stock"
    type = "https://shop.example/problems/out-of-stock"
    public = ("detail", "sku", "restock")
    headers = {"Retry-After": "3600"}  # noqa: RUF012 - read as HTTPException's

    def __init__(self, sku: str) -> None:
        super().__init__(f"{sku}: warehouse db-3 {SECRET}")
        self.sku = sku
        self.detail = f"{sku} is sold out"
        self.restock = dt.date(2030, 1, 2)
        self.warehouse = "db-3"  # not public


class Teapot(Exception):
    status_code = 418
    public = "detail"  # one name, as a string

    detail = "short and stout"


class Tea(Exception):
    status_code = 400


class Quota(Problem):
    """A problem type with a typed extension member."""

    limit: int


def make_app(exc: ExceptionMiddleware, error: Exception) -> FastAPI:
    app = FastAPI(middleware=[excepthub_fastapi.middleware(exc)])

    @app.get("/orders/{order_id}")
    async def read_order(order_id: int) -> None:
        raise error

    return app


async def answer(app: FastAPI, path: str = "/orders/7") -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.get(path)


async def test_an_error_that_declares_nothing_is_answered_by_its_status_alone() -> None:
    exc = ExceptionMiddleware(publish_handlers={Exception: problem_details})
    response = await answer(make_app(exc, Unexpected(SECRET)))
    assert (response.status_code, response.headers["content-type"]) == (500, PROBLEM_JSON)
    assert response.json() == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "instance": "/orders/7",
    }
    assert SECRET not in response.text


async def test_what_the_class_declares_public_is_sent_and_nothing_else() -> None:
    exc = ExceptionMiddleware(publish_handlers={Exception: problem_details})
    response = await answer(make_app(exc, OutOfStock("sku-1")))
    assert (response.status_code, response.headers["retry-after"]) == (409, "3600")
    assert response.json() == {
        "type": "https://shop.example/problems/out-of-stock",
        "title": "Out of stock",
        "status": 409,
        "detail": "sku-1 is sold out",
        "instance": "/orders/7",
        "sku": "sku-1",
        "restock": "2030-01-02",
    }
    assert SECRET not in response.text
    assert "db-3" not in response.text


async def test_a_single_public_name_may_be_a_string() -> None:
    exc = ExceptionMiddleware(publish_handlers={Exception: problem_details})
    response = await answer(make_app(exc, Teapot()))
    assert response.json() == {
        "type": "about:blank",
        "title": "I'm a Teapot",
        "status": 418,
        "detail": "short and stout",
        "instance": "/orders/7",
    }


async def test_an_httpexceptions_detail_and_headers_are_public_as_fastapi_sends_them() -> None:
    exc = ExceptionMiddleware(publish_handlers={HTTPException: problem_details})
    error = HTTPException(401, "token expired", headers={"WWW-Authenticate": "Bearer"})
    response = await answer(make_app(exc, error))
    assert (response.status_code, response.headers["www-authenticate"]) == (401, "Bearer")
    assert response.json() == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": "token expired",
        "instance": "/orders/7",
    }


async def test_routing_errors_become_problems_once_httpexception_is_registered() -> None:
    exc = ExceptionMiddleware(publish_handlers={StarletteHTTPException: problem_details})
    response = await answer(make_app(exc, Unexpected()), "/nowhere")
    assert (response.status_code, response.headers["content-type"]) == (404, PROBLEM_JSON)
    assert response.json()["detail"] == "Not Found"


async def test_a_validation_error_lists_fastapis_errors() -> None:
    exc = ExceptionMiddleware(publish_handlers={RequestValidationError: problem_details})
    response = await answer(make_app(exc, Unexpected()), "/orders/seven")
    assert (response.status_code, response.headers["content-type"]) == (422, PROBLEM_JSON)
    problem = response.json()
    assert problem["title"] == HTTPStatus(422).phrase  # Python 3.13 words it as RFC 9110 does
    assert [(e["loc"], e["type"]) for e in problem["errors"]] == [
        (["path", "order_id"], "int_parsing")
    ]


async def test_fastapis_own_answers_stay_without_a_handler_of_yours() -> None:
    exc = ExceptionMiddleware(publish_handlers={Exception: problem_details})
    response = await answer(make_app(exc, HTTPException(403, "no")))
    assert (response.status_code, response.headers["content-type"]) == (403, "application/json")
    assert response.json() == {"detail": "no"}


async def test_a_handlers_problem_gets_the_errors_status_and_the_phrase_as_title() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(Tea, publish=True)
    async def tea(error: Tea) -> Quota:
        return Quota(detail="one cup a day", limit=1)

    response = await answer(make_app(exc, Tea(SECRET)))
    assert (response.status_code, response.headers["content-type"]) == (400, PROBLEM_JSON)
    assert response.json() == {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "detail": "one cup a day",
        "limit": 1,
    }


async def test_a_problems_own_status_and_extension_members_are_sent() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(Tea, publish=True)
    def tea(error: Tea) -> Problem:
        return Problem(type="https://tea.example/quota", status=429, cups=3)

    response = await answer(make_app(exc, Tea()))
    assert response.status_code == 429
    assert response.json() == {"type": "https://tea.example/quota", "status": 429, "cups": 3}


async def test_a_problem_that_json_cannot_encode_is_a_masked_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(Tea, publish=True)
    def tea(error: Tea) -> Problem:
        return Problem(title="tea", kettle=object())

    with caplog.at_level(logging.ERROR, logger="excepthub"):
        response = await answer(make_app(exc, Tea()))
    assert (response.status_code, response.text) == (500, "Internal Server Error")
    assert list(exc.get_error_stats().values()) == [{"failed": 1}]
    [record] = caplog.records
    assert "its value could not be sent" in record.getMessage()


def test_problem_response_renders_outside_handlers_too() -> None:
    response = Problem(title="Gone for good").response(410, {"Link": "</items>"})
    assert (response.status_code, response.media_type, response.headers["link"]) == (
        410,
        PROBLEM_JSON,
        "</items>",
    )
    assert response.body == b'{"type":"about:blank","title":"Gone for good","status":410}'


@pytest.mark.parametrize(
    ("public", "message"),
    [
        (3, "a tuple of names, got 3"),
        (("detail", 1), "a tuple of names"),
        (("status",), "'status' cannot be a problem details member"),
        (("_secret",), "'_secret' cannot be a problem details member"),
    ],
)
async def test_a_wrong_public_declaration_fails_the_handler_naming_it(
    public: Any, message: str
) -> None:
    error_class = type("Odd", (Exception,), {"public": public})
    exc = ExceptionMiddleware(publish_handlers={Exception: problem_details})
    with pytest.raises(TypeError, match=message):  # the handler's error goes on to the server
        await answer(make_app(exc, error_class()))
    assert list(exc.get_error_stats().values()) == [{"failed": 1}]
