"""FastStream: an excepthub registry as a broker or router middleware.

FastStream asks a middleware factory for one object per consumed message
(`factory(msg, context=...)`) and drives it: `__aenter__`, `consume_scope` around the
subscriber call, `publish_scope` around each publish, `__aexit__` with whatever escaped.
Fallback handlers answer in `consume_scope` (their value is the reply); side-effect handlers
answer there too, and in `__aexit__` for what never reached the subscriber call (parser,
filter, inner middleware, reply publishing).
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from faststream import BaseMiddleware, PublishCommand
from faststream.exceptions import IgnoredException

import excepthub
from excepthub import Defaults, Outcome, reraise

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from faststream import ContextRepo, StreamMessage
    from faststream.types import AsyncFuncAny, BrokerMiddleware

__all__ = ["DEFAULTS", "ExceptionMiddleware", "middleware"]

# -- framework defaults ---------------------------------------------------------------------

DEFAULTS: Final = Defaults(
    "faststream",
    handlers={IgnoredException: reraise},
    publish_handlers={IgnoredException: reraise},
)
"""FastStream's control flow passes through to FastStream, as its own middleware lets it:
`SkipMessage`, `AckMessage`, `NackMessage`, `RejectMessage`, `StopConsume`, `StopApplication`.
A handler of yours for one of those classes takes precedence."""

# Marks on an exception, so that the other excepthub middlewares of the same message (a
# router's and the broker's) agree on who answered it; exceptions take no weak references.
_HANDLED_BY: Final = "_excepthub_handled_by"  # the scope that handled it; it suppresses it
_REPORTED: Final = "_excepthub_reported"  # (raw message, logged): reported unhandled already


# -- plug-in --------------------------------------------------------------------------------


class ExceptionMiddleware(excepthub.ExceptionMiddleware):
    """`faststream.ExceptionMiddleware`, with an excepthub registry behind it.

    Code written for FastStream's own works after changing the import: the constructor maps,
    `@add_handler(..., publish=True)`, sync and async handlers, FastStream's `Context()`.
    Plug it where FastStream takes middlewares: `Broker(middlewares=[...])`,
    `Router(middlewares=[...])`, `include_router(..., middlewares=[...])`,
    `add_middleware`, `insert_middleware`.

    ```python
    from excepthub_faststream import ExceptionMiddleware
    from faststream import Context
    from faststream.redis import RedisBroker

    exc_middleware = ExceptionMiddleware(handlers={KeyError: print})

    @exc_middleware.add_handler(ValueError, publish=True)
    def fallback(exc: ValueError, message=Context()) -> str:
        return "error occurred"

    broker = RedisBroker(middlewares=[exc_middleware])
    ```
    """

    def __call__(self, msg: Any | None, /, *, context: ContextRepo) -> _MessageScope:
        """FastStream's factory call: the middleware for one message (or one publish)."""
        return _MessageScope(msg, context, self, self)


class _Plug:
    """What `middleware(registry)` hands FastStream for a plain registry."""

    __slots__ = ("registry",)

    def __init__(self, registry: excepthub.ExceptionMiddleware) -> None:
        self.registry = registry

    def __call__(self, msg: Any | None, /, *, context: ContextRepo) -> _MessageScope:
        return _MessageScope(msg, context, self.registry, self)

    def __repr__(self) -> str:
        return f"excepthub_faststream.middleware({self.registry!r})"


def middleware(registry: excepthub.ExceptionMiddleware) -> BrokerMiddleware[Any]:
    """Plug an existing registry into a FastStream broker or router.

    The same registry can serve FastAPI and FastMCP at the same time; each framework layers
    its own defaults under it.

    ```python
    broker = RedisBroker(middlewares=[excepthub_faststream.middleware(exc)])
    router.add_middleware(excepthub_faststream.middleware(exc))
    ```
    """
    if not isinstance(registry, excepthub.ExceptionMiddleware):
        raise TypeError(f"middleware() takes an excepthub.ExceptionMiddleware, got {registry!r}")
    if isinstance(registry, ExceptionMiddleware):
        return registry  # already its own factory
    return _Plug(registry)


def _is_plugged(factory: object) -> bool:
    return isinstance(factory, ExceptionMiddleware | _Plug)


def _answers(
    registry: excepthub.ExceptionMiddleware, error: BaseException, *, publish: bool
) -> bool | None:
    """Whether a handler of `registry` takes `error` (or a leaf of a group): `True`; `False`
    when it lets it through (`reraise`: FastStream's control flow); `None` when none is there."""
    resolution = registry.resolve(type(error), defaults=DEFAULTS, publish=publish)
    if resolution is not None:
        return resolution.handler is not reraise
    if not isinstance(error, BaseExceptionGroup):
        return None
    answers = {_answers(registry, leaf, publish=publish) for leaf in error.exceptions}
    return True if True in answers else None if None in answers else False


# -- unit of work -> handle -----------------------------------------------------------------


