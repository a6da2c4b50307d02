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

Errors are answered where FastAPI answers them (route level, inside every middleware), logged
once by excepthub, and never re-raised into the server. A router's registry takes its routes'
errors first; what it does not take goes on to the app's. See the FastAPI page of the documentation.
"""

from importlib.metadata import version as _version

from ._middleware import (
    DEFAULTS,
    ExcepthubMiddleware,
    middleware,
    router_handlers,
    websocket_exception_handler,
)

__version__: str = _version("excepthub-fastapi")
"""The installed version of this distribution (the same as `excepthub.__version__`)."""

__all__ = [
    "DEFAULTS",
    "ExcepthubMiddleware",
    "middleware",
    "router_handlers",
    "websocket_exception_handler",
]
