"""FastStream against the real Redis and RabbitMQ on 127.0.0.1: the reply, the publishers,
acknowledgement as the server sees it, parser and decoder errors, routers, logging."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
import pytest
import redis.asyncio as aioredis
from faststream import AckPolicy, Context, StreamMessage
from faststream.exceptions import NackMessage, RejectMessage
from faststream.rabbit import RabbitBroker, RabbitQueue, RabbitRouter
from faststream.redis import RedisBroker, StreamSub

import excepthub
import excepthub_faststream
from excepthub_faststream import ExceptionMiddleware

pytestmark = [pytest.mark.anyio, pytest.mark.broker]
WAIT = 10  # seconds a test may wait for a broker round trip before it fails


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # FastStream runs on asyncio only


@pytest.fixture
def redis_url(require_service: Callable[[str], tuple[str, int]]) -> str:
    host, port = require_service("redis")
    return f"redis://{host}:{port}"


@pytest.fixture
def amqp_url(require_service: Callable[[str], tuple[str, int]]) -> str:
    host, port = require_service("rabbitmq")
    return f"amqp://guest:guest@{host}:{port}/"


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def amqp_channel(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    yield channel
    await connection.close()


@pytest.fixture
def name() -> str:
    """A queue, channel or stream name no other test uses."""
    return f"excepthub-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def cleanup_queues(
    amqp_channel: aio_pika.abc.AbstractChannel,
) -> AsyncIterator[list[str]]:
    queues: list[str] = []
    yield queues
    for queue in queues:
        await amqp_channel.queue_delete(queue)


class Seen:
    """What a subscriber or handler saw, awaited with a bound instead of a sleep."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Event()

    def add(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()

    async def wait_for(self, count: int) -> list[Any]:
        async with asyncio.timeout(WAIT):
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.items


class Boom(Exception):
    pass


# -- the reply and the publishers -----------------------------------------------------------


async def test_redis_request_gets_the_fallback(redis_url: str, name: str) -> None:
    exc = ExceptionMiddleware(publish_handlers={Boom: lambda error: {"error": "boom"}})
    broker = RedisBroker(redis_url, middlewares=[exc])

    @broker.subscriber(name)
    async def subscriber(body: str) -> str:
        raise Boom

    async with broker:
        await broker.start()
        reply = await broker.request("x", name, correlation_id="corr-r", timeout=WAIT)
    assert await reply.decode() == {"error": "boom"}
    assert reply.correlation_id == "corr-r"


async def test_rabbit_request_gets_the_fallback(amqp_url: str, name: str) -> None:
    exc = ExceptionMiddleware(publish_handlers={Boom: lambda error: "fallback"})
    broker = RabbitBroker(amqp_url, middlewares=[exc])

    @broker.subscriber(RabbitQueue(name, auto_delete=True))
    async def subscriber(body: str) -> str:
        raise Boom

    async with broker:
        await broker.start()
        reply = await broker.request("x", name, correlation_id="corr-q", timeout=WAIT)
    assert await reply.decode() == "fallback"
    assert reply.correlation_id == "corr-q"


@pytest.mark.parametrize("kind", ["redis", "rabbit"])
async def test_publisher_gets_the_fallback_and_a_handled_error_publishes_nothing(
    kind: str, request: pytest.FixtureRequest, name: str
) -> None:
    handled = Seen()
    exc = ExceptionMiddleware(
        handlers={KeyError: lambda error: handled.add(error)},
        publish_handlers={Boom: lambda error: "fallback"},
    )
    if kind == "redis":
        broker: Any = RedisBroker(request.getfixturevalue("redis_url"), middlewares=[exc])
        source, sink = name, f"{name}-out"
    else:
        broker = RabbitBroker(request.getfixturevalue("amqp_url"), middlewares=[exc])
        source = RabbitQueue(name, auto_delete=True)
        sink = RabbitQueue(f"{name}-out", auto_delete=True)
    out = Seen()

    @broker.subscriber(source)
    @broker.publisher(sink)
    async def subscriber(body: str) -> str:
        if body == "handled":
            raise KeyError(body)
        if body == "fails":
            raise Boom
        return body

    @broker.subscriber(sink)
    async def collect(body: str, message: StreamMessage[Any] = Context()) -> None:
        out.add((body, message.correlation_id))

    async with broker:
        await broker.start()
        await broker.publish("handled", name)
        await handled.wait_for(1)
        for body in ("fails", "last"):
            await broker.publish(body, name, correlation_id=f"c-{body}")
        await out.wait_for(2)
    # closing waits for messages in flight: a publication for the handled one would be here
    assert sorted(out.items) == [("fallback", "c-fails"), ("last", "c-last")]


# -- acknowledgement, as the server sees it -------------------------------------------------


async def _ready_messages(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    assert declared.declaration_result.message_count is not None
    return declared.declaration_result.message_count


async def test_rabbit_handled_error_is_acked_and_gone(
    amqp_url: str,
    name: str,
    amqp_channel: aio_pika.abc.AbstractChannel,
    cleanup_queues: list[str],
) -> None:
    cleanup_queues.append(name)
    handled = Seen()
    exc = ExceptionMiddleware(handlers={Boom: lambda error: handled.add(error)})
    broker = RabbitBroker(amqp_url, middlewares=[exc])

    @broker.subscriber(RabbitQueue(name), ack_policy=AckPolicy.NACK_ON_ERROR)
    async def subscriber(body: str) -> None:
        raise Boom

    async with broker:
        await broker.start()
        await broker.publish("x", name)
        await handled.wait_for(1)
    # the broker has closed its channel: an unacknowledged message would be back in the queue
    assert await _ready_messages(amqp_channel, name) == 0


async def test_rabbit_nack_raised_by_a_handler_redelivers(amqp_url: str, name: str) -> None:
    deliveries = Seen()
    exc = ExceptionMiddleware()

    @exc.add_handler(Boom)
    async def requeue(error: Boom) -> None:
        raise NackMessage

    broker = RabbitBroker(amqp_url, middlewares=[exc])

    @broker.subscriber(RabbitQueue(name, auto_delete=True))
    async def subscriber(body: str, message: StreamMessage[Any] = Context()) -> None:
        deliveries.add(message.raw_message.redelivered)
        if not message.raw_message.redelivered:
            raise Boom

    async with broker:
        await broker.start()
        await broker.publish("x", name)
        assert await deliveries.wait_for(2) == [False, True]


async def test_rabbit_reject_raised_by_a_handler_dead_letters(
    amqp_url: str, name: str, cleanup_queues: list[str]
) -> None:
    dead_letters = f"{name}-dlq"
    cleanup_queues.extend([name, dead_letters])
    exc = ExceptionMiddleware()

    @exc.add_handler(Boom)
    async def dead_letter(error: Boom) -> None:
        raise RejectMessage

    broker = RabbitBroker(amqp_url, middlewares=[exc])
    queue = RabbitQueue(
        name,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead_letters},
    )
    dead = Seen()

    @broker.subscriber(queue)
    async def subscriber(body: str) -> None:
        raise Boom

    @broker.subscriber(RabbitQueue(dead_letters))
    async def graveyard(body: str) -> None:
        dead.add(body)

    async with broker:
        await broker.start()
        await broker.publish("poison", name)
        assert await dead.wait_for(1) == ["poison"]


@pytest.mark.parametrize(("steer", "pending"), [(None, 0), (NackMessage, 1)])
async def test_redis_stream_group_acks_a_handled_error_and_keeps_a_nacked_one_pending(
    redis_url: str,
    redis_client: aioredis.Redis,
    name: str,
    steer: type[Exception] | None,
    pending: int,
) -> None:
    handled = Seen()
    exc = ExceptionMiddleware()

    @exc.add_handler(Boom)
    async def on_boom(error: Boom) -> None:
        handled.add(error)
        if steer is not None:
            raise steer

    broker = RedisBroker(redis_url, middlewares=[exc])

    @broker.subscriber(stream=StreamSub(name, group="workers", consumer="w1"))
    async def subscriber(body: str) -> None:
        raise Boom

    try:
        async with broker:
            await broker.start()
            await broker.publish("x", stream=name)
            await handled.wait_for(1)
        assert (await redis_client.xpending(name, "workers"))["pending"] == pending
    finally:
        await redis_client.delete(name)


# -- where errors go ------------------------------------------------------------------------


async def test_redis_parser_and_decoder_errors_reach_the_right_handlers(
    redis_url: str, name: str
) -> None:
    calls = Seen()
    exc = ExceptionMiddleware()

    @exc.add_handler(Boom)
    async def side_effect(error: Boom) -> None:
        calls.add(("side effect", str(error)))

    @exc.add_handler(Boom, publish=True)
    async def fallback(error: Boom) -> str:
        calls.add(("fallback", str(error)))
        return "fallback"

    async def parser(raw: Any, default: Any) -> Any:
        message = await default(raw)
        if message.body == b"parse":
            raise Boom("parser")
        return message

    async def decoder(message: StreamMessage[Any], default: Any) -> Any:
        if message.body == b"decode":
            raise Boom("decoder")
        return await default(message)

    broker = RedisBroker(redis_url, middlewares=[exc])

    @broker.subscriber(name, parser=parser, decoder=decoder)
    async def subscriber(body: str) -> str:
        return body

    async with broker:
        await broker.start()
        await broker.publish("parse", name)
        reply = await broker.request("decode", name, timeout=WAIT)
        assert await calls.wait_for(2) == [("side effect", "parser"), ("fallback", "decoder")]
    assert await reply.decode() == "fallback"


async def test_rabbit_router_scoping(amqp_url: str, name: str) -> None:
    calls = Seen()
    router = RabbitRouter(
        middlewares=[ExceptionMiddleware(handlers={KeyError: lambda error: calls.add("router")})]
    )
    broker = RabbitBroker(
        amqp_url,
        middlewares=[ExceptionMiddleware(publish_handlers={Boom: lambda error: "broker"})],
    )

    @router.subscriber(RabbitQueue(name, auto_delete=True))
    async def subscriber(body: str) -> str:
        raise KeyError(body) if body == "key" else Boom

    broker.include_router(router)
    async with broker:
        await broker.start()
        await broker.publish("key", name)  # handled by the router: no reply to wait for
        fell_back = await broker.request("boom", name, timeout=WAIT)
    assert calls.items == ["router"]
    assert await fell_back.decode() == "broker"


async def test_redis_registration_while_the_broker_runs(redis_url: str, name: str) -> None:
    exc = excepthub_faststream.ExceptionMiddleware(logger=None)
    broker = RedisBroker(redis_url, middlewares=[exc])

    @broker.subscriber(name)
    async def subscriber(body: str) -> str:
        raise Boom

    async with broker:
        await broker.start()
        exc.add_handler(Boom, publish=True)(lambda error: "registered late")
        reply = await broker.request("x", name, timeout=WAIT)
    assert await reply.decode() == "registered late"


# -- logging, end to end --------------------------------------------------------------------


class Records(logging.Handler):
    """Every record of the loggers it is attached to; `processed` fires on FastStream's last."""

    def __init__(self) -> None:
        super().__init__()
        self.records = Seen()
        self.processed = Seen()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.add(record)
        if record.getMessage() == "Processed":
            self.processed.add(record)


@pytest.mark.parametrize(
    ("registered", "logged_by"),
    [
        ("handler", ("excepthub", logging.WARNING)),
        ("nothing", ("faststream.access.redis", logging.ERROR)),  # as without excepthub
        ("reraise", ("faststream.access.redis", logging.ERROR)),  # let through: FastStream's
    ],
)
async def test_an_error_is_logged_once_end_to_end(
    redis_url: str, name: str, registered: str, logged_by: tuple[str, int]
) -> None:
    exc = ExceptionMiddleware()
    if registered != "nothing":
        exc.add_handler(Boom)(excepthub.reraise if registered == "reraise" else lambda error: None)
    broker = RedisBroker(redis_url, middlewares=[exc])
    capture = Records()

    @broker.subscriber(name)
    async def subscriber(body: str) -> None:
        raise Boom("once")

    excepthub_logger = logging.getLogger("excepthub")
    excepthub_logger.addHandler(capture)
    try:
        async with broker:
            await broker.start()
            broker.config.logger.logger.logger.addHandler(capture)  # FastStream's own logger
            await broker.publish("x", name, correlation_id="corr-log")
            await capture.processed.wait_for(1)
    finally:
        excepthub_logger.removeHandler(capture)
    about_it = [r for r in capture.records.items if r.exc_info or r.name == "excepthub"]
    assert [(r.name, r.levelno) for r in about_it] == [logged_by]
    if logged_by[0] == "excepthub":
        assert about_it[0].correlation_id == "corr-log"
