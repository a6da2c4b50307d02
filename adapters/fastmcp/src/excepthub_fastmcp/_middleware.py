"""The FastMCP adapter: tool, resource and prompt errors go to an excepthub registry.

A FastMCP `Middleware` wraps each call in one `try`. An error is unwrapped from FastMCP's
`ToolError`/`ResourceError`/`PromptError` wrapper, handed to the registry, and the outcome
becomes what an MCP client should receive: a tool result, resource contents, prompt messages,
or an MCP error. No exception detail reaches the client unless a handler put it there.
"""

from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import dataclass
from functools import partial
from types import CodeType, FrameType
from typing import Any, Final, NoReturn, Protocol

from fastmcp.exceptions import (
    DisabledError,
    FastMCPError,
    NotFoundError,
    PromptError,
    ResourceError,
    ToolError,
)
from fastmcp.prompts import Message, PromptResult
from fastmcp.prompts.function_prompt import FunctionPrompt
from fastmcp.resources import ResourceContent, ResourceResult
from fastmcp.resources.base import convert_raw_to_resource_result
from fastmcp.server.context import Context as FastMCPContext
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.server.server import FastMCP
from fastmcp.tools import Tool, ToolResult
from fastmcp.tools import function_tool as _function_tool
from jsonschema.exceptions import best_match  # type: ignore[import-untyped]
from jsonschema.validators import validator_for  # type: ignore[import-untyped]
from mcp import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_REQUEST, TextContent
from pydantic import ValidationError as PydanticValidationError
from referencing import Registry

from excepthub import Defaults, ExceptionMiddleware, Outcome, OutcomeKind, reraise

__all__ = [
    "DEFAULTS",
    "Denial",
    "ExcepthubMiddleware",
    "Guided",
    "MCPErrorReply",
    "deny",
    "guide",
    "mcp_error",
    "middleware",
    "unwrap",
]


# -- framework defaults ---------------------------------------------------------------------

_FASTMCP_ANSWERS: Final = (FastMCPError, MCPError, NotFoundError, DisabledError)
"""Exceptions FastMCP answers on purpose, with a message meant for the client: `ToolError`
(and every `FastMCPError`) becomes an `isError` result or an MCP error with its message,
`MCPError` keeps its code, `NotFoundError`/`DisabledError` become "Unknown tool" and the like."""

DEFAULTS: Final = Defaults(
    "fastmcp",
    supplies=("context", "fastmcp_context", "correlation_id"),  # see `_values`
    handlers={_FASTMCP_ANSWERS: reraise},
    publish_handlers={_FASTMCP_ANSWERS: reraise},
)
"""FastMCP's own exceptions keep their meaning: they pass through excepthub to FastMCP, which
answers them as it always does. A broad user handler such as `Exception` does not take them
(MRO-nearest wins); a fallback handler of yours for one of them, or a subclass, does."""

# What the MCP server answers without detail when it escapes any request: FastMCP's own
# answers, and pydantic errors (the SDK's "Invalid request parameters", data left empty).
_SERVER_ANSWERS: Final = (*_FASTMCP_ANSWERS, PydanticValidationError)

# Where FastMCP raises the wrappers it puts around a user's exception (`raise X(...) from e`).
_WRAPPED_IN: Final[dict[type[Exception], frozenset[CodeType]]] = {
    ToolError: frozenset({FastMCP.call_tool.__code__}),
    ResourceError: frozenset({FastMCP.read_resource.__code__}),
    PromptError: frozenset({FastMCP.render_prompt.__code__, FunctionPrompt.render.__code__}),
}
# FastMCP tags a pydantic error from a tool's body with this private class; found by name so
# that a FastMCP release without it only loses this one unwrapping step.
_BODY_ERROR: Final[type[Exception] | None] = getattr(_function_tool, "_ToolBodyError", None)


def unwrap(error: Exception) -> Exception:
    """The exception the user's code raised, found behind FastMCP's wrappers.

    FastMCP answers a failing tool with `ToolError("Error calling tool 'x': ...") from e`
    (`ResourceError`, `PromptError` likewise). Only wrappers FastMCP itself raised are taken
    off: a `ToolError` that a tool raises `from` another error is the tool's own answer and
    stays as it is.
    """
    while isinstance(cause := error.__cause__, Exception):
        kind = type(error)
        if kind is not _BODY_ERROR and _raised_in(error) not in _WRAPPED_IN.get(kind, ()):
            break
        error = cause
    return error


def _raised_in(error: BaseException) -> CodeType | None:
    frame = _raising_frame(error)
    return None if frame is None else frame.f_code


