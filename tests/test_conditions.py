"""Conditions and declines: a registration may carry a condition, a handler may decline, and the
error goes to the next candidate in the one order (DESIGN rule 9); when none is left it goes on
exactly as if nothing were registered.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

from excepthub import (
    Decline,
    Defaults,
    Depends,
    ErrorEvent,
    ExceptionMiddleware,
    Resolution,
    ShadowedHandlerWarning,
    reraise,
)

pytestmark = pytest.mark.anyio


class HTTPStatusError(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(status_code)
        self.status_code = status_code


class NotFound(HTTPStatusError):
    pass


def is_429(error: HTTPStatusError) -> bool:
    return error.status_code == 429


async def busy(error: Exception) -> str:
    return "busy"


async def broad(error: Exception) -> str:
    return "broad"


async def log_it(error: Exception) -> None:
    pass


def raised(error: BaseException) -> BaseException:
    """`error` with a traceback, as an `except` block gets it."""
    try:
        raise error
    except BaseException as caught:
        return caught


# -- conditions -----------------------------------------------------------------------------


async def test_a_registration_whose_condition_holds_takes_the_error() -> None:
    exc = ExceptionMiddleware(logger=None, publish_handlers={Exception: broad})
    exc.add_handler(HTTPStatusError, publish=True, when=is_429)(busy)

    outcome = await exc.handle(HTTPStatusError(429))

    assert (outcome.value, outcome.handler) == ("busy", busy)


async def test_a_condition_that_does_not_hold_passes_the_error_to_the_next_candidate() -> None:
    exc = ExceptionMiddleware(logger=None, publish_handlers={Exception: broad})
    exc.add_handler(HTTPStatusError, publish=True, when=is_429)(busy)

    outcome = await exc.handle(HTTPStatusError(500))

    assert (outcome.value, outcome.handler) == ("broad", broad)


async def test_with_no_candidate_left_the_error_goes_on_unchanged() -> None:
    exc = ExceptionMiddleware(logger=None)
    exc.add_handler(HTTPStatusError, publish=True, when=is_429)(busy)
    error = raised(HTTPStatusError(500))
    traceback, context = error.__traceback__, error.__context__

    with pytest.raises(HTTPStatusError) as caught:
        await exc.handle(error)

    assert caught.value is error
    assert caught.value.__context__ is context
    assert traceback in _tracebacks(caught.value)  # raising again only adds frames on top


async def test_conditional_registrations_for_a_class_are_asked_in_order_before_the_other() -> None:
    asked: list[str] = []
    exc = ExceptionMiddleware(logger=None)

    def condition(name: str, holds: bool) -> Any:
        def check(error: Exception) -> bool:
            asked.append(name)
            return holds

        return check

    async def first(error: Exception) -> str:
        return "first"

    async def second(error: Exception) -> str:
        return "second"

    async def third(error: Exception) -> str:
        return "third"

    exc.add_handler(KeyError, publish=True)(third)  # unconditional, registered first
    exc.add_handler(KeyError, publish=True, when=condition("first", False))(first)
    exc.add_handler(KeyError, publish=True, when=condition("second", True))(second)

    assert (await exc.handle(KeyError())).value == "second"
    assert asked == ["first", "second"]
    assert [r.handler for r in exc.candidates(KeyError)] == [first, second, third]


async def test_a_new_unconditional_registration_replaces_the_old_and_keeps_the_conditions() -> None:
    exc = ExceptionMiddleware(logger=None)
    exc.add_handler(HTTPStatusError, publish=True)(broad)
    exc.add_handler(HTTPStatusError, publish=True, when=is_429)(busy)
    exc.add_handler(HTTPStatusError, publish=True)(log_and_answer)

    assert [(r.handler, r.condition) for r in exc.candidates(HTTPStatusError)] == [
        (busy, is_429),
        (log_and_answer, None),
    ]
    assert exc.publish_handlers == {HTTPStatusError: log_and_answer}


async def log_and_answer(error: Exception) -> str:
    return "answered"


async def test_the_same_conditional_registration_twice_is_asked_once() -> None:
    exc = ExceptionMiddleware(logger=None)
    exc.add_handler(HTTPStatusError, publish=True, when=is_429)(busy)
    exc.add_handler(HTTPStatusError, publish=True, when=is_429)(busy)

    assert exc.candidates(HTTPStatusError) == (Resolution(busy, True, HTTPStatusError, is_429),)


async def test_conditions_are_evaluated_per_error_with_the_memo_per_class() -> None:
    exc = ExceptionMiddleware(logger=None, publish_handlers={Exception: broad})
    exc.add_handler(HTTPStatusError, publish=True, when=is_429)(busy)

    answers = [(await exc.handle(HTTPStatusError(code))).value for code in (429, 500, 429)]

    assert answers == ["busy", "broad", "busy"]


# -- the one order of candidates ------------------------------------------------------------


async def test_candidates_are_fallbacks_nearest_first_then_side_effects_nearest_first() -> None:
    with pytest.warns(ShadowedHandlerWarning):  # reached only when both fallbacks decline
        exc = ExceptionMiddleware(
            logger=None,
            publish_handlers={LookupError: broad, Exception: busy},
            handlers={KeyError: log_it, Exception: log_and_answer_none},
        )

    assert exc.candidates(KeyError) == (
        Resolution(broad, True, LookupError),
        Resolution(busy, True, Exception),
        Resolution(log_it, False, KeyError),
        Resolution(log_and_answer_none, False, Exception),
    )
    assert exc.candidates(KeyError("k")) == exc.candidates(KeyError)


async def log_and_answer_none(error: Exception) -> None:
    pass


async def test_declining_fallbacks_reach_the_side_effect_handlers_in_order() -> None:
    exc = ExceptionMiddleware(logger=None)

    async def declines(error: Exception) -> str:
        raise Decline

    exc.add_handler(LookupError, publish=True)(declines)
    with pytest.warns(ShadowedHandlerWarning, match="only a Decline from it passes the error on"):
        exc.add_handler(KeyError)(log_it)

    outcome = await exc.handle(KeyError())

    assert (outcome.published, outcome.handler) == (False, log_it)


def test_candidates_end_at_a_pass_through() -> None:
    exc = ExceptionMiddleware(logger=None, publish_handlers={Exception: broad})
    exc.add_handler(KeyError, publish=True, when=lambda error: True)(busy)
    exc.add_handler(LookupError)(reraise)

    assert [r.handler for r in exc.candidates(KeyError)] == [busy, reraise]


async def test_a_conditional_pass_through_lets_through_only_when_it_holds() -> None:
    exc = ExceptionMiddleware(logger=None, publish_handlers={Exception: broad})
    exc.add_handler(HTTPStatusError, when=is_429)(reraise)
    error = HTTPStatusError(429)

    with pytest.raises(HTTPStatusError) as caught:
        await exc.handle(error)

    assert caught.value is error
    assert (await exc.handle(HTTPStatusError(500))).value == "broad"


# -- Decline --------------------------------------------------------------------------------


def test_decline_is_no_exception_and_cannot_be_registered() -> None:
    assert issubclass(Decline, BaseException)
    assert not issubclass(Decline, Exception)
    with pytest.raises(TypeError, match="not an Exception"):
        ExceptionMiddleware().add_handler(Decline)  # type: ignore[type-var]


async def test_a_handler_that_declines_passes_the_error_to_the_next_candidate() -> None:
    exc = ExceptionMiddleware(logger=None, publish_handlers={Exception: broad})

    @exc.add_handler(HTTPStatusError, publish=True)
    async def only_429(error: HTTPStatusError) -> str:
        if error.status_code != 429:
            raise Decline
        return "busy"

    assert (await exc.handle(HTTPStatusError(429))).value == "busy"
    assert (await exc.handle(HTTPStatusError(500))).value == "broad"


async def test_a_decline_passes_through_a_broad_except_exception_in_the_handler() -> None:
    exc = ExceptionMiddleware(logger=None, publish_handlers={Exception: broad})

    @exc.add_handler(KeyError, publish=True)
    async def careful(error: KeyError) -> str:
        try:
            raise Decline
        except Exception:  # the user's own safety net: not for a decline
            return "swallowed"

    assert (await exc.handle(KeyError())).value == "broad"


async def test_when_every_candidate_declines_the_same_error_goes_on_with_its_traceback() -> None:
    exc = ExceptionMiddleware(logger=None)

    @exc.add_handler(KeyError, publish=True)
    async def declines(error: KeyError) -> str:
        raise Decline

    error = raised(KeyError("k"))
    traceback = error.__traceback__

    with pytest.raises(KeyError) as caught:
        await exc.handle(error)

    assert caught.value is error
    assert caught.value.__context__ is None
    assert traceback in _tracebacks(caught.value)
    assert "declines" not in [tb.tb_frame.f_code.co_name for tb in _tracebacks(caught.value)]


async def test_a_sync_handler_in_a_worker_thread_and_one_with_depends_may_decline() -> None:
    def dependency() -> str:
        return "dep"

    exc = ExceptionMiddleware(logger=None, publish_handlers={Exception: broad})

    @exc.add_handler(KeyError, publish=True)
    def in_a_thread(error: KeyError) -> str:
        assert threading.current_thread() is not threading.main_thread()
        raise Decline

    @exc.add_handler(IndexError, publish=True)
    async def with_depends(error: IndexError, dep: str = Depends(dependency)) -> str:
        raise Decline

    assert (await exc.handle(KeyError())).value == "broad"
    assert (await exc.handle(IndexError())).value == "broad"


async def test_cancellation_raised_by_a_handler_is_never_a_decline_nor_swallowed() -> None:
    exc = ExceptionMiddleware(logger=None, publish_handlers={Exception: broad})

    @exc.add_handler(KeyError, publish=True)
    async def cancelled(error: KeyError) -> str:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await exc.handle(KeyError())


# -- observation ----------------------------------------------------------------------------


async def test_the_event_shows_the_handlers_that_declined_and_one_outcome_per_error() -> None:
    events: list[ErrorEvent] = []
    exc = ExceptionMiddleware(logger=None, on_error=[events.append])

    async def declines(error: Exception) -> str:
        raise Decline

    exc.add_handler(HTTPStatusError, publish=True, when=is_429)(busy)
    exc.add_handler(LookupError, publish=True)(declines)
    exc.add_handler(Exception, publish=True)(broad)

    class Both(HTTPStatusError, LookupError):
        pass

    await exc.handle(Both(500))

    assert [(e.outcome, e.handler, e.declined) for e in events] == [
        ("published", broad, (busy, declines))
    ]
    assert exc.get_error_stats() == {f"{__name__}.{Both.__qualname__}": {"published": 1}}


async def test_an_unhandled_event_shows_the_declines_too() -> None:
    events: list[ErrorEvent] = []
    exc = ExceptionMiddleware(logger=None, on_error=[events.append])
    exc.add_handler(HTTPStatusError, publish=True, when=is_429)(busy)

    with pytest.raises(HTTPStatusError):
        await exc.handle(HTTPStatusError(500))

    assert [(e.outcome, e.handler, e.declined) for e in events] == [("unhandled", None, (busy,))]


async def test_a_condition_that_raises_is_logged_counted_and_passes_the_error_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[ErrorEvent] = []
    exc = ExceptionMiddleware(publish_handlers={Exception: broad}, on_error=[events.append])

    def broken(error: HTTPStatusError) -> bool:
        return error.response.status_code == 429  # type: ignore[attr-defined, no-any-return]

    exc.add_handler(HTTPStatusError, publish=True, when=broken)(busy)
    error = HTTPStatusError(429)

    with caplog.at_level(logging.ERROR, "excepthub"):
        outcome = await exc.handle(error)

    assert outcome.value == "broad"
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "the condition of" in record.getMessage()
    assert "busy" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], AttributeError)
    assert record.exc_info[1].__context__ is error  # what it was asked about
    assert exc.get_error_stats() == {
        "AttributeError": {"failed": 1},
        f"{__name__}.HTTPStatusError": {"published": 1},
    }
    assert [(e.outcome, e.handler) for e in events] == [("failed", broken), ("published", broad)]
    assert events[1].declined == (busy,)


async def test_a_condition_that_returns_an_awaitable_is_a_failure_not_a_truth() -> None:
    exc = ExceptionMiddleware(logger=None, publish_handlers={Exception: broad})

    async def check(error: Exception) -> bool:
        return True

    exc.add_handler(KeyError, publish=True, when=lambda error: check(error))(busy)  # type: ignore[arg-type, return-value]

    assert (await exc.handle(KeyError())).value == "broad"
    assert exc.get_error_stats()["TypeError"] == {"failed": 1}


# -- registration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "match"),
    [
        (42, "when must be a function of the error returning a bool"),
        (log_it, "is async .* conditions are plain functions"),
        (lambda: True, "cannot be called with the error alone"),
        (lambda error, other: True, "cannot be called with the error alone"),
    ],
)
def test_a_condition_that_cannot_be_one_is_refused_at_registration(when: Any, match: str) -> None:
    exc = ExceptionMiddleware()

    with pytest.raises(TypeError, match=match):
        exc.add_handler(KeyError, when=when)

    assert exc.registrations() == ()


def test_registrations_list_every_class_handler_kind_and_condition() -> None:
    exc = ExceptionMiddleware(handlers={KeyError: log_it}, publish_handlers={ValueError: broad})
    exc.add_handler(HTTPStatusError, publish=True, when=is_429)(busy)
    exc.add_handler(KeyError, when=bool)(log_and_answer_none)

    assert set(exc.registrations()) == {
        Resolution(broad, True, ValueError),
        Resolution(busy, True, HTTPStatusError, is_429),
        Resolution(log_and_answer_none, False, KeyError, bool),
        Resolution(log_it, False, KeyError),
    }
    assert exc.registrations().index(Resolution(log_and_answer_none, False, KeyError, bool)) < (
        exc.registrations().index(Resolution(log_it, False, KeyError))
    )
    assert exc.handlers == {KeyError: log_it}  # the unconditional ones, as before


# -- resolve --------------------------------------------------------------------------------


def test_resolve_of_an_instance_evaluates_conditions() -> None:
    exc = ExceptionMiddleware(publish_handlers={Exception: broad})
    exc.add_handler(HTTPStatusError, publish=True, when=is_429)(busy)

    assert exc.resolve(HTTPStatusError(429)) == Resolution(busy, True, HTTPStatusError, is_429)
    assert exc.resolve(HTTPStatusError(500)) == Resolution(broad, True, Exception)


def test_resolve_of_a_class_answers_its_first_unconditional_candidate() -> None:
    exc = ExceptionMiddleware(publish_handlers={Exception: broad})
    exc.add_handler(HTTPStatusError, publish=True, when=is_429)(busy)
    only_conditional = ExceptionMiddleware()
    only_conditional.add_handler(HTTPStatusError, when=is_429)(log_it)

    assert exc.resolve(HTTPStatusError) == Resolution(broad, True, Exception)
    assert only_conditional.resolve(HTTPStatusError) is None


def test_resolve_counts_a_condition_that_raises_as_not_holding_and_reports_nothing() -> None:
    exc = ExceptionMiddleware(publish_handlers={Exception: broad})
    exc.add_handler(KeyError, publish=True, when=lambda error: 1 / 0 > 0)(busy)

    assert exc.resolve(KeyError()) == Resolution(broad, True, Exception)
    assert exc.get_error_stats() == {}


# -- exception groups -----------------------------------------------------------------------


async def test_each_leaf_of_a_group_goes_through_its_own_candidates() -> None:
    seen: list[tuple[str, int]] = []
    exc = ExceptionMiddleware(logger=None)

    @exc.add_handler(HTTPStatusError, when=is_429)
    async def on_429(error: HTTPStatusError) -> None:
        seen.append(("429", error.status_code))

    @exc.add_handler(Exception)
    async def others(error: Exception) -> None:
        seen.append(("others", getattr(error, "status_code", 0)))

    await exc.handle(ExceptionGroup("", [HTTPStatusError(429), HTTPStatusError(500)]))

    assert seen == [("429", 429), ("others", 500)]


async def test_a_declined_leaf_with_no_candidate_left_is_raised_on_in_the_group() -> None:
    exc = ExceptionMiddleware(logger=None)
    exc.add_handler(HTTPStatusError, when=is_429)(log_it)
    wanted, other = HTTPStatusError(429), HTTPStatusError(500)

    with pytest.raises(ExceptionGroup) as caught:
        await exc.handle(ExceptionGroup("", [wanted, other]))

    assert caught.value.exceptions == (other,)


async def test_a_group_handler_that_declines_lets_the_group_be_taken_apart() -> None:
    exc = ExceptionMiddleware(logger=None)

    @exc.add_handler(ExceptionGroup, publish=True)
    async def whole(error: ExceptionGroup[Exception]) -> str:
        raise Decline

    exc.add_handler(KeyError, publish=True)(broad)

    outcome = await exc.handle(ExceptionGroup("", [KeyError(), KeyError()]))

    assert (outcome.value, outcome.handler) == ("broad", broad)


# -- framework defaults ---------------------------------------------------------------------


async def framework_answer(error: Exception) -> str:
    return "framework"


FRAMEWORK = Defaults("framework", publish_handlers={HTTPStatusError: framework_answer})


async def test_a_users_conditional_registration_is_asked_before_the_framework_default() -> None:
    seen: list[int] = []
    exc = ExceptionMiddleware(logger=None)

    @exc.add_handler(HTTPStatusError, when=is_429)  # a side effect, still before the fallback
    async def count_429(error: HTTPStatusError) -> None:
        seen.append(error.status_code)

    handled = await exc.handle(HTTPStatusError(429), defaults=FRAMEWORK)
    answered = await exc.handle(HTTPStatusError(500), defaults=FRAMEWORK)

    assert (handled.published, handled.handler, seen) == (False, count_429, [429])
    assert (answered.value, answered.handler) == ("framework", framework_answer)


async def test_a_users_unconditional_registration_replaces_the_framework_default() -> None:
    exc = ExceptionMiddleware(logger=None)
    exc.add_handler(HTTPStatusError, publish=True)(busy)

    assert exc.candidates(HTTPStatusError, defaults=FRAMEWORK) == (
        Resolution(busy, True, HTTPStatusError),
    )


# -- snapshot and restore, for test overrides -----------------------------------------------


async def test_restore_puts_back_every_registration_and_clears_the_memos() -> None:
    exc = ExceptionMiddleware(logger=None, publish_handlers={Exception: broad})
    exc.add_handler(HTTPStatusError, publish=True, when=is_429)(busy)
    before = exc.registrations()
    snapshot = exc._snapshot()
    assert (await exc.handle(HTTPStatusError(429))).value == "busy"  # memoised now

    exc.add_handler(HTTPStatusError, publish=True)(log_and_answer)
    exc.add_handler(HTTPStatusError, publish=True, when=lambda error: True)(framework_answer)
    assert (await exc.handle(HTTPStatusError(429))).value == "busy"
    assert (await exc.handle(HTTPStatusError(500))).value == "framework"
    exc._restore(snapshot)

    assert exc.registrations() == before
    assert exc.publish_handlers == {Exception: broad}
    assert (await exc.handle(HTTPStatusError(500))).value == "broad"
    assert (await exc.handle(HTTPStatusError(429))).value == "busy"


def _tracebacks(error: BaseException) -> list[Any]:
    found, traceback = [], error.__traceback__
    while traceback is not None:
        found.append(traceback)
        traceback = traceback.tb_next
    return found
