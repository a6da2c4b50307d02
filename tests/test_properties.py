"""Rules that hold for every class hierarchy, every handler map and every group shape.

The registry is checked against the plain reference model users get too,
`excepthub.testing.reference_resolve` (the documented order of candidates, uncached), over
hierarchies and nested groups drawn by the public strategies of `excepthub.testing`: classes
made with `type()`, multiple inheritance and diamonds included.
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from excepthub import ExceptionMiddleware, Outcome, Resolution
from excepthub.testing import exception_groups, exception_hierarchies, reference_resolve

# arbitrary maps shadow handlers and register value-returning side-effect handlers on purpose
pytestmark = pytest.mark.filterwarnings("ignore::excepthub.ExcepthubWarning")

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

ROOTS: tuple[type[Exception], ...] = (Exception, ValueError, LookupError, KeyError, OSError)


class Stop(BaseException):
    """A BaseException-only leaf, like a cancellation."""


# -- worlds: a hierarchy, handler maps, and the order they are registered in -----------------

Entry = tuple[bool, type[Exception]]  # (publish, key)


@dataclass
class World:
    classes: list[type[Exception]]
    entries: list[Entry]  # in registration order; a later entry for the same slot replaces
    calls: list[tuple[Entry, BaseException]] = field(default_factory=list)

    def handler(self, entry: Entry) -> Callable[[Exception], Any]:
        """The one handler of a slot: it records its call and answers its slot."""
        found = self._handlers.get(entry)
        if found is None:

            async def handler(error: Exception) -> Entry:
                self.calls.append((entry, error))
                return entry

            found = self._handlers[entry] = handler
        return found

    def __post_init__(self) -> None:
        self._handlers: dict[Entry, Callable[[Exception], Any]] = {}

    def registry(self, in_constructor: int = 0) -> ExceptionMiddleware:
        """A registry with the first `in_constructor` entries passed to the constructor."""
        first, rest = self.entries[:in_constructor], self.entries[in_constructor:]
        exc = ExceptionMiddleware(
            handlers={key: self.handler((p, key)) for p, key in first if not p},
            publish_handlers={key: self.handler((p, key)) for p, key in first if p},
            logger=None,
            inline=True,
        )
        for publish, key in rest:
            exc.add_handler(key, publish=publish)(self.handler((publish, key)))
        return exc

    def reference(self, cls: type[BaseException], exc: ExceptionMiddleware) -> Entry | None:
        """The slot the uncached rule picks for `cls`, over the maps `exc` holds."""
        found = reference_resolve(exc, cls)
        return None if found is None else (found.publish, found.key)

    def resolution(self, cls: type[BaseException], exc: ExceptionMiddleware) -> Resolution | None:
        """What `resolve` should answer, per the reference model."""
        expected = self.reference(cls, exc)
        if expected is None:
            return None
        return Resolution(self.handler(expected), expected[0], expected[1])

    def maps(self) -> tuple[dict[type, Any], dict[type, Any]]:
        """`(publish_handlers, handlers)` as the entries say: the last entry of a slot counts."""
        return (
            {key: self.handler((p, key)) for p, key in self.entries if p},
            {key: self.handler((p, key)) for p, key in self.entries if not p},
        )


def hierarchies() -> st.SearchStrategy[list[type[BaseException]]]:
    return exception_hierarchies(ROOTS, max_size=7)


@st.composite
def worlds(draw: st.DrawFn, group_keys: bool = False) -> World:
    classes = typing.cast(list[type[Exception]], draw(hierarchies()))
    pool: list[type[Exception]] = [*ROOTS, *classes]
    if group_keys:
        pool.append(ExceptionGroup)
    picks = draw(st.sets(st.integers(0, 2 * len(pool) - 1), max_size=12))
    slots = [(k % 2 == 1, pool[k // 2]) for k in sorted(picks)]  # (publish, key)
    return World(classes, draw(st.permutations(slots)))


def kind(outcome_or_error: Outcome | BaseException) -> object:
    if isinstance(outcome_or_error, Outcome):
        return (outcome_or_error.published, outcome_or_error.value, outcome_or_error.error)
    return outcome_or_error


async def outcome_of(exc: ExceptionMiddleware, error: BaseException) -> Outcome | BaseException:
    """The outcome, or the exception `handle` raised."""
    try:
        return await exc.handle(error)
    except BaseException as raised:
        return raised


# -- single exceptions ----------------------------------------------------------------------


@SETTINGS
@given(world=worlds(), split=st.integers(0, 20))
def test_resolve_agrees_with_the_reference_model(world: World, split: int) -> None:
    exc = world.registry(in_constructor=split)

    assert (dict(exc.publish_handlers), dict(exc.handlers)) == world.maps()
    for cls in [*world.classes, *ROOTS, Stop]:
        assert exc.resolve(cls) == world.resolution(cls, exc)


@pytest.mark.anyio
@SETTINGS
@given(world=worlds())
async def test_handle_agrees_with_the_reference_model(world: World) -> None:
    exc = world.registry()

    for cls in world.classes:
        error = cls()
        expected = world.reference(cls, exc)
        result = await outcome_of(exc, error)
        if expected is None:
            assert result is error
        else:
            assert isinstance(result, Outcome)
            assert (result.published, result.handler, result.error) == (
                expected[0],
                world.handler(expected),
                error,
            )
            assert result.value == (expected if expected[0] else None)


@SETTINGS
@given(world=worlds(), data=st.data())
def test_every_registration_order_gives_the_same_answers(world: World, data: st.DataObject) -> None:
    reordered = World(world.classes, data.draw(st.permutations(world.entries)))
    reordered._handlers = world._handlers  # the same handler per slot, in both registries

    first, second = world.registry(), reordered.registry()

    for cls in world.classes:
        assert first.resolve(cls) == second.resolve(cls)


@SETTINGS
@given(world=worlds(), data=st.data())
def test_registering_after_a_lookup_changes_the_next_answer(
    world: World, data: st.DataObject
) -> None:
    exc = world.registry()
    for cls in world.classes:
        exc.resolve(cls)  # every answer memoised
    publish = data.draw(st.booleans())
    key = data.draw(st.sampled_from(world.classes))

    exc.add_handler(key, publish=publish)(world.handler((publish, key)))
    world.entries.append((publish, key))

    assert (dict(exc.publish_handlers), dict(exc.handlers)) == world.maps()
    for cls in world.classes:
        assert exc.resolve(cls) == world.resolution(cls, exc)


# -- group trees ------------------------------------------------------------------------------


@st.composite
def groups(draw: st.DrawFn) -> tuple[World, BaseExceptionGroup[Any]]:
    """A world with a key on `ExceptionGroup`, and a nested group of fresh leaves: its classes,
    runtime subclasses of them and of `ExceptionGroup`, and BaseException-only leaves (`Stop`)."""
    world = draw(worlds(group_keys=True))
    classes = [*ROOTS, *world.classes, ExceptionGroup, Stop]
    return world, draw(exception_groups(classes=classes, max_leaves=8))


def cancellations(error: BaseException) -> list[BaseException]:
    """The leaves that are BaseExceptions and not Exceptions, like a cancellation."""
    return [leaf for leaf in leaves(error) if not isinstance(leaf, Exception)]


def leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for child in error.exceptions:
            yield from leaves(child)
    else:
        yield error


def shape(error: BaseException) -> object:
    if isinstance(error, BaseExceptionGroup):
        return (type(error), error.message, [shape(e) for e in error.exceptions])
    return id(error)


def group_handler(
    world: World, exc: ExceptionMiddleware, group: BaseExceptionGroup[Any]
) -> Entry | None:
    """The group-class handler that takes the whole group, if any (reference model)."""
    return world.reference(type(group), exc) if isinstance(group, Exception) else None


@pytest.mark.anyio
@SETTINGS
@given(drawn=groups())
async def test_every_leaf_is_handled_once_or_reraised_once(
    drawn: tuple[World, BaseExceptionGroup[Any]],
) -> None:
    world, group = drawn
    exc = world.registry()

    result = await outcome_of(exc, group)

    if any(error is group for _, error in world.calls):  # a group handler took it whole
        assert len(world.calls) == 1
        return
    handled = [error for _, error in world.calls]
    reraised = list(leaves(result)) if isinstance(result, BaseException) else []
    for leaf in leaves(group):
        assert sum(e is leaf for e in handled) + sum(e is leaf for e in reraised) == 1
    assert len(handled) + len(reraised) == len(list(leaves(group)))


@pytest.mark.anyio
@SETTINGS
@given(drawn=groups())
async def test_reraised_group_has_the_shape_of_split(
    drawn: tuple[World, BaseExceptionGroup[Any]],
) -> None:
    world, group = drawn
    exc = world.registry()

    result = await outcome_of(exc, group)

    if not isinstance(result, BaseException):
        return
    handled = {id(error) for _, error in world.calls}
    if not handled:
        assert result is group  # nothing taken: the original group, untouched
        return
    expected, _ = group.split(
        lambda e: not isinstance(e, BaseExceptionGroup) and id(e) not in handled
    )
    assert expected is not None
    assert shape(result) == shape(expected)


@pytest.mark.anyio
@SETTINGS
@given(drawn=groups())
async def test_cancellation_leaves_are_never_swallowed(
    drawn: tuple[World, BaseExceptionGroup[Any]],
) -> None:
    world, group = drawn
    exc = world.registry()
    stops = cancellations(group)

    result = await outcome_of(exc, group)

    if stops:
        assert isinstance(result, BaseException)
        reraised = list(leaves(result))
        assert all(any(e is stop for e in reraised) for stop in stops)


@pytest.mark.anyio
@SETTINGS
@given(drawn=groups())
async def test_group_outcome_agrees_with_the_reference_model(
    drawn: tuple[World, BaseExceptionGroup[Any]],
) -> None:
    world, group = drawn
    exc = world.registry()
    all_leaves = list(leaves(group))

    result = await outcome_of(exc, group)

    whole = group_handler(world, exc, group)
    if whole is not None:
        assert isinstance(result, Outcome)
        assert (result.published, result.error) == (whole[0], group)
        return
    if len(all_leaves) == 1:
        return  # the one-leaf rule has its own test
    routes = [world.reference(type(leaf), exc) for leaf in all_leaves]
    publishing = [r for r in routes if r is not None and r[0]]
    taken = [r for r in routes if r is not None]
    if not taken:
        assert result is group
    elif len(taken) < len(all_leaves):
        assert isinstance(result, BaseExceptionGroup)
    else:
        assert isinstance(result, Outcome)
        assert result.error is group
        assert result.published == bool(publishing)
        assert result.value == (publishing[0] if publishing else None)


@pytest.mark.anyio
@SETTINGS
@given(world=worlds(), index=st.integers(0, 6), depth=st.integers(1, 4))
async def test_group_of_one_leaf_gives_the_outcome_of_its_leaf(
    world: World, index: int, depth: int
) -> None:
    exc = world.registry()
    cls = world.classes[index % len(world.classes)]
    leaf = cls("leaf")
    group: BaseException = leaf
    for level in range(depth):
        group = ExceptionGroup(f"level {level}", [group])
    alone = cls("alone")

    in_group, by_itself = await outcome_of(exc, group), await outcome_of(exc, alone)

    if isinstance(by_itself, BaseException):
        assert by_itself is alone
        assert in_group is group  # unhandled: the original group propagates
    else:
        assert isinstance(in_group, Outcome)
        assert (in_group.published, in_group.value, in_group.handler) == (
            by_itself.published,
            by_itself.value,
            by_itself.handler,
        )
        assert in_group.error is leaf  # the handler got the leaf


@pytest.mark.anyio
@SETTINGS
@given(world=worlds(), depth=st.integers(1, 3))
async def test_group_of_one_cancellation_leaf_propagates_the_original_group(
    world: World, depth: int
) -> None:
    exc = world.registry()
    group: BaseException = asyncio.CancelledError()
    for level in range(depth):
        group = BaseExceptionGroup(f"level {level}", [group])

    assert await outcome_of(exc, group) is group
