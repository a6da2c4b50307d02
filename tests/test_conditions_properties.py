"""Conditions and declines, for every class hierarchy, registration list and group shape.

The registry is checked against a plain reference model (`Model`) of the documented order of
candidates: it knows nothing of the registry's code and memo, only the list of registrations;
the public reference (`excepthub.testing.candidates`, `reference_resolve`) must agree with both.
Each error carries a `tag` (0-3); a registration's condition holds (or raises) for some tags,
its handler declines for some tags, so one class meets every path. Pass-throughs (`reraise`),
conditional or not, are registrations too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from excepthub import Decline, ErrorEvent, ExceptionMiddleware, Outcome, reraise
from excepthub.testing import candidates as reference_candidates
from excepthub.testing import reference_resolve

# arbitrary registrations shadow handlers on purpose
pytestmark = pytest.mark.filterwarnings("ignore::excepthub.ExcepthubWarning")

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

ROOTS: tuple[type[Exception], ...] = (Exception, ValueError, LookupError, KeyError, OSError)
TAGS = range(4)


class Stop(BaseException):
    """A BaseException-only leaf, like a cancellation."""


# -- the reference model ----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Registration:
    """One registration: for `key`, a fallback (`publish`) or side-effect handler, or a
    pass-through; `holds`: the tags its condition holds for (`None`: unconditional); `raises`:
    the tags its condition raises for; `declines`: the tags its handler declines; `cancels`: the
    tags its handler is cancelled for (it raises `asyncio.CancelledError`)."""

    key: type[Exception]
    publish: bool
    passes: bool = False
    holds: frozenset[int] | None = None
    raises: frozenset[int] = frozenset()
    declines: frozenset[int] = frozenset()
    cancels: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Taken:
    """A handler took the error: which registration, and whether its value was published."""

    registration: Registration
    published: bool


PASSED = "passed through"  # a pass-through let the error go on
NONE_LEFT = "none left"  # every candidate declined or did not hold
CANCELLED = "cancelled"  # a handler was cancelled: the cancellation goes on, never a decline


@dataclass
class Model:
    """The documented rules over a list of registrations, in registration order."""

    registrations: list[Registration]

    def for_class(self, key: type, publish: bool) -> list[Registration]:
        """A class's registrations of one kind, in the order asked: the conditional ones in
        registration order, then the last unconditional one (a new one replaces the old)."""
        mine = [r for r in self.registrations if r.key is key and r.publish == publish]
        unconditional = [r for r in mine if r.holds is None][-1:]
        return [r for r in mine if r.holds is not None] + unconditional

    def order(self, cls: type[BaseException], *, set_aside: bool = False) -> list[Registration]:
        """The candidates for `cls`: fallbacks nearest first, then side effects nearest first
        (side effects first once a group's fallback value is taken: `set_aside`). A
        pass-through stands at its place: what is nearer is asked before it, what is farther
        after it when it is conditional, never when it is not."""
        if not issubclass(cls, Exception):
            return []
        group_only = issubclass(cls, BaseExceptionGroup)
        mro = [k for k in cls.__mro__ if not group_only or issubclass(k, BaseExceptionGroup)]
        placed = []  # (place, registration): place = (MRO index, kind, order within the class)
        for at, klass in enumerate(mro):
            for kind, publish in enumerate((True, False)):
                for within, registration in enumerate(self.for_class(klass, publish)):
                    placed.append(((at, kind, within), registration))

        def usual(group: list[tuple[tuple[int, int, int], Registration]]) -> list[Registration]:
            kinds = (False, True) if set_aside else (True, False)
            return [
                r
                for publish in kinds
                for _, r in sorted(group, key=lambda item: (item[0][0], item[0][2]))
                if r.publish == publish
            ]

        handlers = [(place, r) for place, r in placed if not r.passes]
        result: list[Registration] = []
        for place, passing in sorted((p, r) for p, r in placed if r.passes):
            nearer = [(p, r) for p, r in handlers if p < place]
            handlers = [(p, r) for p, r in handlers if not p < place]
            result += [*usual(nearer), passing]
            if passing.holds is None:
                return result
        return result + usual(handlers)

    def ask(
        self, candidates: list[Registration], error: Any, *, publish: bool = True
    ) -> tuple[Taken | str, list[Registration]]:
        """Where `error` ends among `candidates`, and the registrations that passed it on."""
        declined = []
        for registration in candidates:
            if registration.holds is not None and (
                error.tag in registration.raises or error.tag not in registration.holds
            ):
                declined.append(registration)
                continue
            if registration.passes:
                return PASSED, declined
            if error.tag in registration.cancels:
                return CANCELLED, declined
            if error.tag in registration.declines:
                declined.append(registration)
                continue
            return Taken(registration, registration.publish and publish), declined
        return NONE_LEFT, declined

    def takes_a_leaf(self, leaf: BaseException) -> bool:
        """Whether a group is taken apart for this leaf: a handler (not a pass-through) is
        asked before the first unconditional candidate, or is that one."""
        for registration in self.order(type(leaf)):
            if not registration.passes:
                return True
            if registration.holds is None:
                return False
        return False

    def handle_group(self, group: BaseExceptionGroup[Any]) -> Taken | str | dict[int, Taken]:
        """A group's end: `Taken` by a group handler, `PASSED`/`NONE_LEFT` for the group going
        on as it came, or what each leaf's handler did (`{id(leaf): Taken}`)."""
        if isinstance(group, Exception):
            end, _ = self.ask(self.order(type(group)), group)
            if end != NONE_LEFT:
                return end
        every = list(leaves(group))
        if not any(isinstance(leaf, Exception) and self.takes_a_leaf(leaf) for leaf in every):
            return NONE_LEFT
        taken: dict[int, Taken] = {}
        published = False
        for leaf in every:
            if not isinstance(leaf, Exception):
                continue
            end, _ = self.ask(
                self.order(type(leaf), set_aside=published), leaf, publish=not published
            )
            if isinstance(end, Taken):
                taken[id(leaf)] = end
                published = published or end.published
        return taken


# -- worlds: a hierarchy and registrations, and the registry built from them -----------------


@dataclass
class World:
    classes: list[type[Exception]]
    model: Model
    calls: list[tuple[Registration, BaseException]] = field(default_factory=list)
    funcs: dict[Registration, Callable[..., Any]] = field(default_factory=dict)
    conditions: dict[Registration, Callable[[Any], bool]] = field(default_factory=dict)

    def handler(self, registration: Registration) -> Callable[..., Any]:
        """The registration's own handler: it records its call, declines for its tags, and
        answers its registration; `reraise` for a pass-through."""
        if registration.passes:
            return reraise
        found = self.funcs.get(registration)
        if found is None:

            async def handler(error: Exception) -> Registration:
                if error.tag in registration.cancels:  # type: ignore[attr-defined]
                    raise asyncio.CancelledError
                if error.tag in registration.declines:  # type: ignore[attr-defined]
                    raise Decline
                self.calls.append((registration, error))
                return registration

            found = self.funcs[registration] = handler
        return found

    def condition(self, registration: Registration) -> Callable[[Any], bool] | None:
        holds = registration.holds
        if holds is None:
            return None
        found = self.conditions.get(registration)
        if found is None:

            def condition(error: Any) -> bool:
                if error.tag in registration.raises:
                    raise RuntimeError("a broken condition")
                return error.tag in holds

            found = self.conditions[registration] = condition
        return found

    def registry(self, events: list[ErrorEvent] | None = None) -> ExceptionMiddleware:
        exc = ExceptionMiddleware(logger=None, on_error=[] if events is None else [events.append])
        for r in self.model.registrations:
            exc.add_handler(r.key, publish=r.publish, when=self.condition(r))(self.handler(r))
        return exc

    def error(self, cls: type[BaseException], tag: int, message: str = "") -> BaseException:
        error = cls(message)
        error.tag = tag  # type: ignore[attr-defined]
        return error


def build_class(name: str, bases: list[type[Exception]]) -> type[Exception]:
    try:
        return type(name, tuple(bases), {})
    except TypeError:  # no consistent MRO (or a layout conflict): keep the first base alone
        return type(name, (bases[0],), {})


@st.composite
def hierarchies(draw: st.DrawFn) -> list[type[Exception]]:
    classes: list[type[Exception]] = []
    for i in range(draw(st.integers(1, 6))):
        pool = [*ROOTS, *classes]
        picks = draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=3, unique=True))
        classes.append(build_class(f"Generated{i}", [pool[k] for k in picks]))
    return classes


