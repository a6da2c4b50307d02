"""OpenTelemetry: every error a registry sees, on the current span and in two metrics.

```python
import excepthub.otel
from excepthub import ExceptionMiddleware

exc = ExceptionMiddleware(on_error=[excepthub.otel.hook()])
```

Needs the `otel` extra (`pip install "excepthub[otel]"`, which brings `opentelemetry-api`);
the SDK and exporters are the application's, configured as for any other instrumentation.
"""

from __future__ import annotations

from typing import Final

from opentelemetry import metrics, trace
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.types import AttributeValue

from ._observe import _class_name, _handler_name
from ._outcome import ErrorEvent
from ._version import __version__

__all__ = ["COUNTER", "HISTOGRAM", "OpenTelemetryHook", "hook"]

COUNTER: Final = "excepthub.errors"
"""The counter of errors, by `error.type`, `excepthub.outcome` and `excepthub.framework`."""
HISTOGRAM: Final = "excepthub.handler.duration"
"""The histogram of how long deciding handlers ran, in seconds."""

# Outcomes that are failures: only these end the span in error.
_FAILURES: Final = frozenset({"unhandled", "failed"})
# Handler durations are short: bucket boundaries from 100 microseconds to 10 seconds.
_BUCKETS: Final = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)  # fmt: skip


class OpenTelemetryHook:
    """An `on_error` hook that reports each `ErrorEvent` through the OpenTelemetry API.

    Built by `hook()`; sync and allocation-light, so it runs inline on the error path.
    """

    __slots__ = ("_counter", "_details", "_duration")

    def __init__(
        self, *, meter_provider: metrics.MeterProvider | None = None, details: bool = False
    ) -> None:
        meter = metrics.get_meter("excepthub", __version__, meter_provider)
        self._counter = meter.create_counter(
            COUNTER, unit="{error}", description="Errors an excepthub registry saw, by outcome."
        )
        self._duration = meter.create_histogram(
            HISTOGRAM,
            unit="s",
            description="How long the handler that decided an error's outcome ran.",
            explicit_bucket_boundaries_advisory=_BUCKETS,
        )
        self._details = details

    def __call__(self, event: ErrorEvent) -> None:
        """Record `event`: an exception event on the current span, the counter, the histogram."""
        error = event.error
        error_type = _class_name(type(error))
        counted: dict[str, AttributeValue] = {
            "error.type": error_type,
            "excepthub.outcome": event.outcome,
        }
        if event.framework is not None:
            counted["excepthub.framework"] = event.framework
        self._counter.add(1, counted)
        handler = None if event.handler is None else _handler_name(event.handler)
        if handler is not None and event.duration is not None:
            self._duration.record(event.duration, {**counted, "excepthub.handler": handler})
        span = trace.get_current_span()
        if not span.is_recording():
            return
        span.add_event("exception", self._event_attributes(event, error_type, handler))
        if event.outcome in _FAILURES:
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR, f"{error_type} {event.outcome}"))

    def _event_attributes(
        self, event: ErrorEvent, error_type: str, handler: str | None
    ) -> dict[str, AttributeValue]:
        attributes: dict[str, AttributeValue] = {
            "exception.type": error_type,
            "excepthub.outcome": event.outcome,
        }
        if handler is not None:
            attributes["excepthub.handler"] = handler
        if event.framework is not None:
            attributes["excepthub.framework"] = event.framework
        correlation_id = event.correlation_id
        if correlation_id is not None:
            attributes["excepthub.correlation_id"] = str(correlation_id)
        if self._details:  # the message may carry what must not leave the service: opt-in
            attributes["exception.message"] = str(event.error)
            attributes["exception.stacktrace"] = _stacktrace(event.error)
        return attributes


def hook(
    *, meter_provider: metrics.MeterProvider | None = None, details: bool = False
) -> OpenTelemetryHook:
    """An `on_error` hook reporting every error through OpenTelemetry.

    On the span current where the error was handled (the request's, the message's, the MCP
    call's), an `exception` event with `exception.type`, `excepthub.outcome`,
    `excepthub.handler`, `excepthub.framework` and `excepthub.correlation_id`; for an `unhandled`
    or `failed` error, the span's `error.type` and status ERROR (never for a handled or
    published one). Metrics: the counter `excepthub.errors` and the histogram
    `excepthub.handler.duration` (seconds), from the global meter provider or `meter_provider`.

    `details=True` adds `exception.message` and `exception.stacktrace` to the event. They are
    off by default: the message of an exception may carry personal data or secrets, and
    telemetry leaves the service (excepthub's own log record carries them).

    ```python
    exc = ExceptionMiddleware(on_error=[excepthub.otel.hook()])
    ```
    """
    if not isinstance(details, bool):
        raise TypeError(f"excepthub.otel.hook(details=...) takes a bool, got {details!r}")
    return OpenTelemetryHook(meter_provider=meter_provider, details=details)


def _stacktrace(error: BaseException) -> str:
    import traceback  # only with details=True: the error path of an opt-in

    return "".join(traceback.format_exception(error))
