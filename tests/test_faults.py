"""Faults: cancellation, failing handlers and dependencies, memory, and concurrent registration.

The core holds under each: cancellation goes through, a failure propagates with the original
reachable, nothing is kept alive, and a registration made on another thread is served whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from excepthub import Defaults, Depends, ErrorEvent, ExceptionMiddleware, Outcome, reraise
from excepthub._registry import MEMO_SIZE

pytestmark = pytest.mark.anyio


class Boom(Exception):
    pass


# -- cancellation -----------------------------------------------------------------------------


def slow_registry(started: anyio.Event, events: list[ErrorEvent]) -> ExceptionMiddleware:
    """A registry whose handler for `Boom` waits forever once it has started."""
    exc = ExceptionMiddleware(logger=None, on_error=[events.append])

    @exc.add_handler(Boom)
    async def slow(error: Boom) -> None:
        started.set()
        await anyio.sleep_forever()

    return exc


async def test_handler_cancelled_by_a_cancel_scope_lets_the_cancellation_through() -> None:
    started, events, returned = anyio.Event(), [], []
    exc = slow_registry(started, events)

    async def cancel_once_started(scope: anyio.CancelScope) -> None:
        await started.wait()
        scope.cancel()

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_once_started, scope)
            returned.append(await exc.handle(Boom()))

    assert scope.cancelled_caught
    assert returned == []


async def test_handler_cancelled_by_a_cancel_scope_is_not_counted_as_handled() -> None:
    started, events = anyio.Event(), []
    exc = slow_registry(started, events)

    async with anyio.create_task_group() as tg:
        tg.start_soon(exc.handle, Boom())
        await started.wait()
        tg.cancel_scope.cancel()

    assert exc.get_error_stats() == {}
    assert events == []


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_handler_cancelled_by_asyncio_task_cancellation_lets_it_through() -> None:
    started, events = anyio.Event(), []
    exc = slow_registry(started, events)
    task = asyncio.ensure_future(exc.handle(Boom()))
    await started.wait()

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert exc.get_error_stats() == {}
    assert events == []


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_handler_cancelled_by_trio_nursery_cancellation_lets_it_through() -> None:
    import trio

    started, events, seen = anyio.Event(), [], []
    exc = slow_registry(started, events)

    async def run() -> None:
        try:
            seen.append(await exc.handle(Boom()))
        except trio.Cancelled:
            seen.append("cancelled")
            raise

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await started.wait()
        nursery.cancel_scope.cancel()

    assert seen == ["cancelled"]
    assert exc.get_error_stats() == {}
    assert events == []


async def test_cancellation_in_a_group_leaf_handler_lets_it_through() -> None:
    started, events = anyio.Event(), []
    exc = slow_registry(started, events)
    exc.add_handler(ValueError)(lambda e: None)

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(exc.handle, ExceptionGroup("g", [ValueError(), Boom()]))
            await started.wait()
            scope.cancel()

    assert scope.cancelled_caught
    assert "handled" not in exc.get_error_stats().get(f"{__name__}.Boom", {})


# -- failing handlers and dependencies ---------------------------------------------------------


async def test_handler_that_raises_propagates_its_exception_with_the_original_as_context() -> None:
    exc = ExceptionMiddleware(logger=None)

    @exc.add_handler(Boom)
    async def fails(error: Boom) -> None:
        raise RuntimeError("handler failed")

    error = Boom()
    with pytest.raises(RuntimeError, match="handler failed") as raised:
        await exc.handle(error)

    assert raised.value.__context__ is error


async def test_sync_handler_failing_in_a_worker_thread_keeps_the_original_as_context() -> None:
    exc = ExceptionMiddleware(logger=None)

    @exc.add_handler(Boom)
    def fails(error: Boom) -> None:
        raise RuntimeError("handler failed")

    error = Boom()
    with pytest.raises(RuntimeError) as raised:
        await exc.handle(error)

    assert raised.value.__context__ is error


async def test_handler_failing_inside_its_own_except_keeps_the_original_in_the_chain() -> None:
    exc = ExceptionMiddleware(logger=None)

    @exc.add_handler(Boom)
    async def fails(error: Boom) -> None:
        try:
            {}["missing"]
        except KeyError:
            raise RuntimeError("handler failed") from None

    error = Boom()
    with pytest.raises(RuntimeError) as raised:
        await exc.handle(error)

    chain = []
    link: BaseException | None = raised.value
    while link is not None:
        chain.append(link)
        link = link.__context__
    assert [type(e) for e in chain] == [RuntimeError, KeyError, Boom]
    assert chain[-1] is error


def failing_dependency() -> str:
    raise LookupError("dependency failed")


def failing_teardown() -> Iterator[str]:
    yield "resource"
    raise OSError("teardown failed")


async def async_failing_teardown() -> AsyncIterator[str]:
    yield "resource"
    raise OSError("teardown failed")


async def test_handler_whose_depends_raises_propagates_it_with_the_original_as_context() -> None:
    exc = ExceptionMiddleware(logger=None)
    called: list[str] = []

    @exc.add_handler(Boom)
    async def on_boom(error: Boom, value: str = Depends(failing_dependency)) -> None:
        called.append(value)

    error = Boom()
    with pytest.raises(LookupError, match="dependency failed") as raised:
        await exc.handle(error)

    assert raised.value.__context__ is error
    assert called == []


@pytest.mark.parametrize("dependency", [failing_teardown, async_failing_teardown])
async def test_yield_dependency_whose_teardown_raises_propagates_it_with_the_original_as_context(
    dependency: Callable[[], Any],
) -> None:
    exc = ExceptionMiddleware(logger=None)
    called: list[str] = []

    @exc.add_handler(Boom)
    async def on_boom(error: Boom, value: str = Depends(dependency)) -> None:
        called.append(value)

    error = Boom()
    with pytest.raises(OSError, match="teardown failed") as raised:
        await exc.handle(error)

    assert raised.value.__context__ is error
    assert called == ["resource"]  # the handler ran; its teardown failed after it


async def fails_itself(error: Boom) -> None:
    raise RuntimeError("handler failed")


async def fails_in_depends(error: Boom, value: str = Depends(failing_dependency)) -> None: ...


async def fails_in_teardown(error: Boom, value: str = Depends(failing_teardown)) -> None: ...


@pytest.mark.parametrize("handler", [fails_itself, fails_in_depends, fails_in_teardown])
async def test_each_failure_is_counted_once_as_failed_under_the_original_class(
    handler: Callable[..., Awaitable[None]],
) -> None:
    exc = ExceptionMiddleware(handlers={Boom: handler}, logger=None)

    with pytest.raises(Exception):  # noqa: B017 - which one is the tests above
        await exc.handle(Boom())

    assert exc.get_error_stats() == {f"{__name__}.Boom": {"failed": 1}}


async def test_handled_unhandled_and_failed_outcomes_are_counted_apart() -> None:
    exc = ExceptionMiddleware(handlers={Boom: fails_itself, KeyError: lambda e: None}, logger=None)

    await exc.handle(KeyError())
    for error in (Boom(), ValueError()):
        with pytest.raises(Exception):  # noqa: B017
            await exc.handle(error)

    assert exc.get_error_stats() == {
        "KeyError": {"handled": 1},
        f"{__name__}.Boom": {"failed": 1},
        "ValueError": {"unhandled": 1},
    }


# -- memory -----------------------------------------------------------------------------------


class Marker:
    """A local of the frame that raised: alive exactly as long as that frame."""


def raise_in_a_frame() -> tuple[Boom, weakref.ref[Marker]]:
    marker = Marker()
    try:
        raise Boom(marker)  # raised, so that this frame is on the traceback
    except Boom as error:
        return error, weakref.ref(marker)


async def handled_async(error: Exception) -> str:
    return "handled"


def handled_sync(error: Exception) -> str:
    return "handled"


def a_dependency() -> Iterator[int]:
    yield 1


async def handled_with_depends(error: Exception, one: int = Depends(a_dependency)) -> str:
    return "handled"


@pytest.mark.parametrize("handler", [handled_async, handled_sync, handled_with_depends])
@pytest.mark.parametrize("publish", [True, False], ids=["fallback", "side-effect"])
@pytest.mark.filterwarnings("ignore::excepthub.DroppedValueWarning")  # the same handlers for both
async def test_handled_exception_its_traceback_and_frames_are_freed_after_handle(
    handler: Callable[..., Any], publish: bool
) -> None:
    exc = ExceptionMiddleware(logger="excepthub.test.quiet")
    exc.add_handler(Boom, publish=publish)(handler)
    error, marker = raise_in_a_frame()
    error.args = ()  # the marker lives on in the frame only
    error_ref = weakref.ref(error)
    outcome: Outcome | None = await exc.handle(error)
    outcome = None
    del error, outcome

    gc.collect()

    assert error_ref() is None
    assert marker() is None


async def test_unhandled_exception_is_freed_once_the_caller_drops_it() -> None:
    exc = ExceptionMiddleware(handlers={KeyError: lambda e: None}, logger=None)
    error, marker = raise_in_a_frame()
    error.args = ()
    error_ref = weakref.ref(error)
    with contextlib.suppress(Boom):
        await exc.handle(error)
    del error

    gc.collect()

    assert error_ref() is None
    assert marker() is None


@pytest.mark.filterwarnings("ignore::excepthub.DroppedValueWarning")
async def test_handled_group_and_its_leaves_are_freed_after_handle() -> None:
    exc = ExceptionMiddleware(handlers={Exception: handled_async}, logger=None)
    leaf, marker = raise_in_a_frame()
    leaf.args = ()
    group = ExceptionGroup("g", [leaf, ValueError()])
    refs = [weakref.ref(group), weakref.ref(leaf)]
    await exc.handle(group)
    del group, leaf

    gc.collect()

    assert [ref() for ref in refs] == [None, None]
    assert marker() is None


async def test_memo_stays_bounded_while_100_000_runtime_classes_are_raised() -> None:
    exc = ExceptionMiddleware(handlers={Exception: lambda e: None}, logger=None, inline=True)
    classes: list[weakref.ref[type]] = []
    for i in range(100_000):
        cls = type(f"Runtime{i}", (Boom,), {})
        classes.append(weakref.ref(cls))
        try:
            raise cls()
        except Boom as error:
            await exc.handle(error)
    del cls

    gc.collect()

    assert len(exc._state.base.memo) <= MEMO_SIZE
    assert sum(ref() is not None for ref in classes) <= MEMO_SIZE


async def test_memo_of_a_layering_stays_bounded() -> None:
    layer = Defaults("framework", handlers={KeyError: lambda e: None})
    exc = ExceptionMiddleware(handlers={Exception: lambda e: None}, logger=None, inline=True)
    classes: list[weakref.ref[type]] = []
    for i in range(MEMO_SIZE * 3):
        cls = type(f"Runtime{i}", (Boom,), {})
        classes.append(weakref.ref(cls))
        await exc.handle(cls(), defaults=layer)
    del cls

    gc.collect()

    assert sum(ref() is not None for ref in classes) <= MEMO_SIZE


# -- concurrency ------------------------------------------------------------------------------


class Shared(Exception):
    pass


class Framework(Shared):
    pass


async def test_threads_registering_while_thousands_of_tasks_handle_are_served_whole() -> None:
    count, threads_n, tasks_n = 120, 4, 2000
    classes = [type(f"Shared{i}", (Framework,), {}) for i in range(count)]
    layer = Defaults("framework", publish_handlers={Framework: lambda e: "default"})
    exc = ExceptionMiddleware(publish_handlers={Shared: lambda e: "base"}, logger=None)
    registered: set[int] = set()
    failures: list[BaseException] = []
    stale: list[tuple[int, object]] = []
    answers = [0]
    done = threading.Event()

    def handler_for(i: int) -> Callable[[Exception], Awaitable[int]]:
        async def handler(error: Exception) -> int:
            return i

        return handler

    def register(indices: range) -> None:
        try:
            for i in indices:
                exc.add_handler(classes[i], publish=True)(handler_for(i))
                registered.add(i)  # add_handler has returned: every later answer has it
                time.sleep(0.0005)
        except BaseException as error:  # pragma: no cover - the test fails on it below
            failures.append(error)

    threads = [
        threading.Thread(target=register, args=(range(k, count, threads_n),))
        for k in range(threads_n)
    ]

    def run_threads() -> None:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done.set()

    async def ask(seed: int) -> None:
        rng = random.Random(seed)
        defaults = layer if seed % 2 else None
        before_registration = "default" if defaults else "base"
        while True:  # every task answers at least once, most while the threads register
            i = rng.randrange(count)
            was_registered = i in registered
            try:
                outcome = await exc.handle(classes[i](), defaults=defaults)
            except BaseException as error:
                failures.append(error)
                return
            answers[0] += 1
            if outcome.value != i and (was_registered or outcome.value != before_registration):
                stale.append((i, outcome.value))
            if done.is_set():
                return
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for seed in range(tasks_n):
            tg.start_soon(ask, seed)
        await anyio.to_thread.run_sync(run_threads)

    final = [
        (await exc.handle(cls(), defaults=defaults)).value
        for defaults in (None, layer)
        for cls in classes
    ]
    assert failures == []
    assert stale == []
    assert answers[0] >= tasks_n
    assert final == [*range(count), *range(count)]


class _Wrapper(Exception):
    """A framework's wrapper whose `__cause__` is the user's error (FastMCP's `ToolError`)."""


async def test_an_unhandled_error_propagates_without_a_context_cycle_through_its_wrapper() -> None:
    exc = ExceptionMiddleware(logger=None)
    original = RuntimeError("user code")

    async def adapter() -> None:
        try:
            raise _Wrapper("calling the tool failed") from original
        except _Wrapper:  # the adapter unwraps and hands the cause to the registry
            await exc.handle(original)

    with pytest.raises(RuntimeError) as raised:
        await adapter()
    assert raised.value is original
    assert raised.value.__context__ is None  # unchanged: no cycle back through the wrapper


class _Steer(Exception):
    """A framework's control-flow exception (FastStream's `NackMessage`)."""


async def test_a_handler_raising_what_the_framework_lets_through_is_counted_as_handled() -> None:
    steering = Defaults("framework", handlers={_Steer: reraise})
    exc = ExceptionMiddleware(logger=None)

    @exc.add_handler(KeyError)
    async def nack_it(error: KeyError) -> None:
        raise _Steer("redeliver")

    with pytest.raises(_Steer) as raised:
        await exc.handle(KeyError("k"), defaults=steering)
    assert isinstance(raised.value.__context__, KeyError)
    assert exc.get_error_stats() == {"KeyError": {"handled": 1}}


async def test_the_same_raise_without_the_framework_layering_is_a_failure() -> None:
    exc = ExceptionMiddleware(logger=None)

    @exc.add_handler(KeyError)
    async def nack_it(error: KeyError) -> None:
        raise _Steer("redeliver")

    with pytest.raises(_Steer):
        await exc.handle(KeyError("k"))
    assert exc.get_error_stats() == {"KeyError": {"failed": 1}}
