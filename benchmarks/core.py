"""The core against the floor: a hand-written try/except calling the same function."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio.to_thread

from excepthub import Context, Decline, Depends, ErrorHook, ExceptionMiddleware

from ._timing import Case, Work


class NotFound(LookupError):
    pass


async def fallback(error: Exception) -> str:
    return "fallback"


def cases() -> list[Case]:
    exc = ExceptionMiddleware(logger=None)
    exc.add_handler(NotFound, publish=True)(fallback)

    async def work() -> str:
        return "ok"

    async def failing() -> str:
        raise NotFound("x")

    async def floor_happy() -> str:
        try:
            return await work()
        except NotFound as error:
            return await fallback(error)

    async def ours_happy() -> str:
        try:
            return await work()
        except Exception as error:
            return str((await exc.handle(error)).value)

    async def floor_error() -> str:
        try:
            return await failing()
        except NotFound as error:
            return await fallback(error)

    async def ours_error() -> str:
        try:
            return await failing()
        except Exception as error:
            return str((await exc.handle(error)).value)

    with_context = ExceptionMiddleware(logger=None)

    @with_context.add_handler(NotFound, publish=True)
    async def by_context(error: NotFound, request_id: str = Context()) -> str:
        return request_id

    async def floor_context() -> str:
        try:
            return await failing()
        except NotFound:
            return await by_context(NotFound(), request_id="r-1")

    async def ours_context() -> str:
        try:
            return await failing()
        except Exception as error:
            return str((await with_context.handle(error, request_id="r-1")).value)

    with_depends = ExceptionMiddleware(logger=None)

    def settings() -> Iterator[str]:
        yield "settings"

    async def get_name() -> str:
        return "name"

    @with_depends.add_handler(NotFound, publish=True)
    async def by_depends(
        error: NotFound, s: str = Depends(settings), n: str = Depends(get_name)
    ) -> str:
        return s + n

    async def ours_depends() -> str:
        try:
            return await failing()
        except Exception as error:
            return str((await with_depends.handle(error)).value)

    return [
        Case("core", "happy path", "try/except", floor_happy, ours_happy, batch=20_000),
        Case("core", "error, async fallback", "try/except", floor_error, ours_error),
        Case("core", "error, Context() value", "try/except", floor_context, ours_context),
        Case("core", "error, 2 Depends (1 yield)", "try/except", floor_error, ours_depends, 500),
        *_scaling(),
        *_injection(),
        *_scaling_series(),
        *_telemetry(),
        *_conditions(),
    ]


def _scaling() -> Iterator[Case]:
    """Cost of a handled error as the hierarchy deepens and handlers multiply: flat (memo)."""
    for depth, count in ((1, 1), (5, 20), (20, 200)):
        classes: list[type[Exception]] = [Exception]
        for level in range(depth):
            classes.append(type(f"Level{level}", (classes[-1],), {}))
        leaf = classes[-1]
        exc = ExceptionMiddleware(logger=None)
        exc.add_handler(classes[1], publish=True)(fallback)  # the farthest ancestor
        for n in range(count - 1):
            exc.add_handler(type(f"Other{n}", (Exception,), {}), publish=True)(fallback)

        async def floor(leaf: type[Exception] = leaf) -> str:
            try:
                raise leaf()
            except Exception as error:
                return await fallback(error)

        async def ours(leaf: type[Exception] = leaf, exc: ExceptionMiddleware = exc) -> str:
            try:
                raise leaf()
            except Exception as error:
                return str((await exc.handle(error)).value)

        yield Case("scaling", f"depth {depth}, {count} handlers", "try/except", floor, ours)


def _injection() -> Iterator[Case]:
    """A handler with two `Depends`, one of them a yield dependency, against the same handler
    and dependencies called by hand in the fewest thread hops its shape needs: one worker-thread
    call (sync), none (inline, async)."""

    async def failing() -> str:
        raise NotFound("x")

    def settings() -> Iterator[str]:
        yield "settings"

    def get_name() -> str:
        return "name"

    def sync_handler(
        error: NotFound, s: str = Depends(settings), n: str = Depends(get_name)
    ) -> str:
        return s + n

    def by_hand(error: NotFound) -> str:
        with contextmanager(settings)() as s:
            return sync_handler(error, s, get_name())

    in_thread = ExceptionMiddleware(logger=None, publish_handlers={NotFound: sync_handler})
    inline = ExceptionMiddleware(
        logger=None, inline=True, publish_handlers={NotFound: sync_handler}
    )

    async def floor_thread() -> str:
        try:
            return await failing()
        except NotFound as error:
            return await anyio.to_thread.run_sync(by_hand, error)

    async def floor_inline() -> str:
        try:
            return await failing()
        except NotFound as error:
            return by_hand(error)

    async def async_settings() -> AsyncIterator[str]:
        yield "settings"

    async def async_name() -> str:
        return "name"

    async def async_handler(
        error: NotFound, s: str = Depends(async_settings), n: str = Depends(async_name)
    ) -> str:
        return s + n

    on_loop = ExceptionMiddleware(logger=None, publish_handlers={NotFound: async_handler})

    async def floor_async() -> str:
        try:
            return await failing()
        except NotFound as error:
            async with asynccontextmanager(async_settings)() as s:
                return await async_handler(error, s, await async_name())

    def ours(exc: ExceptionMiddleware) -> Callable[[], Awaitable[str]]:
        async def one() -> str:
            try:
                return await failing()
            except Exception as error:
                return str((await exc.handle(error)).value)

        return one

    by_hand_label = "by hand, 1 thread hop"
    name = "error, sync handler, 2 sync Depends (1 yield)"
    yield Case("injection", name, by_hand_label, floor_thread, ours(in_thread), 500)
    yield Case("injection", f"{name}, inline", "by hand, on the loop", floor_inline, ours(inline))
    name = "error, async handler, 2 async Depends (1 yield)"
    yield Case("injection", name, "by hand, on the loop", floor_async, ours(on_loop))


# The series of the README's scaling chart (`benchmarks.readme`): group, name prefix, values.
SERIES: dict[str, tuple[str, tuple[int, ...]]] = {
    "depth": ("hierarchy depth", (1, 5, 10, 20, 50)),
    "handlers": ("handlers registered", (1, 10, 100, 1000)),
    "group": ("exception group of", (1, 2, 5, 10, 50)),
}


def _scaling_series() -> Iterator[Case]:
    """A handled error as one thing grows: the hierarchy's depth (the handler on the farthest
    ancestor), the handlers registered (others, for unrelated classes), the leaves of an
    exception group (each to the fallback handler, as `except*` calling it per leaf)."""
    label, depths = SERIES["depth"]
    for depth in depths:
        classes: list[type[Exception]] = [Exception]
        for level in range(depth):
            classes.append(type(f"Deep{level}", (classes[-1],), {}))
        exc = ExceptionMiddleware(logger=None, publish_handlers={classes[1]: fallback})
        yield Case("scaling", f"{label} {depth}", "try/except", *_raised(classes[-1], exc))
    label, counts = SERIES["handlers"]
    for count in counts:
        exc = ExceptionMiddleware(logger=None, publish_handlers={NotFound: fallback})
        for n in range(count - 1):
            exc.add_handler(type(f"Unrelated{n}", (Exception,), {}), publish=True)(fallback)
        yield Case("scaling", f"{label} {count}", "try/except", *_raised(NotFound, exc))
    label, sizes = SERIES["group"]
    for size in sizes:
        exc = ExceptionMiddleware(logger=None, publish_handlers={NotFound: fallback})
        floor, ours = _grouped(size, exc)
        yield Case("scaling", f"{label} {size}", "try/except*", floor, ours, batch=200)


def _raised(
    leaf: type[Exception], exc: ExceptionMiddleware
) -> tuple[Callable[[], Awaitable[str]], Callable[[], Awaitable[str]]]:
    async def floor() -> str:
        try:
            raise leaf()
        except Exception as error:
            return await fallback(error)

    async def ours() -> str:
        try:
            raise leaf()
        except Exception as error:
            return str((await exc.handle(error)).value)

    return floor, ours


def _grouped(
    size: int, exc: ExceptionMiddleware
) -> tuple[Callable[[], Awaitable[str]], Callable[[], Awaitable[str]]]:
    async def floor() -> str:
        values = []
        try:
            raise ExceptionGroup("batch", [NotFound(str(i)) for i in range(size)])
        except* NotFound as group:
            for leaf in group.exceptions:
                values.append(await fallback(leaf))
        return values[0]

    async def ours() -> str:
        try:
            raise ExceptionGroup("batch", [NotFound(str(i)) for i in range(size)])
        except Exception as error:
            return str((await exc.handle(error)).value)

    return floor, ours


def _telemetry() -> Iterator[Case]:
    """The OpenTelemetry and Sentry hooks where they are not enabled (no SDK configured, no
    `sentry_sdk.init`): the happy path never reaches a hook; on the error path, each against a
    hook that does nothing (what every hook costs the core is the baseline's)."""
    import excepthub.otel  # only here: the core never imports either library
    import excepthub.sentry

    def registry(*hooks: ErrorHook) -> ExceptionMiddleware:
        exc = ExceptionMiddleware(logger=None, on_error=hooks)
        exc.add_handler(NotFound, publish=True)(fallback)
        return exc

    async def work() -> str:
        return "ok"

    def happy(exc: ExceptionMiddleware) -> Work:
        async def run() -> str:
            try:
                return await work()
            except Exception as error:
                return str((await exc.handle(error)).value)

        return run

    def error(exc: ExceptionMiddleware) -> Work:
        async def run() -> str:
            try:
                raise NotFound("x")
            except Exception as error:
                return str((await exc.handle(error)).value)

        return run

    otel, sentry = excepthub.otel.hook(), excepthub.sentry.hook()
    noop = registry(lambda event: None)
    both = registry(otel, sentry)
    yield Case(
        "telemetry", "happy path, otel + sentry hooks", "no hooks", happy(registry()), happy(both),
        batch=20_000,
    )  # fmt: skip
    yield Case(
        "telemetry", "error, otel hook, no SDK", "no-op hook", error(noop), error(registry(otel))
    )
    yield Case(
        "telemetry",
        "error, sentry hook, no init",
        "no-op hook",
        error(noop),
        error(registry(sentry)),
    )


class Throttled(LookupError):
    def __init__(self, status_code: int) -> None:
        super().__init__(status_code)
        self.status_code = status_code


def _conditions() -> Iterator[Case]:
    """Conditions and declines: none on an error's path costs nothing (the first row compares
    a registry with a conditional registration elsewhere against one without any); on the
    path, a condition is one call, and a decline one more handler's call."""
    plain = ExceptionMiddleware(logger=None)
    plain.add_handler(NotFound, publish=True)(fallback)
    elsewhere = ExceptionMiddleware(logger=None)
    elsewhere.add_handler(NotFound, publish=True)(fallback)
    elsewhere.add_handler(Throttled, publish=True, when=lambda error: error.status_code == 429)(
        fallback
    )
    conditional = ExceptionMiddleware(logger=None)
    conditional.add_handler(LookupError, publish=True)(fallback)
    conditional.add_handler(Throttled, publish=True, when=lambda error: error.status_code == 429)(
        fallback
    )
    declining = ExceptionMiddleware(logger=None)
    declining.add_handler(LookupError, publish=True)(fallback)

    @declining.add_handler(Throttled, publish=True)
    async def only_429(error: Throttled) -> str:
        if error.status_code != 429:
            raise Decline
        return "busy"

    def ours(exc: ExceptionMiddleware, error: type[Exception], *args: int) -> Callable[[], Any]:
        async def run() -> str:
            try:
                raise error(*args)
            except Exception as raised:
                return str((await exc.handle(raised)).value)

        return run

    async def floor() -> str:
        try:
            raise Throttled(500)
        except Throttled as error:
            return await fallback(error)

    yield Case(
        "conditions",
        "error, no condition on its path (one elsewhere)",
        "the same, no condition registered",
        ours(plain, NotFound),
        ours(elsewhere, NotFound),
    )
    yield Case(
        "conditions",
        "error, a condition that does not hold, then the next",
        "try/except",
        floor,
        ours(conditional, Throttled, 500),
    )
    yield Case(
        "conditions",
        "error, a handler that declines, then the next",
        "try/except",
        floor,
        ours(declining, Throttled, 500),
    )
