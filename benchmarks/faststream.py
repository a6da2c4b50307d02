"""FastStream: excepthub's middleware against `faststream.ExceptionMiddleware`, per message.

Most cases drive the middleware object exactly as FastStream's subscriber drives it
(`process_message` in faststream/_internal/endpoint/subscriber/usecase.py): the factory call
per message, `__aenter__`, `consume_scope` around the subscriber call, `__aexit__` with
whatever escaped; the message sits in FastStream's context, as the subscriber puts it there.
The floor is the same subscriber call and the same handler in a bare try/except: a
middleware's own cost is its time above the floor. The last cases go end to end through
`TestRedisBroker` (parser, decoder, middlewares, the reply), with brokers built alike; the last
one compares with a broker that has no exception middleware, its subscriber catching the error
itself.

Both sides get the same handler function (where the two frameworks spell a feature
differently, the same body with each one's spelling). Handlers and dependencies are async: a
sync one goes to a worker thread on both sides. Logging is off (`logger=None` on the
registries and on the brokers), so that we measure the handling, not log I/O.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from faststream import Context, ContextRepo, Depends, StreamMessage
from faststream import ExceptionMiddleware as FastStreamMiddleware
from faststream.redis import RedisBroker, TestRedisBroker

import excepthub
import excepthub_faststream
from excepthub_faststream import ExceptionMiddleware

from ._timing import Case, Work

GROUP = "faststream"
BASELINE = "faststream.ExceptionMiddleware"


class OrderRejected(ValueError):
    pass


_SIDE_EFFECTS = itertools.count()  # what a side-effect handler does: cheap, no memory growth


async def ok(msg: Any) -> str:
    return "ok"


async def fails(msg: Any) -> str:
    raise OrderRejected("sku-1")


async def fallback(exc: OrderRejected) -> str:
    return "fallback"


async def record(exc: OrderRejected) -> None:
    next(_SIDE_EFFECTS)


async def by_message(exc: OrderRejected, message: StreamMessage[Any] = Context()) -> str:
    return str(message.correlation_id)


async def by_faststream_path(
    exc: OrderRejected,
    correlation_id: str = Context("message.correlation_id"),
) -> str:
    return correlation_id


async def by_excepthub_path(
    exc: OrderRejected,
    correlation_id: str = excepthub.Context("message.correlation_id"),
) -> str:
    return correlation_id


async def tenant() -> str:
    return "acme"


async def by_depends(exc: OrderRejected, who: str = Depends(tenant)) -> str:
    return who


def driven(factory: Any, context: ContextRepo, msg: StreamMessage[Any], call: Any) -> Work:
    """One message through a middleware factory, as FastStream's subscriber drives it."""

    async def one() -> object:
        middleware = factory(msg, context=context)
        async with middleware:
            return await middleware.consume_scope(call, msg)

    return one


def floor(msg: StreamMessage[Any], call: Any, answer: Callable[..., Awaitable[Any]]) -> Work:
    """The subscriber call in a bare try/except, the handler called by hand."""

    async def one() -> object:
        try:
            return await call(msg)
        except OrderRejected as error:
            return await answer(error)

    return one


