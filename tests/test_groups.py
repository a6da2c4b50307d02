"""Exception groups: taken apart like `except*`, each leaf to its MRO-nearest handler.

Nothing lost, nothing twice: every leaf is handled once or re-raised once, in a group of the
same shape, and cancellation leaves always propagate.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

import anyio
import pytest

from excepthub import Defaults, ExceptionMiddleware, Outcome, reraise

pytestmark = pytest.mark.anyio


class Recorder:
    """Handlers that remember which error each of them got."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, BaseException]] = []

    def side_effect(self, name: str) -> Any:
        async def handler(error: Exception) -> None:
            self.calls.append((name, error))

        handler.__qualname__ = name
        return handler

    def fallback(self, name: str) -> Any:
        async def handler(error: Exception) -> str:
            self.calls.append((name, error))
            return name

        handler.__qualname__ = name
        return handler


def shape(error: BaseException) -> object:
    """A group's nesting, message and leaf identities, for comparing structures."""
    if isinstance(error, BaseExceptionGroup):
        return (type(error), error.message, [shape(e) for e in error.exceptions])
    return id(error)


def tracebacks(error: BaseException) -> list[TracebackType]:
    found = []
    tb = error.__traceback__
    while tb is not None:
        found.append(tb)
        tb = tb.tb_next
    return found


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


async def test_handler_keyed_on_a_group_class_matches_the_group_first(rec: Recorder) -> None:
    exc = ExceptionMiddleware(
        handlers={ValueError: rec.side_effect("leaf")},
        publish_handlers={ExceptionGroup: rec.fallback("group")},
    )
    group = ExceptionGroup("g", [ValueError(), ValueError()])

    outcome = await exc.handle(group)

    assert outcome == Outcome(True, "group", exc.publish_handlers[ExceptionGroup], group)
    assert rec.calls == [("group", group)]


async def test_handler_keyed_on_a_group_subclass_matches_that_group(rec: Recorder) -> None:
    class Batch(ExceptionGroup[Exception]):
        pass

    exc = ExceptionMiddleware(handlers={Batch: rec.side_effect("batch")})
    batch = Batch("b", [ValueError(), KeyError()])

    await exc.handle(batch)

    assert rec.calls == [("batch", batch)]


async def test_group_without_a_group_handler_is_taken_apart_leaf_by_leaf(rec: Recorder) -> None:
    exc = ExceptionMiddleware(
        handlers={ValueError: rec.side_effect("value"), KeyError: rec.side_effect("key")}
    )
    first, second = ValueError(), KeyError()

    outcome = await exc.handle(ExceptionGroup("g", [first, second]))

    assert rec.calls == [("value", first), ("key", second)]
    assert not outcome.published


async def test_broad_exception_handler_takes_the_leaves_not_the_group(rec: Recorder) -> None:
    exc = ExceptionMiddleware(handlers={Exception: rec.side_effect("any")})
    first, second = ValueError(), KeyError()

    await exc.handle(ExceptionGroup("g", [first, second]))

    assert rec.calls == [("any", first), ("any", second)]


async def test_first_leaf_with_a_fallback_handler_depth_first_publishes(rec: Recorder) -> None:
    exc = ExceptionMiddleware(
        publish_handlers={ValueError: rec.fallback("value"), KeyError: rec.fallback("key")}
    )
    nested_key, later_value = KeyError(), ValueError()
    group = ExceptionGroup("g", [ExceptionGroup("inner", [nested_key]), later_value])

    outcome = await exc.handle(group)

    assert (outcome.published, outcome.value) == (True, "key")
    assert outcome.error is group


async def test_other_fallback_leaves_go_to_their_side_effect_handler(rec: Recorder) -> None:
    exc = ExceptionMiddleware(
        handlers={ValueError: rec.side_effect("value side effect")},
        publish_handlers={ValueError: rec.fallback("value fallback")},
    )
    first, second = ValueError(1), ValueError(2)

    outcome = await exc.handle(ExceptionGroup("g", [first, second]))

    assert rec.calls == [("value fallback", first), ("value side effect", second)]
    assert outcome.value == "value fallback"


async def test_leaf_with_only_a_fallback_handler_runs_it_with_its_value_set_aside(
    rec: Recorder,
) -> None:
    exc = ExceptionMiddleware(publish_handlers={ValueError: rec.fallback("fallback")})
    first, second = ValueError(1), ValueError(2)

    outcome = await exc.handle(ExceptionGroup("g", [first, second]))

    assert rec.calls == [("fallback", first), ("fallback", second)]
    assert outcome.value == "fallback"
    assert exc.get_error_stats() == {"ValueError": {"published": 1, "handled": 1}}