tag_sets = st.frozensets(st.sampled_from(TAGS))


@st.composite
def worlds(draw: st.DrawFn, group_keys: bool = False, cancelling: bool = False) -> World:
    classes = draw(hierarchies())
    pool: list[type[Exception]] = [*ROOTS, *classes]
    if group_keys:
        pool.append(ExceptionGroup)
    registrations = []
    for _ in range(draw(st.integers(0, 12))):
        conditional = draw(st.booleans())
        registrations.append(
            Registration(
                key=draw(st.sampled_from(pool)),
                publish=draw(st.booleans()),
                passes=draw(st.integers(0, 7)) == 0,  # now and then
                holds=draw(tag_sets) if conditional else None,
                raises=draw(tag_sets) if conditional and draw(st.booleans()) else frozenset(),
                declines=draw(tag_sets) if draw(st.booleans()) else frozenset(),
                cancels=draw(tag_sets) if cancelling and draw(st.booleans()) else frozenset(),
            )
        )
    return World(classes, Model(registrations))


async def outcome_of(exc: ExceptionMiddleware, error: BaseException) -> Outcome | BaseException:
    """The outcome, or the exception `handle` raised."""
    try:
        return await exc.handle(error)
    except BaseException as raised:
        return raised


# -- single exceptions ----------------------------------------------------------------------


