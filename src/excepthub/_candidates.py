"""Candidates: the one order in which an exception's handlers are asked, conditions, `Decline`.

For one exception the registrations that match it are asked in one order: fallback handlers
from the nearest class in the MRO to the farthest, then side-effect handlers likewise; for one
class, its conditional registrations in registration order, then its unconditional one. A
registration whose condition does not hold, or a handler that raises `Decline`, passes the error
to the next candidate. A pass-through (`reraise`) stands at its class's place in the MRO: every
handler of a nearer class is asked before it; one of a farther class after it when it is
conditional, never when it is not.

The order depends on the class alone: it is computed once per class (the registry memoises
it); only conditions are evaluated per error.
"""

from __future__ import annotations

import bisect
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from ._handlers import Handler, safe_repr
from ._outcome import Resolution, reraise

__all__ = [
    "Candidate",
    "Condition",
    "Decline",
    "Entry",
    "Route",
    "check_condition",
    "holds_quietly",
    "layered",
    "route",
    "truth",
]

Condition = Callable[[Any], bool]
"""A registration's condition: called with the error, on the event loop; true when it applies."""


class Decline(BaseException):
    """Raised by a handler to pass the error to the next candidate: `raise excepthub.Decline`.

    ```python
    @exc.add_handler(IntegrityError, publish=True)
    async def duplicate(error: IntegrityError) -> JSONResponse:
        if "uq_users_email" not in str(error.orig):
            raise excepthub.Decline  # the next-nearest handler takes it
        return JSONResponse({"detail": "email taken"}, status_code=409)
    ```

    A `BaseException`, not an `Exception`, as `GeneratorExit` is: a broad `except Exception`
    in the handler, in its dependencies or in the code around them lets it pass. It is never
    handled itself (a registration for it is refused) and never leaves the registry: when no
    candidate is left, the error goes on exactly as if nothing were registered.
    """


class Entry(NamedTuple):
    """One registration for one class: its handler, its condition, and whether it is a fallback
    handler (it may be asked among the fallbacks and still be one for side effects: a user's
    conditional side-effect handler for a class whose framework default is a fallback)."""

    handler: Handler
    condition: Condition | None
    publish: bool


class Candidate:
    """One registration in an exception's order of candidates, and the candidates after it."""

    __slots__ = ("condition", "handler", "passes", "publish", "resolution", "rest")

    def __init__(self, entry: Entry, key: type, publish: bool, rest: tuple[Candidate, ...]) -> None:
        self.handler = entry.handler
        self.condition = entry.condition
        self.publish = publish  # its value is published: false once a group's fallback is taken
        self.passes = entry.handler.func is reraise  # a pass-through: the error goes on
        self.resolution = Resolution(entry.handler.func, entry.publish, key, entry.condition)
        self.rest = rest  # asked when this one declines

    def __repr__(self) -> str:
        return f"<Candidate {self.resolution}>"


class Route:
    """An exception class's candidates, as the registry memoises them.

    `first` is the first candidate when it has no condition (the common case: it is called
    straight away); `certain` the first candidate without a condition (what every error of the
    class reaches when no condition before it holds and no handler declines); `set_aside` the
    order for a group's leaf once another leaf's fallback value was taken: side-effect
    handlers first, fallback handlers after them with their value set aside.
    """

    __slots__ = ("candidates", "certain", "first", "set_aside")

    def __init__(self, candidates: tuple[Candidate, ...], set_aside: tuple[Candidate, ...]) -> None:
        self.candidates = candidates
        self.set_aside = set_aside
        self.certain = next((c for c in candidates if c.condition is None), None)
        self.first = candidates[0] if candidates and candidates[0].condition is None else None


# (place in the MRO, section: 0 fallbacks / 1 side effects, order within the class)
_Rank = tuple[int, int, int]


