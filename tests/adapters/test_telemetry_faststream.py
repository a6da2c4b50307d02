"""FastStream's own telemetry with excepthub in place, and excepthub's hooks on FastStream's
spans, against the real Redis on 127.0.0.1: `TelemetryMiddleware` measured with
opentelemetry-sdk's in-memory exporters, `PrometheusMiddleware` with a registry of its own, and
Sentry with its asyncio integration enabled.

excepthub's drop-in `ExceptionMiddleware` reads exactly as FastStream's own with the same
handlers; with nothing registered, exactly as no exception middleware at all.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import faststream
import pytest
from faststream.redis import RedisBroker
from faststream.redis.opentelemetry import RedisTelemetryMiddleware
from faststream.redis.prometheus import RedisPrometheusMiddleware
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry
from sentry_sdk.integrations.asyncio import AsyncioIntegration

import excepthub.otel
import excepthub.sentry
import excepthub_faststream

from ._telemetry import InMemory, exception_types, only_in_child, run_in_child, sentry

pytestmark = [pytest.mark.anyio, pytest.mark.broker]
WAIT = 10  # seconds a test may wait for a message to be processed before it fails


class Declined(Exception):
    """An error no framework knows."""


SECRET = "card 4111-1111-1111-1111"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # FastStream runs on asyncio only


@pytest.fixture
def redis_url(require_service: Callable[[str], tuple[str, int]]) -> str:
    host, port = require_service("redis")
    return f"redis://{host}:{port}"


@pytest.fixture
def otel() -> Iterator[InMemory]:
    telemetry = InMemory()
    yield telemetry
    telemetry.shutdown()


def fallback(error: Declined) -> str:
    return "declined"


def side_effect(error: Declined) -> None:
    return None


async def process(
    redis_url: str, otel: InMemory, exception_middleware: Any | None, channel: str = ""
) -> tuple[dict[str, Any], dict[Any, float]]:
    """One message through a broker with FastStream's telemetry and Prometheus middlewares
    (outermost) and `exception_middleware` under them; what each of them recorded."""
    prometheus = CollectorRegistry()
    middlewares: list[Any] = [
        RedisTelemetryMiddleware(
            tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
        ),
        RedisPrometheusMiddleware(registry=prometheus, app_name="svc"),
    ]
    if exception_middleware is not None:
        middlewares.append(exception_middleware)
    broker = RedisBroker(redis_url, middlewares=middlewares)  # FastStream logs as it does
    channel = channel or unique()

    @broker.subscriber(channel)
    async def charge(body: str) -> str:
        raise Declined(SECRET)

    async with broker:
        await broker.start()
        await broker.publish("order-1", channel)
        for _ in range(WAIT * 100):  # the process span ends once the message is settled
            if any(s.kind is SpanKind.CONSUMER and "process" in s.name for s in otel.spans()):
                break
            await asyncio.sleep(0.01)
    return telemetry_of(otel), counters_of(prometheus)


def unique() -> str:
    return f"excepthub-telemetry-{uuid.uuid4().hex}"


def telemetry_of(otel: InMemory) -> dict[str, Any]:
    [span] = [s for s in otel.spans() if s.kind is SpanKind.CONSUMER and "process" in s.name]
    [duration] = otel.points("messaging.process.duration")
    return {
        "status": span.status.status_code.name,
        "events": [
            (e.name, (e.attributes or {}).get("exception.type"))
            for e in span.events
            if not e.name.startswith("excepthub")
        ],
        "error.type": (duration.attributes or {}).get("error.type"),
        "processed": [p.value for p in otel.points("messaging.process.messages")],
    }


def counters_of(registry: CollectorRegistry) -> dict[Any, float]:
    """Prometheus counters by name and labels (durations and sizes vary, and are left out)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


