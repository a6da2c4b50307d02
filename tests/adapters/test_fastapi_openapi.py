"""The handlers' answers in the OpenAPI document: `excepthub_fastapi.responses(...)` on routes
and routers, `@excepthub_fastapi.responds(...)` on handlers.

The document of a small app is compared in full with a literal one; schemathesis then calls
that app through its ASGI interface (no network) and checks every response, error answers
included, against the document; httpx's ASGI transport checks the answers one by one.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import APIRouter, FastAPI, HTTPException, WebSocketException
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import validation_error_definition, validation_error_response_definition
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi import checks

import excepthub_fastapi
from excepthub import ExceptionMiddleware
from excepthub_fastapi import Problem, problem_details, responds, responses

# -- the app ----------------------------------------------------------------------------------


class ItemNotFound(Exception):
    status_code = 404


class Retired(Exception):
    status_code = 410


class OutOfStock(Exception):
    status_code = 409
    title = "Out of stock"
    type = "https://shop.example/problems/out-of-stock"
    public = ("detail", "sku")
    headers = {"Retry-After": "3600"}  # noqa: RUF012 - read as HTTPException's

    def __init__(self, sku: str) -> None:
        super().__init__(f"warehouse db-3 has no {sku}")  # logged, never sent
        self.sku = sku
        self.detail = f"{sku} is sold out"


class PaymentDeclined(Exception):
    pass


class Overloaded(Exception):
    pass


class Item(BaseModel):
    name: str


class NotFoundBody(BaseModel):
    detail: str
    item_id: int


class Declined(BaseModel):
    reason: str


class RetiredProblem(Problem):
    retired_on: dt.date


def make_app() -> FastAPI:
    """An app with fallbacks of each kind: a model, a `Problem` subclass, the ready problem
    details, a `Response` declared with `responds`; a side-effect handler; FastAPI's own answers;
    a router with a registry of its own."""
    exc = ExceptionMiddleware(
        publish_handlers={OutOfStock: problem_details}, handlers={Overloaded: lambda error: None}
    )

    @exc.add_handler(ItemNotFound, publish=True)
    async def not_found(error: ItemNotFound) -> NotFoundBody:
        return NotFoundBody(detail="no such item", item_id=error.args[0])

    @exc.add_handler(Retired, publish=True)
    async def retired(error: Retired) -> RetiredProblem:
        return RetiredProblem(title="Retired", retired_on=dt.date(2024, 5, 1))

    @exc.add_handler(PaymentDeclined, publish=True)
    @responds(402, Declined, headers=["Retry-After"])
    async def declined(error: PaymentDeclined) -> JSONResponse:
        return JSONResponse({"reason": "card"}, status_code=402, headers={"Retry-After": "60"})

    app = FastAPI(title="shop", version="1", middleware=[excepthub_fastapi.middleware(exc)])

    @app.get(
        "/items/{item_id}",
        responses=responses(exc, ItemNotFound, Retired, OutOfStock, HTTPException(403), Overloaded),
    )
    async def read_item(item_id: int) -> Item:
        kind = item_id % 6
        if kind == 1:
            raise ItemNotFound(item_id)
        if kind == 2:
            raise Retired()
        if kind == 3:
            raise OutOfStock(f"sku-{item_id}")
        if kind == 4:
            raise HTTPException(403, "not yours")
        if kind == 5:
            raise Overloaded("pool exhausted, password=hunter2")
        return Item(name=f"item {item_id}")

    orders_exc = ExceptionMiddleware()

    @orders_exc.add_handler(OutOfStock, publish=True)
    def wait_list(error: OutOfStock) -> dict[str, str]:
        return {"wait_list": f"/orders/{error.sku}/wait"}

    orders = APIRouter(
        prefix="/orders",
        dependencies=[excepthub_fastapi.router_handlers(orders_exc)],
        responses=responses([orders_exc, exc], OutOfStock, PaymentDeclined),
    )

    @orders.post("/{sku}")
    async def order(sku: str) -> Item:
        kind = len(sku) % 3
        if kind == 1:
            raise OutOfStock(sku)
        if kind == 2:
            raise PaymentDeclined()
        return Item(name=sku)

    app.include_router(orders)
    return app


# -- the document -----------------------------------------------------------------------------

PROBLEM_MEMBERS = {
    "type": {"default": "about:blank", "title": "Type", "type": "string"},
    "title": {"title": "Title", "type": "string"},
    "status": {"title": "Status", "type": "integer"},
    "detail": {"title": "Detail", "type": "string"},
    "instance": {"title": "Instance", "type": "string"},
}
RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}}}
ITEM = {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}}
VALIDATION_ERROR = {
    "description": "Validation Error",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "shop", "version": "1"},
    "paths": {
        "/items/{item_id}": {
            "get": {
                "summary": "Read Item",
                "operationId": "read_item_items__item_id__get",
                "parameters": [
                    {
                        "name": "item_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "title": "Item Id"},
                    }
                ],
                "responses": {
                    "200": {"description": "Successful Response", "content": ITEM},
                    "403": {
                        "description": "HTTPException",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "title": "HTTPError",
                                    "type": "object",
                                    "properties": {"detail": {"title": "Detail"}},
                                    "required": ["detail"],
                                }
                            }
                        },
                    },
                    "404": {
                        "description": "ItemNotFound",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "title": "NotFoundBody",
                                    "type": "object",
                                    "properties": {
                                        "detail": {"title": "Detail", "type": "string"},
                                        "item_id": {"title": "Item Id", "type": "integer"},
                                    },
                                    "required": ["detail", "item_id"],
                                }
                            }
                        },
                    },
                    "409": {
                        "description": "OutOfStock",
                        "content": {
                            "application/problem+json": {
                                "schema": {
                                    "title": "Problem",
                                    "description": "RFC 9457 problem details",
                                    "type": "object",
                                    "properties": PROBLEM_MEMBERS,
                                    "required": ["type", "status"],
                                    "additionalProperties": True,
                                }
                            }
                        },
                        "headers": RETRY_AFTER,
                    },
                    "410": {
                        "description": "Retired",
                        "content": {
                            "application/problem+json": {
                                "schema": {
                                    "title": "RetiredProblem",
                                    "type": "object",
                                    "properties": {
                                        **PROBLEM_MEMBERS,
                                        "retired_on": {
                                            "format": "date",
                                            "title": "Retired On",
                                            "type": "string",
                                        },
                                    },
                                    "required": ["retired_on", "type", "status"],
                                    "additionalProperties": True,
                                }
                            }
                        },
                    },
                    "500": {
                        "description": "Overloaded",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "422": VALIDATION_ERROR,
                },
            }
        },
        "/orders/{sku}": {
            "post": {
                "summary": "Order",
                "operationId": "order_orders__sku__post",
                "parameters": [
                    {
                        "name": "sku",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "title": "Sku"},
                    }
                ],
                "responses": {
                    "200": {"description": "Successful Response", "content": ITEM},
                    "402": {
                        "description": "Payment Required",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "title": "Declined",
                                    "type": "object",
                                    "properties": {"reason": {"title": "Reason", "type": "string"}},
                                    "required": ["reason"],
                                }
                            }
                        },
                        "headers": RETRY_AFTER,
                    },
                    "409": {
                        "description": "OutOfStock",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                }
                            }
                        },
                        "headers": RETRY_AFTER,
                    },
                    "422": VALIDATION_ERROR,
                },
            }
        },
    },
    "components": {
        "schemas": {
            "Item": {
                "title": "Item",
                "type": "object",
                "properties": {"name": {"type": "string", "title": "Name"}},
                "required": ["name"],
            },
            # FastAPI's own, which its releases word differently
            "HTTPValidationError": validation_error_response_definition,
            "ValidationError": validation_error_definition,
        }
    },
}


def test_the_document_shows_each_handlers_answer() -> None:
    assert make_app().openapi() == DOCUMENT


@pytest.mark.anyio
async def test_the_answers_are_what_the_document_says() -> None:
    transport = httpx.ASGITransport(app=make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        answers = {
            path: await http.request(method, path)
            for method, path in [
                ("GET", "/items/1"),
                ("GET", "/items/2"),
                ("GET", "/items/3"),
                ("GET", "/items/4"),
                ("GET", "/items/5"),
                ("POST", "/orders/a"),
                ("POST", "/orders/bb"),
            ]
        }
    seen = {
        path: (r.status_code, r.headers["content-type"], r.headers.get("retry-after"), r.text)
        for path, r in answers.items()
    }
    assert seen == {
        "/items/1": (404, "application/json", None, '{"detail":"no such item","item_id":1}'),
        "/items/2": (
            410,
            "application/problem+json",
            None,
            '{"type":"about:blank","title":"Retired","retired_on":"2024-05-01","status":410}',
        ),
        "/items/3": (
            409,
            "application/problem+json",
            "3600",
            '{"type":"https://shop.example/problems/out-of-stock","title":"Out of stock",'
            '"detail":"sku-3 is sold out","instance":"/items/3","sku":"sku-3","status":409}',
        ),
        "/items/4": (403, "application/json", None, '{"detail":"not yours"}'),
        "/items/5": (500, "text/plain; charset=utf-8", None, "Internal Server Error"),
        "/orders/a": (409, "application/json", "3600", '{"wait_list":"/orders/a/wait"}'),
        "/orders/bb": (402, "application/json", "60", '{"reason":"card"}'),
    }


# -- schemathesis ---------------------------------------------------------------------------

# what a response must agree with: its status, media type, headers and body, as documented
CONFORMANCE = [
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
BOUNDED = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same requests on every run
    database=None,
    suppress_health_check=list(HealthCheck),
)


def test_schemathesis_finds_no_answer_that_breaks_the_document() -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", make_app())
    answered: set[tuple[str, int]] = set()

    def check(case: schemathesis.Case[Any]) -> None:
        response = case.call_and_validate(checks=CONFORMANCE)
        answered.add((case.operation.path, response.status_code))

    # requests of schemathesis's making, valid and not
    given(case=st.one_of(schema.as_strategy(), schema.as_strategy(GenerationMode.NEGATIVE)))(
        BOUNDED(check)
    )()
    # and one of each kind for sure: the error each answers is chosen by the parameter
    items, orders = schema["/items/{item_id}"]["GET"], schema["/orders/{sku}"]["POST"]
    for item_id in ("0", "1", "2", "3", "4", "5", "seven"):
        check(items.Case(path_parameters={"item_id": item_id}))
    for sku in ("abc", "a", "bb"):
        check(orders.Case(path_parameters={"sku": sku}))
    assert answered == {
        *(("/items/{item_id}", status) for status in (200, 403, 404, 409, 410, 422, 500)),
        *(("/orders/{sku}", status) for status in (200, 402, 409)),
    }


def test_schemathesis_reports_an_answer_the_document_does_not_describe() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(PaymentDeclined, publish=True)
    @responds(402, Declined)
    async def declined(error: PaymentDeclined) -> JSONResponse:
        return JSONResponse({"refused": True}, status_code=402)  # not what it declares

    app = FastAPI(middleware=[excepthub_fastapi.middleware(exc)])

    @app.post("/pay", responses=responses(exc, PaymentDeclined))
    async def pay() -> None:
        raise PaymentDeclined()

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    with pytest.raises(FailureGroup, match="Response violates schema"):
        schema["/pay"]["POST"].Case().call_and_validate(checks=CONFORMANCE)


# -- what responses() reads -------------------------------------------------------------------


class Conflict(Exception):
    status_code = 409


class Waiting(BaseModel):
    position: int


class Locked(Exception):
    status_code = 409


def test_a_union_answer_lists_each_body_under_its_media_type() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(Conflict, publish=True)
    def conflict(error: Conflict) -> Waiting | Problem | None:
        return None

    assert responses(exc, Conflict) == {
        409: {
            "description": "Conflict",
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {
                                "title": "Waiting",
                                "type": "object",
                                "properties": {
                                    "position": {"title": "Position", "type": "integer"}
                                },
                                "required": ["position"],
                            },
                            {"type": "null"},
                        ]
                    }
                },
                "application/problem+json": {
                    "schema": {
                        "title": "Problem",
                        "description": "RFC 9457 problem details",
                        "type": "object",
                        "properties": PROBLEM_MEMBERS,
                        "required": ["type", "status"],
                        "additionalProperties": True,
                    }
                },
            },
        }
    }


def test_nested_models_are_written_in_place() -> None:
    class Line(BaseModel):
        sku: str

    class Rejected(BaseModel):
        lines: list[Line]

    exc = ExceptionMiddleware(publish_handlers={Conflict: lambda error: None})
    exc.add_handler(Conflict, publish=True)(responds(409, Rejected)(lambda error: None))

    assert responses(exc, Conflict)[409]["content"] == {
        "application/json": {
            "schema": {
                "title": "Rejected",
                "type": "object",
                "properties": {
                    "lines": {
                        "title": "Lines",
                        "type": "array",
                        "items": {
                            "title": "Line",
                            "type": "object",
                            "properties": {"sku": {"title": "Sku", "type": "string"}},
                            "required": ["sku"],
                        },
                    }
                },
                "required": ["lines"],
            }
        }
    }


def test_answers_of_one_status_share_one_response() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(Conflict, publish=True)
    def conflict(error: Conflict) -> dict[str, int]:
        return {}

    @exc.add_handler(Locked, publish=True)
    def locked(error: Locked) -> list[str]:
        return []

    assert responses(exc, Conflict, Locked, HTTPException(409, headers={"X-Lock": "1"})) == {
        409: {
            "description": "Conflict, Locked, HTTPException",
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {"type": "object", "additionalProperties": {"type": "integer"}},
                            {"type": "array", "items": {"type": "string"}},
                            {
                                "title": "HTTPError",
                                "type": "object",
                                "properties": {"detail": {"title": "Detail"}},
                                "required": ["detail"],
                            },
                        ]
                    }
                }
            },
            "headers": {"X-Lock": {"schema": {"type": "string"}}},
        }
    }


def test_a_status_without_a_body_documents_none() -> None:
    class Unchanged(Exception):
        status_code = 304

    exc = ExceptionMiddleware()

    @exc.add_handler(Unchanged, publish=True)
    def unchanged(error: Unchanged) -> None:
        return None

    assert responses(exc, Unchanged, HTTPException(204)) == {
        204: {"description": "HTTPException"},
        304: {"description": "Unchanged"},
    }


def test_a_broad_handler_answers_each_class_with_its_own_status() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(Exception, publish=True)
    def anything(error: Exception) -> dict[str, str]:
        return {"error": "sorry"}

    assert sorted(responses(exc, Conflict, KeyError)) == [409, 500]


def test_a_handler_for_validation_errors_replaces_fastapis_422() -> None:
    exc = ExceptionMiddleware(publish_handlers={RequestValidationError: problem_details})
    app = FastAPI(middleware=[excepthub_fastapi.middleware(exc)])

    @app.get("/items/{item_id}", responses=responses(exc, RequestValidationError))
    async def read_item(item_id: int) -> None: ...

    [media] = app.openapi()["paths"]["/items/{item_id}"]["get"]["responses"]["422"]["content"]
    assert media == "application/problem+json"


def test_fastapis_own_422_is_left_to_fastapi() -> None:
    exc = ExceptionMiddleware(handlers={RequestValidationError: lambda error: None})
    assert responses(exc, RequestValidationError) == {}
    assert responses(ExceptionMiddleware(), RequestValidationError) == {}


def test_a_routers_registry_is_asked_first_and_the_apps_after_it() -> None:
    app_exc = ExceptionMiddleware(handlers={Exception: lambda error: None})
    router_exc = ExceptionMiddleware()

    @router_exc.add_handler(Conflict, publish=True)
    def conflict(error: Conflict) -> dict[str, str]:
        return {}

    # the router's broad handler never takes FastAPI's own exceptions: FastAPI answers them
    router_exc.add_handler(Exception)(lambda error: None)
    documented = responses([router_exc, app_exc], Conflict, HTTPException(404))
    assert documented[409]["content"]["application/json"]["schema"]["type"] == "object"
    assert documented[404]["content"]["application/json"]["schema"]["title"] == "HTTPError"


def test_handlers_registered_after_the_route_are_not_documented() -> None:
    exc = ExceptionMiddleware()
    with pytest.raises(TypeError, match="no handler takes Conflict"):
        responses(exc, Conflict)


# -- mistakes, told when they are made ---------------------------------------------------------


def test_an_error_no_handler_takes_is_refused() -> None:
    exc = ExceptionMiddleware(publish_handlers={KeyError: lambda error: None})
    with pytest.raises(TypeError) as refused:
        responses(exc, Conflict)
    assert str(refused.value) == (
        "responses(): no handler takes Conflict, so it is no answer of excepthub's (it goes on "
        "to the server, a 500). Register its handler before the route, or leave it out"
    )


def test_an_httpexception_class_needs_its_status() -> None:
    with pytest.raises(TypeError, match=r"list instances, HTTPException\(404\)"):
        responses(ExceptionMiddleware(), HTTPException)


def test_a_handler_returning_a_response_must_declare_it() -> None:
    exc = ExceptionMiddleware()

    @exc.add_handler(Conflict, publish=True)
    def conflict(error: Conflict) -> JSONResponse:
        return JSONResponse({}, status_code=409)

    with pytest.raises(TypeError, match=r"declare them with @excepthub_fastapi\.responds"):
        responses(exc, Conflict)


def test_a_handler_without_return_annotation_must_say_what_it_returns() -> None:
    exc = ExceptionMiddleware(publish_handlers={Conflict: lambda error: {}})
    with pytest.raises(TypeError, match="has no return annotation: annotate what it returns"):
        responses(exc, Conflict)


def test_a_side_effect_handler_cannot_declare_answers() -> None:
    exc = ExceptionMiddleware()
    exc.add_handler(Conflict)(responds(409, Declined)(lambda error: None))
    with pytest.raises(TypeError, match="register it with publish=True"):
        responses(exc, Conflict)


def test_a_websocket_only_error_is_no_http_answer() -> None:
    with pytest.raises(TypeError, match="answered on WebSockets only"):
        responses(ExceptionMiddleware(), WebSocketException(1008))


def test_a_public_declaration_is_checked_when_documented() -> None:
    class Leaky(Exception):
        public = ("status",)

    exc = ExceptionMiddleware(publish_handlers={Leaky: problem_details})
    with pytest.raises(TypeError, match="'status' cannot be a problem details member"):
        responses(exc, Leaky)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((KeyError,), "responses() takes the app's excepthub.ExceptionMiddleware"),
        (([],), "responses() takes the app's excepthub.ExceptionMiddleware"),
        ((ExceptionMiddleware(),), "name them"),
        ((ExceptionMiddleware(), "Conflict"), "documents exception classes"),
        ((ExceptionMiddleware(), KeyboardInterrupt), "documents exception classes"),
    ],
)
def test_responses_refuses_what_it_cannot_read(arguments: tuple[Any, ...], message: str) -> None:
    with pytest.raises(TypeError, match=re.escape(message)):
        responses(*arguments)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: responds("404"), TypeError, "the status code is an int"),  # type: ignore[arg-type]
        (lambda: responds(99), ValueError, "99 is no HTTP status code"),
        (lambda: responds(204, Declined), ValueError, "a 204 answer has no body"),
        (lambda: responds(409, media_type="application/json"), TypeError, "give its model"),
        (lambda: responds(409, Declined, media_type="json"), TypeError, "is a media type"),
        (lambda: responds(409, headers=[1]), TypeError, "headers are header names"),  # type: ignore[list-item]
        (lambda: responds(409, object()), TypeError, "no JSON schema for"),
    ],
)
def test_responds_refuses_what_it_cannot_document(
    call: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        call()


def test_responds_stacks_and_keeps_the_function() -> None:
    def declined(error: PaymentDeclined) -> JSONResponse:
        return JSONResponse({}, status_code=402)

    marked = responds(402, Declined, description="card declined")(
        responds(503, media_type=None, headers="Retry-After")(declined)
    )
    assert marked is declined
    exc = ExceptionMiddleware()
    exc.add_handler(PaymentDeclined, publish=True)(marked)
    assert responses(exc, PaymentDeclined) == {
        402: {
            "description": "card declined",
            "content": {
                "application/json": {
                    "schema": {
                        "title": "Declined",
                        "type": "object",
                        "properties": {"reason": {"title": "Reason", "type": "string"}},
                        "required": ["reason"],
                    }
                }
            },
        },
        503: {
            "description": "Service Unavailable",
            "headers": {"Retry-After": {"schema": {"type": "string"}}},
        },
    }


# -- the rule, for every hierarchy ----------------------------------------------------------------


def answer_with_a_value(error: Exception) -> dict[str, int]:
    return {"answered": 1}


def note(error: Exception) -> None:
    """A side-effect handler: FastAPI's masked 500 answers."""