def cases() -> list[Case]:
    context = ContextRepo()
    msg = StreamMessage(raw_message=None, body=b"sku-1", correlation_id="c-1")
    # FastStream's subscriber puts the message in its context before the middlewares run; this
    # task is the one that runs the cases, so the value stays for all of them
    context.set_local("message", msg)

    def case(
        name: str,
        call: Any,
        answer: Callable[..., Awaitable[Any]],
        baseline: dict[str, Any],
        ours: dict[str, Any] | None = None,
        *,
        batch: int,
        target: float | None = None,
        own_target: float | None = None,
        check: object = None,
    ) -> Case:
        theirs = driven(FastStreamMiddleware(**baseline), context, msg, call)
        mine = driven(ExceptionMiddleware(**(ours or baseline), logger=None), context, msg, call)
        return Case(
            GROUP,
            name,
            BASELINE,
            theirs,
            mine,
            batch,
            floor=floor(msg, call, answer),
            target=target,
            own_target=own_target,
            setup=_same_answer(check, theirs, mine),
        )

    def pub(handler: Callable[..., Any]) -> dict[str, Any]:
        return {"publish_handlers": {OrderRejected: handler}}

    async def answer_by_message(error: OrderRejected) -> str:
        return await by_message(error, message=msg)

    async def answer_by_path(error: OrderRejected) -> str:
        return await by_excepthub_path(error, correlation_id=msg.correlation_id)

    async def answer_by_depends(error: OrderRejected) -> str:
        return await by_depends(error, who=await tenant())

    return [
        case("happy path", ok, fallback, pub(fallback), batch=4_000, target=1.0, check="ok"),
        case(
            "error, async fallback",
            fails,
            fallback,
            pub(fallback),
            batch=1_000,
            own_target=1 / 3,
            check="fallback",
        ),
        case(
            "error, async side-effect handler",
            fails,
            record,
            {"handlers": {OrderRejected: record}},
            batch=1_000,
            check=None,
        ),
        case(
            "error, fallback with message=Context()",
            fails,
            answer_by_message,
            pub(by_message),
            batch=60,
            own_target=1 / 20,
            check="c-1",
        ),
        case(
            'error, fallback with Context("message.correlation_id")',
            fails,
            answer_by_path,
            pub(by_faststream_path),
            pub(by_excepthub_path),  # ours: excepthub's Context, on the event loop
            batch=60,
            check="c-1",
        ),
        case(
            "error, fallback with an async Depends",
            fails,
            answer_by_depends,
            pub(by_depends),
            batch=400,
            target=1.0,
            check="acme",
        ),
        *_end_to_end(),
    ]


def _same_answer(expected: object, *works: Work) -> Callable[[], Any]:
    """Before measuring: every side gives the expected answer (the same unit of work)."""

    @asynccontextmanager
    async def check() -> AsyncIterator[None]:
        before = next(_SIDE_EFFECTS)
        for work in works:
            got = await work()
            assert got == expected, f"{work}: {got!r} != {expected!r}"
        if expected is None:  # a side-effect handler: it ran once per side
            assert next(_SIDE_EFFECTS) == before + len(works) + 1, (
                "a side-effect handler did not run"
            )
        yield

    return check


def _end_to_end() -> list[Case]:
    """`TestRedisBroker`: `request` publishes, the subscriber runs under the broker's
    middlewares (acknowledgement, critical log, then ours or FastStream's), the reply comes
    back. The last row: a broker with no exception middleware, its subscriber catching."""

    def broker(middleware: Any, caught: bool = False) -> RedisBroker:
        middlewares = [middleware] if middleware else []
        broker = RedisBroker(middlewares=middlewares, logger=None)  # type: ignore[arg-type]

        @broker.subscriber("orders")
        async def place_order(body: str) -> str:
            if body == "ok":
                return "ok"
            if not caught:
                raise OrderRejected(body)
            try:
                raise OrderRejected(body)
            except OrderRejected as error:
                return await fallback(error)

        return broker

    registry = excepthub.ExceptionMiddleware(logger=None)
    registry.add_handler(OrderRejected, publish=True)(fallback)
    brokers = {
        "floor": broker(None, caught=True),
        "theirs": broker(FastStreamMiddleware(publish_handlers={OrderRejected: fallback})),
        "ours": broker(excepthub_faststream.middleware(registry)),
    }
    testing = {name: TestRedisBroker(broker) for name, broker in brokers.items()}

    def request(name: str, body: str) -> Work:
        async def one() -> object:
            reply = await brokers[name].request(body, "orders")
            return await reply.decode()

        return one

    def e2e(
        name: str, body: str, expected: str, against: str = "theirs", target: float | None = None
    ) -> Case:
        works = {side: request(side, body) for side in testing}

        @asynccontextmanager
        async def started() -> AsyncIterator[None]:
            async with AsyncExitStack() as stack:
                for test_broker in testing.values():
                    await stack.enter_async_context(test_broker)
                for work in works.values():
                    got = await work()
                    assert got == expected, f"{work}: {got!r} != {expected!r}"
                yield

        return Case(
            GROUP,
            name,
            BASELINE if against == "theirs" else "no middleware, the subscriber catches",
            works[against],
            works["ours"],
            batch=40,
            setup=started,
            target=target,
        )

    # no floor column here: a middleware's few µs are below the noise of a ~600 µs request;
    # the last row compares with no exception middleware at all instead
    return [
        e2e("TestRedisBroker request, happy path", "ok", "ok", target=1.0),
        e2e("TestRedisBroker request, async fallback", "sku-1", "fallback"),
        e2e(
            "TestRedisBroker request, async fallback, against no middleware",
            "sku-1",
            "fallback",
            against="floor",
        ),
    ]
