"""Correct uses of the public API: `mypy --strict` accepts every line (see test_typing.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from excepthub import (
    Context,
    Decline,
    Defaults,
    Depends,
    ExceptionMiddleware,
    Outcome,
    Resolution,
    reraise,
)

exc = ExceptionMiddleware(handlers={KeyError: print}, publish_handlers={(OSError, EOFError): repr})


def get_name() -> str:
    return "name"


@exc.add_handler(ValueError)
async def side_effect(error: ValueError) -> None: ...


@exc.add_handler((KeyError, IndexError))
def sync_side_effect(error: LookupError, name: str = Depends(get_name)) -> None: ...


@exc.add_handler(ValueError, publish=True)
async def fallback(error: ValueError, request_id: str = Context()) -> dict[str, str]:
    return {"request_id": request_id}


@exc.add_handler(TypeError, True)
def positional_publish(error: TypeError) -> int:
    return 1


@exc.add_handler(ArithmeticError, inline=True)
def inline_side_effect(error: ArithmeticError) -> None: ...


exc.add_handler(StopAsyncIteration)(reraise)

# the decorator hands back the function with its own type
number: int = positional_publish(TypeError())
reply: Awaitable[dict[str, str]] = fallback(ValueError(), "r-1")

FRAMEWORK = Defaults("framework", handlers={ConnectionError: reraise})


def register(publish: bool) -> None:
    exc.add_handler(RuntimeError, publish=publish)(positional_publish)


async def main() -> None:
    outcome: Outcome = await exc.handle(ValueError(), defaults=FRAMEWORK, request_id="r-1")
    published: bool = outcome.published
    resolution: Resolution | None = exc.resolve(KeyError)
    really: Resolution | None = exc.resolve(KeyError("k"))
    asked: tuple[Resolution, ...] = exc.candidates(KeyError("k"))
    print(really, asked, exc.registrations())
    stats: dict[str, dict[str, int]] = exc.get_error_stats()
    print(published, resolution, stats)


def _maps_typed_as_variables() -> None:
    # Mapping is invariant in its key: maps built elsewhere and typed loosely are accepted too
    by_class: dict[type[Exception], Callable[..., Any]] = {KeyError: print}
    by_tuple: dict[tuple[type[Exception], ...], Callable[..., Any]] = {(KeyError,): print}
    ExceptionMiddleware(handlers=by_class, publish_handlers=by_tuple)


@exc.add_handler(KeyError, publish=True, when=lambda error: error.args == ("k",))
async def only_for_k(error: KeyError) -> str:
    if not error.args:
        raise Decline
    return "k"


@exc.add_handler((KeyError, IndexError), when=lambda error: isinstance(error, LookupError))
async def either(error: LookupError) -> None: ...
