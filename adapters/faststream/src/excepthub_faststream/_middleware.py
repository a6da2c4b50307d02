"""FastStream: an excepthub registry as a broker or router middleware.

FastStream asks a middleware factory for one object per consumed message
(`factory(msg, context=...)`) and drives it: `__aenter__`, `consume_scope` around the
subscriber call, `publish_scope` around each publish, `__aexit__` with whatever escaped.
Fallback handlers answer in `consume_scope` (their value is the reply); side-effect handlers
answer there too, and in `__aexit__` for what never reached the subscriber call (parser,
filter, inner middleware, reply publishing). With a router's middleware and a broker's, each
registry is asked in turn, innermost first. What none of them takes goes on to FastStream as
if excepthub were not there: the same ack policy, FastStream's own log record, once.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from faststream import BaseMiddleware, PublishCommand
from faststream.exceptions import IgnoredException

import excepthub
from excepthub import Defaults, Outcome, reraise

from ._redelivery import RedeliveryUnsupported, call_with_redelivery, redelivery_for

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from faststream import ContextRepo, StreamMessage
    from faststream.types import AsyncFuncAny, BrokerMiddleware

__all__ = ["DEFAULTS", "ExcepthubMiddleware", "ExceptionMiddleware", "middleware"]

# -- framework defaults ---------------------------------------------------------------------

# The context values handlers can ask for by name (FastStream's own `Context()` reads its own).
_SUPPLIES: Final = ("message", "correlation_id", "context")

DEFAULTS: Final = Defaults(
    "faststream",
    supplies=_SUPPLIES,
    handlers={IgnoredException: reraise},
    publish_handlers={IgnoredException: reraise},
    logs_unhandled=True,
)
"""FastStream's control flow passes through to FastStream, as its own middleware lets it:
`SkipMessage`, `AckMessage`, `NackMessage`, `RejectMessage`, `StopConsume`, `StopApplication`.
A handler of yours for one of those classes takes precedence. What no handler takes goes on to
FastStream, which logs it once (excepthub counts it and shows it to hooks, without a record)."""

# Marks on an exception, so that the other excepthub middlewares of the same message (a
# router's and the broker's) know who had it; exceptions take no weak references.
_HANDLED_BY: Final = "_excepthub_handled_by"  # the scope that handled it; it suppresses it
_ASKED: Final = "_excepthub_asked"  # (message, [registries that took nothing of it])


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

    serves = (DEFAULTS,)  # a FastStream middleware from the start: plugged in when built

    def __call__(self, msg: Any | None, /, *, context: ContextRepo) -> _MessageScope:
        """FastStream's factory call: the middleware for one message (or one publish)."""
        return _MessageScope(msg, context, self)


class ExcepthubMiddleware:
    """The middleware factory FastStream takes, for a plain `excepthub.ExceptionMiddleware`:
    what `middleware(registry)` returns (the drop-in `ExceptionMiddleware` is its own)."""

    __slots__ = ("registry",)

    def __init__(self, registry: excepthub.ExceptionMiddleware) -> None:
        self.registry = registry

    def __call__(self, msg: Any | None, /, *, context: ContextRepo) -> _MessageScope:
        """FastStream's factory call: the middleware for one message (or one publish)."""
        return _MessageScope(msg, context, self.registry)

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
    registry.plug_in(DEFAULTS)  # now, so that a handler nothing can fill is refused here
    if isinstance(registry, ExceptionMiddleware):
        return registry  # already its own factory
    return ExcepthubMiddleware(registry)


# -- unit of work -> handle -----------------------------------------------------------------


