"""FastStream's own `ExceptionMiddlewareTestcase` (tests/brokers/base/middlewares.py in the
FastStream repository; its sdist ships no tests), ported as parity scenarios: each runs through
`faststream.ExceptionMiddleware` and through `excepthub_faststream.ExceptionMiddleware`, on
Redis, RabbitMQ and NATS JetStream, in memory and on the real servers, and must show the same
results, which are also checked against what FastStream's test asserts. Then the errors no
handler takes: they go on exactly as without excepthub (the same acknowledgement, FastStream's
own log record once, the same exception raised to an in-memory publisher, groups untouched).

Not ported: `test_exception_middleware_init_handler_same` and
`test_exception_middleware_init_publish_handler_same`, which compare FastStream's private
`_handlers` / `_publish_handlers` attributes (see docs/compatibility.md)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import faststream
import nats
import pytest
import redis.asyncio as aioredis
from faststream import AckPolicy, Context, StreamMessage
from faststream.exceptions import AckMessage, NackMessage, RejectMessage, SkipMessage
from faststream.nats import JStream, NatsBroker, TestNatsBroker
from faststream.rabbit import RabbitBroker, RabbitQueue, TestRabbitBroker
from faststream.redis import RedisBroker, StreamSub, TestRedisBroker

import excepthub_faststream

pytestmark = pytest.mark.anyio

MIDDLEWARES = {
    "faststream": faststream.ExceptionMiddleware,
    "excepthub": excepthub_faststream.ExceptionMiddleware,
}
WAIT = 10  # seconds a run on a real broker may take to settle before the test fails
BARRIER = "barrier"  # published after the inputs: once it is through, so is everything before it


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # FastStream runs on asyncio only


# -- the stage: one scenario on one broker --------------------------------------------------


@dataclass(frozen=True)
class Family:
    """A broker kind: its classes, its service on 127.0.0.1, how it names a destination."""

    name: str
    broker: Callable[..., Any]
    test_client: Callable[[Any], Any]
    service: str
    scheme: str


FAMILIES = {
    "redis": Family("redis", RedisBroker, TestRedisBroker, "redis", "redis://{}:{}"),
    "rabbit": Family(
        "rabbit", RabbitBroker, TestRabbitBroker, "rabbitmq", "amqp://guest:guest@{}:{}/"
    ),
    "nats": Family("nats", NatsBroker, TestNatsBroker, "nats", "nats://{}:{}"),
}


@dataclass
class Consumer:
    """A subscriber of the scenario: what it received, and where it publishes its result."""

    messages: list[tuple[str, StreamMessage[Any]]] = field(default_factory=list)
    publishes_to: str | None = None


class Stage:
    """One run of a scenario on one broker, in memory or real, with destinations of its own;
    it collects everything the run shows from outside."""

    def __init__(self, family: Family, url: str | None, middleware: Any) -> None:
        self.family = family
        self.url = url  # None: in memory
        self.middleware = middleware
        self.prefix = f"excepthub_{uuid.uuid4().hex[:12]}"
        self.stream = JStream(self.prefix, subjects=[f"{self.prefix}.>"])
        self.notes: list[Any] = []
        self.raised: list[Any] = []
        self.consumers: dict[str, Consumer] = {}
        self.sinks: dict[str, list[str]] = {}
        self.records: list[logging.LogRecord] = []
        self.settles = True  # False: some input is never acked nor rejected (SkipMessage)

    def note(self, *event: Any) -> None:
        self.notes.append(event)

    def name(self, short: str) -> str:
        return f"{self.prefix}.{short}"

    def _source(self, short: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Where a subscriber reads `short`: a queue, a JetStream subject, a Redis stream read
        by a consumer group (acknowledged, as queues are)."""
        if self.family.name == "rabbit":
            return (RabbitQueue(self.name(short), auto_delete=True),), {}
        if self.family.name == "nats":
            return (self.name(short),), {"stream": self.stream}
        return (), {"stream": StreamSub(self.name(short), group="excepthub", consumer="1")}

    def _target(self, short: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Where a publisher writes `short` (for `publisher()` and `publish()` alike)."""
        if self.family.name == "redis":
            return (), {"stream": self.name(short)}
        if self.family.name == "nats":
            return (self.name(short),), {"stream": self.prefix}
        return (self.name(short),), {}

    def broker(self, **options: Any) -> Any:
        url = () if self.url is None else (self.url,)
        broker = self.family.broker(*url, middlewares=[self.middleware], **options)
        self._broker = broker
        return broker

    def consume(
        self,
        short: str,
        act: Callable[[str], Any],
        *,
        publish_to: str | None = None,
        **options: Any,
    ) -> None:
        """A subscriber on `short` that hands each body to `act` (the barrier passes through),
        publishing its result to `publish_to`."""
        consumer = self.consumers[short] = Consumer(publishes_to=publish_to)
        args, kwargs = self._source(short)

        async def subscriber(body: str, message: StreamMessage[Any] = Context()) -> Any:
            consumer.messages.append((body, message))
            return BARRIER if body == BARRIER else act(body)

        if publish_to is not None:
            self.sink(publish_to)
            target, target_kwargs = self._target(publish_to)
            subscriber = self._broker.publisher(*target, **target_kwargs)(subscriber)
        self._broker.subscriber(*args, **kwargs, **options)(subscriber)

    def sink(self, short: str) -> None:
        if short in self.sinks:
            return
        bodies = self.sinks[short] = []
        args, kwargs = self._source(short)

        async def sink(body: str) -> None:
            bodies.append(body)

        self._broker.subscriber(*args, **kwargs)(sink)

    async def run(self, inputs: list[tuple[str, str]]) -> dict[str, Any]:
        """Publish each `(body, destination)`, then the barriers; what the run showed."""
        broker = self._broker
        if self.url is None:
            async with self.family.test_client(broker) as br:
                for body, short in inputs:
                    try:
                        await _publish(br, body, self._target(short))
                    except Exception as error:
                        self.raised.append(_shape(error))
                calls = broker.config.logger.logger.logger.log.call_args_list  # the mock's
                errors = [c.kwargs["exc_info"] for c in calls if c.args[0] >= logging.ERROR]
        else:
            capture = _Capture(self.records)
            try:
                async with broker:
                    await broker.start()
                    broker.config.logger.logger.logger.addHandler(capture)
                    for body, short in inputs:
                        await _publish(broker, body, self._target(short))
                    for short in self.consumers:
                        await _publish(broker, BARRIER, self._target(short))
                    await self._settled(len(inputs))
                    # read now: closing the connection may log errors of its own
                    errors = [r.exc_info[1] for r in self.records if r.exc_info and r.levelno >= 40]
                    broker.config.logger.logger.logger.removeHandler(capture)
            finally:
                await self._clean_up()
        return {
            "notes": self.notes,
            "raised": self.raised,
            "logged": sorted(_shape(error) for error in errors),
            "acks": {
                body: message.committed and message.committed.value
                for consumer in self.consumers.values()
                for body, message in consumer.messages
                if body != BARRIER
            },
            "published": {
                short: sorted(b for b in bodies if b != BARRIER)
                for short, bodies in self.sinks.items()
            },
        }

    async def _settled(self, inputs: int) -> None:
        """Wait, bounded, until the barriers are through and every input is done: processed
        (FastStream's "Processed" record) and, unless skipped, acked or rejected."""
        fed = {c.publishes_to for c in self.consumers.values()} - {None}
        expected = inputs + len(self.consumers) + len(fed)

        def done() -> bool:
            through = all(
                any(body == BARRIER for body, _ in c.messages) for c in self.consumers.values()
            ) and all(BARRIER in self.sinks[short] for short in fed if short is not None)
            processed = sum(r.getMessage() == "Processed" for r in self.records)
            committed = not self.settles or all(
                m.committed is not None for c in self.consumers.values() for _, m in c.messages
            )
            return through and processed >= expected and committed

        try:
            async with asyncio.timeout(WAIT):
                while not done():  # noqa: ASYNC110 (acks and log records signal nothing: polled)
                    await asyncio.sleep(0.01)
        except TimeoutError:
            pytest.fail(f"the run on {self.family.name} did not settle within {WAIT} s")

    async def _clean_up(self) -> None:
        """Drop what the run left on the server (Rabbit's queues delete themselves)."""
        assert self.url is not None
        if self.family.name == "nats":
            client = await nats.connect(self.url)
            try:
                await client.jetstream().delete_stream(self.prefix)
            finally:
                await client.close()
        elif self.family.name == "redis":
            redis = aioredis.from_url(self.url)
            try:
                await redis.delete(*[self.name(short) for short in [*self.consumers, *self.sinks]])
            finally:
                await redis.aclose()


async def _publish(broker: Any, body: str, where: tuple[tuple[Any, ...], dict[str, Any]]) -> None:
    args, kwargs = where
    await broker.publish(body, *args, **kwargs)


class _Capture(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.captured = records

    def emit(self, record: logging.LogRecord) -> None:
        self.captured.append(record)


def _shape(error: BaseException) -> Any:
    """An exception as a test compares it: its class, and its leaves' for a group."""
    if isinstance(error, BaseExceptionGroup):
        return (type(error).__name__, tuple(_shape(leaf) for leaf in error.exceptions))
    return type(error).__name__


# -- the scenarios --------------------------------------------------------------------------

Scenario = Callable[[Stage, Any], Awaitable[dict[str, Any]]]
Expectation = Callable[[dict[str, Any], str, bool], bool | None]
SCENARIOS: dict[str, tuple[Scenario, Expectation, bool]] = {}


def scenario(expect: Expectation, *, real: bool = True) -> Callable[[Scenario], Scenario]:
    """Register a scenario with what FastStream itself shows for it (`expect(results, family,
    real)`: a bool, or asserts);
    `real=False`: in memory only (a nack on a real server redelivers without end)."""

    def register(func: Scenario) -> Scenario:
        SCENARIOS[func.__name__] = (func, expect, real)
        return func

    return register


def _raise(error: BaseException) -> Callable[[str], Any]:
    def act(body: str) -> Any:
        raise error

    return act


# ExceptionMiddlewareTestcase, one scenario per test


@scenario(lambda r, family, real: r["published"] == {"out": ["value"]})
async def exception_middleware_default_msg(stage: Stage, cls: Any) -> dict[str, Any]:
    mid = stage.middleware

    @mid.add_handler(ValueError, publish=True)
    async def value_error_handler(exc: Exception) -> str:
        return "value"

    stage.broker(apply_types=True)
    stage.consume("in", _raise(ValueError()), publish_to="out")
    return await stage.run([("a", "in")])


@scenario(lambda r, family, real: r["notes"] == [("handler",)] and r["published"] == {"out": []})
async def exception_middleware_skip_msg(stage: Stage, cls: Any) -> dict[str, Any]:
    mid = stage.middleware
    stage.settles = False

    @mid.add_handler(ValueError, publish=True)
    async def value_error_handler(exc: Exception) -> None:
        stage.note("handler")
        raise SkipMessage

    stage.broker()
    stage.consume("in", _raise(ValueError()), publish_to="out")
    return await stage.run([("a", "in")])


@scenario(lambda r, family, real: r["notes"] == [] and r["logged"] == [])
async def exception_middleware_do_not_catch_skip_msg(stage: Stage, cls: Any) -> dict[str, Any]:
    mid = stage.middleware
    stage.settles = False

    @mid.add_handler(Exception)
    async def value_error_handler(exc: Exception) -> None:
        stage.note("handler")

    stage.broker()
    stage.consume("in", _raise(SkipMessage()))
    return await stage.run([("a", "in")])


@scenario(
    lambda r, family, real: (
        r["notes"] == [("handler",)]
        and r["published"] == {"out": []}
        and r["logged"] == ["ValueError"]
    )
)
async def exception_middleware_reraise(stage: Stage, cls: Any) -> dict[str, Any]:
    mid = stage.middleware

    @mid.add_handler(ValueError, publish=True)
    async def value_error_handler(exc: Exception) -> None:
        stage.note("handler")
        raise exc

    stage.broker()
    stage.consume("in", _raise(ValueError()), publish_to="out")
    return await stage.run([("a", "in")])


@scenario(lambda r, family, real: r["published"] == {"out": ["value", "zero"]})
async def exception_middleware_different_handler(stage: Stage, cls: Any) -> dict[str, Any]:
    mid = stage.middleware

    @mid.add_handler(ZeroDivisionError, publish=True)
    async def zero_error_handler(exc: Exception) -> str:
        return "zero"

    @mid.add_handler(ValueError, publish=True)
    async def value_error_handler(exc: Exception) -> str:
        return "value"

    stage.broker(apply_types=True)
    stage.consume("in", _raise(ZeroDivisionError()), publish_to="out")
    stage.consume("in1", _raise(ValueError()), publish_to="out")
    return await stage.run([("a", "in"), ("b", "in1")])


@scenario(lambda r, family, real: r["notes"] == [("handler", "ValueError")] and r["logged"] == [])
async def exception_middleware_decoder_error(stage: Stage, cls: Any) -> dict[str, Any]:
    mid = stage.middleware

    async def decoder(msg: Any, original_decoder: Any) -> Any:
        if msg.body != BARRIER.encode():
            raise ValueError
        return await original_decoder(msg)

    @mid.add_handler(ValueError)
    async def value_error_handler(exc: Exception) -> None:
        stage.note("handler", type(exc).__name__)

    stage.broker(decoder=decoder)
    stage.consume("in", _raise(ZeroDivisionError()))
    return await stage.run([("a", "in")])


class ExcAError(Exception):
    pass


class ExcBError(ExcAError):
    pass


@scenario(lambda r, family, real: r["published"] == {"out": ["child"]})
async def exception_middleware_mro_resolution(stage: Stage, cls: Any) -> dict[str, Any]:
    mid = stage.middleware

    @mid.add_handler(ExcAError, publish=True)  # the parent's handler registered first
    async def handle_a(exc: Exception) -> str:
        return "parent"

    @mid.add_handler(ExcBError, publish=True)
    async def handle_b(exc: Exception) -> str:
        return "child"

    stage.broker(apply_types=True)
    stage.consume("in", _raise(ExcBError()), publish_to="out")
    return await stage.run([("a", "in")])


# What no handler takes goes on exactly as without excepthub


def _unhandled(logged: Any, ack: str) -> Expectation:
    def expect(results: dict[str, Any], family: str, real: bool) -> None:
        assert results["logged"] == [logged]  # FastStream's own record, once
        assert results["acks"] == {"a": ack}
        assert results["raised"] == ([] if real else [logged])  # to an in-memory publisher
        assert results["notes"] == []

    return expect


@scenario(_unhandled("ValueError", "REJECTED"))
async def an_error_with_nothing_registered_goes_on_as_without_a_middleware(
    stage: Stage, cls: Any
) -> dict[str, Any]:
    stage.broker()
    stage.consume("in", _raise(ValueError("no handler")), publish_to="out")
    return await stage.run([("a", "in")])


@scenario(_unhandled("ValueError", "REJECTED"))
async def an_error_no_handler_takes_goes_on_past_the_other_handlers(
    stage: Stage, cls: Any
) -> dict[str, Any]:
    mid = stage.middleware
    mid.add_handler(KeyError)(lambda exc: stage.note("side effect"))
    mid.add_handler(KeyError, publish=True)(lambda exc: stage.note("fallback"))
    stage.broker()
    stage.consume("in", _raise(ValueError("not a KeyError")), publish_to="out")
    return await stage.run([("a", "in")])


@scenario(_unhandled("ValueError", "ACKED"))
async def an_error_no_handler_takes_meets_the_ack_policy(stage: Stage, cls: Any) -> dict[str, Any]:
    stage.broker()
    stage.consume("in", _raise(ValueError()), ack_policy=AckPolicy.ACK)
    return await stage.run([("a", "in")])


@scenario(_unhandled("ValueError", "NACKED"), real=False)
async def an_error_no_handler_takes_is_nacked_under_nack_on_error(
    stage: Stage, cls: Any
) -> dict[str, Any]:
    stage.broker()
    stage.consume("in", _raise(ValueError()), ack_policy=AckPolicy.NACK_ON_ERROR)
    return await stage.run([("a", "in")])


@scenario(_unhandled("ValueError", "REJECTED"))
async def an_error_a_side_effect_handler_re_raises_goes_on_and_is_logged_once(
    stage: Stage, cls: Any
) -> dict[str, Any]:
    mid = stage.middleware
    calls: list[str] = []

    @mid.add_handler(ValueError)
    async def declines(exc: Exception) -> None:
        calls.append("declined")
        raise exc

    stage.broker()
    stage.consume("in", _raise(ValueError()), publish_to="out")
    results = await stage.run([("a", "in")])
    assert calls == ["declined"]
    return results


@scenario(_unhandled(("ExceptionGroup", ("ValueError", "TypeError")), "REJECTED"))
async def a_group_with_no_leaf_taken_goes_on_as_it_came(stage: Stage, cls: Any) -> dict[str, Any]:
    mid = stage.middleware
    mid.add_handler(KeyError)(lambda exc: stage.note("side effect"))
    stage.broker()
    group = ExceptionGroup("two", [ValueError("v"), TypeError("t")])
    stage.consume("in", _raise(group), publish_to="out")
    return await stage.run([("a", "in")])


@scenario(
    lambda r, family, real: r["notes"] == [] and r["logged"] == ["ValueError"] and r["acks"] == {}
)
async def a_parser_error_no_handler_takes_goes_on_as_without_a_middleware(
    stage: Stage, cls: Any
) -> dict[str, Any]:
    mid = stage.middleware
    mid.add_handler(KeyError)(lambda exc: stage.note("side effect"))

    async def parser(msg: Any, original_parser: Any) -> Any:
        parsed = await original_parser(msg)
        if parsed.body != BARRIER.encode():
            raise ValueError("cannot parse")
        return parsed

    stage.broker()
    stage.consume("in", _raise(ZeroDivisionError()), parser=parser)
    return await stage.run([("a", "in")])


def _steered(ack: str) -> Expectation:
    def expect(results: dict[str, Any], family: str, real: bool) -> None:
        assert results["notes"] == []  # the broad handlers never see FastStream's control flow
        assert results["acks"] == {"a": ack}
        assert results["published"] == {"out": []}
        assert results["logged"] == []

    return expect


def _control_flow(error: Exception) -> Scenario:
    async def run(stage: Stage, cls: Any) -> dict[str, Any]:
        mid = stage.middleware
        mid.add_handler(Exception)(lambda exc: stage.note("side effect"))
        mid.add_handler(Exception, publish=True)(lambda exc: stage.note("fallback"))
        stage.broker()
        stage.consume("in", _raise(error), publish_to="out")
        return await stage.run([("a", "in")])

    return run


for _error, _status, _real in [
    (AckMessage(), "ACKED", True),
    (RejectMessage(), "REJECTED", True),
    (NackMessage(), "NACKED", False),
]:
    _name = f"{type(_error).__name__}_passes_broad_handlers_by_to_faststream"
    SCENARIOS[_name] = (_control_flow(_error), _steered(_status), _real)


# -- the test -------------------------------------------------------------------------------


def _cases() -> list[Any]:
    cases = []
    for name, (_, _, real_too) in sorted(SCENARIOS.items()):
        for family in FAMILIES:
            cases.append(pytest.param(name, family, False, id=f"{name}-{family}-memory"))
            if real_too:
                marks = pytest.mark.broker
                cases.append(pytest.param(name, family, True, id=f"{name}-{family}", marks=marks))
    return cases


@pytest.fixture
def url_of(require_service: Callable[[str], tuple[str, int]]) -> Callable[[Family], str]:
    def url(family: Family) -> str:
        return family.scheme.format(*require_service(family.service))

    return url


@pytest.mark.parametrize(("name", "family", "real"), _cases())
async def test_same_results_as_faststreams_own_middleware(
    name: str, family: str, real: bool, url_of: Callable[[Family], str]
) -> None:
    run, expect, _ = SCENARIOS[name]
    kind = FAMILIES[family]
    url = url_of(kind) if real else None
    results = {}
    for label, cls in MIDDLEWARES.items():
        stage = Stage(kind, url, cls())
        results[label] = await run(stage, cls)
    assert results["excepthub"] == results["faststream"]
    met = expect(results["faststream"], family, real)  # both are what FastStream's own test asserts
    assert met is None or met, results["faststream"]