HANDLERS: dict[str, Callable[..., Any]] = {
    "value": answer_with_a_value,
    "problem": problem_details,
    "side effect": note,
}
LEVEL = st.tuples(
    st.sampled_from([None, 400, 404, 409, 418, 503]),  # the class's status_code, if any
    st.sampled_from([None, *HANDLERS]),  # the handler registered for the class, if any
)


@given(levels=st.lists(LEVEL, min_size=1, max_size=4))
@settings(max_examples=50, deadline=None, derandomize=True, database=None)
def test_the_documented_answer_is_the_answer_sent_for_every_hierarchy(
    levels: list[tuple[int | None, str | None]],
) -> None:
    exc = ExceptionMiddleware(logger=None)
    error_class: type[Exception] = Exception
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a side-effect handler a fallback shadows, on purpose
        for depth, (status, kind) in enumerate(levels):
            namespace = {} if status is None else {"status_code": status}
            error_class = type(f"Level{depth}", (error_class,), namespace)
            if kind is not None:
                exc.add_handler(error_class, publish=kind != "side effect")(HANDLERS[kind])
    app = FastAPI(middleware=[excepthub_fastapi.middleware(exc)])
    leaf = error_class

    @app.get("/")
    async def fail() -> None:
        raise leaf()

    try:
        documented = responses(exc, leaf)
    except TypeError:
        documented = None
    response = TestClient(app, raise_server_exceptions=False).get("/")
    if documented is None:  # no handler takes it: it is the server's, as without excepthub
        assert [outcome for counts in exc.get_error_stats().values() for outcome in counts] == [
            "unhandled"
        ]
        return
    [(documented_status, documentation)] = documented.items()
    [media_type] = documentation["content"]
    assert (documented_status, media_type) == (
        response.status_code,
        response.headers["content-type"].split(";")[0],
    )
