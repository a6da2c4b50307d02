"""FastStream, in memory (TestRedisBroker, TestRabbitBroker): where each error goes, what is
published, how the message is acknowledged, what handlers receive, what is logged."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
from faststream import AckPolicy, BaseMiddleware, Context, StreamMessage
from faststream.exceptions import AckMessage, NackMessage, RejectMessage, SkipMessage
from faststream.message import AckStatus
from faststream.rabbit import RabbitBroker, TestRabbitBroker
from faststream.redis import RedisBroker, RedisRouter, TestRedisBroker

import excepthub
import excepthub_faststream
from excepthub import Depends, Retry
from excepthub_faststream import ExceptionMiddleware

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # FastStream runs on asyncio only


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Callable[[], list[logging.LogRecord]]:
    """excepthub's log records, as the test reads them."""
    caplog.set_level(logging.INFO, logger="excepthub")
    return lambda: [r for r in caplog.records if r.name == "excepthub"]


class Recorder:
    """Handlers that note what they were called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, BaseException]] = []
        self.messages: list[Any] = []

    def side_effect(self, name: str) -> Callable[..., Any]:
        async def handler(error: Exception, message: Any = Context()) -> None:
            self.calls.append((name, error))
            self.messages.append(message)

        handler.__qualname__ = name
        return handler

    def fallback(self, name: str, value: object) -> Callable[..., Any]:
        async def handler(error: Exception, message: Any = Context()) -> object:
            self.calls.append((name, error))
            self.messages.append(message)
            return value

        handler.__qualname__ = name
        return handler


class Boom(Exception):
    pass


def faststream_errors(broker: Any) -> list[BaseException]:
    """The errors FastStream's own logger recorded at ERROR (the test client's mock logger)."""
    calls = broker.config.logger.logger.logger.log.call_args_list
    return [c.kwargs["exc_info"] for c in calls if c.args[0] >= logging.ERROR]


class Transient(ConnectionError):
    pass


# -- plugging in ----------------------------------------------------------------------------


def _broker_middlewares(exc: Any) -> tuple[RedisBroker, Any]:
    broker = RedisBroker(middlewares=[exc])
    return broker, broker


def _router_middlewares(exc: Any) -> tuple[RedisBroker, Any]:
    broker, router = RedisBroker(), RedisRouter(middlewares=[exc])
    return broker, router


def _include_router_middlewares(exc: Any) -> tuple[RedisBroker, Any]:
    return RedisBroker(), RedisRouter()


def _add_middleware(exc: Any) -> tuple[RedisBroker, Any]:
    broker = RedisBroker()
    broker.add_middleware(exc)
    return broker, broker


def _insert_middleware(exc: Any) -> tuple[RedisBroker, Any]:
    broker = RedisBroker()
    broker.insert_middleware(exc)
    return broker, broker


@pytest.mark.parametrize(
    "plug",
    [
        _broker_middlewares,
        _router_middlewares,
        _include_router_middlewares,
        _add_middleware,
        _insert_middleware,
    ],
)
async def test_plugs_in_wherever_faststream_takes_a_middleware(
    plug: Callable[[Any], tuple[RedisBroker, Any]],
) -> None:
    exc = ExceptionMiddleware(publish_handlers={Boom: lambda error: "fallback"})
    broker, registrator = plug(exc)

    @registrator.subscriber("in")
    async def subscriber(body: str) -> str:
        raise Boom

    if registrator is not broker:
        extra = [exc] if plug is _include_router_middlewares else []
        broker.include_router(registrator, middlewares=extra)
    async with TestRedisBroker(broker) as br:
        reply = await br.request("x", "in")
    assert await reply.decode() == "fallback"


async def test_middleware_plugs_a_plain_registry_into_a_broker() -> None:
    exc = excepthub.ExceptionMiddleware(publish_handlers={Boom: lambda error: "fallback"})
    broker = RedisBroker(middlewares=[excepthub_faststream.middleware(exc)])

    @broker.subscriber("in")
    async def subscriber(body: str) -> str:
        raise Boom

    async with TestRedisBroker(broker) as br:
        reply = await br.request("x", "in")
    assert await reply.decode() == "fallback"


def test_middleware_hands_back_the_drop_in_itself() -> None:
    exc = ExceptionMiddleware()
    assert excepthub_faststream.middleware(exc) is exc
    assert isinstance(exc, excepthub.ExceptionMiddleware)


def test_middleware_rejects_what_is_not_a_registry() -> None:
    with pytest.raises(TypeError, match=r"excepthub\.ExceptionMiddleware"):
        excepthub_faststream.middleware({Boom: print})  # type: ignore[arg-type]


# -- fallback handlers: the reply -----------------------------------------------------------


@pytest.mark.parametrize(
    ("broker_cls", "client"),
    [(RedisBroker, TestRedisBroker), (RabbitBroker, TestRabbitBroker)],
    ids=["redis", "rabbit"],
)
async def test_fallback_value_is_the_reply_with_the_correlation_id_kept(
    broker_cls: Any, client: Any
) -> None:
    exc = ExceptionMiddleware(publish_handlers={Boom: lambda error: {"error": "boom"}})
    broker = broker_cls(middlewares=[exc])

    @broker.subscriber("in")
    async def subscriber(body: str) -> str:
        raise Boom

    async with client(broker) as br:
        reply = await br.request("x", "in", correlation_id="corr-1")
    assert await reply.decode() == {"error": "boom"}
    assert reply.correlation_id == "corr-1"


@pytest.mark.parametrize(
    ("broker_cls", "client"),
    [(RedisBroker, TestRedisBroker), (RabbitBroker, TestRabbitBroker)],
    ids=["redis", "rabbit"],
)
async def test_fallback_value_goes_to_every_publisher(broker_cls: Any, client: Any) -> None:
    exc = ExceptionMiddleware(publish_handlers={Boom: lambda error: "fallback"})
    broker = broker_cls(middlewares=[exc])
    received: list[tuple[str, str, str]] = []

    @broker.subscriber("in")
    @broker.publisher("out-1")
    @broker.publisher("out-2")
    async def subscriber(body: str) -> str:
        raise Boom

    @broker.subscriber("out-1")
    async def sink_1(body: str, message: StreamMessage[Any] = Context()) -> None:
        received.append(("out-1", body, message.correlation_id))

    @broker.subscriber("out-2")
    async def sink_2(body: str, message: StreamMessage[Any] = Context()) -> None:
        received.append(("out-2", body, message.correlation_id))

    async with client(broker) as br:
        await br.publish("x", "in", correlation_id="corr-2")
    assert sorted(received) == [("out-1", "fallback", "corr-2"), ("out-2", "fallback", "corr-2")]


async def test_decoder_error_reaches_the_fallback_handler() -> None:
    rec = Recorder()
    exc = ExceptionMiddleware(publish_handlers={Boom: rec.fallback("decoded", "fallback")})
    broker = RedisBroker(middlewares=[exc])

    async def decoder(message: StreamMessage[Any]) -> Any:
        raise Boom("cannot decode")

    @broker.subscriber("in", decoder=decoder)
    async def subscriber(body: str) -> str:
        return "never"

    async with TestRedisBroker(broker) as br:
        reply = await br.request("x", "in")
    assert await reply.decode() == "fallback"
    assert [name for name, _ in rec.calls] == ["decoded"]


async def test_parser_error_reaches_side_effect_handlers_not_fallback_handlers() -> None:
    rec = Recorder()
    exc = ExceptionMiddleware(
        handlers={Exception: rec.side_effect("side")},
        publish_handlers={Boom: rec.fallback("fallback", "never published")},
    )
    broker = RedisBroker(middlewares=[exc])

    async def parser(raw: Any) -> Any:
        raise Boom("cannot parse")

    @broker.subscriber("in", parser=parser)
    async def subscriber(body: str) -> str:
        return "never"

    async with TestRedisBroker(broker) as br:
        reply = await br.request("x", "in")
    assert reply.body == b""
    assert [name for name, _ in rec.calls] == ["side"]


async def test_parser_error_gives_handlers_the_raw_message() -> None:
    rec = Recorder()
    exc = ExceptionMiddleware(handlers={Boom: rec.side_effect("side")})
    broker = RedisBroker(middlewares=[exc])

    async def parser(raw: Any) -> Any:
        raise Boom("cannot parse")

    @broker.subscriber("in", parser=parser)
    async def subscriber(body: str) -> None: ...

    async with TestRedisBroker(broker) as br:
        await br.publish("x", "in")
    [message] = rec.messages
    assert not isinstance(message, StreamMessage)
    assert message["channel"] == "in"  # Redis' own record of the message


# -- side-effect handlers: acked, nothing published -----------------------------------------


async def test_handled_error_publishes_nothing() -> None:
    exc = ExceptionMiddleware(handlers={Boom: lambda error: None})
    broker = RedisBroker(middlewares=[exc])
    published: list[str] = []

    @broker.subscriber("in")
    @broker.publisher("out")
    async def subscriber(body: str) -> str:
        raise Boom

    @broker.subscriber("out")
    async def sink(body: str) -> None:
        published.append(body)

    async with TestRedisBroker(broker) as br:
        reply = await br.request("x", "in")
    assert reply.body == b""
    assert published == []


async def test_handled_error_is_acked_under_nack_on_error() -> None:
    rec = Recorder()
    exc = ExceptionMiddleware(handlers={Boom: rec.side_effect("side")})
    broker = RabbitBroker(middlewares=[exc])

    @broker.subscriber("in", ack_policy=AckPolicy.NACK_ON_ERROR)
    async def subscriber(body: str) -> None:
        raise Boom

    async with TestRabbitBroker(broker) as br:
        await br.publish("x", "in")
    assert rec.messages[0].committed is AckStatus.ACKED


async def test_filter_error_reaches_the_side_effect_handler() -> None:
    rec = Recorder()
    exc = ExceptionMiddleware(handlers={Boom: rec.side_effect("side")})
    broker = RedisBroker(middlewares=[exc])

    def bad_filter(message: StreamMessage[Any]) -> bool:
        raise Boom("cannot filter")

    subscriber = broker.subscriber("in")

    @subscriber(filter=bad_filter)
    async def handler(body: str) -> None: ...

    async with TestRedisBroker(broker) as br:
        await br.publish("x", "in")
    assert [name for name, _ in rec.calls] == ["side"]


class FailingMiddleware(BaseMiddleware):
    """An inner middleware that fails where it is told to."""

    where = ""

    async def on_receive(self) -> None:
        if self.where == "receive":
            raise Boom("receive")

    async def publish_scope(self, call_next: Any, cmd: Any) -> Any:
        if self.where == "publish" and self.msg is not None:  # the reply, not the test's publish
            raise Boom("publish")
        return await call_next(cmd)


@pytest.mark.parametrize("where", ["receive", "publish"])
async def test_inner_middleware_and_reply_publishing_errors_reach_the_side_effect_handler(
    where: str,
) -> None:
    rec = Recorder()
    exc = ExceptionMiddleware(handlers={Boom: rec.side_effect("side")})
    failing = type("Failing", (FailingMiddleware,), {"where": where})
    broker = RedisBroker(middlewares=[exc, failing])

    @broker.subscriber("in")
    @broker.publisher("out")
    async def subscriber(body: str) -> str:
        return "result"

    async with TestRedisBroker(broker) as br:
        await br.publish("x", "in")
    assert [str(error) for _, error in rec.calls] == [where]


# -- FastStream's control flow --------------------------------------------------------------


async def test_control_flow_exceptions_pass_a_broad_handler_by() -> None:
    rec = Recorder()
    exc = ExceptionMiddleware(handlers={Exception: rec.side_effect("broad")})
    broker = RabbitBroker(middlewares=[exc])
    seen: list[StreamMessage[Any]] = []

    @broker.subscriber("in")
    async def subscriber(body: str, message: StreamMessage[Any] = Context()) -> None:
        seen.append(message)
        raise NackMessage

    async with TestRabbitBroker(broker) as br:
        await br.publish("x", "in")
    assert rec.calls == []
    assert seen[0].committed is AckStatus.NACKED


@pytest.mark.parametrize(
    ("steer", "status"),
    [
        (NackMessage, AckStatus.NACKED),
        (RejectMessage, AckStatus.REJECTED),
        (AckMessage, AckStatus.ACKED),
    ],
)
async def test_a_handler_raising_control_flow_steers_the_acknowledgement(
    steer: type[Exception], status: AckStatus
) -> None:
    exc = ExceptionMiddleware()
    seen: list[StreamMessage[Any]] = []

    @exc.add_handler(Boom)
    async def steering(error: Boom, message: StreamMessage[Any] = Context()) -> None:
        seen.append(message)
        raise steer

    broker = RabbitBroker(middlewares=[exc])

    @broker.subscriber("in", ack_policy=AckPolicy.ACK)
    async def subscriber(body: str) -> None:
        raise Boom

    async with TestRabbitBroker(broker) as br:
        await br.publish("x", "in")
    assert seen[0].committed is status


async def test_a_handler_for_an_exact_control_flow_class_replaces_the_default() -> None:
    rec = Recorder()
    exc = ExceptionMiddleware(handlers={NackMessage: rec.side_effect("mine")})
    broker = RabbitBroker(middlewares=[exc])

    @broker.subscriber("in")
    async def subscriber(body: str) -> None:
        raise NackMessage

    async with TestRabbitBroker(broker) as br:
        await br.publish("x", "in")
    assert [name for name, _ in rec.calls] == ["mine"]
    assert rec.messages[0].committed is AckStatus.ACKED


async def test_other_control_flow_still_passes_when_one_class_has_a_handler() -> None:
    rec = Recorder()
    exc = ExceptionMiddleware(handlers={NackMessage: rec.side_effect("mine")})
    broker = RedisBroker(middlewares=[exc])

    @broker.subscriber("in")
    async def subscriber(body: str) -> None:
        raise SkipMessage

    async with TestRedisBroker(broker) as br:
        with pytest.raises(SkipMessage):
            await br.publish("x", "in")
    assert rec.calls == []


# -- what handlers receive ------------------------------------------------------------------


async def test_faststream_context_fields_reach_handlers() -> None:
    exc = ExceptionMiddleware()
    got: dict[str, Any] = {}

    @exc.add_handler(Boom, publish=True)
    async def fallback(
        error: Boom,
        message: StreamMessage[Any] = Context(),
        logger: Any = Context(),
        broker: Any = Context(),
        context: Any = Context(),
        body: bytes = Context("message.body"),
        missing: str = Context("nothing.here", default="dflt"),
    ) -> str:
        got.update(message=message, logger=logger, broker=broker, context=context)
        got.update(body=body, missing=missing)
        return "ok"

    broker = RedisBroker(middlewares=[exc])

    @broker.subscriber("in")
    async def subscriber(body: str) -> str:
        raise Boom

    async with TestRedisBroker(broker) as br:
        await br.request("payload", "in", correlation_id="corr-3")
        assert got["logger"] is broker.config.logger.logger.logger  # the test client's
    assert got["message"].correlation_id == "corr-3"
    assert got["broker"] is broker
    assert got["context"] is broker.context
    assert got["body"] == b"payload"
    assert got["missing"] == "dflt"


async def test_excepthub_context_and_names_reach_handlers() -> None:
    exc = ExceptionMiddleware()
    got: dict[str, Any] = {}

    def tenant() -> str:
        return "acme"

    @exc.add_handler(Boom, publish=True)
    async def fallback(
        error: Boom,
        message: StreamMessage[Any],
        correlation_id: str,
        headers: dict[str, Any] = excepthub.Context("message.headers"),
        broker: Any = excepthub.Context("context.broker"),
        who: str = Depends(tenant),
    ) -> str:
        got.update(message=message, correlation_id=correlation_id, headers=headers)
        got.update(broker=broker, who=who)
        return "ok"

    broker = RedisBroker(middlewares=[exc])

    @broker.subscriber("in")
    async def subscriber(body: str) -> str:
        raise Boom

    async with TestRedisBroker(broker) as br:
        await br.request("x", "in", correlation_id="corr-4", headers={"h": "1"})
    assert got["message"].correlation_id == got["correlation_id"] == "corr-4"
    assert got["headers"]["h"] == "1"
    assert got["broker"] is broker
    assert got["who"] == "acme"


async def test_faststream_context_is_resolved_on_the_event_loop() -> None:
    exc = ExceptionMiddleware()
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def mark() -> int:  # FastStream's `initial`: called where the field is resolved
        threads.append(threading.get_ident())
        return 0

    @exc.add_handler(Boom, publish=True)
    async def fallback(error: Boom, marked: int = Context("never.set", initial=mark)) -> str:
        return "ok"

    broker = RedisBroker(middlewares=[exc])

    @broker.subscriber("in")
    async def subscriber(body: str) -> str:
        raise Boom

    async with TestRedisBroker(broker) as br:
        await br.request("x", "in")
    assert threads == [loop_thread]


async def test_sync_and_async_handlers_both_answer() -> None:
    exc = ExceptionMiddleware()
    threads: list[int] = []

    @exc.add_handler(KeyError, publish=True)
    def sync_fallback(error: KeyError, message: StreamMessage[Any] = Context()) -> str:
        threads.append(threading.get_ident())  # a worker thread, as FastStream runs it
        return f"sync {message.correlation_id}"

    @exc.add_handler(ValueError, publish=True)
    async def async_fallback(error: ValueError) -> str:
        return "async"

    broker = RedisBroker(middlewares=[exc])

    @broker.subscriber("in")
    async def subscriber(body: str) -> str:
        raise KeyError(body) if body == "k" else ValueError(body)

    async with TestRedisBroker(broker) as br:
        sync_reply = await br.request("k", "in", correlation_id="c")
        async_reply = await br.request("v", "in")
    assert await sync_reply.decode() == "sync c"
    assert await async_reply.decode() == "async"
    assert threads
    assert threads[0] != threading.get_ident()


# -- resolution, groups, stats, registration ------------------------------------------------


async def test_the_nearest_class_wins_whatever_the_registration_order() -> None:
    exc = ExceptionMiddleware()
    exc.add_handler(Exception, publish=True)(lambda error: "broad")
    exc.add_handler(LookupError, publish=True)(lambda error: "lookup")
    broker = RedisBroker(middlewares=[exc])

    @broker.subscriber("in")
    async def subscriber(body: str) -> str:
        raise KeyError(body)

    async with TestRedisBroker(broker) as br:
        reply = await br.request("x", "in")
    assert await reply.decode() == "lookup"


async def test_exception_group_leaves_reach_their_own_handlers() -> None:
    rec = Recorder()
    exc = ExceptionMiddleware(
        handlers={KeyError: rec.side_effect("key")},
        publish_handlers={ValueError: rec.fallback("value", "fallback")},
    )
    broker = RedisBroker(middlewares=[exc])

    @broker.subscriber("in")
    async def subscriber(body: str) -> str:
        raise ExceptionGroup("batch", [KeyError("a"), ValueError("b")])

    async with TestRedisBroker(broker) as br:
        reply = await br.request("x", "in")
    assert await reply.decode() == "fallback"
    assert sorted(name for name, _ in rec.calls) == ["key", "value"]


async def test_exception_group_leaves_no_handler_takes_go_on_as_a_group() -> None:
    rec = Recorder()
    exc = ExceptionMiddleware(handlers={KeyError: rec.side_effect("key")}, logger=None)
    broker = RedisBroker(middlewares=[exc])

    @broker.subscriber("in")
    async def subscriber(body: str) -> str:
        raise ExceptionGroup("batch", [KeyError("a"), Boom("b")])

    async with TestRedisBroker(broker) as br:
        with pytest.raises(ExceptionGroup) as raised:
            await br.publish("x", "in")
    assert [type(e) for e in raised.value.exceptions] == [Boom]
    assert [name for name, _ in rec.calls] == ["key"]
    assert exc.get_error_stats() == {
        "KeyError": {"handled": 1},
        f"{__name__}.Boom": {"unhandled": 1},
    }


async def test_stats_count_each_outcome() -> None:
    exc = ExceptionMiddleware(
        handlers={KeyError: lambda error: None},
        publish_handlers={ValueError: lambda error: "fallback"},
        logger=None,
    )
    broker = RedisBroker(middlewares=[exc])

    @broker.subscriber("in")
    async def subscriber(body: str) -> str:
        raise {"k": KeyError, "v": ValueError}.get(body, Boom)(body)

    async with TestRedisBroker(broker) as br:
        for body in ("k", "v", "v"):
            await br.publish(body, "in")
        with pytest.raises(Boom):
            await br.publish("b", "in")
    assert exc.get_error_stats() == {
        "KeyError": {"handled": 1},
        "ValueError": {"published": 2},
        f"{__name__}.Boom": {"unhandled": 1},
    }


async def test_a_handler_registered_while_the_broker_runs_takes_the_next_message() -> None:
    exc = ExceptionMiddleware(logger=None)
    broker = RedisBroker(middlewares=[exc])

    @broker.subscriber("in")
    async def subscriber(body: str) -> str:
        raise Boom

    async with TestRedisBroker(broker) as br:
        with pytest.raises(Boom):
            await br.request("x", "in")
        exc.add_handler(Boom, publish=True)(lambda error: "late")
        reply = await br.request("x", "in")
    assert await reply.decode() == "late"


# -- router scoping -------------------------------------------------------------------------


async def test_a_routers_registry_answers_its_subscribers_first() -> None:
    rec = Recorder()
    router = RedisRouter(middlewares=[ExceptionMiddleware(handlers={Boom: rec.side_effect("r")})])
    broker = RedisBroker(
        middlewares=[ExceptionMiddleware(publish_handlers={Boom: rec.fallback("b", "broker")})]
    )

    @router.subscriber("in")
    async def subscriber(body: str) -> str:
        raise Boom

    broker.include_router(router)
    async with TestRedisBroker(broker) as br:
        reply = await br.request("x", "in")
    assert reply.body == b""  # handled by the router: nothing published
    assert [name for name, _ in rec.calls] == ["r"]


@pytest.mark.parametrize("raised", [KeyError, ValueError])
async def test_what_a_router_does_not_handle_reaches_the_brokers_registry(
    raised: type[Exception],
) -> None:
    rec = Recorder()
    router = RedisRouter(
        middlewares=[ExceptionMiddleware(handlers={KeyError: rec.side_effect("r")})]
    )
    broker = RedisBroker(
        middlewares=[ExceptionMiddleware(publish_handlers={ValueError: rec.fallback("b", "fb")})]
    )

    @router.subscriber("in")
    async def subscriber(body: str) -> str:
        raise raised

    broker.include_router(router)
    async with TestRedisBroker(broker) as br:
        reply = await br.request("x", "in")
    assert [name for name, _ in rec.calls] == ["r" if raised is KeyError else "b"]
    assert reply.body == (b"" if raised is KeyError else b"fb")


async def test_an_error_the_broker_handles_after_the_router_is_logged_once(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    shared = excepthub.ExceptionMiddleware(handlers={Boom: lambda error: None})
    router = RedisRouter(middlewares=[ExceptionMiddleware()])  # takes nothing
    broker = RedisBroker(middlewares=[excepthub_faststream.middleware(shared)])

    @router.subscriber("in")
    async def subscriber(body: str) -> None:
        raise Boom

    broker.include_router(router)
    async with TestRedisBroker(broker) as br:
        await br.publish("x", "in")
    assert [(r.levelname, r.excepthub_outcome) for r in records()] == [("WARNING", "handled")]


async def test_an_error_no_registry_handles_is_counted_by_each_and_logged_once_by_faststream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    inner, outer = ExceptionMiddleware(logger="router"), ExceptionMiddleware(logger="broker")
    router = RedisRouter(middlewares=[inner])
    broker = RedisBroker(middlewares=[outer])

    @router.subscriber("in")
    async def subscriber(body: str) -> None:
        raise Boom

    broker.include_router(router)
    async with TestRedisBroker(broker) as br:
        with pytest.raises(Boom):
            await br.publish("x", "in")
        errors = faststream_errors(broker)
    assert [r.name for r in caplog.records if hasattr(r, "excepthub_outcome")] == []
    assert [type(error) for error in errors] == [Boom]  # FastStream's own record, once
    stats = {f"{__name__}.Boom": {"unhandled": 1}}
    assert (inner.get_error_stats(), outer.get_error_stats()) == (stats, stats)


async def test_a_parser_error_a_router_does_not_handle_reaches_the_brokers_registry(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    rec = Recorder()
    router = RedisRouter(middlewares=[ExceptionMiddleware(handlers={KeyError: print})])
    broker = RedisBroker(middlewares=[ExceptionMiddleware(handlers={Boom: rec.side_effect("b")})])

    async def parser(raw: Any) -> Any:
        raise Boom("cannot parse")

    @router.subscriber("in", parser=parser)
    async def subscriber(body: str) -> None: ...

    broker.include_router(router)
    async with TestRedisBroker(broker) as br:
        await br.publish("x", "in")
    assert [name for name, _ in rec.calls] == ["b"]
    assert [r.excepthub_outcome for r in records()] == ["handled"]


async def test_one_registry_plugged_into_router_and_broker_answers_once(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    rec = Recorder()
    shared = excepthub.ExceptionMiddleware(handlers={Boom: rec.side_effect("shared")})
    router = RedisRouter(middlewares=[excepthub_faststream.middleware(shared)])
    broker = RedisBroker(middlewares=[excepthub_faststream.middleware(shared)])

    @router.subscriber("in")
    async def subscriber(body: str) -> None:
        raise Boom

    broker.include_router(router)
    async with TestRedisBroker(broker) as br:
        await br.publish("x", "in")
    assert [name for name, _ in rec.calls] == ["shared"]
    assert [r.excepthub_outcome for r in records()] == ["handled"]


# -- retries --------------------------------------------------------------------------------


def _retrying(waits: list[float], **registry: Any) -> ExceptionMiddleware:
    async def fake_sleep(seconds: float) -> None:  # a fake clock: nothing waits
        waits.append(seconds)

    retry = Retry(on=(ConnectionError,), attempts=3, base_delay=0.1, jitter=0, sleep=fake_sleep)
    return ExceptionMiddleware(retry=retry, **registry)


async def test_a_transient_error_that_clears_on_the_third_attempt_succeeds(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    waits: list[float] = []
    exc = _retrying(waits)
    broker = RedisBroker(middlewares=[exc])
    attempts: list[str] = []

    @broker.subscriber("in")
    async def subscriber(body: str) -> str:
        attempts.append(body)
        if len(attempts) < 3:
            raise Transient("flaky")
        return "ok"

    async with TestRedisBroker(broker) as br:
        reply = await br.request("x", "in", correlation_id="corr-5")
    assert await reply.decode() == "ok"
    assert len(attempts) == 3
    assert waits == [0.1, 0.2]
    logged = [(r.levelname, r.excepthub_outcome, r.correlation_id) for r in records()]
    assert logged == [("WARNING", "retried", "corr-5")] * 2


async def test_a_transient_error_that_never_clears_ends_in_the_handler() -> None:
    waits: list[float] = []
    rec = Recorder()
    exc = _retrying(waits, publish_handlers={Transient: rec.fallback("fb", "gave up")})
    broker = RedisBroker(middlewares=[exc])
    attempts: list[str] = []

    @broker.subscriber("in")
    async def subscriber(body: str) -> str:
        attempts.append(body)
        raise Transient("down")

    async with TestRedisBroker(broker) as br:
        reply = await br.request("x", "in")
    assert await reply.decode() == "gave up"
    assert len(attempts) == 3
    assert len(rec.calls) == 1
    assert exc.get_error_stats() == {f"{__name__}.Transient": {"retried": 2, "published": 1}}


# -- logging --------------------------------------------------------------------------------


async def test_each_outcome_is_logged_once_at_its_level_with_the_correlation_id(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    exc = ExceptionMiddleware(
        handlers={KeyError: lambda error: None},
        publish_handlers={ValueError: lambda error: "fallback"},
    )
    broker = RedisBroker(middlewares=[exc])

    @broker.subscriber("in")
    async def subscriber(body: str) -> str:
        raise {"k": KeyError, "v": ValueError}.get(body, Boom)(body)

    async with TestRedisBroker(broker) as br:
        await br.publish("v", "in", correlation_id="c-v")
        await br.publish("k", "in", correlation_id="c-k")
        with pytest.raises(Boom):
            await br.publish("b", "in", correlation_id="c-b")
        errors = faststream_errors(broker)
    logged = [(r.levelname, r.excepthub_outcome, r.excepthub_exception) for r in records()]
    assert logged == [
        ("INFO", "published", "ValueError"),
        ("WARNING", "handled", "KeyError"),
    ]
    assert [r.correlation_id for r in records()] == ["c-v", "c-k"]
    assert [r.exc_info for r in records()] == [None, None]
    assert [type(error) for error in errors] == [Boom]  # unhandled: FastStream logs it, once


async def test_a_failing_handler_is_logged_and_its_error_goes_on_to_side_effect_handlers(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    rec = Recorder()
    exc = ExceptionMiddleware(handlers={RuntimeError: rec.side_effect("cleanup")})

    @exc.add_handler(Boom, publish=True)
    async def broken(error: Boom) -> str:
        raise RuntimeError("the fallback failed")

    broker = RedisBroker(middlewares=[exc])

    @broker.subscriber("in")
    async def subscriber(body: str) -> str:
        raise Boom

    async with TestRedisBroker(broker) as br:
        reply = await br.request("x", "in")
    assert reply.body == b""
    [(_, failure)] = rec.calls
    assert isinstance(failure.__context__, Boom)  # the original, chained
    logged = [(r.levelname, r.excepthub_outcome, r.excepthub_exception) for r in records()]
    assert logged == [
        ("ERROR", "failed", f"{__name__}.Boom"),
        ("WARNING", "handled", "RuntimeError"),
    ]


async def test_a_handler_that_re_raises_runs_once_and_faststream_logs_the_error_once(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    calls: list[BaseException] = []
    exc = ExceptionMiddleware()

    @exc.add_handler(Boom)
    async def declines(error: Boom) -> None:
        calls.append(error)
        raise error

    broker = RedisBroker(middlewares=[exc])

    @broker.subscriber("in")
    async def subscriber(body: str) -> None:
        raise Boom

    async with TestRedisBroker(broker) as br:
        with pytest.raises(Boom):
            await br.publish("x", "in")
        errors = faststream_errors(broker)
    assert len(calls) == 1
    assert records() == []
    assert [type(error) for error in errors] == [Boom]
    assert exc.get_error_stats() == {f"{__name__}.Boom": {"unhandled": 1}}


async def test_an_unhandled_error_reaches_hooks_and_stats_and_faststream_writes_its_record(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    events: list[excepthub.ErrorEvent] = []
    exc = ExceptionMiddleware(handlers={KeyError: lambda error: None}, on_error=[events.append])
    broker = RedisBroker(middlewares=[exc])

    @broker.subscriber("in")
    async def subscriber(body: str) -> None:
        raise Boom("nobody takes it")

    async with TestRedisBroker(broker) as br:
        with pytest.raises(Boom) as raised:
            await br.publish("x", "in", correlation_id="c-u")
        errors = faststream_errors(broker)
    assert [(e.error, e.outcome, e.correlation_id) for e in events] == [
        (raised.value, "unhandled", "c-u")
    ]
    assert exc.get_error_stats() == {f"{__name__}.Boom": {"unhandled": 1}}
    assert records() == []  # no record of excepthub's
    assert errors == [raised.value]  # FastStream's, once, of the very exception raised


async def test_faststream_does_not_log_a_handled_error() -> None:
    exc = ExceptionMiddleware(handlers={Boom: lambda error: None}, logger=None)
    broker = RedisBroker(middlewares=[exc])

    @broker.subscriber("in")
    async def subscriber(body: str) -> None:
        raise Boom

    async with TestRedisBroker(broker) as br:
        faststream_logger = broker.config.logger.logger.logger  # the test client's mock
        await br.publish("x", "in")
        levels = [c.args[0] for c in faststream_logger.log.call_args_list]
    assert levels
    assert logging.ERROR not in levels


async def test_an_error_exempted_with_reraise_is_left_to_faststream(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    exc = ExceptionMiddleware(handlers={Exception: lambda error: None})
    exc.add_handler(NotImplementedError)(excepthub.reraise)
    broker = RedisBroker(middlewares=[exc])

    @broker.subscriber("in")
    async def subscriber(body: str) -> None:
        raise NotImplementedError

    async with TestRedisBroker(broker) as br:
        faststream_logger = broker.config.logger.logger.logger  # the test client's mock
        with pytest.raises(NotImplementedError):
            await br.publish("x", "in")
        levels = [c.args[0] for c in faststream_logger.log.call_args_list]
    assert records() == []
    assert logging.ERROR in levels  # FastStream reports it, as if excepthub were not there