class _MessageScope(BaseMiddleware[PublishCommand, Any]):
    """One consumed message (or one publish) under one registry."""

    __slots__ = ("plug", "registry")

    def __init__(
        self,
        msg: Any | None,
        context: ContextRepo,
        registry: excepthub.ExceptionMiddleware,
        plug: object,
    ) -> None:
        # BaseMiddleware.__init__ only stores these two: one call fewer per message
        self.msg = msg
        self.context = context
        self.registry = registry
        self.plug = plug

    async def __aenter__(self) -> Self:
        return self  # nothing to do on receive: no `on_receive` await

    async def consume_scope(self, call_next: AsyncFuncAny, msg: StreamMessage[Any]) -> Any:
        """Around the subscriber call (the decoder included): retries, then any handler."""
        try:
            if self.registry.retry is None:
                return await call_next(msg)
            return await self.registry.call_with_retries(
                partial(call_next, msg), message=msg, correlation_id=msg.correlation_id
            )
        except Exception as error:
            if not self._takes(error):
                raise  # not this registry's: an outer one, or `__aexit__`, reports it
            try:
                outcome = await self._handle(error, msg, publish=True)
            except BaseException as raised:
                self._note(error, raised)
                raise
            return _reply(outcome, error, self)

    async def publish_scope(
        self, call_next: Callable[[PublishCommand], Awaitable[Any]], cmd: PublishCommand
    ) -> Any:
        return await call_next(cmd)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: TracebackType | None = None,
    ) -> bool | None:
        if exc_val is None:
            return None
        return await self._processing_failed(exc_val)

    def _takes(self, error: Exception) -> bool:
        """Whether this registry answers an error of the subscriber call."""
        handled_by = getattr(error, _HANDLED_BY, None)
        if handled_by is not None and handled_by.msg is self.msg:
            return False  # an inner router's registry handled it; its scope suppresses it
        return _answers(self.registry, error, publish=True) is True

    async def _processing_failed(self, error: BaseException) -> bool:
        """What escaped the message's processing: parser, filter, subscriber, inner middleware
        and reply-publishing errors. Only side-effect handlers: there is no reply to replace."""
        handled_by = getattr(error, _HANDLED_BY, None)
        if handled_by is self:
            delattr(error, _HANDLED_BY)
            return True  # handled in consume_scope: acked, nothing published
        if handled_by is not None and handled_by.msg is self.msg:
            return False  # an outer registry handled it; its scope suppresses it
        if not isinstance(error, Exception):
            return False  # cancellation, KeyboardInterrupt: never handled
        answer = _answers(self.registry, error, publish=False)
        if answer is False:
            return False  # let through, as if excepthub were not there (FastStream's control flow)
        if answer is None:
            reported = getattr(error, _REPORTED, None)
            if reported is not None and reported[0] is self.msg:
                return False  # reported unhandled once already
            if self._outer_plugged():
                return False  # the outer excepthub middleware handles or reports it
        context = self.context
        message = context.get_local("message")
        scope: AbstractContextManager[Any] = nullcontext()
        if message is None:  # a parser error: the raw message, as FastStream's Context() sees it
            message = self.msg
            scope = context.scope("message", message)
        try:
            with scope:
                await self._handle(error, message, publish=False)
        except BaseException as raised:
            self._note(error, raised)
            if raised is error:
                return False
            raise
        return True  # handled: acked (whatever the ack policy), nothing published

    def _handle(self, error: Exception, message: Any, *, publish: bool) -> Awaitable[Outcome]:
        context = self.context
        return self.registry.handle(
            error,
            defaults=DEFAULTS,
            publish=publish,
            message=message,
            correlation_id=getattr(message, "correlation_id", None),
            context=context,
            context__=context,  # what FastStream's own `Context()` fields read
        )

    def _outer_plugged(self) -> bool:
        """Whether an excepthub middleware outside this one sees the error next."""
        subscriber = self.context.get_local("handler_")
        for factory in getattr(subscriber, "_broker_middlewares", ()):
            if factory is self.plug:
                return False
            if _is_plugged(factory):
                return True
        return False

    def _note(self, error: BaseException, raised: BaseException) -> None:
        """After `handle` raised: when the core reported the error (or its leaves) unhandled,
        say so on it, for the other middlewares of this message and for FastStream's log."""
        if raised is not error and not isinstance(raised, BaseExceptionGroup):
            return  # a handler failed: its own exception goes on, not reported yet
        logged = self.registry.logs("unhandled")
        setattr(raised, _REPORTED, (self.msg, logged))
        logger = self.context.get_local("logger")
        if logged and isinstance(logger, logging.Logger):
            logger.addFilter(_LOGGED_ALREADY)  # once per logger: `addFilter` skips a duplicate


class _LoggedAlready(logging.Filter):
    """Drops FastStream's own record of an error that excepthub has logged as unhandled."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        reported = getattr(error, _REPORTED, None)
        if reported is not None and reported[1] and record.levelno >= logging.ERROR:
            delattr(error, _REPORTED)  # FastStream logs it once: drop that one record only
            return False
        return True


_LOGGED_ALREADY: Final = _LoggedAlready("excepthub")


# -- outcome -> faststream ------------------------------------------------------------------


def _reply(outcome: Outcome, error: Exception, scope: _MessageScope) -> Any:
    """A fallback value is the subscriber's result: FastStream publishes it to `reply_to` and
    every `@publisher`, with the message's correlation id. A handled error goes on, marked, for
    the scope's `__aexit__` to suppress: the message is acked and nothing is published."""
    if outcome.published:
        return outcome.value
    setattr(error, _HANDLED_BY, scope)
    raise error
