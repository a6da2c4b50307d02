"""A FastMCP proxy's upstream failures, as exceptions the registry handles like any other.

A FastMCP server that proxies (`create_proxy`, `FastMCPProxy`, a `ProxyProvider`) relays what
its upstream answers: an `isError` tool result comes back as a result, a JSON-RPC error as an
`MCPError`, an upstream it cannot reach as a connection failure or an `MCPError` made of its
text. The middleware turns each into an `UpstreamError` subclass that carries the upstream
detail for the log, hands it to the registry, and answers the client without that detail unless
a handler puts it there.

What counts as upstream, told by FastMCP's public API: an `isError` result, an `MCPError` or a
connection failure of a call to a component FastMCP proxies (the public `get_tool` & co. of
the server's providers find a `ProxyTool`, `ProxyResource`, `ProxyTemplate` or `ProxyPrompt`),
and an `MCPError` or a connection failure of a listing on a server that proxies (a
`FastMCPProxy`, a `ProxyProvider`). The lookup is made on the error path only, for an error of
a kind an upstream failure arrives as.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from types import ModuleType
from typing import Any, Final

import anyio
from fastmcp.server.middleware import MiddlewareContext
from fastmcp.server.providers import Provider
from fastmcp.server.server import FastMCP
from fastmcp.tools import ToolResult
from fastmcp.utilities.exceptions import is_http_status_error, is_request_error
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

# FastMCP's public proxy classes (feature-detected: without them nothing is upstream). A component
# of one of these classes relays each call to an upstream.
_PROXIED: Final[tuple[type[Any], ...]] = tuple(
    kind
    for kind in (
        getattr(_proxy_module, name, None)
        for name in ("ProxyTool", "ProxyResource", "ProxyTemplate", "ProxyPrompt")
    )
    if isinstance(kind, type)
)
_PROXY_SERVER: Final[type[Any] | None] = getattr(_proxy_module, "FastMCPProxy", None)
_PROXY_PROVIDER: Final[type[Any] | None] = getattr(_proxy_module, "ProxyProvider", None)

# How a dead connection shows: the stdlib's and anyio's errors, and httpx's (told by FastMCP's
# public helpers, see `_http_failure`): the failures FastMCP's proxy turns into an `MCPError`.
_TRANSPORT_FAILURES: Final[tuple[type[BaseException], ...]] = (
    TimeoutError,
    OSError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    anyio.BrokenResourceError,
)
# The classes an upstream failure arrives as, httpx's aside (a cheap first test on every error).
_CANDIDATES: Final = (MCPError, RuntimeError, *_TRANSPORT_FAILURES)
_HTTP_FAILURE_CLASSES: Final[dict[type[BaseException], bool]] = {}
_REMEMBERED: Final = 512  # classes made at run time must not grow the memo without end


def may_be_upstream(error: BaseException) -> bool:
    """Whether `error` is of a kind an upstream failure arrives as: an `MCPError`, or a
    connection failure (itself or what caused it). Told from the error alone, at the cost of an
    `isinstance` for any other error; whether a proxy relayed it is `upstream_failure`'s to tell."""
    if not _PROXIED:
        return False
    if isinstance(error, MCPError):
        return True
    if not isinstance(error, _CANDIDATES) and not _http_failure(error):
        return False
    return _unreachable(error)


def _unreachable(error: BaseException) -> bool:
    """A connection that failed: a transport error, or an error caused by one."""
    seen: BaseException | None = error
    for _ in range(16):  # a chain is short; a cycle must not hold the error path
        if seen is None:
            return False
        if (
            isinstance(seen, _TRANSPORT_FAILURES)
            or _http_failure(seen)
            or (isinstance(seen, MCPError) and seen.code == CONNECTION_CLOSED)
        ):
            return True
        seen = seen.__cause__
    return False


def _http_failure(error: BaseException) -> bool:
    """Whether `error` is an httpx request or status error (legacy httpx's too), as FastMCP's
    public helpers tell it; remembered per class, since they walk the class's MRO."""
    kind = type(error)
    known = _HTTP_FAILURE_CLASSES.get(kind)
    if known is None:
        known = is_request_error(error) or is_http_status_error(error)
        if len(_HTTP_FAILURE_CLASSES) < _REMEMBERED:
            _HTTP_FAILURE_CLASSES[kind] = known
    return known


def upstream_failure(
    error: Exception, context: MiddlewareContext[Any]
) -> Coroutine[Any, Any, UpstreamError | None] | None:
    """`None` at once for an error no upstream failure arrives as (see `may_be_upstream`); else
    the coroutine that gives its `UpstreamError` if the request went to a proxy (see `_relayed`),
    or `None` if it did not."""
    if not may_be_upstream(error):
        return None
    return _from_exception(error, context)


async def _relayed(context: MiddlewareContext[Any]) -> bool:
    """Whether a proxy serves the request: the component it targets is a proxy's (`ProxyTool`,
    ...); for a listing, or a component that cannot be looked up (a proxy's listing failed, as it
    did for FastMCP), whether the server proxies."""
    fastmcp_context = context.fastmcp_context
    if fastmcp_context is None:
        return False
    server = fastmcp_context.fastmcp
    finders = _FINDERS.get(context.method or "")
    if finders is None:  # a listing, or another request the server answers itself
        return _proxies(server)
    key = _call_of(context)[1]
    if key is None:
        return False
    try:
        component = await _find(server, finders, key)
    except Exception:  # a provider's listing fails: on a proxy, its upstream's
        return _proxies(server)
    return isinstance(component, _PROXIED)


_Finder = Callable[[Provider, str], Awaitable[object]]

# How each call's target is found by the name or URI the client asked for: FastMCP's public
# lookups, which every provider and the server itself have.
_FINDERS: Final[dict[str, tuple[_Finder, ...]]] = {
    "tools/call": (lambda where, name: where.get_tool(name),),
    "prompts/get": (lambda where, name: where.get_prompt(name),),
    "resources/read": (  # a resource first, then a template, as FastMCP reads one
        lambda where, uri: where.get_resource(uri),
        lambda where, uri: where.get_resource_template(uri),
    ),
}


async def _find(server: FastMCP[Any], finders: tuple[_Finder, ...], key: str) -> object | None:
    """The component under `key`, as the server's providers find it, in the server's order (a
    local tool: about 2 µs); failing that, as the server finds it (about 40 µs: every transform,
    visibility and auth check), for a name that a transform of the server's own gives."""
    for find in finders:
        for provider in server.providers:
            if (component := await find(provider, key)) is not None:
                return component
    for find in finders:
        if (component := await find(server, key)) is not None:
            return component
    return None


def _proxies(server: FastMCP[Any]) -> bool:
    """Whether the server proxies: a `FastMCPProxy`, or one with a `ProxyProvider` of its own
    (one added with a namespace is wrapped by FastMCP: not told by public API)."""
    return (_PROXY_SERVER is not None and isinstance(server, _PROXY_SERVER)) or bool(
        _proxy_providers(server)
    )


def _proxy_providers(server: FastMCP[Any]) -> list[Any]:
    if _PROXY_PROVIDER is None:
        return []
    return [p for p in server.providers if isinstance(p, _PROXY_PROVIDER)]


async def _from_exception(
    error: Exception, context: MiddlewareContext[Any]
) -> UpstreamError | None:
    if not await _relayed(context):
        return None
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
    if not await _relayed(context):
        return None
    name = context.message.name
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
    providers = _proxy_providers(server)
    return providers[0].client_factory if len(providers) == 1 else None
