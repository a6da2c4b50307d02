"""Hostile input: whatever is passed as keys, handlers, maps or flags, only a `TypeError` with a
message comes out, and a refused call leaves the registry exactly as it was."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from excepthub import Defaults, ExceptionMiddleware

SETTINGS = settings(max_examples=100, deadline=None)


class BrokenRepr:
    """An object whose repr raises: error messages must not depend on it."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class BrokenReprError(Exception):
    """An exception class whose instances' repr raises."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class BrokenMeta(type):
    """A metaclass whose repr (the class's repr) raises."""

    def __repr__(cls) -> str:
        raise RuntimeError("no repr for you")


class BrokenClassRepr(Exception, metaclass=BrokenMeta):
    pass


class CallableWithoutSignature:
    """A callable whose signature cannot be read."""

    @property
    def __signature__(self) -> object:
        raise ValueError("no signature")

    def __call__(self, *args: object) -> None: ...


class BadMapping(dict[Any, Any]):
    """A mapping whose items() raises a TypeError of its own."""

    def items(self) -> Any:
        raise TypeError("items refused")


def good(error: Exception) -> None: ...


async def good_async(error: Exception, request: object = None) -> str:
    return "ok"


def gen(error: Exception) -> Iterator[None]:
    yield


async def agen(error: Exception) -> Any:
    yield


CLASSES: list[Any] = [
    Exception,
    ValueError,
    KeyError,
    OSError,
    ExceptionGroup,
    BaseException,
    BaseExceptionGroup,
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
    asyncio.CancelledError,
    BrokenReprError,
    BrokenClassRepr,
    int,
    object,
    type,
    str,
]

CALLABLES: list[Any] = [
    good,
    good_async,
    gen,
    agen,
    lambda: None,
    lambda e: None,
    lambda *, e: None,
    lambda e, /, x: None,
    len,
    print,
    repr,
    int,
    object,
    type,
    functools.partial(good_async),
    CallableWithoutSignature(),
    BrokenRepr,
    ValueError,
    sys.exit,
]

ODDITIES: list[Any] = [BrokenRepr(), BrokenReprError(), ValueError("instance"), sys, Ellipsis]


def pick(values: list[Any]) -> st.SearchStrategy[Any]:
    """One of `values`, drawn by index: hypothesis never needs their (maybe broken) repr."""

    def item(index: int) -> Any:
        return values[index]

    return st.integers(0, len(values) - 1).map(item)


atoms = st.one_of(
    pick(CLASSES),
    pick(CALLABLES),
    pick(ODDITIES),
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=5),
    st.binary(max_size=5),
)
anything = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.tuples(inner),
        st.lists(inner, max_size=3).map(tuple),
        st.lists(inner, max_size=3),
        st.dictionaries(pick(CLASSES), inner, max_size=3),
    ),
    max_leaves=6,
)
keys = st.one_of(anything, st.lists(pick(CLASSES), max_size=4).map(tuple))
handlers = st.one_of(pick(CALLABLES), anything)
maps = st.one_of(
    st.none(),
    st.dictionaries(keys.filter(_hashable := lambda k: _is_hashable(k)), handlers, max_size=4),
    st.just(BadMapping({ValueError: good})),
    anything,
)


def _is_hashable(value: object) -> bool:
    try:
        hash(value)
    except Exception:
        return False
    return True


def snapshot(exc: ExceptionMiddleware) -> tuple[Any, ...]:
    return (
        dict(exc.handlers),
        dict(exc.publish_handlers),
        [exc.resolve(cls) for cls in (Exception, ValueError, KeyError, OSError, ExceptionGroup)],
    )


def registry() -> ExceptionMiddleware:
    return ExceptionMiddleware(handlers={LookupError: good}, publish_handlers={OSError: good})


def refused_or_accepted(call: Callable[[], object]) -> TypeError | None:
    """Run `call`: it may succeed; if it raises, it must be a TypeError with a message."""
    try:
        call()
    except TypeError as error:
        refused = error
    else:
        return None
    assert str(refused), "a TypeError without a message"
    return refused


@SETTINGS
@given(key=keys)
def test_any_key_is_accepted_or_refused_with_a_type_error(key: Any) -> None:
    exc = registry()
    before = snapshot(exc)

    refused = refused_or_accepted(lambda: exc.add_handler(key)(good))

    if refused is not None:
        assert snapshot(exc) == before


@SETTINGS
@given(handler=handlers, publish=st.booleans())
@pytest.mark.filterwarnings("ignore::excepthub.DroppedValueWarning")  # any handler, any role
def test_any_handler_is_accepted_or_refused_with_a_type_error(handler: Any, publish: bool) -> None:
    exc = registry()
    before = snapshot(exc)

    refused = refused_or_accepted(lambda: exc.add_handler(ValueError, publish=publish)(handler))

    if refused is not None:
        assert snapshot(exc) == before
    else:
        assert (exc.publish_handlers if publish else exc.handlers)[ValueError] is handler


def test_a_handler_whose_class_has_a_broken_repr_is_refused_with_a_type_error() -> None:
    exc = registry()
    before = snapshot(exc)

    # inspect.signature calls the class's repr to word its own error
    with pytest.raises(TypeError, match=r"BrokenMeta object at .* no signature to read"):
        exc.add_handler(ValueError)(BrokenClassRepr)

    assert snapshot(exc) == before


@SETTINGS
@given(key=keys, handler=handlers, publish=anything, inline=anything)
def test_any_registration_is_accepted_or_refused_with_a_type_error(
    key: Any, handler: Any, publish: Any, inline: Any
) -> None:
    exc = registry()
    before = snapshot(exc)

    refused = refused_or_accepted(
        lambda: exc.add_handler(key, publish=publish, inline=inline)(handler)
    )

    if refused is not None:
        assert snapshot(exc) == before


@SETTINGS
@given(handlers_map=maps, publish_map=maps, inline=anything)
def test_any_constructor_arguments_build_a_registry_or_a_type_error(
    handlers_map: Any, publish_map: Any, inline: Any
) -> None:
    refused_or_accepted(
        lambda: ExceptionMiddleware(
            handlers=handlers_map, publish_handlers=publish_map, inline=inline
        )
    )


@SETTINGS
@given(handlers_map=maps, publish_map=maps)
def test_any_defaults_are_built_or_refused_with_a_type_error(
    handlers_map: Any, publish_map: Any
) -> None:
    refused_or_accepted(
        lambda: Defaults("framework", handlers=handlers_map, publish_handlers=publish_map)
    )


@SETTINGS
@given(value=anything)
def test_resolve_of_anything_answers_or_is_a_type_error(value: Any) -> None:
    refused_or_accepted(lambda: registry().resolve(value))


@pytest.mark.parametrize("culprit", [BrokenRepr(), BrokenClassRepr, (ValueError, BrokenRepr())])
def test_refusal_does_not_depend_on_the_culprit_having_a_repr(culprit: object) -> None:
    with pytest.raises(TypeError, match="cannot register"):
        registry().add_handler(culprit)(BrokenRepr())  # type: ignore[call-overload]
