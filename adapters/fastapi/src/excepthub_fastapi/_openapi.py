"""Error answers in the OpenAPI document, read off the registries that give them.

`responses(exc, ItemNotFound, OutOfStock)` is what a route's (or a router's) `responses=`
takes. Each exception class is resolved as a request's error is (the routers' registries
first, then the app's, over FastAPI's defaults), and the answer its handler gives becomes one
OpenAPI response: the status, the media type and the body's schema.

- a fallback handler that returns a value: the status the value is sent with (the exception's
  `status_code`; 422 for a validation error; else 500), the schema of its return annotation,
  `application/problem+json` for a `Problem`, `application/json` otherwise;
- a handler that returns a `Response`, or answers otherwise than its annotation says: what it
  declares with `@responds(status, model=...)`;
- FastAPI's own answers: `HTTPException` -> `{"detail": ...}` with its status; a validation
  error's 422, which FastAPI documents itself; an error a side-effect handler took -> FastAPI's
  masked 500 `Internal Server Error`, as plain text.

Schemas are written inline, under the exact media type that is sent, so that each response
stands alone (FastAPI's `model` would file them under the route's own media type).
"""

from __future__ import annotations

import copy
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.utils import is_body_allowed_for_status_code
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException
from starlette.responses import Response

import excepthub

from ._middleware import _FASTAPI, DEFAULTS, _status_code
from ._problem import PROBLEM_JSON, Problem, declared, phrase, problem_details

__all__ = ["responds", "responses"]

_F = TypeVar("_F", bound=Callable[..., Any])

_DECLARED: Final = "__excepthub_responses__"  # where `responds` keeps a handler's answers
_JSON: Final = "application/json"
_UNSET: Any = object()

# FastAPI's answer to an `HTTPException`: `{"detail": ...}`, whatever JSON the detail is.
_HTTP_ERROR: Final = {
    "title": "HTTPError",
    "type": "object",
    "properties": {"detail": {"title": "Detail"}},
    "required": ["detail"],
}
# FastAPI's answer to an error it knows nothing about (and to one a side-effect handler took).
_INTERNAL_ERROR: Final = {"text/plain": {"schema": {"type": "string"}}}


# FastAPI's answers that close a WebSocket: no HTTP answer to document.
_WEBSOCKET_ONLY: Final = frozenset(
    handler
    for handler in DEFAULTS.publish_handlers.values()
    if handler not in (http_exception_handler, request_validation_exception_handler)
    and handler is not excepthub.reraise
)
_WEBSOCKET_ERRORS: Final = tuple(
    key
    for key, handler in DEFAULTS.publish_handlers.items()
    if handler in _WEBSOCKET_ONLY and isinstance(key, type)
)


@dataclass(frozen=True)
class _Answer:
    """One HTTP answer: its status, what it is for, its body per media type, its headers."""

    status: int
    description: str
    content: Mapping[str, Mapping[str, Any]]
    headers: tuple[str, ...] = ()


def responds(
    status_code: int,
    model: Any = _UNSET,
    *,
    media_type: str | None = None,
    description: str | None = None,
    headers: Iterable[str] = (),
) -> Callable[[_F], _F]:
    """Declare an answer of a fallback handler, for the OpenAPI document: `status_code`, and
    a body of type `model` (none when left out) sent as `media_type` (`application/json`;
    `application/problem+json` for a `Problem`). Stack it for several answers.

    ```python
    @exc.add_handler(PaymentDeclined, publish=True)
    @excepthub_fastapi.responds(402, Declined, headers=["Retry-After"])
    def declined(error: PaymentDeclined) -> JSONResponse:
        return JSONResponse({"reason": "card"}, status_code=402, headers={"Retry-After": "60"})
    ```

    What a handler declares replaces what its return annotation and the exception's
    `status_code` would say; a handler that returns a `Response` must declare its answers.
    The function is returned unchanged.
    """
    where = f"responds({status_code!r})"
    if not isinstance(status_code, int) or isinstance(status_code, bool):
        raise TypeError(f"{where}: the status code is an int, such as 404")
    if not 100 <= status_code <= 599:
        raise ValueError(f"{where}: {status_code} is no HTTP status code (100 to 599)")
    headers = (headers,) if isinstance(headers, str) else tuple(headers)
    if not all(isinstance(name, str) and name for name in headers):
        raise TypeError(f"{where}: headers are header names, got {headers!r}")
    content: dict[str, dict[str, Any]] = {}
    if model is not _UNSET:
        if not is_body_allowed_for_status_code(status_code):
            raise ValueError(f"{where}: a {status_code} answer has no body, so no model")
        content = _content(model, where)
        if media_type is not None:
            if not isinstance(media_type, str) or "/" not in media_type:
                raise TypeError(f"{where}: media_type is a media type such as 'application/json'")
            schemas = [entry["schema"] for entry in content.values()]
            content = {media_type: {"schema": _any_of(schemas)}}
    elif media_type is not None:
        raise TypeError(f"{where}: media_type says how a body is sent; give its model too")
    answer = _Answer(
        status_code,
        description if description is not None else phrase(status_code),
        content,
        headers,
    )

    def declare(handler: _F) -> _F:
        declared_so_far: tuple[_Answer, ...] = getattr(handler, _DECLARED, ())
        try:
            setattr(handler, _DECLARED, (answer, *declared_so_far))
        except (AttributeError, TypeError):
            raise TypeError(
                f"{where} cannot mark {handler!r}: declare the answers on a function"
            ) from None
        return handler

    return declare


