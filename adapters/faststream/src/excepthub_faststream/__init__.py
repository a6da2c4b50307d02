"""excepthub for FastStream: a drop-in `ExceptionMiddleware` for brokers and routers.

```python
from excepthub_faststream import ExceptionMiddleware  # was: from faststream import ...
from faststream import Context
from faststream.redis import RedisBroker

exc_middleware = ExceptionMiddleware(handlers={KeyError: print})


@exc_middleware.add_handler(ValueError, publish=True)
def fallback(exc: ValueError, message=Context()) -> str:
    return "error occurred"


broker = RedisBroker(middlewares=[exc_middleware])
```

A registry that also serves FastAPI or FastMCP plugs in with one call:
`RedisBroker(middlewares=[excepthub_faststream.middleware(exc)])`.
"""

from importlib.metadata import version as _version

from ._middleware import DEFAULTS, ExcepthubMiddleware, ExceptionMiddleware, middleware
from ._redelivery import RedeliveryUnsupported

__version__: str = _version("excepthub-faststream")
"""The installed version of this distribution (the same as `excepthub.__version__`)."""

__all__ = [
    "DEFAULTS",
    "ExcepthubMiddleware",
    "ExceptionMiddleware",
    "RedeliveryUnsupported",
    "middleware",
]
