"""Retries through the broker where the broker cannot redeliver with a count: a clear error at
the subscriber's first message, before the subscriber runs, that no handler hides; never an
in-process retry in its place."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

import aio_pika
import pytest
from faststream import AckPolicy, BaseMiddleware
from faststream.nats import JStream, NatsBroker, TestNatsBroker
from faststream.rabbit import (
    ExchangeType,
    RabbitBroker,
    RabbitExchange,
    RabbitQueue,
    TestRabbitBroker,
)
from faststream.redis import RedisBroker, StreamSub, TestRedisBroker

import excepthub
from excepthub import Retry
from excepthub_faststream import ExceptionMiddleware, RedeliveryUnsupported

pytestmark = pytest.mark.anyio
WAIT = 10  # seconds a test may wait for a broker round trip before it fails


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # FastStream runs on asyncio only


def _registry(**retry: Any) -> tuple[ExceptionMiddleware, list[BaseException]]:
    """A registry retrying through the broker, with a handler that would take anything."""
    taken: list[BaseException] = []
    policy = Retry(on=(ConnectionError,), through_broker=True, **retry)
    exc = ExceptionMiddleware(logger=None, retry=policy)
    exc.add_handler(Exception)(taken.append)
    return exc, taken


def test_the_adapters_refusal_is_the_cores() -> None:
    assert RedeliveryUnsupported is excepthub.RedeliveryUnsupported  # one class to catch


def test_through_broker_takes_a_bool() -> None:
    with pytest.raises(TypeError, match=r"Retry\(through_broker=...\) must be a bool"):
        Retry(through_broker="yes")  # type: ignore[arg-type]
    assert Retry().through_broker is False


@pytest.mark.parametrize(
    ("where", "why"),
    [({"list": "jobs"}, "RedisListMessage"), ({"channel": "jobs"}, "RedisChannelMessage")],
)
async def test_a_redis_list_or_channel_is_refused_before_the_subscriber_runs(
    where: dict[str, str], why: str
) -> None:
    exc, taken = _registry()
    broker = RedisBroker(middlewares=[exc])
    ran: list[str] = []
    broker.subscriber(**where)(ran.append)
    async with TestRedisBroker(broker) as br:
        with pytest.raises(RedeliveryUnsupported, match=f"StreamSub.*{why}|{why}.*StreamSub"):
            await br.publish("order-1", **where)
    assert ran == []
    assert taken == []  # the catch-all handler never saw it
    assert exc.get_error_stats() == {}


async def test_a_redis_stream_read_with_no_ack_is_refused() -> None:
    exc, _ = _registry()
    broker = RedisBroker(middlewares=[exc])
    stream = StreamSub("jobs", group="workers", consumer="one", no_ack=True)
    ran: list[str] = []
    broker.subscriber(stream=stream)(ran.append)
    async with TestRedisBroker(broker) as br:
        with pytest.raises(RedeliveryUnsupported, match="no_ack=True"):
            await br.publish("order-1", stream="jobs")
    assert ran == []


async def test_a_message_acked_on_receipt_is_refused() -> None:
    exc, taken = _registry()
    broker = RedisBroker(middlewares=[exc])
    stream = StreamSub("jobs", group="workers", consumer="one")
    ran: list[str] = []
    broker.subscriber(stream=stream, ack_policy=AckPolicy.ACK_FIRST)(ran.append)
    async with TestRedisBroker(broker) as br:
        with pytest.raises(RedeliveryUnsupported, match="ACK_FIRST"):
            await br.publish("order-1", stream="jobs")
    assert ran == []
    assert taken == []


@pytest.mark.parametrize("backend", ["nats", "rabbit", "redis"])
async def test_the_test_brokers_are_refused_for_they_imitate_no_redelivery(backend: str) -> None:
    exc, taken = _registry()
    ran: list[str] = []
    broker: Any
    if backend == "nats":
        broker = NatsBroker(middlewares=[exc])
        broker.subscriber("jobs", stream=JStream("jobs"), durable="jobs", pull_sub=True)(ran.append)
        client: Any = TestNatsBroker(broker)
        where: dict[str, Any] = {"subject": "jobs", "stream": "jobs"}
    elif backend == "rabbit":
        broker = RabbitBroker(middlewares=[exc])
        broker.subscriber("jobs")(ran.append)
        client, where = TestRabbitBroker(broker), {"queue": "jobs"}
    else:
        broker = RedisBroker(middlewares=[exc])
        broker.subscriber(stream=StreamSub("jobs", group="workers", consumer="one"))(ran.append)
        client, where = TestRedisBroker(broker), {"stream": "jobs"}
    async with client as br:
        with pytest.raises(RedeliveryUnsupported, match="Test"):
            await br.publish("order-1", **where)
    assert ran == []
    assert taken == []


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.broker
async def test_core_nats_is_refused_and_logged_by_faststream(
    require_service: Callable[[str], tuple[str, int]],
) -> None:
    host, port = require_service("nats")
    exc, taken = _registry()
    capture = _Records()
    logger = logging.getLogger(f"test.redelivery.{uuid.uuid4().hex[:8]}")
    logger.addHandler(capture)
    logger.propagate = False
    broker = NatsBroker(f"nats://{host}:{port}", middlewares=[exc], logger=logger)
    subject = f"excepthub-redelivery-core-{uuid.uuid4().hex[:12]}"
    ran: list[Any] = []
    broker.subscriber(subject)(ran.append)

    def refusals() -> list[BaseException]:
        return [
            r.exc_info[1]
            for r in capture.records
            if r.exc_info and isinstance(r.exc_info[1], RedeliveryUnsupported)
        ]

    async with broker:
        await broker.start()
        await broker.publish("order-1", subject)
        async with asyncio.timeout(WAIT):
            while not refusals():  # noqa: ASYNC110  # FastStream's log is the one signal
                await asyncio.sleep(0.02)
    [refusal] = refusals()
    assert "JetStream" in str(refusal)
    assert subject in str(refusal)
    assert ran == []
    assert taken == []


# -- RabbitMQ: the queue from the message where it can tell, else from the subscriber -----------

RABBIT = "amqp://guest:guest@127.0.0.1:5672/"


class _HidesTheSubscriber(BaseMiddleware):
    """FastStream as a release without the "handler_" context value would run a message: an
    outer middleware scoping it away, through FastStream's public `ContextRepo.scope`."""

    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        with self.context.scope("handler_", None):
            return await call_next(msg)