class _MessageScope(BaseMiddleware[PublishCommand, Any]):
    """One consumed message (or one publish) under one registry."""

    __slots__ = ("registry",)

    def __init__(
        self, msg: Any | None, context: ContextRepo, registry: excepthub.ExceptionMiddleware
    ) -> None:
        # BaseMiddleware.__init__ only stores these two: one call fewer per message
        self.msg = msg
        self.context = context
        self.registry = registry

    async def __aenter__(self) -> Self:
        return self  # nothing to do on receive: no `on_receive` await

    async def consume_scope(self, call_next: AsyncFuncAny, msg: StreamMessage[Any]) -> Any:
        """Around the subscriber call (the decoder included): retries, then any handler."""
        retry = self.registry.retry
        broker = None
        if retry is not None and retry.through_broker:
            try:
                broker = redelivery_for(msg, self.context)
            except RedeliveryUnsupported as error:
                self._mark_had(error)  # a set-up error, for FastStream to log: no handler hides it
                raise
        try:
            if retry is None:
                return await call_next(msg)
            if broker is not None:
                return await call_with_redelivery(self.registry, broker, call_next, msg)
            return await self.registry.call_with_retries(
                partial(call_next, msg), message=msg, correlation_id=msg.correlation_id
            )
        except Exception as error:
            handled_by = getattr(error, _HANDLED_BY, None)
            if handled_by is not None and handled_by.msg is self.msg:
                raise  # an inner router's registry handled it; its scope suppresses it
            if self._had(error):
                raise  # the same registry, plugged into the router too, took nothing of it
            context = self.context
            try:  # `_handle`'s call, spelled out: this is the common error path
                outcome = await self.registry.handle(
                    error,
                    defaults=DEFAULTS,
                    message=msg,
                    correlation_id=msg.correlation_id,
                    context=context,
                    context__=context,
                )
            except BaseException as raised:
                self._asked(error, raised)
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

    async def _processing_failed(self, error: BaseException) -> bool:
        """What escaped the message's processing: parser, filter, subscriber, inner middleware
        and reply-publishing errors. Only side-effect handlers: there is no reply to replace.
        `False` leaves the error to FastStream, exactly as if excepthub were not there."""
        handled_by = getattr(error, _HANDLED_BY, None)
        if handled_by is self:
            delattr(error, _HANDLED_BY)
            return True  # handled in consume_scope: acked, nothing published
        if handled_by is not None and handled_by.msg is self.msg:
            return False  # an outer registry handled it; its scope suppresses it
        if not isinstance(error, Exception) or self._had(error):
            return False  # cancellation is never handled; nor twice what this registry had
        try:
            with self._message_scope() as message:
                await self._handle(error, message)
        except BaseException as raised:
            if raised is not error:
                raise  # a handler failed, or steered the ack (NackMessage): its exception
            self._mark_had(error)
            return False  # nothing took it: FastStream logs it and applies the ack policy
        return True  # handled: acked (whatever the ack policy), nothing published

    def _handle(self, error: Exception, message: Any) -> Awaitable[Outcome]:
        context = self.context
        return self.registry.handle(
            error,
            defaults=DEFAULTS,
            publish=False,
            message=message,
            correlation_id=getattr(message, "correlation_id", None),
            context=context,
            context__=context,  # what FastStream's own `Context()` fields read
        )

    def _asked(self, error: Exception, raised: BaseException) -> None:
        """After consume_scope's ask raised: `raised` is `error` (or what is left of a group)
        when no handler took it, and neither `__aexit__` nor the same registry plugged further
        out asks again (it counts once)."""
        if raised is not error and not isinstance(raised, BaseExceptionGroup):
            return  # a handler failed: its own exception goes on, to be asked about in turn
        resolution = self.registry.resolve(raised, defaults=DEFAULTS)
        if resolution is not None and resolution.handler is reraise and resolution.publish:
            return  # passed by as FastStream's control flow: a side-effect handler may take it
        self._mark_had(raised)

    def _had(self, error: BaseException) -> bool:
        """Whether this registry took nothing of `error` for this message already."""
        asked = getattr(error, _ASKED, None)
        return asked is not None and asked[0] is self.msg and self.registry in asked[1]

    def _mark_had(self, error: BaseException) -> None:
        asked = getattr(error, _ASKED, None)
        if asked is not None and asked[0] is self.msg:
            asked[1].append(self.registry)
        else:
            setattr(error, _ASKED, (self.msg, [self.registry]))

    @contextmanager
    def _message_scope(self) -> Iterator[Any]:
        """The message handlers see: the `StreamMessage`, or the raw one for a parser error
        (in FastStream's context too, as FastStream's own middleware sets it)."""
        message = self.context.get_local("message")
        if message is not None:
            yield message
        else:
            with self.context.scope("message", self.msg):
                yield self.msg


# -- outcome -> faststream ------------------------------------------------------------------


def _reply(outcome: Outcome, error: Exception, scope: _MessageScope) -> Any:
    """A fallback value is the subscriber's result: FastStream publishes it to `reply_to` and
    every `@publisher`, with the message's correlation id. A handled error goes on, marked, for
    the scope's `__aexit__` to suppress: the message is acked and nothing is published."""
    if outcome.published:
        return outcome.value
    setattr(error, _HANDLED_BY, scope)
    raise error
