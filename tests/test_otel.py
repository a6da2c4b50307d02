"""`excepthub.otel.hook()`: each error on the current span and in the metrics, measured with
opentelemetry-sdk's in-memory span exporter and metric reader. A span ends in error only for a
failure; the hook never changes an outcome; nothing is imported until the module is.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import excepthub.otel
from excepthub import Defaults, ExceptionMiddleware

pytestmark = pytest.mark.anyio

SECRET = "card 4111-1111-1111-1111 declined"


class PaymentDeclined(Exception):
    pass


PAYMENT = f"{__name__}.PaymentDeclined"


async def fallback(error: Exception) -> str:
    return "fallback"


async def side_effect(error: Exception) -> None:
    return None


async def fails(error: Exception) -> None:
    raise RuntimeError("handler broke")


async def reraise_it(error: Exception) -> None:
    raise error


class Telemetry:
    """A tracer and a meter provider of the SDK, both in memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def hook(self, **options: Any) -> excepthub.otel.OpenTelemetryHook:
        return excepthub.otel.hook(meter_provider=self.meter_provider, **options)

    async def handle(
        self, exc: ExceptionMiddleware, error: Exception, **context: Any
    ) -> ReadableSpan:
        """Handle `error` inside a span of its own; the span as it ended."""
        tracer = self.tracer_provider.get_tracer("test")
        # unhandled or failed: what the span shows is the point
        with tracer.start_as_current_span("work"), contextlib.suppress(Exception):
            await exc.handle(error, **context)
        [span] = self.spans.get_finished_spans()
        self.spans.clear()
        return span

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    telemetry = Telemetry()
    yield telemetry
    telemetry.tracer_provider.shutdown()
    telemetry.meter_provider.shutdown()


def exception_event(span: ReadableSpan) -> dict[str, Any]:
    [event] = [e for e in span.events if e.name == "exception"]
    return dict(event.attributes or {})


# -- the span ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handlers", "outcome", "handler"),
    [
        ({"publish_handlers": {PaymentDeclined: fallback}}, "published", "fallback"),
        ({"handlers": {PaymentDeclined: side_effect}}, "handled", "side_effect"),
    ],
)
async def test_a_handled_error_is_an_exception_event_and_leaves_the_span_status_alone(
    telemetry: Telemetry, handlers: dict[str, Any], outcome: str, handler: str
) -> None:
    exc = ExceptionMiddleware(**handlers, on_error=[telemetry.hook()])

    span = await telemetry.handle(exc, PaymentDeclined(SECRET), correlation_id="req-7")

    assert exception_event(span) == {
        "exception.type": PAYMENT,
        "excepthub.outcome": outcome,
        "excepthub.handler": handler,
        "excepthub.correlation_id": "req-7",
    }
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in (span.attributes or {})


async def test_an_unhandled_error_ends_the_span_in_error_with_its_error_type(
    telemetry: Telemetry,
) -> None:
    exc = ExceptionMiddleware(handlers={KeyError: side_effect}, on_error=[telemetry.hook()])
    error = PaymentDeclined(SECRET)

    with pytest.raises(PaymentDeclined) as raised:
        await exc.handle(error)
    span = await telemetry.handle(exc, error)

    assert raised.value is error  # the hook changes nothing on the way
    assert exception_event(span) == {"exception.type": PAYMENT, "excepthub.outcome": "unhandled"}
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == PAYMENT


async def test_a_failed_handler_ends_the_span_in_error(telemetry: Telemetry) -> None:
    exc = ExceptionMiddleware(handlers={PaymentDeclined: fails}, on_error=[telemetry.hook()])

    span = await telemetry.handle(exc, PaymentDeclined(SECRET))

    assert exception_event(span)["excepthub.outcome"] == "failed"
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == PAYMENT


async def test_the_message_stays_out_of_telemetry_unless_asked_for(telemetry: Telemetry) -> None:
    exc = ExceptionMiddleware(handlers={PaymentDeclined: fails}, on_error=[telemetry.hook()])
    span = await telemetry.handle(exc, PaymentDeclined(SECRET))
    assert SECRET not in repr(span.to_json())

    detailed = ExceptionMiddleware(
        handlers={PaymentDeclined: fails}, on_error=[telemetry.hook(details=True)]
    )
    event = exception_event(await telemetry.handle(detailed, PaymentDeclined(SECRET)))
    assert event["exception.message"] == SECRET
    assert "PaymentDeclined" in event["exception.stacktrace"]


async def test_the_framework_of_the_layering_is_an_attribute(telemetry: Telemetry) -> None:
    exc = ExceptionMiddleware(handlers={PaymentDeclined: side_effect}, on_error=[telemetry.hook()])
    defaults = Defaults("web, router", framework="fastapi")

    span = await telemetry.handle(exc, PaymentDeclined(), defaults=defaults)

    assert exception_event(span)["excepthub.framework"] == "fastapi"


# -- the metrics ------------------------------------------------------------------------------


