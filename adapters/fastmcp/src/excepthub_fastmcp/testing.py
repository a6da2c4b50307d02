"""What an MCP client received for a call: the result (an `isError` one included) or the
protocol error, as it came over the connection.

```python
from excepthub_fastmcp.testing import call_tool

received = await call_tool(mcp, "charge", {"card": "4242"})
assert received.is_error
assert "hunter2" not in received  # the secret reaches no client
```
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastmcp import Client, FastMCP
from mcp import MCPError
from mcp_types import CallToolResult, GetPromptResult, ReadResourceResult

__all__ = ["Received", "call_tool", "get_prompt", "read_resource"]

Result = CallToolResult | ReadResourceResult | GetPromptResult


@dataclass(frozen=True)
class Received:
    """What a client received: a `result`, or the protocol `error` the call raised.

    `text in received` tells whether `text` appears anywhere in it: the result as JSON (its
    content, structured content and metadata), or the error's code, message and data.
    """

    result: Result | None = None
    error: MCPError | None = None

    @property
    def is_error(self) -> bool:
        """A protocol error, or a tool result with `isError` (`is_error`) set."""
        return self.error is not None or bool(getattr(self.result, "is_error", False))

    @property
    def wire(self) -> str:
        """What came over the connection, as JSON."""
        if self.result is not None:
            return self.result.model_dump_json(by_alias=True, exclude_none=True)
        assert self.error is not None
        error = {"code": self.error.code, "message": self.error.message, "data": self.error.data}
        return json.dumps(error, default=str, ensure_ascii=False)

    def __contains__(self, text: object) -> bool:
        if not isinstance(text, str):
            raise TypeError(f"look for a str in what a client received, not {text!r}")
        wire = self.wire
        return text in wire or json.dumps(text, ensure_ascii=False)[1:-1] in wire


async def call_tool(
    target: FastMCP | Client[Any], name: str, arguments: dict[str, Any] | None = None
) -> Received:
    """Call a tool as a client does: on a server (in memory) or through an open `Client`
    (streamable HTTP, for instance)."""
    return await _receive(target, lambda client: client.call_tool_mcp(name, arguments or {}))


async def read_resource(target: FastMCP | Client[Any], uri: str) -> Received:
    """Read a resource as a client does (see `call_tool`)."""
    return await _receive(target, lambda client: client.read_resource_mcp(uri))


async def get_prompt(
    target: FastMCP | Client[Any], name: str, arguments: dict[str, Any] | None = None
) -> Received:
    """Get a prompt as a client does (see `call_tool`)."""
    return await _receive(target, lambda client: client.get_prompt_mcp(name, arguments))


async def _receive(
    target: FastMCP | Client[Any], call: Callable[[Client[Any]], Awaitable[Result]]
) -> Received:
    async with _connected(target) as client:
        try:
            return Received(result=await call(client))
        except MCPError as error:
            return Received(error=error)


@asynccontextmanager
async def _connected(target: FastMCP | Client[Any]) -> AsyncIterator[Client[Any]]:
    if isinstance(target, Client):
        if not target.is_connected():
            raise RuntimeError("open the client first: `async with client:`")
        yield target
    elif isinstance(target, FastMCP):
        async with Client(target) as client:
            yield client
    else:
        raise TypeError(f"expected a FastMCP server or a fastmcp.Client, got {target!r}")
