"""Recording: a test sees the error events of its own task (or of the whole registry), and
leaving the block puts the registry back as it was."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from excepthub import ExceptionMiddleware
from excepthub.testing import Recording, recording

pytestmark = pytest.mark.anyio
pytest_plugins = ["pytester"]


class PaymentError(Exception):
    pass


class CardDeclined(PaymentError):
    pass


async def payment_failed(error: PaymentError) -> dict[str, str]:
    return {"error": "payment failed"}


async def log_missing(error: KeyError) -> None:
    return None


def registry() -> ExceptionMiddleware:
    return ExceptionMiddleware(
        handlers={KeyError: log_missing},
        publish_handlers={PaymentError: payment_failed},
        logger=None,
    )


async def handle_quietly(exc: ExceptionMiddleware, error: Exception, **context: Any) -> None:
    try:
        await exc.handle(error, **context)
    except type(error):
        pass  # unhandled: it propagates, which is not the point here


async def test_each_event_carries_class_outcome_handler_correlation_id_and_framework() -> None:
    exc = registry()

    with recording(exc) as events:
        await exc.handle(CardDeclined(), correlation_id="c-1")

    event = events.only
    assert type(event.error) is CardDeclined
    assert (event.outcome, event.handler) == ("published", payment_failed)
    assert (event.correlation_id, event.framework) == ("c-1", None)


async def test_events_come_in_order_with_their_outcomes_and_handlers() -> None:
    exc = registry()

    with recording(exc) as events:
        await exc.handle(KeyError("k"))
        await handle_quietly(exc, ZeroDivisionError())
        await exc.handle(CardDeclined())

    assert events.outcomes == ["handled", "unhandled", "published"]
    assert events.handlers == [log_missing, None, payment_failed]
    assert [type(e.error) for e in events.of(PaymentError)] == [CardDeclined]


async def test_only_names_every_event_when_there_is_not_exactly_one() -> None:
    exc = registry()

    with recording(exc) as events:
        await exc.handle(KeyError("k"))
        await exc.handle(CardDeclined())

    with pytest.raises(AssertionError, match="exactly one error event, got 2") as raised:
        _ = events.only
    assert "KeyError handled by log_missing" in str(raised.value)
    assert "CardDeclined published by payment_failed" in str(raised.value)


async def test_nothing_is_recorded_before_or_after_the_block() -> None:
    exc = registry()
    await exc.handle(KeyError("before"))

    with recording(exc) as events:
        await exc.handle(KeyError("during"))
    await exc.handle(KeyError("after"))

    assert [str(e.error) for e in events] == ["'during'"]


async def test_leaving_the_block_takes_the_hook_back() -> None:
    seen: list[object] = []
    exc = registry()
    exc.on_error(seen.append)
    hooks = exc._observer.hooks

    with recording(exc):
        assert len(exc._observer.hooks) == len(hooks) + 1

    assert exc._observer.hooks == hooks
    await exc.handle(KeyError("k"))
    assert len(seen) == 1  # the user's own hook is still there


async def test_leaving_the_block_on_an_error_takes_the_hook_back_too() -> None:
    exc = registry()

    with pytest.raises(RuntimeError), recording(exc):
        raise RuntimeError("the test failed")

    assert exc._observer.hooks == ()


async def test_task_scope_sees_only_its_own_task_and_the_tasks_it_starts() -> None:
    exc = registry()
    both_recording = anyio.Event()
    recorded: dict[str, Recording] = {}

    async def a_test(name: str, error: Exception) -> None:
        with recording(exc) as events:
            recorded[name] = events
            if len(recorded) == 2:
                both_recording.set()
            await both_recording.wait()
            async with anyio.create_task_group() as tg:  # a task it starts: recorded
                tg.start_soon(exc.handle, error)

    async with anyio.create_task_group() as tg:
        tg.start_soon(a_test, "declined", CardDeclined())
        tg.start_soon(a_test, "missing", KeyError("k"))

    assert type(recorded["declined"].only.error) is CardDeclined
    assert type(recorded["missing"].only.error) is KeyError


async def test_task_scope_misses_a_thread_that_registry_scope_sees() -> None:
    exc = registry()

    def in_another_thread() -> None:  # like uvicorn serving in a thread of its own
        anyio.run(exc.handle, CardDeclined())

    with recording(exc) as mine, recording(exc, scope="registry") as everything:
        thread = threading.Thread(target=in_another_thread)
        thread.start()
        await anyio.to_thread.run_sync(thread.join)

    assert len(mine) == 0
    assert everything.only.handler is payment_failed


async def test_wait_returns_once_an_event_arrives_from_another_thread() -> None:
    exc = registry()

    with recording(exc, scope="registry") as events:
        timer = threading.Timer(
            0.05,
            anyio.run,
            (
                exc.handle,
                KeyError("late"),
            ),
        )
        timer.start()
        await events.wait(1, within=10)
        timer.join()

    assert events.only.outcome == "handled"


async def test_wait_fails_naming_what_was_recorded() -> None:
    exc = registry()

    with recording(exc) as events:
        await exc.handle(KeyError("k"))
        with pytest.raises(TimeoutError, match=r"expected 2 error event\(s\).*KeyError handled"):
            await events.wait(2, within=0.05)


def test_a_sync_test_records_the_event_loop_it_runs() -> None:
    exc = registry()

    with recording(exc) as events:
        anyio.run(exc.handle, CardDeclined())

    assert events.only.outcome == "published"


def test_bad_arguments_are_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match=r"takes an excepthub\.ExceptionMiddleware"):
        recording(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'task' records the events of this task"):
        recording(registry(), scope="thread")  # type: ignore[arg-type]


def test_a_recording_is_entered_once() -> None:
    events = recording(registry())
    with events, pytest.raises(RuntimeError, match="already active"), events:
        pass


# -- the pytest plugin -------------------------------------------------------------------------


async def test_the_fixture_records_until_the_test_ends(
    excepthub_recording: Callable[..., Recording],
) -> None:
    exc = registry()

    events = excepthub_recording(exc)
    await exc.handle(CardDeclined())

    assert events.only.handler is payment_failed


def test_the_fixtures_undo_their_work_when_the_test_ends(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from excepthub import ExceptionMiddleware

        exc = ExceptionMiddleware(handlers={KeyError: print}, logger=None)

        def test_uses_both(excepthub_recording, excepthub_overrides):
            excepthub_recording(exc)
            excepthub_overrides(exc)[KeyError] = repr
            assert len(exc._observer.hooks) == 1 and exc.handlers[KeyError] is repr

        def test_after_it():
            assert exc._observer.hooks == () and exc.handlers[KeyError] is print
        """
    )

    result = pytester.runpytest("-p", "no:cacheprovider")

    result.assert_outcomes(passed=2)


def test_the_plugin_is_registered_with_pytest() -> None:
    plugins = importlib.metadata.entry_points(group="pytest11")
    assert any(p.value == "_excepthub_pytestplugin" for p in plugins)


def test_the_plugin_imports_no_framework_and_no_hypothesis() -> None:
    heavy = ["excepthub", "fast_depends", "pydantic", "hypothesis", "fastapi", "starlette"]
    heavy += ["faststream", "fastmcp", "mcp", "httpx"]
    code = (
        "import sys; import _excepthub_pytestplugin; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