def responses(
    registry: excepthub.ExceptionMiddleware | Sequence[excepthub.ExceptionMiddleware],
    *errors: type[Exception] | Exception,
) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI responses of the answers `errors` get: what a route's, an `APIRouter`'s or
    `include_router`'s `responses=` takes.

    ```python
    @app.get("/items/{item_id}", responses=excepthub_fastapi.responses(exc, ItemNotFound))
    async def read_item(item_id: str) -> Item: ...

    orders = APIRouter(
        dependencies=[excepthub_fastapi.router_handlers(orders_exc)],
        responses=excepthub_fastapi.responses([orders_exc, exc], OutOfStock),
    )
    ```

    `registry` is the app's registry, or, for a router's routes, the registries asked in
    turn: the routers' (innermost first) and the app's last. Each error is an exception class,
    or an instance for an error whose status is chosen where it is raised
    (`HTTPException(404)`). The handlers are read now: register them before the routes. A
    class that no handler takes, or whose answer cannot be told, is a `TypeError` here.
    """
    registries = _registries(registry)
    if not errors:
        raise TypeError("responses() documents the answers to exception classes: name them")
    answers: list[_Answer] = []
    for error in errors:
        answers.extend(_answers(registries, error))
    return _merged(answers)


def _registries(
    registry: excepthub.ExceptionMiddleware | Sequence[excepthub.ExceptionMiddleware],
) -> tuple[excepthub.ExceptionMiddleware, ...]:
    found = (registry,) if isinstance(registry, excepthub.ExceptionMiddleware) else registry
    if (
        isinstance(found, str | bytes)
        or not isinstance(found, Sequence)
        or not found
        or not all(isinstance(r, excepthub.ExceptionMiddleware) for r in found)
    ):
        raise TypeError(
            "responses() takes the app's excepthub.ExceptionMiddleware, or a list of them for a "
            f"router's routes (the routers' innermost first, the app's last), got {registry!r}"
        )
    return tuple(found)


def _answers(registries: tuple[excepthub.ExceptionMiddleware, ...], error: object) -> list[_Answer]:
    """The answers an error of this class (or like this instance) gets."""
    if isinstance(error, type) and issubclass(error, Exception):
        cls = error
    elif isinstance(error, Exception):
        cls = type(error)
    else:
        raise TypeError(
            f"responses() documents exception classes (or instances: HTTPException(404)), "
            f"got {error!r}"
        )
    name = cls.__name__
    resolution = _resolve(registries, cls)
    if resolution is None:
        raise TypeError(
            f"responses(): no handler takes {name}, so it is no answer of excepthub's (it goes "
            "on to the server, a 500). Register its handler before the route, or leave it out"
        )
    handler = resolution.handler
    if handler is request_validation_exception_handler or (
        not resolution.publish and issubclass(cls, RequestValidationError)
    ):
        return []  # FastAPI documents its 422 on every route with parameters or a body
    if not issubclass(cls, HTTPException) and (
        handler in _WEBSOCKET_ONLY or issubclass(cls, _WEBSOCKET_ERRORS)
    ):
        raise TypeError(f"responses(): {name} is answered on WebSockets only, not over HTTP")
    declared_answers: tuple[_Answer, ...] = getattr(handler, _DECLARED, ())
    if not resolution.publish:
        if declared_answers:
            raise TypeError(
                f"responses(): {_describe(handler)} declares answers, but takes {name} as a "
                "side-effect handler (the client gets FastAPI's answer): register it with "
                "publish=True"
            )
        if issubclass(cls, HTTPException):
            return [_http_error(error, name)]
        return [_Answer(500, name, _INTERNAL_ERROR)]
    if declared_answers:
        return list(declared_answers)
    if handler is problem_details:
        declared(cls)  # what the class declares public is checked now, not at its first error
    if handler is http_exception_handler:
        return [_http_error(error, name)]
    status = _status(error, name)
    headers = _header_names(error)
    if not is_body_allowed_for_status_code(status):
        return [_Answer(status, name, {}, headers)]
    content = _content(_return_annotation(handler, name), f"the answer of {_describe(handler)}")
    return [_Answer(status, name, content, headers)]


def _resolve(
    registries: tuple[excepthub.ExceptionMiddleware, ...], cls: type[Exception]
) -> excepthub.Resolution | None:
    """Which handler an error of `cls` reaches, asking the registries as a request's error
    asks them: the routers' first (under the routers' layering), then the app's."""
    *routers, app = registries
    for registry in routers:
        resolution = registry.resolve(cls, defaults=_FASTAPI.router)
        if resolution is not None and resolution.handler is not excepthub.reraise:
            return resolution
    resolution = app.resolve(cls, defaults=DEFAULTS)
    if resolution is None or resolution.handler is excepthub.reraise:
        return None
    return resolution


