"""`excepthub.sentry.hook()`: failures captured once with excepthub's tags, handled errors as
breadcrumbs (or opt-in events), measured with sentry-sdk and a transport that keeps envelopes.
Sentry's logging integration stays on: excepthub's own records and a framework's later record
of the same exception make no second event.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

import excepthub.sentry
from excepthub import Defaults, ExceptionMiddleware

pytestmark = pytest.mark.anyio


class PaymentDeclined(Exception):
    pass


PAYMENT = f"{__name__}.PaymentDeclined"


async def fallback(error: Exception) -> str:
    return "fallback"


async def side_effect(error: Exception) -> None:
    return None


async def fails(error: Exception) -> None:
    raise RuntimeError("handler broke")


class Captured(Transport):
    """Sentry's transport, keeping each event instead of sending it."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        event = envelope.get_event()
        if event is not None:
            self.events.append(dict(event))


@pytest.fixture
def sentry() -> Iterator[Captured]:
    """Sentry initialised with its default integrations (logging, dedupe, ...)."""
    transport = Captured()
    sentry_sdk.init(
        dsn="https://key@sentry.invalid/1",
        transport=transport,
        release="test",
        shutdown_timeout=0,
        auto_enabling_integrations=False,  # the frameworks': tests/adapters/test_telemetry_*
    )
    sentry_sdk.get_isolation_scope().clear_breadcrumbs()
    yield transport
    sentry_sdk.get_client().close()
    sentry_sdk.init(default_integrations=False)  # no DSN: disabled for the tests that follow


def exception_types(event: dict[str, Any]) -> list[str]:
    return [value["type"] for value in event["exception"]["values"]]


async def test_an_unhandled_error_is_captured_once_with_excepthubs_tags(sentry: Captured) -> None:
    exc = ExceptionMiddleware(on_error=[excepthub.sentry.hook()])
    defaults = Defaults("web", framework="fastapi", logs_unhandled=True)
    error = PaymentDeclined("declined")

    with pytest.raises(PaymentDeclined) as raised:
        await exc.handle(error, defaults=defaults, correlation_id="req-7")
    # the framework then logs it, as FastStream and uvicorn do: no second event
    logging.getLogger("framework").error("unhandled", exc_info=error)

    assert raised.value is error
    [event] = sentry.events
    assert exception_types(event) == ["PaymentDeclined"]
    assert event["level"] == "error"
    assert {k: v for k, v in event["tags"].items() if k != "excepthub.handler"} == {
        "excepthub.exception": PAYMENT,
        "excepthub.outcome": "unhandled",
        "excepthub.framework": "fastapi",
        "correlation_id": "req-7",
    }


async def test_a_failed_handler_is_one_event_of_what_propagates_with_the_original_chained(
    sentry: Captured,
) -> None:
    exc = ExceptionMiddleware(handlers={PaymentDeclined: fails}, on_error=[excepthub.sentry.hook()])

    with pytest.raises(RuntimeError) as raised:  # excepthub logs it at ERROR too: no event
        await exc.handle(PaymentDeclined("declined"))
    logging.getLogger("framework").exception("failed", exc_info=raised.value)

    [event] = sentry.events
    assert exception_types(event) == ["PaymentDeclined", "RuntimeError"]  # oldest first
    assert event["tags"]["excepthub.outcome"] == "failed"
    assert event["tags"]["excepthub.handler"] == "fails"


async def test_a_handled_error_is_a_breadcrumb_on_the_next_event(sentry: Captured) -> None:
    exc = ExceptionMiddleware(
        handlers={PaymentDeclined: side_effect},
        publish_handlers={ValueError: fallback},
        on_error=[excepthub.sentry.hook()],
    )

    await exc.handle(PaymentDeclined(), correlation_id="req-8")
    await exc.handle(ValueError())
    assert sentry.events == []
    sentry_sdk.capture_message("later")

    [event] = sentry.events
    # excepthub's log records would be crumbs of category "excepthub" too, of type "log"
    crumbs = [c for c in event["breadcrumbs"]["values"] if c.get("category") == "excepthub"]
    # excepthub's log records are not breadcrumbs of their own: the hook's are
    assert [(c["type"], c["category"], c["level"], c["message"]) for c in crumbs] == [
        ("default", "excepthub", "warning", f"{PAYMENT} handled"),
        ("default", "excepthub", "info", "ValueError published"),
    ]
    assert crumbs[0]["data"]["correlation_id"] == "req-8"
    assert crumbs[0]["data"]["excepthub.handler"] == "side_effect"


async def test_handled_errors_are_events_when_asked_for(sentry: Captured) -> None:
    hook = excepthub.sentry.hook(capture_handled=True)
    exc = ExceptionMiddleware(handlers={PaymentDeclined: side_effect}, on_error=[hook])

    await exc.handle(PaymentDeclined())

    [event] = sentry.events
    assert event["level"] == "warning"
    assert event["tags"]["excepthub.outcome"] == "handled"


async def test_an_exception_is_captured_once_even_when_two_registries_report_it(
    sentry: Captured,
) -> None:
    hook = excepthub.sentry.hook()
    router = ExceptionMiddleware(on_error=[hook])
    app = ExceptionMiddleware(on_error=[hook])
    error = PaymentDeclined()

    for registry in (router, app):
        with pytest.raises(PaymentDeclined):
            await registry.handle(error)

    assert len(sentry.events) == 1


async def test_without_sentry_initialised_the_hook_does_nothing() -> None:
    exc = ExceptionMiddleware(
        handlers={PaymentDeclined: side_effect}, on_error=[excepthub.sentry.hook()]
    )
    outcome = await exc.handle(PaymentDeclined())
    assert not outcome.published


def test_capture_handled_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match=r"capture_handled=\.\.\.\) takes a bool"):
        excepthub.sentry.hook(capture_handled=1)  # type: ignore[arg-type]
