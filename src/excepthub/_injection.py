"""Injection: how a handler's `Depends` are solved, with as few thread hops as its shape allows.

fast-depends' async solver sends every sync dependency to a worker thread on its own, and a sync
yield dependency twice (entered, then left): ~100 µs a hop. So each of a handler's dependencies
goes where its whole subtree can be solved at once, decided per call (an override may change it):

- async all the way down: fast-depends' async solver, on the event loop, no hop;
- sync all the way down: fast-depends' sync solver, all of them in one worker-thread call that
  also calls a sync handler and closes their yield dependencies after it (`inline=True`: on the
  loop, no hop). An async handler is awaited on the loop between that call and a second one
  that closes them (only when there are sync yield dependencies to close);
- sync above async (a sync dependency that needs an async one): the async solver, as above.

fast-depends solves the `Depends` parameters alone; the handler's other parameters (the error,
context values, `Context()`) are filled as for any handler, so they never cost a hop either.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, ExitStack
from typing import Any, Final, NamedTuple

import anyio
import anyio.to_thread
from fast_depends import Provider
from fast_depends.core import CallModel, build_call_model
from fast_depends.dependencies import Dependant
from fast_depends.utils import is_coroutine_callable

__all__ = ["Dependencies", "Plan"]

_KEYWORD: Final = inspect.Parameter.KEYWORD_ONLY


class Plan(NamedTuple):
    """Where a handler's dependencies are solved: `on_loop` and `in_thread` (parameter, key)
    pairs, and whether those in the thread leave yield dependencies to close."""

    on_loop: tuple[tuple[str, Any], ...]
    in_thread: tuple[tuple[str, Any], ...]
    tears_down: bool


def _registered(depends: list[tuple[str, Dependant]], provider: Provider) -> CallModel:
    """A call model over the `Depends` parameters alone: building it registers each dependency
    with the provider (where overrides replace them), the way fast-depends does for a handler."""

    def parameters(**solved: Any) -> None: ...

    parameters.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, _KEYWORD, default=dep) for name, dep in depends]
    )
    return build_call_model(parameters, dependency_provider=provider, is_sync=False)


class Dependencies:
    """A handler's `Depends` parameters, compiled once; `invoke` calls the handler with them.

    Each dependency is solved by its own fast-depends model (`asolve`/`solve` with `nested=True`,
    as fast-depends solves a handler's dependencies), not through a model of the handler: that
    would cost a generator and a call more per error, and we call the handler ourselves, on the
    thread that fits it."""

    __slots__ = ("keys", "model", "plan_without_overrides", "provider")

    def __init__(self, depends: list[tuple[str, Dependant]], provider: Provider) -> None:
        self.provider = provider
        self.model = _registered(depends, provider)
        self.keys = tuple(self.model.dependencies.items())  # (parameter, the provider's key)
        self.plan_without_overrides = self._plan()

    def plan(self) -> Plan:
        """Where each dependency is solved, under the provider's current overrides."""
        if not self.provider.overrides:  # the common case: what compiling found
            return self.plan_without_overrides
        return self._plan()  # an override may be sync where the original is async, or back

    def _plan(self) -> Plan:
        on_loop, in_thread, tears_down = [], [], False
        for name, key in self.keys:
            has_async, has_sync, closes = _kinds(self.provider.get_dependant(key))
            if has_sync and not has_async:
                in_thread.append((name, key))
                tears_down = tears_down or closes
            else:
                on_loop.append((name, key))
        return Plan(tuple(on_loop), tuple(in_thread), tears_down)

    async def invoke(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        values: dict[str, Any],
        *,
        is_async: bool,
        inline: bool,
    ) -> Any:
        """`func(*args, **kwargs, <its Depends>)`. `values` (the context and the error) is what a
        dependency may ask for by name; each solved one joins it, as in fast-depends."""
        plan = self.plan()
        async with AsyncExitStack() as stack:  # async yield dependencies close after the handler
            if plan.on_loop:
                await self.solve_async(stack, values, plan.on_loop)
            if not plan.in_thread:
                kwargs.update(self.solved(values))
                if is_async:
                    return await func(*args, **kwargs)
                if inline:
                    return await _awaited(func(*args, **kwargs))
                (result,) = await anyio.to_thread.run_sync(_boxed, func, args, kwargs)
                return await _awaited(result)
            if is_async:
                return await self._around_async(plan, func, args, kwargs, values, inline=inline)
            if inline:
                boxed = self.call_in_one(plan.in_thread, func, args, kwargs, values)
            else:  # one worker-thread call: solve, call, close
                boxed = await anyio.to_thread.run_sync(
                    self.call_in_one, plan.in_thread, func, args, kwargs, values
                )
            return None if boxed is None else await _awaited(boxed[0])

    def solved(self, values: dict[str, Any]) -> dict[str, Any]:
        """The `Depends` parameters' values, once every one is in `values`."""
        return {name: values[name] for name, _ in self.keys}

    async def solve_async(
        self, stack: AsyncExitStack, values: dict[str, Any], keys: tuple[tuple[str, Any], ...]
    ) -> None:
        """Solve `keys` into `values` on the loop; yield dependencies stay open in `stack`."""
        cache: dict[Any, Any] = {}  # a dependency asked for twice is solved once per error
        dependant = self.provider.get_dependant
        for name, key in keys:
            if name not in values:  # a context value of that name wins, as in fast-depends
                values[name] = await dependant(key).asolve(
                    stack=stack, cache_dependencies=cache, nested=True, **values
                )

    def solve_sync(
        self, stack: ExitStack, values: dict[str, Any], keys: tuple[tuple[str, Any], ...]
    ) -> None:
        """Solve `keys` into `values` on this thread; yield dependencies stay open in `stack`."""
        cache: dict[Any, Any] = {}
        dependant = self.provider.get_dependant
        for name, key in keys:
            if name not in values:
                values[name] = dependant(key).solve(
                    stack=stack, cache_dependencies=cache, nested=True, **values
                )

    def call_in_one(
        self,
        keys: tuple[tuple[str, Any], ...],
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        values: dict[str, Any],
    ) -> tuple[Any] | None:
        """Solve `keys`, call the sync `func`, close the yield dependencies, on one thread.

        Boxed in a tuple: trio refuses a worker thread's result that is a coroutine. `None` when
        a yield dependency suppressed what the handler raised (as a `with` block would)."""
        with ExitStack() as stack:
            self.solve_sync(stack, values, keys)
            kwargs.update(self.solved(values))
            return (func(*args, **kwargs),)
        return None

    async def _around_async(
        self,
        plan: Plan,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        values: dict[str, Any],
        *,
        inline: bool,
    ) -> Any:
        # sync dependencies of an async handler: solved in one worker-thread call, the handler
        # awaited on the loop, their yield dependencies closed in a second call after it (they
        # may block, so they stay off the loop unless `inline`)
        stack = ExitStack()
        if inline:
            with stack:
                self.solve_sync(stack, values, plan.in_thread)
                kwargs.update(self.solved(values))
                return await func(*args, **kwargs)
        await anyio.to_thread.run_sync(self._solve_or_close, stack, values, plan.in_thread)
        try:
            kwargs.update(self.solved(values))
            result = await func(*args, **kwargs)
        except BaseException as failure:
            if not plan.tears_down:
                raise
            # the yield dependencies see the failure, as in a `with` block; one may suppress it.
            # Shielded: they are closed even when the failure is the handler's cancellation
            with anyio.CancelScope(shield=True):
                suppressed = await anyio.to_thread.run_sync(
                    stack.__exit__, type(failure), failure, failure.__traceback__
                )
            if not suppressed:
                raise
            return None
        if plan.tears_down:
            await anyio.to_thread.run_sync(stack.close)
        return result

    def _solve_or_close(
        self, stack: ExitStack, values: dict[str, Any], keys: tuple[tuple[str, Any], ...]
    ) -> None:
        try:
            self.solve_sync(stack, values, keys)
        except BaseException:
            stack.close()  # what was opened before the failing dependency
            raise


def _kinds(model: CallModel) -> tuple[bool, bool, bool]:
    """Whether `model`'s subtree has async parts, sync parts, and sync yield dependencies."""
    has_async = has_sync = tears_down = False
    for node in _nodes(model):
        has_async = has_async or node.is_async
        has_sync = has_sync or not node.is_async
        tears_down = tears_down or (node.is_generator and not node.is_async)
        for field in node.custom_fields.values():
            use: Callable[..., Any] = field.use_field if field.field else field.use
            is_async = is_coroutine_callable(use)
            has_async, has_sync = has_async or is_async, has_sync or not is_async
    return has_async, has_sync, tears_down


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


def _boxed(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any]:
    return (func(*args, **kwargs),)  # trio refuses a worker thread's result that is a coroutine


async def _awaited(result: Any) -> Any:
    # a sync callable that hands back a coroutine (None, the usual answer, skips the check)
    if result is not None and inspect.isawaitable(result):
        return await result
    return result