async def test_errors_are_counted_by_class_outcome_and_framework(telemetry: Telemetry) -> None:
    exc = ExceptionMiddleware(handlers={PaymentDeclined: side_effect}, on_error=[telemetry.hook()])
    defaults = Defaults("web", framework="faststream")

    for _ in range(3):
        await exc.handle(PaymentDeclined(), defaults=defaults)
    with pytest.raises(KeyError):
        await exc.handle(KeyError("k"))

    counts = {
        tuple(sorted((point.attributes or {}).items())): point.value
        for point in telemetry.points(excepthub.otel.COUNTER)
    }
    assert counts == {
        (
            ("error.type", PAYMENT),
            ("excepthub.framework", "faststream"),
            ("excepthub.outcome", "handled"),
        ): 3,
        (("error.type", "KeyError"), ("excepthub.outcome", "unhandled")): 1,
    }


async def test_handler_durations_go_to_a_histogram(telemetry: Telemetry) -> None:
    exc = ExceptionMiddleware(
        handlers={PaymentDeclined: side_effect},
        publish_handlers={ValueError: fallback},
        on_error=[telemetry.hook()],
    )
    await exc.handle(PaymentDeclined())
    await exc.handle(ValueError())
    await exc.handle(ValueError())
    with pytest.raises(KeyError):  # no handler ran: no duration
        await exc.handle(KeyError())

    points: list[HistogramDataPoint] = telemetry.points(excepthub.otel.HISTOGRAM)
    by_handler = {(p.attributes or {})["excepthub.handler"]: p for p in points}
    assert set(by_handler) == {"side_effect", "fallback"}
    assert by_handler["fallback"].count == 2
    assert by_handler["fallback"].min >= 0
    assert dict(by_handler["side_effect"].attributes or {}) == {
        "error.type": PAYMENT,
        "excepthub.outcome": "handled",
        "excepthub.handler": "side_effect",
    }


async def test_without_a_current_span_the_metrics_are_still_recorded(
    telemetry: Telemetry,
) -> None:
    exc = ExceptionMiddleware(handlers={PaymentDeclined: side_effect}, on_error=[telemetry.hook()])

    await exc.handle(PaymentDeclined())

    assert [p.value for p in telemetry.points(excepthub.otel.COUNTER)] == [1]
    assert telemetry.spans.get_finished_spans() == ()


# -- a hook never changes an outcome ----------------------------------------------------------


class BrokenMeterProvider(metrics.NoOpMeterProvider):
    """An exporter pipeline that fails on every measurement."""

    def get_meter(self, *args: Any, **kwargs: Any) -> metrics.Meter:
        return BrokenMeter("broken")


class BrokenMeter(metrics.NoOpMeter):
    def create_counter(self, *args: Any, **kwargs: Any) -> metrics.Counter:
        return BrokenCounter("broken")


class BrokenCounter(metrics.NoOpCounter):
    def add(self, *args: Any, **kwargs: Any) -> None:
        raise ConnectionError("collector unreachable")


async def test_a_failing_exporter_is_logged_and_the_outcome_stands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = excepthub.otel.hook(meter_provider=BrokenMeterProvider())
    exc = ExceptionMiddleware(publish_handlers={PaymentDeclined: fallback}, on_error=[broken])

    with caplog.at_level(logging.ERROR, logger="excepthub"):
        outcome = await exc.handle(PaymentDeclined())

    assert outcome.value == "fallback"
    [record] = [r for r in caplog.records if "on_error hook" in r.getMessage()]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ConnectionError)


def test_details_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match=r"details=\.\.\.\) takes a bool"):
        excepthub.otel.hook(details="yes")  # type: ignore[arg-type]


def test_importing_excepthub_imports_neither_opentelemetry_nor_sentry() -> None:
    code = (
        "import sys, excepthub, excepthub_fastapi, excepthub_faststream, excepthub_fastmcp; "
        "print(sorted(m for m in ('sentry_sdk',) if m in sys.modules))"
    )
    core = "import sys, excepthub; print(sorted(m for m in ('opentelemetry', 'sentry_sdk') "
    core += "if m in sys.modules))"
    for script in (core, code):
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        )
        assert done.stdout.strip() == "[]"


# -- for every mix of handlers ----------------------------------------------------------------

HANDLERS: dict[str, Any] = {
    "none": None,
    "fallback": ("publish_handlers", fallback),
    "side effect": ("handlers", side_effect),
    "failing": ("handlers", fails),
    "re-raising": ("handlers", reraise_it),
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(sorted(HANDLERS)), min_size=1, max_size=6))
def test_a_span_ends_in_error_exactly_for_failures_and_every_error_is_counted(
    kinds: list[str],
) -> None:
    telemetry = Telemetry()
    classes = [type(f"Error{i}", (Exception,), {}) for i in range(len(kinds))]
    exc = ExceptionMiddleware(logger=None, on_error=[telemetry.hook()])
    for cls, kind in zip(classes, kinds, strict=True):
        if HANDLERS[kind] is not None:
            table, handler = HANDLERS[kind]
            exc.add_handler(cls, publish=table == "publish_handlers")(handler)

    for cls in classes:
        span = anyio.run(telemetry.handle, exc, cls())
        [event] = [dict(e.attributes or {}) for e in span.events]
        failure = event["excepthub.outcome"] in {"unhandled", "failed"}
        assert (span.status.status_code is StatusCode.ERROR) is failure

    counted: dict[str, dict[str, int]] = {}
    for point in telemetry.points(excepthub.otel.COUNTER):
        attributes = point.attributes or {}
        outcomes = counted.setdefault(str(attributes["error.type"]), {})
        outcomes[str(attributes["excepthub.outcome"])] = point.value
    assert counted == exc.get_error_stats()
