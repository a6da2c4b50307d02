"""excepthub_faststream.testing: the reply a requester received (body bytes and headers), with
the TestBroker and against real Redis, so that "this secret reaches no requester" is one
assertion; and recording the errors of a consumer task started before the test's block."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from faststream.redis import RedisBroker, TestRedisBroker

import excepthub_faststream
from excepthub import ExceptionMiddleware
from excepthub.testing import recording
from excepthub_faststream.testing import Received, request

pytestmark = pytest.mark.anyio
SECRET = 'password="hunter2"'


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # FastStream runs on asyncio only


class Masked(Exception):
    pass


class Leaky(Exception):
    pass


class Unhandled(Exception):
    pass


def registry() -> ExceptionMiddleware:
    exc = ExceptionMiddleware(logger=None)

    @exc.add_handler(Masked, publish=True)
    def masked(error: Masked) -> dict[str, str]:
        return {"error": "payment failed"}

    @exc.add_handler(Leaky, publish=True)
    def leaky(error: Leaky) -> dict[str, str]:  # a planted leak: the message in the reply
        return {"error": str(error)}

    return exc


def broker_for(exc: ExceptionMiddleware, channel: str, url: str = "redis://") -> RedisBroker:
    broker = RedisBroker(url, middlewares=[excepthub_faststream.middleware(exc)])

    @broker.subscriber(channel)
    async def pay(kind: str) -> str:
        raise {"masked": Masked, "leaky": Leaky, "unhandled": Unhandled}[kind](SECRET)

    return broker


async def test_a_masked_reply_carries_no_secret() -> None:
    async with TestRedisBroker(broker_for(registry(), "pay")) as br:
        received = await request(br, "masked", "pay")

    assert received.json() == {"error": "payment failed"}
    assert SECRET not in received
    assert received.correlation_id is not None


async def test_a_secret_a_handler_puts_in_the_reply_is_found() -> None:
    async with TestRedisBroker(broker_for(registry(), "pay")) as br:
        received = await request(br, "leaky", "pay")

    assert SECRET in received  # JSON-escaped in the body, found all the same


async def test_an_unhandled_error_gives_no_reply_and_says_why() -> None:
    async with TestRedisBroker(broker_for(registry(), "pay")) as br:
        received = await request(br, "unhandled", "pay")

    assert (received.body, received.error is not None) == (b"", True)
    assert SECRET not in received


async def test_a_test_broker_is_recorded_with_the_task_scope() -> None:
    exc = registry()

    with recording(exc) as events:
        async with TestRedisBroker(broker_for(exc, "pay")) as br:
            await request(br, "masked", "pay", correlation_id="c-7")

    event = events.only
    assert (type(event.error), event.outcome, event.framework) == (
        Masked,
        "published",
        "faststream",
    )
    assert event.correlation_id == "c-7"


def test_a_secret_in_a_header_is_found() -> None:
    received = Received(b"{}", {"x-debug": SECRET})

    assert SECRET in received
    assert SECRET.encode() in received
    assert "hunter3" not in received


@pytest.mark.broker
async def test_on_redis_the_requester_gets_what_the_test_broker_gets(
    require_service: Callable[[str], tuple[str, int]],
) -> None:
    host, port = require_service("redis")
    channel = f"excepthub-{uuid.uuid4().hex[:12]}"
    exc = registry()
    broker = broker_for(exc, channel, f"redis://{host}:{port}")

    async with TestRedisBroker(broker_for(registry(), channel)) as br:
        in_memory = await request(br, "leaky", channel)
    async with broker:
        await broker.start()
        with recording(exc) as mine, recording(exc, scope="registry") as everything:
            served = await request(broker, "leaky", channel, timeout=10)
            await everything.wait(1, within=10)

    assert served.json() == in_memory.json()
    assert SECRET in served
    assert len(mine) == 0  # the consumer task was started before the block: not its context
    assert (type(everything.only.error), everything.only.framework) == (Leaky, "faststream")
