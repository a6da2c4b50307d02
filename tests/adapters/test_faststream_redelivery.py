"""Retries through the broker, against the real NATS JetStream, RabbitMQ and Redis on 127.0.0.1:
the broker redelivers and counts, the consumer is never held, a killed consumer loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import nats
import pytest
import redis.asyncio as aioredis
from faststream.redis import BinaryMessageFormatV1, RedisBroker, StreamSub

from excepthub import Retry
from excepthub_faststream import ExceptionMiddleware

from ._redelivery_app import URLS, Journal, build

pytestmark = [pytest.mark.anyio, pytest.mark.broker]
WAIT = 15  # seconds a test may wait for its messages to reach their end before it fails
DELAY = 0.2  # seconds between attempts: short, so that the suite stays fast
ROOT = Path(__file__).resolve().parents[2]
SERVICE = {"nats": "nats", "rabbit": "rabbitmq", "redis": "redis"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # FastStream runs on asyncio only


@pytest.fixture(params=["nats", "rabbit", "redis"])
def kind(request: pytest.FixtureRequest, require_service: Callable[[str], Any]) -> str:
    require_service(SERVICE[request.param])
    return str(request.param)


@pytest.fixture
async def name(kind: str) -> AsyncIterator[str]:
    """A queue or stream name no other test uses, removed from the broker afterwards."""
    name = f"excepthub-redelivery-{uuid.uuid4().hex[:12]}"
    if kind == "rabbit":  # the dead-letter queue, declared before anything is dead-lettered
        connection = await aio_pika.connect(URLS[kind])
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue(f"{name}.dead", durable=True)
    yield name
    await _remove(kind, name)


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal")


async def _publish(kind: str, name: str, *bodies: str) -> None:
    """Publish with the brokers' own clients: what a producer elsewhere would send."""
    if kind == "nats":
        client = await nats.connect(URLS[kind])
        try:
            js = client.jetstream()
            for body in bodies:
                await js.publish(name, body.encode(), stream=name)
        finally:
            await client.close()
    elif kind == "rabbit":
        connection = await aio_pika.connect(URLS[kind])
        async with connection:
            channel = await connection.channel()
            for body in bodies:
                message = aio_pika.Message(body.encode(), content_type="text/plain")
                await channel.default_exchange.publish(message, routing_key=name)
    else:
        redis = aioredis.from_url(URLS[kind])
        try:
            for body in bodies:
                await redis.xadd(name, {"__data__": body.encode()})
        finally:
            await redis.aclose()


async def _remove(kind: str, name: str) -> None:
    if kind == "nats":
        client = await nats.connect(URLS[kind])
        try:
            await client.jetstream().delete_stream(name)
        except nats.js.errors.NotFoundError:
            pass
        finally:
            await client.close()
    elif kind == "rabbit":
        connection = await aio_pika.connect(URLS[kind])
        async with connection:
            channel = await connection.channel()
            for queue in (name, f"{name}.dead", *(f"{name}.excepthub-retry-{n}" for n in (1, 2))):
                await channel.queue_delete(queue)
    else:
        redis = aioredis.from_url(URLS[kind])
        try:
            await redis.delete(name)
        finally:
            await redis.aclose()


async def _dead_lettered(name: str) -> list[bytes]:
    """The bodies in a RabbitMQ queue's dead-letter queue, taken off it."""
    connection = await aio_pika.connect(URLS["rabbit"])
    bodies = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{name}.dead", durable=True)
        while (message := await queue.get(fail=False)) is not None:
            bodies.append(message.body)
            await message.ack()
    return bodies


async def _until(journal: Journal, *lines: str) -> None:
    """Wait (bounded) until every line is in the journal."""
    for _ in range(round(WAIT / 0.02)):
        if all(line in journal.lines() for line in lines):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not in the journal after {WAIT}s: {lines}; it has {journal.lines()}")


def _bound() -> asyncio.Timeout:
    return asyncio.timeout(WAIT)


async def _settle() -> None:
    """Long enough for a redelivery that should not happen to show in the journal."""
    await asyncio.sleep(DELAY * 4)


def _deliveries(journal: Journal, key: str) -> int:
    return journal.count(f"delivery:{key}")


async def test_a_message_failing_twice_then_succeeding_is_processed_once_after_two_redeliveries(
    kind: str, name: str, journal: Journal
) -> None:
    broker = build(kind, name, attempts=3, delay=DELAY, journal=journal)
    async with broker:
        await broker.start()
        await _publish(kind, name, "flaky:2")
        await _until(journal, "done:flaky")
        await _settle()
    assert _deliveries(journal, "flaky") == 3
    assert journal.count("retried:flaky") == 2
    assert journal.count("done:flaky") == 1
    assert journal.count("handled:flaky") == 0


async def test_a_message_always_failing_ends_after_exactly_the_attempts(
    kind: str, name: str, journal: Journal
) -> None:
    broker = build(kind, name, attempts=3, delay=DELAY, journal=journal)
    async with broker:
        await broker.start()
        await _publish(kind, name, "poison:always")
        await _until(journal, "handled:poison")
        await _settle()
    assert _deliveries(journal, "poison") == 3
    assert journal.count("retried:poison") == 2
    assert journal.count("handled:poison") == 1  # the registry's handler, once, at the end
    if kind == "rabbit":  # its handler rejects: the queue's dead-letter exchange has it
        assert await _dead_lettered(name) == [b"poison:always"]


