"""Hypothesis strategies: exception classes, instances and nested groups for a registry."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from hypothesis import strategies as st

from .._registry import ExceptionMiddleware

__all__ = ["exception_classes", "exception_groups", "exception_hierarchies", "exceptions"]

Shape = int | tuple[int, list["Shape"]]  # a group's shape: a leaf's index, or (index, children)

_names = itertools.count()  # runtime classes get distinct names, which makes failures readable


def exception_hierarchies(
    roots: Iterable[type[BaseException]] = (Exception,),
    *,
    min_size: int = 1,
    max_size: int = 6,
    max_bases: int = 3,
) -> st.SearchStrategy[list[type[BaseException]]]:
    """Lists of new exception classes made at run time, each a subclass of one to `max_bases`
    classes among `roots` and the classes made before it: deep chains, multiple inheritance
    and diamonds. A base that would make no consistent MRO (or clashing instance layouts) is
    skipped, so every class drawn exists.

    ```python
    @given(exception_hierarchies((KeyError, ValueError)))
    def test_every_class_resolves(classes): ...
    ```
    """
    pool = _classes(roots, "roots")
    if not pool:
        raise ValueError("exception_hierarchies() needs at least one root class")
    if max_bases < 1 or min_size < 0 or max_size < min_size:
        raise ValueError(
            "exception_hierarchies(): need max_bases >= 1 and 0 <= min_size <= max_size, got "
            f"max_bases={max_bases}, min_size={min_size}, max_size={max_size}"
        )

    return _hierarchy(tuple(pool), min_size, max_size, max_bases)


def exception_classes(
    registry: ExceptionMiddleware | None = None,
    *,
    classes: Iterable[type[BaseException]] = (),
    subclasses: bool = True,
) -> st.SearchStrategy[type[BaseException]]:
    """Exception classes: the keys of `registry`'s handlers, the `classes` given, and (with
    `subclasses=True`) new classes made at run time under them, diamonds included.

    ```python
    @given(exception_classes(exc))
    def test_the_registry_follows_the_rule(cls):
        assert exc.resolve(cls) == reference_resolve(exc, cls)
    ```
    """
    pool = _pool(registry, classes)
    known = st.sampled_from(pool)
    if not subclasses:
        return known

    return st.one_of(known, _one_made(tuple(pool)))


def exceptions(
    registry: ExceptionMiddleware | None = None,
    *,
    classes: Iterable[type[BaseException]] = (),
    subclasses: bool = True,
    groups: bool = True,
    max_leaves: int = 8,
) -> st.SearchStrategy[BaseException]:
    """Exception instances of `exception_classes(registry, classes=..., subclasses=...)`, and
    (with `groups=True`) nested exception groups of them. Every draw is a new object.

    ```python
    @given(exceptions(exc))
    async def test_nothing_is_lost(error):
        try:
            outcome = await exc.handle(error)
        except BaseException as raised: ...
    ```
    """
    leaves = exception_classes(registry, classes=classes, subclasses=subclasses).map(_instance)
    if not groups:
        return leaves
    nested = exception_groups(
        registry, classes=classes, subclasses=subclasses, max_leaves=max_leaves
    )
    return st.one_of(leaves, nested)


def exception_groups(
    registry: ExceptionMiddleware | None = None,
    *,
    classes: Iterable[type[BaseException]] = (),
    subclasses: bool = True,
    max_leaves: int = 8,
) -> st.SearchStrategy[BaseExceptionGroup[BaseException]]:
    """Nested exception groups of the registry's classes and the `classes` given (and, with
    `subclasses=True`, runtime subclasses of them, shared by the leaves of one group): up to
    `max_leaves` leaves, groups inside groups, every leaf a new object. A group holding a
    `BaseException` that is not an `Exception` is a `BaseExceptionGroup`; where the registry
    has keys that are group classes, those classes (and subclasses) make groups too.
    """
    pool = _pool(registry, classes)
    if max_leaves < 1:
        raise ValueError(f"exception_groups(): max_leaves must be >= 1, got {max_leaves}")
    leaf_classes = [c for c in pool if not issubclass(c, BaseExceptionGroup)] or [Exception]
    group_classes = [c for c in pool if issubclass(c, ExceptionGroup)]

    return _groups(tuple(leaf_classes), tuple(group_classes), subclasses, _shape(max_leaves))


# module-level composites: defining one costs a `compile`, too much to do for every draw


@st.composite
def _hierarchy(
    draw: st.DrawFn,
    pool: tuple[type[BaseException], ...],
    min_size: int,
    max_size: int,
    max_bases: int,
) -> list[type[BaseException]]:
    made: list[type[BaseException]] = []
    for _ in range(draw(st.integers(min_size, max_size))):
        choices = [*pool, *made]
        picks = st.integers(0, len(choices) - 1)
        bases = draw(st.lists(picks, min_size=1, max_size=max_bases, unique=True))
        made.append(_subclass([choices[at] for at in bases]))
    return made


@st.composite
def _one_made(draw: st.DrawFn, pool: tuple[type[BaseException], ...]) -> type[BaseException]:
    made = draw(_hierarchy(pool, 1, 4, 3))
    return made[draw(st.integers(0, len(made) - 1))]


@st.composite
def _groups(
    draw: st.DrawFn,
    leaf_classes: tuple[type[BaseException], ...],
    group_classes: tuple[type[BaseException], ...],
    subclasses: bool,
    shape: st.SearchStrategy[Shape],
) -> BaseExceptionGroup[Any]:
    # one set of runtime subclasses per group, shared by its leaves (cheaper, and several
    # leaves of one new class exercise the memo)
    leaves = list(leaf_classes)
    kinds: list[type[BaseException]] = [BaseExceptionGroup, *group_classes]
    if subclasses:
        leaves += draw(_hierarchy(leaf_classes, 0, 3, 3))
        if group_classes:
            kinds += draw(_hierarchy(group_classes, 0, 2, 2))
    group = _build(draw(shape), leaves, kinds)
    assert isinstance(group, BaseExceptionGroup)
    return group


@functools.cache
def _shape(max_leaves: int) -> st.SearchStrategy[Shape]:
    """Where each leaf and group goes, as indices into the classes drawn: built once."""
    index = st.integers(0, 255)
    node: st.SearchStrategy[Shape] = st.recursive(
        index,
        lambda kids: st.tuples(index, st.lists(kids, min_size=1, max_size=4)),
        max_leaves=max_leaves,
    )
    return st.tuples(index, st.lists(node, min_size=1, max_size=4))


def _build(
    shape: Shape, leaves: list[type[BaseException]], kinds: list[type[BaseException]]
) -> BaseException:
    if isinstance(shape, int):
        return _instance(leaves[shape % len(leaves)])
    at, children = shape
    cls = _group_class(kinds[at % len(kinds)])
    return _group(cls, [_build(child, leaves, kinds) for child in children])


def _instance(cls: type[BaseException]) -> BaseException:
    """A new instance of `cls`, even where its constructor wants arguments it cannot be given."""
    message = f"a {cls.__qualname__}"
    if issubclass(cls, BaseExceptionGroup):
        return _group(cls, [Exception("a leaf")])
    try:
        return cls(message)
    except Exception:  # a constructor with required arguments: build it without calling it
        error = cls.__new__(cls)
        BaseException.__init__(error, message)
        return error


def _group(
    cls: type[BaseExceptionGroup[Any]], children: list[BaseException]
) -> BaseExceptionGroup[Any]:
    if not issubclass(cls, ExceptionGroup) or all(isinstance(c, Exception) for c in children):
        return cls("a group", children)
    return BaseExceptionGroup("a group", children)  # an ExceptionGroup cannot hold those


def _group_class(cls: type[BaseException]) -> type[BaseExceptionGroup[Any]]:
    assert issubclass(cls, BaseExceptionGroup)
    return cls


def _subclass(bases: Sequence[type[BaseException]]) -> type[BaseException]:
    """A new class under as many of `bases`, in order, as can be combined."""
    kept: list[type[BaseException]] = []
    made: type[BaseException] | None = None
    for base in bases:
        try:
            made = type(f"Generated{next(_names)}", (*kept, base), {})
        except TypeError:  # no consistent MRO, or instance layouts that cannot be combined
            continue
        kept.append(base)
    return made if made is not None else bases[0]  # a class that cannot be subclassed


def _pool(
    registry: ExceptionMiddleware | None, classes: Iterable[type[BaseException]]
) -> list[type[BaseException]]:
    if registry is not None and not isinstance(registry, ExceptionMiddleware):
        raise TypeError(f"expected an excepthub.ExceptionMiddleware, got {registry!r}")
    keys: list[type[BaseException]] = []
    if registry is not None:
        keys = [*registry.publish_handlers, *registry.handlers]
    pool = list(dict.fromkeys([*keys, *_classes(classes, "classes")]))
    if not pool:
        raise ValueError(
            "no exception classes to draw from: the registry has no handler; pass classes=[...]"
        )
    return pool


def _classes(classes: Iterable[type[BaseException]], where: str) -> list[type[BaseException]]:
    found = list(classes)
    for cls in found:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(f"{where} must be exception classes, got {cls!r}")
    return found
