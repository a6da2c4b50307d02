"""Observation: every error that reaches the registry is logged once, counted, and shown to hooks.

Levels reflect the outcome (published INFO, handled WARNING, unhandled and failed ERROR with the
traceback); logger, levels and on/off are the registry's settings; a failing hook changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import pytest

from excepthub import Defaults, ErrorEvent, ExceptionMiddleware, reraise

pytestmark = pytest.mark.anyio


class PaymentDeclined(Exception):
    pass


PAYMENT = f"{__name__}.PaymentDeclined"


async def fallback(error: Exception) -> str:
    return "fallback"


async def side_effect(error: Exception) -> None:
    return None


async def reraise_it(error: Exception) -> None:
    raise error


async def fails(error: Exception) -> None:
    raise RuntimeError("handler failed")


def registry(**kwargs: Any) -> ExceptionMiddleware:
    return ExceptionMiddleware(
        handlers={KeyError: side_effect, OSError: fails},
        publish_handlers={ValueError: fallback},
        **kwargs,
    )


async def outcome_of(exc: ExceptionMiddleware, error: Exception, **context: Any) -> None:
    with contextlib.suppress(Exception):  # unhandled and failed errors propagate: not the point
        await exc.handle(error, **context)


def records(caplog: pytest.LogCaptureFixture, name: str = "excepthub") -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name]


@pytest.fixture
def caplog(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="excepthub")
    return caplog


# -- logging ----------------------------------------------------------------------------------


async def test_published_error_is_logged_once_at_info(caplog: pytest.LogCaptureFixture) -> None:
    await outcome_of(registry(), ValueError("x"))

    [record] = records(caplog)
    assert (record.levelno, record.excepthub_outcome, record.exc_info) == (  # type: ignore[attr-defined]
        logging.INFO,
        "published",
        None,
    )


async def test_handled_error_is_logged_once_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    await outcome_of(registry(), KeyError("k"))

    [record] = records(caplog)
    assert (record.levelno, record.excepthub_outcome, record.exc_info) == (  # type: ignore[attr-defined]
        logging.WARNING,
        "handled",
        None,
    )


async def test_unhandled_error_is_logged_once_at_error_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = PaymentDeclined("card 4242")

    await outcome_of(registry(), error)

    [record] = records(caplog)
    assert (record.levelno, record.excepthub_outcome) == (logging.ERROR, "unhandled")  # type: ignore[attr-defined]
    assert record.exc_info is not None
    assert record.exc_info[1] is error


async def test_failed_handler_is_logged_once_at_error_with_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = OSError("disk")

    await outcome_of(registry(), error)

    [record] = records(caplog)
    assert (record.levelno, record.excepthub_outcome) == (logging.ERROR, "failed")  # type: ignore[attr-defined]
    assert record.exc_info is not None
    assert record.exc_info[1] is error


async def test_record_names_the_class_the_handler_and_the_correlation_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    await outcome_of(registry(), KeyError("k"), correlation_id="c-42")

    [record] = records(caplog)
    fields = (
        record.excepthub_exception,  # type: ignore[attr-defined]
        record.excepthub_handler,  # type: ignore[attr-defined]
        record.correlation_id,  # type: ignore[attr-defined]
    )
    assert fields == ("KeyError", "side_effect", "c-42")
    assert record.getMessage() == "KeyError handled by side_effect [correlation_id=c-42]"


async def test_unhandled_record_names_the_user_class_with_its_module(
    caplog: pytest.LogCaptureFixture,
) -> None:
    await outcome_of(registry(), PaymentDeclined())

    [record] = records(caplog)
    assert record.getMessage() == f"{PAYMENT} unhandled"


async def test_message_carries_no_correlation_id_where_there_is_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    await outcome_of(registry(), KeyError("k"))

    [record] = records(caplog)
    assert record.correlation_id is None  # type: ignore[attr-defined]
    assert "correlation_id" not in record.getMessage()


async def test_log_levels_are_configurable_per_outcome(caplog: pytest.LogCaptureFixture) -> None:
    exc = registry(log_levels={"handled": logging.DEBUG, "unhandled": logging.CRITICAL})

    await outcome_of(exc, KeyError())
    await outcome_of(exc, PaymentDeclined())

    assert [r.levelno for r in records(caplog)] == [logging.DEBUG, logging.CRITICAL]


async def test_a_level_of_none_turns_that_outcome_off(caplog: pytest.LogCaptureFixture) -> None:
    exc = registry(log_levels={"handled": None})

    await outcome_of(exc, KeyError())
    await outcome_of(exc, ValueError())

    assert [r.excepthub_outcome for r in records(caplog)] == ["published"]  # type: ignore[attr-defined]


async def test_logger_none_turns_logging_off(caplog: pytest.LogCaptureFixture) -> None:
    exc = registry(logger=None)

    for error in (KeyError(), ValueError(), OSError(), PaymentDeclined()):
        await outcome_of(exc, error)

    assert caplog.records == []


async def test_logger_may_be_named(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="my.service.errors")

    await outcome_of(registry(logger="my.service.errors"), KeyError())

    assert len(records(caplog, "my.service.errors")) == 1
    assert records(caplog) == []


async def test_logger_may_be_a_logger_object(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("my.service.object")
    caplog.set_level(logging.DEBUG, logger=logger.name)

    await outcome_of(registry(logger=logger), KeyError())

    assert len(records(caplog, logger.name)) == 1


async def test_disabled_level_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="excepthub")

    await outcome_of(registry(), KeyError())
    await outcome_of(registry(), PaymentDeclined())

    assert [r.excepthub_outcome for r in records(caplog)] == ["unhandled"]  # type: ignore[attr-defined]


async def test_reraise_handler_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    exc = registry()
    exc.add_handler(PaymentDeclined)(reraise)

    await outcome_of(exc, PaymentDeclined())

    assert caplog.records == []


async def test_unhandled_error_the_framework_logs_is_counted_and_shown_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []
    exc = registry(on_error=[lambda event: seen.append(event.outcome)])
    framework = Defaults("framework", logs_unhandled=True)

    with pytest.raises(LookupError):
        await exc.handle(LookupError("no handler"), defaults=framework)

    assert records(caplog) == []
    assert seen == ["unhandled"]
    assert exc.get_error_stats() == {"LookupError": {"unhandled": 1}}


async def test_a_handler_that_reraises_under_a_framework_that_logs_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exc = ExceptionMiddleware(handlers={ValueError: reraise_it})

    with pytest.raises(ValueError, match="again"):
        await exc.handle(ValueError("again"), defaults=Defaults("f", logs_unhandled=True))

    assert records(caplog) == []
    assert exc.get_error_stats() == {"ValueError": {"unhandled": 1}}


async def test_handled_errors_are_still_logged_under_a_framework_that_logs_unhandled_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    await outcome_of(registry(), KeyError("k"), defaults=Defaults("f", logs_unhandled=True))

    assert [r.levelno for r in records(caplog)] == [logging.WARNING]


def test_logs_unhandled_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="logs_unhandled must be a bool"):
        Defaults("f", logs_unhandled="yes")  # type: ignore[arg-type]


def test_registry_tells_whether_it_logs_an_outcome(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="excepthub")
    exc = registry(log_levels={"unhandled": None})

    assert [exc.logs(kind) for kind in ("published", "handled", "unhandled", "failed")] == [
        False,  # INFO, below the logger's level
        True,
        False,  # turned off
        True,
    ]


def test_registry_without_a_logger_logs_nothing() -> None:
    exc = registry(logger=None)

    assert not any(exc.logs(kind) for kind in ("published", "handled", "unhandled", "failed"))


def test_unknown_outcome_in_log_levels_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="log_levels: unknown outcome 'ok'"):
        ExceptionMiddleware(log_levels={"ok": logging.INFO})  # type: ignore[dict-item]


def test_non_int_log_level_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"log_levels\['handled'\] must be a logging level"):
        ExceptionMiddleware(log_levels={"handled": "INFO"})  # type: ignore[dict-item]


def test_logger_of_another_kind_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"logger must be a logging\.Logger, a name or None"):
        ExceptionMiddleware(logger=42)  # type: ignore[arg-type]


# -- hooks ------------------------------------------------------------------------------------


async def test_sync_hook_sees_every_error_with_its_outcome_and_context() -> None:
    events: list[ErrorEvent] = []
    exc = registry(logger=None, on_error=[events.append])
    errors = [ValueError(), KeyError(), OSError(), PaymentDeclined()]

    for error in errors:
        await outcome_of(exc, error, correlation_id="c-1")

    assert [(e.error, e.outcome) for e in events] == list(
        zip(errors, ["published", "handled", "failed", "unhandled"], strict=True)
    )
    assert [e.handler for e in events] == [fallback, side_effect, fails, None]
    assert {e.correlation_id for e in events} == {"c-1"}
    assert events[0].context == {"correlation_id": "c-1"}


async def test_event_names_the_framework_of_the_layering_that_handed_the_error_over() -> None:
    events: list[ErrorEvent] = []
    exc = registry(logger=None, on_error=[events.append])
    routed = Defaults("web, router", framework="web")
    plain = Defaults("queue")

    await outcome_of(exc, ValueError(), defaults=routed)
    await outcome_of(exc, PaymentDeclined(), defaults=plain)
    await outcome_of(exc, KeyError())

    assert [(e.outcome, e.framework) for e in events] == [
        ("published", "web"),
        ("unhandled", "queue"),
        ("handled", None),
    ]


async def test_event_duration_spans_the_handler_and_is_none_where_none_ran() -> None:
    events: list[ErrorEvent] = []
    spans: list[float] = []

    async def timed(error: Exception) -> str:
        start = time.perf_counter()
        spans.append(time.perf_counter() - start)
        return "timed"

    exc = ExceptionMiddleware(
        publish_handlers={ValueError: timed}, handlers={OSError: fails}, on_error=[events.append]
    )
    await outcome_of(exc, ValueError())
    await outcome_of(exc, OSError())
    await outcome_of(exc, PaymentDeclined())

    published, failed, unhandled = events
    assert published.duration is not None
    assert published.duration >= spans[0]
    assert failed.outcome == "failed"
    assert failed.duration is not None
    assert unhandled.outcome == "unhandled"
    assert unhandled.duration is None


def test_defaults_name_and_framework_must_be_str() -> None:
    with pytest.raises(TypeError, match="name and framework must be str"):
        Defaults("web", framework=3)  # type: ignore[arg-type]


async def test_async_hook_is_awaited() -> None:
    seen: list[str] = []

    async def hook(event: ErrorEvent) -> None:
        seen.append(event.outcome)

    await outcome_of(registry(logger=None, on_error=[hook]), KeyError())

    assert seen == ["handled"]


async def test_on_error_decorator_adds_a_hook_and_returns_it() -> None:
    exc = registry(logger=None)
    seen: list[str] = []

    def hook(event: ErrorEvent) -> None:
        seen.append(event.outcome)

    assert exc.on_error(hook) is hook
    await outcome_of(exc, ValueError())

    assert seen == ["published"]


async def test_hooks_run_in_the_order_they_were_added() -> None:
    seen: list[str] = []
    exc = registry(logger=None, on_error=[lambda e: seen.append("first")])
    exc.on_error(lambda e: seen.append("second"))

    await outcome_of(exc, KeyError())

    assert seen == ["first", "second"]


async def test_failing_hook_does_not_change_the_outcome() -> None:
    def broken(event: ErrorEvent) -> None:
        raise RuntimeError("hook failed")

    exc = registry(logger=None, on_error=[broken])

    outcome = await exc.handle(ValueError())

    assert outcome.value == "fallback"


async def test_failing_hook_does_not_stop_an_unhandled_error() -> None:
    async def broken(event: ErrorEvent) -> None:
        raise RuntimeError("hook failed")

    exc = registry(logger=None, on_error=[broken])
    error = PaymentDeclined()

    with pytest.raises(PaymentDeclined) as raised:
        await exc.handle(error)

    assert raised.value is error


async def test_failing_hook_is_reported_and_later_hooks_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    def broken(event: ErrorEvent) -> None:
        raise RuntimeError("hook failed")

    exc = registry(on_error=[broken, lambda e: seen.append(e.outcome)])

    await outcome_of(exc, KeyError())

    reports = [r for r in records(caplog) if r.getMessage().startswith("on_error hook")]
    assert [r.getMessage() for r in reports] == [
        "on_error hook test_failing_hook_is_reported_and_later_hooks_still_run.<locals>.broken "
        "failed"
    ]
    assert reports[0].exc_info is not None
    assert isinstance(reports[0].exc_info[1], RuntimeError)
    assert seen == ["handled"]


async def test_failing_hook_is_reported_even_with_logging_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: ErrorEvent) -> None:
        raise RuntimeError("hook failed")

    await outcome_of(registry(logger=None, on_error=[broken]), KeyError())

    assert [r.getMessage() for r in records(caplog)] == [
        "on_error hook test_failing_hook_is_reported_even_with_logging_off.<locals>.broken failed"
    ]


def test_non_callable_hook_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="on_error hook 42 is not callable"):
        ExceptionMiddleware(on_error=[42])  # type: ignore[list-item]


# -- stats ------------------------------------------------------------------------------------


async def test_stats_count_per_class_and_outcome() -> None:
    exc = registry(logger=None)

    for error in (ValueError(), ValueError(), KeyError(), OSError(), PaymentDeclined()):
        await outcome_of(exc, error)

    assert exc.get_error_stats() == {
        "ValueError": {"published": 2},
        "KeyError": {"handled": 1},
        "OSError": {"failed": 1},
        PAYMENT: {"unhandled": 1},
    }


async def test_stats_are_keyed_on_the_raised_class_not_the_handlers_key() -> None:
    exc = registry(logger=None)

    await outcome_of(exc, UnicodeDecodeError("utf-8", b"", 0, 1, "bad"))  # a ValueError

    assert exc.get_error_stats() == {"UnicodeDecodeError": {"published": 1}}


async def test_stats_of_a_group_are_keyed_on_its_leaves() -> None:
    exc = registry(logger=None)

    await outcome_of(exc, ExceptionGroup("g", [ValueError(), KeyError()]))

    assert exc.get_error_stats() == {"ValueError": {"published": 1}, "KeyError": {"handled": 1}}


async def test_reset_error_stats_starts_from_zero() -> None:
    exc = registry(logger=None)
    await outcome_of(exc, KeyError())

    exc.reset_error_stats()
    await outcome_of(exc, ValueError())

    assert exc.get_error_stats() == {"ValueError": {"published": 1}}


async def test_stats_are_a_snapshot() -> None:
    exc = registry(logger=None)
    await outcome_of(exc, KeyError())

    exc.get_error_stats()["KeyError"]["handled"] = 99

    assert exc.get_error_stats() == {"KeyError": {"handled": 1}}
