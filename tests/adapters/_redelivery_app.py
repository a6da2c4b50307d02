"""A FastStream consumer retrying through its broker, for the redelivery tests: built in the
test's process, or run alone so that a test can kill it (`python -m tests.adapters.
_redelivery_app KIND NAME ATTEMPTS DELAY JOURNAL`).

A message's body is `<key>:<failures>`: the subscriber fails with `ConnectionResetError` on the
first `<failures>` deliveries of that key (`always`: on every one); `<key>:<failures>:hang`
also never ends its first delivery, for the test to kill the process in the middle of it.
Every delivery, retry, end and handled error is a line in the journal file, which outlives
the process.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from faststream.exceptions import RejectMessage
from faststream.nats import ConsumerConfig, JStream, NatsBroker
from faststream.rabbit import QueueType, RabbitBroker, RabbitQueue
from faststream.redis import RedisBroker, StreamSub

import excepthub_faststream
from excepthub import ErrorEvent, ExceptionMiddleware, Retry

ACK_WAIT = 5  # seconds JetStream waits for an answer before it redelivers on its own
URLS = {
    "nats": "nats://127.0.0.1:4222",
    "rabbit": "amqp://guest:guest@127.0.0.1:5672/",
    "redis": "redis://127.0.0.1:6379",
}


class Journal:
    """Lines appended to a file, read back by the test (and by the subscriber, to count)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, line: str) -> None:
        with self.path.open("a") as file:
            file.write(line + "\n")

    def lines(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []

    def count(self, line: str) -> int:
        return self.lines().count(line)


def build(kind: str, name: str, *, attempts: int, delay: float, journal: Journal) -> Any:
    """A broker of `kind` whose one subscriber follows the body's plan, its retries given back
    to the broker (`attempts` in all, `delay` seconds apart); `name` names every queue/stream."""
    exc = ExceptionMiddleware(
        logger=None,
        retry=Retry(
            on=(ConnectionError,),
            attempts=attempts,
            base_delay=delay,
            multiplier=1,
            jitter=0,
            through_broker=True,
        ),
    )

    @exc.on_error
    def journal_retries(event: ErrorEvent) -> None:
        if event.outcome == "retried":
            journal.write(f"retried:{_key(event.context['message'].body)}")

    @exc.add_handler(ConnectionError)
    def after_the_last_attempt(error: ConnectionError, message: Any) -> None:
        journal.write(f"handled:{_key(message.body)}")
        if kind == "rabbit":
            raise RejectMessage  # to the queue's dead-letter exchange

    async def subscriber(body: str) -> None:
        key, failures, *hang = body.split(":")
        journal.write(f"delivery:{key}")
        if hang and journal.count(f"delivery:{key}") == 1:
            await asyncio.Event().wait()  # the first delivery never ends: the process is killed
        if failures == "always" or journal.count(f"delivery:{key}") <= int(failures):
            raise ConnectionResetError(f"{key} is not reachable yet")
        journal.write(f"done:{key}")

    middlewares = [excepthub_faststream.middleware(exc)]
    broker: Any
    if kind == "nats":
        broker = NatsBroker(URLS[kind], middlewares=middlewares)
        broker.subscriber(
            name,
            stream=JStream(name, subjects=[name]),
            durable=name,
            pull_sub=True,
            config=ConsumerConfig(max_deliver=attempts, ack_wait=ACK_WAIT),
        )(subscriber)
    elif kind == "rabbit":
        broker = RabbitBroker(URLS[kind], middlewares=middlewares)
        queue = RabbitQueue(
            name,
            queue_type=QueueType.QUORUM,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": f"{name}.dead",
            },
        )
        broker.subscriber(queue)(subscriber)
    else:
        broker = RedisBroker(URLS[kind], middlewares=middlewares)
        broker.subscriber(stream=StreamSub(name, group="workers", consumer="reader"))(subscriber)
        idle_ms = max(1, round(delay * 1000))
        claimer = StreamSub(
            name, group="workers", consumer="claimer", min_idle_time=idle_ms, polling_interval=20
        )
        broker.subscriber(stream=claimer)(subscriber)
    return broker


def _key(body: bytes) -> str:
    return body.decode().split(":")[0]


async def _serve(kind: str, name: str, attempts: int, delay: float, journal: Journal) -> None:
    broker = build(kind, name, attempts=attempts, delay=delay, journal=journal)
    async with broker:
        await broker.start()
        journal.write("ready")
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    kind, name, attempts, delay, path = sys.argv[1:]
    asyncio.run(_serve(kind, name, int(attempts), float(delay), Journal(Path(path))))
