"""A FastMCP proxy's upstream failures, as exceptions the registry handles like any other.

A FastMCP server that proxies (`create_proxy`, `FastMCPProxy`, a `ProxyProvider`) relays what
its upstream answers: an `isError` tool result comes back as a result, a JSON-RPC error as an
`MCPError`, an upstream it cannot reach as a connection failure or an `MCPError` made of its
text. The middleware turns each into an `UpstreamError` subclass that carries the upstream
detail for the log, hands it to the registry, and answers the client without that detail unless
a handler puts it there.

What counts as upstream: an `isError` result of a tool FastMCP proxies (a `ProxyTool`), and an
`MCPError` or a transport failure raised through FastMCP's proxy code (its traceback passes
through `fastmcp.server.providers.proxy`, as `unwrap` reads FastMCP's wrappers).
"""

from __future__ import annotations

import inspect
from collections.abc import Coroutine
from types import ModuleType
from typing import Any, Final

import anyio
from fastmcp.server.middleware import MiddlewareContext
from fastmcp.tools import ToolResult
from fastmcp.utilities.exceptions import get_http_status_code, is_request_error
from mcp import MCPError
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR

try:  # proxies are optional to this adapter: without the module, nothing is upstream
    from fastmcp.server.providers import proxy as _proxy
except ImportError:  # pragma: no cover - every supported FastMCP release has it
    _proxy_module: ModuleType | None = None
else:
    _proxy_module = _proxy

__all__ = [
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamToolError",
    "UpstreamUnavailable",
]


# -- the exceptions handlers receive ----------------------------------------------------------


class UpstreamError(Exception):
    """A call a FastMCP proxy relayed failed upstream. Register a handler for this class to take
    every upstream failure; its subclasses tell which kind.

    `server` is the upstream as FastMCP's client names its transport
    (`<StreamableHttpTransport(url='http://…/mcp')>`), or `None` where it cannot tell which
    (several `ProxyProvider`s, or one added with a namespace); `method` is the MCP method
    (`"tools/call"`, `"resources/read"`, `"prompts/get"`, `"tools/list"`, ...); `name` the
    tool's or prompt's name, or the resource's URI, as the client asked for it (`None` for a
    listing). The message holds the upstream's own text, for the log: the client never sees it
    unless a handler puts it in the answer.
    """

    def __init__(self, message: str, *, server: str | None, method: str, name: str | None) -> None:
        super().__init__(message)
        self.server = server
        self.method = method
        self.name = name


class UpstreamToolError(UpstreamError):
    """The upstream answered the tool call with an `isError` result.

    `content`, `structured_content` and `meta` are the upstream result's, as the proxy relayed
    them (`content` is a list of MCP content blocks).
    """

    def __init__(
        self,
        message: str,
        *,
        server: str | None,
        method: str,
        name: str | None,
        content: list[Any],
        structured_content: dict[str, Any] | None,
        meta: dict[str, Any] | None,
    ) -> None:
        super().__init__(message, server=server, method=method, name=name)
        self.content = content
        self.structured_content = structured_content
        self.meta = meta


class UpstreamProtocolError(UpstreamError):
    """The upstream answered with a JSON-RPC error: its `code`, `message` and `data`."""

    def __init__(
        self,
        message: str,
        *,
        server: str | None,
        method: str,
        name: str | None,
        code: int,
        upstream_message: str,
        data: Any,
    ) -> None:
        super().__init__(message, server=server, method=method, name=name)
        self.code = code
        self.upstream_message = upstream_message
        self.data = data


class UpstreamUnavailable(UpstreamError):
    """The upstream could not be reached (refused, unknown host, timed out, dropped, an HTTP
    error status): `reason` is the failure's text; the failure itself is the `__cause__`."""

    def __init__(
        self, message: str, *, server: str | None, method: str, name: str | None, reason: str
    ) -> None:
        super().__init__(message, server=server, method=method, name=name)
        self.reason = reason


for _public in (UpstreamError, UpstreamToolError, UpstreamProtocolError, UpstreamUnavailable):
    _public.__module__ = "excepthub_fastmcp"  # as users import them: in logs and error stats


# -- what counts as upstream --------------------------------------------------------------------

_PROXY_FILE: Final = None if _proxy_module is None else _proxy_module.__file__
_PROXY_TOOL: Final[type[Any] | None] = getattr(_proxy_module, "ProxyTool", None)
_PROXY_SERVER: Final[type[Any] | None] = getattr(_proxy_module, "FastMCPProxy", None)
_PROXY_PROVIDER: Final[type[Any] | None] = getattr(_proxy_module, "ProxyProvider", None)

# How a dead connection shows: the stdlib's and anyio's errors, and FastMCP's own list where it
# has one (the failures it normalizes into an `MCPError`).
_TRANSPORT_FAILURES: Final[tuple[type[BaseException], ...]] = (
    TimeoutError,
    OSError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    *getattr(_proxy_module, "_PROXY_TRANSPORT_CAUSES", ()),
)
# The classes an upstream failure arrives as (a cheap first test on every error path).
_CANDIDATES: Final = (MCPError, RuntimeError, *_TRANSPORT_FAILURES)


