"""The FastMCP adapter: tool, resource and prompt errors go to an excepthub registry.

A FastMCP `Middleware` wraps each call in one `try`. An error is unwrapped from FastMCP's
`ToolError`/`ResourceError`/`PromptError` wrapper and handed to the registry. What a handler
takes becomes what an MCP client should receive: a tool result, resource contents, prompt
messages, or FastMCP's own masked error. What no handler takes goes on as FastMCP would send
it with `mask_error_details=True`: its wrapper (less the exception's text), or the exception
itself where the MCP server answers it without its text.
"""

from __future__ import annotations

import logging
import sys
import warnings
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
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
from fastmcp.resources import ResourceContent, ResourceResult
from fastmcp.resources.base import convert_raw_to_resource_result
from fastmcp.server.context import Context as FastMCPContext
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.server.server import FastMCP
from fastmcp.tools import Tool, ToolResult
from fastmcp.tools import function_tool as _function_tool
from fastmcp.utilities.exceptions import get_http_status_code, is_timeout_error
from jsonschema.exceptions import best_match  # type: ignore[import-untyped]
from jsonschema.validators import validator_for  # type: ignore[import-untyped]
from mcp import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_REQUEST, TextContent
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError as PydanticValidationError
from referencing import Registry

from excepthub import (
    Defaults,
    ExceptionMiddleware,
    Outcome,
    OutcomeKind,
    RedeliveryUnsupported,
    reraise,
)

from ._gateway import (
    UpstreamError,
    masked_request_error,
    may_be_upstream,
    upstream_failure,
    upstream_tool_error,
)

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


try:  # how FastMCP records an exception on its request span (fastmcp.server.telemetry)
    from fastmcp.server.telemetry import record_span_exception as _record_span_exception
    from opentelemetry.trace import get_current_span
except ImportError:  # a FastMCP release without it: the span reads as FastMCP leaves it
    _record_span_exception = None  # type: ignore[assignment]

# -- framework defaults ---------------------------------------------------------------------

_FASTMCP_ANSWERS: Final = (FastMCPError, MCPError, NotFoundError, DisabledError)
"""Exceptions FastMCP answers on purpose, with a message meant for the client: `ToolError`
(and every `FastMCPError`) becomes an `isError` result or an MCP error with its message,
`MCPError` keeps its code, `NotFoundError`/`DisabledError` become "Unknown tool" and the like."""
_LET_THROUGH: Final = {_FASTMCP_ANSWERS: reraise}

DEFAULTS: Final = Defaults(
    "fastmcp",
    supplies=("context", "fastmcp_context", "correlation_id"),  # see `_values`
    handlers=_LET_THROUGH,
    publish_handlers=_LET_THROUGH,
    logs_unhandled=True,
)
"""FastMCP's own exceptions keep their meaning: they pass through excepthub to FastMCP, which
answers them as it always does. A broad user handler such as `Exception` does not take them
(MRO-nearest wins); a fallback handler of yours for one of them, or a subclass, does. An error
no handler takes is logged where FastMCP (or the MCP server) logs it, not by excepthub too."""

# The same defaults for an error excepthub has to mask to let it go on: no one else logs it.
_MASKING: Final = Defaults(
    "fastmcp (masked)",
    framework="fastmcp",
    supplies=DEFAULTS.supplies,
    handlers=_LET_THROUGH,
    publish_handlers=_LET_THROUGH,
)

# What the MCP server answers without the exception's text when it escapes a request:
# FastMCP's own answers, and pydantic errors (-32602 "Invalid request parameters").
_SERVER_ANSWERS: Final = (*_FASTMCP_ANSWERS, PydanticValidationError)

