"""In-memory telemetry for the adapters' telemetry tests: opentelemetry-sdk's span, metric and
log exporters, and sentry-sdk with a transport that keeps its events."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sentry_sdk
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport


class InMemory:
    """A tracer, a meter and a logger provider of the SDK, each exporting to memory."""

    def __init__(self) -> None:
        self.span_exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.span_exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.log_exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
        self.logger_provider = LoggerProvider()
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.log_exporter))

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.span_exporter.get_finished_spans()

    def points(self, name: str) -> list[Any]:
        """The data points of metric `name`."""
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def log_events(self) -> list[tuple[str | None, Any]]:
        """(event name, exception type) of every log record exported."""
        found = []
        for exported in self.log_exporter.get_finished_logs():
            record = exported.log_record
            attributes = dict(record.attributes or {})
            found.append((record.event_name, attributes.get("exception.type")))
        return found

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        self.logger_provider.shutdown()


class Captured(Transport):
    """Sentry's transport, keeping each event instead of sending it."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        event = envelope.get_event()
        if event is not None:
            self.events.append(dict(event))


# Sentry's framework integrations patch Starlette's and the MCP server's classes for the rest of
# the process: the tests that enable them run in a pytest process of their own.
IN_CHILD: bool = os.environ.get("EXCEPTHUB_SENTRY_CHILD") == "1"
only_in_child = pytest.mark.skipif(
    not IN_CHILD, reason="runs in a process of its own: see test_sentry_*_in_a_process_of_its_own"
)


def run_in_child(test_file: str, selection: str) -> None:
    """Run the tests of `test_file` that `selection` (`-k`) picks in a new pytest process, with
    Sentry's integrations free to patch what they patch; fail with its report if one fails."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", test_file, "-k", selection],
        env={**os.environ, "EXCEPTHUB_SENTRY_CHILD": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert " passed" in done.stdout, report
    assert " skipped" not in done.stdout, report


@contextmanager
def sentry(**options: Any) -> Iterator[Captured]:
    """Sentry initialised as an application does (its integrations for the installed frameworks
    enabled), its events kept in memory."""
    transport = Captured()
    sentry_sdk.init(
        dsn="https://key@sentry.invalid/1",
        transport=transport,
        release="test",
        shutdown_timeout=0,
        **options,
    )
    sentry_sdk.get_isolation_scope().clear_breadcrumbs()
    try:
        yield transport
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.init(default_integrations=False)  # no DSN: disabled for the tests that follow


def exception_types(event: dict[str, Any]) -> list[str]:
    """The classes of a Sentry event's exceptions, oldest of the chain first."""
    return [value["type"] for value in event["exception"]["values"]]
