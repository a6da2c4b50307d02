"""excepthub for FastAPI: every error of the app goes to one excepthub registry.

```python
from excepthub import ExceptionMiddleware
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

import excepthub_fastapi

exc = ExceptionMiddleware()


@exc.add_handler(LookupError, publish=True)
async def not_found(error: LookupError, request: Request) -> JSONResponse:
    return JSONResponse({"detail": "Not Found", "path": request.url.path}, status_code=404)


orders_exc = ExceptionMiddleware()  # asked first about the errors of the /orders routes
orders = APIRouter(prefix="/orders", dependencies=[excepthub_fastapi.router_handlers(orders_exc)])

app = FastAPI(middleware=[excepthub_fastapi.middleware(exc)])
app.include_router(orders)
```

Errors a handler takes are answered where FastAPI answers them (route level, inside every
middleware) and logged once by excepthub; an error no handler takes goes on exactly as without
excepthub (to `ServerErrorMiddleware` and the server, which log it). A router's registry takes
its routes' errors first; what it does not take goes on to the app's. Plain Starlette apps work
the same, with Starlette's own answers.

`responses(exc, ItemNotFound)` documents the handlers' answers in a route's OpenAPI responses;
`problem_details` answers any exception as RFC 9457 problem details (`Problem`). See the
FastAPI page of the documentation.
"""

from importlib.metadata import version as _version

from ._middleware import (
    DEFAULTS,
    STARLETTE_DEFAULTS,
    ExcepthubMiddleware,
    StatusCode,
    middleware,
    router_handlers,
    starlette_http_exception_handler,
    status_code,
    websocket_exception_handler,
)
from ._openapi import responds, responses
from ._problem import PROBLEM_JSON, Problem, problem_details

__version__: str = _version("excepthub-fastapi")
"""The installed version of this distribution (the same as `excepthub.__version__`)."""

__all__ = [
    "DEFAULTS",
    "PROBLEM_JSON",
    "STARLETTE_DEFAULTS",
    "ExcepthubMiddleware",
    "Problem",
    "StatusCode",
    "middleware",
    "problem_details",
    "responds",
    "responses",
    "router_handlers",
    "starlette_http_exception_handler",
    "status_code",
    "websocket_exception_handler",
]
