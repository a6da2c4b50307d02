"""Retries through the broker: a transient error gives the message back to its broker.

With `Retry(through_broker=True)` on the registry, a transient failure does not wait in the
process: the message goes back to the broker for a later redelivery, the consumer takes the next
message at once, and the attempt number is read from the broker on each delivery, so that a
crash or a restart neither loses the count nor adds an attempt. After the last attempt the error
goes to the registry's handlers, as with in-process retries.

Per broker (the message class says which):

- NATS JetStream: `nak(delay=...)`; the attempt is `metadata.num_delivered`.
- RabbitMQ: a copy is published to a delay queue per retry (`<queue>.excepthub-retry-<n>`,
  declared on first use) with the delay as its per-message TTL; it dead-letters back to the
  queue, and the original is acked. The attempt is one more than the attempts the copy records
  (`x-excepthub-attempts`, never fewer than the delay queues' `x-death` counts), plus the quorum
  queue's `x-delivery-count` (a delivery cut short by a crash).
- Redis Streams (consumer groups): the entry stays pending, for a subscriber with
  `min_idle_time` to claim it; the attempt is its pending entry's delivery count.

Anything else (core NATS, a batch, a Redis channel or list, a message acked on receipt) is
refused with `RedeliveryUnsupported` at its subscriber's first message, before the subscriber
runs: never an in-process retry in its place.

What is read comes from the message itself (`msg.raw_message`'s public attributes) and from
FastStream's public context name "broker". Two facts only the subscriber holds (a RabbitMQ
queue reached through a named exchange, a Redis `StreamSub`'s `no_ack`) are read from the
context value "handler_", feature-detected (see `_subscriber`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol

from faststream.exceptions import NackMessage

from excepthub import RedeliveryUnsupported

if TYPE_CHECKING:
    from faststream import ContextRepo, StreamMessage
    from faststream.types import AsyncFuncAny

    import excepthub

__all__ = ["RedeliveryUnsupported", "call_with_redelivery", "redelivery_for"]

# The delay queues' names: `<queue>` + this + the retry's number.
_DELAY_QUEUE: Final = ".excepthub-retry-"
# The header a RabbitMQ copy carries: the attempts made before it was given back.
_ATTEMPTS: Final = "x-excepthub-attempts"


class _Broker(Protocol):
    """How one broker counts deliveries and takes a message back."""

    async def attempt(self, msg: StreamMessage[Any]) -> int | None:
        """This delivery's number (1 for the first), or None where the broker no longer
        holds the message (acked already by the subscriber): nothing to redeliver."""
        ...

    async def give_back(self, msg: StreamMessage[Any], delay: float) -> None:
        """Hand the message back for a redelivery in about `delay` seconds."""
        ...


async def call_with_redelivery(
    registry: excepthub.ExceptionMiddleware,
    broker: _Broker,
    call_next: AsyncFuncAny,
    msg: StreamMessage[Any],
) -> Any:
    """Run the subscriber call once; a transient error with attempts left gives the message
    back to the broker (ending this delivery as FastStream's `NackMessage` does), anything else
    propagates to the handlers."""
    policy = registry.retry
    assert policy is not None
    try:
        return await call_next(msg)
    except Exception as error:
        if not policy.is_transient(error):
            raise
        attempt = await broker.attempt(msg)
        if attempt is None or attempt >= policy.attempts:
            raise
        await broker.give_back(msg, policy.delay(attempt))
        await registry.record_retry(error, attempt, message=msg, correlation_id=msg.correlation_id)
        # settled already: FastStream's own nack finds it so, and nothing else runs
        raise NackMessage() from error


def redelivery_for(msg: StreamMessage[Any], context: ContextRepo) -> _Broker:
    """The broker's redelivery for this message, or `RedeliveryUnsupported` saying why not."""
    if msg.committed is not None:  # FastStream's AckPolicy.ACK_FIRST acks before middlewares run
        _acked_on_receipt()
    cls = type(msg)
    check = _CHECKS.get(cls) or _check_for(cls)
    return check(msg, context)


def _acked_on_receipt() -> NoReturn:
    raise RedeliveryUnsupported(
        "Retry(through_broker=True) needs the message unacknowledged while it runs, but "
        "its subscriber acks on receipt (AckPolicy.ACK_FIRST): drop that ack policy, or "
        "use Retry(through_broker=False) to retry in the process"
    )


def _subscriber(context: ContextRepo) -> Any:
    """The subscriber running this message, or None. FastStream names no public route to it
    for a middleware; it sets it as the context value "handler_" (which its own `Consumer`
    annotations read), so a release without it is met with None, never an error."""
    return context.get_local("handler_")


_Check = Callable[["StreamMessage[Any]", "ContextRepo"], _Broker]
_CHECKS: dict[type, _Check] = {}  # per message class: FastStream has a handful


def _check_for(cls: type) -> _Check:
    """The check for a message class, its broker's modules imported once, here."""
    module = cls.__module__
    check: _Check = _unsupported
    if module.startswith("faststream.nats."):
        from faststream.nats.message import NatsMessage

        check = _jetstream if issubclass(cls, NatsMessage) else _nats_batch
    elif module.startswith("faststream.rabbit."):
        check = _rabbit
    elif module.startswith("faststream.redis."):
        from faststream.redis.message import RedisStreamMessage

        check = _redis if issubclass(cls, RedisStreamMessage) else _not_a_stream
    _CHECKS[cls] = check
    return check


def _unsupported(msg: StreamMessage[Any], context: ContextRepo) -> _Broker:
    raise RedeliveryUnsupported(
        f"Retry(through_broker=True) works with NATS JetStream, RabbitMQ and Redis Streams; "
        f"this subscriber's messages are {type(msg).__name__}: use Retry(through_broker=False) "
        "to retry in the process"
    )


# -- NATS JetStream -------------------------------------------------------------------------


class _JetStream:
    __slots__ = ("context",)

    def __init__(self, context: ContextRepo) -> None:
        self.context = context

    async def attempt(self, msg: StreamMessage[Any]) -> int | None:
        return int(msg.raw_message.metadata.num_delivered)

    async def give_back(self, msg: StreamMessage[Any], delay: float) -> None:
        await msg.nack(delay=delay)  # type: ignore[call-arg]  # NatsMessage's own keyword
        # the nak is with the server before the retry counts as given back: the broker's
        # public connection (`NatsBroker.connection`), the one its subscribers read from
        await self.context.get("broker").connection.flush()


def _nats_batch(msg: StreamMessage[Any], context: ContextRepo) -> _Broker:
    raise RedeliveryUnsupported(
        f"Retry(through_broker=True) takes one NATS message at a time, not a "
        f"{type(msg).__name__}: subscribe without a batch, or use Retry(through_broker=False)"
    )


def _jetstream(msg: StreamMessage[Any], context: ContextRepo) -> _Broker:
    if not (msg.raw_message.reply or "").startswith("$JS.ACK."):
        raise RedeliveryUnsupported(
            "Retry(through_broker=True) on NATS needs JetStream, which redelivers and counts; "
            f"subject {msg.raw_message.subject!r} came through core NATS (or FastStream's "
            "TestNatsBroker, which does not imitate JetStream): subscribe with "
            "`stream=JStream(...)` and a durable consumer, or use Retry(through_broker=False)"
        )
    return _JetStream(context)


# -- RabbitMQ -------------------------------------------------------------------------------


class _RabbitDelayQueues:
    __slots__ = ("queue",)

    def __init__(self, queue: str) -> None:
        self.queue = queue

    async def attempt(self, msg: StreamMessage[Any]) -> int | None:
        headers = msg.raw_message.headers or {}
        prefix = self.queue + _DELAY_QUEUE
        waited = sum(
            int(death.get("count", 0))
            for death in headers.get("x-death") or ()
            if isinstance(death, dict)
            and death.get("reason") == "expired"
            and str(death.get("queue", "")).startswith(prefix)
        )
        # the copy's own record as well: a broker that drops a client's x-death still counts
        done = headers.get(_ATTEMPTS)
        crashed = headers.get("x-delivery-count")  # a quorum queue's count since the last wait
        done = max(waited, done if isinstance(done, int) else 0)
        return 1 + done + (crashed if isinstance(crashed, int) else 0)

    async def give_back(self, msg: StreamMessage[Any], delay: float) -> None:
        from aio_pika import DeliveryMode, Message

        raw = msg.raw_message
        attempt = await self.attempt(msg)
        delay_queue = f"{self.queue}{_DELAY_QUEUE}{attempt}"
        channel = raw.channel
        await channel.queue_declare(  # the same arguments each time: declaring is idempotent
            delay_queue,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": self.queue,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )
        headers = dict(raw.headers or {})
        headers.pop("x-delivery-count", None)  # the queue's own count starts again
        headers[_ATTEMPTS] = attempt
        copy = Message(
            raw.body,
            headers=headers,
            content_type=raw.content_type,
            content_encoding=raw.content_encoding,
            delivery_mode=DeliveryMode.PERSISTENT,
            priority=raw.priority,
            correlation_id=raw.correlation_id,
            reply_to=raw.reply_to,
            expiration=max(delay, 0.001),  # a zero TTL would be no TTL
            message_id=raw.message_id,
            timestamp=raw.timestamp,
            type=raw.type,
            app_id=raw.app_id,
        )
        await channel.basic_publish(
            copy.body, exchange="", routing_key=delay_queue, properties=copy.properties
        )
        await msg.ack()  # after the copy is with the broker: a crash between repeats, never loses
        # a round trip on the same channel: the server has taken the ack once it answers
        await channel.queue_declare(delay_queue, passive=True)


def _rabbit(msg: StreamMessage[Any], context: ContextRepo) -> _Broker:
    raw = msg.raw_message
    if type(raw).__module__.startswith("faststream.rabbit.testing"):
        raise RedeliveryUnsupported(
            "Retry(through_broker=True) needs RabbitMQ's own queues, which FastStream's "
            "TestRabbitBroker does not imitate: test it against RabbitMQ, or use "
            "Retry(through_broker=False) under the test broker"
        )
    if raw.locked:  # aio-pika's own mark: consumed with no_ack, FastStream's ACK_FIRST here
        _acked_on_receipt()
    if not raw.exchange and raw.routing_key:  # the default exchange routes by queue name
        return _RabbitDelayQueues(raw.routing_key)
    subscriber = _subscriber(context)  # another exchange: only the subscriber knows its queue
    if subscriber is None:
        raise RedeliveryUnsupported(
            "Retry(through_broker=True) on RabbitMQ needs the queue the message came from (its "
            f"delay queues dead-letter back to it); it came through exchange {raw.exchange!r} "
            f"with routing key {raw.routing_key!r}, "
            "and this FastStream release does not show middlewares the subscriber, nor so its "
            "queue: publish to the queue through the default exchange, or use "
            "Retry(through_broker=False)"
        )
    queue = getattr(subscriber, "queue", None)
    name = getattr(queue, "name", None)
    routing = getattr(subscriber, "routing", None)
    if not name or routing is None or queue is None:
        raise RedeliveryUnsupported(
            "Retry(through_broker=True) on RabbitMQ needs the subscriber's queue by name (its "
            "delay queues dead-letter back to it); this subscriber names none: give it a "
            "named RabbitQueue, or use Retry(through_broker=False)"
        )
    prefix = routing().removesuffix(queue.routing())  # a router's prefix, as FastStream adds it
    return _RabbitDelayQueues(prefix + name)


# -- Redis Streams --------------------------------------------------------------------------


class _RedisPending:
    __slots__ = ()

    async def attempt(self, msg: StreamMessage[Any]) -> int | None:
        raw = msg.raw_message
        [entry_id] = raw["message_ids"]
        entries = await msg.consumer.xpending_range(  # type: ignore[attr-defined]
            name=raw["channel"],
            groupname=msg.group,  # type: ignore[attr-defined]
            min=entry_id,
            max=entry_id,
            count=1,
        )
        return int(entries[0]["times_delivered"]) if entries else None

    async def give_back(self, msg: StreamMessage[Any], delay: float) -> None:
        await msg.nack()  # left pending: a `min_idle_time` subscriber claims it after that idle


_REDIS_PENDING: Final = _RedisPending()


def _not_a_stream(msg: StreamMessage[Any], context: ContextRepo) -> _Broker:
    raise RedeliveryUnsupported(
        "Retry(through_broker=True) on Redis needs a stream read by a consumer group, whose "
        f"pending entries count deliveries; this subscriber reads {type(msg).__name__}: "
        "subscribe with StreamSub(name, group=..., consumer=...), or use "
        "Retry(through_broker=False)"
    )


def _redis(msg: StreamMessage[Any], context: ContextRepo) -> _Broker:
    # Only the subscriber's StreamSub says no_ack (nothing on the message); without it, such
    # an entry is found not pending at its first failure, which then goes to the handlers.
    if getattr(getattr(_subscriber(context), "stream_sub", None), "no_ack", False):
        raise RedeliveryUnsupported(
            "Retry(through_broker=True) on Redis needs the entry pending while it runs, but "
            "this StreamSub reads with no_ack=True: drop no_ack, or use Retry(through_broker="
            "False)"
        )
    if msg.group is None:  # type: ignore[attr-defined]
        raise RedeliveryUnsupported(
            "Retry(through_broker=True) on Redis needs a stream read by a consumer group, "
            "whose pending entries count deliveries; this stream is read without one (or "
            "through FastStream's TestRedisBroker, which gives none): subscribe with "
            "StreamSub(name, group=..., consumer=...), or use Retry(through_broker=False)"
        )
    return _REDIS_PENDING