@SETTINGS
@given(world=worlds())
def test_candidates_agree_with_the_reference_order(world: World) -> None:
    exc = world.registry()

    for cls in [*world.classes, *ROOTS, Stop]:
        expected = [
            (world.handler(r), r.publish, world.condition(r)) for r in world.model.order(cls)
        ]
        assert [(c.handler, c.publish, c.condition) for c in exc.candidates(cls)] == expected
        assert list(exc.candidates(cls)) == reference_candidates(exc, cls)  # the public model


@SETTINGS
@given(world=worlds(), tag=st.sampled_from(TAGS))
def test_resolve_of_an_instance_answers_the_first_candidate_that_holds(
    world: World, tag: int
) -> None:
    exc = world.registry()

    for cls in world.classes:
        error = world.error(cls, tag)
        holding = [
            r
            for r in world.model.order(cls)
            if r.holds is None or (tag in r.holds and tag not in r.raises)
        ]
        found = exc.resolve(error)
        assert (found and found.handler) == (world.handler(holding[0]) if holding else None)
        assert found == reference_resolve(exc, error)


@pytest.mark.anyio
@SETTINGS
@given(world=worlds(cancelling=True), tag=st.sampled_from(TAGS))
async def test_handle_agrees_with_the_reference_model(world: World, tag: int) -> None:
    events: list[ErrorEvent] = []
    exc = world.registry(events)

    for cls in world.classes:
        error = world.error(cls, tag)
        events.clear()
        end, declined = world.model.ask(world.model.order(cls), error)
        result = await outcome_of(exc, error)
        last = [e for e in events if e.error is error]
        if isinstance(end, Taken):
            assert isinstance(result, Outcome)
            assert (result.published, result.handler, result.error) == (
                end.published,
                world.handler(end.registration),
                error,
            )
            assert result.value == (end.registration if end.published else None)
        elif end == CANCELLED:  # never swallowed, never taken for a decline
            assert isinstance(result, asyncio.CancelledError)
            continue
        else:
            assert result is error  # as if nothing were registered: the same object
            assert [e.outcome for e in last] == ([] if end == PASSED else ["unhandled"])
        if last:
            assert last[0].declined == tuple(world.handler(r) for r in declined)


@pytest.mark.anyio
@SETTINGS
@given(world=worlds(), tag=st.sampled_from(TAGS))
async def test_every_error_is_counted_once_with_one_outcome(world: World, tag: int) -> None:
    exc = world.registry()

    for cls in world.classes:
        exc.reset_error_stats()
        await outcome_of(exc, world.error(cls, tag))
        counted = {
            name: kinds
            for name, kinds in exc.get_error_stats().items()
            if name != "RuntimeError"  # the broken conditions' own failures
        }
        end, _ = world.model.ask(world.model.order(cls), world.error(cls, tag))
        assert sum(sum(kinds.values()) for kinds in counted.values()) == (end != PASSED)


# -- group trees ------------------------------------------------------------------------------

