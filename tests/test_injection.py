"""Injection: a handler's `Depends` are solved with as few worker-thread hops as its shape allows.

Hops are counted, never timed: every `anyio.to_thread.run_sync` call (excepthub's and
fast-depends') goes through a counting wrapper installed for the test, and every dependency and
handler records the thread it ran on.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from excepthub import Context, Depends, ExceptionMiddleware

pytestmark = pytest.mark.anyio


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every callable sent to a worker thread while the test runs."""
    sent: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counting(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        sent.append(getattr(func, "__name__", repr(func)))
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    return sent


@dataclass
class Trace:
    """What ran, in order, and on which thread."""

    events: list[tuple[str, int]] = field(default_factory=list)

    def __call__(self, what: str) -> None:
        self.events.append((what, threading.get_ident()))

    @property
    def names(self) -> list[str]:
        return [what for what, _ in self.events]

    @property
    def threads(self) -> set[int]:
        return {thread for _, thread in self.events}


# -- sync dependencies ------------------------------------------------------------------------


async def test_sync_handler_with_sync_and_yield_dependencies_costs_one_hop(
    hops: list[str],
) -> None:
    trace = Trace()
    exc = ExceptionMiddleware()

    def settings_() -> Iterator[str]:
        trace("open")
        yield "settings"
        trace("close")

    def name() -> str:
        trace("name")
        return "name"

    @exc.add_handler(ValueError, publish=True)
    def on_value(error: ValueError, s: str = Depends(settings_), n: str = Depends(name)) -> str:
        trace("handler")
        return s + n

    outcome = await exc.handle(ValueError())

    assert outcome.value == "settingsname"
    assert len(hops) == 1
    assert trace.names == ["open", "name", "handler", "close"]
    assert len(trace.threads) == 1  # the same worker thread throughout
    assert threading.get_ident() not in trace.threads


async def test_inline_handler_with_sync_and_yield_dependencies_costs_no_hop(
    hops: list[str],
) -> None:
    trace = Trace()
    exc = ExceptionMiddleware()

    def settings_() -> Iterator[str]:
        trace("open")
        yield "settings"
        trace("close")

    @exc.add_handler(ValueError, publish=True, inline=True)
    def on_value(error: ValueError, s: str = Depends(settings_)) -> str:
        trace("handler")
        return s

    assert (await exc.handle(ValueError())).value == "settings"
    assert hops == []
    assert trace.names == ["open", "handler", "close"]
    assert trace.threads == {threading.get_ident()}


async def test_async_handler_with_sync_dependencies_costs_one_hop(hops: list[str]) -> None:
    trace = Trace()
    exc = ExceptionMiddleware()

    def name() -> str:
        trace("name")
        return "name"

    @exc.add_handler(ValueError, publish=True)
    async def on_value(error: ValueError, n: str = Depends(name)) -> str:
        trace("handler")
        return n

    assert (await exc.handle(ValueError())).value == "name"
    assert len(hops) == 1
    assert trace.events[1] == ("handler", threading.get_ident())  # awaited on the loop


async def test_async_handler_with_a_sync_yield_dependency_leaves_it_in_a_second_hop(
    hops: list[str],
) -> None:
    # the handler runs on the loop between entering and leaving the dependency: two hops
    trace = Trace()
    exc = ExceptionMiddleware()

    def settings_() -> Iterator[str]:
        trace("open")
        yield "settings"
        trace("close")

    @exc.add_handler(ValueError, publish=True)
    async def on_value(error: ValueError, s: str = Depends(settings_)) -> str:
        trace("handler")
        return s

    assert (await exc.handle(ValueError())).value == "settings"
    assert len(hops) == 2
    assert trace.names == ["open", "handler", "close"]
    assert threading.get_ident() not in {trace.events[0][1], trace.events[2][1]}


async def test_async_dependencies_cost_no_hop(hops: list[str]) -> None:
    trace = Trace()
    exc = ExceptionMiddleware()

    async def settings_() -> AsyncIterator[str]:
        trace("open")
        yield "settings"
        trace("close")

    async def name() -> str:
        return "name"

    @exc.add_handler(ValueError, publish=True)
    async def on_value(
        error: ValueError, s: str = Depends(settings_), n: str = Depends(name)
    ) -> str:
        trace("handler")
        return s + n

    assert (await exc.handle(ValueError())).value == "settingsname"
    assert hops == []
    assert trace.names == ["open", "handler", "close"]


async def test_context_values_cost_no_extra_hop(hops: list[str]) -> None:
    exc = ExceptionMiddleware()

    def name() -> str:
        return "name"

    @exc.add_handler(ValueError, publish=True)
    def on_value(
        error: ValueError, request_id: str = Context(), n: str = Depends(name)
    ) -> tuple[str, str]:
        return request_id, n

    assert (await exc.handle(ValueError(), request_id="r-1")).value == ("r-1", "name")
    assert len(hops) == 1


async def test_sync_handler_with_sync_and_async_dependencies_costs_one_hop(
    hops: list[str],
) -> None:
    trace = Trace()
    exc = ExceptionMiddleware()

    def settings_() -> Iterator[str]:
        trace("open")
        yield "settings"
        trace("close")

    async def name() -> str:
        trace("name")
        return "name"

    @exc.add_handler(ValueError, publish=True)
    def on_value(error: ValueError, s: str = Depends(settings_), n: str = Depends(name)) -> str:
        trace("handler")
        return s + n

    assert (await exc.handle(ValueError())).value == "settingsname"
    assert len(hops) == 1
    assert trace.events[0] == ("name", threading.get_ident())  # async: solved on the loop first
    assert len({thread for what, thread in trace.events[1:]}) == 1  # then one worker call


async def test_sync_dependency_of_an_async_one_is_left_to_fast_depends(
    hops: list[str],
) -> None:
    # a sync dependency that needs an async one cannot be solved in a thread: the async solver
    # takes that subtree, a hop per sync part
    exc = ExceptionMiddleware()

    async def tenant() -> str:
        return "acme"

    def database(t: str = Depends(tenant)) -> str:
        return f"db of {t}"

    @exc.add_handler(ValueError, publish=True)
    async def on_value(error: ValueError, db: str = Depends(database)) -> str:
        return db

    assert (await exc.handle(ValueError())).value == "db of acme"
    assert len(hops) == 1


# -- behaviour kept -----------------------------------------------------------------------------


async def test_yield_dependency_sees_the_handler_fail_in_the_same_hop(hops: list[str]) -> None:
    exc = ExceptionMiddleware(logger=None)
    seen: list[BaseException] = []

    def resource() -> Iterator[str]:
        try:
            yield "resource"
        except Exception as failure:
            seen.append(failure)
            raise

    @exc.add_handler(ValueError)
    def on_value(error: ValueError, res: str = Depends(resource)) -> None:
        raise RuntimeError("handler failed")

    original = ValueError()
    with pytest.raises(RuntimeError, match="handler failed") as raised:
        await exc.handle(original)

    assert [type(failure) for failure in seen] == [RuntimeError]
    assert raised.value.__context__ is original
    assert len(hops) == 1


async def test_async_handler_failing_closes_its_sync_yield_dependency() -> None:
    exc = ExceptionMiddleware(logger=None)
    events: list[str] = []

    def resource() -> Iterator[str]:
        try:
            yield "resource"
        finally:
            events.append("close")

    @exc.add_handler(ValueError)
    async def on_value(error: ValueError, res: str = Depends(resource)) -> None:
        raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError, match="handler failed"):
        await exc.handle(ValueError())

    assert events == ["close"]