def _raising_frame(error: BaseException) -> FrameType | None:
    tb = error.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame


# -- plug-in --------------------------------------------------------------------------------


def middleware(registry: ExceptionMiddleware) -> ExcepthubMiddleware:
    """The FastMCP middleware that sends errors to `registry`.

    Put it first, so that it is the outermost middleware and sees what the others raise:

    ```python
    mcp = FastMCP("demo", middleware=[excepthub_fastmcp.middleware(exc)])
    # or: mcp.add_middleware(excepthub_fastmcp.middleware(exc))
    ```
    """
    return ExcepthubMiddleware(registry)


class ExcepthubMiddleware(Middleware):
    """A FastMCP `Middleware` that hands errors to an excepthub registry.

    Tool calls, resource reads and prompt renders: the error the user's code raised goes to
    its handler (retried first when the registry's `retry` says it is transient); a fallback
    value becomes the tool result, resource contents or prompt messages; anything else
    becomes a masked answer. Every other request: an error FastMCP does not answer itself
    goes to the handlers and the client gets a masked MCP error.
    """

    def __init__(self, registry: ExceptionMiddleware) -> None:
        if not isinstance(registry, ExceptionMiddleware):
            raise TypeError(
                f"middleware() takes an excepthub.ExceptionMiddleware, got {registry!r}"
            )
        self.registry = registry
        registry.plug_in(DEFAULTS)  # now, so that a handler nothing can fill is refused here
        _hold_framework_logs()

    async def on_call_tool(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        """Run the tool call; an error becomes a `ToolResult` (or an MCP error, on request)."""
        return await self._component(context, call_next, _TOOLS)

    async def on_read_resource(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        """Read the resource; an error becomes a `ResourceResult` or an MCP error."""
        return await self._component(context, call_next, _RESOURCES)

    async def on_get_prompt(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        """Render the prompt; an error becomes a `PromptResult` or an MCP error."""
        return await self._component(context, call_next, _PROMPTS)

    async def on_request(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        """Every request: what would escape to the MCP server as `str(error)` is masked."""
        try:
            return await call_next(context)
        except _SERVER_ANSWERS:
            raise
        except Exception as error:
            raise await self._request_failed(error, context) from None

    # -- unit of work -> handle -------------------------------------------------------------

    async def _component(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any], answers: _Answers
    ) -> Any:
        attempts = None
        try:
            if self.registry.retry is None:
                result = await call_next(context)
            else:
                attempts = _Attempts(self.registry, call_next, context, sys._getframe())
                result = await self.registry.call_with_retries(attempts, **_values(context))
        except Exception as raised:
            # `sys._getframe()` each time, never kept in a local: a frame that refers to itself
            # is a reference cycle, kept with all it holds until the garbage collector runs
            held = _HELD.pop(sys._getframe(), None) if _HELD else None
            if attempts is not None:
                raised = attempts.as_raised(raised)
            try:
                return await self._recover(raised, context, answers, held)
            finally:
                if _HELD:  # logged while a handler ran: not this error's
                    _release(_HELD.pop(sys._getframe(), None))
        except BaseException:  # cancelled: nothing to hold on to
            if _HELD:
                _HELD.pop(sys._getframe(), None)
            raise
        if _HELD:  # an inner middleware settled an error FastMCP had logged: its log stands
            _release(_HELD.pop(sys._getframe(), None))
        return result

    async def _recover(
        self,
        raised: Exception,
        context: MiddlewareContext[Any],
        answers: _Answers,
        held: list[logging.LogRecord] | None,
    ) -> Any:
        error = unwrap(raised)
        convert = partial(_convert, answers, context=context, raised=raised)
        try:
            outcome = await self.registry.handle(
                error, defaults=DEFAULTS, convert=convert, **_values(context)
            )
        except Exception as escaped:
            if escaped is error and self._let_through(error):
                _release(held)  # excepthub stood aside: FastMCP's own log is the one
                if isinstance(error, _FASTMCP_ANSWERS):
                    raise raised from raised.__cause__  # FastMCP answers it, as without excepthub
                return answers.masked(context)
            self._settle(held, "unhandled" if escaped is error else "failed")
            return answers.masked(context)
        self._settle(held, "published" if outcome.published else "handled")
        return _reply(answers, outcome, context)

    def _settle(self, held: list[logging.LogRecord] | None, kind: OutcomeKind) -> None:
        if not self.registry.logs(kind):  # excepthub does not write it: FastMCP's log stands
            _release(held)

    def _let_through(self, error: Exception) -> bool:
        resolution = self.registry.resolve(type(error), defaults=DEFAULTS)
        return resolution is not None and resolution.handler is reraise

    async def _request_failed(self, error: Exception, context: MiddlewareContext[Any]) -> MCPError:
        try:
            outcome = await self.registry.handle(error, defaults=DEFAULTS, **_values(context))
        except Exception:
            return _masked_mcp_error("Internal server error")
        value = outcome.value
        if isinstance(value, MCPErrorReply | Denial):
            return value.to_mcp_error()
        return _masked_mcp_error("Internal server error")


def _values(context: MiddlewareContext[Any]) -> dict[str, Any]:
    """What handlers may ask for by name, and the MCP request id for the log."""
    fastmcp_context = context.fastmcp_context
    return {
        "context": context,
        "fastmcp_context": fastmcp_context,
        "correlation_id": _request_id(fastmcp_context),
    }


def _request_id(fastmcp_context: FastMCPContext | None) -> str | None:
    request = fastmcp_context.request_context if fastmcp_context is not None else None
    return None if request is None else str(request.request_id)


class _Attempts:
    """One tool/resource/prompt call as `call_with_retries` runs it: on the user's exception,
    so that `Retry(on=...)` matches the user's classes, not FastMCP's wrapper."""

    __slots__ = ("call_next", "context", "frame", "registry", "unwrapped", "wrapper")

    def __init__(
        self,
        registry: ExceptionMiddleware,
        call_next: CallNext[Any, Any],
        context: MiddlewareContext[Any],
        frame: FrameType,
    ) -> None:
        self.registry = registry
        self.call_next = call_next
        self.context = context
        self.frame = frame
        self.wrapper: Exception | None = None
        self.unwrapped: Exception | None = None

    def as_raised(self, error: Exception) -> Exception:
        """What FastMCP raised for `error`: its wrapper, if it had one."""
        return self.wrapper if self.wrapper is not None and error is self.unwrapped else error

    async def __call__(self) -> Any:
        if _HELD:  # the attempt before failed, and excepthub reported it as retried
            held = _HELD.pop(self.frame, None)
            if not self.registry.logs("retried"):
                _release(held)
        try:
            return await self.call_next(self.context)
        except Exception as raised:
            error = unwrap(raised)
            if error is raised:
                raise
            self.wrapper, self.unwrapped = raised, error
        raise error  # outside the `except`: the user's exception keeps its own __context__


# FastMCP logs a component's error before middleware sees it. While an excepthub hook is on the
# stack, those records are held under the hook's frame: dropped when excepthub logs the error
# itself, released when the error is let through or settled further in.
_HELD: dict[FrameType, list[logging.LogRecord]] = {}
_ERROR_LOGGERS: Final = ("fastmcp.server.server", "fastmcp.prompts.function_prompt")
_RELEASED: Final = "excepthub_released"


class _HoldFrameworkErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, _RELEASED, False):
            return True
        frame: FrameType | None = sys._getframe(1)
        while frame is not None and frame.f_code is not _HOOK:
            frame = frame.f_back
        if frame is None:
            return True
        _HELD.setdefault(frame, []).append(record)
        return False


_HOOK: Final = ExcepthubMiddleware._component.__code__
_FILTER: Final = _HoldFrameworkErrors()


def _hold_framework_logs() -> None:
    for name in _ERROR_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def _release(records: list[logging.LogRecord] | None) -> None:
    for record in records or ():
        setattr(record, _RELEASED, True)
        logging.getLogger(record.name).handle(record)


# -- outcome -> fastmcp ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Denial:
    """A fallback value: refuse with a message the model may read (see `deny`)."""

    message: str
    code: int = INVALID_REQUEST

    def to_mcp_error(self) -> MCPError:
        """The MCP error that resources, prompts and other requests answer with."""
        return MCPError(self.code, self.message)


@dataclass(frozen=True, slots=True)
class Guided:
    """A fallback value: `value`, converted as usual, followed by `guidance` (see `guide`)."""

    value: Any
    guidance: str


@dataclass(frozen=True, slots=True)
class MCPErrorReply:
    """A fallback value: answer with a JSON-RPC error of this code (see `mcp_error`)."""

    code: int
    message: str
    data: Any = None

    def to_mcp_error(self) -> MCPError:
        """The `mcp.MCPError` that carries this reply to the client."""
        return MCPError(self.code, self.message, self.data)


def deny(message: str, *, code: int = INVALID_REQUEST) -> Denial:
    """Refuse with a safe `message` the model sees, from a fallback handler.

    For a tool, an `isError` result with `message` as its text (the model reads it and may
    try something else); for a resource, a prompt or any other request, an MCP error with
    `code` (default -32600, invalid request) and `message`.

    ```python
    @exc.add_handler(PermissionError, publish=True)
    def no_access(error: PermissionError) -> Denial:
        return deny("You may not read that file; ask the user for another path.")
    ```
    """
    return Denial(message, code)


def guide(value: Any, guidance: str) -> Guided:
    """A fallback `value` plus `guidance` for the model, added as one more text block.

    `value` is converted as any fallback value is (for a tool, by the tool's output schema;
    `deny(...)` gives an `isError` result); `guidance` follows as its own text content (a
    tool result), resource content, or user message (a prompt).

    ```python
    @exc.add_handler(RateLimited, publish=True)
    def slow_down(error: RateLimited) -> Guided:
        return guide([], "The search service is busy; wait a minute before searching again.")
    ```
    """
    return Guided(value, guidance)


def mcp_error(code: int, message: str, data: Any = None) -> MCPErrorReply:
    """Answer with a JSON-RPC error of the handler's choosing: `code`, `message`, `data`.

    For protocol-level failures (the spec's word: unknown tools, malformed requests, server
    faults); a tool's own failure is better told to the model with `deny`.

    ```python
    @exc.add_handler(QuotaExceeded, publish=True)
    def quota(error: QuotaExceeded) -> MCPErrorReply:
        return mcp_error(-32029, "Quota exceeded for this API key")
    ```
    """
    return MCPErrorReply(code, message, data)


class _Answers(Protocol):
    """How one kind of component answers: masked, a converted value, a denial, guidance."""

    def masked(self, context: MiddlewareContext[Any]) -> Any: ...

    async def convert(
        self, value: Any, context: MiddlewareContext[Any], raised: Exception
    ) -> Any: ...

    def deny(self, denial: Denial) -> Any: ...

    def guide(self, result: Any, guidance: str) -> Any: ...


async def _convert(
    answers: _Answers,
    value: Any,
    _error: BaseException,
    *,
    context: MiddlewareContext[Any],
    raised: Exception,
) -> Any:
    """A fallback value as the component's result, converted inside handling (the core's
    `convert`): a value that does not fit (a tool's output schema) counts as failed. An MCP
    error the value asks for is the answer too, raised by `_reply`. `raised` is what FastMCP
    raised for the error."""
    if isinstance(value, MCPErrorReply):
        return value.to_mcp_error()
    if isinstance(value, Denial):
        try:
            return answers.deny(value)
        except MCPError as denial:  # resources and prompts deny with an MCP error
            return denial
    if isinstance(value, Guided):
        converted = await _convert(answers, value.value, _error, context=context, raised=raised)
        if isinstance(converted, MCPError):
            return converted
        return answers.guide(converted, value.guidance)
    return await answers.convert(value, context, raised)


def _reply(answers: _Answers, outcome: Outcome, context: MiddlewareContext[Any]) -> Any:
    """What the client gets for a handled error: the converted fallback value, else masked."""
    if not outcome.published:  # a side-effect handler ran, or the value could not be sent
        return answers.masked(context)
    if isinstance(outcome.value, MCPError):
        raise outcome.value from None
    return outcome.value


def _masked_mcp_error(message: str) -> MCPError:
    return MCPError(INTERNAL_ERROR, message)


def _raise_masked(message: str) -> NoReturn:
    raise _masked_mcp_error(message) from None


def _server(context: MiddlewareContext[Any]) -> FastMCP | None:
    fastmcp_context = context.fastmcp_context
    return None if fastmcp_context is None else fastmcp_context.fastmcp


class _ToolAnswers:
    """Tools answer in the result: `isError` for failures, so the model is told."""

    def masked(self, context: MiddlewareContext[Any]) -> ToolResult:
        return _error_result(f"Error calling tool {context.message.name!r}")

    async def convert(
        self, value: Any, context: MiddlewareContext[Any], raised: Exception
    ) -> ToolResult:
        if isinstance(value, ToolResult):
            return value
        tool = await _failed_tool(context, raised)
        if tool is None:
            return ToolResult(content=[] if value is None else value)
        with warnings.catch_warnings():  # no awaits inside: the filter is this call's alone
            # pydantic warns of a value that does not fit; the check below reports it, once
            warnings.filterwarnings("ignore", message="Pydantic serializer warnings")
            result = tool.convert_result(value)  # as FastMCP converts the tool's own value
        if tool.output_schema is not None and not result.is_error:
            _check_output(tool.name, tool.output_schema, result.structured_content)
        return result

    def deny(self, denial: Denial) -> ToolResult:
        return _error_result(denial.message)

    def guide(self, result: ToolResult, guidance: str) -> ToolResult:
        return ToolResult(
            content=[*result.content, TextContent(type="text", text=guidance)],
            structured_content=result.structured_content,
            meta=result.meta,
            is_error=result.is_error,
        )


_CALL_TOOL: Final = FastMCP.call_tool.__code__


async def _failed_tool(context: MiddlewareContext[Any], raised: Exception) -> Tool | None:
    """The tool whose call failed: the one `FastMCP.call_tool` ran, else looked up by name."""
    server = _server(context)
    if server is None:
        return None
    name = context.message.name
    # FastMCP raises its wrapper in the frame of `call_tool` that holds the tool it ran: reading
    # it saves `get_tool`, which asks every provider and transform again (~100 µs). Only that
    # server's call of this name, with no version asked for, is the tool `get_tool` would find.
    frame = _raising_frame(raised)
    if frame is not None and frame.f_code is _CALL_TOOL:
        ran = frame.f_locals
        tool = ran.get("tool")
        if (
            ran.get("self") is server
            and ran.get("version") is None
            and isinstance(tool, Tool)
            and tool.name == name
        ):
            return tool
    return await server.get_tool(name)


_VALIDATORS: dict[int, tuple[dict[str, Any], Any]] = {}  # by schema identity, bounded


def _check_output(name: str, schema: dict[str, Any], structured: dict[str, Any] | None) -> None:
    """Refuse a fallback value the client would reject: it checks results against the schema."""
    cached = _VALIDATORS.get(id(schema))
    if cached is None or cached[0] is not schema:
        cached = (schema, validator_for(schema)(schema, registry=Registry()))
        if len(_VALIDATORS) >= 256:
            del _VALIDATORS[next(iter(_VALIDATORS))]
        _VALIDATORS[id(schema)] = cached
    validator = cached[1]
    if structured is None:
        problem = "no structured content"
    elif validator.is_valid(structured):
        return
    else:  # the message of the most relevant error, computed only for a value that fails
        problem = best_match(validator.iter_errors(structured)).message
    raise ValueError(f"the value does not satisfy the output schema of tool {name!r}: {problem}")


def _error_result(text: str) -> ToolResult:
    return ToolResult(content=[TextContent(type="text", text=text)], is_error=True)


class _ResourceAnswers:
    """Resources have no error result: failures are MCP errors."""

    def masked(self, context: MiddlewareContext[Any]) -> NoReturn:
        _raise_masked(f"Error reading resource {str(context.message.uri)!r}")

    async def convert(
        self, value: Any, context: MiddlewareContext[Any], raised: Exception
    ) -> ResourceResult:
        if isinstance(value, ResourceResult):
            return value
        uri = str(context.message.uri)
        server = _server(context)
        if server is not None:
            resource = await server.get_resource(uri) or await server.get_resource_template(uri)
            if resource is not None:
                return resource.convert_result(value)
        return convert_raw_to_resource_result(value, mime_type=None, meta=None)

    def deny(self, denial: Denial) -> NoReturn:
        raise denial.to_mcp_error() from None

    def guide(self, result: ResourceResult, guidance: str) -> ResourceResult:
        text = ResourceContent(guidance, mime_type="text/plain")
        return ResourceResult([*result.contents, text], meta=result.meta)


class _PromptAnswers:
    """Prompts have no error result: failures are MCP errors."""

    def masked(self, context: MiddlewareContext[Any]) -> NoReturn:
        _raise_masked(f"Error rendering prompt {context.message.name!r}")

    async def convert(
        self, value: Any, context: MiddlewareContext[Any], raised: Exception
    ) -> PromptResult:
        if isinstance(value, PromptResult):
            return value
        server = _server(context)
        prompt = None if server is None else await server.get_prompt(context.message.name)
        if prompt is not None:
            return prompt.convert_result(value)
        return PromptResult(value)

    def deny(self, denial: Denial) -> NoReturn:
        raise denial.to_mcp_error() from None

    def guide(self, result: PromptResult, guidance: str) -> PromptResult:
        messages = [*result.messages, Message(guidance)]
        return PromptResult(messages, description=result.description, meta=result.meta)


_TOOLS: Final = _ToolAnswers()
_RESOURCES: Final = _ResourceAnswers()
_PROMPTS: Final = _PromptAnswers()