class _Rabbit:
    """One subscriber on a queue of its own, failing once per body, against RabbitMQ; what it
    ran, and what FastStream logged."""

    def __init__(self, *, exchange: bool, hidden: bool = False, **subscriber: Any) -> None:
        self.exc, self.taken = _registry(base_delay=0.05, jitter=0)
        self.name = f"excepthub-redelivery-setup-{uuid.uuid4().hex[:12]}"
        self.exchange = RabbitExchange(self.name, type=ExchangeType.DIRECT, auto_delete=True)
        self.capture = _Records()
        logger = logging.getLogger(f"test.redelivery.{self.name}")
        logger.addHandler(self.capture)
        logger.propagate = False
        middlewares: list[Any] = [_HidesTheSubscriber, self.exc] if hidden else [self.exc]
        self.broker = RabbitBroker(RABBIT, middlewares=middlewares, logger=logger)
        self.ran: list[str] = []
        queue = RabbitQueue(self.name, auto_delete=True, routing_key="orders")
        where = (queue, self.exchange) if exchange else (queue,)
        self.broker.subscriber(*where, **subscriber)(self.fails_once)
        self.through = {"exchange": self.exchange, "routing_key": "orders"} if exchange else {}

    async def fails_once(self, body: str) -> None:
        self.ran.append(body)
        if self.ran.count(body) == 1:
            raise ConnectionResetError(f"{body}: not yet")

    async def publish(self, body: str) -> None:
        await self.broker.publish(body, **(self.through or {"queue": self.name}))

    def refusals(self) -> list[BaseException]:
        return [
            r.exc_info[1]
            for r in self.capture.records
            if r.exc_info and isinstance(r.exc_info[1], RedeliveryUnsupported)
        ]

    async def remove(self) -> None:
        connection = await aio_pika.connect(RABBIT)
        async with connection:
            channel = await connection.channel()
            for queue in (self.name, f"{self.name}.excepthub-retry-1"):
                await channel.queue_delete(queue)


@pytest.fixture
def rabbit(require_service: Callable[[str], tuple[str, int]]) -> None:
    require_service("rabbitmq")


async def _until(done: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not done():  # noqa: ASYNC110  # the broker's round trip is the one signal
            await asyncio.sleep(0.02)


@pytest.mark.broker
@pytest.mark.usefixtures("rabbit")
@pytest.mark.parametrize(("exchange", "hidden"), [(False, False), (False, True), (True, False)])
async def test_rabbitmq_finds_the_queue_to_redeliver_to(exchange: bool, hidden: bool) -> None:
    """Through the default exchange the routing key is the queue, whatever FastStream shows;
    through another exchange the subscriber names it."""
    app = _Rabbit(exchange=exchange, hidden=hidden)
    try:
        async with app.broker:
            await app.broker.start()
            await app.publish("order-1")
            await _until(lambda: app.ran == ["order-1", "order-1"])
    finally:
        await app.remove()
    assert app.refusals() == []
    assert app.exc.get_error_stats() == {"ConnectionResetError": {"retried": 1}}
    assert app.taken == []


@pytest.mark.broker
@pytest.mark.usefixtures("rabbit")
async def test_rabbitmq_through_an_exchange_without_the_subscriber_shown_says_so() -> None:
    app = _Rabbit(exchange=True, hidden=True)
    try:
        async with app.broker:
            await app.broker.start()
            await app.publish("order-1")
            await _until(app.refusals)
    finally:
        await app.remove()
    [refusal] = app.refusals()
    assert f"exchange {app.name!r}" in str(refusal)
    assert "does not show middlewares the subscriber" in str(refusal)
    assert "through the default exchange" in str(refusal)
    assert "names none" not in str(refusal)  # never blamed on the subscriber's queue
    assert app.ran == []
    assert app.taken == []


@pytest.mark.broker
@pytest.mark.usefixtures("rabbit")
async def test_rabbitmq_consuming_with_no_ack_is_refused() -> None:
    app = _Rabbit(exchange=False, ack_policy=AckPolicy.ACK_FIRST)
    try:
        async with app.broker:
            await app.broker.start()
            await app.publish("order-1")
            await _until(app.refusals)
    finally:
        await app.remove()
    [refusal] = app.refusals()
    assert "AckPolicy.ACK_FIRST" in str(refusal)
    assert app.ran == []
    assert app.taken == []