async def test_other_messages_flow_while_one_waits_for_its_redelivery(
    kind: str, name: str, journal: Journal
) -> None:
    backoff = 1.0  # long next to a message's processing: the others end inside it
    broker = build(kind, name, attempts=2, delay=backoff, journal=journal)
    async with broker:
        await broker.start()
        await _publish(kind, name, "slow:1", *(f"quick{n}:0" for n in range(5)))
        await _until(journal, *(f"done:quick{n}" for n in range(5)), "done:slow")
    lines = journal.lines()
    redelivered = [i for i, line in enumerate(lines) if line == "delivery:slow"][1]
    assert all(lines.index(f"done:quick{n}") < redelivered for n in range(5))
    assert _deliveries(journal, "slow") == 2


class Consumer:
    """The consumer as a process of its own, to be killed and started again."""

    def __init__(self, kind: str, name: str, journal: Journal) -> None:
        self.args = [kind, name, "3", str(DELAY * 5), str(journal.path)]
        self.journal = journal
        self.process: subprocess.Popen[bytes] | None = None

    def attempts(self, attempts: int) -> None:
        """How many attempts the consumer's policy makes (3 unless told)."""
        self.args[2] = str(attempts)

    async def start(self) -> None:
        ready = self.journal.count("ready") + 1
        self.process = subprocess.Popen(  # noqa: ASYNC220  # started, not waited on
            [sys.executable, "-m", "tests.adapters._redelivery_app", *self.args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        async with _bound():
            while self.journal.count("ready") < ready:
                assert self.process.poll() is None, "the consumer process ended on its own"
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=WAIT)


@pytest.fixture
def consumer(kind: str, name: str, journal: Journal) -> Iterator[Consumer]:
    consumer = Consumer(kind, name, journal)
    yield consumer
    consumer.kill()


async def test_a_consumer_killed_during_a_backoff_finishes_the_plan_after_a_restart(
    kind: str, name: str, journal: Journal, consumer: Consumer
) -> None:
    await consumer.start()
    await _publish(kind, name, "survivor:2")
    await _until(journal, "retried:survivor")  # given back to the broker: now it waits there
    consumer.kill()
    assert _deliveries(journal, "survivor") == 1
    await consumer.start()
    await _until(journal, "done:survivor")
    await _settle()
    assert _deliveries(journal, "survivor") == 3  # the broker's count went on: none added
    assert journal.count("retried:survivor") == 2
    assert journal.count("done:survivor") == 1


async def test_a_delivery_cut_short_by_a_crash_counts_as_an_attempt(
    kind: str, name: str, journal: Journal, consumer: Consumer
) -> None:
    consumer.attempts(2)
    await consumer.start()
    await _publish(kind, name, "stuck:always:hang")
    await _until(journal, "delivery:stuck")  # in the middle of its first attempt
    consumer.kill()
    await consumer.start()
    await _until(journal, "handled:stuck")
    await _settle()
    assert _deliveries(journal, "stuck") == 2  # the broker counted the cut one: the last is 2
    assert journal.count("retried:stuck") == 0
    assert journal.count("handled:stuck") == 1


@pytest.mark.parametrize("kind", ["redis"], indirect=True)
async def test_after_the_last_attempt_a_fallback_handler_replies_once(kind: str, name: str) -> None:
    exc = ExceptionMiddleware(
        logger=None,
        retry=Retry(on=(ConnectionError,), attempts=2, base_delay=DELAY, through_broker=True),
    )
    exc.add_handler(ConnectionError, publish=True)(lambda error: "fallback")
    broker = RedisBroker(URLS[kind], middlewares=[exc])
    deliveries: list[str] = []

    async def subscriber(body: str) -> str:
        deliveries.append(body)
        raise ConnectionResetError("still down")

    replies = broker.publisher(stream=f"{name}.out")
    replies(
        broker.subscriber(stream=StreamSub(name, group="workers", consumer="reader"))(subscriber)
    )
    claimer = StreamSub(name, group="workers", consumer="claimer", min_idle_time=200)
    replies(broker.subscriber(stream=claimer)(subscriber))
    redis = aioredis.from_url(URLS[kind])
    try:
        async with broker:
            await broker.start()
            await _publish(kind, name, "order-9")
            async with _bound():
                while not await redis.xlen(f"{name}.out"):  # noqa: ASYNC110  # the reply is it
                    await asyncio.sleep(0.02)
            await _settle()
            out = await redis.xrange(f"{name}.out")
            pending = await redis.xpending(name, "workers")
    finally:
        await redis.delete(f"{name}.out")
        await redis.aclose()
    assert deliveries == ["order-9", "order-9"]
    [(_, reply)] = out
    assert BinaryMessageFormatV1.parse(reply[b"__data__"])[0] == b"fallback"
    assert pending["pending"] == 0  # acked: the fallback ended it
    assert exc.get_error_stats() == {"ConnectionResetError": {"retried": 1, "published": 1}}