def raised_upstream(error: BaseException) -> bool:
    """Whether `error` is an upstream's failure a proxy relayed: an `MCPError` or a transport
    failure whose traceback passes through FastMCP's proxy code."""
    if _PROXY_FILE is None or not isinstance(error, _CANDIDATES):
        return False
    if not isinstance(error, MCPError) and not _unreachable(error):
        return False
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _PROXY_FILE:
            return True
        tb = tb.tb_next
    return False


def _unreachable(error: BaseException) -> bool:
    """A connection that failed: a transport error, or an error caused by one."""
    seen: BaseException | None = error
    for _ in range(16):  # a chain is short; a cycle must not hold the error path
        if seen is None:
            return False
        if (
            isinstance(seen, _TRANSPORT_FAILURES)
            or is_request_error(seen)
            or get_http_status_code(seen) is not None
            or (isinstance(seen, MCPError) and seen.code == CONNECTION_CLOSED)
        ):
            return True
        seen = seen.__cause__
    return False


def upstream_failure(
    error: Exception, context: MiddlewareContext[Any]
) -> Coroutine[Any, Any, UpstreamError] | None:
    """The `UpstreamError` for `error` when a proxy relayed it from its upstream, else `None`
    at once (an `isinstance`; a walk of the traceback for an `MCPError` or a connection
    failure)."""
    if not raised_upstream(error):
        return None
    return _from_exception(error, context)


async def _from_exception(error: Exception, context: MiddlewareContext[Any]) -> UpstreamError:
    server = await _upstream_of(context)
    method, name = _call_of(context)
    where = _where(server, method, name)
    upstream: UpstreamError
    if isinstance(error, MCPError) and not _unreachable(error):
        upstream = UpstreamProtocolError(
            f"upstream {where} answered JSON-RPC error {error.code}: {error.message}",
            server=server,
            method=method,
            name=name,
            code=error.code,
            upstream_message=error.message,
            data=error.data,
        )
    else:
        reason = str(error) or type(error).__name__
        upstream = UpstreamUnavailable(
            f"upstream {where} could not be reached: {reason}",
            server=server,
            method=method,
            name=name,
            reason=reason,
        )
    upstream.__cause__ = error  # the upstream's own traceback, for the log
    return upstream


# FastMCP's words for an upstream it cannot reach ("Client failed to connect: <the failure>"),
# less the failure's text: a client can still tell a dead upstream from a fault of the proxy.
_UNREACHABLE: Final = "Client failed to connect"


def masked_request_error(error: Exception) -> MCPError | None:
    """What a request other than a call (`tools/list`, ...) answers for an upstream failure no
    handler answered: FastMCP's own error for an unreachable upstream, without its text; `None`
    for the generic masked error."""
    if isinstance(error, UpstreamUnavailable):
        return MCPError(INTERNAL_ERROR, _UNREACHABLE)
    return None


async def upstream_tool_error(
    result: ToolResult, context: MiddlewareContext[Any]
) -> UpstreamToolError | None:
    """The `UpstreamToolError` for an `isError` result of a tool the server proxies, else `None`
    (a local tool's own error result is its answer, left as it is)."""
    fastmcp_context = context.fastmcp_context
    if _PROXY_TOOL is None or fastmcp_context is None:
        return None
    name = context.message.name
    if not isinstance(await fastmcp_context.fastmcp.get_tool(name), _PROXY_TOOL):
        return None
    server = await _upstream_of(context)
    text = " ".join(_text_of(block) for block in result.content) or "(no content)"
    return UpstreamToolError(
        f"upstream {_where(server, 'tools/call', name)} returned an error result: {text}",
        server=server,
        method="tools/call",
        name=name,
        content=list(result.content),
        structured_content=result.structured_content,
        meta=result.meta,
    )


def _text_of(block: Any) -> str:
    text = getattr(block, "text", None)
    return text if isinstance(text, str) else f"[{getattr(block, 'type', type(block).__name__)}]"


def _call_of(context: MiddlewareContext[Any]) -> tuple[str, str | None]:
    method = context.method or "unknown"
    message = context.message
    if method == "resources/read":
        return method, str(message.uri)
    name = getattr(message, "name", None)
    return method, name if isinstance(name, str) else None


def _where(server: str | None, method: str, name: str | None) -> str:
    call = method if name is None else f"{method} {name!r}"
    return call if server is None else f"{server} ({call})"


async def _upstream_of(context: MiddlewareContext[Any]) -> str | None:
    """The upstream as the proxy's client names its transport, when the server has one."""
    fastmcp_context = context.fastmcp_context
    if fastmcp_context is None:
        return None
    factory = _client_factory(fastmcp_context.fastmcp)
    if factory is None:
        return None
    try:  # only a name for the log: a factory that fails here must not change the answer
        client = factory()
        if inspect.isawaitable(client):
            client = await client
        return repr(client.transport)
    except Exception:
        return None


def _client_factory(server: Any) -> Any:
    """The public `client_factory` of a `FastMCPProxy`, or of the one `ProxyProvider` the
    server has; `None` when there are several (which one failed is not known here)."""
    if _PROXY_SERVER is not None and isinstance(server, _PROXY_SERVER):
        return server.client_factory
    if _PROXY_PROVIDER is None:
        return None
    providers = [p for p in getattr(server, "providers", ()) if isinstance(p, _PROXY_PROVIDER)]
    return providers[0].client_factory if len(providers) == 1 else None
