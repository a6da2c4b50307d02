"""excepthub for FastAPI: every error of the app goes to one excepthub registry.

```python
from excepthub import ExceptionMiddleware
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import excepthub_fastapi

exc = ExceptionMiddleware()


@exc.add_handler(LookupError, publish=True)
async def not_found(error: LookupError, request: Request) -> JSONResponse:
    return JSONResponse({"detail": "Not Found", "path": request.url.path}, status_code=404)


app = FastAPI(middleware=[excepthub_fastapi.middleware(exc)])
```

Errors are answered where FastAPI answers them (route level, inside every middleware), logged
once by excepthub, and never re-raised into the server. See docs/fastapi.md.
"""

from ._middleware import DEFAULTS, ExcepthubMiddleware, middleware, websocket_exception_handler

__all__ = ["DEFAULTS", "ExcepthubMiddleware", "middleware", "websocket_exception_handler"]
