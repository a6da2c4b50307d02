"""Retries: transient errors re-run the work in place, on a schedule checked with a fake clock.

`Retry.sleep` and `Retry.random` are swapped for fakes: no test here sleeps.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from excepthub import ErrorEvent, ExceptionMiddleware, RedeliveryUnsupported, Retry

pytestmark = pytest.mark.anyio


class FakeClock:
    """Records every wait instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


class Flaky:
    """Work that fails with `errors` in turn, then answers "done"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def policy(clock: FakeClock, **kwargs: Any) -> Retry:
    return Retry(sleep=clock.sleep, random=lambda: 0.5, **kwargs)  # 0.5: jitter spreads nothing


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_failure_clearing_on_the_third_attempt_succeeds_with_two_retries_logged(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    exc = ExceptionMiddleware(retry=policy(clock, attempts=3))
    work = Flaky(ConnectionError("1"), ConnectionError("2"))

    with caplog.at_level(logging.DEBUG, logger="excepthub"):
        result = await exc.call_with_retries(work, correlation_id="c-9")

    assert (result, work.calls) == ("done", 3)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "ConnectionError retried (attempt 1 of 3) [correlation_id=c-9]"),
        (logging.WARNING, "ConnectionError retried (attempt 2 of 3) [correlation_id=c-9]"),
    ]


async def test_each_retry_is_counted(clock: FakeClock) -> None:
    exc = ExceptionMiddleware(retry=policy(clock, attempts=3), logger=None)

    await exc.call_with_retries(Flaky(ConnectionError(), TimeoutError()))

    assert exc.get_error_stats() == {
        "ConnectionError": {"retried": 1},
        "TimeoutError": {"retried": 1},
    }


async def test_each_retry_is_shown_to_the_hooks(clock: FakeClock) -> None:
    events: list[ErrorEvent] = []
    exc = ExceptionMiddleware(retry=policy(clock), logger=None, on_error=[events.append])
    first = ConnectionError()

    await exc.call_with_retries(Flaky(first), correlation_id="c-1")

    assert [(e.error, e.outcome, e.correlation_id) for e in events] == [(first, "retried", "c-1")]


async def test_failure_that_never_clears_propagates_after_the_last_attempt(
    clock: FakeClock,
) -> None:
    exc = ExceptionMiddleware(retry=policy(clock, attempts=4), logger=None)
    last = ConnectionError("4")
    work = Flaky(ConnectionError("1"), ConnectionError("2"), ConnectionError("3"), last)

    with pytest.raises(ConnectionError) as raised:
        await exc.call_with_retries(work)

    assert raised.value is last
    assert work.calls == 4
    assert len(clock.waits) == 3


async def test_last_failure_then_reaches_its_handler(clock: FakeClock) -> None:
    exc = ExceptionMiddleware(
        retry=policy(clock, attempts=2),
        publish_handlers={ConnectionError: lambda e: "fallback"},
        logger=None,
    )
    work = Flaky(ConnectionError(), ConnectionError())

    try:
        result = await exc.call_with_retries(work)
    except ConnectionError as error:
        result = (await exc.handle(error)).value

    assert (result, work.calls) == ("fallback", 2)
    assert exc.get_error_stats() == {"ConnectionError": {"retried": 1, "published": 1}}


async def test_non_transient_error_is_not_retried(clock: FakeClock) -> None:
    exc = ExceptionMiddleware(retry=policy(clock), logger=None)
    work = Flaky(ValueError())

    with pytest.raises(ValueError):
        await exc.call_with_retries(work)

    assert work.calls == 1
    assert clock.waits == []


async def test_transient_classes_match_by_mro(clock: FakeClock) -> None:
    class Throttled(ConnectionResetError):
        pass

    exc = ExceptionMiddleware(retry=policy(clock), logger=None)
    work = Flaky(Throttled())

    assert await exc.call_with_retries(work) == "done"
    assert work.calls == 2


async def test_user_classes_may_be_transient(clock: FakeClock) -> None:
    class Busy(Exception):
        pass

    exc = ExceptionMiddleware(retry=policy(clock, on=(Busy,)), logger=None)
    work = Flaky(Busy(), Busy())

    assert await exc.call_with_retries(work) == "done"


async def test_group_of_transient_errors_is_retried(clock: FakeClock) -> None:
    exc = ExceptionMiddleware(retry=policy(clock), logger=None)
    work = Flaky(
        ExceptionGroup("task group", [ConnectionError(), ExceptionGroup("", [TimeoutError()])])
    )

    assert await exc.call_with_retries(work) == "done"
    assert work.calls == 2


async def test_group_with_a_lasting_error_is_not_retried(clock: FakeClock) -> None:
    exc = ExceptionMiddleware(retry=policy(clock), logger=None)
    work = Flaky(ExceptionGroup("task group", [ConnectionError(), ValueError()]))

    with pytest.raises(ExceptionGroup):
        await exc.call_with_retries(work)

    assert work.calls == 1


async def test_without_a_policy_the_work_runs_once() -> None:
    exc = ExceptionMiddleware(logger=None)
    work = Flaky(ConnectionError())

    with pytest.raises(ConnectionError):
        await exc.call_with_retries(work)

    assert work.calls == 1


async def test_backoff_is_exponential_and_capped(clock: FakeClock) -> None:
    retry = policy(clock, attempts=7, base_delay=0.1, multiplier=2.0, max_delay=1.0)
    exc = ExceptionMiddleware(retry=retry, logger=None)

    with pytest.raises(ConnectionError):
        await exc.call_with_retries(Flaky(*(ConnectionError() for _ in range(7))))

    assert clock.waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


@pytest.mark.parametrize(("draw", "factor"), [(0.0, 0.9), (0.5, 1.0), (1.0, 1.1)])
def test_jitter_spreads_the_delay_by_its_fraction(draw: float, factor: float) -> None:
    retry = Retry(base_delay=1.0, multiplier=3.0, max_delay=100.0, jitter=0.1, random=lambda: draw)

    assert [retry.delay(n) for n in (1, 2, 3)] == pytest.approx([factor, 3 * factor, 9 * factor])


def test_jitter_never_takes_the_delay_above_the_cap() -> None:
    retry = Retry(base_delay=1.0, max_delay=2.0, jitter=0.5, random=lambda: 1.0)

    assert [retry.delay(n) for n in range(1, 6)] == [1.5, 2.0, 2.0, 2.0, 2.0]


def test_late_retry_is_capped_without_overflow() -> None:
    retry = Retry(attempts=10_000, base_delay=0.1, multiplier=10.0, max_delay=30.0)

    assert retry.delay(5_000) <= 30.0


async def test_cancellation_during_backoff_stops_retrying_at_once() -> None:
    waiting = anyio.Event()

    async def sleep(seconds: float) -> None:
        waiting.set()
        await anyio.sleep(3600)

    exc = ExceptionMiddleware(retry=Retry(sleep=sleep, attempts=5), logger=None)
    work = Flaky(*(ConnectionError() for _ in range(5)))

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(exc.call_with_retries, work)
            await waiting.wait()
            scope.cancel()

    assert scope.cancelled_caught
    assert work.calls == 1


async def test_cancellation_of_the_work_is_never_retried(clock: FakeClock) -> None:
    calls = []

    async def work() -> None:
        calls.append(1)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await anyio.sleep(1)  # cancelled here; the scope swallows it
        raise anyio.get_cancelled_exc_class()()

    exc = ExceptionMiddleware(retry=policy(clock, on=(Exception,)), logger=None)

    with anyio.CancelScope() as outer:
        outer.cancel()
        await exc.call_with_retries(work)

    assert calls == [1]
    assert clock.waits == []


# -- a retry made another way: record_retry ---------------------------------------------------


async def test_a_retry_made_elsewhere_is_logged_counted_and_shown_as_call_with_retries_does(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[ErrorEvent] = []
    exc = ExceptionMiddleware(retry=policy(clock, attempts=5), on_error=[events.append])
    error = ConnectionError("peer went away")

    with caplog.at_level(logging.DEBUG, logger="excepthub"):
        await exc.record_retry(error, 2, correlation_id="c-4", message="m")

    [record] = caplog.records
    assert (record.levelno, record.getMessage()) == (
        logging.WARNING,
        "ConnectionError retried (attempt 2 of 5) [correlation_id=c-4]",
    )
    assert exc.get_error_stats() == {"ConnectionError": {"retried": 1}}
    [event] = events
    assert (event.error, event.outcome, event.handler) == (error, "retried", None)
    assert (event.correlation_id, event.context["message"]) == ("c-4", "m")
    assert clock.waits == []  # a record only: the waiting is the caller's


async def test_a_retry_through_the_broker_reads_as_given_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exc = ExceptionMiddleware(retry=Retry(attempts=3, through_broker=True))

    with caplog.at_level(logging.DEBUG, logger="excepthub"):
        await exc.record_retry(TimeoutError(), 1)

    assert [r.getMessage() for r in caplog.records] == [
        "TimeoutError retried (attempt 1 of 3, given back to the broker)"
    ]


async def test_the_context_may_use_any_name() -> None:
    events: list[ErrorEvent] = []
    exc = ExceptionMiddleware(retry=Retry(), logger=None, on_error=[events.append])

    await exc.record_retry(ConnectionError(), 1, attempt="theirs", error="theirs")

    assert events[0].context == {"attempt": "theirs", "error": "theirs"}


@pytest.mark.parametrize(
    ("attempt", "error", "message"),
    [(0, ValueError, "counts from 1, got 0"), (True, TypeError, "must be an int, got True")],
)
async def test_record_retry_refuses_an_attempt_that_is_no_count(
    attempt: Any, error: type[Exception], message: str
) -> None:
    exc = ExceptionMiddleware(retry=Retry(), logger=None)
    with pytest.raises(error, match=message):
        await exc.record_retry(ConnectionError(), attempt)
    assert exc.get_error_stats() == {}


async def test_record_retry_without_a_policy_names_the_fix() -> None:
    exc = ExceptionMiddleware(logger=None)
    with pytest.raises(RuntimeError, match=r"ExceptionMiddleware\(retry=Retry\(\.\.\.\)\)"):
        await exc.record_retry(ConnectionError(), 1)


# -- through_broker where nothing can give the work back ---------------------------------------


async def test_call_with_retries_refuses_a_policy_through_the_broker_before_the_work_runs(
    clock: FakeClock,
) -> None:
    exc = ExceptionMiddleware(retry=policy(clock, through_broker=True), logger=None)
    work = Flaky(ConnectionError())

    with pytest.raises(RedeliveryUnsupported, match=r"through_broker=False") as raised:
        await exc.call_with_retries(work)

    assert "dataclasses.replace(policy, through_broker=False)" in str(raised.value)
    assert work.calls == 0  # neither run once nor retried in the process
    assert clock.waits == []
    assert exc.get_error_stats() == {}


# -- validation -------------------------------------------------------------------------------

INVALID: dict[str, tuple[Callable[[], Retry], type[Exception], str]] = {
    "on: not a class": (lambda: Retry(on=("x",)), TypeError, "takes Exception subclasses"),  # type: ignore[arg-type]
    "on: BaseException-only": (
        lambda: Retry(on=(KeyboardInterrupt,)),  # type: ignore[arg-type]
        TypeError,
        "takes Exception subclasses",
    ),
    "on: empty": (lambda: Retry(on=()), TypeError, "takes Exception subclasses"),
    "attempts: not an int": (lambda: Retry(attempts=2.5), TypeError, "must be an int"),  # type: ignore[arg-type]
    "attempts: a bool": (lambda: Retry(attempts=True), TypeError, "must be an int"),
    "attempts: zero": (lambda: Retry(attempts=0), ValueError, "must be at least 1"),
    "base_delay: negative": (lambda: Retry(base_delay=-1), ValueError, "base_delay=...) must be"),
    "max_delay: infinite": (lambda: Retry(max_delay=math.inf), ValueError, "max_delay=...) must"),
    "multiplier: nan": (lambda: Retry(multiplier=math.nan), ValueError, "multiplier=...) must"),
    "multiplier: text": (lambda: Retry(multiplier="2"), TypeError, "multiplier=...) must be"),  # type: ignore[arg-type]
    "jitter: above one": (lambda: Retry(jitter=1.5), ValueError, "is a fraction from 0 to 1"),
    "sleep: not callable": (lambda: Retry(sleep=None), TypeError, "sleep=...) must be callable"),  # type: ignore[arg-type]
    "random: not callable": (lambda: Retry(random=0.5), TypeError, "random=...) must be callable"),  # type: ignore[arg-type]
}


@pytest.mark.parametrize(("make", "error", "message"), INVALID.values(), ids=INVALID.keys())
def test_invalid_retry_is_refused_with_a_message(
    make: Callable[[], Retry], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_a_single_class_is_accepted_as_on() -> None:
    assert Retry(on=ConnectionError).on == (ConnectionError,)  # type: ignore[arg-type]


def test_registry_refuses_a_retry_that_is_not_a_retry() -> None:
    with pytest.raises(TypeError, match=r"retry must be an excepthub\.Retry"):
        ExceptionMiddleware(retry=3)  # type: ignore[arg-type]