# What FastMCP says when it puts a wrapper around a user's exception (`raise X(...) from e`):
# the text its clients see, `<prefix> 'name'`, `<prefix> 'name': <the exception>`, or an
# upstream failure's. Told apart by that public text, never by FastMCP's frames: a `ToolError`
# a tool raises itself says what its author wrote.
_WRAPPER_PREFIX: Final[dict[type[Exception], str]] = {
    ToolError: "Error calling tool ",
    ResourceError: "Error reading resource ",
    PromptError: "Error rendering prompt ",
}
_UPSTREAM_TEXTS: Final = frozenset(
    {"Rate limited by upstream API, please retry later", "Upstream request timed out, please retry"}
)
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
        if type(error) is not _BODY_ERROR and not _wraps(error, cause):
            break
        error = cause
    return error


def _wraps(error: Exception, cause: Exception) -> bool:
    """Whether `error` is the wrapper FastMCP raised around `cause`, read off its text."""
    kind = type(error)
    prefix = _WRAPPER_PREFIX.get(kind)
    if prefix is None:
        return False
    text = str(error)
    if text in _UPSTREAM_TEXTS:
        return kind is not PromptError
    if not text.startswith(prefix):
        return False
    name = text[len(prefix) :]  # `'name'`, or `'name': <cause>`
    if not _is_quoted(name):
        try:
            detail = f": {cause}"
        except Exception:  # a cause whose str() fails: FastMCP could not have quoted it
            return False
        name = name.removesuffix(detail) if name.endswith(detail) else ""
    return _is_quoted(name)


def _is_quoted(name: str) -> bool:
    return len(name) >= 2 and name[0] in "'\"" and name[-1] == name[0]  # formatted with `!r`


def _answered_without_its_text(error: Exception, context: MiddlewareContext[Any]) -> bool:
    """Whether `error`, let go on as it is, reaches no client with its text: the MCP server
    answers it (FastMCP's exceptions, pydantic errors), or masks it itself (the 2026-07-28
    era answers -32603 "Internal server error"), or the caller is in-process and gets it
    raised. Only the handshake era sends what escapes as code 0 with `str(error)`."""
    if isinstance(error, _SERVER_ANSWERS):
        return True
    fastmcp_context = context.fastmcp_context
    request = None if fastmcp_context is None else fastmcp_context.request_context
    return request is None or request.protocol_version in MODERN_PROTOCOL_VERSIONS


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


# The methods whose typed hook below answers their errors; `on_request` leaves them to it.
_COMPONENT_METHODS: Final = frozenset({"tools/call", "resources/read", "prompts/get"})


