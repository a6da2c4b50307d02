"""Quick check: one message through the middleware object, FastStream's own against ours.

    uv run python -m benchmarks.faststream_quick

The middleware is driven as FastStream's subscriber drives it (the factory call, `__aenter__`,
`consume_scope` around the subscriber call, `__aexit__`), with logging off. `floor` is the same
subscriber call (and fallback) in a bare try/except; a middleware's own cost is its time above
the floor.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from faststream import Context, ContextRepo, StreamMessage
from faststream import ExceptionMiddleware as FastStreamMiddleware

from excepthub_faststream import ExceptionMiddleware

from ._timing import Work, median_ns


def driver(factory: Any, context: ContextRepo, msg: Any, call: Any) -> Work:
    async def one() -> object:
        mid = factory(msg, context=context)
        async with mid:
            return await mid.consume_scope(call, msg)

    return one


async def ok(msg: Any) -> str:
    return "ok"


async def fails(msg: Any) -> str:
    raise ValueError("boom")


async def fallback(exc: ValueError) -> str:
    return "fallback"


async def with_message(exc: ValueError, message: StreamMessage[Any] = Context()) -> str:  # noqa: B008
    return str(message.correlation_id)


async def main(rounds: int = 9) -> None:
    context = ContextRepo()
    msg = StreamMessage(raw_message=None, body=b"", correlation_id="c-1")

    async def floor_ok() -> object:
        return await ok(msg)

    async def floor_error() -> object:
        try:
            return await fails(msg)
        except ValueError as error:
            return await fallback(error)

    cases = {
        "happy path": (floor_ok, {}, ok, 2_000),
        "error, async fallback": (floor_error, {ValueError: fallback}, fails, 2_000),
        "error, fallback with message=Context()": (
            floor_error,
            {ValueError: with_message},
            fails,
            100,
        ),
    }
    print("| case | floor µs | faststream µs | excepthub µs | own cost: faststream / excepthub |")
    print("|---|---:|---:|---:|---:|")
    with context.scope("message", msg):
        for name, (floor, publish_handlers, call, batch) in cases.items():
            theirs = driver(
                FastStreamMiddleware(publish_handlers=publish_handlers), context, msg, call
            )
            mine = ExceptionMiddleware(publish_handlers=publish_handlers, logger=None)
            ours = driver(mine, context, msg, call)
            samples: dict[str, list[float]] = {"floor": [], "theirs": [], "ours": []}
            for _ in range(rounds):  # interleaved, so that a noisy neighbour hurts all alike
                samples["floor"].append(await median_ns(floor, batch, 1))
                samples["theirs"].append(await median_ns(theirs, batch, 1))
                samples["ours"].append(await median_ns(ours, batch, 1))
            f, t, o = (statistics.median(samples[k]) for k in ("floor", "theirs", "ours"))
            ratio = (t - f) / max(o - f, 1.0)
            print(f"| {name} | {f / 1000:.2f} | {t / 1000:.2f} | {o / 1000:.2f} | {ratio:.1f}x |")


if __name__ == "__main__":
    asyncio.run(main())