async def test_unhandled_leaves_are_reraised_in_a_group_of_the_same_shape(rec: Recorder) -> None:
    exc = ExceptionMiddleware(handlers={ValueError: rec.side_effect("value")}, logger=None)
    kept_a, handled, kept_b = KeyError("a"), ValueError(), OSError("b")
    group = ExceptionGroup(
        "outer", [ExceptionGroup("inner", [kept_a, handled]), ExceptionGroup("other", [kept_b])]
    )

    with pytest.raises(ExceptionGroup) as raised:
        await exc.handle(group)

    expected, _ = group.split(lambda e: e is kept_a or e is kept_b)
    assert expected is not None
    assert shape(raised.value) == shape(expected)
    assert rec.calls == [("value", handled)]


async def test_reraised_group_keeps_traceback_cause_context_and_notes(rec: Recorder) -> None:
    exc = ExceptionMiddleware(handlers={ValueError: rec.side_effect("value")}, logger=None)
    try:
        try:
            raise RuntimeError("context")
        except RuntimeError:
            raise ExceptionGroup("g", [ValueError(), KeyError()]) from OSError("cause")
    except ExceptionGroup as caught:
        group = caught
    group.add_note("a note")

    with pytest.raises(ExceptionGroup) as raised:
        await exc.handle(group)

    rest = raised.value
    assert rest is not group
    assert group.__traceback__ in tracebacks(rest)  # raising again only adds frames on top
    assert isinstance(rest.__cause__, OSError)
    assert isinstance(rest.__context__, RuntimeError)
    assert rest.__notes__ == ["a note"]


async def test_group_with_no_handled_leaf_propagates_the_original_group() -> None:
    exc = ExceptionMiddleware(handlers={OSError: lambda e: None}, logger=None)
    group = ExceptionGroup("g", [ValueError(), KeyError()])

    with pytest.raises(ExceptionGroup) as raised:
        await exc.handle(group)

    assert raised.value is group


class FrameworkSignal(Exception):
    pass


async def test_group_whose_leaves_only_framework_defaults_take_goes_on_as_it_came(
    rec: Recorder,
) -> None:
    exc = ExceptionMiddleware(handlers={OSError: rec.side_effect("os")}, logger=None)
    framework = Defaults("framework", publish_handlers={FrameworkSignal: rec.fallback("default")})
    group = ExceptionGroup("g", [FrameworkSignal(), ValueError()])

    with pytest.raises(ExceptionGroup) as raised:
        await exc.handle(group, defaults=framework)

    assert raised.value is group
    assert rec.calls == []


async def test_group_of_one_leaf_a_framework_default_takes_goes_on_as_it_came(
    rec: Recorder,
) -> None:
    exc = ExceptionMiddleware(logger=None)
    framework = Defaults("framework", publish_handlers={FrameworkSignal: rec.fallback("default")})
    group = ExceptionGroup("g", [FrameworkSignal()])

    with pytest.raises(ExceptionGroup) as raised:
        await exc.handle(group, defaults=framework)

    assert raised.value is group
    assert rec.calls == []


async def test_group_with_a_leaf_the_user_takes_gives_the_other_leaves_to_the_defaults(
    rec: Recorder,
) -> None:
    exc = ExceptionMiddleware(handlers={ValueError: rec.side_effect("user")}, logger=None)
    framework = Defaults("framework", handlers={FrameworkSignal: rec.side_effect("default")})
    signal, value = FrameworkSignal(), ValueError()

    await exc.handle(ExceptionGroup("g", [signal, value]), defaults=framework)

    assert rec.calls == [("default", signal), ("user", value)]


async def test_group_whose_leaves_a_user_reraise_takes_goes_on_as_it_came() -> None:
    exc = ExceptionMiddleware(handlers={Exception: lambda e: None, ValueError: reraise})
    group = ExceptionGroup("g", [ValueError(), ValueError()])

    with pytest.raises(ExceptionGroup) as raised:
        await exc.handle(group)

    assert raised.value is group


async def test_group_of_one_leaf_gives_the_leaf_to_the_handler(rec: Recorder) -> None:
    exc = ExceptionMiddleware(publish_handlers={ValueError: rec.fallback("value")})
    leaf = ValueError()

    outcome = await exc.handle(ExceptionGroup("g", [leaf]))

    assert rec.calls == [("value", leaf)]
    assert outcome == Outcome(True, "value", exc.publish_handlers[ValueError], leaf)


async def test_nested_group_of_one_leaf_behaves_as_the_leaf(rec: Recorder) -> None:
    exc = ExceptionMiddleware(handlers={ValueError: rec.side_effect("value")})
    leaf = ValueError()

    outcome = await exc.handle(ExceptionGroup("a", [ExceptionGroup("b", [leaf])]))

    assert rec.calls == [("value", leaf)]
    assert outcome.error is leaf