class ExcepthubMiddleware(Middleware):
    """A FastMCP `Middleware` that hands errors to an excepthub registry.

    Tool calls, resource reads and prompt renders: the error the user's code raised goes to
    its handler (retried first when the registry's `retry` says it is transient); a fallback
    value becomes the tool result, resource contents or prompt messages; a side-effect
    handler's error becomes FastMCP's masked error. Every other request: a handled error
    becomes a masked MCP error. An error no handler takes goes on as FastMCP sends it with
    `mask_error_details=True`.
    """

    def __init__(self, registry: ExceptionMiddleware) -> None:
        if not isinstance(registry, ExceptionMiddleware):
            raise TypeError(
                f"middleware() takes an excepthub.ExceptionMiddleware, got {registry!r}"
            )
        if registry.retry is not None and registry.retry.through_broker:
            raise RedeliveryUnsupported(
                "excepthub_fastmcp.middleware(): Retry(through_broker=True) gives a failed "
                "message back to its broker, and a tool, resource or prompt call has none: give "
                "FastMCP a registry whose policy has through_broker=False, e.g. dataclasses."
                "replace(policy, through_broker=False), to retry in the process"
            )
        self.registry = registry
        registry.plug_in(DEFAULTS)  # now, so that a handler nothing can fill is refused here
        _hold_framework_logs()

    async def on_call_tool(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        """Run the tool call; a handled error becomes a `ToolResult` or FastMCP's `ToolError`."""
        return await self._component(context, call_next, _TOOLS)

    async def on_read_resource(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        """Read the resource; a handled error becomes a `ResourceResult` or an error."""
        return await self._component(context, call_next, _RESOURCES)

    async def on_get_prompt(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        """Render the prompt; a handled error becomes a `PromptResult` or an error."""
        return await self._component(context, call_next, _PROMPTS)

    async def on_request(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        """Every other request (`tools/list`, ...): a handled error becomes a masked MCP error."""
        if context.method in _COMPONENT_METHODS:
            return await call_next(context)
        try:
            return await call_next(context)
        except Exception as error:
            answer = await self._request_failed(error, context)
            if answer is error:
                raise
            raise answer from None

    # -- unit of work -> handle -------------------------------------------------------------

    async def _component(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any], answers: _Answers
    ) -> Any:
        held: list[logging.LogRecord] = []
        holding = _HOLDING.set((self.registry, held))  # FastMCP's records, until settled
        attempts = None
        try:
            try:
                if self.registry.retry is None:
                    result = await call_next(context)
                else:
                    attempts = _Attempts(self.registry, call_next, context, held)
                    result = await self.registry.call_with_retries(attempts, **_values(context))
            finally:
                _HOLDING.reset(holding)  # what handlers log is theirs, never held
        except Exception as raised:
            if attempts is not None:
                if not attempts.ran:  # refused before the call (RedeliveryUnsupported): a set-up
                    raise  # error, for FastMCP to log and answer; no handler hides it
                raised = attempts.as_raised(raised)
            return await self._recover(raised, context, answers, held)
        except BaseException:  # cancelled: FastMCP's records stand
            _release(held)
            raise
        if answers is _TOOLS and getattr(result, "is_error", False) is True:
            upstream = await upstream_tool_error(result, context)  # a proxied tool's isError
            if upstream is not None:
                return await self._recover(upstream, context, answers, held, upstream)
        _release(held)  # an inner middleware settled an error FastMCP had logged: its log stands
        return result

    async def _recover(
        self,
        raised: Exception,
        context: MiddlewareContext[Any],
        answers: _Answers,
        held: list[logging.LogRecord],
        upstream: UpstreamError | None = None,
    ) -> Any:
        error = unwrap(raised)
        if upstream is None and (pending := upstream_failure(error, context)) is not None:
            upstream = await pending
        if upstream is not None:  # a proxy's upstream failed: masked, and logged by excepthub
            if error is raised:  # no FastMCP wrapper around it: the upstream error stands in
                raised = upstream
            error = upstream
        masking = upstream is not None or (
            error is raised and not _answered_without_its_text(error, context)
        )
        defaults = _MASKING if masking else DEFAULTS
        convert = partial(_convert, answers, context=context, raised=raised)
        try:
            outcome = await self.registry.handle(
                error, defaults=defaults, convert=convert, **_values(context)
            )
        except Exception as escaped:
            if escaped is not error and isinstance(escaped, _FASTMCP_ANSWERS):
                self._settle(held, "handled")  # a handler answers with FastMCP's own error
                raise
            if escaped is not error:  # a handler failed: excepthub logged both errors
                self._settle(held, "failed")
                if error is raised:  # FastMCP's span never saw it
                    _record_on_span(error)
                _raise(answers.masked(raised, error, context))
            if masking:  # it would reach the client with its text
                self._settle(held, "unhandled")
                if upstream is not None:  # the component failed, as FastMCP says it masked
                    _raise(answers.masked(raised, error, context))
                raise _masked_mcp_error() from None
            _release(held)  # excepthub stood aside: FastMCP's own log is the one
            if error is raised:  # the MCP server answers it, or an in-process caller gets it
                raise
            _raise(answers.masked(raised, error, context))
        self._settle(held, "published" if outcome.published else "handled")
        if not outcome.published and error is raised:  # FastMCP's span never saw it
            _record_on_span(error)
        return _reply(answers, outcome, context, raised)

    def _settle(self, held: list[logging.LogRecord], kind: OutcomeKind) -> None:
        if not self.registry.logs(kind):  # excepthub does not write it: FastMCP's log stands
            _release(held)

    async def _request_failed(self, error: Exception, context: MiddlewareContext[Any]) -> Exception:
        pending = upstream_failure(error, context)
        if pending is not None and (upstream := await pending) is not None:  # a proxy's listing
            error = upstream
        masking = isinstance(error, UpstreamError) or not _answered_without_its_text(error, context)
        defaults = _MASKING if masking else DEFAULTS
        try:
            outcome = await self.registry.handle(error, defaults=defaults, **_values(context))
        except Exception as escaped:
            if escaped is error and not masking:
                return error  # goes on as without excepthub
            if escaped is not error and isinstance(escaped, _FASTMCP_ANSWERS):
                return escaped  # a handler answers with FastMCP's own error, on purpose
            return masked_request_error(error) or _masked_mcp_error()
        value = outcome.value
        if isinstance(value, MCPErrorReply | Denial):
            return value.to_mcp_error()
        return masked_request_error(error) or _masked_mcp_error()


def _record_on_span(error: Exception) -> None:
    """Record an error excepthub answers masked on FastMCP's request span, as FastMCP records
    one that reaches it (`error.type`, the exception event, status ERROR): a tool's masked
    `isError` result passes no exception by the span."""
    if _record_span_exception is not None:
        _record_span_exception(get_current_span(), error)


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

    __slots__ = ("call_next", "context", "held", "ran", "registry", "unwrapped", "wrapper")

    def __init__(
        self,
        registry: ExceptionMiddleware,
        call_next: CallNext[Any, Any],
        context: MiddlewareContext[Any],
        held: list[logging.LogRecord],
    ) -> None:
        self.registry = registry
        self.call_next = call_next
        self.context = context
        self.held = held
        self.wrapper: Exception | None = None
        self.unwrapped: Exception | None = None
        self.ran = False

    def as_raised(self, error: Exception) -> Exception:
        """What FastMCP raised for `error`: its wrapper, if it had one."""
        return self.wrapper if self.wrapper is not None and error is self.unwrapped else error

    async def __call__(self) -> Any:
        self.ran = True
        if self.held:  # the attempt before failed, and excepthub reported it as retried
            records = self.held[:]
            self.held.clear()
            if not self.registry.logs("retried"):
                _release(records)
        try:
            return await self.call_next(self.context)
        except Exception as raised:
            error = unwrap(raised)
            if error is raised:
                raise
            self.wrapper, self.unwrapped = raised, error
        raise error  # outside the `except`: the user's exception keeps its own __context__


# FastMCP logs a component's error, in its `except` block, before middleware sees it. While a
# call runs, the records of an error the registry may report itself are held in the call's
# context: dropped when excepthub logs the error, released when it stands aside after all. The
# records of an error no handler takes pass at once, in FastMCP's order.
_HOLDING: ContextVar[tuple[ExceptionMiddleware, list[logging.LogRecord]] | None] = ContextVar(
    "excepthub_fastmcp_holding", default=None
)
_ERROR_LOGGERS: Final = ("fastmcp.server.server", "fastmcp.prompts.function_prompt")
_RELEASED: Final = "excepthub_released"


class _HoldFrameworkErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, _RELEASED, False):
            return True
        holding = _HOLDING.get()
        if holding is None:
            return True
        registry, held = holding
        if not _may_report(registry, sys.exception()):  # the error FastMCP is logging
            return True
        held.append(record)
        return False


def _may_report(registry: ExceptionMiddleware, error: BaseException | None) -> bool:
    """Whether excepthub may write the record of `error` itself: a handler of the user's takes
    it, or it is retried. Groups are taken apart only later: their records are held."""
    if not isinstance(error, Exception) or isinstance(error, BaseExceptionGroup):
        return True
    error = unwrap(error)
    if may_be_upstream(error):  # a proxy's upstream failure is excepthub's to log: held, until told
        return True
    if registry.retry is not None and registry.retry.is_transient(error):
        return True
    resolution = registry.resolve(error, defaults=DEFAULTS)  # its conditions evaluated
    return resolution is not None and resolution.handler is not reraise


_FILTER: Final = _HoldFrameworkErrors()


def _hold_framework_logs() -> None:
    for name in _ERROR_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def _release(records: list[logging.LogRecord]) -> None:
    for record in records:
        setattr(record, _RELEASED, True)
        logging.getLogger(record.name).handle(record)
    records.clear()


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

    def masked(
        self, raised: Exception, error: Exception, context: MiddlewareContext[Any]
    ) -> FastMCPError: ...

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


def _reply(
    answers: _Answers, outcome: Outcome, context: MiddlewareContext[Any], raised: Exception
) -> Any:
    """What the client gets for a handled error: the fallback value, converted inside handling;
    FastMCP's masked error when a side-effect handler ran or the value could not be sent.
    `raised` is what FastMCP raised for the error."""
    error = outcome.error
    assert isinstance(error, Exception)
    if not outcome.published:
        _raise(answers.masked(raised, error, context))
    if isinstance(outcome.value, MCPError):  # an MCP error the value asked for
        raise outcome.value from None
    return outcome.value


def _masked_mcp_error() -> MCPError:
    """What the 2026-07-28 era answers for an exception that escapes a request."""
    return MCPError(INTERNAL_ERROR, "Internal server error")


_RATE_LIMITED: Final = "Rate limited by upstream API, please retry later"
_TIMED_OUT: Final = "Upstream request timed out, please retry"


def _masked(
    kind: type[FastMCPError], raised: Exception, error: Exception, masked_text: str
) -> FastMCPError:
    """FastMCP's own error for `error` as it reads with `mask_error_details=True`.

    `raised` is FastMCP's wrapper when it put one around `error`: the same object when its text
    is already masked, else a copy without the exception's text FastMCP appended. Otherwise
    FastMCP's text for the kind of failure: its safe texts for an upstream HTTP 429 and a
    timeout, which it sends even when masking, or `masked_text`.
    """
    cause: BaseException | None = error
    if raised is not error:
        cause = raised.__cause__
        text, detail = str(raised), f": {cause}"
        if not text.endswith(detail) and isinstance(raised, kind):
            return raised
        masked_text = text.removesuffix(detail)
    elif get_http_status_code(error) == 429:
        masked_text = _RATE_LIMITED
    elif is_timeout_error(error):
        masked_text = _TIMED_OUT
    masked = kind(masked_text)
    masked.__cause__ = cause
    return masked


def _raise(answer: FastMCPError) -> NoReturn:
    """Raise FastMCP's error for a failure, chained to the exception it stands for."""
    raise answer from answer.__cause__


def _server(context: MiddlewareContext[Any]) -> FastMCP | None:
    fastmcp_context = context.fastmcp_context
    return None if fastmcp_context is None else fastmcp_context.fastmcp


class _ToolAnswers:
    """Tools answer in the result: `isError` for failures, so the model is told."""

    def masked(
        self, raised: Exception, error: Exception, context: MiddlewareContext[Any]
    ) -> FastMCPError:
        return _masked(ToolError, raised, error, f"Error calling tool {context.message.name!r}")

    async def convert(
        self, value: Any, context: MiddlewareContext[Any], raised: Exception
    ) -> ToolResult:
        if isinstance(value, ToolResult):
            return value
        tool = await _failed_tool(context)
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


async def _failed_tool(context: MiddlewareContext[Any]) -> Tool | None:
    """The tool the client named, as FastMCP finds it for the call (its transforms applied)."""
    server = _server(context)
    return None if server is None else await server.get_tool(context.message.name)


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

    def masked(
        self, raised: Exception, error: Exception, context: MiddlewareContext[Any]
    ) -> FastMCPError:
        uri = str(context.message.uri)
        return _masked(ResourceError, raised, error, f"Error reading resource {uri!r}")

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

    def masked(
        self, raised: Exception, error: Exception, context: MiddlewareContext[Any]
    ) -> FastMCPError:
        name = context.message.name
        return _masked(PromptError, raised, error, f"Error rendering prompt {name!r}")

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
