"""Outcomes: what resolution and handling answer, in terms every adapter maps back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, NoReturn, TypeAlias

__all__ = [
    "DroppedValueWarning",
    "ErrorEvent",
    "ExcepthubWarning",
    "Outcome",
    "OutcomeKind",
    "Resolution",
    "ShadowedHandlerWarning",
    "reraise",
]

OutcomeKind: TypeAlias = Literal["published", "handled", "unhandled", "failed", "retried"]
"""How an error ended: a fallback value `published`, `handled` by a side-effect handler,
`unhandled` (no handler, or the handler re-raised it), `failed` (the handler raised another
exception), or `retried` (a transient error; the work ran again)."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """A registration an exception reaches: `exc.resolve(KeyError)`, `exc.candidates(...)`.

    `key` is the registered class that matched (the nearest in the MRO); `publish` tells a
    fallback handler (its value replaces the result) from a side-effect handler; `condition`
    is the registration's `when=`, or `None` for an unconditional one.
    """

    handler: Callable[..., Any]
    publish: bool
    key: type[BaseException]
    condition: Callable[[Any], bool] | None = None


class Outcome(NamedTuple):
    """What `handle` answers when a handler took the error.

    `published` is true when a fallback handler ran: `value` is what it returned, and it
    replaces the failed result. Otherwise a side-effect handler ran and `value` is `None`.
    `handler` is the function that decided the outcome; `error` the exception it was given.
    """

    published: bool
    value: Any
    handler: Callable[..., Any]
    error: BaseException


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """What an `on_error` hook observes: one exception, how it ended, and where."""

    error: BaseException
    outcome: OutcomeKind
    handler: Callable[..., Any] | None
    context: Mapping[str, Any]
    framework: str | None = None
    """The framework whose adapter handed the error over (`"fastapi"`, `"starlette"`,
    `"faststream"`, `"fastmcp"`), or `None` for a direct `handle` call without `defaults`."""
    duration: float | None = None
    """Seconds the deciding handler ran (its dependencies included), or `None` when no handler
    ran. Measured only while the registry has hooks: without them no clock is read."""
    declined: tuple[Callable[..., Any], ...] = ()
    """The handlers asked before the outcome was decided that passed the error on: each one
    that raised `Decline` or whose registration's condition did not hold (or raised), in the
    order asked."""

    @property
    def correlation_id(self) -> Any:
        """The framework's correlation id for the unit of work, if the adapter knows one."""
        return self.context.get("correlation_id")


def reraise(error: BaseException, /) -> NoReturn:
    """A handler that lets its exception through, unhandled.

    Register it to exempt a class from a broader handler: with `handlers={Exception: log}`,
    `add_handler(StopConsume)(reraise)` keeps `StopConsume` propagating. Adapters seed their
    framework's control-flow exceptions with it.
    """
    raise error


class ExcepthubWarning(UserWarning):
    """A registration that works, but not as it was likely meant to: the base of excepthub's
    warnings (`warnings.simplefilter("error", ExcepthubWarning)` turns them into errors)."""


class ShadowedHandlerWarning(ExcepthubWarning):
    """A side-effect handler never runs for its own class: a fallback handler for a class up
    its MRO is asked first. Each pair is warned about once; `exc.shadowed()` lists them all."""


class DroppedValueWarning(ExcepthubWarning):
    """A side-effect handler returns a value, which is dropped: `publish=True` was forgotten."""
