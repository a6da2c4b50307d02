"""excepthub for FastMCP: one exception-handler registry for MCP tools, resources and prompts.

```python
from fastmcp import FastMCP
from excepthub import ExceptionMiddleware
import excepthub_fastmcp


class RateLimited(Exception):
    pass


exc = ExceptionMiddleware()


@exc.add_handler(RateLimited, publish=True)
def slow_down(error: RateLimited) -> excepthub_fastmcp.Denial:
    return excepthub_fastmcp.deny("The service is busy; try again in a minute.")


mcp = FastMCP("demo", middleware=[excepthub_fastmcp.middleware(exc)])
```

Handlers see the exception the tool raised (not FastMCP's `ToolError` wrapper); a fallback
value becomes the tool's result, converted by its output schema; a handled or unhandled error
becomes an `isError` result that carries no exception detail. On a proxy (`create_proxy`), the
upstream's failures reach the handlers as `UpstreamToolError`, `UpstreamProtocolError` and
`UpstreamUnavailable`. See the FastMCP page of the documentation.
"""

from importlib.metadata import version as _version

from ._gateway import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamToolError,
    UpstreamUnavailable,
)
from ._middleware import (
    DEFAULTS,
    Denial,
    ExcepthubMiddleware,
    Guided,
    MCPErrorReply,
    deny,
    guide,
    mcp_error,
    middleware,
    unwrap,
)

__version__: str = _version("excepthub-fastmcp")
"""The installed version of this distribution (the same as `excepthub.__version__`)."""

__all__ = [
    "DEFAULTS",
    "Denial",
    "ExcepthubMiddleware",
    "Guided",
    "MCPErrorReply",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamToolError",
    "UpstreamUnavailable",
    "deny",
    "guide",
    "mcp_error",
    "middleware",
    "unwrap",
]