async def test_group_of_one_unhandled_leaf_propagates_the_original_group() -> None:
    exc = ExceptionMiddleware(handlers={OSError: lambda e: None}, logger=None)
    group = ExceptionGroup("g", [ValueError()])

    with pytest.raises(ExceptionGroup) as raised:
        await exc.handle(group)

    assert raised.value is group


async def test_cancellation_leaves_always_propagate(rec: Recorder) -> None:
    exc = ExceptionMiddleware(handlers={Exception: rec.side_effect("any")})
    cancelled, handled = asyncio.CancelledError(), ValueError()
    group = BaseExceptionGroup("g", [cancelled, handled])

    with pytest.raises(BaseExceptionGroup) as raised:
        await exc.handle(group)

    assert raised.value.exceptions == (cancelled,)
    assert rec.calls == [("any", handled)]


async def test_group_of_one_cancellation_leaf_propagates_the_original_group() -> None:
    exc = ExceptionMiddleware(handlers={Exception: lambda e: None})
    group = BaseExceptionGroup("g", [KeyboardInterrupt()])

    with pytest.raises(BaseExceptionGroup) as raised:
        await exc.handle(group)

    assert raised.value is group


async def test_group_of_only_cancellation_leaves_propagates_the_original_group() -> None:
    exc = ExceptionMiddleware(handlers={Exception: lambda e: None})
    group = BaseExceptionGroup("g", [asyncio.CancelledError(), KeyboardInterrupt()])

    with pytest.raises(BaseExceptionGroup) as raised:
        await exc.handle(group)

    assert raised.value is group


async def test_leaf_with_a_reraise_handler_is_reraised_with_the_unhandled(rec: Recorder) -> None:
    exc = ExceptionMiddleware(handlers={Exception: rec.side_effect("any")}, logger=None)
    exc.add_handler(KeyError)(reraise)
    passed, handled = KeyError(), ValueError()

    with pytest.raises(ExceptionGroup) as raised:
        await exc.handle(ExceptionGroup("g", [passed, handled]))

    assert raised.value.exceptions == (passed,)
    assert rec.calls == [("any", handled)]


async def test_every_handled_leaf_is_counted_under_its_own_class(rec: Recorder) -> None:
    exc = ExceptionMiddleware(handlers={Exception: rec.side_effect("any")}, logger=None)

    await exc.handle(ExceptionGroup("g", [ValueError(), ValueError(), KeyError()]))

    assert exc.get_error_stats() == {"ValueError": {"handled": 2}, "KeyError": {"handled": 1}}


async def test_failing_leaf_handler_loses_no_other_leaf(rec: Recorder) -> None:
    async def fail(error: Exception) -> None:
        raise RuntimeError("handler failed")

    exc = ExceptionMiddleware(
        handlers={KeyError: fail, ValueError: rec.side_effect("value")}, logger=None
    )
    failing, handled, cancelled = KeyError(), ValueError(), asyncio.CancelledError()
    group = BaseExceptionGroup("g", [failing, handled, cancelled])

    with pytest.raises(BaseExceptionGroup) as raised:
        await exc.handle(group)

    failure, rest = raised.value.exceptions
    assert isinstance(failure, RuntimeError)
    assert failure.__context__ is failing
    assert isinstance(rest, BaseExceptionGroup)
    assert rest.exceptions == (cancelled,)
    assert rec.calls == [("value", handled)]  # the handlers after the failing one still ran


async def test_failing_handler_of_a_fully_handled_group_propagates_alone(rec: Recorder) -> None:
    async def fail(error: Exception) -> None:
        raise RuntimeError("handler failed")

    exc = ExceptionMiddleware(handlers={KeyError: fail, ValueError: rec.side_effect("value")})
    failing = KeyError()

    with pytest.raises(RuntimeError) as raised:
        await exc.handle(ExceptionGroup("g", [failing, ValueError()]))

    assert raised.value.__context__ is failing


async def test_task_group_failure_reaches_the_handler_for_the_exception_inside() -> None:
    class PaymentDeclined(Exception):
        pass

    exc = ExceptionMiddleware()

    @exc.add_handler(PaymentDeclined, publish=True)
    async def declined(error: PaymentDeclined) -> dict[str, str]:
        return {"error": "payment declined"}

    async def charge() -> None:
        raise PaymentDeclined("card 4242")

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(charge)
            tg.start_soon(anyio.sleep, 0)
    except BaseException as error:
        outcome = await exc.handle(error)

    assert outcome.value == {"error": "payment declined"}