@pytest.mark.parametrize(
    "handlers",
    [{"publish_handlers": {Declined: fallback}}, {"handlers": {Declined: side_effect}}],
    ids=["fallback", "side-effect"],
)
async def test_a_handled_error_reads_exactly_as_under_faststreams_own_middleware(
    redis_url: str, handlers: dict[str, Any]
) -> None:
    native, with_hub = InMemory(), InMemory()
    channel = unique()  # the same labels for both, a queue no other test uses
    native_middleware = faststream.ExceptionMiddleware(**handlers)
    expected = await process(redis_url, native, native_middleware, channel)
    hub = excepthub_faststream.ExceptionMiddleware(**handlers)
    assert await process(redis_url, with_hub, hub, channel) == expected


async def test_an_error_no_handler_takes_reads_exactly_as_without_excepthub(
    redis_url: str,
) -> None:
    native, with_hub = InMemory(), InMemory()
    channel = unique()
    expected = await process(redis_url, native, None, channel)
    hub = excepthub_faststream.ExceptionMiddleware(handlers={KeyError: print})
    assert await process(redis_url, with_hub, hub, channel) == expected
    assert expected[0]["status"] == "ERROR"
    assert expected[0]["error.type"] == "Declined"


async def test_the_otel_hook_puts_its_event_on_faststreams_process_span(
    redis_url: str, otel: InMemory
) -> None:
    hook = excepthub.otel.hook(meter_provider=otel.meter_provider)
    hub = excepthub_faststream.ExceptionMiddleware(
        publish_handlers={Declined: fallback}, on_error=[hook]
    )
    await process(redis_url, otel, hub)

    [span] = [s for s in otel.spans() if s.kind is SpanKind.CONSUMER and "process" in s.name]
    [event] = [dict(e.attributes or {}) for e in span.events if e.name == "exception"]
    assert event["exception.type"] == f"{__name__}.Declined"
    assert (event["excepthub.outcome"], event["excepthub.framework"]) == (
        "published",
        "faststream",
    )
    assert event["excepthub.correlation_id"]  # the message's correlation id
    assert span.status.status_code.name == "UNSET"  # a published error is no failure
    [count] = otel.points(excepthub.otel.COUNTER)
    assert dict(count.attributes or {})["excepthub.framework"] == "faststream"


@only_in_child
@pytest.mark.parametrize(
    ("handlers", "expected"),
    [
        ({}, [(["Declined"], "unhandled")]),
        ({"handlers": {Declined: side_effect}}, []),
    ],
    ids=["unhandled", "handled"],
)
async def test_sentry_captures_a_failure_once_alongside_its_asyncio_integration(
    redis_url: str, otel: InMemory, handlers: dict[str, Any], expected: list[Any]
) -> None:
    hub = excepthub_faststream.ExceptionMiddleware(**handlers, on_error=[excepthub.sentry.hook()])
    with sentry(integrations=[AsyncioIntegration()]) as captured:
        await process(redis_url, otel, hub)
        await asyncio.sleep(0.1)  # what FastStream logs after the span ended

    assert [(exception_types(e), e["tags"]["excepthub.outcome"]) for e in captured.events] == (
        expected
    )
    for event in captured.events:
        assert event["tags"]["excepthub.framework"] == "faststream"
        assert event["tags"]["correlation_id"]


@only_in_child
async def test_without_excepthub_sentry_has_faststreams_own_record_of_it_once(
    redis_url: str, otel: InMemory
) -> None:
    with sentry(integrations=[AsyncioIntegration()]) as captured:
        await process(redis_url, otel, None)
        await asyncio.sleep(0.1)

    assert [exception_types(e) for e in captured.events] == [["Declined"]]


def test_sentry_with_its_faststream_integrations_in_a_process_of_its_own() -> None:
    """Sentry's asyncio integration patches classes for the rest of the process: the Sentry
    tests above run in a pytest process of their own."""
    run_in_child(__file__, "sentry_captures or without_excepthub_sentry")
