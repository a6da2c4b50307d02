"""Injection: how a handler's `Depends` are solved, with as few thread hops as its shape allows.

fast-depends' async solver sends every sync dependency to a worker thread on its own, and a sync
yield dependency twice (entered, then left): a hop of ~100 µs each. So a handler's dependencies
are solved by the solver that fits them, chosen per call (an override can change the answer):

- all async: fast-depends' async solver, on the event loop, no hop;
- none async: fast-depends' sync solver in one worker-thread call that also calls a sync handler
  and closes the yield dependencies after it (`inline=True`: on the loop, no hop);
- a mix of both: the async solver, which costs a hop per sync dependency.

fast-depends solves the `Depends` parameters alone; the handler's other parameters (the error,
context values, `Context()`) are filled as for any handler, so they never cost a hop either.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import AsyncExitStack, ExitStack
from enum import Enum
from typing import Any, Final

import anyio.to_thread
from fast_depends import Provider
from fast_depends.core import CallModel, build_call_model
from fast_depends.dependencies import Dependant
from fast_depends.utils import is_coroutine_callable

__all__ = ["Dependencies", "Solver"]

_KEYWORD: Final = inspect.Parameter.KEYWORD_ONLY


class Solver(Enum):
    """Which solver fits a handler's dependencies (see the module's docstring)."""

    ASYNC = "async"
    SYNC = "sync"
    MIXED = "mixed"


class _Collect:
    """What fast-depends solves in place of the handler: its `Depends` parameters alone,
    handed back as keyword arguments (the handler is called by us, on the right thread)."""

    def __init__(self, signature: inspect.Signature) -> None:
        self.__signature__ = signature  # what `inspect.signature`, and so fast-depends, reads

    def __call__(self, **solved: Any) -> dict[str, Any]:
        return solved


class _CollectAsync(_Collect):
    # async, so that the async solver awaits it on the loop instead of sending it to a thread
    async def __call__(self, **solved: Any) -> dict[str, Any]:  # type: ignore[override]
        return solved


class Dependencies:
    """A handler's `Depends` parameters, compiled once: `solve_async`, `solve_sync` and the
    `solver` that fits them under the provider's current overrides."""

    __slots__ = ("async_model", "provider", "solver_without_overrides", "sync_model", "tears_down")

    def __init__(self, depends: list[tuple[str, Dependant]], provider: Provider) -> None:
        signature = inspect.Signature(
            [inspect.Parameter(name, _KEYWORD, default=dep) for name, dep in depends]
        )
        self.provider = provider
        # two models over the same dependencies (the provider holds one model per dependency)
        self.async_model = build_call_model(
            _CollectAsync(signature), dependency_provider=provider, is_sync=False
        )
        self.sync_model = build_call_model(  # `is_sync` only asserts: async ones are allowed
            _Collect(signature), dependency_provider=provider, is_sync=False
        )
        self.solver_without_overrides, self.tears_down = _classify(self.async_model)

    def solver(self) -> tuple[Solver, bool]:
        """The solver that fits, and whether a sync yield dependency needs closing after."""
        if not self.provider.overrides:  # the common case: what compiling found
            return self.solver_without_overrides, self.tears_down
        return _classify(self.async_model)  # an override may be sync where the original is not

    async def solve_async(self, stack: AsyncExitStack, kwargs: Mapping[str, Any]) -> Any:
        """The `Depends` values, solved on the loop; yield dependencies stay open in `stack`."""
        return await self.async_model.asolve(stack=stack, cache_dependencies={}, **kwargs)

    def solve_sync(self, stack: ExitStack, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The `Depends` values, solved on this thread; yield dependencies stay open in `stack`."""
        solved: dict[str, Any] = self.sync_model.solve(stack=stack, cache_dependencies={}, **kwargs)
        return solved


def _classify(model: CallModel) -> tuple[Solver, bool]:
    has_async = has_sync = tears_down = False
    for node in _nodes(model):
        if node is not model:
            has_async = has_async or node.is_async
            has_sync = has_sync or not node.is_async
            tears_down = tears_down or (node.is_generator and not node.is_async)
        for field in node.custom_fields.values():
            use: Callable[..., Any] = field.use_field if field.field else field.use
            is_async = is_coroutine_callable(use)
            has_async, has_sync = has_async or is_async, has_sync or not is_async
    if has_async and has_sync:
        return Solver.MIXED, tears_down
    return (Solver.ASYNC if has_async or not has_sync else Solver.SYNC), tears_down


def _nodes(model: CallModel) -> Iterator[CallModel]:
    """`model` and every dependency under it, as the provider resolves them now."""
    seen: set[int] = set()
    todo = [model]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        provider = node.dependency_provider
        keys = (*node.dependencies.values(), *node.extra_dependencies)
        todo.extend(provider.get_dependant(key) for key in keys)


def solve_in_one_call(
    dependencies: Dependencies,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    solve_with: Mapping[str, Any],
) -> tuple[Any] | None:
    """Solve, call the sync `func`, close the yield dependencies: one call, on one thread.

    Boxed in a tuple: trio refuses a worker thread's result that is a coroutine. `None` when a
    yield dependency suppressed what the handler raised (as a `with` block would)."""
    with ExitStack() as stack:
        solved = dependencies.solve_sync(stack, solve_with)
        return (func(*args, **{**kwargs, **solved}),)
    return None


async def solve_around_async(
    dependencies: Dependencies,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    solve_with: Mapping[str, Any],
    *,
    inline: bool,
    tears_down: bool,
) -> Any:
    """Sync dependencies for an async handler: solved in one worker-thread call, the handler
    awaited on the loop, the yield dependencies closed after it in a second call (only when
    there are any): they block, so they stay off the loop unless `inline`."""
    stack = ExitStack()
    if inline:
        with stack:
            solved = dependencies.solve_sync(stack, solve_with)
            return await func(*args, **{**kwargs, **solved})
    solved = await anyio.to_thread.run_sync(_solve_or_close, dependencies, stack, solve_with)
    try:
        result = await func(*args, **{**kwargs, **solved})
    except BaseException as failure:
        if not tears_down:
            raise
        # the yield dependencies see the failure, as in a `with` block; one may suppress it
        suppressed = await anyio.to_thread.run_sync(
            stack.__exit__, type(failure), failure, failure.__traceback__
        )
        if not suppressed:
            raise
        return None
    if tears_down:
        await anyio.to_thread.run_sync(stack.close)
    return result


def _solve_or_close(
    dependencies: Dependencies, stack: ExitStack, solve_with: Mapping[str, Any]
) -> dict[str, Any]:
    try:
        return dependencies.solve_sync(stack, solve_with)
    except BaseException:
        stack.close()  # what was opened before the failing dependency
        raise