async def test_a_failing_dependency_closes_the_ones_opened_before_it() -> None:
    exc = ExceptionMiddleware(logger=None)
    events: list[str] = []

    def first() -> Iterator[str]:
        yield "first"
        events.append("first closed")

    def second(f: str = Depends(first)) -> str:
        raise LookupError("no second")

    @exc.add_handler(ValueError)
    async def on_value(error: ValueError, s: str = Depends(second)) -> None: ...

    with pytest.raises(LookupError, match="no second"):
        await exc.handle(ValueError())

    assert events == ["first closed"]


async def test_dependency_receives_the_error_by_the_handlers_name_for_it() -> None:
    exc = ExceptionMiddleware()

    def code_of(error: ValueError) -> str:
        return str(error)

    @exc.add_handler(ValueError, publish=True)
    def on_value(error: ValueError, code: str = Depends(code_of)) -> str:
        return code

    assert (await exc.handle(ValueError("E42"))).value == "E42"


async def test_dependency_reading_context_is_injected() -> None:
    exc = ExceptionMiddleware()

    def tenant(tenant_id: str = Context()) -> str:
        return f"tenant {tenant_id}"

    @exc.add_handler(ValueError, publish=True)
    def on_value(error: ValueError, t: str = Depends(tenant)) -> str:
        return t

    assert (await exc.handle(ValueError(), tenant_id="t-1")).value == "tenant t-1"


