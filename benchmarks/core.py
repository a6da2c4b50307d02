"""The core against the floor: a hand-written try/except calling the same function."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

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
