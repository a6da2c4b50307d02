"""Retries through the broker where the broker cannot redeliver with a count: a clear error at
the subscriber's first message, before the subscriber runs, that no handler hides; never an
in-process retry in its place."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, TestNatsBroker
from faststream.rabbit import RabbitBroker, TestRabbitBroker
from faststream.redis import RedisBroker, StreamSub, TestRedisBroker

from excepthub import Retry
from excepthub_faststream import ExceptionMiddleware, RedeliveryUnsupported

pytestmark = pytest.mark.anyio
WAIT = 10  # seconds a test may wait for a broker round trip before it fails


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # FastStream runs on asyncio only


def _registry() -> tuple[ExceptionMiddleware, list[BaseException]]:
    """A registry retrying through the broker, with a handler that would take anything."""
    taken: list[BaseException] = []
    exc = ExceptionMiddleware(logger=None, retry=Retry(on=(ConnectionError,), through_broker=True))
    exc.add_handler(Exception)(taken.append)
    return exc, taken


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
    exc, _ = _registry()
    broker = RabbitBroker(middlewares=[exc])
    ran: list[str] = []
    broker.subscriber("jobs", ack_policy=AckPolicy.ACK_FIRST)(ran.append)
    async with TestRabbitBroker(broker) as br:
        with pytest.raises(RedeliveryUnsupported, match="ACK_FIRST"):
            await br.publish("order-1", "jobs")
    assert ran == []


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