async def test_async_override_of_a_sync_dependency_is_solved_on_the_loop(
    hops: list[str],
) -> None:
    exc = ExceptionMiddleware()

    def name() -> str:
        return "real"

    async def fake_name() -> str:
        return "fake"

    @exc.add_handler(ValueError, publish=True)
    async def on_value(error: ValueError, n: str = Depends(name)) -> str:
        return n

    with exc.provider.scope(name, fake_name):
        assert (await exc.handle(ValueError())).value == "fake"
    assert hops == []
    assert (await exc.handle(ValueError())).value == "real"
    assert len(hops) == 1


async def test_sync_override_of_an_async_dependency_shares_the_handlers_hop(
    hops: list[str],
) -> None:
    exc = ExceptionMiddleware()

    async def name() -> str:
        return "real"

    @exc.add_handler(ValueError, publish=True)
    def on_value(error: ValueError, n: str = Depends(name)) -> str:
        return n

    with exc.provider.scope(name, lambda: "fake"):
        assert (await exc.handle(ValueError())).value == "fake"
    assert len(hops) == 1


# -- every shape ----------------------------------------------------------------------------

KINDS = ("sync", "sync yield", "async", "async yield")


def expected_hops(handler_async: bool, inline: bool, kinds: list[str]) -> int:
    """Sync dependencies share one worker-thread call with a sync handler; an async handler
    is awaited between that call and a second one that closes sync yield dependencies."""
    if inline:
        return 0
    if not handler_async:
        return 1
    if "sync" not in kinds and "sync yield" not in kinds:
        return 0
    return 2 if "sync yield" in kinds else 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    handler_async=st.booleans(),
    inline=st.booleans(),
    kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=3),
)
def test_every_shape_injects_closes_after_and_hops_as_documented(
    handler_async: bool, inline: bool, kinds: list[str]
) -> None:
    events: list[str] = []
    sent: list[object] = []
    deps = [_dependency(kind, i, events) for i, kind in enumerate(kinds)]
    handler = _handler(handler_async, deps, events)
    exc = ExceptionMiddleware(publish_handlers={ValueError: handler}, inline=inline)
    run_sync = anyio.to_thread.run_sync

    async def counting(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        sent.append(func)
        return await run_sync(func, *args, **kwargs)

    anyio.to_thread.run_sync = counting  # type: ignore[assignment]
    try:
        outcome = asyncio.run(exc.handle(ValueError()))
    finally:
        anyio.to_thread.run_sync = run_sync

    assert outcome.value == "".join(str(i) for i in range(len(kinds)))
    yields = [f"close {i}" for i, kind in enumerate(kinds) if kind.endswith("yield")]
    assert sorted(events[: events.index("handler")]) == [f"open {i}" for i in range(len(kinds))]
    assert sorted(events[events.index("handler") + 1 :]) == sorted(yields)
    assert len(sent) == expected_hops(handler_async, inline, kinds)


def _handler(
    handler_async: bool, deps: list[Callable[..., Any]], events: list[str]
) -> Callable[..., Any]:
    """A handler whose signature declares exactly `deps`: `(error, d0=Depends(...), ...)`."""

    def joined(solved: dict[str, str]) -> str:
        events.append("handler")
        return "".join(solved[f"d{i}"] for i in range(len(deps)))

    async def async_handler(error: ValueError, **solved: str) -> str:
        return joined(solved)

    def sync_handler(error: ValueError, **solved: str) -> str:
        return joined(solved)

    handler: Callable[..., Any] = async_handler if handler_async else sync_handler
    error = inspect.Parameter("error", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    handler.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [error]
        + [
            inspect.Parameter(f"d{i}", inspect.Parameter.KEYWORD_ONLY, default=Depends(dep))
            for i, dep in enumerate(deps)
        ]
    )
    return handler


def _dependency(kind: str, i: int, events: list[str]) -> Callable[..., Any]:
    if kind == "sync":

        def plain() -> str:
            events.append(f"open {i}")
            return str(i)

        return plain
    if kind == "sync yield":

        def generator() -> Iterator[str]:
            events.append(f"open {i}")
            yield str(i)
            events.append(f"close {i}")

        return generator
    if kind == "async":

        async def coroutine() -> str:
            events.append(f"open {i}")
            return str(i)

        return coroutine

    async def async_generator() -> AsyncIterator[str]:
        events.append(f"open {i}")
        yield str(i)
        events.append(f"close {i}")

    return async_generator