def route(
    cls: type[BaseException],
    publish: Mapping[type, tuple[Entry, ...]],
    general: Mapping[type, tuple[Entry, ...]],
) -> Route:
    """The candidates for `cls` over the two maps (each class's entries in the order asked).

    For an exception group class only handlers keyed on group classes count: its leaves are
    routed one by one when the group is taken apart.
    """
    group_only = issubclass(cls, BaseExceptionGroup)
    found: list[tuple[_Rank, Entry, type]] = []
    for at, klass in enumerate(cls.__mro__):
        if group_only and not issubclass(klass, BaseExceptionGroup):
            continue
        for section, table in enumerate((publish, general)):
            for seq, entry in enumerate(table.get(klass, ())):
                found.append(((at, section, seq), entry, klass))
    passes = sorted(rank for rank, entry, _ in found if entry.handler.func is reraise)

    def order(set_aside: bool) -> tuple[Candidate, ...]:
        def key(item: tuple[_Rank, Entry, type]) -> tuple[int, ...]:
            rank, entry, _ = item
            if entry.handler.func is reraise:  # after everything nearer, before what is farther
                return (passes.index(rank), 1)
            kind = int(entry.publish) if set_aside else rank[1]
            return (bisect.bisect(passes, rank), 0, kind, rank[0], rank[2])

        ordered = sorted(found, key=key)
        cut = next(
            (
                i
                for i, (_, e, _) in enumerate(ordered)
                if e.handler.func is reraise and not e.condition
            ),
            None,
        )
        if cut is not None:  # an unconditional pass-through: nothing after it is ever asked
            del ordered[cut + 1 :]
        chain: tuple[Candidate, ...] = ()
        for _, entry, klass in reversed(ordered):
            publish_it = entry.publish and not set_aside
            chain = (Candidate(entry, klass, publish_it, chain), *chain)
        return chain

    return Route(order(False), order(True))


def check_condition(when: object, where: str) -> None:
    """`TypeError` at registration for a condition that cannot be one, naming the fix."""
    if not callable(when):
        raise TypeError(
            f"{where}: when must be a function of the error returning a bool, got {safe_repr(when)}"
        )
    func: Any = when
    while isinstance(func, functools.partial):
        func = func.func
    if (
        inspect.iscoroutinefunction(func)
        or inspect.iscoroutinefunction(getattr(func, "__call__", None))  # noqa: B004
        or inspect.isasyncgenfunction(func)
        or inspect.isgeneratorfunction(func)
    ):
        raise TypeError(
            f"{where}: the condition {safe_repr(when)} is async (or a generator); conditions "
            "are plain functions, called on the event loop with the error: "
            "`when=lambda error: error.status_code == 404`. Await what needs awaiting in the "
            "handler and `raise excepthub.Decline` there instead"
        )
    try:
        signature = inspect.signature(when)
    except (TypeError, ValueError):  # no signature to read (some builtins): trust it
        return
    try:
        signature.bind(None)
    except TypeError:
        raise TypeError(
            f"{where}: the condition {safe_repr(when)} cannot be called with the error alone "
            f"(its signature is {signature}); give it one positional parameter, the error"
        ) from None


def truth(value: object) -> bool:
    """What a condition's answer means; an awaitable is a `TypeError` (an async callable that
    hid as a plain one), never a truth."""
    if value is True or value is False:
        return value
    if inspect.isawaitable(value):  # an async callable that hid as a plain one
        close = getattr(value, "close", None)
        if close is not None:
            close()
        raise TypeError("a condition returned an awaitable: conditions are plain functions")
    return bool(value)


def holds_quietly(condition: Condition, error: BaseException) -> bool:
    """A condition evaluated for `resolve`: one that raises does not hold, as in `handle`,
    where it is also logged and counted."""
    try:
        return truth(condition(error))
    except (Exception, Decline):
        return False


def layered(
    base_publish: Mapping[type, tuple[Entry, ...]],
    base_general: Mapping[type, tuple[Entry, ...]],
    publish: dict[type, Handler],
    general: dict[type, Handler],
    supplied: frozenset[str] | None,
) -> tuple[dict[type, tuple[Entry, ...]], dict[type, tuple[Entry, ...]]]:
    """The user's registrations over a framework's defaults. An unconditional registration of
    the user's for a class replaces the framework's for it (in both maps); conditional ones are
    asked before them, a side-effect one among the fallbacks when the default is a fallback."""

    def mine(table: Mapping[type, tuple[Entry, ...]]) -> Mapping[type, tuple[Entry, ...]]:
        if supplied is None:  # else a handler runs only where it can be filled
            return table
        kept = {k: tuple(e for e in es if e.handler.fillable(supplied)) for k, es in table.items()}
        return {k: es for k, es in kept.items() if es}

    user_publish, user_general = mine(base_publish), mine(base_general)
    replaced = {
        k
        for table in (user_publish, user_general)
        for k, es in table.items()
        if any(e.condition is None for e in es)
    }
    layered_publish: dict[type, tuple[Entry, ...]] = {
        k: (Entry(h, None, True),) for k, h in publish.items() if k not in replaced
    }
    layered_general: dict[type, tuple[Entry, ...]] = {
        k: (Entry(h, None, False),) for k, h in general.items() if k not in replaced
    }
    for k, es in user_general.items():
        if k in layered_publish:  # before the framework's fallback for the same class
            layered_publish[k] = (*es, *layered_publish[k])
        else:
            layered_general[k] = (*es, *layered_general.get(k, ()))
    for k, es in user_publish.items():
        layered_publish[k] = (*es, *layered_publish.get(k, ()))
    return layered_publish, layered_general
