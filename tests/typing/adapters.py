"""The adapters plugged in as each framework's users plug middleware: `mypy --strict` accepts
every line (see test_typing.py)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastmcp import FastMCP
from faststream.rabbit import RabbitBroker, RabbitRouter
from faststream.redis import RedisBroker, RedisRouter

import excepthub_fastapi
import excepthub_fastmcp
import excepthub_faststream
from excepthub import ExceptionMiddleware

exc = ExceptionMiddleware()

# FastAPI: the constructor, and a router's own registry
app = FastAPI(middleware=[excepthub_fastapi.middleware(exc)])
router = APIRouter(dependencies=[excepthub_fastapi.router_handlers(ExceptionMiddleware())])
app.include_router(router)

# FastStream: one registry plugged in, or the drop-in, wherever FastStream takes middleware
drop_in = excepthub_faststream.ExceptionMiddleware(handlers={KeyError: print})
redis = RedisBroker(middlewares=[excepthub_faststream.middleware(exc)])
rabbit = RabbitBroker(middlewares=[drop_in])
redis_router = RedisRouter(middlewares=[drop_in])
redis.include_router(redis_router, middlewares=[excepthub_faststream.middleware(exc)])
rabbit.include_router(RabbitRouter(middlewares=[excepthub_faststream.middleware(exc)]))
redis.add_middleware(drop_in)
redis.insert_middleware(excepthub_faststream.middleware(exc))

# FastMCP: the constructor, or add_middleware
mcp = FastMCP("typed", middleware=[excepthub_fastmcp.middleware(exc)])
mcp.add_middleware(excepthub_fastmcp.middleware(ExceptionMiddleware()))


@exc.add_handler(PermissionError, publish=True)
def no_access(error: PermissionError) -> excepthub_fastmcp.Denial:
    return excepthub_fastmcp.deny("You may not do that.")