def _status(error: type[Exception] | Exception, name: str) -> int:
    """The status a value is sent with for this error: the same rule as when it is sent."""
    if isinstance(error, Exception):
        return _status_code(error)
    if issubclass(error, RequestValidationError):
        return 422
    status = getattr(error, "status_code", None)
    if isinstance(status, int) and 100 <= status <= 599:
        return status
    if issubclass(error, HTTPException):
        raise TypeError(
            f"responses(): the status of a {name} is chosen where it is raised: list instances, "
            f"{name}(404), {name}(409)"
        )
    return 500


def _http_error(error: type[Exception] | Exception, name: str) -> _Answer:
    """FastAPI's answer to an `HTTPException`: its status, `{"detail": ...}`, its headers."""
    status = _status(error, name)
    content = {_JSON: {"schema": _HTTP_ERROR}} if is_body_allowed_for_status_code(status) else {}
    return _Answer(status, name, content, _header_names(error))


def _header_names(error: object) -> tuple[str, ...]:
    headers = getattr(error, "headers", None)
    return tuple(headers) if isinstance(headers, Mapping) else ()


def _return_annotation(handler: Callable[..., Any], name: str) -> Any:
    try:
        returns = inspect.signature(handler, eval_str=True).return_annotation
    except (NameError, TypeError, ValueError) as error:
        raise TypeError(
            f"responses(): cannot read what {_describe(handler)} returns for {name}: {error}"
        ) from None
    if returns is inspect.Signature.empty:
        raise TypeError(
            f"responses(): {_describe(handler)} answers {name} and has no return annotation: "
            "annotate what it returns, or declare it with @excepthub_fastapi.responds(...)"
        )
    if any(_is_response(member) for member in _members(returns)):
        raise TypeError(
            f"responses(): {_describe(handler)} answers {name} with a Response, whose status "
            "and body are its own: declare them with @excepthub_fastapi.responds(status, model)"
        )
    return returns


def _content(model: Any, where: str) -> dict[str, dict[str, Any]]:
    """The body of type `model` per media type: a `Problem` as problem details, else JSON."""
    by_media: dict[str, list[Any]] = {}
    for member in _members(model):
        media = PROBLEM_JSON if _is_problem(member) else _JSON
        by_media.setdefault(media, []).append(member)
    content = {}
    for media, members in by_media.items():
        schemas = [_schema(member, where) for member in members]
        content[media] = {"schema": _any_of(schemas)}
    return content


def _members(annotation: Any) -> tuple[Any, ...]:
    """The types a union annotation stands for (the annotation itself otherwise)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(m for arg in typing.get_args(annotation) for m in _members(arg))
    return (annotation,)


def _is_response(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Response)


def _is_problem(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Problem)


def _schema(model: Any, where: str) -> dict[str, Any]:
    """The JSON schema of `model` as it is sent, its definitions written in place."""
    try:
        schema = TypeAdapter(model).json_schema(mode="serialization")
    except Exception as error:
        raise TypeError(f"{where}: no JSON schema for {model!r}: {error}") from None
    definitions = schema.pop("$defs", {})
    return _inline(schema, definitions, (), where)  # type: ignore[no-any-return]


def _inline(node: Any, definitions: dict[str, Any], seen: tuple[str, ...], where: str) -> Any:
    """`node` with each `#/$defs/` reference replaced by its definition."""
    if isinstance(node, list):
        return [_inline(item, definitions, seen, where) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        if name in seen:
            raise TypeError(f"{where}: {name} refers to itself, which an inline schema cannot say")
        target = copy.deepcopy(definitions[name])
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return _inline({**target, **siblings}, definitions, (*seen, name), where)
    return {key: _inline(value, definitions, seen, where) for key, value in node.items()}


def _any_of(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    unique: list[dict[str, Any]] = []
    for schema in schemas:
        if schema not in unique:
            unique.append(schema)
    return unique[0] if len(unique) == 1 else {"anyOf": unique}


def _merged(answers: list[_Answer]) -> dict[int | str, dict[str, Any]]:
    """One OpenAPI response per status: the descriptions joined, bodies of one media type in
    `anyOf`, the headers of every answer."""
    by_status: dict[int, list[_Answer]] = {}
    for answer in answers:
        by_status.setdefault(answer.status, []).append(answer)
    merged: dict[int | str, dict[str, Any]] = {}
    for status in sorted(by_status):
        group = by_status[status]
        descriptions = list(dict.fromkeys(answer.description for answer in group))
        response: dict[str, Any] = {"description": ", ".join(descriptions)}
        schemas: dict[str, list[dict[str, Any]]] = {}
        for answer in group:
            for media, entry in answer.content.items():
                schemas.setdefault(media, []).append(entry["schema"])
        if schemas:
            response["content"] = {
                media: {"schema": _any_of(found)} for media, found in schemas.items()
            }
        names = list(dict.fromkeys(name for answer in group for name in answer.headers))
        if names:
            response["headers"] = {name: {"schema": {"type": "string"}} for name in names}
        merged[status] = response
    return merged


def _describe(handler: Callable[..., Any]) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)