Tree = tuple[int, int] | str | list["Tree"]  # (class index, tag), or "stop" for a BaseException


def trees(max_leaves: int = 8) -> st.SearchStrategy[list[Tree]]:
    leaf: st.SearchStrategy[Tree] = st.one_of(
        st.tuples(st.integers(0, 5), st.sampled_from(TAGS)), st.just("stop")
    )
    nested = st.recursive(
        leaf, lambda kids: st.lists(kids, min_size=1, max_size=4), max_leaves=max_leaves
    )
    return st.lists(nested, min_size=1, max_size=4)


def build_group(world: World, tree: list[Tree], tag: int) -> BaseExceptionGroup[Any]:
    """A fresh group for the tree, every leaf a new object, every group tagged `tag`."""

    def node(item: Tree, path: str) -> BaseException:
        if isinstance(item, list):
            group = BaseExceptionGroup(path, [node(x, f"{path}.{i}") for i, x in enumerate(item)])
            group.tag = tag  # type: ignore[attr-defined]
            return group
        if item == "stop":
            return Stop(path)
        assert isinstance(item, tuple)
        index, leaf_tag = item
        return world.error(world.classes[index % len(world.classes)], leaf_tag, path)

    root = BaseExceptionGroup("root", [node(x, f"root.{i}") for i, x in enumerate(tree)])
    root.tag = tag  # type: ignore[attr-defined]
    return root


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


@pytest.mark.anyio
@SETTINGS
@given(world=worlds(group_keys=True), tree=trees(), tag=st.sampled_from(TAGS))
async def test_every_leaf_is_handled_once_or_reraised_once(
    world: World, tree: list[Tree], tag: int
) -> None:
    exc = world.registry()
    group = build_group(world, tree, tag)

    result = await outcome_of(exc, group)

    if any(error is group for _, error in world.calls):  # a group handler took it whole
        assert len(world.calls) == 1
        return
    handled = [error for _, error in world.calls]
    reraised = list(leaves(result)) if isinstance(result, BaseException) else []
    for leaf in leaves(group):
        assert sum(e is leaf for e in handled) + sum(e is leaf for e in reraised) == 1


@pytest.mark.anyio
@SETTINGS
@given(world=worlds(group_keys=True), tree=trees(), tag=st.sampled_from(TAGS))
async def test_group_outcome_agrees_with_the_reference_model(
    world: World, tree: list[Tree], tag: int
) -> None:
    exc = world.registry()
    group = build_group(world, tree, tag)
    every = list(leaves(group))

    result = await outcome_of(exc, group)
    end = world.model.handle_group(group)

    if isinstance(end, Taken):  # a group handler took it whole
        assert isinstance(result, Outcome)
        assert (result.published, result.handler, result.error) == (
            end.published,
            world.handler(end.registration),
            group,
        )
        return
    if isinstance(end, str) or not end:  # it goes on as it came
        assert result is group
        return
    if len(every) == 1:  # a group of one leaf is that leaf
        assert isinstance(result, Outcome)
        assert result.error is every[0]
        return
    assert {id(error): r for r, error in world.calls} == {
        leaf_id: taken.registration for leaf_id, taken in end.items()
    }
    left = [leaf for leaf in every if id(leaf) not in end]
    if left:
        assert isinstance(result, BaseExceptionGroup)
        expected, _ = group.split(lambda e: not isinstance(e, BaseExceptionGroup) and e in left)
        assert expected is not None
        assert shape(result) == shape(expected)
    else:
        assert isinstance(result, Outcome)
        publishing = [t for t in end.values() if t.published]
        assert result.error is group
        assert result.published == bool(publishing)
        assert result.value == (publishing[0].registration if publishing else None)


@pytest.mark.anyio
@SETTINGS
@given(world=worlds(group_keys=True), tree=trees(), tag=st.sampled_from(TAGS))
async def test_cancellation_leaves_are_never_swallowed(
    world: World, tree: list[Tree], tag: int
) -> None:
    exc = world.registry()
    group = build_group(world, tree, tag)
    stops = [leaf for leaf in leaves(group) if isinstance(leaf, Stop)]

    result = await outcome_of(exc, group)

    if stops:
        assert isinstance(result, BaseException)
        reraised = list(leaves(result))
        assert all(any(e is stop for e in reraised) for stop in stops)
