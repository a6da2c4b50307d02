"""RFC 9457 problem details: the `Problem` body, and `problem_details`, a ready fallback.

A `Problem` a fallback handler returns is answered as `application/problem+json`, with the
status of the error (its `status_code`, as every rendered value) unless it sets `status`
itself. What reaches the client is only what the handler put in the `Problem`, or what the
exception class declares public (`title`, `type`, the attributes named in `public`):
never the exception's message.
"""

from __future__ import annotations

import http
from collections.abc import Mapping
from typing import Any, Final

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import SkipJsonSchema
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

__all__ = ["PROBLEM_JSON", "Problem", "problem_details"]

PROBLEM_JSON: Final = "application/problem+json"
"""The media type of a problem details body (RFC 9457, section 3)."""


def _as_sent(schema: dict[str, Any], cls: type) -> None:
    """The schema of the body as it is sent: `type` and `status` always there, a member left
    `None` left out (so never null)."""
    schema["required"] = list(dict.fromkeys([*schema.get("required", ()), "type", "status"]))
    for member in schema.get("properties", {}).values():
        if "default" in member and member["default"] is None:
            del member["default"]
    if cls is Problem:
        schema["description"] = "RFC 9457 problem details"


class Problem(BaseModel):
    """An RFC 9457 problem details object, answered as `application/problem+json`.

    ```python
    @exc.add_handler(OutOfStock, publish=True)
    async def out_of_stock(error: OutOfStock) -> Problem:
        return Problem(title="Out of stock", detail=f"{error.sku} is sold out", sku=error.sku)
    ```

    Extension members are keyword arguments (or typed fields of a subclass, which the OpenAPI
    document then shows). Members left `None` are left out of the body. `status` is filled
    with the error's status (its `status_code`; 422 for a validation error; else 500) and
    `title`, with `type` left `about:blank`, with that status's phrase.
    """

    # extension members allowed; the schema says what is sent, and not with this docstring
    model_config = ConfigDict(extra="allow", json_schema_extra=_as_sent)

    type: str = "about:blank"
    """A URI reference that identifies the problem type."""
    title: str | SkipJsonSchema[None] = None
    """A short, human-readable summary of the problem type."""
    status: int | SkipJsonSchema[None] = None
    """The HTTP status code of this occurrence."""
    detail: str | SkipJsonSchema[None] = None
    """A human-readable explanation specific to this occurrence."""
    instance: str | SkipJsonSchema[None] = None
    """A URI reference that identifies this occurrence."""

    def __init__(
        self,
        *,
        type: str = "about:blank",  # the member's name in RFC 9457
        title: str | None = None,
        status: int | None = None,
        detail: str | None = None,
        instance: str | None = None,
        **extensions: Any,
    ) -> None:
        # spelled out so that type checkers take extension members as keyword arguments
        super().__init__(
            type=type, title=title, status=status, detail=detail, instance=instance, **extensions
        )

    def response(
        self, status_code: int = 500, headers: Mapping[str, str] | None = None
    ) -> JSONResponse:
        """This problem as an `application/problem+json` response: with its own `status`, or
        `status_code` when it has none."""
        status = self.status if self.status is not None else status_code
        body = jsonable_encoder(self, exclude_none=True)
        body["status"] = status
        if self.title is None and self.type == "about:blank":
            body["title"] = phrase(status)
        return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


async def problem_details(error: Exception, request: HTTPConnection) -> Problem:
    """A ready fallback handler: any exception as RFC 9457 problem details.

    ```python
    exc = ExceptionMiddleware(publish_handlers={Exception: excepthub_fastapi.problem_details})
    ```

    The status is the error's (`status_code`, 422 for a validation error, else 500), with its
    `headers`. `title` and `type` come from the exception class's attributes of those names
    (else the status's phrase and `about:blank`); `instance` is the request's path. `detail`
    and extension members come only from the attributes the class names in `public`
    (`public = ("detail", "sku")`); an `HTTPException`'s `detail` is public, as FastAPI sends
    it, and a validation error's `errors` too. The exception's message never is.
    """
    title, kind, public = declared(type(error))
    members: dict[str, Any] = {"title": title, "instance": request.url.path}
    if kind is not None:
        members["type"] = kind
    if isinstance(error, HTTPException) and isinstance(error.detail, str):
        members["detail"] = error.detail
    if isinstance(error, RequestValidationError):
        members["errors"] = jsonable_encoder(error.errors())  # what FastAPI sends as `detail`
    for name in public:
        value = getattr(error, name, None)
        if value is not None:
            members[name] = jsonable_encoder(value)
    return Problem(**members)


def declared(cls: type[BaseException]) -> tuple[str | None, str | None, tuple[str, ...]]:
    """What the exception class declares public: its `title`, its `type` and the attributes
    named in its `public`. `TypeError` naming the attribute when one is of the wrong kind."""
    title = _class_str(cls, "title")
    kind = _class_str(cls, "type")
    public = getattr(cls, "public", ())
    if isinstance(public, str):
        public = (public,)
    if not isinstance(public, tuple | list | frozenset | set) or not all(
        isinstance(name, str) for name in public
    ):
        raise TypeError(
            f"{cls.__qualname__}.public names the attributes sent as problem details members: "
            f"a tuple of names, got {public!r}"
        )
    for name in public:
        if not name.isidentifier() or name.startswith("_") or name == "status":
            raise TypeError(
                f"{cls.__qualname__}.public: {name!r} cannot be a problem details member (the "
                "status follows the response's status code; names are public attributes)"
            )
    return title, kind, tuple(public)


def _class_str(cls: type[BaseException], name: str) -> str | None:
    """A string the class itself sets (a property or a method is no declaration)."""
    value = getattr(cls, name, None)
    return value if isinstance(value, str) else None


def phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"
